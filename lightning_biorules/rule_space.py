"""``rule_space``: which learning rule each layer of a model uses.

Forms accepted wherever a ``rule_space`` is taken (``apply_rules``, the ``BioRules`` callback,
``ImageClassifier``, ``biorules fit --model.rule_space=...``):

* one rule name for every layer: ``"usf"``;
* an ordered mapping from module-name glob patterns (:mod:`fnmatch`) to rule names, first match wins,
  ``"*"`` as the default; layers that match no pattern keep exact backprop (``bp``)::

      {"layer1.*": "fa", "fc": "bp", "*": "usf"}

* ``keep_ends_bp=True`` on top of either form: the paper's convention of training the stem (first) and
  classifier (last) layer with ``bp``.

Every mistake is reported before training: an unknown rule, a pattern that matches no layer, a pattern
that names a module type no rule can handle (e.g. a BatchNorm) or a rule on a layer type it does not support.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple, Union

from torch import nn

from lightning_biorules.rules import get_rule

__all__ = ["RuleSpace", "RuleSpaceLike", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS: Tuple[type, ...] = (nn.Linear, nn.Conv2d)
RuleSpaceLike = Union[str, Mapping[str, str], "RuleSpace"]


@dataclass(frozen=True)
class RuleSpace:
    """A validated rule assignment: ordered ``(pattern, rule)`` pairs plus the paper's ``keep_ends_bp`` option."""

    patterns: Tuple[Tuple[str, str], ...]
    keep_ends_bp: bool = False

    @classmethod
    def parse(cls, spec: RuleSpaceLike, keep_ends_bp: bool = False) -> "RuleSpace":
        """Build from a rule name, a pattern mapping or a ``RuleSpace``; unknown rules raise ``ValueError``."""
        if isinstance(spec, RuleSpace):
            return cls(spec.patterns, spec.keep_ends_bp or keep_ends_bp)
        if isinstance(spec, str):
            pairs: Tuple[Tuple[str, str], ...] = (("*", spec),)
        elif isinstance(spec, Mapping):
            if not spec:
                raise ValueError("rule_space mapping is empty: give at least one 'pattern: rule' entry.")
            pairs = tuple((str(pattern), rule) for pattern, rule in spec.items())
        else:
            raise TypeError(
                f"rule_space must be a rule name or a mapping of module-name patterns to rule names, got {spec!r}"
            )
        for pattern, rule in pairs:
            try:
                get_rule(rule)
            except ValueError as err:
                where = "" if isinstance(spec, str) else f" (pattern {pattern!r})"
                raise ValueError(f"rule_space{where}: {err}") from None
        return cls(pairs, keep_ends_bp)

    def assign(self, model: nn.Module) -> Dict[str, str]:
        """Map the name of every ``nn.Linear``/``nn.Conv2d`` in ``model`` to its rule.

        Raises ``ValueError`` for a pattern that matches no layer, or that only matches modules of other
        types, and for a rule on a layer type it does not support.
        """
        modules = dict(model.named_modules())
        layers: List[str] = [name for name, module in modules.items() if isinstance(module, SUPPORTED_LAYERS)]
        if not layers:
            raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to apply rules to.")
        for pattern, rule in self.patterns:
            matched = [name for name in layers if fnmatch.fnmatchcase(name, pattern)]
            if matched:
                continue
            others = [n for n in modules if n and fnmatch.fnmatchcase(n, pattern)]
            if others:
                kinds = sorted({type(modules[n]).__name__ for n in others})
                raise ValueError(
                    f"rule_space pattern {pattern!r} -> {rule!r} matches only {', '.join(kinds)} modules "
                    f"(e.g. {others[0]!r}); rules apply to Linear and Conv2d layers, the rest keep exact "
                    f"gradients. Layers: {_preview(layers)}"
                )
            raise ValueError(f"rule_space pattern {pattern!r} -> {rule!r} matches no layer. Layers: {_preview(layers)}")

        assignment = {name: self._rule_for(name) for name in layers}
        if self.keep_ends_bp:
            assignment[layers[0]] = "bp"
            assignment[layers[-1]] = "bp"
        for name, rule in assignment.items():
            supported = get_rule(rule).supported_layers
            if not isinstance(modules[name], supported):
                raise ValueError(
                    f"rule {rule!r} cannot handle layer {name!r} of type {type(modules[name]).__name__}; it "
                    f"supports {', '.join(t.__name__ for t in supported)}. Map that layer to another rule."
                )
        return assignment

    def _rule_for(self, name: str) -> str:
        for pattern, rule in self.patterns:
            if fnmatch.fnmatchcase(name, pattern):
                return rule
        return "bp"


def _preview(names: List[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")
