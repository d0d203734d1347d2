"""Registry of NNI search spaces over (op, learning rule), and the ``biorules space`` command.

Every registered space is a :class:`~lightning_biorules.nas.nni_compat.FreezableModelSpace`
subclass that honours one contract:

* its constructor takes keyword options only (``build_space("nb201", rule_sharing="stage")``);
* ``space.freeze(sample)`` (or ``space.random()``) returns a frozen instance whose ``arch`` is the
  complete architecture dict (label -> value, fixed choices included);
* ``frozen.to_config(model=..., data=..., trainer=...)`` returns a ``biorules fit`` config
  ``{"model": {"backbone": ..., "backbone_kwargs": {...}, "rule_space": {...}, ...}, "data": {...},
  "trainer": {...}}`` whose model section builds with ``ImageClassifier(**config["model"])``.

Registered here:

* ``macro`` -- :class:`~lightning_biorules.nas.space.MacroSearchSpace` (op and rule per layer);
* ``nb201`` -- :class:`~lightning_biorules.nas.nb201_space.NB201SearchSpace` (NAS-Bench-201 cell,
  Dong & Yang, ICLR 2020);
* ``darts`` -- :class:`~lightning_biorules.nas.darts_space.DartsSearchSpace` (DARTS cells, Liu et
  al., ICLR 2019, with a rule per edge as in Hamzaoui & Baghdadi, arXiv:2507.13485).

:func:`arch_from_config` reads the architecture back from any of their configs (it dispatches on
``model.backbone``).
"""

from __future__ import annotations

import argparse
import collections.abc
import inspect
import math
import sys
import types
import typing
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

import yaml

from .darts_space import DartsSearchSpace
from .darts_space import arch_from_config as _darts_arch_from_config
from .nb201_space import NB201SearchSpace
from .nb201_space import arch_from_config as _nb201_arch_from_config
from .nni_compat import FreezableModelSpace
from .space import MacroSearchSpace
from .space import arch_from_config as _macro_arch_from_config

__all__ = [
    "SPACES",
    "arch_from_config",
    "available_spaces",
    "build_space",
    "describe_space",
    "register_space",
    "space_labels",
    "space_main",
    "space_options",
    "space_size",
]

#: name -> search-space class (see the module docstring for the contract).
SPACES: Dict[str, type] = {}

#: ``model.backbone`` of a config -> reader of its architecture dict.
_ARCH_READERS: Dict[str, Callable[[Mapping[str, Any]], Dict[str, Any]]] = {
    "macro": _macro_arch_from_config,
    "nb201": _nb201_arch_from_config,
    "darts": _darts_arch_from_config,
}

S = TypeVar("S", bound=type)


def register_space(name: str) -> Callable[[S], S]:
    """Class decorator: register a :class:`FreezableModelSpace` subclass under ``name``."""

    def decorator(cls: S) -> S:
        if not (isinstance(cls, type) and issubclass(cls, FreezableModelSpace)):
            raise TypeError(f"search space {name!r} must be a FreezableModelSpace subclass, got {cls!r}")
        SPACES[name] = cls
        return cls

    return decorator


def available_spaces() -> List[str]:
    """Names of the registered search spaces, sorted."""
    return sorted(SPACES)


def _space_class(name: str) -> type:
    if name not in SPACES:
        raise ValueError(f"Unknown search space {name!r}. Valid spaces: {', '.join(available_spaces())}.")
    return SPACES[name]


def _original_init(cls: type) -> Callable[..., None]:
    """The ``__init__`` written in ``cls``'s body.

    NNI 3.0 wraps the ``__init__`` of every ``ModelSpace`` subclass in a ``(*args, **kwargs)``
    function without ``functools.wraps``; the original is a closure variable of that wrapper.
    """
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        wanted = f"{klass.__qualname__}.__init__"
        stack: list[Any] = [vars(klass)["__init__"]]
        seen: set[int] = set()
        while stack:
            fn = stack.pop()
            if id(fn) in seen:
                continue
            seen.add(id(fn))
            if getattr(fn, "__qualname__", "") == wanted:
                return fn
            for cell in getattr(fn, "__closure__", None) or ():
                try:
                    value = cell.cell_contents
                except ValueError:  # empty cell
                    continue
                if callable(value):
                    stack.append(value)
        break
    raise TypeError(f"cannot find the constructor signature of {cls.__qualname__}")


def space_options(name: str) -> Dict[str, inspect.Parameter]:
    """Keyword options of the space ``name``: ``{option: inspect.Parameter}`` in signature order
    (annotations evaluated, defaults as declared)."""
    cls = _space_class(name)
    signature = inspect.signature(_original_init(cls), eval_str=True)
    return {
        pname: param
        for pname, param in signature.parameters.items()
        if pname != "self" and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)
    }


def build_space(name: str, **options: Any) -> FreezableModelSpace:
    """Instantiate the registered space ``name`` with keyword ``options``.

    Raises ``ValueError`` for an unknown space name or option name (both listing the valid ones);
    invalid option values are reported by the space's constructor.
    """
    valid = space_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"Unknown option(s) {', '.join(unknown)} for search space {name!r}. "
            f"Valid options: {', '.join(valid)}."
        )
    return SPACES[name](**options)


def space_labels(space: FreezableModelSpace) -> Dict[str, List[Any]]:
    """``{label: choices}`` of every decision of ``space`` (NNI's simplified view)."""
    labels: Dict[str, List[Any]] = {}
    for label, mutable in space.simplify().items():
        values = getattr(mutable, "values", None)
        if values is None:
            raise TypeError(f"label {label!r} is a {type(mutable).__name__}, not a categorical choice")
        labels[str(label)] = list(values)
    return labels


def space_size(space: FreezableModelSpace, rule_labels: Optional[bool] = None) -> int:
    """Number of architectures of ``space`` (product of the choice counts). With ``rule_labels``
    True/False only the rule labels (``rule_*``, optionally scoped ``scope/rule_*``) / the other labels count."""
    sizes = [
        len(choices)
        for label, choices in space_labels(space).items()
        if rule_labels is None or (_is_rule_label(label) == rule_labels)
    ]
    return math.prod(sizes)


def _is_rule_label(label: str) -> bool:
    return label.rsplit("/", 1)[-1].startswith("rule_")


def _format_size(size: int) -> str:
    return f"{size} ({size:.3e})"


def describe_space(name: str, **options: Any) -> str:
    """Human-readable description of the space ``name``: every label with its choices, the fixed
    choices of the default architecture, and the space size (architecture labels, rule labels,
    total; each as an integer and in scientific notation)."""
    space = build_space(name, **options)
    labels = space_labels(space)
    arch = dict(getattr(space, "arch", {}))
    cls = SPACES[name]
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items()) or "defaults"
    lines = [f"search space {name!r} ({cls.__module__}.{cls.__qualname__}; {shown})", f"labels ({len(labels)}):"]
    width = max((len(label) for label in labels), default=0)
    for label, choices in labels.items():
        lines.append(f"  {label:<{width}}  [{len(choices)}] {', '.join(map(str, choices))}")
    fixed = {k: v for k, v in arch.items() if k not in labels}
    if fixed:
        lines.append("fixed:")
        lines.extend(f"  {k} = {v}" for k, v in fixed.items())
    lines.append(f"size (op/input labels): {_format_size(space_size(space, rule_labels=False))}")
    lines.append(f"size (rule labels):     {_format_size(space_size(space, rule_labels=True))}")
    lines.append(f"size (total):           {_format_size(space_size(space))}")
    return "\n".join(lines)


def arch_from_config(config: Mapping[str, Any]) -> Dict[str, Any]:
    """The architecture dict of a ``biorules fit`` config written by any registered space's
    ``to_config`` (dispatches on ``config["model"]["backbone"]``)."""
    backbone = str(config["model"]["backbone"])
    if backbone not in _ARCH_READERS:
        raise ValueError(
            f"no search space writes backbone {backbone!r}; known: {', '.join(sorted(_ARCH_READERS))}."
        )
    return _ARCH_READERS[backbone](config)


# ---------------------------------------------------------------------------------------------
# biorules space NAME [--option value ...]
# ---------------------------------------------------------------------------------------------
def _is_sequence_type(annotation: Any) -> bool:
    """Whether ``annotation`` is (or is an ``Optional``/``Union`` of) a sequence type."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_is_sequence_type(arg) for arg in typing.get_args(annotation))
    return isinstance(origin, type) and issubclass(origin, collections.abc.Sequence) and origin is not str


def _option_parser(param: inspect.Parameter) -> Callable[[str], Any]:
    """Command-line value parser of one option: YAML (``16``, ``true``, ``[bp, fa]``); for sequence
    options a bare word or comma-separated word list (``bp,fa``) is a list too."""
    sequence = _is_sequence_type(param.annotation)

    def parse(text: str) -> Any:
        value = yaml.safe_load(text)
        if sequence and isinstance(value, (str, int, float)):
            return [yaml.safe_load(part.strip()) for part in str(text).split(",") if part.strip()]
        return value

    parse.__name__ = param.name  # argparse names the option in its "invalid value" message
    return parse


def _format_option(param: inspect.Parameter) -> str:
    annotation = "" if param.annotation is inspect.Parameter.empty else inspect.formatannotation(param.annotation)
    default = "" if param.default is inspect.Parameter.empty else f" = {param.default!r}"
    return f"--{param.name} {annotation}{default}".rstrip()


def _usage() -> str:
    lines = ["usage: biorules space NAME [--option value ...]", "", "Describe a search space: its labels, choices and size.", "", "spaces:"]
    for name in available_spaces():
        doc = (inspect.getdoc(SPACES[name]) or "").splitlines()
        lines.append(f"  {name:<8} {doc[0] if doc else ''}")
        lines.extend(f"      {_format_option(p)}" for p in space_options(name).values())
    lines.append("")
    lines.append("Values are YAML: --rules [bp,fa] (or bp,fa), --search_ends true, --C 8.")
    return "\n".join(lines)


def space_main(argv: Optional[Sequence[str]] = None) -> None:
    """``biorules space NAME [--option value ...]``: print :func:`describe_space`.

    ``biorules space`` (exit status 2) or ``--help`` lists the spaces and their options; an
    unknown space / option / value is a usage error (exit status 2).
    """
    words = list(sys.argv[1:] if argv is None else argv)
    if not words or words[0] in ("-h", "--help"):
        print(_usage())
        if not words:
            sys.exit(2)
        return
    name, rest = words[0], words[1:]
    parser = argparse.ArgumentParser(prog=f"biorules space {name}", description=f"Describe the {name!r} search space.")
    if name not in SPACES:
        parser.error(f"Unknown search space {name!r}. Valid spaces: {', '.join(available_spaces())}.")
    for param in space_options(name).values():
        parser.add_argument(f"--{param.name}", type=_option_parser(param), default=argparse.SUPPRESS, help=_format_option(param))
    args, unknown = parser.parse_known_args(rest)
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)}. "
            f"Valid options: {', '.join('--' + option for option in space_options(name))}."
        )
    try:
        text = describe_space(name, **vars(args))
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    print(text)


register_space("macro")(MacroSearchSpace)
register_space("nb201")(NB201SearchSpace)
register_space("darts")(DartsSearchSpace)
