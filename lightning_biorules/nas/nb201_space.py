"""NNI model space over the NAS-Bench-201 cell (Dong & Yang, ICLR 2020) and a learning rule per edge.

Labels (plain ``nni.choice`` categoricals registered with ``add_mutable``):

* ``op_{j}<-{i}`` for the six edges of :data:`~lightning_biorules.models.nb201.NB201_EDGES`: the
  edge's op, shared by every cell of the network, as in NAS-Bench-201 (5**6 = 15625 cells);
* the rule of each edge's conv, independent of its op (Hamzaoui & Baghdadi, arXiv:2507.13485):
  ``rule_sharing="cells"``: ``rule_{j}<-{i}``, one per edge shared by all cells (6 labels);
  ``rule_sharing="stage"``: ``stage{s}/rule_{j}<-{i}``, one per edge and stage (18 labels);
* with ``search_ends=True`` also ``rule_stem``, ``rule_reduction_0``, ``rule_reduction_1`` and
  ``rule_classifier``; by default these are fixed to ``end_rule`` (``bp``, the paper's convention)
  and appear in :attr:`NB201SearchSpace.arch` only.

A rule label of an edge whose op has no conv (``none``, ``skip_connect``, ``avg_pool_3x3``) has no
effect, and :func:`arch_to_config` writes no ``rule_space`` pattern for it (a pattern that matches no
layer is an error); :func:`arch_from_config` reads such a rule back as ``bp``.

Rule labels -> ``rule_space`` patterns of the ``nb201`` backbone::

    rule_stem             -> "stem.*"
    rule_{j}<-{i}         -> "stages.*.edges.{j}<-{i}.*"       (every cell)
    stage{s}/rule_{j}<-{i} -> "stages.{s}.*.edges.{j}<-{i}.*"  (the cells of stage s)
    rule_reduction_{r}    -> "reductions.{r}.*"
    rule_classifier       -> "classifier"
"""

from __future__ import annotations

import re
from typing import Any, Literal, Mapping, Optional, Sequence

import nni
from nni.mutable import ensure_frozen
from nni.mutable.utils import label_scope
from torch import Tensor

from ..models.nb201 import NB201_CONV_OPS, NB201_EDGES, NB201_OPS, NB201Net, nb201_cell_ops
from .nni_compat import FreezableModelSpace
from .space import check_choice_sets

__all__ = ["NB201SearchSpace", "RuleSharing", "add_choice", "arch_from_config", "arch_to_config", "rule_label"]

RuleSharing = Literal["cells", "stage"]
NUM_STAGES = 3
#: labels of the rules outside the cells, in network order
END_LABELS: tuple[str, ...] = ("rule_stem", "rule_reduction_0", "rule_reduction_1", "rule_classifier")
_END_PATTERNS = {
    "rule_stem": "stem.*",
    "rule_reduction_0": "reductions.0.*",
    "rule_reduction_1": "reductions.1.*",
    "rule_classifier": "classifier",
}
_STAGE_PATTERN = re.compile(r"^stages\.(\d+)\.\*\.edges\.(\d<-\d)\.\*$")


def rule_label(edge: str, stage: Optional[int] = None) -> str:
    """The rule label of ``edge`` (``"j<-i"``): ``rule_{edge}``, or ``stage{stage}/rule_{edge}``."""
    return f"rule_{edge}" if stage is None else f"stage{stage}/rule_{edge}"


def add_choice(space: FreezableModelSpace, label: str, values: Sequence[Any]) -> Any:
    """Register ``nni.choice(label, values)`` on ``space`` and return its (frozen or default) value.

    NNI rejects ``/`` in a label name; a hierarchical label ``"scope/name"`` is built with
    ``label_scope(scope)`` instead, which gives exactly that label.
    """
    *scopes, name = label.split("/")
    if not scopes:
        return ensure_frozen(space.add_mutable(nni.choice(name, list(values))))
    with label_scope("/".join(scopes)):
        return ensure_frozen(space.add_mutable(nni.choice(name, list(values))))


def _check_sharing(rule_sharing: str) -> str:
    if rule_sharing not in ("cells", "stage"):
        raise ValueError(f"rule_sharing must be 'cells' or 'stage', got {rule_sharing!r}")
    return rule_sharing


def _rule_labels(rule_sharing: str) -> list[tuple[str, Optional[int], str]]:
    """``(edge, stage or None, label)`` of every edge rule label."""
    if rule_sharing == "cells":
        return [(edge, None, rule_label(edge)) for edge in NB201_EDGES]
    return [(edge, s, rule_label(edge, s)) for s in range(NUM_STAGES) for edge in NB201_EDGES]


class NB201SearchSpace(FreezableModelSpace):
    """NAS-Bench-201 cell ops (``op_{j}<-{i}``) and a learning rule per conv edge
    (``rule_{j}<-{i}`` or ``stage{s}/rule_{j}<-{i}``); see the module docstring.

    Args:
        C: channels of the first stage of the :class:`NB201Net` (benchmark: 16).
        N: cells per stage (benchmark: 5).
        rule_sharing: ``"cells"``: one rule per edge shared by all cells (6 labels);
            ``"stage"``: one rule per edge and stage (18 labels).
        ops: op choice set of every edge (subset of ``NB201_OPS``).
        rules: rule choice set; ``None`` means all available rules.
        search_ends: also search the rules of stem, the two reduction blocks and classifier.
        end_rule: their fixed rule when ``search_ends`` is false.
        num_classes: classifier outputs of the dry-run network (trials take it from the data).

    ``forward`` runs the (default or frozen) :class:`NB201Net` with plain backprop; search trials
    build an ``ImageClassifier`` from :meth:`to_config` instead.
    """

    def __init__(
        self,
        C: int = 16,
        N: int = 5,
        rule_sharing: RuleSharing = "cells",
        ops: Sequence[str] = NB201_OPS,
        rules: Optional[Sequence[str]] = None,
        search_ends: bool = False,
        end_rule: str = "bp",
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        ops, rules, end_rule = check_choice_sets(ops, NB201_OPS, rules, end_rule)
        self.C, self.N = int(C), int(N)
        self.rule_sharing = _check_sharing(str(rule_sharing))
        self.op_choices = tuple(ops)
        self.rule_choices = tuple(rules)
        self.search_ends = bool(search_ends)
        self.num_classes = int(num_classes)

        arch: dict[str, str] = {}
        for edge in NB201_EDGES:
            arch[f"op_{edge}"] = add_choice(self, f"op_{edge}", ops)
        for _, _, label in _rule_labels(self.rule_sharing):
            arch[label] = add_choice(self, label, rules)
        for label in END_LABELS:
            arch[label] = add_choice(self, label, rules) if self.search_ends else end_rule
        #: the complete architecture of this (frozen or default) instance
        self.arch: dict[str, str] = arch
        self.net = NB201Net([arch[f"op_{e}"] for e in NB201_EDGES], C=self.C, N=self.N, num_classes=self.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def to_config(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`arch_to_config` of this instance's :attr:`arch` with its ``C`` and ``N``."""
        kwargs.setdefault("C", self.C)
        kwargs.setdefault("N", self.N)
        return arch_to_config(self.arch, **kwargs)


def _arch_sharing(arch: Mapping[str, Any]) -> str:
    staged = any(str(k).startswith("stage") and "/rule_" in str(k) for k in arch)
    plain = any(str(k) == rule_label(e) for k in arch for e in NB201_EDGES)
    if staged == plain:
        raise ValueError(f"architecture needs either rule_j<-i or stage{{s}}/rule_j<-i labels; got keys {sorted(arch)}")
    return "stage" if staged else "cells"


def arch_to_config(
    arch: Mapping[str, Any],
    *,
    C: int = 16,
    N: int = 5,
    end_rule: str = "bp",
    model: Optional[Mapping[str, Any]] = None,
    data: Optional[Mapping[str, Any]] = None,
    trainer: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """Turn an NB201 architecture (``op_{j}<-{i}``, edge rules, optional end rules that override
    ``end_rule``) into a ``biorules fit`` config::

        {"model": {"backbone": "nb201",
                   "backbone_kwargs": {"cell_ops": [6 ops in NB201_EDGES order], "C": C, "N": N},
                   "rule_space": {"stem.*": ..., "stages.*.edges.1<-0.*": ..., ...,
                                  "reductions.0.*": ..., "reductions.1.*": ..., "classifier": ...},
                   **model},
         "data": {**data}, "trainer": {**trainer}}

    Edges whose op has no conv get no pattern. ``model.num_classes`` is left to the data module.
    """
    try:
        ops = nb201_cell_ops({e: arch[f"op_{e}"] for e in NB201_EDGES})
    except KeyError as exc:
        raise ValueError(f"architecture is missing {exc.args[0]!r}") from None
    sharing = _arch_sharing(arch)
    rule_space: dict[str, str] = {"stem.*": str(arch.get("rule_stem", end_rule))}
    for edge, stage, label in _rule_labels(sharing):
        if ops[NB201_EDGES.index(edge)] not in NB201_CONV_OPS:
            continue
        if label not in arch:
            raise ValueError(f"architecture is missing {label!r}")
        where = "*" if stage is None else f"{stage}.*"
        rule_space[f"stages.{where}.edges.{edge}.*"] = str(arch[label])
    for label in ("rule_reduction_0", "rule_reduction_1", "rule_classifier"):
        rule_space[_END_PATTERNS[label]] = str(arch.get(label, end_rule))
    model_cfg: dict[str, Any] = {
        "backbone": "nb201",
        "backbone_kwargs": {"cell_ops": ops, "C": int(C), "N": int(N)},
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
    from the patterns unless given (``"cells"`` when no edge has a conv)."""
    model = config["model"]
    if model.get("backbone") != "nb201":
        raise ValueError(f"not an nb201 config (backbone {model.get('backbone')!r})")
    ops = nb201_cell_ops(model["backbone_kwargs"]["cell_ops"])
    rule_space = {str(k): str(v) for k, v in dict(model["rule_space"]).items()}
    if rule_sharing is None:
        rule_sharing = "stage" if any(_STAGE_PATTERN.match(k) for k in rule_space) else "cells"
    arch: dict[str, str] = {f"op_{e}": op for e, op in zip(NB201_EDGES, ops)}
    for edge, stage, label in _rule_labels(_check_sharing(rule_sharing)):
        where = "*" if stage is None else f"{stage}.*"
        arch[label] = rule_space.get(f"stages.{where}.edges.{edge}.*", "bp")
    for label in END_LABELS:
        arch[label] = rule_space.get(_END_PATTERNS[label], "bp")
    return arch
