"""Every adaptation of NNI 3.0 that this project needs, in one place.

NNI's last release is 3.0 (2023). The workarounds below are measured on this stack (see
``docs/nni-notes.md`` in the shared docs); each has a test in ``tests/test_nni_compat.py`` that
fails without it.

0. (import) ``nni.nas.nn.pytorch`` emits a ``RuntimeWarning`` per ``torch.nn`` class that is
   not a module in this torch (``Buffer``, ...) -- harmless, silenced while importing it.
1. :class:`FreezableModelSpace` -- ``ModelSpace.freeze()`` (and so ``random()`` and the 'raw'
   model format) raises ``NotImplementedError`` once ``add_mutable`` was used; re-instantiate
   the space inside ``model_context(sample)`` instead.
2. :func:`nni_home` -- NNI writes its experiment registry to ``~/nni-experiments`` whatever the
   configured working directory (the Python side binds the path at import time, the Node manager
   reads ``$HOME``); redirect both into a chosen folder for the duration of a search.
3. :func:`configure_local_cpu` -- a hand-built ``NasExperimentConfig`` for the training-service
   ('ts') engine needs ``trial_concurrency``, and on CPU ``trial_gpu_number = 0`` and
   ``training_service.use_active_gpu = False``. :func:`set_trial_env` prefixes the trial command
   with environment assignments (the real ``$HOME``, a ``PYTHONPATH`` reaching this package:
   trials are subprocesses of the Node manager started in the launch directory).
4. :func:`stop_experiment` / :func:`nni_manager_processes` -- ``NasExperiment.run()`` does not
   stop the experiment when it returns normally (nor when it raises anything but
   ``KeyboardInterrupt``), leaving the Node manager and web UI running; stop it and make sure
   the Node process group, and any trial of the experiment, is gone.
5. :func:`check_evaluator_arguments` -- ``nni.load`` strips ``//`` and ``#`` "comments"; in the
   'ts' engine's websocket messages the evaluator arguments sit in a JSON string inside JSON
   (escaped quotes), where a ``//`` (a path like ``/data//cifar10``, base64 of a pickled tensor)
   or ``#`` cuts the message: ``JSONDecodeError: Unterminated string``, the command is dropped
   and the experiment can hang. Evaluator arguments are restricted to plain JSON values that
   survive that nested round trip (``run_search`` also normalises its paths).
6. :func:`run_experiment` -- ``Experiment.run()`` catches ``KeyboardInterrupt`` (Ctrl-C), stops
   the experiment and returns ``None`` as if nothing happened, so the caller would go on and
   report a half-done search as finished; re-raise it.
7. :func:`stop_orphaned_managers` -- when the Python process that ran a 'ts' experiment is
   killed (``kill -9``, OOM), its Node manager and the running trials keep going (the manager
   runs in its own process group and nobody calls ``stop``); find them by experiment id and
   end the whole process tree.
8. :func:`adopt_submitted_parameter` -- with ``trial_concurrency > 1`` the local training
   service (``nni_node/training_service/v3/compat.js``) queues the parameters of new trial jobs
   in one FIFO and hands the head to whichever trial process *asks first*, while the job keeps
   the parameter it was submitted with. Trials that start together can swap models: a job's
   hyper-parameters in the web UI / REST API are not the model it trained, its metrics (sent
   with the delivered parameter id) land on the other model, and its end status on the wrong
   one. A trial calls this first: it reads its own job's submitted parameter from the manager's
   REST API and, if NNI delivered another one, makes the submitted one current (metrics then
   carry its id) and returns it to be trained instead.

Not workarounds, so not here: the strategies of :mod:`lightning_biorules.nas.strategies` (the
one-choice mutation of NAS-Bench-201's evolution, non-aging evolution, journal replay) extend
NNI's strategy classes and middleware interface the way NNI's own strategies do. Nothing else in
the package touches NNI internals.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import nni

# 0. ``nni.nas.nn.pytorch`` wraps every class in ``torch.nn`` and warns (RuntimeWarning) about
#    each one that is not an ``nn.Module`` in newer torch (``Buffer``, ...). Harmless; silence
#    exactly that message while importing it.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r".*is found to be not a nn\.Module", category=RuntimeWarning)
    from nni.nas.nn.pytorch import ModelSpace

from nni.nas.space import model_context

__all__ = [
    "FreezableModelSpace",
    "adopt_submitted_parameter",
    "check_evaluator_arguments",
    "configure_local_cpu",
    "free_port",
    "set_trial_env",
    "nni_home",
    "nni_manager_processes",
    "run_experiment",
    "stop_experiment",
    "stop_orphaned_managers",
]

_logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# 1. freeze() of a model space with add_mutable
# ---------------------------------------------------------------------------------------------
class FreezableModelSpace(ModelSpace, disable_init_wrapper=True):
    """``ModelSpace`` whose ``freeze`` works when plain choices were registered with
    ``add_mutable``: the space is re-created from its saved ``__init__`` arguments inside
    ``model_context(sample)``, which is what NNI's default 'simplified' format does anyway.

    Subclasses are ordinary ``ModelSpace`` subclasses (NNI's ``__init__`` wrapper applies to
    them; it is disabled only for this intermediate class).
    """

    def freeze(self, sample: dict[str, Any]):  # type: ignore[override]
        err = self.check_contains(sample)
        if err is not None:
            raise err
        with model_context(sample):
            return self.__class__(*self.trace_args, **self.trace_kwargs)


# ---------------------------------------------------------------------------------------------
# 2. ~/nni-experiments redirection
# ---------------------------------------------------------------------------------------------
_NNI_HOME_MODULES = (
    "nni.tools.nnictl.constants",
    "nni.tools.nnictl.config_utils",
    "nni.tools.nnictl.nnictl_utils",
    "nni.tools.nnictl.legacy_launcher",
)


@contextlib.contextmanager
def nni_home(home: str | os.PathLike, set_home_env: bool = True) -> Iterator[Path]:
    """Redirect NNI's ``~/nni-experiments`` registry into ``<home>/nni-experiments``.

    Rebinds ``NNI_HOME_DIR`` on the Python side (``nni.tools.nnictl`` computes it once at import
    time and bakes it into ``Experiments.__init__``'s default argument) and, with
    ``set_home_env``, sets ``$HOME`` (the Node manager reads ``os.homedir()``; needed for the 'ts'
    engine only -- the in-process 'sequential' engine can leave ``$HOME`` alone). Everything is
    restored on exit. Yields the redirected registry folder.
    """
    import importlib
    import sys

    home = Path(home).expanduser().resolve()
    registry = home / "nni-experiments"
    registry.mkdir(parents=True, exist_ok=True)

    config_utils = importlib.import_module("nni.tools.nnictl.config_utils")  # imports .constants
    saved_env = os.environ.get("HOME")
    saved_attrs: list[tuple[Any, Any]] = []
    for name in _NNI_HOME_MODULES:  # the ones that copied NNI_HOME_DIR and are loaded
        mod = sys.modules.get(name)
        if mod is not None and hasattr(mod, "NNI_HOME_DIR"):
            saved_attrs.append((mod, mod.NNI_HOME_DIR))
    init = config_utils.Experiments.__init__
    saved_defaults = init.__defaults__

    if set_home_env:
        os.environ["HOME"] = str(home)
    for mod, _ in saved_attrs:
        mod.NNI_HOME_DIR = str(registry)
    init.__defaults__ = (str(registry),)
    try:
        yield registry
    finally:
        init.__defaults__ = saved_defaults
        for mod, value in saved_attrs:
            mod.NNI_HOME_DIR = value
        if set_home_env:
            if saved_env is None:
                os.environ.pop("HOME", None)
            else:
                os.environ["HOME"] = saved_env


# ---------------------------------------------------------------------------------------------
# 3. CPU-only local training service
# ---------------------------------------------------------------------------------------------
def configure_local_cpu(config, trial_concurrency: int = 1):
    """Make a ``NasExperimentConfig`` for the 'ts' engine run trials on CPU: sets
    ``trial_concurrency``, ``trial_gpu_number = 0`` and ``training_service.use_active_gpu =
    False`` (the local training service). Returns the config."""
    from nni.experiment.config.training_services import LocalConfig

    config.trial_concurrency = int(trial_concurrency)
    config.trial_gpu_number = 0
    ts = getattr(config, "training_service", None)
    if not isinstance(ts, LocalConfig):
        ts = LocalConfig()
        config.training_service = ts
    ts.use_active_gpu = False
    return config


def set_trial_env(config, env: dict[str, str]):
    """Prefix the 'ts' engine's trial command with ``NAME=value`` assignments.

    ``NasExperimentConfig`` forbids customising ``trial_command``; its internal
    ``_trial_command_params["envs"]`` is the one hook NNI 3.0 has for it (the command is run by a
    shell as ``{envs} {python} -m nni.nas.execution.training_service trial``). Used to give
    trials the real ``$HOME`` back (the Node manager, and so its children, run with the
    redirected one, see :func:`nni_home`) and a ``PYTHONPATH`` that can import this package.
    Returns the config.
    """
    import shlex

    params = dict(getattr(config, "_trial_command_params", None) or {})
    parts = [params["envs"]] if params.get("envs") else []
    parts += [f"{name}={shlex.quote(str(value))}" for name, value in env.items()]
    params["envs"] = " ".join(parts)
    config._trial_command_params = params
    return config


def free_port() -> int:
    """A TCP port that is free on localhost right now (for the Node manager / web UI)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# 4. stopping experiments and the Node manager
# ---------------------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    try:
        import psutil

        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except ImportError:  # pragma: no cover
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    except Exception:
        return False


def nni_manager_processes(experiment_id: str | None = None) -> list[int]:
    """PIDs of running NNI Node managers (``nni_node/main.js``), optionally only the one of
    ``experiment_id``. Reads ``/proc`` (Linux) so it needs no extra dependency."""
    pids: list[int] = []
    proc_root = Path("/proc")
    if not proc_root.is_dir():  # pragma: no cover - non-Linux
        return pids
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if not raw:
            continue
        # skip zombies (state is the field after the ")" of the command name)
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            continue
        args = raw.decode(errors="replace").split("\0")
        if not any(a.endswith("main.js") and "nni_node" in a for a in args):
            continue
        if experiment_id is not None and experiment_id not in args:
            continue
        pids.append(int(entry.name))
    return sorted(pids)


def _kill_group(pid: int, timeout: float = 10.0) -> None:
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return
    own = os.getpgid(0)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            if pgid != own:
                os.killpg(pgid, sig)
            else:  # pragma: no cover - NNI starts the manager with setpgrp
                os.kill(pid, sig)
        except OSError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)


def _experiment_processes(experiment_id: str) -> list[int]:
    """PIDs of the processes of ``experiment_id``: its Node managers, everything they started, and
    trials whose manager is already gone (NNI gives trials ``NNI_EXP_ID`` in their environment)."""
    import psutil

    pids: set[int] = set()
    for pid in nni_manager_processes(experiment_id):
        pids.add(pid)
        with contextlib.suppress(psutil.Error):
            pids.update(child.pid for child in psutil.Process(pid).children(recursive=True))
    own = os.getpid()
    for proc in psutil.process_iter(["pid"]):
        if proc.pid == own or proc.pid in pids:
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("NNI_EXP_ID") == experiment_id:
                pids.add(proc.pid)
                pids.update(child.pid for child in proc.children(recursive=True))
    return sorted(pids)


def _kill_processes(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM ``pids``, then SIGKILL whatever is left after ``timeout`` seconds; reaps nothing
    it did not start."""
    import psutil

    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(pid))
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=timeout)


def stop_orphaned_managers(experiment_id: str, timeout: float = 10.0) -> list[int]:
    """End the Node manager(s) of ``experiment_id`` whose Python process is gone, with their
    trials (the whole process tree, plus trials carrying ``NNI_EXP_ID=experiment_id``).

    NNI starts the manager in its own process group and only ``Experiment.stop()`` ends it: after
    a ``kill -9`` of the Python side, the web UI and the running trials go on forever. Returns the
    PIDs that were signalled.
    """
    pids = _experiment_processes(experiment_id)
    if pids:
        _logger.warning("ending %d leftover process(es) of NNI experiment %s: %s", len(pids), experiment_id, pids)
        _kill_processes(pids, timeout=timeout)
    return pids


def stop_experiment(experiment, timeout: float = 30.0) -> None:
    """Stop ``experiment`` (a ``NasExperiment``) and make sure its Node manager is gone.

    ``NasExperiment.run()`` leaves the experiment running after a normal return; ``stop()``
    asks the manager to shut down over REST and waits for it. If that fails or the process is
    still there after ``timeout`` seconds, its process group (NNI starts it with ``setpgrp``)
    is terminated, then killed. Safe to call twice.
    """
    proc = getattr(experiment, "_proc", None)
    pid = proc.pid if proc is not None else None
    exp_id = getattr(experiment, "id", None)
    try:
        experiment.stop()
    except Exception:
        _logger.exception("NNI experiment %s did not stop cleanly", exp_id)
    if pid is not None:
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid):
            _logger.warning("NNI manager (pid %d) still running; killing its process group", pid)
            _kill_group(pid)
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)  # reap
    if exp_id is not None:
        leftovers = _experiment_processes(str(exp_id))
        if leftovers:
            _logger.warning("killing leftover processes %s of NNI experiment %s", leftovers, exp_id)
            _kill_processes(leftovers)


# ---------------------------------------------------------------------------------------------
# 5. evaluator arguments must survive nni.load's comment stripping
# ---------------------------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


def _check_plain(value: Any, path: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"evaluator argument {path} has a non-string key {key!r}")
            _check_plain(item, f"{path}.{key}")
        return
    raise TypeError(
        f"evaluator argument {path} is a {type(value).__name__}; only plain JSON values "
        "(str, int, float, bool, None, lists and dicts of them) are allowed: NNI 3.0 pickles "
        "other objects and its loader corrupts such payloads (pass paths / small parameters)"
    )


def check_evaluator_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Validate keyword arguments for a ``FunctionalEvaluator``.

    Each value must be a plain JSON value and must survive the worst-case path of the 'ts'
    engine: ``nni.dump`` -> embedded as a JSON string in another JSON message -> ``nni.load``
    (which strips ``//`` / ``#`` comments). Returns ``arguments`` unchanged; raises
    ``TypeError`` / ``ValueError`` otherwise.
    """
    for key, value in arguments.items():
        _check_plain(value, key)
    inner = nni.dump(arguments)
    outer = json.dumps({"parameter": inner})
    try:
        restored = nni.load(nni.load(outer)["parameter"])
        nested = nni.load(json.dumps({"p": json.dumps({"p": inner})}))
        nested = nni.load(json.loads(nested["p"])["p"])
    except Exception as exc:
        raise ValueError(f"evaluator arguments do not survive nni.load: {exc}") from exc
    if restored != json.loads(json.dumps(arguments)) or nested != restored:
        raise ValueError(
            "evaluator arguments are corrupted by nni.load (a '//' or '#' after an escaped quote?): "
            f"{arguments!r}"
        )
    return arguments


# ---------------------------------------------------------------------------------------------
# 6. Ctrl-C must not look like a finished experiment
# ---------------------------------------------------------------------------------------------
def run_experiment(experiment, port: int | None = None) -> None:
    """``experiment.run()`` (``run(port=port)`` when a port is given) that re-raises Ctrl-C.

    NNI 3.0's ``Experiment.run`` catches ``KeyboardInterrupt``, stops the experiment and returns
    ``None`` (it returns ``True``/``False`` when it ran to the end), so an interrupted search
    would carry on as if it had finished. Raises ``KeyboardInterrupt`` in that case.
    """
    completed = experiment.run() if port is None else experiment.run(port=port)
    if completed is None:
        raise KeyboardInterrupt(f"NNI experiment {getattr(experiment, 'id', '?')} was interrupted")


# ---------------------------------------------------------------------------------------------
# 8. concurrent trials can swap parameters on the local training service
# ---------------------------------------------------------------------------------------------
def _submitted_parameter(channel_url: str, trial_id: str, timeout: float) -> Any:
    """The ParameterRecord the manager recorded for ``trial_id`` (its REST API shares the port
    of the trial command channel, ``http://localhost:PORT/env/...``)."""
    import urllib.parse
    import urllib.request

    base = urllib.parse.urlsplit(channel_url)
    url = f"{base.scheme}://{base.netloc}/api/v1/nni/trial-jobs/{urllib.parse.quote(trial_id)}"
    with urllib.request.urlopen(url, timeout=timeout) as response:
        job = json.loads(response.read().decode())
    parameters = job.get("hyperParameters") or []
    if len(parameters) != 1:
        raise ValueError(f"trial job {trial_id} has {len(parameters)} parameters")
    return nni.load(parameters[0])  # what the trial command channel does with a delivered one


def adopt_submitted_parameter(timeout: float = 10.0) -> Any | None:
    """In a 'ts' trial: the model NNI *submitted* for this trial job when the training service
    delivered another one (see 8. above), else ``None``.

    When they differ, the submitted ``ParameterRecord`` becomes ``nni``'s current parameter, so
    ``nni.get_current_parameter()`` and every ``nni.report_*_result`` refer to it. Outside a
    trial of the local training service (sequential engine, plain calls) this is a no-op, and it
    gives up (``None``, with a warning) when the manager cannot be asked.
    """
    import nni.trial

    channel = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL", "")
    trial_id = os.environ.get("NNI_TRIAL_JOB_ID", "")
    delivered = nni.trial._params
    if not channel.startswith("http") or not trial_id or not delivered:
        return None
    try:
        submitted = _submitted_parameter(channel, trial_id, timeout)
    except Exception as exc:  # the trial can still run what it got
        _logger.warning("cannot check the parameter of trial %s with the NNI manager: %s", trial_id, exc)
        return None
    if submitted.get("parameter_id") == delivered.get("parameter_id"):
        return None
    _logger.warning(
        "trial %s was delivered parameter %s but submitted with parameter %s (NNI 3.0 race between "
        "concurrent trials); running the submitted one", trial_id, delivered.get("parameter_id"),
        submitted.get("parameter_id"),
    )
    nni.trial._params = submitted
    return submitted["parameters"]
