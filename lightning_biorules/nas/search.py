"""Multi-trial NNI search over (op, learning rule) per layer: library API and ``biorules search``.

    from lightning_biorules.nas.search import run_search
    result = run_search("../shared/data/cifar10", strategy="regularized_evolution", max_trials=20)
    result.best_arch, result.best_accuracy, result.output_yaml

Every trial is :func:`evaluate_candidate` (a ``FunctionalEvaluator``): it turns the frozen
:class:`~lightning_biorules.nas.space.MacroSearchSpace` into the same ``biorules fit`` config that
is written out for the winner, builds ``ImageClassifier`` + ``CIFARDataModule`` from it, fits a
plain ``lightning.Trainer`` on a small budget, reports the validation accuracy of every epoch
(``nni.report_intermediate_result``) and the last one (``nni.report_final_result``). A trial
that raises, or whose losses/accuracy are not finite, is marked failed by NNI and the search goes
on. The best architecture is written with ``yaml.safe_dump`` and ``biorules fit --config best.yaml``
trains it as is.

All NNI files (experiment folders, the ``nni-experiments`` registry) live under ``work_dir``; the
'ts' engine's Node manager is stopped (and killed if needed) before :func:`run_search` returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Literal, Mapping, Optional, Sequence

import yaml

from . import nni_compat
from .space import MacroSearchSpace, arch_to_config

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

#: Fault injection for tests and debugging: ``"<kind>:<label>=<value>[,<label>=<value>...]"`` with
#: kind ``raise`` (the trial raises) or ``nan`` (the trial trains with a NaN learning rate);
#: applies to candidates whose architecture matches every ``label=value``.
FAULT_ENV = "BIORULES_NAS_FAULT"

Strategy = Literal["regularized_evolution", "random"]
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


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class TrialRecord:
    """One evaluated candidate; ``arch`` is NNI's sample (the searched labels only)."""

    index: int
    arch: Dict[str, str]
    status: str  #: NNI's model status: "trained", "failed", "interrupted", ...
    accuracy: Optional[float]  #: final validation accuracy; None when the trial failed
    intermediates: List[float] = dataclasses.field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        return self.status == "trained" and self.accuracy is not None and math.isfinite(self.accuracy)


@dataclasses.dataclass
class SearchResult:
    """Outcome of :func:`run_search`."""

    best_arch: Dict[str, str]  #: complete architecture (with ``rule_stem`` / ``rule_classifier``)
    best_accuracy: float
    best_config: Dict[str, Any]  #: the ``biorules fit`` config written to :attr:`output_yaml`
    trials: List[TrialRecord]
    output_yaml: Optional[str]
    experiment_id: str
    work_dir: str
    strategy: str
    engine: str
    duration_s: float

    @property
    def failed_trials(self) -> List[TrialRecord]:
        return [t for t in self.trials if not t.succeeded]

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["trials"] = [dataclasses.asdict(t) for t in self.trials]
        return out


# ---------------------------------------------------------------------------------------------
# one trial
# ---------------------------------------------------------------------------------------------
def _parse_fault(spec: str) -> tuple[str, Dict[str, str]]:
    kind, _, conds = spec.partition(":")
    kind = kind.strip()
    if kind not in ("raise", "nan"):
        raise ValueError(f"{FAULT_ENV}={spec!r}: kind must be 'raise' or 'nan'")
    match: Dict[str, str] = {}
    for part in filter(None, (p.strip() for p in conds.split(","))):
        label, _, value = part.partition("=")
        match[label.strip()] = value.strip()
    return kind, match


def _injected_fault(arch: Mapping[str, str]) -> Optional[str]:
    spec = os.environ.get(FAULT_ENV, "").strip()
    if not spec:
        return None
    kind, match = _parse_fault(spec)
    if all(str(arch.get(k)) == v for k, v in match.items()):
        return kind
    return None


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
) -> float:
    """Fit the ``biorules fit``-style ``config`` (``model`` / ``data`` / ``trainer`` sections) on CPU
    with a plain ``lightning.Trainer`` (no logger, no checkpoints) and return the final ``val_acc``.

    With ``report``, every epoch's ``val_acc`` goes to ``nni.report_intermediate_result`` (the final
    one is left to the caller). Raises :class:`TrialFailedError` when any logged loss/accuracy is not
    finite or ``val_acc`` is missing.
    """
    import lightning as L

    from ..data import CIFARDataModule
    from ..module import ImageClassifier

    L.seed_everything(seed, workers=True, verbose=False)
    data = CIFARDataModule(**dict(config.get("data", {})))
    model = ImageClassifier(num_classes=data.num_classes, **dict(config["model"]))
    reporter = _reporter_callback(report)
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


def evaluate_candidate(
    model: MacroSearchSpace,
    *,
    data: Dict[str, Any],
    trainer: Dict[str, Any],
    model_kwargs: Optional[Dict[str, Any]] = None,
    seed: int = 0,
    root_dir: Optional[str] = None,
) -> float:
    """NNI ``FunctionalEvaluator`` function: train the frozen ``model``'s architecture briefly.

    ``model`` is the frozen :class:`MacroSearchSpace` NNI builds for the trial; its ``arch`` is
    turned into a config with :meth:`MacroSearchSpace.to_config` (``data``/``trainer`` sections as
    given, ``model_kwargs`` added to the model section), trained by :func:`train_config`, and its
    final validation accuracy reported with ``nni.report_final_result`` (also returned). Every
    trial uses the same ``seed``.
    """
    import nni

    arch = dict(model.arch)
    model_kwargs = dict(model_kwargs or {})
    fault = _injected_fault(arch)
    if fault == "raise":
        raise RuntimeError(f"fault injected by {FAULT_ENV} for {arch}")
    if fault == "nan":
        model_kwargs["lr"] = float("nan")
    config = model.to_config(model=model_kwargs, data=data, trainer=trainer)
    _logger.info("trial arch %s", arch)
    start = time.perf_counter()
    acc = train_config(config, seed=seed, report=True, root_dir=root_dir)
    _logger.info("trial val_acc %.4f in %.1fs", acc, time.perf_counter() - start)
    nni.report_final_result(acc)
    return acc


# ---------------------------------------------------------------------------------------------
# the search
# ---------------------------------------------------------------------------------------------
def _build_strategy(
    strategy: str,
    *,
    population_size: int,
    sample_size: int,
    mutation: str,
    mutation_prob: float,
    crossover: bool,
    seed: int,
):
    from nni.nas.strategy import Random, RegularizedEvolution

    if strategy == "random":
        return Random(dedup=True, seed=seed)
    if strategy == "regularized_evolution":
        if mutation == "one_choice":
            cls = nni_compat.SingleMutationRegularizedEvolution
        elif mutation == "per_label":
            cls = RegularizedEvolution
        else:
            raise ValueError(f"mutation must be 'one_choice' or 'per_label', got {mutation!r}")
        return cls(
            population_size=population_size,
            sample_size=sample_size,
            mutation_prob=mutation_prob,
            crossover=crossover,
            dedup=True,
            seed=seed,
        )
    raise ValueError(f"strategy must be 'regularized_evolution' or 'random', got {strategy!r}")


def _status_name(status: Any) -> str:
    return str(getattr(status, "value", status)).lower()


def _collect_trials(experiment) -> List[TrialRecord]:
    records = []
    for i, m in enumerate(experiment.strategy.list_models(sort=False)):
        metric = m.metric
        try:
            metric = float(metric) if metric is not None else None
        except (TypeError, ValueError):
            metric = None
        status = _status_name(m.status)
        if metric is not None and not math.isfinite(metric):
            metric, status = None, "failed"
        inter = []
        for v in m.metrics.intermediates:
            with contextlib.suppress(TypeError, ValueError):
                inter.append(float(v))
        records.append(TrialRecord(i, {str(k): str(v) for k, v in dict(m.sample or {}).items()}, status, metric, inter))
    return records


def _dump_yaml(config: Mapping[str, Any], path: Path, header: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"# {line}\n" for line in header)
    text += yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)
    path.write_text(text)


def run_search(
    data_root: str,
    strategy: Strategy = "regularized_evolution",
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
    layers_per_stage: int = 2,
    channels: Sequence[int] = (16, 32, 64),
    ops: Optional[Sequence[str]] = None,
    rules: Optional[Sequence[str]] = None,
    search_ends: bool = False,
    end_rule: str = "bp",
    model_kwargs: Optional[Dict[str, Any]] = None,
    final_epochs: int = 30,
    final_batch_size: int = 128,
    seed: int = 0,
    work_dir: str = "biorules_runs/search",
    engine: Engine = "sequential",
    port: Optional[int] = None,
    trial_concurrency: int = 1,
    output_yaml: Optional[str] = None,
) -> SearchResult:
    """Search ops and learning rules per layer of a ``MacroNet`` with NNI and write the best one.

    Args:
        data_root: CIFAR root (ImageFolder ``train/``/``test/`` tree or torchvision files).
        strategy: ``regularized_evolution`` (aging evolution) or ``random``.
        max_trials: Number of candidates trained (failed ones included).
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
        population_size: Regularized evolution's population (small default, NAS-Bench-201 style;
            NNI's 100 is for huge spaces).
        sample_size: Regularized evolution's tournament size.
        mutation: ``one_choice`` (a child differs from its parent in exactly one label) or
            ``per_label`` (NNI's: every label re-drawn with ``mutation_prob``).
        mutation_prob: Per-label mutation probability for ``mutation=per_label``.
        crossover: NNI's crossover of two tournament winners before mutating.
        layers_per_stage: Searchable layers per stage of the MacroNet.
        channels: Stage widths of the MacroNet.
        ops: Op choice set (None: all of ``MACRO_OPS``).
        rules: Learning-rule choice set (None: all available rules).
        search_ends: Also search the stem's and the classifier's rule.
        end_rule: Fixed rule of stem and classifier when ``search_ends`` is false.
        model_kwargs: Extra ``ImageClassifier`` arguments (``lr``, ``init``, ...) for trials and output.
        final_epochs: ``trainer.max_epochs`` of the written config.
        final_batch_size: ``data.batch_size`` of the written config.
        seed: Seeds the strategy and every trial (the same seed for all candidates).
        work_dir: Folder for NNI's experiment files and registry, ``search_result.json`` and (by
            default) ``best.yaml``.
        engine: ``sequential`` (in-process, no Node manager) or ``ts`` (NNI's local training
            service: a Node manager and web UI on ``port``, one subprocess per trial).
        port: Web UI / REST port for ``engine=ts`` (None: a free one).
        trial_concurrency: Parallel trials for ``engine=ts``.
        output_yaml: Where to write the best config (None: ``<work_dir>/best.yaml``).

    Returns:
        A :class:`SearchResult`. Raises ``RuntimeError`` if no trial succeeded.
    """
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    from ..data import default_cache_dir

    if max_trials < 1:
        raise ValueError("max_trials must be >= 1")
    if engine not in ("sequential", "ts"):
        raise ValueError(f"engine must be 'sequential' or 'ts', got {engine!r}")
    start = time.perf_counter()
    work = Path(work_dir).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    out_path = Path(output_yaml).expanduser().resolve() if output_yaml else work / "best.yaml"
    # normpath drops '//' (nni.load would read it as a comment on the 'ts' engine)
    data_root_abs = os.path.normpath(os.path.abspath(os.path.expanduser(str(data_root))))
    cache = os.path.normpath(os.path.abspath(os.path.expanduser(cache_dir))) if cache_dir else str(default_cache_dir())
    channels = [int(c) for c in channels]
    model_kwargs = dict(model_kwargs or {})

    space_kwargs: Dict[str, Any] = dict(
        layers_per_stage=int(layers_per_stage),
        channels=channels,
        search_ends=bool(search_ends),
        end_rule=str(end_rule),
    )
    if ops is not None:
        space_kwargs["ops"] = [str(o) for o in ops]
    if rules is not None:
        space_kwargs["rules"] = [str(r) for r in rules]
    space = MacroSearchSpace(**space_kwargs)

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
    eval_args = dict(
        data=trial_data,
        trainer=trial_trainer,
        model_kwargs=model_kwargs,
        seed=int(seed),
        root_dir=str(work / "trials"),
    )
    if engine == "ts":
        nni_compat.check_evaluator_arguments(eval_args)
    # by its importable name, also when this file runs as __main__ (trials import it by path)
    import importlib

    function = importlib.import_module("lightning_biorules.nas.search").evaluate_candidate
    evaluator = FunctionalEvaluator(function, **eval_args)
    search_strategy = _build_strategy(
        strategy,
        population_size=population_size,
        sample_size=sample_size,
        mutation=mutation,
        mutation_prob=mutation_prob,
        crossover=crossover,
        seed=seed,
    )

    exp_dir = work / "nni-experiments"
    if engine == "sequential":
        config = NasExperimentConfig("sequential", "simplified")
        config.execution_engine.continue_on_failure = True
    else:
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
    config.max_trial_number = int(max_trials)
    config.experiment_name = f"biorules-{strategy}"
    config.experiment_working_directory = str(exp_dir)

    exp = NasExperiment(space, evaluator, search_strategy, config)
    _logger.info(
        "NNI %s search, engine %s, %d trials, experiment %s in %s", strategy, engine, max_trials, exp.id, exp_dir
    )
    trials: List[TrialRecord] = []
    with contextlib.ExitStack() as stack:
        stack.enter_context(nni_compat.nni_home(work, set_home_env=(engine == "ts")))
        try:
            if engine == "ts":
                exp.run(port=int(port) if port else nni_compat.free_port())
            else:
                exp.run()
            trials = _collect_trials(exp)
        finally:
            nni_compat.stop_experiment(exp)

    ok = [t for t in trials if t.succeeded]
    _logger.info("%d trials, %d succeeded, %d failed", len(trials), len(ok), len(trials) - len(ok))
    if not ok:
        raise RuntimeError(f"no trial succeeded ({len(trials)} ran); see {exp_dir / exp.id}")
    best = max(ok, key=lambda t: (t.accuracy, -t.index))
    best_arch = dict(space.freeze(best.arch).arch)
    best_config = arch_to_config(
        best_arch,
        channels=channels,
        layers_per_stage=layers_per_stage,
        model=model_kwargs,
        data={"root": data_root_abs, "dataset": dataset, "batch_size": int(final_batch_size)},
        trainer={"max_epochs": int(final_epochs)},
    )
    header = [
        f"biorules search: {strategy}, {len(trials)} trials ({len(trials) - len(ok)} failed), seed {seed}",
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
        experiment_id=str(exp.id),
        work_dir=str(work),
        strategy=str(strategy),
        engine=str(engine),
        duration_s=time.perf_counter() - start,
    )
    (work / "search_result.json").write_text(json.dumps(result.to_dict(), indent=2))
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
    ``--data.cache_dir``, every other :func:`run_search` argument as ``--name``, and ``--config``."""
    import inspect

    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(
        prog="biorules search",
        description="NNI architecture search over ops and learning rules per layer (MacroNet on CIFAR).",
    )
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with any of these options.")
    sig = inspect.signature(run_search)
    hints = __import__("typing").get_type_hints(run_search)
    for arg, name in _DATA_ARGS.items():
        param = sig.parameters[arg]
        kwargs: Dict[str, Any] = {"type": hints[arg], "help": _DATA_HELP[arg]}
        if param.default is inspect.Parameter.empty:
            kwargs["required"] = True
        else:
            kwargs["default"] = param.default
        parser.add_argument(f"--data.{name}", **kwargs)
    parser.add_function_arguments(run_search, skip=set(_DATA_ARGS))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> SearchResult:
    """Entry point of ``biorules search`` (``argv`` without the ``search`` word)."""
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
    result = run_search(**values)
    ok = len(result.trials) - len(result.failed_trials)
    print(f"best val_acc {result.best_accuracy:.4f} ({ok}/{len(result.trials)} trials succeeded)")
    print(f"best architecture: {json.dumps(result.best_arch)}")
    print(f"config written to {result.output_yaml}")
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
