"""NNI model space over (op, learning rule) per layer of :class:`~lightning_biorules.models.macro.MacroNet`.

Every searchable layer ``i`` has two labels side by side: ``op_{i}`` (a choice over the ops,
default :data:`~lightning_biorules.models.macro.MACRO_OPS`) and ``rule_{i}`` (a choice over the
learning rules, default all of :func:`lightning_biorules.rules.available_rules`). The stem and
the classifier keep a fixed rule (``"bp"``, the usual convention) unless ``search_ends=True``,
which adds ``rule_stem`` and ``rule_classifier`` choices.

Freezing a sample gives a space whose ``arch`` attribute is the complete architecture dict::

    space = MacroSearchSpace()
    arch = space.freeze({"op_0": "conv3x3", "rule_0": "fa", ...}).arch   # or space.random().arch
    # {"op_0": "conv3x3", "rule_0": "fa", ..., "rule_stem": "bp", "rule_classifier": "bp"}

and :func:`arch_to_config` turns it into the ``biorules fit`` config (``model`` / ``data`` /
``trainer`` sections) that the search evaluates and writes out as YAML.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import nni
from nni.mutable import ensure_frozen
from torch import Tensor

from ..models.macro import MACRO_OPS, MacroNet, macro_rule_space
from .nni_compat import FreezableModelSpace

__all__ = ["MacroSearchSpace", "arch_from_config", "arch_to_config", "arch_layers"]

_OP_KEY = re.compile(r"^op_(\d+)$")


def _default_rules() -> list[str]:
    from ..rules import available_rules

    return list(available_rules())


def _check_rules(rules: Sequence[str]) -> list[str]:
    from ..rules import available_rules

    valid = set(available_rules())
    rules = [str(r) for r in rules]
    unknown = [r for r in rules if r not in valid]
    if unknown:
        raise ValueError(f"unknown learning rule(s) {unknown}; available: {sorted(valid)}")
    if not rules:
        raise ValueError("the rule choice set is empty")
    return rules


def check_choice_sets(
    ops: Sequence[str], valid_ops: Sequence[str], rules: Sequence[str] | None, end_rule: str
) -> tuple[list[str], list[str], str]:
    """Validate a space's op choices (a non-empty subset of ``valid_ops``), its rule choices (``None``: every
    registered rule) and its fixed end rule; ``ValueError`` names the bad values and the valid ones."""
    ops = [str(o) for o in ops]
    bad = [o for o in ops if o not in valid_ops]
    if bad or not ops:
        raise ValueError(f"unknown/empty op choice set {bad or ops}; expected a subset of {list(valid_ops)}")
    rules = _check_rules(_default_rules() if rules is None else rules)
    return ops, rules, _check_rules([end_rule])[0]


class MacroSearchSpace(FreezableModelSpace):
    """Search space: ``op_{i}`` and ``rule_{i}`` for each of ``len(channels) * layers_per_stage``
    layers (plus ``rule_stem`` / ``rule_classifier`` when ``search_ends``).

    Args:
        layers_per_stage: searchable layers per stage.
        channels: stage widths of the :class:`MacroNet`.
        ops: op choice set (subset of ``MACRO_OPS``).
        rules: rule choice set; ``None`` means all available rules.
        search_ends: also search the stem's and the classifier's rule.
        end_rule: the fixed rule of stem and classifier when ``search_ends`` is false.
        num_classes: classifier outputs of the dry-run network (trials take it from the data).

    The space is a real (dry-run) network: ``forward`` runs the ``MacroNet`` of the current
    (default or frozen) ops, all trained with plain backprop. Search trials do not train it;
    they build an ``ImageClassifier`` from :attr:`arch` via :func:`arch_to_config`.
    """

    def __init__(
        self,
        layers_per_stage: int = 2,
        channels: Sequence[int] = (16, 32, 64),
        ops: Sequence[str] = MACRO_OPS,
        rules: Sequence[str] | None = None,
        search_ends: bool = False,
        end_rule: str = "bp",
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        ops, rules, end_rule = check_choice_sets(ops, MACRO_OPS, rules, end_rule)
        channels = [int(c) for c in channels]
        num_layers = int(layers_per_stage) * len(channels)
        if num_layers < 1:
            raise ValueError("the space needs at least one searchable layer")

        self.num_layers = num_layers
        self.channels = tuple(channels)
        self.layers_per_stage = int(layers_per_stage)
        self.op_choices = tuple(ops)
        self.rule_choices = tuple(rules)
        self.search_ends = bool(search_ends)
        self.num_classes = int(num_classes)

        arch: dict[str, str] = {}
        for i in range(num_layers):
            arch[f"op_{i}"] = ensure_frozen(self.add_mutable(nni.choice(f"op_{i}", ops)))
            arch[f"rule_{i}"] = ensure_frozen(self.add_mutable(nni.choice(f"rule_{i}", rules)))
        if self.search_ends:
            arch["rule_stem"] = ensure_frozen(self.add_mutable(nni.choice("rule_stem", rules)))
            arch["rule_classifier"] = ensure_frozen(self.add_mutable(nni.choice("rule_classifier", rules)))
        else:
            arch["rule_stem"] = end_rule
            arch["rule_classifier"] = end_rule
        #: the complete architecture of this (frozen or default) instance
        self.arch: dict[str, str] = arch
        self.net = MacroNet(
            [arch[f"op_{i}"] for i in range(num_layers)],
            num_classes=self.num_classes,
            channels=channels,
            layers_per_stage=self.layers_per_stage,
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def to_config(self, **kwargs: Any) -> dict[str, Any]:
        """:func:`arch_to_config` of this instance's :attr:`arch` with its channels."""
        kwargs.setdefault("channels", self.channels)
        kwargs.setdefault("layers_per_stage", self.layers_per_stage)
        return arch_to_config(self.arch, **kwargs)


def arch_layers(arch: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """``(ops, rules)`` per searchable layer from an architecture dict / NNI sample."""
    indices = sorted(int(m.group(1)) for key in arch if (m := _OP_KEY.match(str(key))))
    if not indices or indices != list(range(len(indices))):
        raise ValueError(f"architecture needs op_0..op_{{N-1}}; got keys {sorted(arch)}")
    try:
        ops = [str(arch[f"op_{i}"]) for i in indices]
        rules = [str(arch[f"rule_{i}"]) for i in indices]
    except KeyError as exc:
        raise ValueError(f"architecture is missing {exc.args[0]!r}") from None
    return ops, rules


def arch_to_config(
    arch: Mapping[str, Any],
    *,
    channels: Sequence[int] = (16, 32, 64),
    layers_per_stage: int | None = None,
    stem_rule: str = "bp",
    classifier_rule: str = "bp",
    model: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    trainer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn an architecture (``op_{i}``/``rule_{i}``, optional ``rule_stem``/``rule_classifier``
    which override ``stem_rule``/``classifier_rule``) into a ``biorules fit`` config::

        {"model": {"backbone": "macro",
                   "backbone_kwargs": {"ops": [...], "channels": [...], "layers_per_stage": n},
                   "rule_space": {"stem.*": ..., "layers.0.*": ..., ..., "classifier": ...},
                   **model},
         "data": {**data},
         "trainer": {**trainer}}

    Identity layers (``skip_connect`` without stride or channel change) have no weights and get
    no ``rule_space`` pattern (their ``rule_{i}`` has no effect). ``model.num_classes`` is left out: ``biorules fit`` links it from the data module
    (``data.dataset``). Only plain lists / dicts / scalars, so ``yaml.safe_dump`` writes it as is.
    """
    ops, rules = arch_layers(arch)
    channels = [int(c) for c in channels]
    if layers_per_stage is None:
        if len(ops) % len(channels):
            raise ValueError(f"{len(ops)} layers do not split evenly into stages {channels}")
        layers_per_stage = len(ops) // len(channels)
    rule_space = macro_rule_space(
        rules,
        stem_rule=str(arch.get("rule_stem", stem_rule)),
        classifier_rule=str(arch.get("rule_classifier", classifier_rule)),
        ops=ops,
        channels=channels,
        layers_per_stage=layers_per_stage,
    )
    model_cfg: dict[str, Any] = {
        "backbone": "macro",
        "backbone_kwargs": {"ops": ops, "channels": channels, "layers_per_stage": int(layers_per_stage)},
        "rule_space": rule_space,
    }
    for key, value in dict(model or {}).items():
        if key in ("backbone", "backbone_kwargs", "rule_space", "num_classes"):
            # num_classes comes from the data module (biorules fit links data.num_classes)
            raise ValueError(f"model.{key} is set by the architecture")
        model_cfg[key] = value
    return {"model": model_cfg, "data": dict(data or {}), "trainer": dict(trainer or {})}


def arch_from_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Inverse of :func:`arch_to_config` (reads ``model.backbone_kwargs.ops`` and
    ``model.rule_space``); an identity layer's rule, absent from the config, reads as ``bp``."""
    model = config["model"]
    ops = list(model["backbone_kwargs"]["ops"])
    rule_space = dict(model["rule_space"])
    arch: dict[str, str] = {}
    for i, op in enumerate(ops):
        arch[f"op_{i}"] = str(op)
        arch[f"rule_{i}"] = str(rule_space.get(f"layers.{i}.*", "bp"))
    arch["rule_stem"] = str(rule_space.get("stem.*", "bp"))
    arch["rule_classifier"] = str(rule_space.get("classifier", "bp"))
    return arch
