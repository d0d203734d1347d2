"""Time a search spends outside candidate training, as a fraction of training time, per NNI engine.

    python benchmarks/search_overhead.py                                   # 3 trials of ~20 s, both engines
    python benchmarks/search_overhead.py --trial-seconds 60 --engines sequential   # the target's setting

Runs a real :func:`~lightning_biorules.nas.search.run_search` (random strategy, macro space, real
CIFAR-10) with ``--trials`` candidates whose training budget (``limit_train_batches``,
``train_size``, epochs) is calibrated so one trial trains about ``--trial-seconds``. Each trial's
pure training time is the time between Lightning's ``on_fit_start`` and ``on_fit_end`` hooks (the
training and validation loops), measured by a callback that Lightning attaches to every
``Trainer`` through its documented ``lightning.pytorch.callbacks_factory`` entry point: this script
puts a small distribution folder declaring that entry point on ``sys.path`` and ``PYTHONPATH``, so
it reaches the in-process trials of the 'sequential' engine and the trial subprocesses of the 'ts'
engine alike, with nothing changed in the package. Every Trainer appends one JSON line to the file
named by ``$BIORULES_FIT_TIMER_LOG``.

For each engine it prints the search's wall time (the ``run_search`` call), the sum of the fit
times, ``overhead = (wall - sum(fit)) / sum(fit)`` and the overhead per trial in seconds, split into
the part inside each trial before ``on_fit_start`` (on 'ts' from the trial process's start:
start-up, imports, model, data and Trainer set-up; on 'sequential' from ``Trainer()``: Trainer
set-up and data loading) and after ``on_fit_end``, and the rest (NNI experiment set-up and
teardown, strategy, between trials, writing the results). Target: overhead <= 5% for one-minute
trials on the sequential engine.

The decoded-image cache is filled before the searches (a one-off, reported separately). Run it
alone: on a 2-core machine a second busy process slows training several-fold.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

TIMER_ENV = "BIORULES_FIT_TIMER_LOG"
ENTRY_POINT_GROUP = "lightning.pytorch.callbacks_factory"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"
TARGET_OVERHEAD = 0.05
TARGET_TRIAL_SECONDS = 60.0


# ---------------------------------------------------------------------------------------------
# the fit timer (imported by Lightning in every process that builds a Trainer)
# ---------------------------------------------------------------------------------------------
def fit_timer_callbacks() -> List[Any]:
    """Entry point of ``lightning.pytorch.callbacks_factory``: a :class:`FitTimer` when
    ``$BIORULES_FIT_TIMER_LOG`` is set, else nothing."""
    path = os.environ.get(TIMER_ENV)
    return [_fit_timer_class()(path)] if path else []


def _fit_timer_class() -> type:
    import lightning as L

    class FitTimer(L.Callback):
        """Record wall-clock timestamps of one ``trainer.fit`` and append them as a JSON line."""

        def __init__(self, path: str) -> None:
            self.path = path
            self.times: Dict[str, float] = {"trainer_init": time.time()}

        def setup(self, trainer, pl_module, stage: str) -> None:  # after the datamodule's setup
            self.times["setup"] = time.time()

        def on_fit_start(self, trainer, pl_module) -> None:
            self.times["fit_start"] = time.time()

        def on_fit_end(self, trainer, pl_module) -> None:
            self.times["fit_end"] = time.time()

        def teardown(self, trainer, pl_module, stage: str) -> None:
            self.times["teardown"] = time.time()
            try:
                import psutil

                process_start: Optional[float] = psutil.Process(os.getpid()).create_time()
            except Exception:  # pragma: no cover - psutil is an NNI dependency
                process_start = None
            record = {"pid": os.getpid(), "process_start": process_start, **self.times}
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(record) + "\n").encode())
            finally:
                os.close(fd)

    return FitTimer


def install_fit_timer(folder: Path) -> None:
    """Declare :func:`fit_timer_callbacks` as a Lightning callbacks-factory entry point, for this
    process and (through ``PYTHONPATH``) for the 'ts' engine's trial subprocesses."""
    dist = folder / "biorules_fit_timer-0.0.dist-info"
    dist.mkdir(parents=True, exist_ok=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: biorules-fit-timer\nVersion: 0.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nbiorules_fit_timer = search_overhead:fit_timer_callbacks\n"
    )
    here = str(Path(__file__).resolve().parent)
    for path in (str(folder), here):
        if path not in sys.path:
            sys.path.insert(0, path)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(folder), here, os.environ.get("PYTHONPATH", "")) if p
    )


def read_timings(path: Path) -> List[Dict[str, float]]:
    """The fit-timer records of ``path`` (complete fits only), in start order."""
    if not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [r for r in records if "fit_start" in r and "fit_end" in r]
    return sorted(records, key=lambda r: r["fit_start"])


# ---------------------------------------------------------------------------------------------
# calibration
# ---------------------------------------------------------------------------------------------
def measure_step_seconds(batch_size: int, archs: int = 3, steps: int = 3, seed: int = 0) -> float:
    """Median time of one SGD step (forward, loss, backward, update) of random macro
    architectures with random rules, at ``batch_size``, on random 32x32 images."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lightning_biorules.module import ImageClassifier
    from lightning_biorules.nas.space import MacroSearchSpace

    torch.manual_seed(seed)
    space = MacroSearchSpace(rules=["bp", "fa", "usf", "brsf", "frsf", "dfa"])
    x = torch.randn(batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (batch_size,))
    times = []
    for i in range(archs):
        frozen = space.random(random_state=np.random.RandomState(seed + i))
        model = ImageClassifier(**frozen.to_config()["model"])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        for step in range(steps + 1):
            start = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if step:  # the first step warms up
                times.append(time.perf_counter() - start)
    return statistics.median(times)


def trial_budget(trial_seconds: float, step_seconds: float, batch_size: int, max_train_size: int) -> Dict[str, int]:
    """``limit_train_batches``, ``train_size`` and ``trial_epochs`` for about ``trial_seconds`` of
    training per trial: as many batches as fit, over at most ``max_train_size`` images (more epochs
    when the batches need more images than that)."""
    batches = max(1, round(trial_seconds / step_seconds))
    images = batches * batch_size
    epochs = max(1, math.ceil(images / max_train_size))
    per_epoch = math.ceil(batches / epochs)
    train_size = min(max_train_size, math.ceil(per_epoch * batch_size / 10) * 10)  # class-balanced: x10
    return {"limit_train_batches": per_epoch, "train_size": train_size, "trial_epochs": epochs}


def warm_cache(data_root: str, cache_dir: str, train_size: int, val_size: int, batch_size: int) -> float:
    """Decode the subsets the trials use into the cache (a one-off); returns the seconds it took."""
    from lightning_biorules.data import CIFARDataModule

    start = time.perf_counter()
    CIFARDataModule(root=data_root, train_size=train_size, val_size=val_size, batch_size=batch_size,
                    cache_dir=cache_dir, seed=0).setup("fit")
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------
# one search
# ---------------------------------------------------------------------------------------------
def run_one(engine: str, args: argparse.Namespace, budget: Dict[str, int], work: Path, cache_dir: str) -> Dict[str, Any]:
    """Run a timed search on ``engine`` and return its figures."""
    from lightning_biorules.nas.search import run_search

    log = work / "fit_times.jsonl"
    os.environ[TIMER_ENV] = str(log)
    start_wall = time.time()
    start = time.perf_counter()
    result = run_search(
        args.data_root, strategy="random", space="macro", max_trials=args.trials, seed=args.seed,
        engine=engine, work_dir=str(work / "search"), cache_dir=cache_dir, batch_size=args.batch_size,
        val_size=args.val_size, **budget,
    )
    wall = time.perf_counter() - start
    end_wall = time.time()
    os.environ.pop(TIMER_ENV, None)

    fits = read_timings(log)
    if len(fits) != args.trials:
        raise RuntimeError(f"{engine}: {len(fits)} timed fits for {args.trials} trials (see {log})")
    fit = [r["fit_end"] - r["fit_start"] for r in fits]
    before = [r["fit_start"] - (r["process_start"] if engine == "ts" and r.get("process_start") else r["trainer_init"])
              for r in fits]
    after = [r["teardown"] - r["fit_end"] for r in fits]
    journal = [t.duration_s for t in result.trials if t.duration_s is not None]
    overhead = wall - sum(fit)
    return {
        "engine": engine,
        "trials": len(fits),
        "failed": len(result.failed_trials),
        "wall_s": wall,
        "fit_s": fit,
        "fit_total_s": sum(fit),
        "overhead_s": overhead,
        "overhead_frac": overhead / sum(fit),
        "overhead_per_trial_s": overhead / len(fits),
        "in_trial_before_fit_s": statistics.mean(before),
        "in_trial_after_fit_s": statistics.mean(after),
        "first_fit_after_s": fits[0]["fit_start"] - start_wall,
        "after_last_fit_s": end_wall - fits[-1]["fit_end"],
        "journal_trial_s": journal,
    }


def report(row: Dict[str, Any], trial_seconds: float) -> List[str]:
    """Printable lines for one engine's figures."""
    n = row["trials"]
    outside = row["overhead_per_trial_s"] - row["in_trial_before_fit_s"] - row["in_trial_after_fit_s"]
    before_what = ("process start-up, imports, model, data and Trainer set-up" if row["engine"] == "ts"
                   else "Trainer set-up and data loading, from Trainer() to on_fit_start")
    lines = [
        f"engine {row['engine']}: {n} trials ({row['failed']} failed), search wall {row['wall_s']:.1f} s, "
        f"training (on_fit_start..on_fit_end) {row['fit_total_s']:.1f} s = "
        + " + ".join(f"{s:.1f}" for s in row["fit_s"]),
        f"  overhead = (wall - sum(fit)) / sum(fit) = ({row['wall_s']:.1f} - {row['fit_total_s']:.1f}) / "
        f"{row['fit_total_s']:.1f} = {100 * row['overhead_frac']:.1f}%",
        f"  per trial: {row['overhead_per_trial_s']:.2f} s overhead for {row['fit_total_s'] / n:.1f} s of training",
        f"    {row['in_trial_before_fit_s']:.2f} s in the trial before fit ({before_what})",
        f"    {row['in_trial_after_fit_s']:.2f} s in the trial after fit (teardown)",
        f"    {outside:.2f} s the rest (NNI set-up/teardown, strategy, between trials, results; on 'sequential' "
        "also building each model and data module); "
        f"first fit began {row['first_fit_after_s']:.1f} s after the call, the call returned "
        f"{row['after_last_fit_s']:.1f} s after the last fit",
    ]
    mean_fit = row["fit_total_s"] / n
    if abs(mean_fit - trial_seconds) > 0.25 * trial_seconds:
        lines.append(f"  (trials trained {mean_fit:.0f} s instead of ~{trial_seconds:.0f} s; this per-trial overhead "
                     f"would be {100 * row['overhead_per_trial_s'] / trial_seconds:.1f}% of {trial_seconds:.0f} s trials)")
    if row["journal_trial_s"]:
        lines.append("  (the search's own per-trial durations, training plus set-up: "
                     + ", ".join(f"{s:.1f}" for s in row["journal_trial_s"]) + " s)")
    if row["engine"] == "sequential":
        if trial_seconds >= TARGET_TRIAL_SECONDS * 0.9:
            verdict = "PASS" if row["overhead_frac"] <= TARGET_OVERHEAD else "FAIL"
            lines.append(f"  target: <= {100 * TARGET_OVERHEAD:.0f}% for one-minute trials on the sequential engine: {verdict}")
        else:
            lines.append(f"  (the {100 * TARGET_OVERHEAD:.0f}% target is for one-minute trials: --trial-seconds 60)")
    return lines


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per search (default 3)")
    parser.add_argument("--trial-seconds", type=float, default=20.0,
                        help="target training time of one trial (default 20; the target's setting is 60)")
    parser.add_argument("--engines", nargs="+", default=["sequential", "ts"], choices=["sequential", "ts"])
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="CIFAR-10 root (default ../shared/data/cifar10)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--val-size", type=int, default=500, help="validation images per trial epoch (default 500)")
    parser.add_argument("--max-train-size", type=int, default=10000,
                        help="largest training subset; longer trials run more epochs over it (default 10000)")
    parser.add_argument("--step-seconds", type=float, default=None, help="skip calibration: seconds per training step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="folder for the searches and the cache (default: a temp folder)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    logging.getLogger("lightning_biorules").setLevel(logging.WARNING)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="biorules_overhead_")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    install_fit_timer(work / "plugin")
    cache_dir = str(work / "cache")

    step = args.step_seconds or measure_step_seconds(args.batch_size)
    budget = trial_budget(args.trial_seconds, step, args.batch_size, args.max_train_size)
    print(f"calibration: {step * 1000:.0f} ms per training step at batch {args.batch_size} -> per trial "
          f"{budget['trial_epochs']} epoch(s) x {budget['limit_train_batches']} batches over "
          f"{budget['train_size']} images, validation on {args.val_size} images (target ~{args.trial_seconds:.0f} s)")
    warm = warm_cache(args.data_root, cache_dir, budget["train_size"], args.val_size, args.batch_size)
    print(f"decoded-image cache filled in {warm:.1f} s (one-off, not counted)")

    rows = []
    for engine in args.engines:
        load_before = os.getloadavg()[0]
        row = run_one(engine, args, budget, work / engine, cache_dir)
        row["load_avg_1min"] = [load_before, os.getloadavg()[0]]
        rows.append(row)
        print()
        print("\n".join(report(row, args.trial_seconds)), flush=True)
        busy = max(row["load_avg_1min"]) - 1.0  # this search itself keeps about one core busy
        if busy > 0.5 * (os.cpu_count() or 1):
            print(f"  warning: 1-minute load average {row['load_avg_1min'][0]:.1f} before, "
                  f"{row['load_avg_1min'][1]:.1f} after: other processes shared the CPUs", flush=True)
    print()
    print(f"{'engine':<11} {'trials':>6} {'fit/trial s':>11} {'wall s':>8} {'overhead':>9} {'s/trial':>8}")
    for row in rows:
        print(f"{row['engine']:<11} {row['trials']:>6} {row['fit_total_s'] / row['trials']:>11.1f} "
              f"{row['wall_s']:>8.1f} {100 * row['overhead_frac']:>8.1f}% {row['overhead_per_trial_s']:>8.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": budget, "step_s": step, "rows": rows}, indent=2))
    print(f"\nsearch folders under {work}")


if __name__ == "__main__":
    main()
