"""``ImageClassifier``: the LightningModule behind ``biorules fit`` and every search trial."""

from __future__ import annotations

from typing import Any, Dict, Literal, Optional, Union

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from lightning_biorules.convert import apply_rules, rule_map
from lightning_biorules.models import build_backbone

__all__ = ["ImageClassifier"]


class ImageClassifier(L.LightningModule):
    """Classify images with a registered backbone whose layers train with per-layer learning rules.

    The rules are applied when the module is built, so a bad ``rule_space`` fails at once, before a
    ``Trainer`` exists, and checkpoints (which hold every feedback buffer) load into a fresh instance.

    Args:
        backbone: registered backbone name (``resnet20``, ``simple_cnn``, ``macro``).
        backbone_kwargs: extra arguments of the backbone (e.g. ``{"ops": [...]}`` for ``macro``).
        num_classes: number of classes (10 for CIFAR-10, 100 for CIFAR-100).
        rule_space: a rule name for every layer, or an ordered ``{glob pattern: rule}`` mapping over the
            backbone's module names (first match wins, ``"*"`` as default, unmatched layers keep ``bp``).
        keep_ends_bp: train the stem and the classifier with ``bp`` (the paper's convention).
        init: initializer of random feedback tensors (``xavier``, ``kaiming``, ...).
        output_layer: for ``dfa``: the layer whose output is the logits (default: the last layer).
        feedback_seed: base seed of the feedback tensors (default: from the global RNG, see ``seed_everything``).
        lr, momentum, weight_decay, nesterov: the default optimizer, SGD. ``--optimizer``/``--lr_scheduler``
            on the command line replace it (LightningCLI).
        scheduler: ``cosine`` (annealed to zero over ``trainer.max_epochs``) or ``none``.
    """

    def __init__(
        self,
        backbone: str = "resnet20",
        backbone_kwargs: Optional[Dict[str, Any]] = None,
        num_classes: int = 10,
        rule_space: Union[Dict[str, str], str] = "bp",
        keep_ends_bp: bool = False,
        init: str = "xavier",
        output_layer: Optional[str] = None,
        feedback_seed: Optional[int] = None,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        scheduler: Literal["cosine", "none"] = "cosine",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = build_backbone(backbone, num_classes=num_classes, **(backbone_kwargs or {}))
        apply_rules(self.backbone, rule_space, keep_ends_bp=keep_ends_bp, init=init,
                    output_layer=output_layer, seed=feedback_seed)
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    @property
    def rules(self) -> Dict[str, str]:
        """``{backbone layer name: rule}``."""
        return rule_map(self.backbone)

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def _shared_step(self, batch: Any, stage: str, metric: MulticlassAccuracy) -> Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        metric(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}_loss", loss, on_step=on_step, on_epoch=True, prog_bar=True)
        self.log(f"{stage}_acc", metric, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train", self.train_acc)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test", self.test_acc)

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=self.hparams.momentum,
                                    weight_decay=self.hparams.weight_decay,
                                    nesterov=self.hparams.nesterov and self.hparams.momentum > 0)
        if self.hparams.scheduler == "none":
            return optimizer
        epochs = max(1, int(self.trainer.max_epochs or 1)) if self._trainer is not None else 1
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
