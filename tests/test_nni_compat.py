"""Each NNI 3.0 adaptation in ``lightning_biorules.nas.nni_compat`` against real NNI objects.

Every test here fails when the adaptation it covers is removed (see the module docstring of
``nni_compat`` for the list).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
import pytest

import nni
import nni.tools.nnictl.config_utils as nnictl_config_utils  # binds NNI_HOME_DIR now, as in real use
from lightning_biorules.nas import nni_compat
from lightning_biorules.nas.space import MacroSearchSpace

REPO = Path(__file__).resolve().parents[1]


def _node_managers(experiment_id: str) -> list[int]:
    """NNI Node managers of ``experiment_id``, found with psutil (independently of nni_compat)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = proc.info.get("cmdline") or []
        if proc.info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        if any("nni_node" in part and part.endswith("main.js") for part in cmd) and experiment_id in cmd:
            found.append(proc.info["pid"])
    return found


def _trivial_evaluator(model):
    nni.report_final_result(0.5)


# ---------------------------------------------------------------------------------------------
# 0. import warning
# ---------------------------------------------------------------------------------------------
def test_import_silences_torch_nn_wrapper_warnings():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
        )

    raw = run("import nni.nas.nn.pytorch")
    assert raw.returncode != 0 and "is found to be not a nn.Module" in raw.stderr
    ours = run("import lightning_biorules.nas.nni_compat, nni.nas.nn.pytorch")
    assert ours.returncode == 0, ours.stderr


# ---------------------------------------------------------------------------------------------
# 1. freeze() with add_mutable
# ---------------------------------------------------------------------------------------------
from nni.mutable import ensure_frozen  # noqa: E402
from nni.nas.nn.pytorch import ModelSpace  # noqa: E402


class _PlainSpace(ModelSpace):
    def __init__(self, width: int = 2):
        super().__init__()
        self.width = width
        self.rule = ensure_frozen(self.add_mutable(nni.choice("rule", ["bp", "fa", "dfa"])))


class _FixedSpace(nni_compat.FreezableModelSpace):
    def __init__(self, width: int = 2):
        super().__init__()
        self.width = width
        self.rule = ensure_frozen(self.add_mutable(nni.choice("rule", ["bp", "fa", "dfa"])))


def test_plain_model_space_with_add_mutable_cannot_freeze():
    space = _PlainSpace()
    with pytest.raises(NotImplementedError, match="freeze"):
        space.freeze({"rule": "fa"})
    with pytest.raises(NotImplementedError, match="freeze"):
        space.random()


def test_freezable_model_space_freezes_samples_and_random():
    space = _FixedSpace(width=5)
    assert space.rule == "bp"  # dry run: the first choice
    frozen = space.freeze({"rule": "dfa"})
    assert isinstance(frozen, _FixedSpace) and frozen.rule == "dfa" and frozen.width == 5
    memo: dict = {}
    sampled = space.random(memo=memo, random_state=np.random.RandomState(1))
    assert sampled.rule == memo["rule"] and memo["rule"] in ("bp", "fa", "dfa")
    from nni.mutable import SampleValidationError

    with pytest.raises(SampleValidationError, match="nope"):
        space.freeze({"rule": "nope"})


def test_freezable_model_space_works_in_raw_format():
    from nni.nas.space import RawFormatModelSpace

    raw = RawFormatModelSpace.from_model(MacroSearchSpace(layers_per_stage=1, channels=(8, 16)))
    model = raw.random(random_state=np.random.RandomState(0))
    arch = model.executable_model().arch
    assert set(arch) >= {"op_0", "rule_0", "op_1", "rule_1"}
    assert model.sample == {k: arch[k] for k in model.sample}


# ---------------------------------------------------------------------------------------------
# 2. ~/nni-experiments redirection
# ---------------------------------------------------------------------------------------------
def test_nni_home_env_alone_does_not_redirect_registry(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    # NNI bound ~/nni-experiments at import time: changing HOME afterwards has no effect
    registry = Path(nnictl_config_utils.Experiments.__init__.__defaults__[0])
    assert tmp_path not in registry.parents


def test_nni_home_redirects_registry_and_restores(tmp_path):
    before_home = os.environ.get("HOME")
    before_default = nnictl_config_utils.Experiments.__init__.__defaults__
    with nni_compat.nni_home(tmp_path) as registry:
        assert registry == tmp_path.resolve() / "nni-experiments"
        assert os.environ["HOME"] == str(tmp_path.resolve())
        experiments = nnictl_config_utils.Experiments()
        assert Path(experiments.experiment_file) == registry / ".experiment"
    assert os.environ.get("HOME") == before_home
    assert nnictl_config_utils.Experiments.__init__.__defaults__ == before_default


def test_sequential_experiment_registry_goes_to_redirected_home(tmp_path):
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    real_registry = Path(nnictl_config_utils.NNI_HOME_DIR) / ".experiment"
    config = NasExperimentConfig("sequential", "simplified")
    config.max_trial_number = 2
    config.experiment_working_directory = str(tmp_path / "exps")
    exp = NasExperiment(
        MacroSearchSpace(layers_per_stage=1, channels=(8,)), FunctionalEvaluator(_trivial_evaluator), Random(seed=0), config
    )
    with nni_compat.nni_home(tmp_path, set_home_env=False):
        try:
            exp.run()
        finally:
            nni_compat.stop_experiment(exp)
    registry = json.loads((tmp_path / "nni-experiments" / ".experiment").read_text())
    assert registry[exp.id]["status"] == "STOPPED"
    assert (tmp_path / "exps" / exp.id).is_dir()
    if real_registry.exists():
        assert exp.id not in real_registry.read_text()


# ---------------------------------------------------------------------------------------------
# 3. CPU local training service config
# ---------------------------------------------------------------------------------------------
def test_hand_built_ts_config_needs_configure_local_cpu():
    from nni.nas.experiment import NasExperimentConfig

    bare = NasExperimentConfig("ts", "simplified", "local")
    with pytest.raises(ValueError, match="trial_concurrency"):
        bare.canonical_copy()
    bare.trial_concurrency = 1
    bare.trial_gpu_number = 1
    with pytest.raises(ValueError, match="use_active_gpu"):
        bare.canonical_copy()

    config = nni_compat.configure_local_cpu(NasExperimentConfig("ts", "simplified", "local"), trial_concurrency=2)
    canonical = config.canonical_copy()
    assert canonical.trial_concurrency == 2
    assert canonical.trial_gpu_number == 0
    assert canonical.training_service.use_active_gpu is False


def test_set_trial_env_prefixes_trial_command():
    from nni.nas.experiment import NasExperimentConfig

    config = nni_compat.configure_local_cpu(NasExperimentConfig("ts", "simplified", "local"))
    nni_compat.set_trial_env(config, {"HOME": "/x y", "PYTHONPATH": "/a:/b"})
    command = config.canonical_copy().trial_command
    assert command.startswith("HOME='/x y' PYTHONPATH=/a:/b ")
    assert command.endswith("-m nni.nas.execution.training_service trial")


# ---------------------------------------------------------------------------------------------
# 5. evaluator arguments vs nni.load's comment stripping
# ---------------------------------------------------------------------------------------------
def test_nni_load_corrupts_nested_payload_with_double_slash():
    # what the 'ts' engine's websocket channel receives: a JSON-encoded parameter inside a message
    inner = nni.dump({"data": {"root": "/data//cifar10"}})
    message = json.dumps({"type": "X", "content": json.dumps({"parameters": inner})})
    with pytest.raises(ValueError):  # json.JSONDecodeError: "Unterminated string"
        nni.load(message)


@pytest.mark.parametrize("bad", ["/data//cifar10", "/data/#1/cifar10"])
def test_check_evaluator_arguments_rejects_comment_markers(bad):
    with pytest.raises(ValueError, match="nni.load"):
        nni_compat.check_evaluator_arguments({"data": {"root": bad}})


def test_check_evaluator_arguments_rejects_non_json_values():
    import torch

    with pytest.raises(TypeError, match="Tensor"):
        nni_compat.check_evaluator_arguments({"weights": torch.ones(3)})


def test_check_evaluator_arguments_accepts_plain_values():
    args = {"data": {"root": "/data/cifar10", "train_size": 200, "cache": None}, "trainer": {"limit": 0.5}, "l": [1, "a"]}
    assert nni_compat.check_evaluator_arguments(args) is args


# ---------------------------------------------------------------------------------------------
# 6. regularized evolution mutating exactly one choice
# ---------------------------------------------------------------------------------------------
def _children(strategy_cls, n: int = 30) -> tuple[dict, list[dict]]:
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import SimplifiedModelSpace
    from nni.nas.strategy.evolution import Individual

    space = SimplifiedModelSpace.from_model(MacroSearchSpace())
    strategy = strategy_cls(population_size=1, sample_size=1, dedup=False, seed=0)
    strategy.initialize(space, SequentialExecutionEngine())
    parent = dict(space.random(random_state=np.random.RandomState(3)).sample)
    strategy._population.append(Individual(parent, 0.5))
    return parent, [dict(strategy.new_individual().sample) for _ in range(n)]


def _distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in a)


def test_stock_regularized_evolution_children_often_equal_parent():
    from nni.nas.strategy import RegularizedEvolution

    parent, children = _children(RegularizedEvolution)
    assert any(_distance(parent, child) == 0 for child in children)


def test_single_mutation_children_differ_in_exactly_one_label():
    parent, children = _children(nni_compat.SingleMutationRegularizedEvolution)
    assert all(_distance(parent, child) == 1 for child in children)
    changed = {next(k for k in parent if parent[k] != child[k]) for child in children}
    assert len(changed) > 3  # the mutated label varies


# ---------------------------------------------------------------------------------------------
# 2-5 together on the 'ts' engine: Node manager, trial subprocess, stop
# ---------------------------------------------------------------------------------------------
PROBE = '''
import json, os, sys
import nni

def probe(model, out: str):
    with open(out, "w") as fh:
        json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "home": os.environ.get("HOME"),
                   "arch": model.arch}, fh)
    nni.report_final_result(0.75)
'''


@pytest.mark.slow
def test_ts_engine_cpu_trial_env_registry_and_stop(tmp_path, monkeypatch):
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    module_dir = tmp_path / "probe_pkg"
    module_dir.mkdir()
    (module_dir / "nni_probe_module.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.syspath_prepend(str(module_dir))
    import nni_probe_module

    home = tmp_path / "home"
    out = tmp_path / "probe.json"
    real_home = os.environ.get("HOME", "")
    real_registry = Path(nnictl_config_utils.NNI_HOME_DIR) / ".experiment"

    config = nni_compat.configure_local_cpu(NasExperimentConfig("ts", "simplified", "local"))
    nni_compat.set_trial_env(
        config, {"HOME": real_home, "PYTHONPATH": os.pathsep.join([str(module_dir), str(REPO)])}
    )
    config.max_trial_number = 1
    config.experiment_working_directory = str(tmp_path / "exps")
    evaluator = FunctionalEvaluator(nni_probe_module.probe, out=str(out))
    exp = NasExperiment(MacroSearchSpace(layers_per_stage=1, channels=(8,)), evaluator, Random(seed=0), config)

    with nni_compat.nni_home(home):
        try:
            exp.run(port=nni_compat.free_port())
            metrics = [m.metric for m in exp.strategy.list_models(sort=False)]
            # NNI leaves the Node manager (and web UI) running after run() returns
            assert _node_managers(exp.id), "expected the NNI manager to still run after run()"
        finally:
            nni_compat.stop_experiment(exp)

    assert metrics == [0.75]
    assert _node_managers(exp.id) == []
    probe = json.loads(out.read_text())
    assert probe["cuda"] == ""  # trial_gpu_number = 0: the trial sees no GPU
    assert probe["home"] == real_home  # set_trial_env gave the trial the real HOME back
    registry = json.loads((home / "nni-experiments" / ".experiment").read_text())
    assert registry[exp.id]["status"] == "STOPPED"
    if real_registry.exists():
        assert exp.id not in real_registry.read_text()
    # stopping twice is harmless
    nni_compat.stop_experiment(exp)
