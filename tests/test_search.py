"""MacroNet, the (op, rule) search space, and end-to-end NNI searches on real CIFAR-10 images.

The searches are tiny (a few trials, 200 training images, 1-2 batches per epoch) and run on NNI's
sequential engine in-process; a killed-and-resumed search runs on the training-service ('ts')
engine (the web UI, concurrency and the ts engine's faults are in ``test_webui.py``). All NNI
files go to temporary folders.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml

from lightning_biorules.models.macro import MACRO_OPS, MacroNet, macro_rule_space
from lightning_biorules.nas import nni_compat
from lightning_biorules.nas.journal import read_journal
from lightning_biorules.nas.search import build_search_parser, run_search
from lightning_biorules.nas.space import MacroSearchSpace, arch_layers, arch_to_config
from lightning_biorules.nas.spaces import arch_from_config
from lightning_biorules.rules import available_rules

#: the paper's six rules, explicitly: other tests may register extra rules in the global registry
PAPER_RULES = ["bp", "fa", "usf", "brsf", "frsf", "dfa"]

TINY = dict(
    space_options={"rules": PAPER_RULES},
    trial_epochs=1,
    limit_train_batches=2,
    train_size=200,
    val_size=100,
    batch_size=50,
    population_size=2,
    sample_size=2,
)
#: 3 layers, 2 ops, 2 rules: 64 architectures
SMALL_MACRO = {"layers_per_stage": 1, "ops": ["conv3x3", "skip_connect"], "rules": ["bp", "fa"]}
REPO = Path(__file__).resolve().parents[1]


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
        work_dir=str(work), cache_dir=cache_dir, final_epochs=7, top_k=3, **TINY,
    )
    return result, work


@pytest.mark.slow
def test_regularized_evolution_search(evolution):
    result, work = evolution
    assert result.strategy == "regularized_evolution" and result.engine == "sequential" and result.space == "macro"
    assert len(result.trials) == 4
    assert all(t.succeeded and t.status == "trained" and not t.replayed for t in result.trials)
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
    assert saved["space"] == "macro" and saved["space_options"] == {"rules": PAPER_RULES}
    experiment = json.loads((work / "experiment.json").read_text())
    assert experiment["experiment_id"] == result.experiment_id and experiment["status"] == "finished"


@pytest.mark.slow
def test_every_finished_trial_is_journaled(evolution):
    result, work = evolution
    journal = read_journal(work / "trials.jsonl")
    assert result.journal == str(work.resolve() / "trials.jsonl")
    assert [r["sample"] for r in journal] == [t.arch for t in result.trials]
    assert len({r["fingerprint"] for r in journal}) == 1
    for record, trial in zip(journal, result.trials):
        assert record["status"] == "trained" and record["metric"] == trial.accuracy
        assert record["intermediates"] == trial.intermediates
        assert record["arch"]["rule_stem"] == "bp" and record["error"] is None
        assert record["duration_s"] == trial.duration_s > 0


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
    assert Path(config["data"]["root"]).resolve() == Path(cifar10_root).resolve()  # absolute, so the YAML works anywhere
    assert Path(config["data"]["root"]).is_absolute()
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
def test_top_k_yamls(evolution):
    result, work = evolution
    assert result.top_yamls == [str(work.resolve() / "top" / f"rank{i}.yaml") for i in (1, 2, 3)]
    ranked = sorted(result.trials, key=lambda t: (-t.accuracy, t.index))
    for path, trial in zip(result.top_yamls, ranked):
        config = yaml.safe_load(Path(path).read_text())
        assert arch_from_config(config) == {**result.best_arch, **trial.arch}
        assert config["trainer"] == {"max_epochs": 7} and config["data"] == result.best_config["data"]
    assert yaml.safe_load(Path(result.top_yamls[0]).read_text()) == result.best_config


@pytest.mark.slow
@pytest.mark.parametrize("which", ["best", "rank2"])
def test_exported_yamls_train_with_biorules_fit(which, evolution, cifar10_root, tmp_path):
    from lightning_biorules.cli import main as biorules

    result, _ = evolution
    path = result.output_yaml if which == "best" else result.top_yamls[1]
    biorules([
        "fit", "--config", path, "--data.root", str(cifar10_root),
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
    first = _random_search(cifar10_root, cache_dir, tmp_path / "a", max_trials=3)
    second = _random_search(cifar10_root, cache_dir, tmp_path / "b", max_trials=3)
    assert first.strategy == "random" and len(first.trials) == 3
    assert all(t.succeeded for t in first.trials)
    assert len({json.dumps(t.arch, sort_keys=True) for t in first.trials}) == 3
    assert [t.arch for t in first.trials] == [t.arch for t in second.trials]
    assert [t.accuracy for t in first.trials] == [t.accuracy for t in second.trials]
    assert first.best_arch == second.best_arch


@pytest.mark.slow
def test_nb201_space_with_non_aging_evolution(cifar10_root, cache_dir, tmp_path):
    from lightning_biorules.module import ImageClassifier

    options = {"C": 4, "N": 1, "rules": ["bp", "fa"]}
    result = run_search(str(cifar10_root), strategy="evolution", space="nb201", max_trials=3,
                        work_dir=str(tmp_path), cache_dir=cache_dir, top_k=2,
                        **{**TINY, "space_options": options, "limit_train_batches": 1})
    assert result.space == "nb201" and result.strategy == "evolution" and len(result.trials) == 3
    assert all(t.succeeded for t in result.trials)
    assert any(k.startswith("rule_") and "<-" in k for k in result.trials[0].arch)  # NAS-Bench-201 edge labels
    assert result.best_config["model"]["backbone"] == "nb201"
    read_back = arch_from_config(result.best_config)  # rules of conv-less edges read back as bp
    assert {k: v for k, v in read_back.items() if k.startswith("op_")} == \
           {k: v for k, v in result.best_arch.items() if k.startswith("op_")}
    for path in result.top_yamls:
        ImageClassifier(num_classes=10, **yaml.safe_load(Path(path).read_text())["model"])


@pytest.mark.slow
def test_darts_space_with_regularized_evolution(cifar10_root, cache_dir, tmp_path):
    from lightning_biorules import rule_map
    from lightning_biorules.module import ImageClassifier

    options = {"C": 4, "layers": 3, "rules": ["bp", "usf", "dfa"]}
    result = run_search(str(cifar10_root), strategy="regularized_evolution", space="darts", max_trials=3,
                        work_dir=str(tmp_path), cache_dir=cache_dir,
                        **{**TINY, "space_options": options, "limit_train_batches": 1})
    assert result.space == "darts" and len(result.trials) == 3 and all(t.succeeded for t in result.trials)
    assert {"normal/rule_2_0", "reduce/rule_2_0", "normal/op_2_0", "normal/input_2_0"} <= set(result.best_arch)
    model = ImageClassifier(num_classes=10, **result.best_config["model"])
    rules = set(rule_map(model.backbone).values())
    searched = {v for k, v in result.best_arch.items() if "/rule_" in k}
    assert rules <= searched | {"bp"}  # every layer's rule is a searched edge rule or the fixed bp ends


def _faulty_rule(kind: str) -> str:
    """Register a learning rule that crashes (``raise``) or sends NaN feedback (``nan``)."""
    from lightning_biorules import MatrixFeedbackRule, register_rule

    @register_rule("faulty")
    class Faulty(MatrixFeedbackRule):
        def feedback_matrix(self, weight: torch.Tensor) -> torch.Tensor:
            if kind == "raise":
                raise RuntimeError("faulty rule crashed")
            return torch.full_like(weight, float("nan"))

    return "faulty"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_failing_trials_do_not_stop_the_search(kind, cifar10_root, cache_dir, tmp_path):
    # real faults: a plug-in rule that raises in the forward pass, or whose feedback makes the loss NaN
    rule = _faulty_rule(kind)
    options = {"layers_per_stage": 1, "channels": [8, 16], "ops": ["conv3x3"], "rules": ["bp", rule]}
    result = _random_search(cifar10_root, cache_dir, tmp_path, space_options=options)
    assert len(result.trials) == 4  # all 4 architectures of the space
    failed = [t for t in result.trials if not t.succeeded]
    passed = [t for t in result.trials if t.succeeded]
    assert len(failed) == 3 and len(passed) == 1
    assert all(rule in t.arch.values() and t.status == "failed" and t.accuracy is None for t in failed)
    assert passed[0].arch == {"op_0": "conv3x3", "rule_0": "bp", "op_1": "conv3x3", "rule_1": "bp"}
    assert result.best_arch["rule_0"] == result.best_arch["rule_1"] == "bp"
    journal = {json.dumps(r["sample"], sort_keys=True): r for r in read_journal(tmp_path / "trials.jsonl")}
    reason = "faulty rule crashed" if kind == "raise" else "non-finite"
    for trial in failed:
        record = journal[json.dumps(trial.arch, sort_keys=True)]
        assert record["status"] == "failed" and reason in record["error"] and trial.error == record["error"]


@pytest.mark.slow
def test_search_fails_cleanly_when_every_trial_diverges(cifar10_root, cache_dir, tmp_path):
    with pytest.raises(RuntimeError, match="no trial succeeded"):
        _random_search(cifar10_root, cache_dir, tmp_path, max_trials=2, model_kwargs={"lr": 1e8})
    journal = read_journal(tmp_path / "trials.jsonl")
    assert len(journal) == 2 and all(r["status"] == "failed" and "non-finite" in r["error"] for r in journal)
    assert json.loads((tmp_path / "experiment.json").read_text())["status"] == "failed"


def test_work_dir_of_a_running_search_is_refused(cifar10_root, tmp_path):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "experiment.json").write_text(json.dumps({
            "experiment_id": "abcd1234", "status": "running", "owner_pid": owner.pid,
            "owner_create_time": psutil.Process(owner.pid).create_time(),
        }))
        with pytest.raises(RuntimeError, match="in use by a running search"):
            _random_search(cifar10_root, None, tmp_path, max_trials=1)
    finally:
        owner.kill()
        owner.wait()


def test_unknown_strategy_and_space_are_rejected(cifar10_root, tmp_path):
    with pytest.raises(ValueError, match="Valid strategies: evolution, random, regularized_evolution"):
        run_search(str(cifar10_root), strategy="darts", work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="Valid spaces"):
        run_search(str(cifar10_root), space="nasnet", work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="keep_ui"):
        run_search(str(cifar10_root), keep_ui=True, work_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# kill -9 and resume
# ---------------------------------------------------------------------------------------------
def _search_command(root, work, cache_dir, *extra) -> list[str]:
    return [
        sys.executable, "-m", "lightning_biorules.cli", "search", "--data.root", str(root),
        "--data.train_size", "200", "--data.val_size", "100", "--data.batch_size", "50", "--data.cache_dir", cache_dir,
        "--limit_train_batches", "1", "--space_options", json.dumps(SMALL_MACRO), "--work_dir", str(work), *extra,
    ]


def _kill_when_journal_has(proc: subprocess.Popen, journal: Path, n: int, timeout: float = 150.0) -> int:
    """SIGKILL ``proc`` as soon as ``journal`` holds ``n`` trials; returns how many it holds then."""
    deadline = time.monotonic() + timeout
    while len(read_journal(journal)) < n:
        if proc.poll() is not None:
            pytest.fail(f"the search ended (status {proc.returncode}) before {n} trials were journaled")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {n} journaled trials after {timeout} s")
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return len(read_journal(journal))


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


@pytest.mark.slow
def test_killed_search_resumes_without_retraining(cifar10_root, cache_dir, tmp_path):
    work = tmp_path / "work"
    settings = dict(strategy="evolution", max_trials=5, population_size=2, sample_size=2, trial_epochs=2,
                    limit_train_batches=1, train_size=200, val_size=100, batch_size=50, cache_dir=cache_dir,
                    space_options=SMALL_MACRO, seed=0)
    proc = subprocess.Popen(
        _search_command(cifar10_root, work, cache_dir, "--strategy", "evolution", "--max_trials", "5",
                        "--population_size", "2", "--sample_size", "2", "--trial_epochs", "2"),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    done = _kill_when_journal_has(proc, work / "trials.jsonl", 2)
    assert 2 <= done < 5, "the search finished before it could be killed"
    before = (work / "trials.jsonl").read_text()

    result = run_search(str(cifar10_root), work_dir=str(work), resume=True, **settings)
    assert len(result.trials) == 5
    assert [t.replayed for t in result.trials] == [True] * done + [False] * (5 - done)
    journal = read_journal(work / "trials.jsonl")
    assert (work / "trials.jsonl").read_text().startswith(before)  # the finished trials are kept as they were
    assert len(journal) == 5 and [r["sample"] for r in journal] == [t.arch for t in result.trials]
    for trial, record in zip(result.trials[:done], journal):
        assert (trial.accuracy, trial.intermediates, trial.duration_s) == \
               (record["metric"], record["intermediates"], record["duration_s"])
        assert len(trial.intermediates) == 2
    # the seeded strategy walked the same path as an uninterrupted search
    fresh = run_search(str(cifar10_root), work_dir=str(tmp_path / "fresh"), **settings)
    assert [(t.arch, t.accuracy) for t in fresh.trials] == [(t.arch, t.accuracy) for t in result.trials]
    assert result.best_arch == fresh.best_arch
    # a second resume of a finished search trains nothing
    again = run_search(str(cifar10_root), work_dir=str(work), resume=True, **settings)
    assert all(t.replayed for t in again.trials) and len(read_journal(work / "trials.jsonl")) == 5


@pytest.mark.slow
def test_killed_ts_search_resumes_and_its_orphaned_manager_is_stopped(cifar10_root, cache_dir, tmp_path, experiment_processes):
    work = tmp_path / "work"
    proc = subprocess.Popen(
        _search_command(cifar10_root, work, cache_dir, "--strategy", "random", "--max_trials", "3",
                        "--engine", "ts", "--concurrency", "2"),
        env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    done = _kill_when_journal_has(proc, work / "trials.jsonl", 2)
    assert done == 2
    killed_id = json.loads((work / "experiment.json").read_text())["experiment_id"]
    # NNI's Node manager outlives the killed Python process
    assert nni_compat.nni_manager_processes(killed_id), "expected an orphaned NNI manager"

    # a '//' in the data root would corrupt NNI's messages on this engine; run_search normalises it
    root = str(cifar10_root).replace("/data/", "/data//")
    result = run_search(root, strategy="random", max_trials=3, engine="ts", work_dir=str(work), resume=True,
                        limit_train_batches=1, train_size=200, val_size=100, batch_size=50, cache_dir=cache_dir,
                        space_options=SMALL_MACRO)
    assert experiment_processes(killed_id) == []
    assert result.engine == "ts" and len(result.trials) == 3
    assert [t.replayed for t in result.trials] == [True, True, False]
    assert all(t.succeeded and len(t.intermediates) == 1 for t in result.trials)
    journal = read_journal(work / "trials.jsonl")
    assert len(journal) == 3 and len({json.dumps(r["sample"], sort_keys=True) for r in journal}) == 3
    assert journal[2]["experiment_id"] == result.experiment_id  # written by the ts trial process
    registry = json.loads((work / "nni-experiments" / ".experiment").read_text())
    assert {killed_id, result.experiment_id} <= set(registry)
    assert (work / "nni-experiments" / result.experiment_id / "environments").is_dir()
    assert Path(result.output_yaml).is_file()
    assert experiment_processes(result.experiment_id) == []


# ---------------------------------------------------------------------------------------------
# biorules search
# ---------------------------------------------------------------------------------------------
def test_search_parser_nested_data_args():
    parser = build_search_parser()
    cfg = parser.parse_args(["--data.root", "/d", "--strategy", "evolution", "--max_trials", "3",
                             "--data.train_size", "100", "--space_options", "{rules: [bp, fa], layers_per_stage: 1}",
                             "--limit_train_batches", "1", "--concurrency", "2", "--resume", "--top_k", "3"])
    assert cfg.data.root == "/d" and cfg.data.train_size == 100 and cfg.data.batch_size == 64
    assert cfg.limit_train_batches == 1 and isinstance(cfg.limit_train_batches, int)  # one batch, not 100%
    assert cfg.strategy == "evolution" and cfg.max_trials == 3
    assert cfg.space == "macro" and cfg.space_options == {"rules": ["bp", "fa"], "layers_per_stage": 1}
    assert cfg.trial_concurrency == 2 and cfg.resume is True and cfg.top_k == 3 and cfg.keep_ui is False
    other = parser.parse_args(["--data.root", "/d", "--space", "nb201", "--trial_concurrency", "3"])
    assert other.space == "nb201" and other.trial_concurrency == 3
    for bad in (["--strategy", "darts"], ["--space", "nasnet"], ["--rules", "[bp]"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--data.root", "/d", *bad])


def test_search_help_is_tidy(capsys):
    with pytest.raises(SystemExit):
        build_search_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    for flag in ("--space ", "--space_options", "--strategy", "--concurrency", "--keep_ui", "--resume", "--top_k",
                 "--engine", "--port"):
        assert flag in text
    for gone in ("--layers_per_stage", "--channels", "--ops ", "--rules", "--search_ends"):
        assert gone not in text


def test_search_command_reports_bad_space_options(tmp_path, capsys):
    from lightning_biorules.cli import main as biorules

    with pytest.raises(SystemExit) as exc:
        biorules(["search", "--data.root", str(tmp_path), "--space_options", "{layer_per_stage: 1}",
                  "--work_dir", str(tmp_path)])
    assert exc.value.code == 2
    assert "layer_per_stage" in capsys.readouterr().err


@pytest.mark.slow
def test_biorules_search_command(cifar10_root, cache_dir, tmp_path, capsys):
    from lightning_biorules.cli import main as biorules

    out = tmp_path / "out" / "chosen.yaml"
    biorules([
        "search", "--data.root", str(cifar10_root), "--strategy", "evolution", "--max_trials", "3",
        "--population_size", "2", "--sample_size", "2", "--trial_epochs", "1", "--limit_train_batches", "1",
        "--data.train_size", "100", "--data.val_size", "50", "--data.batch_size", "50",
        "--data.cache_dir", cache_dir, "--work_dir", str(tmp_path / "work"), "--output_yaml", str(out),
        "--space_options", json.dumps({"rules": PAPER_RULES}), "--top_k", "2",
    ])
    assert "best val_acc" in capsys.readouterr().out
    config = yaml.safe_load(out.read_text())
    assert config["model"]["backbone"] == "macro"
    saved = json.loads((tmp_path / "work" / "search_result.json").read_text())
    assert len(saved["trials"]) == 3 and saved["output_yaml"] == str(out) and saved["strategy"] == "evolution"
    assert len(saved["top_yamls"]) == 2 and all(Path(p).is_file() for p in saved["top_yamls"])
