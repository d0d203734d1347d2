"""NNI's training-service ('ts') engine: the web UI / REST API while a real search runs, concurrent
trials, a crashing trial, Ctrl-C, a failing strategy -- and never a Node manager left behind.

Each test starts real NNI experiments on real CIFAR-10 images (tiny budgets); every NNI file goes to
``tmp_path``. A ts trial costs ~8-10 s of process start-up on 2 CPU cores, so the searches are 2
trials at most.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from lightning_biorules.nas import nni_compat, strategies
from lightning_biorules.nas.search import FAULT_ENV, run_search
from nni.nas.strategy import Random  # after lightning_biorules.nas: its import silences NNI's torch.nn warnings

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
#: 3 layers, 2 ops, 2 rules
SPACE = {"layers_per_stage": 1, "ops": ["conv3x3", "skip_connect"], "rules": ["bp", "fa"]}
TRIAL = dict(limit_train_batches=1, train_size=200, val_size=100, batch_size=50)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str, str]:
    """``(status, content type, body)`` of ``GET http://localhost:port{path}``."""
    with urllib.request.urlopen(f"http://localhost:{port}{path}", timeout=timeout) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read().decode()


def _rest(port: int, endpoint: str):
    return json.loads(_get(port, f"/api/v1/nni/{endpoint}")[2])


def _port_open(port: int) -> bool:
    try:
        _get(port, "/api/v1/nni/check-status", timeout=1.0)
        return True
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


def _first_random_samples(n: int, seed: int) -> list[dict]:
    """The first ``n`` candidates ``random`` proposes for SPACE with ``seed`` (no training)."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import SimplifiedModelSpace

    from lightning_biorules.nas.spaces import build_space

    space = SimplifiedModelSpace.from_model(build_space("macro", **SPACE), FunctionalEvaluator(_half))
    engine = SequentialExecutionEngine(max_model_count=n)
    strategies.build_strategy("random", seed=seed)(space, engine)
    return [dict(m.sample) for m in engine.list_models()]


def _half(model) -> None:
    import nni

    nni.report_final_result(0.5)


def _hyper_parameters(job: dict) -> dict:
    """The sample (label -> value) NNI shows as a trial's hyper-parameters."""
    (raw,) = job["hyperParameters"]
    return json.loads(raw)["parameters"]["sample"]


# ---------------------------------------------------------------------------------------------
# web UI and REST API during a real search, from the command line
# ---------------------------------------------------------------------------------------------
def test_web_ui_shows_trials_rules_and_metrics_while_the_search_runs(cifar10_root, tmp_path, experiment_processes):
    seed, port, work = 0, nni_compat.free_port(), tmp_path / "work"
    first, second = _first_random_samples(2, seed)
    label = next(k for k in first if first[k] != second[k])
    fault = f"raise:{label}={second[label]}"  # the second trial crashes (a real trial process failure)
    env = {**os.environ, FAULT_ENV: fault,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [
        sys.executable, "-m", "lightning_biorules.cli", "search", "--data.root", str(cifar10_root),
        "--data.train_size", "200", "--data.val_size", "100", "--data.batch_size", "50",
        "--limit_train_batches", "1", "--space_options", json.dumps(SPACE), "--strategy", "random",
        "--seed", str(seed), "--max_trials", "2", "--engine", "ts", "--port", str(port), "--concurrency", "2",
        "--keep_ui", "--work_dir", str(work),
    ]
    log = tmp_path / "search.log"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    statuses, most_running = set(), 0
    try:
        deadline = time.monotonic() + 120
        while not (work / "search_result.json").is_file():  # written before the UI waits for Ctrl-C
            assert proc.poll() is None, f"search exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the search did not finish in time"
            try:  # the manager answers plain text ("INITIALIZING") or nothing while it starts
                statuses.add(_rest(port, "check-status")["status"])
                jobs = _rest(port, "trial-jobs")
                most_running = max(most_running, sum(job["status"] == "RUNNING" for job in jobs))
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.3)
        assert "RUNNING" in statuses  # the UI answered while the search was running

        # the search is over; with --keep_ui the web UI still serves everything
        status, content_type, page = _get(port, "/")
        assert status == 200 and "text/html" in content_type and "<html" in page.lower()
        assert _rest(port, "check-status")["status"] in ("DONE", "NO_MORE_TRIAL")
        experiment = _rest(port, "experiment")
        assert experiment["params"]["maxTrialNumber"] == 2 and experiment["params"]["trialConcurrency"] == 2
        jobs = {job["trialJobId"]: job for job in _rest(port, "trial-jobs")}
        assert len(jobs) == 2
        by_status = {job["status"]: job for job in jobs.values()}
        assert set(by_status) == {"SUCCEEDED", "FAILED"}
        # every trial shows its architecture, rules included, as hyper-parameters
        for job in jobs.values():
            sample = _hyper_parameters(job)
            assert {"rule_0", "rule_1", "rule_2", "op_0", "op_1", "op_2"} <= set(sample)
            assert set(sample[k] for k in ("rule_0", "rule_1", "rule_2")) <= {"bp", "fa"}
        assert _hyper_parameters(by_status["SUCCEEDED"]) == first
        assert _hyper_parameters(by_status["FAILED"]) == second
        ok = by_status["SUCCEEDED"]
        final = float(json.loads(ok["finalMetricData"][0]["data"]))
        assert 0.0 <= final <= 1.0
        metrics = _rest(port, "metric-data")
        assert {(m["trialJobId"], m["type"]) for m in metrics} == {(ok["trialJobId"], "PERIODICAL"),
                                                                   (ok["trialJobId"], "FINAL")}
        assert float(json.loads(next(m["data"] for m in metrics if m["type"] == "FINAL"))) == final
        # --concurrency 2: both trials ran at the same time
        a, b = jobs.values()
        assert max(a["startTime"], b["startTime"]) < min(a["endTime"], b["endTime"])
        assert most_running == 2  # and the REST API showed them RUNNING together

        result = json.loads((work / "search_result.json").read_text())
        experiment_id = result["experiment_id"]
        assert [t["status"] for t in result["trials"]] == ["trained", "failed"]
        assert result["trials"][1]["error"].startswith("RuntimeError: fault injected")
        assert experiment_processes(experiment_id)  # the UI is still up: its manager runs
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C ends --keep_ui
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "best val_acc" in out and "1/2 trials succeeded" in out
    assert experiment_processes(experiment_id) == [] and not _port_open(port)
    assert json.loads((work / "experiment.json").read_text())["status"] == "finished"


# ---------------------------------------------------------------------------------------------
# Ctrl-C and a failing strategy, in-process
# ---------------------------------------------------------------------------------------------
def _interrupt_when_running(port: int, fired: list) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if any(job["status"] == "RUNNING" for job in _rest(port, "trial-jobs")):
                fired.append(time.monotonic())
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while a trial trains
                return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(0.2)


def test_ctrl_c_stops_the_manager_and_its_trials(cifar10_root, tmp_path, experiment_processes):
    port, fired = nni_compat.free_port(), []
    watcher = threading.Thread(target=_interrupt_when_running, args=(port, fired), daemon=True)
    watcher.start()
    with pytest.raises(KeyboardInterrupt):
        run_search(str(cifar10_root), strategy="random", max_trials=2, engine="ts", port=port,
                   work_dir=str(tmp_path), space_options=SPACE, **TRIAL)
    watcher.join(timeout=5)
    assert fired, "no trial was seen running"
    record = json.loads((tmp_path / "experiment.json").read_text())
    assert record["status"] == "interrupted"
    assert experiment_processes(record["experiment_id"]) == [] and not _port_open(port)
    assert not (tmp_path / "search_result.json").exists()


class _BrokenStrategy(Random):
    """Fails once the NNI manager is up and the strategy starts."""

    work: Path
    manager_was_running = False

    def _run(self) -> None:
        experiment_id = json.loads((self.work / "experiment.json").read_text())["experiment_id"]
        _BrokenStrategy.manager_was_running = bool(nni_compat.nni_manager_processes(experiment_id))
        raise RuntimeError("strategy broke")


def test_failing_strategy_leaves_no_manager(cifar10_root, tmp_path, monkeypatch, experiment_processes):
    monkeypatch.setattr(_BrokenStrategy, "work", tmp_path, raising=False)
    monkeypatch.setattr(strategies, "build_strategy", lambda *args, **kwargs: _BrokenStrategy(seed=0))
    port = nni_compat.free_port()
    with pytest.raises(RuntimeError, match="strategy broke"):
        run_search(str(cifar10_root), strategy="random", max_trials=2, engine="ts", port=port,
                   work_dir=str(tmp_path), space_options=SPACE, **TRIAL)
    assert _BrokenStrategy.manager_was_running
    record = json.loads((tmp_path / "experiment.json").read_text())
    assert record["status"] == "failed"
    assert experiment_processes(record["experiment_id"]) == [] and not _port_open(port)
