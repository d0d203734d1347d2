"""MacroNet, the (op, rule) search space, and end-to-end NNI searches on real CIFAR-10 images.

The searches are tiny (4 trials, 200 training images, 2 batches of one epoch) and run on NNI's
sequential engine in-process, plus one 2-trial search on the training-service ('ts') engine.
All NNI files go to temporary folders.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from lightning_biorules.models.macro import MACRO_OPS, MacroNet, macro_rule_space
from lightning_biorules.nas.search import FAULT_ENV, build_search_parser, run_search
from lightning_biorules.nas.space import MacroSearchSpace, arch_from_config, arch_to_config, arch_layers
from lightning_biorules.rules import available_rules

#: the paper's six rules, explicitly: other tests may register extra rules in the global registry
PAPER_RULES = ["bp", "fa", "usf", "brsf", "frsf", "dfa"]

TINY = dict(
    rules=PAPER_RULES,
    trial_epochs=1,
    limit_train_batches=2,
    train_size=200,
    val_size=100,
    batch_size=50,
    population_size=2,
    sample_size=2,
)


def _node_managers() -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("status") != psutil.STATUS_ZOMBIE and any(
            "nni_node" in part and part.endswith("main.js") for part in cmd
        ):
            found.append((proc.info["pid"], cmd))
    return found


def _hamming(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in a)


# ---------------------------------------------------------------------------------------------
# MacroNet
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", MACRO_OPS)
def test_macronet_every_op_in_normal_and_reduction_layers(op):
    net = MacroNet([op] * 6, num_classes=7)
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    names = dict(net.named_modules())
    assert {"stem", "layers.0", "layers.5", "classifier"} <= set(names)
    assert isinstance(names["classifier"], torch.nn.Linear)
    # layers 2 and 4 open stages 2 and 3: stride 2 and a channel change, also for skip_connect
    x = net.stem(torch.randn(1, 3, 32, 32))
    shapes = []
    for layer in net.layers:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 32, 32), (16, 32, 32), (32, 16, 16), (32, 16, 16), (64, 8, 8), (64, 8, 8)]


def test_macronet_op_structure():
    net = MacroNet(["sep_conv3x3", "skip_connect", "skip_connect", "dil_conv3x3"], channels=(8, 16))
    depthwise, pointwise = net.layers[0][0], net.layers[0][1]
    assert depthwise.groups == 8 and depthwise.kernel_size == (3, 3) and pointwise.kernel_size == (1, 1)
    assert len(net.layers[1]) == 0  # identity
    assert net.layers[2][0].kernel_size == (1, 1) and net.layers[2][0].stride == (2, 2)
    assert net.layers[3][0].dilation == (2, 2)


def test_macronet_validates_arguments():
    with pytest.raises(ValueError, match="unknown macro op"):
        MacroNet(["conv3x3", "conv7x7", "conv3x3"])
    with pytest.raises(ValueError, match="stages"):
        MacroNet(["conv3x3"] * 4)  # 4 layers, 3 stages
    with pytest.raises(ValueError):
        MacroNet(["conv3x3"] * 6, layers_per_stage=3)
    assert MacroNet(["conv3x3"] * 3, layers_per_stage=1).layers_per_stage == 1


def test_macro_rule_space_patterns():
    space = macro_rule_space(["fa", "dfa"], classifier_rule="usf")
    assert space == {"stem.*": "bp", "layers.0.*": "fa", "layers.1.*": "dfa", "classifier": "usf"}


def test_macro_rule_space_skips_identity_layers():
    ops = ["skip_connect", "conv3x3", "skip_connect", "skip_connect", "conv5x5", "skip_connect"]
    space = macro_rule_space(["fa", "usf", "dfa", "frsf", "brsf", "fa"], ops=ops)
    # layers 0, 3 and 5 are identities (no weights); layer 2 reduces, so its skip is a 1x1 conv
    assert space == {"stem.*": "bp", "layers.1.*": "usf", "layers.2.*": "dfa", "layers.4.*": "brsf",
                     "classifier": "bp"}


def test_macro_backbone_is_registered():
    from lightning_biorules.models import build_backbone

    net = build_backbone("macro", num_classes=10, ops=["conv3x3"] * 3, channels=[8, 16, 32])
    assert isinstance(net, MacroNet)


# ---------------------------------------------------------------------------------------------
# search space
# ---------------------------------------------------------------------------------------------
def test_space_labels_side_by_side_and_defaults():
    space = MacroSearchSpace()
    labels = list(space.simplify())
    assert labels == [f"{kind}_{i}" for i in range(6) for kind in ("op", "rule")]
    assert list(space.simplify()["rule_0"].values) == available_rules()
    assert list(space.simplify()["op_0"].values) == list(MACRO_OPS)
    assert space.arch["rule_stem"] == "bp" and space.arch["rule_classifier"] == "bp"


def test_space_options():
    space = MacroSearchSpace(layers_per_stage=1, ops=["conv3x3", "skip_connect"], rules=["fa", "dfa"], search_ends=True)
    labels = space.simplify()
    assert set(labels) == {"op_0", "rule_0", "op_1", "rule_1", "op_2", "rule_2", "rule_stem", "rule_classifier"}
    assert list(labels["rule_stem"].values) == ["fa", "dfa"]
    with pytest.raises(ValueError, match="unknown learning rule"):
        MacroSearchSpace(rules=["bp", "hebbian"])
    with pytest.raises(ValueError, match="op"):
        MacroSearchSpace(ops=["conv9x9"])


def test_freeze_gives_arch_and_config():
    space = MacroSearchSpace(layers_per_stage=1, channels=(8, 16, 32))
    sample = {"op_0": "sep_conv5x5", "rule_0": "fa", "op_1": "skip_connect", "rule_1": "dfa",
              "op_2": "conv3x3", "rule_2": "usf"}
    frozen = space.freeze(sample)
    assert frozen.arch == {**sample, "rule_stem": "bp", "rule_classifier": "bp"}
    assert frozen.net.ops == ("sep_conv5x5", "skip_connect", "conv3x3")
    config = frozen.to_config(data={"root": "/x"}, trainer={"max_epochs": 3})
    assert config == {
        "model": {
            "backbone": "macro",
            "backbone_kwargs": {"ops": ["sep_conv5x5", "skip_connect", "conv3x3"], "channels": [8, 16, 32],
                                "layers_per_stage": 1},
            "rule_space": {"stem.*": "bp", "layers.0.*": "fa", "layers.1.*": "dfa", "layers.2.*": "usf",
                           "classifier": "bp"},
        },
        "data": {"root": "/x"},
        "trainer": {"max_epochs": 3},
    }
    assert arch_from_config(config) == frozen.arch
    assert arch_layers(sample) == (["sep_conv5x5", "skip_connect", "conv3x3"], ["fa", "dfa", "usf"])
    with pytest.raises(ValueError, match="set by the architecture"):
        arch_to_config(sample, channels=(8, 16, 32), model={"backbone": "resnet20"})


def test_config_builds_image_classifier_with_the_rules():
    from lightning_biorules.module import ImageClassifier

    arch = {"op_0": "conv3x3", "rule_0": "fa", "op_1": "sep_conv3x3", "rule_1": "frsf",
            "op_2": "skip_connect", "rule_2": "usf", "rule_classifier": "dfa"}
    config = arch_to_config(arch, channels=(8, 16, 32))
    model = ImageClassifier(num_classes=10, **config["model"])
    rules = model.rules
    assert rules["stem.0"] == "bp" and rules["classifier"] == "dfa"
    assert rules["layers.0.0"] == "fa"
    assert rules["layers.1.0"] == "frsf" and rules["layers.1.1"] == "frsf"
    assert rules["layers.2.0"] == "usf"  # skip_connect in a reducing layer is a 1x1 conv
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_config_with_identity_layers_builds():
    from lightning_biorules.module import ImageClassifier

    arch = {f"op_{i}": "skip_connect" for i in range(6)} | {f"rule_{i}": "fa" for i in range(6)}
    config = arch_to_config(arch)
    assert set(config["model"]["rule_space"]) == {"stem.*", "layers.2.*", "layers.4.*", "classifier"}
    model = ImageClassifier(num_classes=10, **config["model"])
    assert model.rules == {"stem.0": "bp", "layers.2.0": "fa", "layers.4.0": "fa", "classifier": "bp"}


# ---------------------------------------------------------------------------------------------
# end-to-end searches (sequential engine)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("search_cache"))


@pytest.fixture(scope="module")
def evolution(cifar10_root, cache_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("evolution")
    result = run_search(
        str(cifar10_root), strategy="regularized_evolution", max_trials=4, seed=0,
        work_dir=str(work), cache_dir=cache_dir, final_epochs=7, **TINY,
    )
    return result, work


@pytest.mark.slow
def test_regularized_evolution_search(evolution):
    result, work = evolution
    assert result.strategy == "regularized_evolution" and result.engine == "sequential"
    assert len(result.trials) == 4
    assert all(t.succeeded and t.status == "trained" for t in result.trials)
    assert all(0.0 <= t.accuracy <= 1.0 for t in result.trials)
    assert all(len(t.intermediates) == 1 and t.intermediates[-1] == t.accuracy for t in result.trials)
    archs = [t.arch for t in result.trials]
    assert len({json.dumps(a, sort_keys=True) for a in archs}) == 4
    # population 2: two random individuals, then children one mutation away from a population member
    for i in (2, 3):
        assert min(_hamming(archs[i], archs[j]) for j in range(i)) == 1
    best = max(result.trials, key=lambda t: t.accuracy)
    assert result.best_accuracy == best.accuracy
    assert {k: result.best_arch[k] for k in best.arch} == best.arch
    # all of NNI's files under work_dir
    exp_dir = Path(result.work_dir) / "nni-experiments"
    assert Path(result.work_dir) == work.resolve()
    assert (exp_dir / result.experiment_id).is_dir()
    assert result.experiment_id in json.loads((exp_dir / ".experiment").read_text())
    saved = json.loads((work / "search_result.json").read_text())
    assert saved["best_arch"] == result.best_arch and len(saved["trials"]) == 4
    assert _node_managers() == []


@pytest.mark.slow
def test_best_yaml_round_trip(evolution, cifar10_root, tmp_path):
    from lightning_biorules.module import ImageClassifier

    result, work = evolution
    path = Path(result.output_yaml)
    assert path == work.resolve() / "best.yaml"
    config = yaml.safe_load(path.read_text())
    assert config == result.best_config
    assert set(config) == {"model", "data", "trainer"}
    assert config["trainer"] == {"max_epochs": 7}
    assert config["data"]["root"] == str(Path(cifar10_root).resolve())
    assert config["model"]["backbone"] == "macro"

    model = ImageClassifier(num_classes=10, **config["model"])
    ops = [result.best_arch[f"op_{i}"] for i in range(6)]
    assert list(model.backbone.ops) == ops
    for name, rule in model.rules.items():
        if name.startswith("layers."):
            assert rule == result.best_arch[f"rule_{name.split('.')[1]}"], name
        else:
            assert name in ("stem.0", "classifier") and rule == "bp"


@pytest.mark.slow
def test_best_yaml_trains_with_biorules_fit(evolution, cifar10_root, tmp_path):
    from lightning_biorules.cli import main as biorules

    result, _ = evolution
    biorules([
        "fit", "--config", result.output_yaml, "--data.root", str(cifar10_root),
        "--data.train_size=100", "--data.val_size=50", "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1",
        f"--trainer.default_root_dir={tmp_path}", "--trainer.enable_progress_bar=false",
    ])
    assert list(tmp_path.rglob("*.ckpt")), "biorules fit did not save a checkpoint"


def _random_search(root, cache_dir, work, seed=0, max_trials=4, **kwargs):
    return run_search(str(root), strategy="random", max_trials=max_trials, seed=seed, work_dir=str(work),
                      cache_dir=cache_dir, **{**TINY, **kwargs})


@pytest.mark.slow
def test_random_search_is_deterministic(cifar10_root, cache_dir, tmp_path):
    first = _random_search(cifar10_root, cache_dir, tmp_path / "a")
    second = _random_search(cifar10_root, cache_dir, tmp_path / "b")
    assert first.strategy == "random" and len(first.trials) == 4
    assert all(t.succeeded for t in first.trials)
    assert len({json.dumps(t.arch, sort_keys=True) for t in first.trials}) == 4
    assert [t.arch for t in first.trials] == [t.arch for t in second.trials]
    assert [t.accuracy for t in first.trials] == [t.accuracy for t in second.trials]
    assert first.best_arch == second.best_arch
    assert _node_managers() == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_failing_trials_do_not_stop_the_search(kind, cifar10_root, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, f"{kind}:op_0=skip_connect")
    result = _random_search(
        cifar10_root, cache_dir, tmp_path, layers_per_stage=1, ops=["conv3x3", "skip_connect"], rules=["bp", "fa"],
    )
    assert len(result.trials) == 4
    failed = [t for t in result.trials if not t.succeeded]
    passed = [t for t in result.trials if t.succeeded]
    assert failed and passed
    assert all(t.arch["op_0"] == "skip_connect" and t.status == "failed" and t.accuracy is None for t in failed)
    assert all(t.arch["op_0"] == "conv3x3" for t in passed)
    assert result.best_arch["op_0"] == "conv3x3"
    assert result.best_accuracy == max(t.accuracy for t in passed)


@pytest.mark.slow
def test_search_fails_cleanly_when_every_trial_fails(cifar10_root, cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_ENV, "raise:")
    with pytest.raises(RuntimeError, match="no trial succeeded"):
        _random_search(cifar10_root, cache_dir, tmp_path, max_trials=2)
    assert _node_managers() == []


# ---------------------------------------------------------------------------------------------
# biorules search
# ---------------------------------------------------------------------------------------------
def test_search_parser_nested_data_args():
    parser = build_search_parser()
    cfg = parser.parse_args(["--data.root", "/d", "--strategy", "random", "--max_trials", "3",
                             "--data.train_size", "100", "--rules", "[bp, fa]", "--limit_train_batches", "1"])
    assert cfg.data.root == "/d" and cfg.data.train_size == 100 and cfg.data.batch_size == 64
    assert cfg.limit_train_batches == 1 and isinstance(cfg.limit_train_batches, int)  # one batch, not 100%
    assert cfg.strategy == "random" and cfg.max_trials == 3 and cfg.rules == ["bp", "fa"]
    with pytest.raises(SystemExit):
        parser.parse_args(["--data.root", "/d", "--strategy", "darts"])


@pytest.mark.slow
def test_biorules_search_command(cifar10_root, cache_dir, tmp_path, capsys):
    from lightning_biorules.cli import main as biorules

    out = tmp_path / "out" / "chosen.yaml"
    biorules([
        "search", "--data.root", str(cifar10_root), "--strategy", "regularized_evolution", "--max_trials", "3",
        "--population_size", "2", "--sample_size", "2", "--trial_epochs", "1", "--limit_train_batches", "1",
        "--data.train_size", "100", "--data.val_size", "50", "--data.batch_size", "50",
        "--data.cache_dir", cache_dir, "--work_dir", str(tmp_path / "work"), "--output_yaml", str(out),
        "--rules", json.dumps(PAPER_RULES),
    ])
    assert "best val_acc" in capsys.readouterr().out
    config = yaml.safe_load(out.read_text())
    assert config["model"]["backbone"] == "macro"
    saved = json.loads((tmp_path / "work" / "search_result.json").read_text())
    assert len(saved["trials"]) == 3 and saved["output_yaml"] == str(out)


# ---------------------------------------------------------------------------------------------
# training-service engine
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ts_engine_search(cifar10_root, cache_dir, tmp_path):
    # a '//' in the data root would corrupt NNI's messages on this engine; run_search normalises it
    root = str(cifar10_root).replace("/data/", "/data//")
    result = run_search(root, strategy="random", max_trials=2, engine="ts", work_dir=str(tmp_path),
                        cache_dir=cache_dir, **{**TINY, "limit_train_batches": 1})
    assert result.engine == "ts" and len(result.trials) == 2
    assert all(t.succeeded and len(t.intermediates) == 1 for t in result.trials)
    assert (tmp_path / "nni-experiments" / result.experiment_id / "environments").is_dir()
    assert result.experiment_id in json.loads((tmp_path / "nni-experiments" / ".experiment").read_text())
    assert Path(result.output_yaml).is_file()
    assert _node_managers() == []
