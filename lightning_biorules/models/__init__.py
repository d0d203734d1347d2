"""Backbones for 32x32 images, looked up by name (``biorules fit --model.backbone=resnet20``)."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, TypeVar

from torch import nn

from lightning_biorules.models.darts import DartsNet
from lightning_biorules.models.macro import MACRO_OPS, MacroNet
from lightning_biorules.models.nb201 import NB201Net
from lightning_biorules.models.resnet import CifarResNet, resnet20
from lightning_biorules.models.simple import SimpleCNN

__all__ = ["MACRO_OPS", "CifarResNet", "DartsNet", "MacroNet", "NB201Net", "SimpleCNN", "available_backbones", "build_backbone", "register_backbone", "resnet20"]

_BACKBONES: Dict[str, Callable[..., nn.Module]] = {}
F = TypeVar("F", bound=Callable[..., nn.Module])


def register_backbone(name: str) -> Callable[[F], F]:
    """Register a backbone factory ``factory(num_classes=..., **kwargs) -> nn.Module`` under ``name``."""

    def decorator(factory: F) -> F:
        _BACKBONES[name] = factory
        return factory

    return decorator


def available_backbones() -> List[str]:
    return sorted(_BACKBONES)


def build_backbone(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Instantiate the backbone registered as ``name``; unknown names raise ``ValueError`` with the choices."""
    if name not in _BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}. Valid backbones: {', '.join(available_backbones())}.")
    return _BACKBONES[name](num_classes=num_classes, **kwargs)


register_backbone("resnet20")(resnet20)
register_backbone("simple_cnn")(SimpleCNN)
register_backbone("macro")(MacroNet)
register_backbone("nb201")(NB201Net)
register_backbone("darts")(DartsNet)
