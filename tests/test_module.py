"""ImageClassifier on real CIFAR-10 images: exact resume with every feedback buffer."""

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from lightning_biorules import rule_map
from lightning_biorules.data import CIFARDataModule
from lightning_biorules.module import ImageClassifier

MIXED = {"features.0": "fa", "features.4": "dfa", "features.8": "brsf", "fc1": "frsf", "*": "usf"}


def _datamodule(root, tmp_path):
    return CIFARDataModule(root=str(root), train_size=200, val_size=100, batch_size=50,
                           cache_dir=str(tmp_path / "cache"))


def _trainer(tmp_path, epochs, **kwargs):
    return L.Trainer(max_epochs=epochs, accelerator="cpu", deterministic=True, logger=False,
                     enable_progress_bar=False, enable_model_summary=False, default_root_dir=str(tmp_path),
                     **kwargs)


class InterruptAfterFirstEpoch(Callback):
    """Stops a 2-epoch run after its first epoch, as a killed job would (same schedule, same config)."""

    def on_train_epoch_end(self, trainer, pl_module):
        trainer.should_stop = True


def _model():
    return ImageClassifier(backbone="simple_cnn", backbone_kwargs={"width": 8, "hidden": 32}, rule_space=MIXED, lr=0.05)


def test_bad_rule_space_fails_at_construction():
    with pytest.raises(ValueError, match=r"pattern 'fc1'.*Unknown learning rule 'fas'"):
        ImageClassifier(backbone="simple_cnn", rule_space={"fc1": "fas"})
    with pytest.raises(ValueError, match=r"Unknown backbone 'resnet21'\. Valid backbones: .*resnet20"):
        ImageClassifier(backbone="resnet21")


def test_resume_is_exact(cifar10_root, tmp_path):
    L.seed_everything(0)
    straight = _model()
    _trainer(tmp_path / "a", 2, enable_checkpointing=False).fit(straight, _datamodule(cifar10_root, tmp_path))

    L.seed_everything(0)
    first = _model()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    _trainer(tmp_path / "b", 2, callbacks=[checkpoint, InterruptAfterFirstEpoch()]).fit(
        first, _datamodule(cifar10_root, tmp_path))
    assert torch.load(checkpoint.last_model_path, weights_only=False)["epoch"] == 0
    saved = torch.load(checkpoint.last_model_path, weights_only=False)["state_dict"]
    assert "backbone.features.4.feedback.matrix" in saved and saved["backbone.features.4.feedback.matrix"].numel() > 0
    assert "backbone.features.8.feedback.step" in saved

    L.seed_everything(123)  # a different seed: everything must come from the checkpoint
    resumed = _model()
    _trainer(tmp_path / "c", 2, enable_checkpointing=False).fit(
        resumed, _datamodule(cifar10_root, tmp_path), ckpt_path=checkpoint.last_model_path)

    assert rule_map(resumed.backbone) == rule_map(straight.backbone)
    expected = straight.state_dict()
    for name, value in resumed.state_dict().items():
        assert torch.equal(value, expected[name]), name
    assert int(resumed.backbone.features[8].feedback.step) == 8  # 4 batches x 2 epochs


def test_fit_learns_on_real_images(cifar10_root, tmp_path):
    L.seed_everything(0)
    model = ImageClassifier(backbone="simple_cnn", rule_space="fa", keep_ends_bp=True, lr=0.05)
    trainer = _trainer(tmp_path, 3, enable_checkpointing=False)
    datamodule = CIFARDataModule(root=str(cifar10_root), train_size=500, val_size=200, batch_size=50,
                                 cache_dir=str(tmp_path / "cache"))
    trainer.fit(model, datamodule)
    metrics = trainer.callback_metrics
    assert metrics["val_acc"] > 0.15  # above the 10% of chance after 30 small steps
    assert metrics["train_loss_epoch"] < 2.30
