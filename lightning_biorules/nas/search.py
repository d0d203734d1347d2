"""Multi-trial NNI search over (op, learning rule) per layer: library API and ``biorules search``.

    from lightning_biorules.nas.search import run_search
    result = run_search("../shared/data/cifar10", space="nb201", strategy="evolution", max_trials=20)
    result.best_arch, result.best_accuracy, result.output_yaml

Spaces come from :mod:`lightning_biorules.nas.spaces` (``space`` + ``space_options``), strategies
from :mod:`lightning_biorules.nas.strategies` (``regularized_evolution``, ``evolution``,
``random``). Every trial is :func:`evaluate_candidate` (a ``FunctionalEvaluator``): it turns the
frozen space's ``arch`` into the same ``biorules fit`` config that is written out for the winner
(``model.to_config(...)``), fits a plain ``lightning.Trainer`` on a small budget, reports the
validation accuracy of every epoch (``nni.report_intermediate_result``) and the last one
(``nni.report_final_result``). A trial that raises, or whose losses/accuracy are not finite
(a diverging learning rate, a rule that produces NaN), is marked failed and the search goes on.

Journal and resume: each finished trial (its sample and complete arch, status, final and
per-epoch accuracy, duration, error) is appended by the trial itself, as one JSON line with a
single locked ``O_APPEND`` write, to ``<work_dir>/trials.jsonl``. ``run_search(resume=True)``
(``biorules search --resume``) reads it back and puts :class:`~.strategies.JournalReplay` between
the strategy and NNI's engine: a proposed candidate already in the journal (same trial settings,
checked by a fingerprint) gets its stored result at once without training, so a seeded strategy
walks the same path and the finished trials cost nothing; they count towards ``max_trials``.
Without ``resume`` an existing journal is moved to ``trials.prev.jsonl``.

Processes: all NNI files (experiment folders, the ``nni-experiments`` registry) live under
``work_dir``; the 'ts' engine's Node manager is stopped (and its process tree killed if needed)
when the search returns, fails or is interrupted. ``<work_dir>/experiment.json`` records the
experiment and its owner process; a later search in the same ``work_dir`` stops the managers of
an owner that died (``kill -9``) and refuses to start while the owner is alive.

Fault injection (tests and debugging; trials inherit the environment on both engines):
``BIORULES_NAS_FAULT="raise:<label>=<value>[,...]"`` makes the candidates whose arch matches
every ``label=value`` raise, e.g. to see a crashing trial on the 'ts' engine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Protocol, Sequence

import yaml

from . import nni_compat, strategies
from .journal import JOURNAL_FILE, append_journal, journal_index, read_journal, trial_fingerprint
from .report import export_top_k

__all__ = [
    "FAULT_ENV",
    "SearchResult",
    "TrialFailedError",
    "TrialRecord",
    "build_search_parser",
    "evaluate_candidate",
    "main",
    "run_search",
    "train_config",
]

_logger = logging.getLogger(__name__)

#: Fault injection for tests and debugging: ``"raise:<label>=<value>[,<label>=<value>...]"`` makes
#: the trials whose architecture matches every ``label=value`` raise (``"raise:"`` alone: every
#: trial). Real faults need no hook: a diverging learning rate, a rule that yields NaN, ...
FAULT_ENV = "BIORULES_NAS_FAULT"
#: the result file in ``work_dir``
RESULT_FILE = "search_result.json"
#: the experiment / owner-process record in ``work_dir``
EXPERIMENT_FILE = "experiment.json"
_JOURNAL_VERSION = 1

Engine = Literal["sequential", "ts"]
Mutation = Literal["one_choice", "per_label"]

_TRAINER_FIXED = dict(
    accelerator="cpu",
    devices=1,
    logger=False,
    enable_checkpointing=False,
    enable_progress_bar=False,
    enable_model_summary=False,
    num_sanity_val_steps=0,
)


class TrialFailedError(RuntimeError):
    """A candidate's training produced no usable (finite) validation accuracy."""


class Candidate(Protocol):
    """What a trial receives: a frozen search space (any registered space)."""

    arch: Dict[str, Any]

    def to_config(self, **kwargs: Any) -> Dict[str, Any]: ...


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrialRecord:
    """One evaluated candidate; ``arch`` is NNI's sample (the searched labels only)."""

    index: int
    arch: Dict[str, Any]
    status: str  #: NNI's model status: "trained", "failed", "interrupted", ...
    accuracy: Optional[float]  #: final validation accuracy; None when the trial failed
    intermediates: List[float] = dataclasses.field(default_factory=list)
    replayed: bool = False  #: answered from the journal of an earlier run (``resume``), not trained
    duration_s: Optional[float] = None  #: training time (of the original run when replayed)
    error: Optional[str] = None  #: why the trial failed, when the journal knows

    @property
    def succeeded(self) -> bool:
        return self.status == "trained" and self.accuracy is not None and math.isfinite(self.accuracy)


@dataclasses.dataclass
class SearchResult:
    """Outcome of :func:`run_search`."""

    best_arch: Dict[str, Any]  #: complete architecture (fixed labels such as ``rule_stem`` included)
    best_accuracy: float
    best_config: Dict[str, Any]  #: the ``biorules fit`` config written to :attr:`output_yaml`
    trials: List[TrialRecord]
    output_yaml: Optional[str]
    experiment_id: str
    work_dir: str
    strategy: str
    engine: str
    duration_s: float
    space: str = "macro"
    space_options: Dict[str, Any] = dataclasses.field(default_factory=dict)
    top_yamls: List[str] = dataclasses.field(default_factory=list)  #: ``top/rank{i}.yaml``, best first
    journal: Optional[str] = None  #: the trial journal (``trials.jsonl``)

    @property
    def failed_trials(self) -> List[TrialRecord]:
        return [t for t in self.trials if not t.succeeded]

    @property
    def replayed_trials(self) -> List[TrialRecord]:
        return [t for t in self.trials if t.replayed]

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["trials"] = [dataclasses.asdict(t) for t in self.trials]
        return out


# ---------------------------------------------------------------------------------------------
# one trial
# ---------------------------------------------------------------------------------------------
def _fault_matches(arch: Mapping[str, Any]) -> bool:
    """Whether :data:`FAULT_ENV` (``"raise:<label>=<value>[,...]"``) selects ``arch``."""
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return False
    kind, _, conds = spec.partition(":")
    if kind.strip() != "raise":
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected 'raise:<label>=<value>[,...]'")
    for part in filter(None, (p.strip() for p in conds.split(","))):
        label, _, value = part.partition("=")
        if str(arch.get(label.strip())) != value.strip():
            return False
    return True


def _float_metrics(metrics: Mapping[str, Any]) -> Dict[str, float]:
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _reporter_callback(report: bool):
    import lightning as L

    class _NNIReport(L.Callback):
        """Report ``val_acc`` after every validation run (not the sanity check)."""

        def __init__(self) -> None:
            self.history: List[float] = []

        def on_validation_end(self, trainer, pl_module) -> None:
            if trainer.sanity_checking or "val_acc" not in trainer.callback_metrics:
                return
            acc = float(trainer.callback_metrics["val_acc"])
            self.history.append(acc)
            if report and math.isfinite(acc):
                import nni

                nni.report_intermediate_result(acc)

    return _NNIReport()


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-Trainer INFO banners (GPU/TPU available, tips) and known harmless
    warnings while a trial trains; restores the logger levels afterwards."""
    # NNI imports the old ``pytorch_lightning`` namespace, which re-targets the shared rank-zero logger
    roots = ("lightning", "pytorch_lightning", "lightning_fabric")
    names = [n for n in list(logging.root.manager.loggerDict) if n.split(".")[0] in roots]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        if lg.level != logging.NOTSET and lg.level < logging.WARNING:
            lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=r".*treespec.*LeafSpec.*")
            warnings.filterwarnings("ignore", message=r".*was configured so .* of the batches.*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def train_config(
    config: Mapping[str, Any],
    *,
    seed: int = 0,
    report: bool = False,
    root_dir: Optional[str] = None,
    history: Optional[List[float]] = None,
) -> float:
    """Fit the ``biorules fit``-style ``config`` (``model`` / ``data`` / ``trainer`` sections) on CPU
    with a plain ``lightning.Trainer`` (no logger, no checkpoints) and return the final ``val_acc``.

    With ``report``, every epoch's ``val_acc`` goes to ``nni.report_intermediate_result`` (the final
    one is left to the caller); with ``history``, every epoch's ``val_acc`` is appended to it.
    Raises :class:`TrialFailedError` when any logged loss/accuracy is not finite or ``val_acc`` is
    missing.
    """
    import lightning as L

    from ..data import CIFARDataModule
    from ..module import ImageClassifier

    L.seed_everything(seed, workers=True, verbose=False)
    data = CIFARDataModule(**dict(config.get("data", {})))
    model = ImageClassifier(num_classes=data.num_classes, **dict(config["model"]))
    reporter = _reporter_callback(report)
    if history is not None:
        reporter.history = history
    trainer_cfg = {"log_every_n_steps": 1, **dict(config.get("trainer", {})), **_TRAINER_FIXED}
    with _quiet_lightning():
        trainer = L.Trainer(callbacks=[reporter], default_root_dir=root_dir, **trainer_cfg)
        trainer.fit(model, datamodule=data)
    metrics = _float_metrics(trainer.callback_metrics)
    bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise TrialFailedError(f"non-finite metrics {bad}")
    if "val_acc" not in metrics:
        raise TrialFailedError(f"no val_acc was logged (metrics: {sorted(metrics)})")
    return metrics["val_acc"]


def _current_sample(model: Candidate) -> Dict[str, Any]:
    """NNI's sample (searched labels only) of the running trial, on both engines: the trial's
    parameter is the ``ExecutableModelSpace`` NNI froze ``model`` from. Falls back to the arch
    when called outside a search."""
    import nni

    current = nni.get_current_parameter()
    sample = getattr(current, "sample", None)
    if isinstance(sample, Mapping):
        return dict(sample)
    return dict(model.arch)


def evaluate_candidate(
    model: Candidate,
    *,
    data: Dict[str, Any],
    trainer: Dict[str, Any],
    model_kwargs: Optional[Dict[str, Any]] = None,
    seed: int = 0,
    root_dir: Optional[str] = None,
    journal: Optional[str] = None,
    fingerprint: Optional[str] = None,
) -> float:
    """NNI ``FunctionalEvaluator`` function: train the frozen ``model``'s architecture briefly.

    ``model`` is the frozen search space NNI builds for the trial (any registered space); its
    ``to_config(model=model_kwargs, data=data, trainer=trainer)`` is trained by
    :func:`train_config`, and the final validation accuracy is reported with
    ``nni.report_final_result`` (also returned). Every trial uses the same ``seed``. On the 'ts'
    engine the trial first makes sure it trains the model its trial job was submitted with
    (:func:`~.nni_compat.adopt_submitted_parameter`: concurrent trials can be handed each
    other's).

    With ``journal``, the finished trial (``trained`` or ``failed``, with ``fingerprint``) is
    appended to that file before its result goes to NNI (see :func:`append_journal`); an
    interrupted trial (``KeyboardInterrupt``, a kill) is not journaled.
    """
    import nni

    submitted = nni_compat.adopt_submitted_parameter()  # 'ts' engine, concurrent trials
    if submitted is not None:
        model = submitted.executable_model()
    arch = dict(model.arch)
    sample = _current_sample(model) if journal else arch
    model_kwargs = dict(model_kwargs or {})
    history: List[float] = []
    start = time.perf_counter()
    record: Dict[str, Any] = {
        "v": _JOURNAL_VERSION,
        "fingerprint": fingerprint,
        "sample": sample,
        "arch": arch,
        "experiment_id": nni.get_experiment_id(),
        "trial_id": nni.get_trial_id(),
        "pid": os.getpid(),
    }
    try:
        if _fault_matches(arch):
            raise RuntimeError(f"fault injected by {FAULT_ENV} for {arch}")
        config = model.to_config(model=model_kwargs, data=data, trainer=trainer)
        _logger.info("trial arch %s", arch)
        acc = train_config(config, seed=seed, report=True, root_dir=root_dir, history=history)
    except Exception as exc:
        if journal:
            append_journal(journal, {
                **record, "status": "failed", "metric": None, "intermediates": history,
                "duration_s": time.perf_counter() - start, "error": f"{type(exc).__name__}: {exc}",
                "finished_at": _now(),
            })
        raise
    duration = time.perf_counter() - start
    _logger.info("trial val_acc %.4f in %.1fs", acc, duration)
    if journal:
        append_journal(journal, {
            **record, "status": "trained", "metric": acc, "intermediates": history,
            "duration_s": duration, "error": None, "finished_at": _now(),
        })
    nni.report_final_result(acc)
    return acc


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------------
def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status)).lower()


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _collect_trials(replay: strategies.JournalReplay, journal: Mapping[str, Mapping[str, Any]]) -> List[TrialRecord]:
    """One :class:`TrialRecord` per submitted candidate, in submission order.

    The journal is the record of a finished trial: the trial wrote it itself before reporting to
    NNI, so it is complete even when NNI's last events (on the 'ts' engine they come over a
    websocket) arrive after the experiment reports DONE. A candidate without a journal record (a
    trial killed from outside, ...) takes NNI's status and metrics.
    """
    records = []
    for i, m in enumerate(replay.list_models()):
        sample = {str(k): _plain(v) for k, v in dict(m.sample or {}).items()}
        entry = journal.get(strategies.sample_key(sample))
        if entry is not None:
            status, metric = str(entry["status"]), entry.get("metric")
            inter = [float(v) for v in entry.get("intermediates") or []]
        else:
            status, metric, inter = _status_name(m.status), m.metric, []
            for v in m.metrics.intermediates:
                with contextlib.suppress(TypeError, ValueError):
                    inter.append(float(v))
        try:
            metric = float(metric) if metric is not None else None
        except (TypeError, ValueError):
            metric = None
        if metric is not None and not math.isfinite(metric):
            metric, status = None, "failed"
        if status != "trained":
            metric = None
        records.append(TrialRecord(
            index=i,
            arch=sample,
            status=status,
            accuracy=metric,
            intermediates=inter,
            replayed=replay.is_replayed(m),
            duration_s=float(entry["duration_s"]) if entry and entry.get("duration_s") is not None else None,
            error=entry.get("error") if entry else None,
        ))
    return records


def _dump_yaml(config: Mapping[str, Any], path: Path, header: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    path.write_text(text)


def _process_alive(pid: int, create_time: Optional[float]) -> bool:
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - float(create_time)) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


def _claim_work_dir(work: Path) -> None:
    """Refuse a ``work_dir`` whose recorded search is still running in another process; stop the
    NNI managers left behind by a recorded owner that died (e.g. ``kill -9`` on the 'ts' engine)."""
    path = work / EXPERIMENT_FILE
    if not path.is_file():
        return
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    owner = info.get("owner_pid")
    running = info.get("status") == "running" and _process_alive(owner, info.get("owner_create_time"))
    if owner and int(owner) != os.getpid() and running:
        raise RuntimeError(
            f"{work} is in use by a running search (pid {owner}, experiment {info.get('experiment_id')})"
        )
    for exp_id in info.get("experiment_ids") or [info.get("experiment_id")]:
        if exp_id and nni_compat.nni_manager_processes(str(exp_id)):
            _logger.warning("stopping the NNI manager of experiment %s (its search process is gone)", exp_id)
            nni_compat.stop_orphaned_managers(str(exp_id))


def _record_experiment(work: Path, **fields: Any) -> None:
    path = work / EXPERIMENT_FILE
    info: Dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        info = json.loads(path.read_text())
    ids = list(info.get("experiment_ids") or [])
    if fields.get("experiment_id") and fields["experiment_id"] not in ids:
        ids.append(fields["experiment_id"])
    info.update(fields, experiment_ids=ids)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, path)


def _wait_for_interrupt(url: str) -> None:
    """Block until Ctrl-C (``KeyboardInterrupt``), keeping the web UI up for inspection."""
    _logger.info("search finished; the web UI stays up at %s -- press Ctrl-C to stop it", url)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(0.5)
    _logger.info("stopping the web UI")


def run_search(
    data_root: str,
    strategy: str = "regularized_evolution",
    space: str = "macro",
    space_options: Optional[Dict[str, Any]] = None,
    max_trials: int = 20,
    trial_epochs: int = 1,
    limit_train_batches: Optional[int] = None,
    limit_val_batches: Optional[int] = None,
    train_size: Optional[int] = 2000,
    val_size: Optional[int] = 1000,
    batch_size: int = 64,
    dataset: Literal["cifar10", "cifar100"] = "cifar10",
    num_workers: int = 0,
    cache_dir: Optional[str] = None,
    population_size: int = 10,
    sample_size: int = 3,
    mutation: Mutation = "one_choice",
    mutation_prob: float = 0.2,
    crossover: bool = False,
    model_kwargs: Optional[Dict[str, Any]] = None,
    final_epochs: int = 30,
    final_batch_size: int = 128,
    seed: int = 0,
    work_dir: str = "biorules_runs/search",
    engine: Engine = "sequential",
    port: Optional[int] = None,
    trial_concurrency: int = 1,
    keep_ui: bool = False,
    resume: bool = False,
    top_k: int = 1,
    output_yaml: Optional[str] = None,
) -> SearchResult:
    """Search ops and learning rules per layer with NNI and write the best architectures.

    Args:
        data_root: CIFAR root (ImageFolder ``train/``/``test/`` tree or torchvision files).
        strategy: ``regularized_evolution`` (aging evolution), ``evolution`` (no aging: the worst
            member dies) or ``random``; see :mod:`lightning_biorules.nas.strategies`.
        space: search space name in :mod:`lightning_biorules.nas.spaces` (``macro``, ``nb201``,
            ``darts``, ...).
        space_options: keyword options of that space (``biorules space NAME --help``), e.g.
            ``{"layers_per_stage": 1, "rules": ["bp", "fa"], "search_ends": True}`` for ``macro``.
        max_trials: Number of candidates evaluated (failed and, with ``resume``, replayed ones included).
        trial_epochs: Epochs per candidate.
        limit_train_batches: Training batches per trial epoch (None: all of ``train_size``).
        limit_val_batches: Validation batches per trial epoch (None: all of ``val_size``).
        train_size: Class-balanced subset of the training split used by trials (None: all).
        val_size: Class-balanced subset of the test split used for validation (None: all).
        batch_size: Batch size of the trials.
        dataset: ``cifar10`` or ``cifar100``.
        num_workers: Dataloader workers of the trials.
        cache_dir: Decoded-image cache of ``CIFARDataModule`` (None: its default, resolved before
            NNI's home redirection).
        population_size: Population of the evolutions (small default, NAS-Bench-201 style;
            NNI's 100 is for huge spaces).
        sample_size: Tournament size of the evolutions.
        mutation: ``one_choice`` (a child differs from its parent in exactly one label) or
            ``per_label`` (NNI's: every label re-drawn with ``mutation_prob``).
        mutation_prob: Per-label mutation probability for ``mutation=per_label``.
        crossover: Crossover of two tournament winners before mutating.
        model_kwargs: Extra ``ImageClassifier`` arguments (``lr``, ``init``, ...) for trials and output.
        final_epochs: ``trainer.max_epochs`` of the written configs.
        final_batch_size: ``data.batch_size`` of the written configs.
        seed: Seeds the strategy and every trial (the same seed for all candidates).
        work_dir: Folder for NNI's experiment files and registry, the trial journal
            ``trials.jsonl``, ``search_result.json``, ``experiment.json``, ``top/`` and (by
            default) ``best.yaml``.
        engine: ``sequential`` (in-process, no Node manager) or ``ts`` (NNI's local training
            service: a Node manager and web UI on ``port``, one subprocess per trial).
        port: Web UI / REST port for ``engine=ts`` (None: a free one).
        trial_concurrency: Parallel trials for ``engine=ts`` (``--concurrency`` on the CLI).
        keep_ui: With ``engine=ts``, keep the web UI up after the search until Ctrl-C.
        resume: Reuse the finished trials in ``work_dir``'s journal (same space, data, trainer,
            model options and seed): they are not trained again and count towards ``max_trials``.
        top_k: Also write the best ``top_k`` architectures as ``<work_dir>/top/rank{i}.yaml``.
        output_yaml: Where to write the best config (None: ``<work_dir>/best.yaml``).

    Returns:
        A :class:`SearchResult`. Raises ``RuntimeError`` if no trial succeeded, ``ValueError`` for
        bad arguments (unknown strategy / space / option), and ``KeyboardInterrupt`` when
        interrupted (finished trials stay in the journal: run again with ``resume=True``).
    """
    import importlib

    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment
    from nni.nas.strategy.middleware import Chain

    from ..data import default_cache_dir
    from .spaces import build_space

    if max_trials < 1:
        raise ValueError("max_trials must be >= 1")
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    if engine not in ("sequential", "ts"):
        raise ValueError(f"engine must be 'sequential' or 'ts', got {engine!r}")
    if keep_ui and engine != "ts":
        raise ValueError("keep_ui needs engine='ts' (the sequential engine has no web UI)")
    start = time.perf_counter()
    search_strategy = strategies.build_strategy(
        strategy,
        population_size=population_size,
        sample_size=sample_size,
        mutation=mutation,
        mutation_prob=mutation_prob,
        crossover=crossover,
        seed=seed,
    )
    space_options = dict(space_options or {})
    search_space = build_space(space, **space_options)

    work = Path(work_dir).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(output_yaml).expanduser().resolve() if output_yaml else work / "best.yaml"
    # normpath drops '//' (nni.load would read it as a comment on the 'ts' engine)
    data_root_abs = os.path.normpath(os.path.abspath(os.path.expanduser(str(data_root))))
    cache = os.path.normpath(os.path.abspath(os.path.expanduser(cache_dir))) if cache_dir else str(default_cache_dir())
    model_kwargs = dict(model_kwargs or {})

    trial_data = {
        "root": data_root_abs,
        "dataset": dataset,
        "batch_size": int(batch_size),
        "train_size": train_size,
        "val_size": val_size,
        "num_workers": int(num_workers),
        "cache_dir": cache,
        "seed": int(seed),
    }
    trial_trainer: Dict[str, Any] = {"max_epochs": int(trial_epochs)}
    # whole batch counts only: Lightning reads a float 1.0 as "100%"
    if limit_train_batches is not None:
        trial_trainer["limit_train_batches"] = int(limit_train_batches)
    if limit_val_batches is not None:
        trial_trainer["limit_val_batches"] = int(limit_val_batches)
    journal_path = work / JOURNAL_FILE
    eval_args: Dict[str, Any] = dict(
        data=trial_data,
        trainer=trial_trainer,
        model_kwargs=model_kwargs,
        seed=int(seed),
        root_dir=os.path.normpath(str(work / "trials")),
    )
    fingerprint = trial_fingerprint(space, space_options, eval_args)
    eval_args.update(journal=os.path.normpath(str(journal_path)), fingerprint=fingerprint)
    if engine == "ts":
        nni_compat.check_evaluator_arguments(eval_args)

    _claim_work_dir(work)
    journal: Dict[str, Dict[str, Any]] = {}
    if resume:
        journal = journal_index(read_journal(journal_path), fingerprint)
        _logger.info("resume: %d finished trials in %s can be replayed", len(journal), journal_path)
    elif journal_path.exists():
        os.replace(journal_path, work / "trials.prev.jsonl")
        _logger.info("moved the previous journal to %s (use resume=True to reuse it)", work / "trials.prev.jsonl")

    # by its importable name, also when this file runs as __main__ (trials import it by path)
    function = importlib.import_module("lightning_biorules.nas.search").evaluate_candidate
    evaluator = FunctionalEvaluator(function, **eval_args)

    exp_dir = work / "nni-experiments"
    config = _experiment_config(engine, trial_concurrency)
    config.max_trial_number = int(max_trials)
    config.experiment_name = f"biorules-{space}-{strategy}"
    config.experiment_working_directory = str(exp_dir)
    replay = strategies.JournalReplay(journal, max_trials)
    exp = NasExperiment(search_space, evaluator, Chain(search_strategy, replay), config)
    if engine == "ts":
        # replayed candidates never reach the NNI manager: once the budget is used up, lower the
        # manager's trial number to what it ran, so that it reports DONE when they have finished
        def lower_manager_budget(engine_trials: int) -> None:
            if engine_trials >= 1:
                _logger.info("NNI manager budget lowered to the %d trials it runs", engine_trials)
                exp.update_max_trial_number(engine_trials)

        replay.on_budget_exhausted = lower_manager_budget
    ui_port = (int(port) if port else nni_compat.free_port()) if engine == "ts" else None
    _logger.info(
        "NNI %s search over %s, engine %s, %d trials, experiment %s in %s%s",
        strategy, space, engine, max_trials, exp.id, exp_dir,
        f", web UI http://localhost:{ui_port}" if ui_port else "",
    )
    _record_experiment(
        work, experiment_id=str(exp.id), engine=engine, port=ui_port, status="running",
        owner_pid=os.getpid(), owner_create_time=_own_create_time(), started_at=_now(),
    )
    outcome = "failed"
    result: Optional[SearchResult] = None
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_nni_home_for(work, engine))
            try:
                nni_compat.run_experiment(exp, port=ui_port)
                trials = _collect_trials(replay, journal_index(read_journal(journal_path), fingerprint))
                result = _finish(
                    trials, search_space, work=work, out_path=out_path, exp_id=str(exp.id), strategy=strategy,
                    engine=engine, space=space, space_options=space_options, seed=seed, top_k=top_k,
                    model_kwargs=model_kwargs, final_data={"root": data_root_abs, "dataset": dataset,
                    "batch_size": int(final_batch_size)}, final_trainer={"max_epochs": int(final_epochs)},
                    trial_epochs=trial_epochs, train_size=train_size, journal=journal_path, start=start,
                )
                outcome = "finished"
                if keep_ui:
                    _wait_for_interrupt(f"http://localhost:{ui_port}")
            except KeyboardInterrupt:
                outcome = "interrupted"
                _logger.warning("search interrupted; finished trials are in %s (resume=True continues)", journal_path)
                raise
            finally:
                nni_compat.stop_experiment(exp)
    finally:
        _record_experiment(work, status=outcome, ended_at=_now())
    assert result is not None
    return result


def _experiment_config(engine: str, trial_concurrency: int):
    """``NasExperimentConfig`` of ``engine``: 'sequential' goes on after a failed trial; 'ts' runs
    CPU trials that see the real ``$HOME`` and can import this package."""
    from nni.nas.experiment import NasExperimentConfig

    if engine == "sequential":
        config = NasExperimentConfig("sequential", "simplified")
        config.execution_engine.continue_on_failure = True
        return config
    config = NasExperimentConfig("ts", "simplified", "local")
    nni_compat.configure_local_cpu(config, trial_concurrency=trial_concurrency)
    # trials are the Node manager's children: give them the real HOME back, and make this
    # package importable from the launch directory even when it is not installed
    pkg_parent = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH", "")) if p)
    trial_env = {"PYTHONPATH": pythonpath}
    if os.environ.get("HOME"):
        trial_env["HOME"] = os.environ["HOME"]
    nni_compat.set_trial_env(config, trial_env)
    return config


def _own_create_time() -> Optional[float]:
    import psutil

    with contextlib.suppress(psutil.Error):
        return psutil.Process(os.getpid()).create_time()
    return None


def _nni_home_for(work: Path, engine: str) -> contextlib.AbstractContextManager:
    """NNI's registry under ``work`` (``$HOME`` too for the 'ts' engine's Node manager)."""
    return nni_compat.nni_home(work, set_home_env=(engine == "ts"))


def _finish(
    trials: List[TrialRecord],
    search_space: Any,
    *,
    work: Path,
    out_path: Path,
    exp_id: str,
    strategy: str,
    engine: str,
    space: str,
    space_options: Dict[str, Any],
    seed: int,
    top_k: int,
    model_kwargs: Dict[str, Any],
    final_data: Dict[str, Any],
    final_trainer: Dict[str, Any],
    trial_epochs: int,
    train_size: Optional[int],
    journal: Path,
    start: float,
) -> SearchResult:
    """Pick the best trial, write ``best.yaml``, ``search_result.json`` and ``top/rank{i}.yaml``."""
    ok = [t for t in trials if t.succeeded]
    replayed = sum(t.replayed for t in trials)
    _logger.info("%d trials, %d succeeded, %d failed, %d replayed from the journal",
                 len(trials), len(ok), len(trials) - len(ok), replayed)
    if not ok:
        raise RuntimeError(
            f"no trial succeeded ({len(trials)} ran); see {work / 'nni-experiments' / exp_id} and {journal}"
        )

    def final_config(sample: Dict[str, Any]) -> Dict[str, Any]:
        frozen = search_space.freeze(sample)
        return frozen.to_config(model=dict(model_kwargs), data=dict(final_data), trainer=dict(final_trainer))

    best = max(ok, key=lambda t: (t.accuracy, -t.index))
    best_arch = dict(search_space.freeze(best.arch).arch)
    best_config = final_config(best.arch)
    header = [
        f"biorules search: {strategy} over {space}, {len(trials)} trials ({len(trials) - len(ok)} failed), seed {seed}",
        f"best trial {best.index}: val_acc {best.accuracy:.4f} after {trial_epochs} epoch(s) on "
        f"{train_size if train_size is not None else 'all'} training images",
        f"train it: biorules fit --config {out_path.name} --data.root <CIFAR root>",
    ]
    _dump_yaml(best_config, out_path, header)
    result = SearchResult(
        best_arch=best_arch,
        best_accuracy=float(best.accuracy),
        best_config=best_config,
        trials=trials,
        output_yaml=str(out_path),
        experiment_id=exp_id,
        work_dir=str(work),
        strategy=str(strategy),
        engine=str(engine),
        duration_s=time.perf_counter() - start,
        space=space,
        space_options=dict(space_options),
        journal=str(journal),
    )
    result.top_yamls = [str(path) for path in export_top_k(result, top_k, work / "top")]
    (work / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2))
    _logger.info("best val_acc %.4f: %s -> %s", result.best_accuracy, best_arch, out_path)
    return result


# ---------------------------------------------------------------------------------------------
# biorules search
# ---------------------------------------------------------------------------------------------
_DATA_ARGS = {
    "data_root": "root",
    "dataset": "dataset",
    "train_size": "train_size",
    "val_size": "val_size",
    "batch_size": "batch_size",
    "num_workers": "num_workers",
    "cache_dir": "cache_dir",
}


_DATA_HELP = {
    "data_root": "CIFAR root: ImageFolder train/ and test/ trees, or torchvision's files.",
    "dataset": "cifar10 or cifar100.",
    "train_size": "Class-balanced subset of the training split used by trials (null: all).",
    "val_size": "Class-balanced subset of the test split used for validation (null: all).",
    "batch_size": "Batch size of the trials.",
    "num_workers": "Dataloader workers of the trials.",
    "cache_dir": "Decoded-image cache folder (null: CIFARDataModule's default).",
}


def build_search_parser():
    """jsonargparse parser of ``biorules search``: ``--data.root``, ``--data.train_size``,
    ``--data.val_size``, ``--data.batch_size``, ``--data.dataset``, ``--data.num_workers``,
    ``--data.cache_dir``; ``--strategy`` and ``--space`` (choices from the registries),
    ``--space_options`` (a YAML/JSON mapping), ``--concurrency`` (= ``trial_concurrency``), the
    flags ``--keep_ui`` and ``--resume``, every other :func:`run_search` argument as ``--name``,
    and ``--config``."""
    import inspect
    import typing

    from jsonargparse import ActionConfigFile, ActionYesNo, ArgumentParser

    from .spaces import available_spaces

    parser = ArgumentParser(
        prog="biorules search",
        description="NNI architecture search over ops and learning rules per layer (on CIFAR).",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options.")
    sig = inspect.signature(run_search)
    hints = typing.get_type_hints(run_search)
    for arg, name in _DATA_ARGS.items():
        param = sig.parameters[arg]
        kwargs: Dict[str, Any] = {"type": hints[arg], "help": _DATA_HELP[arg]}
        if param.default is inspect.Parameter.empty:
            kwargs["required"] = True
        else:
            kwargs["default"] = param.default
        parser.add_argument(f"--data.{name}", **kwargs)
    parser.add_argument(
        "--strategy",
        type=Literal[tuple(strategies.available_strategies())],
        default=sig.parameters["strategy"].default,
        help="regularized_evolution: aging evolution (the oldest member dies); evolution: the worst member dies; "
             "random: random search.",
    )
    parser.add_argument(
        "--space", type=Literal[tuple(available_spaces())], default=sig.parameters["space"].default,
        help="Search space (see `biorules space NAME --help` for its options).",
    )
    parser.add_argument(
        "--space_options", type=Optional[Dict[str, Any]], default=None,
        help="Options of the space as a YAML/JSON mapping, e.g. '{layers_per_stage: 1, rules: [bp, fa]}'.",
    )
    parser.add_argument(
        "--concurrency", "--trial_concurrency", dest="trial_concurrency", type=int,
        default=sig.parameters["trial_concurrency"].default, help="Parallel trials on the ts engine.",
    )
    parser.add_argument(
        "--keep_ui", action=ActionYesNo, default=False,
        help="With --engine ts, keep the web UI up after the search until Ctrl-C.",
    )
    parser.add_argument(
        "--resume", action=ActionYesNo, default=False,
        help="Reuse the finished trials of work_dir's journal (trials.jsonl): they are not trained again "
             "and count towards max_trials.",
    )
    parser.add_function_arguments(
        run_search,
        skip=set(_DATA_ARGS) | {"strategy", "space", "space_options", "trial_concurrency", "keep_ui", "resume"},
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Optional[SearchResult]:
    """Entry point of ``biorules search`` (``argv`` without the ``search`` word). Ctrl-C (or
    SIGTERM) stops the search cleanly and exits with status 130."""
    import signal
    import sys

    parser = build_search_parser()
    cfg = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    values = cfg.as_dict()
    values.pop("config", None)
    data = values.pop("data", {}) or {}
    for arg, name in _DATA_ARGS.items():
        values[arg] = data.get(name)
    pkg_logger = logging.getLogger("lightning_biorules")
    if not pkg_logger.handlers and not logging.getLogger().handlers:
        # NNI and Lightning print through their own handlers; only show this package's progress
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
        pkg_logger.addHandler(handler)
        pkg_logger.setLevel(logging.INFO)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    from .spaces import build_space

    try:  # usage errors before anything starts: unknown space option, bad sizes, ...
        strategies.build_strategy(
            values["strategy"], population_size=values["population_size"], sample_size=values["sample_size"],
            mutation=values["mutation"], mutation_prob=values["mutation_prob"], crossover=values["crossover"],
        )
        build_space(values["space"], **(values["space_options"] or {}))
    except (ValueError, TypeError) as err:
        parser.error(str(err))

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        result = run_search(**values)
    except KeyboardInterrupt:
        print("search interrupted; run the same command with --resume to continue", file=sys.stderr)
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    ok = len(result.trials) - len(result.failed_trials)
    print(f"best val_acc {result.best_accuracy:.4f} ({ok}/{len(result.trials)} trials succeeded, "
          f"{len(result.replayed_trials)} replayed)")
    print(f"best architecture: {json.dumps(result.best_arch)}")
    print(f"config written to {result.output_yaml}")
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
