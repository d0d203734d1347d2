"""Look at a finished search: top-k configs, the winner's rule map, the search curve, a text summary.

    from lightning_biorules.nas.report import load_search, export_top_k, summarize
    result = load_search("biorules_runs/search")          # a work_dir, or its search_result.json
    print(summarize(result))
    export_top_k(result, 3, "top")                         # top/rank1.yaml ... rank3.yaml
    plot_rule_map(result, "rule_map.png"); plot_search_curve(result, "curve.png")

or, from the command line, ``biorules report EXP [--top_k K] [--out DIR] [--plots/--no-plots]``
(:func:`report_main`).

Every function takes the result as :func:`load_search` returns it (the plain ``dict`` of
``search_result.json``), a :class:`~lightning_biorules.nas.search.SearchResult`, or a path to
either. The exported ``rankN.yaml`` are complete ``biorules fit`` configs: the ``data`` and
``trainer`` sections and the model options of the search's own ``best_config``, with the model's
architecture rebuilt from the trial's sample by its search space. The space is the one the result
names (``space`` and ``space_options``) in the registry of :mod:`lightning_biorules.nas.spaces`
(``build_space(...).freeze(sample).to_config(...)``, as the search writes its best), or, for
results without a ``space`` (or without that module), the macro space's
:func:`~lightning_biorules.nas.space.arch_to_config`.

Plots use matplotlib's Agg backend (``pip install lightning-biorules[plot]``); nothing else here
needs matplotlib.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from .journal import JOURNAL_FILE, read_journal

__all__ = [
    "DEFAULT_SEARCH_ROOT",
    "RESULT_FILE",
    "export_top_k",
    "load_search",
    "plot_rule_map",
    "plot_search_curve",
    "rank_trials",
    "report_main",
    "resolve_experiment",
    "summarize",
    "trial_config",
]

#: Where ``biorules search`` puts its work_dir by default; ``biorules report ID`` looks there.
DEFAULT_SEARCH_ROOT = "biorules_runs/search"
#: The result file :func:`~lightning_biorules.nas.search.run_search` writes into its work_dir.
RESULT_FILE = "search_result.json"

#: First header line of every exported YAML (marks files this module may replace).
_HEADER_MARK = "biorules report: rank"
_RANK_FILE = re.compile(r"^rank(\d+)\.yaml$")
#: Column order of the rule map: the paper's rules first, any other (plug-in) rule after them.
_RULE_ORDER = ("bp", "fa", "usf", "brsf", "frsf", "dfa")
#: ``[scope/]op_X`` / ``[scope/]rule_X`` / ``[scope/]input_X``: the op, rule and input of slot ``[scope/]X``
_ARCH_LABEL = re.compile(r"^(?:(.*)/)?(op|rule|input)_(.+)$")
_SEARCHED_LAYER = re.compile(r"^layers\.(\d+)(?:\.|$)")

Result = Dict[str, Any]
ResultLike = Union[Mapping[str, Any], Any, str, Path]


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def load_search(path: Union[str, Path]) -> Result:
    """Read a search's result.

    Args:
        path: the search's ``work_dir`` (holding ``search_result.json``) or the json file itself.

    Returns:
        The ``dict`` of ``search_result.json`` (:meth:`SearchResult.to_dict`: ``best_arch``,
        ``best_accuracy``, ``best_config``, ``trials``, ``experiment_id``, ``strategy``, ``engine``,
        ``duration_s`` and, from newer searches, ``space``, ``space_options``, ...). When the
        search's trial journal (``trials.jsonl``) exists, its records are added under
        ``"journal_records"`` (a list of dicts, unreadable lines skipped); without one that key is
        absent.
    """
    path = Path(path).expanduser()
    file = path / RESULT_FILE if path.is_dir() else path
    if not file.is_file():
        hint = " (the search may still be running)" if (file.parent / JOURNAL_FILE).is_file() else ""
        raise FileNotFoundError(f"no search result at {file}{hint}")
    result = json.loads(file.read_text())
    if not isinstance(result, dict) or "trials" not in result:
        raise ValueError(f"{file} is not a search result (no 'trials')")
    journal = file.parent / JOURNAL_FILE
    if not journal.is_file() and isinstance(result.get("journal"), str):
        journal = Path(result["journal"])  # where the search wrote it, when the json was moved
    if journal.is_file():
        result["journal_records"] = read_journal(journal)
    return result


def resolve_experiment(exp: Union[str, Path], search_root: Union[str, Path] = DEFAULT_SEARCH_ROOT) -> Path:
    """The folder (or json file) of ``exp``: an existing path as is, else the work_dir under
    ``search_root`` (searched recursively) whose ``search_result.json`` has ``experiment_id ==
    exp``, or whose ``experiment.json`` lists ``exp`` (a resumed search runs several experiments)."""
    path = Path(exp).expanduser()
    if path.exists():
        return path
    root = Path(search_root).expanduser()
    known = []
    for file in sorted(root.rglob(RESULT_FILE)) if root.is_dir() else []:
        if "nni-experiments" in file.parts:
            continue
        try:
            exp_id = json.loads(file.read_text()).get("experiment_id")
        except (OSError, ValueError, AttributeError):
            continue
        ids = {exp_id}
        with contextlib.suppress(OSError, ValueError, AttributeError, TypeError):
            ids |= set(json.loads((file.parent / "experiment.json").read_text()).get("experiment_ids") or [])
        if str(exp) in ids:
            return file.parent
        known.append(f"{exp_id} ({file.parent})")
    listing = "; known: " + ", ".join(known) if known else ""
    raise FileNotFoundError(f"{exp!r} is neither a path nor an experiment id under {root}{listing}")


def _as_result(result: ResultLike) -> Result:
    if isinstance(result, (str, Path)):
        return load_search(result)
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(f"expected a search result (dict, SearchResult or path), got {type(result).__name__}")


# ---------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------
def _succeeded(trial: Mapping[str, Any]) -> bool:
    acc = trial.get("accuracy")
    return trial.get("status") == "trained" and isinstance(acc, (int, float)) and math.isfinite(acc)


def rank_trials(result: ResultLike, k: Optional[int] = None) -> List[Dict[str, Any]]:
    """The successful trials, best first: higher final accuracy first, ties by lower trial index
    (the order in which :func:`run_search` picks its best). ``k`` keeps the first ``k``."""
    trials = [dict(t) for t in _as_result(result)["trials"] if _succeeded(t)]
    trials.sort(key=lambda t: (-float(t["accuracy"]), int(t["index"])))
    return trials if k is None else trials[: max(0, int(k))]


# ---------------------------------------------------------------------------------------------
# arch -> config, space-agnostic
# ---------------------------------------------------------------------------------------------
_ARCH_SECTION_KEYS = ("backbone", "backbone_kwargs", "rule_space")


def _registered_space(result: Mapping[str, Any]) -> Optional[Any]:
    """The result's search space built from the registry of :mod:`lightning_biorules.nas.spaces`
    (``build_space(result["space"], **result["space_options"])``), or None when the result names
    no space or that module does not exist."""
    name = result.get("space")
    if not name:
        return None
    try:
        spaces = importlib.import_module("lightning_biorules.nas.spaces")
    except ModuleNotFoundError as err:
        if err.name != "lightning_biorules.nas.spaces":
            raise
        if str(name) != "macro":
            raise ValueError(f"the result's space {name!r} needs lightning_biorules.nas.spaces") from None
        return None
    return spaces.build_space(str(name), **dict(result.get("space_options") or {}))


def _macro_builder(result: Mapping[str, Any]) -> Callable[[Mapping[str, Any], Dict[str, Any]], Dict[str, Any]]:
    """``(arch, sections) -> config`` with the macro space's ``arch_to_config``; the net's
    ``channels``/``layers_per_stage`` are read from ``best_config``, the labels fixed for the whole
    search (``rule_stem``, ``rule_classifier``) from ``best_arch``."""
    from .space import arch_to_config

    backbone_kwargs = dict(result["best_config"]["model"].get("backbone_kwargs") or {})
    structure = {k: backbone_kwargs[k] for k in ("channels", "layers_per_stage") if k in backbone_kwargs}
    best_arch = dict(result.get("best_arch") or {})

    def build(arch: Mapping[str, Any], sections: Dict[str, Any]) -> Dict[str, Any]:
        complete = {**{k: v for k, v in best_arch.items() if k not in arch}, **dict(arch)}
        return arch_to_config(complete, **structure, **sections)

    return build


class _ConfigBuilder:
    """Rebuilds a trial's complete ``biorules fit`` config from its sample and the result.

    The model section comes from the search space: the registered one (``space.freeze(sample)
    .to_config(...)``, exactly what :func:`run_search` writes for its best) when the result names
    a ``space``, else the macro space's ``arch_to_config``. The ``data`` and ``trainer`` sections
    and the model options (``lr``, ``init``, ... everything the architecture does not set) are
    those of ``best_config``.
    """

    def __init__(self, result: Mapping[str, Any]) -> None:
        best_config = result.get("best_config")
        if not isinstance(best_config, Mapping) or "model" not in best_config:
            raise ValueError("the search result has no best_config to take the data/trainer sections from")
        space = _registered_space(result)
        if space is not None:
            self._build = lambda arch, sections: space.freeze(dict(arch)).to_config(**sections)
        else:
            self._build = _macro_builder(result)
        self.data = dict(best_config.get("data") or {})
        self.trainer = dict(best_config.get("trainer") or {})
        self.model_kwargs = {k: v for k, v in best_config["model"].items() if k not in _ARCH_SECTION_KEYS}
        best_sample = self._best_sample(result)
        if best_sample is not None and self.build(best_sample)["model"] != dict(best_config["model"]):
            warnings.warn(
                "rebuilding the best trial's architecture does not reproduce best_config's model section; "
                "the exported configs may differ from the searched ones",
                stacklevel=3,
            )

    @staticmethod
    def _best_sample(result: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
        best_arch = dict(result.get("best_arch") or {})
        for trial in rank_trials(result):
            if all(best_arch.get(k) == v for k, v in trial["arch"].items()):
                return trial["arch"]
        return None

    def build(self, arch: Mapping[str, Any]) -> Dict[str, Any]:
        """The config of the architecture / NNI sample ``arch``."""
        sections = {"model": dict(self.model_kwargs), "data": dict(self.data), "trainer": dict(self.trainer)}
        return dict(self._build(arch, sections))


def trial_config(result: ResultLike, trial: Mapping[str, Any]) -> Dict[str, Any]:
    """The complete ``biorules fit`` config of one trial (a ``trials`` entry) of ``result``."""
    return _ConfigBuilder(_as_result(result)).build(trial["arch"])


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
def _is_our_export(path: Path) -> bool:
    try:
        with path.open() as fh:
            return fh.readline().startswith(f"# {_HEADER_MARK}")
    except OSError:
        return False


def export_top_k(result: ResultLike, k: int, out_dir: Union[str, Path]) -> List[Path]:
    """Write the best ``k`` successful architectures as ``out_dir/rank1.yaml`` ... ``rankK.yaml``.

    Ranking is :func:`rank_trials` (final accuracy, ties by trial index), so ``rank1`` is the
    search's best. Each file is a complete ``biorules fit`` config (``biorules fit --config
    rankN.yaml`` trains it as is) whose header comments give the rank, accuracy, trial index and
    that command. Fewer files when fewer trials succeeded; ``rankN.yaml`` files of an earlier export
    beyond the new ones are removed. Returns the written paths, rank order.
    """
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    res = _as_result(result)
    builder = _ConfigBuilder(res)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    ranked = rank_trials(res, k)
    n_trials = len(res["trials"])
    paths = []
    for rank, trial in enumerate(ranked, start=1):
        path = out / f"rank{rank}.yaml"
        config = builder.build(trial["arch"])
        header = [
            f"{_HEADER_MARK} {rank} of {len(ranked)} (top {k}) in search {res.get('experiment_id', '?')}",
            f"trial {trial['index']} ({n_trials} trials, {res.get('strategy', '?')} strategy over "
            f"{res.get('space') or 'macro'}): val_acc {float(trial['accuracy']):.4f} on the search's trial budget",
            f"train it: biorules fit --config {path.name}",
        ]
        text = "".join(f"# {line}\n" for line in header)
        text += yaml.safe_dump(config, sort_keys=False, default_flow_style=False)
        path.write_text(text)
        paths.append(path)
    for stale in out.glob("rank*.yaml"):
        match = _RANK_FILE.match(stale.name)
        if match and int(match.group(1)) > len(paths) and _is_our_export(stale):
            stale.unlink()
    return paths


# ---------------------------------------------------------------------------------------------
# text summary
# ---------------------------------------------------------------------------------------------
def _compact_arch(arch: Mapping[str, Any]) -> str:
    """One line per architecture: ``slot:op/rule`` for each ``[scope/]op_X`` / ``[scope/]rule_X``
    pair (``slot:op<input/rule`` with an ``input_X`` label, ``slot:rule`` for a rule alone, e.g.
    ``stem:bp``), in label order; any other label as ``label=value``."""
    slots: Dict[str, Dict[str, str]] = {}
    for key, value in arch.items():
        match = _ARCH_LABEL.match(str(key))
        if match:
            scope, kind, name = match.groups()
            slots.setdefault(f"{scope}/{name}" if scope else name, {})[kind] = str(value)
        else:
            slots.setdefault(f"{key}=", {})["value"] = str(value)
    parts = []
    for slot, fields in slots.items():
        if "value" in fields:
            parts.append(f"{slot}{fields['value']}")
            continue
        text = fields.get("op", "")
        if "input" in fields:
            text += f"<{fields['input']}"
        if "rule" in fields:
            text = f"{text}/{fields['rule']}" if text else fields["rule"]
        parts.append(f"{slot}:{text}")
    return " ".join(parts)


def _choice_counts(trials: Iterable[Mapping[str, Any]], kind: str) -> Counter:
    """How often each value of the ``kind`` labels (``op`` or ``rule``) was chosen over ``trials``."""
    counts: Counter = Counter()
    for trial in trials:
        for key, value in trial["arch"].items():
            match = _ARCH_LABEL.match(str(key))
            if match and match.group(2) == kind:
                counts[str(value)] += 1
    return counts


def _ordered_rules(names: Iterable[str]) -> List[str]:
    names = set(names)
    return [r for r in _RULE_ORDER if r in names] + sorted(names - set(_RULE_ORDER))


def _frequency_table(
    kind: str, top: Sequence[Mapping[str, Any]], trials: Sequence[Mapping[str, Any]], choices: Sequence[str] = ()
) -> List[str]:
    """Lines of a ``kind`` (op/rule) frequency table, top-k vs all trials; ``choices`` are listed
    even when never chosen."""
    top_counts, all_counts = _choice_counts(top, kind), _choice_counts(trials, kind)
    seen = set(all_counts) | {str(c) for c in choices}
    names = _ordered_rules(seen) if kind == "rule" else sorted(seen)
    top_total, all_total = sum(top_counts.values()) or 1, sum(all_counts.values()) or 1
    width = max([len(kind)] + [len(n) for n in names])

    def cell(count: int, total: int) -> str:
        return f"{count:>4} ({100 * count / total:3.0f}%)"

    lines = [f"  {kind:<{width}}  {f'top-{len(top)}':>11}  {'all trials':>11}"]
    for name in names:
        lines.append(f"  {name:<{width}}  {cell(top_counts[name], top_total)}  {cell(all_counts[name], all_total)}")
    return lines


def summarize(result: ResultLike, k: int = 5) -> str:
    """A text report of the search: strategy, engine, space, trial counts (failed ones listed),
    duration, best accuracy, the top-``k`` table (rank, trial, accuracy, op/rule per layer) and
    how often each rule (and op) was chosen among the top ``k`` vs all trials."""
    res = _as_result(result)
    trials = list(res["trials"])
    ok = [t for t in trials if _succeeded(t)]
    failed = [t for t in trials if not _succeeded(t)]
    replayed = [t for t in trials if t.get("replayed")]
    top = rank_trials(res, k)
    duration = float(res.get("duration_s") or 0.0)
    trained = [float(t["duration_s"]) for t in trials if t.get("duration_s") is not None and not t.get("replayed")]
    timing = f"duration: {duration:.1f} s"
    if trials:
        timing += f", {duration / len(trials):.1f} s per trial"
    if trained:
        timing += f" (the trials themselves: {sum(trained):.1f} s, mean {sum(trained) / len(trained):.1f} s)"
    counts = f"trials: {len(trials)} ({len(ok)} succeeded, {len(failed)} failed"
    counts += f": {', '.join(str(t['index']) for t in failed)}" if failed else ""
    counts += f"; {len(replayed)} replayed from the journal" if replayed else ""
    space = res.get("space") or "macro"
    if res.get("space_options"):
        space += " " + json.dumps(res["space_options"], separators=(",", ":"))
    lines = [
        f"search {res.get('experiment_id', '?')} in {res.get('work_dir', '?')}",
        f"strategy: {res.get('strategy', '?')}   engine: {res.get('engine', '?')}   space: {space}",
        counts + ")",
        timing,
        f"best accuracy: {float(res.get('best_accuracy', float('nan'))):.4f} (trial {top[0]['index'] if top else '-'})",
        "",
        f"top {len(top)} (of {len(ok)} successful; slot:op/rule)",
        f"  {'rank':>4}  {'trial':>5}  {'val_acc':>7}  architecture",
    ]
    for rank, trial in enumerate(top, start=1):
        lines.append(f"  {rank:>4}  {trial['index']:>5}  {float(trial['accuracy']):>7.4f}  {_compact_arch(trial['arch'])}")
    if failed:
        lines += ["", "failed trials"]
        for trial in failed:
            error = str(trial.get("error") or "")
            error = f"  ({error[:77]}...)" if len(error) > 80 else (f"  ({error})" if error else "")
            lines.append(f"  {trial['index']:>5}  {trial.get('status', '?'):>8}  {_compact_arch(trial['arch'])}{error}")
    options = dict(res.get("space_options") or {})
    lines += ["", "rule frequency (searched labels)"] + _frequency_table("rule", top, trials, options.get("rules") or ())
    if _choice_counts(trials, "op"):
        lines += ["", "op frequency"] + _frequency_table("op", top, trials, options.get("ops") or ())
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _describe(module: Any) -> str:
    """Short description of a weight layer: ``conv 3x3 s2 16->32``, ``dw conv 5x5``, ``linear 64->10``."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        text = f"conv {kh}x{kw}"
        if module.groups > 1 and module.groups == module.in_channels:
            text = "dw " + text
        if max(module.stride) > 1:
            text += f" s{max(module.stride)}"
        if max(module.dilation) > 1:
            text += f" d{max(module.dilation)}"
        return f"{text} {module.in_channels}\u2192{module.out_channels}"
    if isinstance(module, nn.Linear):
        return f"linear {module.in_features}\u2192{module.out_features}"
    return type(module).__name__


_CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


def _rule_map_rows(config: Mapping[str, Any]) -> List[Tuple[str, Optional[str], str, str]]:
    """``[(layer name, rule or None, op, description)]`` in network order, from the model that
    ``ImageClassifier(**config["model"])`` builds.

    ``op`` is the searched op of the layer: for the macro backbone its ``ops`` entry (``layers.i``),
    for other backbones the class of the nearest enclosing module that is not a container (e.g.
    ``SepConv``), or ``""``. Macro layers without weights (identity ``skip_connect``) appear with
    rule None.
    """
    from ..module import ImageClassifier

    model_cfg = dict(config["model"])
    model = ImageClassifier(**model_cfg)
    rules = model.rules
    modules = dict(model.backbone.named_modules())
    ops = list(getattr(model.backbone, "ops", None) or []) if model_cfg.get("backbone") == "macro" else []

    def op_of(name: str) -> str:
        match = _SEARCHED_LAYER.match(name)
        if ops:
            return str(ops[int(match.group(1))]) if match and int(match.group(1)) < len(ops) else ""
        parts = name.split(".")
        for end in range(len(parts) - 1, 0, -1):
            kind = type(modules.get(".".join(parts[:end]))).__name__
            if kind not in _CONTAINERS and kind != "NoneType":
                return kind
        return ""

    rows = []
    for name, module in modules.items():
        if name in rules:
            rows.append((name, rules[name], op_of(name), _describe(module)))
        elif ops and re.fullmatch(r"layers\.\d+", name) and not any(n.startswith(name + ".") for n in rules):
            rows.append((name, None, op_of(name), "identity (no weights)"))
    return rows


def _config_and_title(result_or_config: ResultLike) -> Tuple[Dict[str, Any], str]:
    if isinstance(result_or_config, (str, Path)) and Path(result_or_config).suffix in (".yaml", ".yml"):
        return yaml.safe_load(Path(result_or_config).read_text()), f"rule map of {Path(result_or_config).name}"
    if isinstance(result_or_config, Mapping) and "model" in result_or_config and "trials" not in result_or_config:
        return dict(result_or_config), "rule map"
    res = _as_result(result_or_config)
    top = rank_trials(res, 1)
    where = f", trial {top[0]['index']}" if top else ""
    title = f"rule map of the winner (val_acc {float(res['best_accuracy']):.4f}{where})"
    return dict(res["best_config"]), title


def _save_figure(fig: Any, path: Union[str, Path]) -> Path:
    """Lay out ``fig``, write it as a PNG to ``path`` (creating folders) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_rule_map(result_or_config: ResultLike, path: Union[str, Path]) -> Path:
    """PNG of a network's rule map: a row per weight layer (network order), a column per rule, a
    filled cell for the layer's rule, each row annotated with its searched op and the layer's shape.

    ``result_or_config`` is a search result (its winner, ``best_config``), a ``biorules fit``
    config dict or a path to a YAML config. The layers and rules are those of the model that
    ``ImageClassifier(**config["model"])`` builds. Returns ``path``.
    """
    from matplotlib.patches import Rectangle

    from ..rules import available_rules

    config, title = _config_and_title(result_or_config)
    rows = _rule_map_rows(config)
    used = {rule for _, rule, _, _ in rows if rule}
    columns = _ordered_rules(set(_RULE_ORDER) & set(available_rules()) | used)
    colors = {rule: f"C{i % 10}" for i, rule in enumerate(columns)}

    plt = _pyplot()
    n_rows, n_cols = len(rows), len(columns)
    row_h = 0.34 if n_rows <= 40 else max(0.13, 13.6 / n_rows)  # inches; big cell networks get thin rows
    font = max(5.0, 9.0 * row_h / 0.34)
    label_w = max([len(name) for name, *_ in rows] + [10]) * font / 72 * 0.62
    fig, ax = plt.subplots(figsize=(label_w + 0.65 * n_cols + 3.4, 1.4 + row_h * n_rows))
    for r, (name, rule, op, desc) in enumerate(rows):
        for c, column in enumerate(columns):
            filled = rule == column
            ax.add_patch(Rectangle(
                (c, r), 1, 1, facecolor=colors[column] if filled else ("#f4f4f4" if rule else "#e2e2e2"),
                edgecolor="white", linewidth=1.5 if n_rows <= 40 else 0.5,
            ))
        label = f"{op}  \u00b7  {desc}" if op else desc
        ax.text(n_cols + 0.15, r + 0.5, label, va="center", ha="left", fontsize=font,
                color="#222222" if rule else "#888888")
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_xticks([c + 0.5 for c in range(n_cols)], columns)
    ax.xaxis.tick_top()
    ax.set_yticks([r + 0.5 for r in range(n_rows)], [name for name, *_ in rows])
    ax.tick_params(axis="y", length=0, labelsize=font)
    ax.tick_params(axis="x", length=0, labelsize=9)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, fontsize=10, pad=22)
    return _save_figure(fig, path)


def plot_search_curve(result: ResultLike, path: Union[str, Path]) -> Path:
    """PNG of the search's progress: best validation accuracy so far vs trial index (step line),
    each successful trial's accuracy (dot), failed trials as red x at the bottom. Returns ``path``."""
    from matplotlib.transforms import blended_transform_factory

    res = _as_result(result)
    trials = sorted(res["trials"], key=lambda t: int(t["index"]))
    xs = [int(t["index"]) for t in trials]
    best, running = [], float("nan")
    for t in trials:
        if _succeeded(t):
            acc = float(t["accuracy"])
            running = acc if math.isnan(running) else max(running, acc)
        best.append(running)
    ok = [t for t in trials if _succeeded(t)]
    failed = [t for t in trials if not _succeeded(t)]

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if xs:
        ax.step(xs, best, where="post", color="C0", linewidth=2, label="best so far")
    ax.plot([int(t["index"]) for t in ok], [float(t["accuracy"]) for t in ok], "o", color="C1",
            markersize=6, alpha=0.8, label="trial")
    if failed:
        bottom = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot([int(t["index"]) for t in failed], [0.05] * len(failed), "x", color="C3", markersize=9,
                markeredgewidth=2, transform=bottom, clip_on=False, label=f"failed ({len(failed)})")
    top = rank_trials(res, 1)
    if top:
        t0 = top[0]
        ax.annotate(f"best {float(t0['accuracy']):.4f} (trial {t0['index']})", (int(t0["index"]), float(t0["accuracy"])),
                    textcoords="offset points", xytext=(6, 8), fontsize=9)
    accs = [float(t["accuracy"]) for t in ok] or [0.0, 1.0]
    span = max(max(accs) - min(accs), 0.1)
    low, high = max(0.0, min(accs) - 0.3 * span), min(1.0, max(accs) + 0.3 * span)
    if failed:  # a lane below the accuracies for the failed trials' markers
        lane = 0.12 * (high - low)
        low -= lane
        ax.axhspan(low, low + lane, color="C3", alpha=0.06, linewidth=0)
    ax.set_ylim(low, high)
    if failed:  # no accuracy ticks inside the lane
        ax.set_yticks([y for y in ax.get_yticks() if low + lane <= y <= high])
        ax.set_ylim(low, high)
    ax.set_xlim(min(xs, default=0) - 0.5, max(xs, default=0) + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{res.get('strategy', '?')} search, {res.get('engine', '?')} engine: {len(ok)}/{len(trials)} "
                 "trials succeeded", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return _save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# biorules report
# ---------------------------------------------------------------------------------------------
def build_report_parser() -> argparse.ArgumentParser:
    """Parser of ``biorules report``."""
    parser = argparse.ArgumentParser(
        prog="biorules report",
        description="Summarize a finished search, export its top-k configs and plot its rule map and curve.",
    )
    parser.add_argument("exp", metavar="EXP", help=f"the search's work_dir (or its {RESULT_FILE}), or an "
                        f"experiment id under --search_root")
    parser.add_argument("--top_k", type=int, default=3, help="number of configs to export (default 3)")
    parser.add_argument("--out", default=None, help="output folder (default: EXP/report)")
    parser.add_argument("--plots", action=argparse.BooleanOptionalAction, default=True,
                        help="write rule_map.png and search_curve.png (default: yes)")
    parser.add_argument("--search_root", default=DEFAULT_SEARCH_ROOT,
                        help=f"where to look for an experiment id (default {DEFAULT_SEARCH_ROOT})")
    return parser


def report_main(argv: Optional[Sequence[str]] = None) -> List[Path]:
    """Entry point of ``biorules report EXP [--top_k K] [--out DIR] [--plots/--no-plots]``
    (``argv`` without the ``report`` word). Prints the summary, writes ``rank1.yaml`` ...,
    ``rule_map.png`` and ``search_curve.png`` into DIR and prints their paths; returns them."""
    import sys

    args = build_report_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.top_k < 1:
        build_report_parser().error("--top_k must be >= 1")
    location = resolve_experiment(args.exp, args.search_root)
    result = load_search(location)
    work_dir = location if location.is_dir() else location.parent
    out = Path(args.out).expanduser() if args.out else work_dir / "report"
    print(summarize(result, k=args.top_k))
    written = export_top_k(result, args.top_k, out)
    if args.plots:
        written.append(plot_rule_map(result, out / "rule_map.png"))
        written.append(plot_search_curve(result, out / "search_curve.png"))
    print(f"\nwrote to {out}:")
    for path in written:
        print(f"  {path}")
    if written and written[0].suffix == ".yaml":
        print(f"train the best: biorules fit --config {written[0]}")
    return written


if __name__ == "__main__":  # pragma: no cover
    report_main()
