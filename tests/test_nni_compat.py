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
# 6. Ctrl-C during run()
# ---------------------------------------------------------------------------------------------
def _interrupting_evaluator(model):
    raise KeyboardInterrupt


def _sequential_experiment(tmp_path, evaluator):
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    config = NasExperimentConfig("sequential", "simplified")
    config.max_trial_number = 3
    config.experiment_working_directory = str(tmp_path / "exps")
    return NasExperiment(MacroSearchSpace(layers_per_stage=1, channels=(8,)), FunctionalEvaluator(evaluator),
                         Random(seed=0), config)


def test_experiment_run_swallows_keyboard_interrupt(tmp_path):
    exp = _sequential_experiment(tmp_path, _interrupting_evaluator)
    with nni_compat.nni_home(tmp_path, set_home_env=False):
        assert exp.run() is None  # no exception: the caller cannot tell it from a finished run
    assert [m.status.value for m in exp.strategy.list_models(sort=False)] == ["interrupted"]


def test_run_experiment_reraises_keyboard_interrupt(tmp_path):
    exp = _sequential_experiment(tmp_path, _interrupting_evaluator)
    with nni_compat.nni_home(tmp_path, set_home_env=False):
        with pytest.raises(KeyboardInterrupt):
            nni_compat.run_experiment(exp)
    finished = _sequential_experiment(tmp_path, _trivial_evaluator)
    with nni_compat.nni_home(tmp_path, set_home_env=False):
        try:
            nni_compat.run_experiment(finished)  # a normal run returns quietly
        finally:
            nni_compat.stop_experiment(finished)
    assert len(list(finished.strategy.list_models(sort=False))) == 3


# ---------------------------------------------------------------------------------------------
# 2-5 together on the 'ts' engine: Node manager, trial subprocess, stop
# ---------------------------------------------------------------------------------------------
PROBE = """
import hashlib, json, os
import nni
import nni.trial
from lightning_biorules.nas import nni_compat

def score(sample):
    return int(hashlib.md5(json.dumps(sample, sort_keys=True).encode()).hexdigest()[:6], 16) / 2 ** 24

def probe(model, out: str, adopt: bool):
    delivered = dict(nni.trial._params["parameters"].sample)
    submitted = nni_compat.adopt_submitted_parameter() if adopt else None
    if submitted is not None:
        model = submitted.executable_model()
    trained = dict(nni.get_current_parameter().sample)
    with open(os.path.join(out, nni.get_trial_id() + ".json"), "w") as fh:
        json.dump({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES"), "home": os.environ.get("HOME"),
                   "delivered": delivered, "trained": trained, "arch": model.arch}, fh)
    nni.report_final_result(score(trained))
"""


def _rest(port: int, endpoint: str):
    import urllib.request

    with urllib.request.urlopen(f"http://localhost:{port}/api/v1/nni/{endpoint}", timeout=5) as response:
        return json.loads(response.read().decode())


@pytest.mark.slow
def test_ts_engine_cpu_trials_env_registry_stop_and_parameter_swap(tmp_path, monkeypatch):
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.strategy import Random

    module_dir = tmp_path / "probe_pkg"
    module_dir.mkdir()
    (module_dir / "nni_probe_module.py").write_text(textwrap.dedent(PROBE))
    monkeypatch.syspath_prepend(str(module_dir))
    import nni_probe_module

    home, out = tmp_path / "home", tmp_path / "probes"
    out.mkdir()
    real_home = os.environ.get("HOME", "")
    real_registry = Path(nnictl_config_utils.NNI_HOME_DIR) / ".experiment"

    config = nni_compat.configure_local_cpu(NasExperimentConfig("ts", "simplified", "local"), trial_concurrency=2)
    nni_compat.set_trial_env(
        config, {"HOME": real_home, "PYTHONPATH": os.pathsep.join([str(module_dir), str(REPO)])}
    )
    # make the race of 8. deterministic: the first trial job starts its process 5 s after the second,
    # so the second asks for a parameter first and NNI hands it the first job's
    config._trial_command_params["envs"] += " NNI_PROBE_DELAY=$(sleep $((5 * (1 - NNI_TRIAL_SEQ_ID))))"
    config.max_trial_number = 2
    config.experiment_working_directory = str(tmp_path / "exps")
    evaluator = FunctionalEvaluator(nni_probe_module.probe, out=str(out), adopt=True)
    exp = NasExperiment(MacroSearchSpace(layers_per_stage=1, channels=(8,)), evaluator, Random(seed=0), config)

    port = nni_compat.free_port()
    with nni_compat.nni_home(home):
        try:
            exp.run(port=port)
            models = list(exp.strategy.list_models(sort=False))
            jobs = _rest(port, "trial-jobs")
            # NNI leaves the Node manager (and web UI) running after run() returns
            assert _node_managers(exp.id), "expected the NNI manager to still run after run()"
        finally:
            nni_compat.stop_experiment(exp)

    assert _node_managers(exp.id) == []
    probes = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert len(probes) == 2
    for probe in probes.values():
        assert probe["cuda"] == ""  # trial_gpu_number = 0: the trial sees no GPU
        assert probe["home"] == real_home  # set_trial_env gave the trial the real HOME back
        # 8.: NNI delivered the other job's model; the trial ran the one its job was submitted with
        assert probe["delivered"] != probe["trained"]
        assert {k: probe["arch"][k] for k in probe["trained"]} == probe["trained"]
    # so the web UI's hyper-parameters, metrics and statuses describe the model each trial trained
    for job in jobs:
        record = json.loads(job["hyperParameters"][0])
        assert record["parameters"]["sample"] == probes[job["trialJobId"]]["trained"]
        assert job["status"] == "SUCCEEDED"
        final = float(json.loads(job["finalMetricData"][0]["data"]))
        assert final == nni_probe_module.score(record["parameters"]["sample"])
    assert len(models) == 2
    for model in models:
        assert model.status.value == "trained" and model.metric == nni_probe_module.score(model.sample)
    registry = json.loads((home / "nni-experiments" / ".experiment").read_text())
    assert registry[exp.id]["status"] == "STOPPED"
    if real_registry.exists():
        assert exp.id not in real_registry.read_text()
    # stopping twice is harmless
    nni_compat.stop_experiment(exp)


def test_adopt_submitted_parameter_outside_a_ts_trial_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NNI_TRIAL_COMMAND_CHANNEL", raising=False)
    assert nni_compat.adopt_submitted_parameter() is None


# ---------------------------------------------------------------------------------------------
# 7. the Node manager (and trials) of a killed Python process
# ---------------------------------------------------------------------------------------------
ORPHAN_SCRIPT = """
import sys
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.experiment import NasExperiment, NasExperimentConfig
from nni.nas.strategy import Random
from lightning_biorules.nas import nni_compat
from lightning_biorules.nas.search import evaluate_candidate
from lightning_biorules.nas.space import MacroSearchSpace

exp_id, work, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = nni_compat.configure_local_cpu(NasExperimentConfig("ts", "simplified", "local"))
nni_compat.set_trial_env(config, {"PYTHONPATH": sys.argv[4]})
config.max_trial_number = 1
config.experiment_working_directory = work + "/exps"
evaluator = FunctionalEvaluator(evaluate_candidate, data={}, trainer={})
exp = NasExperiment(MacroSearchSpace(layers_per_stage=1, channels=(8,)), evaluator, Random(seed=0), config, id=exp_id)
with nni_compat.nni_home(work):
    exp.run(port=port)
"""


def _trial_processes(experiment_id: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("NNI_EXP_ID") == experiment_id and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _wait_for(predicate, timeout: float, what: str):
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_python_leaves_manager_and_trials_running_until_stop_orphaned_managers(tmp_path):
    import signal

    exp_id = "orphan" + str(os.getpid())[-4:]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT, exp_id, str(tmp_path), str(nni_compat.free_port()), str(REPO)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _trial_processes(exp_id), 60, "the trial process")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # nobody called stop(): the manager and its trial live on
    assert _node_managers(exp_id) and _trial_processes(exp_id)
    stopped = nni_compat.stop_orphaned_managers(exp_id)
    assert stopped and _node_managers(exp_id) == [] and _trial_processes(exp_id) == []
    assert nni_compat.stop_orphaned_managers(exp_id) == []  # nothing left: a no-op
