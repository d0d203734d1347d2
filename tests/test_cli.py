"""`biorules fit` through LightningCLI on a few hundred real CIFAR-10 images."""

import glob
import os

import pytest
import torch
import yaml

from lightning_biorules.cli import main

SMALL = ["--data.train_size=200", "--data.val_size=100", "--data.batch_size=50", "--trainer.max_epochs=1",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def _fit(args, root, tmp_path, config=()):
    main(["fit", *config, f"--data.root={root}", f"--trainer.default_root_dir={tmp_path}", *SMALL, *args])
    checkpoints = glob.glob(str(tmp_path / "lightning_logs" / "version_0" / "checkpoints" / "*.ckpt"))
    assert checkpoints, "no checkpoint written"
    return torch.load(sorted(checkpoints)[-1], weights_only=False)


def test_fit_resnet20_with_usf(cifar10_root, tmp_path):
    checkpoint = _fit(["--model.rule_space=usf"], cifar10_root, tmp_path)
    assert checkpoint["hyper_parameters"]["backbone"] == "resnet20"
    assert checkpoint["hyper_parameters"]["rule_space"] == "usf"
    assert any(k.endswith("layer3.2.conv2.feedback.seed") for k in checkpoint["state_dict"])
    metrics = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv")
    config = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert config["model"]["rule_space"] == "usf"
    assert os.path.exists(tmp_path / "lightning_logs" / "version_0" / "hparams.yaml")
    assert not metrics.exists() or "val_acc" in metrics.read_text()


def test_fit_with_example_config_mapping_and_cli_optimizer(cifar10_root, tmp_path):
    checkpoint = _fit(["--model.backbone=simple_cnn",
                       '--model.rule_space={"features.0": "fa", "fc*": "dfa", "*": "frsf"}',
                       "--optimizer=Adam", "--optimizer.lr=0.002",
                       "--lr_scheduler=StepLR", "--lr_scheduler.step_size=1", "--lr_scheduler.gamma=0.5"],
                      cifar10_root, tmp_path, config=["--config=examples/mixed_rules.yaml"])
    assert checkpoint["epoch"] == 0 and checkpoint["hyper_parameters"]["keep_ends_bp"] is True  # from the YAML
    assert checkpoint["hyper_parameters"]["rule_space"] == {"features.0": "fa", "fc*": "dfa", "*": "frsf"}
    (optimizer,) = checkpoint["optimizer_states"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(0.001)  # Adam at 0.002, halved after one epoch
    assert "betas" in optimizer["param_groups"][0]
    state = checkpoint["state_dict"]
    assert state["backbone.fc1.feedback.matrix"].shape == (10, 128 * 4 * 4)  # dfa: [dim(e), input size]
    assert "backbone.fc2.feedback.matrix" not in state  # keep_ends_bp: the classifier stays bp


def test_print_config_shows_rule_space(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--model.rule_space=brsf", "--data.root=.", "--print_config"])
    assert exit_info.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["rule_space"] == "brsf" and config["model"]["backbone"] == "resnet20"


@pytest.mark.parametrize("args, message", [
    (["--model.rule_space=fx"], "Unknown learning rule 'fx'. Valid rules: bp, brsf, dfa, fa, frsf, usf"),
    (['--model.rule_space={"layer9.*": "fa"}'], "pattern 'layer9.*' -> 'fa' matches no layer"),
    (["--model.init=orthogonal"], "Unknown feedback init 'orthogonal'"),
    (["--model.scheduler=step"], "scheduler"),
])
def test_bad_input_is_a_usage_error_before_training(args, message, cifar10_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--data.root={cifar10_root}", f"--trainer.default_root_dir={tmp_path}", *SMALL, *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "lightning_logs").exists()


def test_bad_data_root_names_the_path(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--data.root={tmp_path / 'nowhere'}"])
    assert str(tmp_path / "nowhere") in capsys.readouterr().err
