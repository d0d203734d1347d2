"""NNI 3.0 architecture search over ops and learning rules per layer.

- :mod:`.spaces`: the registry of search spaces (``macro``, ``nb201``, ``darts``) and ``biorules space``;
  :mod:`.space` (:class:`MacroSearchSpace`, ``op_{i}`` / ``rule_{i}`` per layer), :mod:`.nb201_space`
  and :mod:`.darts_space` (a rule choice per cell edge beside its op).
- :mod:`.strategies`: ``regularized_evolution`` (aging), ``evolution`` (the worst dies), ``random``, on
  NNI's strategy interface, with NAS-Bench-201's one-choice mutation.
- :mod:`.search`: :func:`run_search` (sequential or 'ts' engine with NNI's web UI, journal and resume,
  top-k export) and the ``biorules search`` command (:func:`main`).
- :mod:`.report`: top-k YAML export, rule-map and search-curve plots, ``biorules report``.
- :mod:`.nni_compat`: every workaround for NNI 3.0 on this stack.

Importing this package imports NNI; the rest of ``lightning_biorules`` does not need it.
"""

from .search import SearchResult, TrialRecord, evaluate_candidate, run_search
from .space import MacroSearchSpace, arch_from_config, arch_to_config

__all__ = [
    "MacroSearchSpace",
    "SearchResult",
    "TrialRecord",
    "arch_from_config",
    "arch_to_config",
    "evaluate_candidate",
    "run_search",
]
