"""Multi-trial search strategies on NNI 3.0's strategy interface, their registry, and journal replay.

Strategies (:func:`build_strategy` by name, :func:`available_strategies`):

* ``regularized_evolution`` -- NNI's :class:`~nni.nas.strategy.RegularizedEvolution`, *aging*
  evolution (Real et al., 2019): every new individual joins the population and the **oldest** one
  leaves it.
* ``evolution`` -- :class:`Evolution`, the same algorithm without aging: the **worst** member
  leaves (ties: the oldest of the worst), so the population never loses its best individual. NNI
  3.0 has no such class; this one subclasses ``RegularizedEvolution`` and only replaces the
  replacement rule (random initial population, tournament selection, mutation, crossover, dedup,
  retries, resource waiting and checkpoint state are NNI's).
* ``random`` -- NNI's :class:`~nni.nas.strategy.Random` (with dedup).

Both evolutions take ``population_size``, ``sample_size`` (tournament size), ``crossover`` and a
mutation operator: ``"one_choice"`` (:class:`OneChoiceMutation`, NAS-Bench-201's reference
evolution: a child differs from its parent in exactly one label, re-drawn among that label's
*other* values) or ``"per_label"`` (NNI's: every label independently re-drawn with
``mutation_prob``, possibly to the same value).

:class:`JournalReplay` is a :class:`~nni.nas.strategy.middleware.StrategyMiddleware` (used with
NNI's :class:`~nni.nas.strategy.Chain`) that answers candidates already evaluated by an earlier,
interrupted search from a journal instead of training them again, and owns the trial budget so
that replayed candidates count towards it. It works on any engine: replayed models never reach
the engine (no trial process, no training-service round trip).
"""

from __future__ import annotations

import copy
import json
import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Mapping, Optional

from nni.mutable import Categorical, MutableAnnotation, Sample
from nni.nas.execution.event import ModelEvent, ModelEventType
from nni.nas.space import ExecutableModelSpace, ModelStatus
from nni.nas.strategy import Random, RegularizedEvolution, Strategy
from nni.nas.strategy.evolution import Individual
from nni.nas.strategy.middleware import StrategyMiddleware

__all__ = [
    "MUTATIONS",
    "STRATEGIES",
    "Evolution",
    "JournalReplay",
    "OneChoiceEvolution",
    "OneChoiceMutation",
    "OneChoiceRegularizedEvolution",
    "available_strategies",
    "build_strategy",
    "sample_key",
]

_logger = logging.getLogger(__name__)

#: mutation operators of the evolutions
MUTATIONS = ("one_choice", "per_label")

EventCallback = Callable[[ModelEvent], None]


def sample_key(sample: Mapping[str, Any]) -> str:
    """Canonical text of an NNI sample (label -> value): equal samples give equal keys, also
    after a JSON round trip."""
    return json.dumps({str(k): v for k, v in dict(sample).items()}, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# mutation operator
# ---------------------------------------------------------------------------------------------
if TYPE_CHECKING:  # the mixin's attributes are RegularizedEvolution's
    _EvolutionBase = RegularizedEvolution
else:
    _EvolutionBase = object


class OneChoiceMutation(_EvolutionBase):
    """Mixin for :class:`~nni.nas.strategy.RegularizedEvolution` and subclasses: the child of a
    tournament winner (or of the crossover of two winners, with ``crossover=True``) differs from
    it in **exactly one** label, chosen uniformly among the labels that have an alternative, and
    set to one of that label's other values (NAS-Bench-201's reference evolution).

    ``mutation_prob`` is ignored. Put the mixin first: ``class S(OneChoiceMutation,
    RegularizedEvolution)``.
    """

    mutation = "one_choice"

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text.replace(f"mutation_prob={self.mutation_prob}", "mutation=one_choice")

    def _parent(self) -> Sample:
        """The tournament winner, or with ``crossover`` a label-wise 50/50 mix of two winners."""
        parent = self.best_parent()
        if not self.crossover:
            return parent
        other = self.best_parent()
        if set(parent) != set(other):
            raise ValueError(f"Parents have different keys: {parent.keys()} and {other.keys()}.")
        mixed = copy.copy(parent)
        for key, value in other.items():
            if self._random_state.uniform(0, 1) < 0.5:
                mixed[key] = value
        return mixed

    def mutate(self, parent: Sample) -> Sample:
        """``parent`` with exactly one label changed to a different value (unchanged when no label
        has an alternative)."""
        space = self.model_space.simplify()
        rng = self._random_state
        keys = [
            key
            for key, mutable in space.items()
            if not isinstance(mutable, MutableAnnotation)
            and not (isinstance(mutable, Categorical) and len(mutable.values) < 2)
        ]
        child = copy.copy(parent)
        if not keys:
            return child
        key = keys[rng.randint(len(keys))]
        mutable = space[key]
        if isinstance(mutable, Categorical):
            others = [v for v in mutable.values if v != parent[key]]
            child[key] = others[rng.randint(len(others))]
        else:  # pragma: no cover - this project's spaces are categorical
            child[key] = mutable.random(random_state=rng)
        return child

    def new_individual(self) -> ExecutableModelSpace:
        """NNI's ``new_individual`` with the one-choice mutation (same dedup and validity checks:
        a duplicate raises and NNI's retry helper draws again)."""
        sample = self.mutate(self._parent())
        if self._dedup_helper is not None:
            self._dedup_helper.dedup(sample)
        model = self.model_space.freeze(sample)
        self._individual_counter += 1
        _logger.info("[Individual %4d] Mutated: %s", self._individual_counter, sample)
        return model


# ---------------------------------------------------------------------------------------------
# non-aging evolution
# ---------------------------------------------------------------------------------------------
class Evolution(RegularizedEvolution):
    """Evolution **without aging**: NNI's :class:`~nni.nas.strategy.RegularizedEvolution` where,
    once the population is full, each new individual joins and the **worst** member leaves (among
    equally bad members, the oldest) instead of the oldest. The best individual found so far is
    therefore never lost. Same arguments as ``RegularizedEvolution``.

    Failed trials (no metric) never join the population, as in NNI.
    """

    def _evict(self) -> Individual:
        """Remove and return the member that leaves: the lowest metric, oldest first on ties."""
        worst = min(range(len(self._population)), key=lambda i: (self._population[i].y, i))
        victim = self._population[worst]
        del self._population[worst]
        return victim

    def _training_end_callback(self, event: ModelEvent) -> None:
        # NNI's bookkeeping (RegularizedEvolution._training_end_callback) with _evict() in place of
        # popleft(): the only difference between aging and non-aging evolution.
        if event.model not in self._running_models:
            _logger.warning("%s is not in the running list. Ignore.", event.model)
            return
        self._running_models.remove(event.model)
        if event.model.metric is None:
            _logger.warning("%s has no metric. Skip.", event.model)
            return
        _logger.info("[Metric] %f Sample: %s", event.model.metric, event.model.sample)
        self._population.append(Individual(event.model.sample, event.model.metric))
        if len(self._population) > self.population_size:
            victim = self._evict()
            _logger.debug("Worst individual removed from the population: %s", victim)


class OneChoiceRegularizedEvolution(OneChoiceMutation, RegularizedEvolution):
    """Aging evolution (NNI's) with the one-choice mutation of :class:`OneChoiceMutation`."""


class OneChoiceEvolution(OneChoiceMutation, Evolution):
    """Non-aging :class:`Evolution` with the one-choice mutation of :class:`OneChoiceMutation`."""


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def _evolution_builder(per_label: type, one_choice: type) -> Callable[..., Strategy]:
    def build(
        *,
        population_size: int,
        sample_size: int,
        mutation: str,
        mutation_prob: float,
        crossover: bool,
        dedup: bool,
        seed: Optional[int],
    ) -> Strategy:
        if mutation not in MUTATIONS:
            raise ValueError(f"Unknown mutation {mutation!r}. Valid mutations: {', '.join(MUTATIONS)}.")
        cls = one_choice if mutation == "one_choice" else per_label
        return cls(
            population_size=int(population_size),
            sample_size=int(sample_size),
            mutation_prob=float(mutation_prob),
            crossover=bool(crossover),
            dedup=bool(dedup),
            seed=seed,
        )

    return build


def _random_builder(*, dedup: bool, seed: Optional[int], **_: Any) -> Strategy:
    return Random(dedup=bool(dedup), seed=seed)


#: strategy name -> builder taking the keyword arguments of :func:`build_strategy`
STRATEGIES: Dict[str, Callable[..., Strategy]] = {
    "regularized_evolution": _evolution_builder(RegularizedEvolution, OneChoiceRegularizedEvolution),
    "evolution": _evolution_builder(Evolution, OneChoiceEvolution),
    "random": _random_builder,
}


def available_strategies() -> List[str]:
    """Names accepted by :func:`build_strategy`, sorted."""
    return sorted(STRATEGIES)


def build_strategy(
    name: str,
    *,
    population_size: int = 10,
    sample_size: int = 3,
    mutation: str = "one_choice",
    mutation_prob: float = 0.2,
    crossover: bool = False,
    dedup: bool = True,
    seed: Optional[int] = None,
) -> Strategy:
    """A fresh NNI strategy by name (see the module docstring).

    Args:
        name: one of :func:`available_strategies`.
        population_size: the evolutions' population (NNI's default of 100 is for huge spaces;
            NAS-Bench-201's reference uses 10).
        sample_size: the evolutions' tournament size (``1 <= sample_size <= population_size``).
        mutation: ``one_choice`` or ``per_label`` (see the module docstring).
        mutation_prob: per-label mutation probability of ``per_label``.
        crossover: mix two tournament winners label by label before mutating.
        dedup: never propose the same architecture twice.
        seed: seeds the strategy's random state (same seed, same proposals for the same results).

    Raises ``ValueError`` for an unknown name (listing the valid ones), mutation, or sizes.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown search strategy {name!r}. Valid strategies: {', '.join(available_strategies())}.")
    return STRATEGIES[name](
        population_size=population_size,
        sample_size=sample_size,
        mutation=mutation,
        mutation_prob=mutation_prob,
        crossover=crossover,
        dedup=dedup,
        seed=seed,
    )


# ---------------------------------------------------------------------------------------------
# resume: replay journaled results
# ---------------------------------------------------------------------------------------------
class JournalReplay(StrategyMiddleware):
    """Answer already-evaluated candidates from a journal and count every candidate against
    ``max_trials``.

    Placed between a strategy and the engine with ``Chain(strategy, JournalReplay(...))``. A
    submitted model whose ``sample`` (by :func:`sample_key`) is in ``journal`` is not sent to the
    engine: its stored intermediate metrics, final metric and end status are dispatched as model
    events right away, exactly as the engine would, so the strategy's state evolves as in the
    original run (a seeded strategy proposes the same candidates again). Other models go to the
    engine.

    Args:
        journal: ``sample_key -> record`` with ``status`` (``"trained"`` or ``"failed"``),
            ``metric`` (float or None) and ``intermediates`` (list of floats).
        max_trials: total budget, replayed candidates included.
        on_budget_exhausted: called once with the number of models sent to the engine when the
            budget is used up after at least one replay (the 'ts' engine lowers the NNI manager's
            ``max_trial_number`` with it, so the manager reports DONE when its trials finish).

    :meth:`list_models` lists every submitted model in submission order; :attr:`replayed` holds
    the replayed ones.
    """

    def __init__(
        self,
        journal: Mapping[str, Mapping[str, Any]],
        max_trials: int,
        on_budget_exhausted: Optional[Callable[[int], None]] = None,
    ) -> None:
        super().__init__()
        if max_trials < 1:
            raise ValueError("max_trials must be >= 1")
        self.journal = dict(journal)
        self.max_trials = int(max_trials)
        self.on_budget_exhausted = on_budget_exhausted
        self._history: List[ExecutableModelSpace] = []
        self._replayed_ids: set[int] = set()
        self._exhausted_reported = False

    def extra_repr(self) -> str:
        return f"journal={len(self.journal)} records, max_trials={self.max_trials}"

    @property
    def replayed(self) -> List[ExecutableModelSpace]:
        """The models answered from the journal, in submission order."""
        return [m for m in self._history if id(m) in self._replayed_ids]

    def is_replayed(self, model: ExecutableModelSpace) -> bool:
        return id(model) in self._replayed_ids

    # callbacks: the strategy's callbacks go to this middleware (replayed events) and to the engine
    def register_model_event_callback(self, event_type: ModelEventType, callback: EventCallback) -> None:
        super().register_model_event_callback(event_type, callback)
        self.engine.register_model_event_callback(event_type, callback)

    def unregister_model_event_callback(self, event_type: ModelEventType, callback: EventCallback) -> None:
        super().unregister_model_event_callback(event_type, callback)
        self.engine.unregister_model_event_callback(event_type, callback)

    def _replay(self, model: ExecutableModelSpace, record: Mapping[str, Any]) -> None:
        model.status = ModelStatus.Training
        for value in record.get("intermediates") or []:
            self.dispatch_model_event(ModelEventType.IntermediateMetric, model=model, metric=float(value))
        metric = record.get("metric")
        trained = record.get("status") == "trained" and metric is not None
        if trained:
            self.dispatch_model_event(ModelEventType.FinalMetric, model=model, metric=float(metric))
        status = ModelStatus.Trained if trained else ModelStatus.Failed
        self.dispatch_model_event(ModelEventType.TrainingEnd, model=model, status=status)

    def submit_models(self, *models: ExecutableModelSpace) -> None:
        to_engine = []
        for model in models:
            self._history.append(model)
            record = self.journal.get(sample_key(model.sample or {}))
            if record is None:
                to_engine.append(model)
                continue
            self._replayed_ids.add(id(model))
            _logger.info("replayed from the journal (not trained again): %s -> %s", model.sample, record.get("metric"))
            self._replay(model, record)
        if to_engine:
            self.engine.submit_models(*to_engine)
        self._check_exhausted()

    def _check_exhausted(self) -> None:
        if len(self._history) < self.max_trials or self._exhausted_reported or not self._replayed_ids:
            return
        self._exhausted_reported = True
        if self.on_budget_exhausted is not None:
            self.on_budget_exhausted(len(self._history) - len(self._replayed_ids))

    def budget_available(self) -> bool:
        return len(self._history) < self.max_trials and self.engine.budget_available()

    def wait_models(self, *models: ExecutableModelSpace) -> None:
        if models:
            models = tuple(m for m in models if id(m) not in self._replayed_ids)
            if not models:
                return
        self.engine.wait_models(*models)

    def list_models(self, status: Optional[ModelStatus] = None) -> Iterable[ExecutableModelSpace]:
        return [m for m in self._history if status is None or m.status == status]

    def state_dict(self) -> dict:
        return {"submitted": len(self._history), "replayed": len(self._replayed_ids)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore: the journal itself is the state."""
