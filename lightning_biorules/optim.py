"""``BioRulesOptimizer``: the same rules for code that builds its own optimizer or trains in a plain loop.

    optimizer = BioRulesOptimizer(model, torch.optim.SGD, rule_space="fa", lr=0.1, momentum=0.9)
    for x, y in loader:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

The wrapper applies the rules to ``model`` (in place, as :func:`~lightning_biorules.apply_rules` does) and then
behaves exactly like ``optimizer_class(params, **kwargs)``: it shares that optimizer's ``param_groups`` and
``state``, so learning-rate schedulers, Lightning and checkpoints work unchanged, and its updates are the
ones the :class:`~lightning_biorules.BioRules` callback route gives.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Optional, Type

import torch
from torch import nn
from torch.optim import Optimizer

from lightning_biorules.convert import apply_rules, is_converted
from lightning_biorules.rule_space import RuleSpaceLike

__all__ = ["BioRulesOptimizer"]


class BioRulesOptimizer(Optimizer):
    """Wrap ``optimizer_class`` and train ``model`` with learning rules.

    Args:
        model: the model to train; converted in place unless it already carries rules.
        optimizer_class: any ``torch.optim.Optimizer`` subclass.
        rule_space, keep_ends_bp, init, output_layer, seed: as in :func:`~lightning_biorules.apply_rules`.
        params: parameters or parameter groups to optimize (default ``model.parameters()``).
        **optimizer_kwargs: passed to ``optimizer_class``.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer_class: Type[Optimizer] = torch.optim.SGD,
        rule_space: RuleSpaceLike = "fa",
        *,
        keep_ends_bp: bool = False,
        init: str = "xavier",
        output_layer: Optional[str] = None,
        seed: Optional[int] = None,
        params: Optional[Iterable[Any]] = None,
        **optimizer_kwargs: Any,
    ) -> None:
        if not is_converted(model):
            apply_rules(model, rule_space, keep_ends_bp=keep_ends_bp, init=init, output_layer=output_layer, seed=seed)
        self.optimizer = optimizer_class(model.parameters() if params is None else params, **optimizer_kwargs)
        super().__init__(self.optimizer.param_groups, self.optimizer.defaults)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        return self.optimizer.step(closure)

    def state_dict(self) -> Dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)
        self.param_groups = self.optimizer.param_groups
        self.state = self.optimizer.state

    def __repr__(self) -> str:
        return f"BioRulesOptimizer({self.optimizer!r})"
