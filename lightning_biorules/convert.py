"""Put learning rules on an existing model, in place, keeping every ``Parameter`` object.

:func:`apply_rules` swaps the class of each ``nn.Linear``/``nn.Conv2d`` to a feedback subclass (the way
``torch.nn.utils.parametrize`` does) and attaches the layer's rule as ``layer.feedback``. Parameters,
their names and the optimizer's references are untouched; the feedback buffers appear in the
``state_dict`` as ``<layer>.feedback.<buffer>``.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

import torch
from torch import Tensor, nn

from lightning_biorules.functional import ErrorTap, capture_output_error
from lightning_biorules.rule_space import RuleSpace, RuleSpaceLike
from lightning_biorules.rules import DirectFeedbackAlignment, FeedbackRule, check_init, get_rule

__all__ = ["FeedbackConv2d", "FeedbackLayer", "FeedbackLinear", "apply_rules", "remove_rules", "rule_map"]


class FeedbackLayer:
    """Mixin of converted layers: the forward is the original op, the backward is ``self.feedback``'s rule."""

    feedback: FeedbackRule
    error_tap: Optional[ErrorTap] = None  # set on every layer of a model that uses dfa
    is_output_layer: bool = False

    def _tap_output(self, output: Tensor) -> Tensor:
        tap = self.error_tap
        if tap is None or not torch.is_grad_enabled():
            return output
        tap.last_layer_was_output = self.is_output_layer
        return capture_output_error(output, tap) if self.is_output_layer else output


class FeedbackLinear(FeedbackLayer, nn.Linear):
    """``nn.Linear`` trained with the rule in ``self.feedback``."""

    def forward(self, input: Tensor) -> Tensor:
        return self._tap_output(self.feedback.linear(input, self.weight, self.bias))


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """``nn.Conv2d`` (any stride, padding, dilation, groups, padding mode) trained with ``self.feedback``'s rule."""

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        padding = self.padding
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = (0, 0)
        output = self.feedback.conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups)
        return self._tap_output(output)


_FEEDBACK_CLASSES: Dict[type, type] = {nn.Linear: FeedbackLinear, nn.Conv2d: FeedbackConv2d}


def _feedback_class(cls: type) -> type:
    """The feedback subclass for ``cls`` (made on demand for user subclasses of Linear/Conv2d)."""
    if cls not in _FEEDBACK_CLASSES:
        base = FeedbackLinear if issubclass(cls, nn.Linear) else FeedbackConv2d
        method = {"forward": base.forward} if base is FeedbackLinear else {"_conv_forward": base._conv_forward}
        _FEEDBACK_CLASSES[cls] = type(f"Feedback{cls.__name__}", (FeedbackLayer, cls), method)
    return _FEEDBACK_CLASSES[cls]


def _layer_seed(base_seed: int, index: int) -> int:
    return (base_seed * 1_000_003 + index * 7_919 + 1) % (2**63)


def apply_rules(
    model: nn.Module,
    rule_space: RuleSpaceLike = "bp",
    *,
    keep_ends_bp: bool = False,
    init: str = "xavier",
    output_layer: Optional[str] = None,
    seed: Optional[int] = None,
) -> nn.Module:
    """Give every ``nn.Linear``/``nn.Conv2d`` of ``model`` its learning rule, in place, and return ``model``.

    Args:
        model: any module; its parameters stay the same objects (optimizers built before still work).
        rule_space: a rule name, or an ordered mapping of module-name glob patterns to rule names
            (see :mod:`lightning_biorules.rule_space`).
        keep_ends_bp: keep the first and last layer (stem and classifier) in ``bp``, as in the paper.
        init: initializer of random feedback tensors: ``xavier``, ``xavier_uniform``, ``kaiming``, ``kaiming_uniform``.
        output_layer: name of the layer whose output is the network output (where ``dfa`` reads the output
            error). Default: the last Linear/Conv2d in registration order; a backward pass
            in which another layer ran after it raises an error that asks for this argument.
        seed: base seed of the feedback tensors. Default: drawn from torch's global RNG, so
            ``lightning.seed_everything`` makes the rules reproducible.

    Raises:
        ValueError: on any bad rule name, pattern, init or output layer, before anything is changed.
    """
    if is_converted(model):
        raise ValueError(f"{type(model).__name__} already has learning rules; call remove_rules() first.")
    check_init(init)
    assignment = RuleSpace.parse(rule_space, keep_ends_bp).assign(model)
    modules = dict(model.named_modules())
    if output_layer is None:
        output_layer = list(assignment)[-1]
    elif output_layer not in assignment:
        raise ValueError(
            f"output_layer {output_layer!r} is not a Linear/Conv2d layer of the model. Layers: {', '.join(assignment)}"
        )
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())

    tap = ErrorTap() if "dfa" in assignment.values() else None
    for index, (name, rule_name) in enumerate(assignment.items()):
        layer = modules[name]
        rule = get_rule(rule_name)(layer.weight, init=init, seed=_layer_seed(seed, index))
        if isinstance(rule, DirectFeedbackAlignment):
            rule.tap = tap
        layer.__class__ = _feedback_class(type(layer))
        layer.add_module("feedback", rule)
        if tap is not None:
            layer.error_tap = tap
            layer.is_output_layer = name == output_layer
    if tap is not None:
        tap.output_layer = output_layer
    return model


def is_converted(model: nn.Module) -> bool:
    """Whether any layer of ``model`` carries a learning rule."""
    return any(isinstance(m, FeedbackLayer) for m in model.modules())


def remove_rules(model: nn.Module) -> nn.Module:
    """Undo :func:`apply_rules` in place: plain ``nn.Linear``/``nn.Conv2d`` again, feedback buffers dropped."""
    for module in model.modules():
        if isinstance(module, FeedbackLayer):
            original: Type[nn.Module] = next(
                c for c in type(module).__mro__ if c not in (FeedbackLayer,) and not issubclass(c, FeedbackLayer)
            )
            del module._modules["feedback"]
            module.__dict__.pop("error_tap", None)
            module.__dict__.pop("is_output_layer", None)
            module.__class__ = original
    return model


def rule_map(model: nn.Module) -> Dict[str, str]:
    """``{layer name: rule name}`` for every converted layer of ``model``, in registration order."""
    return {name: m.feedback.name for name, m in model.named_modules() if isinstance(m, FeedbackLayer)}
