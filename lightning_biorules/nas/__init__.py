"""NNI 3.0 architecture search over ops and learning rules per layer.

- :mod:`.space`: :class:`MacroSearchSpace` (``op_{i}`` / ``rule_{i}`` per layer) and
  :func:`arch_to_config` (architecture -> ``biorules fit`` config).
- :mod:`.search`: :func:`run_search` (regularized evolution / random, sequential or 'ts' engine)
  and the ``biorules search`` command (:func:`main`).
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
