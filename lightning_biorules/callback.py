"""``BioRules``: a Lightning callback that trains an existing LightningModule with bio-inspired rules.

    trainer = Trainer(callbacks=[BioRules(rule_space={"fc": "bp", "*": "usf"})])

Nothing else in the project changes: not ``training_step``, ``configure_optimizers`` nor the loss. The rules
are applied in ``setup``, which Lightning runs before ``configure_optimizers``, before a checkpoint is
restored and before a distributed strategy wraps the model, so the optimizer sees the same ``Parameter``
objects, resumed runs get their feedback buffers back, and DDP broadcasts the buffers from rank 0.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_biorules.convert import apply_rules, is_converted, rule_map
from lightning_biorules.rule_space import RuleSpace, RuleSpaceLike
from lightning_biorules.rules import check_init

__all__ = ["BioRules"]


class BioRules(Callback):
    """Apply learning rules to the LightningModule (or one of its submodules) when training starts.

    Args:
        rule_space: a rule name, or an ordered ``{glob pattern: rule}`` mapping over module names relative
            to the converted module (see :mod:`lightning_biorules.rule_space`).
        keep_ends_bp: keep the first and last Linear/Conv2d in ``bp`` (the paper's convention).
        init: initializer of random feedback tensors.
        output_layer: for ``dfa``, the layer whose output is the network output (default: the last layer).
        seed: base seed of feedback tensors (default: drawn from the global RNG after ``seed_everything``).
        submodule: attribute path of the module to convert (e.g. ``"model"``); default the whole LightningModule.

    Rule names and the init are checked here, at construction; patterns are checked against the model in
    ``setup``, before the first step.
    """

    def __init__(
        self,
        rule_space: RuleSpaceLike = "fa",
        *,
        keep_ends_bp: bool = False,
        init: str = "xavier",
        output_layer: Optional[str] = None,
        seed: Optional[int] = None,
        submodule: Optional[str] = None,
    ) -> None:
        self.rule_space = RuleSpace.parse(rule_space, keep_ends_bp)
        self.init = check_init(init)
        self.output_layer = output_layer
        self.seed = seed
        self.submodule = submodule

    def _target(self, pl_module: L.LightningModule) -> Any:
        return pl_module.get_submodule(self.submodule) if self.submodule else pl_module

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        target = self._target(pl_module)
        if is_converted(target):
            return
        apply_rules(target, self.rule_space, init=self.init, output_layer=self.output_layer, seed=self.seed)
        for logger in trainer.loggers:
            logger.log_hyperparams({"biorules": rule_map(target)})

    def state_dict(self) -> Dict[str, Any]:
        return {"rule_space": [list(p) for p in self.rule_space.patterns],
                "keep_ends_bp": self.rule_space.keep_ends_bp, "init": self.init}
