"""Cost-aware proposals: the initial design, feasibility, and gain per predicted second."""

from __future__ import annotations

import numpy as np
import pytest
from test_spec import VALID

from models import count_parameters
from search.proposer import CostAwareProposer, Observation, Situation, Space
from search.spec import ExperimentSpec
from trainables import metrics as M

SPACE = {"depth": [10, 16, 22], "width": {"low": 1, "high": 4},
         "train_eps": {"low": "2/255", "high": "10/255"}, "train_steps": {"low": 1, "high": 5}}


def _spec(**space: object) -> ExperimentSpec:
    return ExperimentSpec.from_dict({**VALID, "space": {**SPACE, **space}})


def _seconds(candidate: object) -> float:
    return candidate.flops / 1e9  # type: ignore[attr-defined]


def _situation(observed=(), running=(), budget=1e6, remaining=None, slots=1) -> Situation:
    tried = {c.candidate.key for c in observed} | {c.key for c in running}
    return Situation(list(observed), list(running), tried,
                     budget if remaining is None else remaining, budget, slots)


def _proposer(spec: ExperimentSpec, n_startup: int = 4) -> CostAwareProposer:
    return CostAwareProposer(spec.space, spec.base_trial(), n_startup=n_startup, seed=0)


def test_the_pool_maps_the_unit_cube_onto_the_space() -> None:
    space = Space(_spec().space, _spec().base_trial())
    pool = space.pool(seed=0)
    assert len({c.key for c in pool}) == len(pool) > 200
    assert {c.params[M.DEPTH] for c in pool} == {10, 16, 22}
    assert {c.params[M.WIDTH] for c in pool} == {1, 2, 3, 4}
    assert {c.params[M.TRAIN_STEPS] for c in pool} == {1, 2, 3, 4, 5}
    eps = [c.params[M.TRAIN_EPS] for c in pool]
    assert 2 / 255 <= min(eps) < 2.5 / 255 and 9.5 / 255 < max(eps) <= 10 / 255
    c = pool[0]
    assert c.size == count_parameters(c.params[M.DEPTH], c.params[M.WIDTH])
    assert c.config.training.steps == c.params[M.TRAIN_STEPS]
    assert space.pool(seed=0)[:5] == pool[:5]  # deterministic


def test_a_small_finite_space_is_enumerated_in_full() -> None:
    spec = _spec(depth=[10, 16], width=[1, 2], train_eps="8/255", train_steps=[1, 2])
    pool = Space(spec.space, spec.base_trial()).pool(seed=0)
    assert len(pool) == 8


def test_fgsm_methods_carry_no_train_steps() -> None:
    spec = _spec(method=["pgd", "fgsm-rs"])
    pool = Space(spec.space, spec.base_trial()).pool(seed=0)
    assert all((M.TRAIN_STEPS in c.params) == (c.params[M.METHOD] == "pgd") for c in pool)


def test_the_initial_design_pins_the_small_end_then_the_largest_affordable_one() -> None:
    spec = _spec()
    proposer = _proposer(spec, n_startup=4)
    feasible = lambda c: True  # noqa: E731
    budget = 1e4  # startup cap: 0.5 x 1e4 / 4 = 1250 "seconds"
    first = proposer.propose(_situation(budget=budget), _seconds, feasible)
    assert (first.params[M.DEPTH], first.params[M.WIDTH], first.params[M.TRAIN_STEPS]) == (10, 1, 1)
    second = proposer.propose(_situation(running=[first], budget=budget), _seconds, feasible)
    cap = 0.5 * budget / 4
    assert second.params[M.TRAIN_STEPS] == 1 and _seconds(second) <= cap
    bigger = [c for c in proposer.pool if c.size > second.size and _seconds(
        proposer.space.end(c.params[M.DEPTH], c.params[M.WIDTH])) <= cap]
    assert not bigger  # the largest model whose cheapest training fits the cap
    third = proposer.propose(_situation(running=[first, second], budget=budget), _seconds,
                             feasible)
    assert third.key not in {first.key, second.key} and _seconds(third) <= cap


def test_nothing_that_cannot_finish_is_ever_proposed() -> None:
    spec = _spec()
    proposer = _proposer(spec, n_startup=2)
    limit = 40.0
    feasible = lambda c: _seconds(c) <= limit  # noqa: E731
    running: list = []
    for _ in range(12):
        pick = proposer.propose(_situation(running=running), _seconds, feasible)
        assert pick is not None and _seconds(pick) <= limit
        running.append(pick)
    assert proposer.propose(_situation(), _seconds, lambda c: False) is None


def _observe(candidate, accuracy: float, full: bool = True) -> Observation:
    return Observation(candidate, accuracy, 250, full)


def test_after_the_design_it_buys_hypervolume_per_second() -> None:
    """Accuracy grows with width here; the front lacks large models, so the model-based phase
    proposes one that can add to it, not another copy of what it knows."""
    spec = _spec(depth=[10], width={"low": 1, "high": 4}, train_eps="8/255", train_steps=1)
    proposer = _proposer(spec, n_startup=1)
    pool = {c.params[M.WIDTH]: c for c in proposer.pool}
    observed = [_observe(pool[1], 0.20), _observe(pool[2], 0.30)]
    pick = proposer.propose(_situation(observed), _seconds, lambda c: True)
    assert pick.params[M.WIDTH] in (3, 4)


def test_cost_cooling_prefers_the_cheap_early_and_the_valuable_late() -> None:
    spec = _spec(depth=[10], width={"low": 1, "high": 4}, train_eps="8/255", train_steps=1)
    proposer = _proposer(spec, n_startup=1)
    pool = {c.params[M.WIDTH]: c for c in proposer.pool}
    observed = [_observe(pool[1], 0.20), _observe(pool[4], 0.21)]
    # widths 2 and 3 are untried; 3 costs more; its expected gain is similar
    steep = lambda c: 1.0 if c.params[M.WIDTH] == 2 else 1000.0  # noqa: E731
    early = proposer.propose(_situation(observed, remaining=1e6), steep, lambda c: True)
    assert early.params[M.WIDTH] == 2
    late = proposer.propose(_situation(observed, remaining=1.0), steep, lambda c: True)
    assert late.params[M.WIDTH] in (2, 3)  # cost no longer counts: gain alone decides


def test_running_trials_count_as_believed_and_are_not_proposed_again() -> None:
    spec = _spec(depth=[10], width=[1, 2], train_eps="8/255", train_steps=1)
    proposer = _proposer(spec, n_startup=1)
    pool = proposer.pool
    observed = [_observe(pool[0], 0.2)]
    pick = proposer.propose(_situation(observed, running=[pool[1]]), _seconds, lambda c: True)
    assert pick is None  # both configurations are taken


def test_the_surrogate_follows_the_data() -> None:
    spec = _spec(depth=[10, 16, 22], width={"low": 1, "high": 4}, train_eps="8/255",
                 train_steps=1)
    proposer = _proposer(spec)
    pool = proposer.pool
    truth = {c.key: 0.1 + 0.05 * c.params[M.WIDTH] for c in pool}
    observed = [_observe(c, truth[c.key]) for c in pool[:8]]
    mean, std = proposer._surrogate(observed, pool[8:])
    errors = np.abs(mean - np.array([truth[c.key] for c in pool[8:]]))
    assert errors.mean() < 0.05 and (std > 0).all()


@pytest.mark.parametrize("slots", [1, 4])
def test_the_startup_cap_grows_with_slots(slots: int) -> None:
    spec = _spec()
    proposer = _proposer(spec, n_startup=8)
    first = proposer.propose(_situation(budget=1e3, slots=slots), _seconds, lambda c: True)
    second = proposer.propose(_situation(running=[first], budget=1e3, slots=slots), _seconds,
                              lambda c: True)
    assert _seconds(second) <= 0.5 * 1e3 * slots / 8 or second.size == first.size
