"""MO-ASHA (Schmucker et al. 2021): ASHA's asynchronous rungs, promoting by non-dominated
rank over (robust accuracy, parameters), NSGA-II crowding distance (Deb et al. 2002) breaking
ties inside a rank, so a small model on the front survives next to a big, accurate one.
"""

from __future__ import annotations

import logging
import math
import pickle
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from analysis.dominance import crowding_distances, nondominated_ranks
from search.budget import BudgetClock
from search.rungs import (
    DEFAULT_OBJECTIVES,
    Decisions,
    bracket_milestones,
    check_objectives,
    check_schedule,
    inferred_decision,
    noise_margin,
    result_history,
    rungs_text,
)
from trainables.metrics import EPOCHS_DONE, VAL_EXAMPLES
from trainables.run_files import finite_number

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)



def _point(result: Mapping[str, Any], objectives: Sequence[tuple[str, str]]) -> tuple[float, ...]:
    """The result in minimisation form; NaN marks an objective that is missing or not finite."""
    out = []
    for name, mode in objectives:
        value = finite_number(result.get(name))
        if value is None:
            out.append(math.nan)
        else:
            out.append(-value if mode == "max" else value)
    return tuple(out)


def _in_top_fraction(points: np.ndarray, index: int, reduction_factor: float) -> bool:
    """Whether row `index` is among the best ceil(n / rf) rows by (rank, -crowding).

    Exact ties favour the row being decided, as Ray's ASHA continues a result equal to its
    cutoff: the first results at a rung all tie with nothing and continue.
    """
    ranks = nondominated_ranks(points)
    crowding = crowding_distances(points, ranks)
    better = (ranks < ranks[index]) | ((ranks == ranks[index]) & (crowding > crowding[index]))
    return int(better.sum()) < math.ceil(len(points) / reduction_factor)


# ---------------------------------------------------------------------------------------------
# MO-ASHA


@dataclass
class _Rung:
    """One milestone of a bracket: every point recorded there, and the decisions taken."""

    milestone: float
    points: dict[str, tuple[float, ...]] = field(default_factory=dict)
    stopped: int = 0
    continued: int = 0
    within_noise: int = 0  # continued only because the gap to the cutoff was within noise

    def count(self, decision: str | None, within_noise: bool = False) -> None:
        if decision == TrialScheduler.STOP:
            self.stopped += 1
        elif decision == TrialScheduler.CONTINUE:
            self.continued += 1
        self.within_noise += within_noise


class _ParetoBracket:
    """The rungs of one successive-halving bracket, ascending by milestone."""

    def __init__(self, milestones: Sequence[float], reduction_factor: float) -> None:
        self.rungs = [_Rung(m) for m in milestones]
        self.reduction_factor = reduction_factor

    def rung_for(self, trial_id: str, time: float) -> _Rung | None:
        """The rung a result at `time` is judged at: the highest one reached, unless the trial
        is already recorded there (it was judged on an earlier result)."""
        for rung in reversed(self.rungs):
            if time >= rung.milestone:
                return None if trial_id in rung.points else rung
        return None

    def judge(self, rung: _Rung, trial_id: str, point: tuple[float, ...],
              margin: float = 0.0) -> tuple[str, bool]:
        """Record the point, then continue it iff it is in the rung's top 1/rf, or would be
        with its first objective `margin` better (within noise). Returns (decision, whether
        the decision was taken within noise)."""
        rung.points[trial_id] = point
        ids = list(rung.points)
        points = np.array([rung.points[i] for i in ids], dtype=float)
        index = ids.index(trial_id)
        keep = _in_top_fraction(points, index, self.reduction_factor)
        within_noise = False
        if not keep and margin > 0 and not math.isnan(points[index, 0]):
            points[index, 0] -= margin  # minimisation form: better is lower
            within_noise = keep = _in_top_fraction(points, index, self.reduction_factor)
        decision = TrialScheduler.CONTINUE if keep else TrialScheduler.STOP
        rung.count(decision, within_noise)
        return decision, within_noise


class MOASHAScheduler(Decisions, FIFOScheduler):
    """Asynchronous successive halving with a Pareto-aware rung rule (MO-ASHA).

    At each rung, a trial continues if its non-dominated rank among every result recorded at
    that rung, with crowding distance breaking ties inside a rank, puts it in the top
    ceil(n / reduction_factor). A small model on the front then survives next to a big,
    accurate one. The first trials to reach a rung continue, as in ASHA, and exact ties
    favour the trial being judged. A result with a missing or non-finite objective counts as
    dominated by every real result: it is never promoted over one, and it does not raise.

    Args:
        time_attr: The fidelity attribute (monotone per trial), epochs by default.
        max_t: Full fidelity: a result at or past it stops the trial.
        grace_period: The first rung.
        reduction_factor: Rungs at grace_period * rf**k below max_t; keep the top 1/rf.
        objectives: (metric, "max" | "min") pairs to rank by. They come from here, not from
            the Tuner's metric/mode, which only drive the searcher.
        brackets: Number of brackets, as Ray's ASHA: bracket s starts at grace * rf**s.
        seed: Seeds the bracket draw when brackets > 1.
        noise_z: Keep a trial within this many standard errors of the cutoff on the first
            objective, an accuracy measured on `examples_attr` images (0: no allowance).
        clock: The run's budget clock; with `only_finishable`, a trial whose own rate says it
            cannot reach max_t in the budget left is stopped.
    """

    def __init__(
        self,
        *,
        time_attr: str = EPOCHS_DONE,
        max_t: int,
        grace_period: float = 1,
        reduction_factor: float = 3,
        objectives: Sequence[tuple[str, str]] = DEFAULT_OBJECTIVES,
        brackets: int = 1,
        seed: int = 0,
        noise_z: float = 0.0,
        examples_attr: str = VAL_EXAMPLES,
        clock: BudgetClock | None = None,
        only_finishable: bool = False,
    ) -> None:
        check_schedule(max_t, grace_period, reduction_factor, brackets)
        checked = check_objectives(objectives)
        if finite_number(noise_z) is None or noise_z < 0:
            raise ValueError(f"noise_z must be a number >= 0, but got {noise_z!r}")
        super().__init__()
        self._noise_z = float(noise_z)
        self._examples_attr = examples_attr
        self._clock = clock
        self._only_finishable = only_finishable
        self._time_attr = time_attr
        self._max_t = max_t
        self._reduction_factor = reduction_factor
        self._objectives = checked
        # Ray's controller checks every result carries the scheduler's metric: the first one.
        self._metric = checked[0][0]
        self._brackets = [
            _ParetoBracket(bracket_milestones(grace_period, max_t, reduction_factor, s), reduction_factor)
            for s in range(brackets)
        ]
        self._trial_bracket: dict[str, int] = {}
        self._rng = random.Random(seed)
        self._num_stopped = 0

    @property
    def objectives(self) -> tuple[tuple[str, str], ...]:
        return self._objectives

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric and metric != self._metric:
            logger.info(
                "MOASHAScheduler ranks by %s; the Tuner's metric %r only drives the searcher",
                self._objectives,
                metric,
            )
        return True

    def on_trial_add(self, tune_controller: TuneController | None, trial: Trial) -> None:
        if trial.trial_id in self._trial_bracket:
            return
        self._trial_bracket[trial.trial_id] = self._bracket_index(trial.trial_id)
        self._replay(trial)

    def on_trial_result(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> str:
        time = finite_number(result.get(self._time_attr))
        if time is None:
            return TrialScheduler.CONTINUE
        if time >= self._max_t:
            return TrialScheduler.STOP
        if self._budget_stop(trial, result, time) is not None:
            self._num_stopped += 1
            return TrialScheduler.STOP
        bracket = self._bracket_of(trial.trial_id)
        rung = bracket.rung_for(trial.trial_id, time)
        if rung is None:
            return TrialScheduler.CONTINUE
        point = _point(result, self._objectives)
        accuracy = finite_number(result.get(self._objectives[0][0]))
        margin = noise_margin(accuracy, result.get(self._examples_attr), self._noise_z)
        decision, within_noise = bracket.judge(rung, trial.trial_id, point, margin)
        self._write(trial, result, milestone=rung.milestone, decision=decision,
                    reason="within-noise" if within_noise else "rank", margin=round(margin, 4),
                    objectives={name: finite_number(result.get(name)) for name, _ in self._objectives},
                    recorded=len(rung.points))
        if decision == TrialScheduler.STOP:
            self._num_stopped += 1
            logger.debug("stopping trial %s at %s %s", trial.trial_id, self._time_attr, time)
        return decision

    def on_trial_complete(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> None:
        """Record a final result that crossed a rung without being judged there, so later
        trials are compared with it; the trial itself is done, so no decision is counted."""
        time = finite_number((result or {}).get(self._time_attr))
        if time is not None and trial.trial_id in self._trial_bracket:
            rung = self._bracket_of(trial.trial_id).rung_for(trial.trial_id, time)
            if rung is not None:
                rung.points[trial.trial_id] = _point(result, self._objectives)
        self._trial_bracket.pop(trial.trial_id, None)

    def on_trial_remove(self, tune_controller: TuneController | None, trial: Trial) -> None:
        self._trial_bracket.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        names = ", ".join(f"{name} {mode}" for name, mode in self._objectives)
        return f"Using MO-ASHA ({names}): num_stopped={self._num_stopped}\n" + rungs_text(
            self.rung_summary(), self._time_attr)

    def rung_summary(self) -> list[dict[str, Any]]:
        """Per bracket and rung, ascending: how many results were recorded, stopped, continued
        (and continued within noise), in memory, for Ray's progress output (`debug_string`).
        The run's record of every decision is rungs.jsonl, which the report reads.

        `recorded` can exceed stopped + continued: final results recorded on completion and
        replayed results whose decision cannot be told (see `_inferred_decision`).
        """
        return [
            {
                "bracket": index,
                "milestone": rung.milestone,
                "recorded": len(rung.points),
                "stopped": rung.stopped,
                "continued": rung.continued,
                "within_noise": rung.within_noise,
            }
            for index, bracket in enumerate(self._brackets)
            for rung in bracket.rungs
        ]

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as stream:
            pickle.dump(self.__dict__, stream)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as stream:
            self.__dict__.update(pickle.load(stream))

    def _bracket_index(self, trial_id: str) -> int:
        """The bracket a trial already has points in, else a draw weighted as Ray's ASHA
        (softmax over the brackets' rung counts)."""
        for index, bracket in enumerate(self._brackets):
            if any(trial_id in rung.points for rung in bracket.rungs):
                return index
        if len(self._brackets) == 1:
            return 0
        sizes = [len(b.rungs) for b in self._brackets]
        weights = [math.exp(size - max(sizes)) for size in sizes]
        return self._rng.choices(range(len(self._brackets)), weights=weights)[0]

    def _bracket_of(self, trial_id: str) -> _ParetoBracket:
        if trial_id not in self._trial_bracket:  # results from a trial never added
            self._trial_bracket[trial_id] = self._bracket_index(trial_id)
        return self._brackets[self._trial_bracket[trial_id]]

    def _replay(self, trial: Trial) -> None:
        """Rebuild a restored trial's rung points (and inferred decisions) from its results."""
        rows = result_history(trial)
        bracket = self._bracket_of(trial.trial_id)
        for index, row in enumerate(rows):
            time = finite_number(row.get(self._time_attr))
            if time is None or time >= self._max_t:
                continue
            rung = bracket.rung_for(trial.trial_id, time)
            if rung is None:
                continue
            rung.points[trial.trial_id] = _point(row, self._objectives)
            decision = inferred_decision(trial, index, len(rows))
            rung.count(decision)
            self._num_stopped += decision == TrialScheduler.STOP


