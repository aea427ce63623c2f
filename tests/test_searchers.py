"""Searchers, called directly (real Optuna, no Ray cluster needed)."""

from __future__ import annotations

import optuna
import pytest
from ray.tune.search import Searcher
from test_spec import VALID

from search.searchers import (
    MAX_RESAMPLES,
    NO_TIME,
    NOT_TRAINED,
    OBJECTIVES,
    TWIN_OF,
    build_searcher,
    num_trials,
    space_exhausted,
)
from search.spec import ExperimentSpec
from trainables import metrics as M

COMPLETE, PRUNED, FAIL, RUNNING = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                                   optuna.trial.TrialState.FAIL, optuna.trial.TrialState.RUNNING)


def _searcher(**changes: dict) -> object:
    raw = {**VALID, **changes}
    searcher = build_searcher(ExperimentSpec.from_dict(raw))
    searcher.set_search_properties(None, None, {})
    return searcher


def _result(epochs_done: int, max_epochs: int = 3, acc: float = 0.4, params: int = 77_850) -> dict:
    return {M.EPOCHS_DONE: epochs_done, M.MAX_EPOCHS: max_epochs,
            M.BEST_VAL_ROBUST_ACC: acc, M.PARAMS: params}


def test_early_stopped_trials_reach_optuna_as_pruned_not_complete() -> None:
    searcher = _searcher()
    for trial_id in ("full", "stopped", "failed"):
        config = searcher.suggest(trial_id)
        assert config[M.DEPTH] in (10, 16)
    searcher.on_trial_complete("full", _result(3))
    searcher.on_trial_complete("stopped", _result(1, acc=0.9))  # truncated: must not count
    searcher.on_trial_complete("failed", None, error=True)
    states = {t.number: t.state for t in searcher._ot_study.trials}  # noqa: SLF001
    assert states == {0: optuna.trial.TrialState.COMPLETE, 1: optuna.trial.TrialState.PRUNED,
                      2: optuna.trial.TrialState.FAIL}
    best = searcher._ot_study.best_trials  # noqa: SLF001
    assert [t.values for t in best] == [[0.4, 77_850]]
    assert [d for _, d in OBJECTIVES] == ["max", "min"]


def test_grid_searcher_visits_each_point_once() -> None:
    space = {"depth": [10, 16], "width": [1, 2], "train_eps": "8/255", "train_steps": [1, 3]}
    spec = ExperimentSpec.from_dict({**VALID, "space": space, "searcher": {"kind": "grid"}})
    assert num_trials(spec) == min(spec.budget.max_trials, 8)
    searcher = build_searcher(spec)
    searcher.set_search_properties(None, None, {})
    seen = set()
    for i in range(5):
        c = searcher.suggest(str(i))
        seen.add((c[M.DEPTH], c[M.WIDTH], c[M.TRAIN_STEPS]))
        searcher.on_trial_complete(str(i), _result(3))
    assert len(seen) == 5


FOUR = {"depth": [10, 16], "width": [1, 2], "train_eps": "8/255", "train_steps": 1}


def _key(config: dict) -> tuple:
    return config[M.DEPTH], config[M.WIDTH]


@pytest.mark.parametrize("kind", ["tpe", "random", "nsga2"])
def test_a_finite_space_is_searched_without_repeats_then_the_searcher_finishes(kind: str) -> None:
    searcher = _searcher(space=FOUR, searcher={"kind": kind, "seed": 0, "n_startup_trials": 1})
    seen = []
    for i in range(4):  # each sampler alone repeats points of a 4-point space within 4 draws
        config = searcher.suggest(str(i))
        seen.append(_key(config))
        searcher.on_trial_complete(str(i), _result(3 if i % 2 else 1, acc=0.1 * i))
    assert sorted(seen) == [(10, 1), (10, 2), (16, 1), (16, 2)]
    assert searcher.suggest("4") == Searcher.FINISHED
    # The study lists exactly the trained trials as COMPLETE (full) or PRUNED (stopped early);
    # every repeat the sampler drew is FAIL, naming its twin, which is a trained trial.
    trials = searcher._ot_study.trials  # noqa: SLF001
    trained = [t for t in trials if NOT_TRAINED not in t.user_attrs]
    assert [t.state for t in trained] == [COMPLETE if i % 2 else PRUNED for i in range(4)]
    repeats = [t for t in trials if NOT_TRAINED in t.user_attrs]
    assert all(t.state == FAIL for t in repeats)
    numbers = {t.number for t in trained}
    assert all(t.user_attrs[TWIN_OF] in numbers for t in repeats)
    assert all(t.params == trials[t.user_attrs[TWIN_OF]].params for t in repeats)
    assert RUNNING not in [t.state for t in trials]


class _Stubborn(optuna.samplers.BaseSampler):
    """A sampler that proposes every parameter's first choice (or lower bound) for ever."""

    def infer_relative_search_space(self, study: object, trial: object) -> dict:
        return {}

    def sample_relative(self, study: object, trial: object, search_space: dict) -> dict:
        return {}

    def sample_independent(self, study: object, trial: object, name: str, dist: object) -> object:
        choices = getattr(dist, "choices", None)
        return choices[0] if choices else dist.low


def test_a_sampler_that_insists_on_seen_points_gets_an_untried_one_not_a_repeat() -> None:
    searcher = _searcher(space={**FOUR, "depth": [10, 16, 22]},
                         searcher={"kind": "random", "seed": 0})
    searcher._ot_study.sampler = _Stubborn()  # noqa: SLF001
    first = searcher.suggest("a")
    searcher.on_trial_complete("a", _result(3))
    second = searcher.suggest("b")
    assert _key(first) == (10, 1) and _key(second) != (10, 1)
    trials = searcher._ot_study.trials  # noqa: SLF001
    assert [t.state for t in trials].count(FAIL) == MAX_RESAMPLES
    assert trials[-1].state == RUNNING and _key(trials[-1].params) == _key(second)


def test_a_running_configuration_is_not_suggested_again() -> None:
    searcher = _searcher(space={**FOUR, "width": [1]}, searcher={"kind": "random", "seed": 1})
    first, second = searcher.suggest("a"), searcher.suggest("b")  # both still running
    assert {_key(first), _key(second)} == {(10, 1), (16, 1)}
    assert searcher.suggest("c") == Searcher.FINISHED


def test_an_unbounded_space_never_finishes() -> None:
    searcher = _searcher(searcher={"kind": "random", "seed": 0})
    for i in range(12):
        assert isinstance(searcher.suggest(str(i)), dict)
        searcher.on_trial_complete(str(i), _result(3))
    assert not space_exhausted(ExperimentSpec.from_dict(VALID).space, [{}])


@pytest.mark.parametrize("kind", ["tpe", "nsga2", "random"])
def test_each_sampler_suggests_values_inside_the_space(kind: str) -> None:
    searcher = _searcher(searcher={"kind": kind, "seed": 3, "n_startup_trials": 2})
    for i in range(6):
        c = searcher.suggest(str(i))
        assert c[M.DEPTH] in (10, 16) and 1 <= c[M.WIDTH] <= 4
        assert 2 / 255 - 1e-9 <= c[M.TRAIN_EPS] <= 8 / 255 + 1e-9
        assert 0.01 <= c[M.PEAK_LR] <= 0.2
        assert (M.TRAIN_STEPS in c) == (c[M.METHOD] == "pgd")
        searcher.on_trial_complete(str(i), _result(3, acc=0.1 * i, params=1000 * (i + 1)))


# --- the budget ---------------------------------------------------------------------------------


class _Clock:
    def __init__(self, remaining: float, budget: float = 600.0) -> None:
        self.remaining_s, self.budget_s = remaining, budget
        self.elapsed_s = budget - remaining


def _budgeted(kind: str, remaining: float, **changes: object) -> object:
    from search.searchers import default_gate

    spec = ExperimentSpec.from_dict({**VALID, "searcher": {"kind": kind, "seed": 3},
                                     "budget": {**VALID["budget"], "max_trials": 100},
                                     **changes})
    gate = default_gate(spec)
    gate.clock = _Clock(remaining)
    searcher = build_searcher(spec, gate=gate)
    searcher.set_search_properties(None, None, {})
    return searcher


@pytest.mark.parametrize("kind", ["cost-ehvi", "tpe", "random"])
def test_a_trial_that_cannot_finish_in_the_remaining_budget_is_not_started(kind: str) -> None:
    searcher = _budgeted(kind, remaining=1e9)
    gate = searcher._gate  # noqa: SLF001
    # Make the budget left fit WRN-10-1 but nothing of width 4.
    from search.proposer import Space

    view = Space(searcher._view.space, searcher._view.base)  # noqa: SLF001
    small = gate.full_seconds(view.end(10, 1).config, pessimistic=True)
    large = gate.full_seconds(view.end(10, 4).config, pessimistic=True)
    assert large > 2 * small
    gate.clock = _Clock(remaining=1.5 * small)
    started = []
    for i in range(12):
        config = searcher.suggest(f"t{i}")
        if not isinstance(config, dict):
            break
        started.append(config)
        assert config[M.PREDICTED_EPOCH_S] > 0
        cfg = searcher._records[f"t{i}"].candidate.config  # noqa: SLF001
        assert gate.can_finish(cfg), (config, gate.full_seconds(cfg, pessimistic=True))
        searcher.on_trial_complete(f"t{i}", _result(3, params=77_850))
    assert started and all(c[M.WIDTH] < 4 for c in started)
    # Nothing fits any more, and nothing runs: the search ends instead of waiting.
    gate.clock = _Clock(remaining=0.0)
    assert searcher.suggest("last") == Searcher.FINISHED
    assert searcher.ended == "budget"
    if kind != "cost-ehvi":  # the sampler's rejected draws are recorded, with the reason
        failed = [t for t in searcher._ot_study.trials  # noqa: SLF001
                  if t.state == optuna.trial.TrialState.FAIL]
        assert failed and all(t.user_attrs.get(NOT_TRAINED) == NO_TIME for t in failed)


def test_while_trials_run_a_full_budget_waits_instead_of_ending() -> None:
    searcher = _budgeted("cost-ehvi", remaining=1e9)
    assert isinstance(searcher.suggest("a"), dict)
    searcher._gate.clock = _Clock(remaining=0.0)  # noqa: SLF001
    assert searcher.suggest("b") is None  # "a" still runs: its epochs may change the model
    assert searcher.ended is None
    searcher.on_trial_complete("a", _result(3))
    assert searcher.suggest("c") == Searcher.FINISHED


def test_cost_ehvi_records_exactly_what_it_proposed_in_optuna() -> None:
    searcher = _budgeted("cost-ehvi", remaining=1e9)
    configs = [searcher.suggest(str(i)) for i in range(3)]
    trials = searcher._ot_study.trials  # noqa: SLF001
    assert len(trials) == 3
    for config, trial in zip(configs, trials, strict=True):
        assert {k: config[k] for k in trial.params} == trial.params
    first = configs[0]
    assert (first[M.DEPTH], first[M.WIDTH]) == (10, 1)  # the front's small end first


def test_the_searcher_learns_costs_from_results_and_survives_a_save(tmp_path) -> None:
    searcher = _budgeted("cost-ehvi", remaining=1e9)
    searcher.suggest("a")
    searcher.on_trial_result("a", {**_result(1), M.WALL_TIME_S: 12.0})
    gate = searcher._gate  # noqa: SLF001
    assert gate.cost.measured == 1
    path = str(tmp_path / "searcher.pkl")
    searcher.save(path)
    live = gate.clock
    fresh = _budgeted("cost-ehvi", remaining=5.0)
    fresh_clock = fresh._gate.clock  # noqa: SLF001
    fresh.restore(path)
    assert fresh._gate.clock is fresh_clock and fresh._gate.clock is not live  # noqa: SLF001
    assert fresh._gate.cost.measured == 1  # noqa: SLF001
    assert "a" in fresh._records  # noqa: SLF001


def test_a_used_up_conditional_space_finishes_instead_of_training_a_repeat() -> None:
    # FGSM takes no train_steps: the product of the lists overcounts, so only the pool can tell
    space = {"depth": [10], "width": [1], "train_eps": "8/255", "train_steps": [1, 2],
             "method": ["pgd", "fgsm-rs"]}
    searcher = _searcher(space=space, searcher={"kind": "random", "seed": 0})
    seen = []
    for i in range(3):
        config = searcher.suggest(str(i))
        seen.append((config[M.METHOD], config.get(M.TRAIN_STEPS)))
        searcher.on_trial_complete(str(i), _result(3))
    assert sorted(seen, key=str) == [("fgsm-rs", None), ("pgd", 1), ("pgd", 2)]
    assert searcher.suggest("3") == Searcher.FINISHED and searcher.ended == "space"


def test_untried_configurations_that_lack_time_end_the_search_as_budget_not_space() -> None:
    """A finite space whose configurations are all trained but the wide ones, which cannot
    finish in the budget left: the budget ran out, not the space, and the search ends only
    when no trial runs; with more budget (`resume --budget`), they are trained."""
    space = {"depth": [10], "width": [1, 4], "train_eps": "8/255", "train_steps": [1]}
    searcher = _budgeted("random", remaining=1e9, space=space)
    gate = searcher._gate  # noqa: SLF001
    from search.proposer import Space

    view = Space(searcher._view.space, searcher._view.base)  # noqa: SLF001
    gate.clock = _Clock(remaining=1.5 * gate.full_seconds(view.end(10, 1).config, pessimistic=True))
    first = searcher.suggest("a")
    assert first[M.WIDTH] == 1
    assert searcher.suggest("b") is None and searcher.ended is None  # "a" runs: wait
    searcher.on_trial_complete("a", _result(3, params=77_850))
    assert searcher.suggest("c") == Searcher.FINISHED
    assert searcher.ended == "budget"
    # `resume --budget` raises the budget: what could not finish before is trained now
    gate.clock = _Clock(remaining=1e9)
    searcher.reopen()
    assert searcher.suggest("d")[M.WIDTH] == 4
