"""NNI model space over DARTS cells (Liu et al., ICLR 2019) and a learning rule per edge, as searched
by Hamzaoui & Baghdadi (arXiv:2507.13485), with the rule a label of its own instead of being fused
into the op name.

Labels (plain ``nni.choice`` categoricals registered with ``add_mutable``; ``{t}`` is ``normal`` or
``reduce``, ``{n}`` an intermediate node 2..5, ``{k}`` its input slot 0 or 1):

* ``{t}/input_{n}_{k}``: the node the edge reads, ``"0" .. "n-1"`` (0 and 1 are the cell inputs;
  strings, so that every architecture value is a string like the other spaces' and survives
  ``str()``-ing samples, JSON and YAML unchanged);
* ``{t}/op_{n}_{k}``: the edge's op (default: the seven DARTS ops without ``none``, which DARTS'
  derived genotypes never contain; pass ``ops=DARTS_OPS`` to include it);
* the rule of the edge, independent of its op and input:
  ``rule_sharing="type"`` (the paper's): ``{t}/rule_{n}_{k}``, shared by all cells of that type;
  ``rule_sharing="cell"``: ``{t}_{i}/rule_{n}_{k}`` for the cell at position ``i``;
* with ``search_ends=True`` also ``rule_stem``, ``rule_preprocess`` (the cells' input 1x1 convs /
  FactorizedReduces) and ``rule_classifier``; by default these are fixed to ``end_rule`` (``bp``)
  and appear in :attr:`DartsSearchSpace.arch` only.

The normal and the reduction genotype are shared by all cells of their type, as in DARTS. Two
input labels of one node may pick the same node (the genotype allows it).

Rule labels -> ``rule_space`` patterns of the ``darts`` backbone::

    rule_stem          -> "stem.*"
    rule_preprocess    -> "cells.*.preprocess*"
    {t}/rule_{n}_{k}   -> "cells.{t}_*.edges.{n}_{k}.*"   (every cell of type t)
    {t}_{i}/rule_{n}_{k} -> "cells.{t}_{i}.edges.{n}_{k}.*" (cell i)
    rule_classifier    -> "classifier"

An edge without a conv (pools, ``none``, ``skip_connect`` except a reduction cell's
FactorizedReduce from a cell input) gets no pattern; :func:`arch_from_config` reads its rule back
as ``bp``.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Mapping, Optional, Sequence

from torch import Tensor

from ..models.darts import (
    DARTS_EDGES,
    DARTS_OPS,
    DartsNet,
    darts_genotype,
    darts_op_has_conv,
    reduction_indices,
)
from .nb201_space import add_choice
from .nni_compat import FreezableModelSpace
from .space import check_choice_sets

__all__ = [
    "CELL_TYPES",
    "DARTS_SEARCH_OPS",
    "DartsSearchSpace",
    "RuleSharing",
    "arch_from_config",
    "arch_genotypes",
    "arch_to_config",
]

RuleSharing = Literal["type", "cell"]
#: The two cell types, as used in labels and module names.
CELL_TYPES: tuple[str, ...] = ("normal", "reduce")
#: Default op choice set: DARTS' primitives without ``none``.
DARTS_SEARCH_OPS: tuple[str, ...] = tuple(op for op in DARTS_OPS if op != "none")
#: labels of the rules outside the cell edges -> their ``rule_space`` pattern
END_PATTERNS: dict[str, str] = {
    "rule_stem": "stem.*",
    "rule_preprocess": "cells.*.preprocess*",
    "rule_classifier": "classifier",
}
_CELL_PATTERN = re.compile(r"^cells\.(normal|reduce)_(\d+)\.edges\.")


def _check_sharing(rule_sharing: str) -> str:
    if rule_sharing not in ("type", "cell"):
        raise ValueError(f"rule_sharing must be 'type' or 'cell', got {rule_sharing!r}")
    return rule_sharing


def _cells(layers: int) -> list[tuple[str, int]]:
    """``(cell type, position)`` of every cell of a ``layers``-cell network."""
    reductions = reduction_indices(layers)
    return [("reduce" if i in reductions else "normal", i) for i in range(layers)]


def _rule_scopes(rule_sharing: str, layers: int) -> list[tuple[str, str, str]]:
    """``(cell type, label scope, module glob of the cells)`` of every group of rule labels."""
    if rule_sharing == "type":
        return [(t, t, f"{t}_*") for t in CELL_TYPES]
    return [(t, f"{t}_{i}", f"{t}_{i}") for t, i in _cells(layers)]


class DartsSearchSpace(FreezableModelSpace):
    """DARTS normal/reduction cells (inputs ``{t}/input_{n}_{k}``, ops ``{t}/op_{n}_{k}``) and a
    learning rule per edge (``{t}/rule_{n}_{k}`` or ``{t}_{i}/rule_{n}_{k}``); see the module docstring.

    Args:
        C: initial channels of the :class:`DartsNet` (even).
        layers: cells (>= 3); reduction cells at ``layers // 3`` and ``2 * layers // 3``.
        rule_sharing: ``"type"``: one rule per edge shared by all cells of a type (the paper's);
            ``"cell"``: one rule per edge and cell.
        ops: op choice set of every edge (subset of ``DARTS_OPS``; default without ``none``).
        rules: rule choice set; ``None`` means all available rules.
        search_ends: also search the rules of stem, cell preprocessing and classifier.
        end_rule: their fixed rule when ``search_ends`` is false.
        num_classes: classifier outputs of the dry-run network (trials take it from the data).

    ``forward`` runs the (default or frozen) :class:`DartsNet` with plain backprop; search trials
    build an ``ImageClassifier`` from :meth:`to_config` instead. One-shot DARTS is not supported:
    every sample is a discrete genotype.
    """

    def __init__(
        self,
        C: int = 16,
        layers: int = 8,
        rule_sharing: RuleSharing = "type",
        ops: Sequence[str] = DARTS_SEARCH_OPS,
        rules: Optional[Sequence[str]] = None,
        search_ends: bool = False,
        end_rule: str = "bp",
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        ops, rules, end_rule = check_choice_sets(ops, DARTS_OPS, rules, end_rule)
        self.C, self.layers = int(C), int(layers)
        self.rule_sharing = _check_sharing(str(rule_sharing))
        self.op_choices = tuple(ops)
        self.rule_choices = tuple(rules)
        self.search_ends = bool(search_ends)
        self.num_classes = int(num_classes)

        arch: dict[str, str] = {}
        for t in CELL_TYPES:
            for edge in DARTS_EDGES:
                node = int(edge.split("_")[0])
                arch[f"{t}/input_{edge}"] = add_choice(self, f"{t}/input_{edge}", [str(i) for i in range(node)])
                arch[f"{t}/op_{edge}"] = add_choice(self, f"{t}/op_{edge}", ops)
        for _, scope, _ in _rule_scopes(self.rule_sharing, self.layers):
            for edge in DARTS_EDGES:
                arch[f"{scope}/rule_{edge}"] = add_choice(self, f"{scope}/rule_{edge}", rules)
        for label in END_PATTERNS:
            arch[label] = add_choice(self, label, rules) if self.search_ends else end_rule
        #: the complete architecture of this (frozen or default) instance
        self.arch: dict[str, str] = arch
        normal, reduce = arch_genotypes(arch)
        self.net = DartsNet(normal, reduce, C=self.C, layers=self.layers, num_classes=self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def to_config(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`arch_to_config` of this instance's :attr:`arch` with its ``C`` and ``layers``."""
        kwargs.setdefault("C", self.C)
        kwargs.setdefault("layers", self.layers)
        return arch_to_config(self.arch, **kwargs)


def arch_genotypes(arch: Mapping[str, Any]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(normal, reduce)`` genotypes (8 ``(op, input)`` pairs each) of an architecture dict."""
    genotypes = []
    for t in CELL_TYPES:
        try:
            pairs = [(str(arch[f"{t}/op_{e}"]), int(arch[f"{t}/input_{e}"])) for e in DARTS_EDGES]
        except KeyError as exc:
            raise ValueError(f"architecture is missing {exc.args[0]!r}") from None
        genotypes.append(darts_genotype(pairs))
    return genotypes[0], genotypes[1]


def _arch_sharing(arch: Mapping[str, Any]) -> str:
    scopes = {str(k).split("/")[0] for k in arch if "/rule_" in str(k)}
    if scopes and scopes <= set(CELL_TYPES):
        return "type"
    if scopes and all(re.fullmatch(r"(normal|reduce)_\d+", s) for s in scopes):
        return "cell"
    raise ValueError(f"architecture needs {{t}}/rule_n_k or {{t}}_{{i}}/rule_n_k labels; got keys {sorted(arch)}")


def arch_to_config(
    arch: Mapping[str, Any],
    *,
    C: int = 16,
    layers: int = 8,
    end_rule: str = "bp",
    model: Optional[Mapping[str, Any]] = None,
    data: Optional[Mapping[str, Any]] = None,
    trainer: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Turn a DARTS architecture (inputs, ops, edge rules, optional end rules that override
    ``end_rule``) into a ``biorules fit`` config::

        {"model": {"backbone": "darts",
                   "backbone_kwargs": {"normal": [[op, input], ...8], "reduce": [...], "C": C, "layers": L},
                   "rule_space": {"stem.*": ..., "cells.*.preprocess*": ...,
                                  "cells.normal_*.edges.2_0.*": ..., ..., "classifier": ...},
                   **model},
         "data": {**data}, "trainer": {**trainer}}

    Edges without a conv get no pattern. ``model.num_classes`` is left to the data module.
    """
    normal, reduce = arch_genotypes(arch)
    genotype = {"normal": normal, "reduce": reduce}
    layers = int(layers)
    rule_space: dict[str, str] = {
        END_PATTERNS[label]: str(arch.get(label, end_rule)) for label in ("rule_stem", "rule_preprocess")
    }
    for t, scope, cells in _rule_scopes(_arch_sharing(arch), layers):
        for edge, (op, inp) in zip(DARTS_EDGES, genotype[t]):
            if not darts_op_has_conv(op, inp, reduction=t == "reduce"):
                continue
            label = f"{scope}/rule_{edge}"
            if label not in arch:
                raise ValueError(f"architecture is missing {label!r} (a {layers}-cell network)")
            rule_space[f"cells.{cells}.edges.{edge}.*"] = str(arch[label])
    rule_space[END_PATTERNS["rule_classifier"]] = str(arch.get("rule_classifier", end_rule))
    model_cfg: dict[str, Any] = {
        "backbone": "darts",
        "backbone_kwargs": {
            "normal": [[op, inp] for op, inp in normal],
            "reduce": [[op, inp] for op, inp in reduce],
            "C": int(C),
            "layers": layers,
        },
        "rule_space": rule_space,
    }
    for key, value in dict(model or {}).items():
        if key in ("backbone", "backbone_kwargs", "rule_space", "num_classes"):
            raise ValueError(f"model.{key} is set by the architecture")
        model_cfg[key] = value
    return {"model": model_cfg, "data": dict(data or {}), "trainer": dict(trainer or {})}


def arch_from_config(config: Mapping[str, Any], rule_sharing: Optional[RuleSharing] = None) -> dict[str, str]:
    """Inverse of :func:`arch_to_config`: the complete architecture (end rules included). The rule
    of an edge without a conv, absent from the config, reads as ``bp``. ``rule_sharing`` is read
    from the patterns unless given (``"type"`` when no edge has a conv)."""
    model = config["model"]
    if model.get("backbone") != "darts":
        raise ValueError(f"not a darts config (backbone {model.get('backbone')!r})")
    kwargs = model["backbone_kwargs"]
    layers = int(kwargs.get("layers", 8))
    rule_space = {str(k): str(v) for k, v in dict(model["rule_space"]).items()}
    if rule_sharing is None:
        rule_sharing = "cell" if any(_CELL_PATTERN.match(k) for k in rule_space) else "type"
    arch: dict[str, str] = {}
    for t in CELL_TYPES:
        for edge, (op, inp) in zip(DARTS_EDGES, darts_genotype(kwargs[t])):
            arch[f"{t}/input_{edge}"] = str(inp)
            arch[f"{t}/op_{edge}"] = op
    for _, scope, cells in _rule_scopes(_check_sharing(rule_sharing), layers):
        for edge in DARTS_EDGES:
            arch[f"{scope}/rule_{edge}"] = rule_space.get(f"cells.{cells}.edges.{edge}.*", "bp")
    for label, pattern in END_PATTERNS.items():
        arch[label] = rule_space.get(pattern, "bp")
    return arch
