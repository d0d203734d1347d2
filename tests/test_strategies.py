"""Search strategies (``lightning_biorules.nas.strategies``) on NNI's machinery with a cheap scorer.

A toy space of five 4-valued labels is scored by a fixed formula (its labels read as a base-4
number, so every architecture has its own score) through a real ``FunctionalEvaluator`` on NNI's
sequential engine: tens of trials take well under a second. Candidates with ``x0 == "1"`` raise,
so every run also has failed trials.
"""

from __future__ import annotations

import json

import pytest

from lightning_biorules.nas import nni_compat  # noqa: F401  (first: silences NNI's torch.nn import warnings)

import nni  # noqa: E402
from nni.mutable import ensure_frozen
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.execution import SequentialExecutionEngine
from nni.nas.execution.event import ModelEventType
from nni.nas.space import SimplifiedModelSpace
from nni.nas.strategy import Random, RegularizedEvolution
from nni.nas.strategy.evolution import Individual
from nni.nas.strategy.middleware import Chain

from lightning_biorules.nas import strategies
from lightning_biorules.nas.nni_compat import FreezableModelSpace
from lightning_biorules.nas.strategies import (
    Evolution,
    JournalReplay,
    OneChoiceEvolution,
    OneChoiceRegularizedEvolution,
    available_strategies,
    build_strategy,
    sample_key,
)

LABELS = [f"x{i}" for i in range(5)]
VALUES = ["0", "1", "2", "3"]
TRIALS = 40

#: candidates the evaluator really ran (reset per test)
EVALUATED: list[dict] = []


class ToySpace(FreezableModelSpace):
    """Five categorical labels, nothing else."""

    def __init__(self) -> None:
        super().__init__()
        self.arch = {label: ensure_frozen(self.add_mutable(nni.choice(label, VALUES))) for label in LABELS}


def score(arch: dict) -> float:
    """``x4 x3 x2 x1 x0`` read as a base-4 number, scaled to [0, 1]: unique per architecture."""
    return sum(int(arch[label]) * 4**i for i, label in enumerate(LABELS)) / (4 ** len(LABELS) - 1)


def toy_evaluator(model) -> None:
    EVALUATED.append(dict(model.arch))
    if model.arch["x0"] == "1":
        raise RuntimeError("this candidate crashes")
    nni.report_final_result(score(model.arch))


@pytest.fixture(autouse=True)
def _reset_evaluated():
    EVALUATED.clear()


def _distance(a: dict, b: dict) -> int:
    return sum(a[k] != b[k] for k in a)


def run(strategy, trials: int = TRIALS, replay: JournalReplay | None = None):
    """Run ``strategy`` for ``trials`` candidates; returns ``(models, populations, parents)``:
    the submitted models in order, the population after each finished trial (evolutions only),
    and for each mutated child the tournament winner(s) it came from (retries for duplicates
    left out)."""
    space = SimplifiedModelSpace.from_model(ToySpace(), FunctionalEvaluator(toy_evaluator))
    engine = SequentialExecutionEngine(max_model_count=trials, continue_on_failure=True)
    populations: list[list[Individual]] = []
    parents: list[list[dict]] = []
    if hasattr(strategy, "best_parent"):
        winners: list[dict] = []
        best_parent, new_individual = strategy.best_parent, strategy.new_individual

        def recording_best_parent():
            winners.append(dict(parent := best_parent()))
            return parent

        def recording_new_individual():
            winners.clear()
            child = new_individual()  # raises on a duplicate; NNI's retry helper calls again
            parents.append(list(winners))
            return child

        strategy.best_parent, strategy.new_individual = recording_best_parent, recording_new_individual
    top = Chain(strategy, replay) if replay is not None else strategy
    top.initialize(space, engine)
    if hasattr(strategy, "_population"):
        # registered after the strategy's own callback: sees the population once it is updated
        def snapshot(event):
            populations.append(list(strategy._population))

        (replay or engine).register_model_event_callback(ModelEventType.TrainingEnd, snapshot)
    top.run()
    models = list(replay.list_models()) if replay is not None else list(engine.list_models())
    return models, populations, parents


def _results(models) -> list[tuple[dict, float | None]]:
    return [(dict(m.sample), m.metric) for m in models]


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def test_registry_names_and_classes():
    assert available_strategies() == ["evolution", "random", "regularized_evolution"]
    assert type(build_strategy("evolution")) is OneChoiceEvolution
    assert type(build_strategy("evolution", mutation="per_label")) is Evolution
    assert type(build_strategy("regularized_evolution")) is OneChoiceRegularizedEvolution
    assert type(build_strategy("regularized_evolution", mutation="per_label")) is RegularizedEvolution
    assert type(build_strategy("random")) is Random
    # both evolutions are NNI strategies with NNI's machinery
    assert isinstance(build_strategy("evolution"), RegularizedEvolution)
    evo = build_strategy("evolution", population_size=7, sample_size=2, mutation_prob=0.3, crossover=True)
    assert (evo.population_size, evo.sample_size, evo.crossover) == (7, 2, True)
    assert "mutation=one_choice" in repr(evo)


def test_registry_errors_list_the_valid_names():
    with pytest.raises(ValueError, match="Unknown search strategy 'darts'.*evolution, random, regularized_evolution"):
        build_strategy("darts")
    with pytest.raises(ValueError, match="Valid mutations: one_choice, per_label"):
        build_strategy("evolution", mutation="two_choices")
    with pytest.raises(ValueError, match="sample_size"):
        build_strategy("evolution", population_size=2, sample_size=3)


# ---------------------------------------------------------------------------------------------
# evolution (no aging) vs regularized (aging) evolution
# ---------------------------------------------------------------------------------------------
def _best_so_far(models, upto: int) -> float:
    return max((m.metric for m in models[: upto + 1] if m.metric is not None), default=None)


@pytest.mark.parametrize("mutation", ["one_choice", "per_label"])
def test_evolution_keeps_the_best_and_the_worst_dies(mutation):
    strategy = build_strategy("evolution", population_size=5, sample_size=2, mutation=mutation,
                              mutation_prob=0.3, seed=0)
    models, populations, _ = run(strategy)
    assert len(models) == TRIALS
    finished = [m for m in models if m.metric is not None]
    assert sum(m.metric is None for m in models) > 0  # failed trials never join the population
    assert len(populations) == TRIALS
    for step, population in enumerate(populations):
        scores = [ind.y for ind in population]
        assert len(population) <= 5
        done = [m.metric for m in models[: step + 1] if m.metric is not None]
        # the population is exactly the 5 best results so far: the best is never lost
        assert sorted(scores, reverse=True) == sorted(done, reverse=True)[:5]
        if done:
            assert max(scores) == _best_so_far(models, step)
    assert len(populations[-1]) == 5
    assert max(ind.y for ind in populations[-1]) == max(m.metric for m in finished)


@pytest.mark.parametrize("mutation", ["one_choice", "per_label"])
def test_regularized_evolution_ages_out_old_but_good_members(mutation):
    strategy = build_strategy("regularized_evolution", population_size=5, sample_size=2, mutation=mutation,
                              mutation_prob=0.3, seed=0)
    models, populations, _ = run(strategy)
    lost_best = 0
    for step, population in enumerate(populations):
        done = [m.metric for m in models[: step + 1] if m.metric is not None]
        # aging: the population is exactly the 5 most recent results, whatever their scores
        assert [ind.y for ind in population] == done[-5:]
        if done and max(ind.y for ind in population) < max(done):
            lost_best += 1
    assert lost_best > 0, "aging evolution should have discarded its best member at some point"


def test_evolution_finds_better_architectures_than_aging_here():
    # not a general claim: with this monotone toy score and seed, keeping the elite pays off
    best = {}
    for name in ("evolution", "regularized_evolution"):
        models, _, _ = run(build_strategy(name, population_size=5, sample_size=2, seed=0))
        best[name] = max(m.metric for m in models if m.metric is not None)
    assert best["evolution"] >= best["regularized_evolution"]


@pytest.mark.parametrize("name", ["evolution", "regularized_evolution"])
def test_population_size_honoured(name):
    models, populations, parents = run(build_strategy(name, population_size=8, sample_size=3, seed=1))
    assert max(len(p) for p in populations) == 8
    # random candidates until 8 succeeded (failed ones do not join), then one tournament per child
    randoms = TRIALS - len(parents)
    assert sum(m.metric is not None for m in models[:randoms]) == 8
    assert models[randoms - 1].metric is not None
    assert all(len(winners) == 1 for winners in parents)


@pytest.mark.parametrize("sample_size", [1, 3, 6])
def test_tournament_size_honoured(sample_size):
    strategy = build_strategy("evolution", population_size=6, sample_size=sample_size, seed=0)
    strategy._population.extend(Individual({"id": i}, float(i)) for i in range(6))  # scores 0..5
    winners = [strategy.best_parent()["id"] for _ in range(400)]
    # a tournament of k members is won by its best: the k-1 worst members can never win,
    # every other member wins sometimes
    assert set(winners) == set(range(sample_size - 1, 6))


@pytest.mark.parametrize("name", ["evolution", "regularized_evolution"])
def test_one_choice_mutation_changes_exactly_one_label(name):
    models, _, parents = run(build_strategy(name, population_size=4, sample_size=2, seed=3))
    children = [dict(m.sample) for m in models[TRIALS - len(parents):]]
    parents = [winners[0] for winners in parents]
    assert len(children) == len(parents) > TRIALS // 2
    assert all(_distance(parent, child) == 1 for parent, child in zip(parents, children))
    changed = {next(k for k in parent if parent[k] != child[k]) for parent, child in zip(parents, children)}
    assert changed == set(LABELS)  # every label gets mutated at some point


def test_stock_per_label_mutation_is_not_one_choice():
    # NNI's operator re-draws each label with mutation_prob (possibly to the same value)
    strategy = build_strategy("regularized_evolution", population_size=1, sample_size=1, mutation="per_label",
                              mutation_prob=0.05, seed=0)
    strategy.initialize(SimplifiedModelSpace.from_model(ToySpace(), FunctionalEvaluator(toy_evaluator)),
                        SequentialExecutionEngine())
    strategy._dedup_helper = None
    parent = {label: "2" for label in LABELS}
    strategy._population.append(Individual(parent, 0.5))
    distances = [_distance(parent, dict(strategy.new_individual().sample)) for _ in range(50)]
    assert 0 in distances


@pytest.mark.parametrize("name", ["evolution", "regularized_evolution", "random"])
def test_determinism_under_a_seed(name):
    first = _results(run(build_strategy(name, population_size=5, sample_size=2, seed=7))[0])
    second = _results(run(build_strategy(name, population_size=5, sample_size=2, seed=7))[0])
    other = _results(run(build_strategy(name, population_size=5, sample_size=2, seed=8))[0])
    assert first == second
    assert [s for s, _ in first] != [s for s, _ in other]
    assert len({json.dumps(s, sort_keys=True) for s, _ in first}) == TRIALS  # dedup


def test_crossover_children_stay_one_choice_from_the_mix():
    strategy = build_strategy("evolution", population_size=5, sample_size=2, crossover=True, seed=0)
    models, _, parents = run(strategy)
    # two tournaments per child; the child is one label away from a label-wise mix of the two
    children = [dict(m.sample) for m in models[TRIALS - len(parents):]]
    assert parents and all(len(winners) == 2 for winners in parents)
    for (p1, p2), child in zip(parents, children):
        assert sum(child[k] not in (p1[k], p2[k]) for k in LABELS) <= 1


# ---------------------------------------------------------------------------------------------
# journal replay (resume)
# ---------------------------------------------------------------------------------------------
def _journal(models, upto: int) -> dict:
    return {
        sample_key(m.sample): {
            "status": "trained" if m.metric is not None else "failed",
            "metric": m.metric,
            "intermediates": [],
        }
        for m in models[:upto]
    }


@pytest.mark.parametrize("name", ["evolution", "regularized_evolution", "random"])
def test_replay_walks_the_same_path_without_retraining(name):
    full, _, _ = run(build_strategy(name, population_size=5, sample_size=2, seed=0), trials=20)
    EVALUATED.clear()
    replay = JournalReplay(_journal(full, 12), max_trials=20)
    resumed, _, _ = run(build_strategy(name, population_size=5, sample_size=2, seed=0), trials=20, replay=replay)
    assert _results(resumed) == _results(full)
    assert [replay.is_replayed(m) for m in resumed] == [True] * 12 + [False] * 8
    assert len(EVALUATED) == 8  # the 12 journaled candidates were not evaluated again
    assert [dict(m.sample) for m in replay.replayed] == [dict(m.sample) for m in full[:12]]
    # failed candidates replay as failed
    if name == "random":
        assert any(m.metric is None for m in full[:12])
    assert all(m.status.value == ("failed" if m.metric is None else "trained") for m in resumed)


def test_replay_counts_towards_the_budget():
    exhausted = []
    full, _, _ = run(build_strategy("random", seed=0), trials=10)
    EVALUATED.clear()
    replay = JournalReplay(_journal(full, 10), max_trials=6, on_budget_exhausted=exhausted.append)
    resumed, _, _ = run(build_strategy("random", seed=0), trials=10, replay=replay)
    assert len(resumed) == 6 and EVALUATED == []
    assert exhausted == [0]  # nothing reached the engine
    with pytest.raises(ValueError):
        JournalReplay({}, max_trials=0)


def test_sample_key_is_canonical():
    assert sample_key({"b": "1", "a": "x"}) == sample_key(json.loads(json.dumps({"a": "x", "b": "1"})))
    assert sample_key({"a": "1"}) != sample_key({"a": "2"})


def test_strategies_module_does_not_patch_nni():
    # the one-choice operator is a feature of this package, not an NNI workaround

    assert not hasattr(nni_compat, "SingleMutationRegularizedEvolution")
    assert strategies.OneChoiceMutation.mutation == "one_choice"
