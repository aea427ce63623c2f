"""Trial schedulers: plain ASHA and a Pareto-aware ASHA (MO-ASHA) for robust accuracy vs size.

Plain ASHA ranks a rung by one number, so on robust accuracy it stops the small models first,
and those are the left end of the accuracy-per-parameter front this search exists to find.
MO-ASHA (Schmucker et al. 2021) keeps ASHA's asynchronous rungs but promotes by non-dominated
rank, with NSGA-II crowding distance (Deb et al. 2002) breaking ties inside a rank.

Both schedulers also (a) stop a trial that can no longer reach full fidelity in the budget
left, from its own rate so far (its seconds would buy no front), (b) keep a trial whose
score is within validation noise of the cutoff: it is stopped only if it would still be
stopped with its accuracy raised by `noise_z` standard errors of a difference of two
accuracies measured on `val_examples` images each (binomial), so a rung is not a coin toss;
and (c) write every decision, with its reason, to the run's `wrn-search/rungs.jsonl`, which
the report reads. Rungs may start at a fraction of an epoch (`grace_period` < 1): trials then
evaluate and report there too, so an expensive trial is judged before it spends a whole epoch.

Resuming: Ray 2.60's `Tuner.restore` unpickles the scheduler from `tuner.pkl`, which is
written when the Tuner is built, so it comes back with empty rungs. The controller never
calls `save`/`restore` on a scheduler. It re-adds every trial through `on_trial_add`, so both
schedulers here rebuild their rungs there from each restored trial's `result.json`. A
scheduler re-created from the spec is rebuilt the same way.
"""

from __future__ import annotations

import json
import logging
import math
import pickle
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

import numpy as np
from ray.tune.experiment import Trial
from ray.tune.result import EXPR_RESULT_FILE
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from analysis.dominance import crowding_distances, nondominated_ranks
from search.budget import BudgetClock, seconds_to_finish
from search.spec import SCHEDULERS
from trainables import run_files
from trainables.config import fail
from trainables.metrics import (
    EPOCHS_DONE,
    PARAMS,
    VAL_EXAMPLES,
    VAL_ROBUST_ACC,
    WALL_TIME_S,
)
from trainables.run_files import finite_number

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)

_MODES = ("max", "min")
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = ((VAL_ROBUST_ACC, "max"), (PARAMS, "min"))


# ---------------------------------------------------------------------------------------------
# Small pure helpers: numbers, milestones, Pareto ranks



def _milestones(
    grace_period: float, max_t: float, reduction_factor: float, bracket: int
) -> list[float]:
    """Rung milestones of one bracket, ascending: grace * rf**(k + bracket) below max_t.

    These are Ray's ASHA rungs without its top rung at max_t, which only matters there for
    `stop_last_trials=False`: a result at max_t stops the trial before any rung is consulted.
    """
    out = []
    k = bracket
    while (milestone := grace_period * reduction_factor**k) < max_t:
        out.append(milestone)
        k += 1
    return out


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


def noise_margin(accuracy: float | None, examples: Any, z: float) -> float:
    """z standard errors of the difference between two accuracies near `accuracy`, each
    measured on `examples` images (binomial, Agresti-Coull adjusted so it is never 0)."""
    n = finite_number(examples)
    if z <= 0 or accuracy is None or n is None or n < 1:
        return 0.0
    p = (accuracy * n + 2) / (n + 4)
    return z * math.sqrt(2 * p * (1 - p) / n)


# ---------------------------------------------------------------------------------------------
# What both schedulers share: the budget stop and the decision record


class _Decisions:
    """Stops trials that cannot finish in the budget; writes every decision to rungs.jsonl."""

    _clock: BudgetClock | None = None
    _only_finishable: bool = False
    _run_dir: str | None = None

    def attach(self, run_dir: str, clock: BudgetClock | None = None) -> None:
        """Where to write decisions, and the budget to hold trials to (None: no budget stop)."""
        self._run_dir = run_dir
        if clock is not None:
            self._clock = clock

    def _cannot_finish(self, result: Mapping[str, Any]) -> float | None:
        """Seconds the trial still needs, when that exceeds the budget left; else None."""
        if not self._only_finishable or self._clock is None:
            return None
        rest = seconds_to_finish(dict(result))
        return rest if rest is not None and rest > self._clock.remaining_s else None

    def _write(self, trial: Trial, result: Mapping[str, Any], **decision: Any) -> None:
        if self._run_dir is None:
            return
        record = {"trial_id": trial.trial_id, EPOCHS_DONE: finite_number(result.get(EPOCHS_DONE)),
                  WALL_TIME_S: finite_number(result.get(WALL_TIME_S)),
                  "budget_elapsed_s": round(self._clock.elapsed_s, 1) if self._clock else None,
                  **decision}
        try:
            run_files.RunFiles(self._run_dir).append_line(run_files.RUNGS_FILE, json.dumps(record))
        except OSError as err:  # a decision record must never stop the search
            logger.warning("could not record a rung decision in %s: %s", self._run_dir, err)

    def _budget_stop(self, trial: Trial, result: Mapping[str, Any], time: float) -> str | None:
        rest = self._cannot_finish(result)
        if rest is None:
            return None
        self._write(trial, result, milestone=None, decision=TrialScheduler.STOP,
                    reason="budget", needed_s=round(rest, 1),
                    remaining_s=round(self._clock.remaining_s, 1) if self._clock else None)
        logger.info("stopping trial %s: it needs %.0f s more, the budget has %.0f s left",
                    trial.trial_id, rest, self._clock.remaining_s if self._clock else 0)
        return TrialScheduler.STOP



def _rungs_text(summary: list[dict[str, Any]], time_attr: str) -> str:
    """One line per bracket of a `rung_summary`, for Ray's progress output."""
    brackets: dict[int, list[str]] = {}
    for r in summary:
        brackets.setdefault(r["bracket"], []).append(
            f"{time_attr} {r['milestone']:g}: {r['recorded']} recorded, {r['stopped']} stopped, "
            f"{r['within_noise']} kept within noise")
    return "\n".join(f"Bracket {i}: {' | '.join(lines)}" for i, lines in brackets.items()) or (
        "no rungs below max_t")


# ---------------------------------------------------------------------------------------------
# Arguments


def _check_schedule(max_t: Any, grace_period: Any, reduction_factor: Any, brackets: Any) -> None:
    if finite_number(grace_period) is None or grace_period <= 0:
        raise ValueError(f"grace_period must be a number > 0, but got {grace_period!r}")
    if finite_number(reduction_factor) is None or reduction_factor <= 1:
        raise ValueError(f"reduction_factor must be a number > 1, but got {reduction_factor!r}")
    if finite_number(max_t) is None or max_t < grace_period:
        raise ValueError(
            f"max_t must be a number >= grace_period ({grace_period!r}), but got {max_t!r}"
        )
    if isinstance(brackets, bool) or not isinstance(brackets, int) or brackets < 1:
        raise ValueError(f"brackets must be an integer >= 1, but got {brackets!r}")


def _check_objectives(objectives: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    checked: list[tuple[str, str]] = []
    for pair in objectives:
        if len(pair) != 2 or not isinstance(pair[0], str) or pair[1] not in _MODES:
            raise ValueError(
                f"objectives entries must be (metric, 'max' | 'min'), but got {tuple(pair)!r}"
            )
        checked.append((pair[0], pair[1]))
    if not checked:
        raise ValueError("objectives must name at least one (metric, mode) pair, but got none")
    return tuple(checked)


# ---------------------------------------------------------------------------------------------
# Restored trials


def _read_result_rows(trial: Trial) -> list[dict[str, Any]]:
    """The rows of the trial's persisted result.json, oldest first; [] when there is none.

    Read through the trial's storage filesystem, so a cloud storage path works too. A
    half-written last line (crash mid-write) is skipped.
    """
    storage = getattr(trial, "storage", None)
    if storage is None:
        return []
    try:
        path = PurePosixPath(storage.trial_fs_path, EXPR_RESULT_FILE).as_posix()
        with storage.storage_filesystem.open_input_stream(path) as stream:
            text = stream.readall().decode("utf-8", errors="replace")
    except (OSError, RuntimeError, AttributeError) as err:
        logger.debug("no result history for trial %s: %s", trial.trial_id, err)
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _result_history(trial: Trial) -> list[dict[str, Any]]:
    """What a restored trial reported before the restart; nothing for a trial that never did."""
    last = dict(trial.run_metadata.last_result or {})
    if len(last) <= 1:  # nothing, or only the trial_id Ray fills in
        return []
    return _read_result_rows(trial) or [last]


def _inferred_decision(trial: Trial, row_index: int, n_rows: int) -> str | None:
    """What a replayed rung decision must have been: a later result means it continued;
    a finished trial whose last result is the rung's was stopped; otherwise unknown."""
    if row_index < n_rows - 1:
        return TrialScheduler.CONTINUE
    if trial.is_finished():
        return TrialScheduler.STOP
    return None


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


class MOASHAScheduler(_Decisions, FIFOScheduler):
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
        _check_schedule(max_t, grace_period, reduction_factor, brackets)
        checked = _check_objectives(objectives)
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
            _ParetoBracket(_milestones(grace_period, max_t, reduction_factor, s), reduction_factor)
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
        return f"Using MO-ASHA ({names}): num_stopped={self._num_stopped}\n" + _rungs_text(
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
        rows = _result_history(trial)
        bracket = self._bracket_of(trial.trial_id)
        for index, row in enumerate(rows):
            time = finite_number(row.get(self._time_attr))
            if time is None or time >= self._max_t:
                continue
            rung = bracket.rung_for(trial.trial_id, time)
            if rung is None:
                continue
            rung.points[trial.trial_id] = _point(row, self._objectives)
            decision = _inferred_decision(trial, index, len(rows))
            rung.count(decision)
            self._num_stopped += decision == TrialScheduler.STOP


# ---------------------------------------------------------------------------------------------
# Plain ASHA with the same public record


class RecordingASHAScheduler(_Decisions, AsyncHyperBandScheduler):
    """Ray's ASHA on one metric, plus `rung_summary()` and restore, so the report can set it
    beside MO-ASHA on equal terms.

    Differences from Ray's class, all at the edges: arguments are checked with ValueError;
    metric/mode are fixed here and the Tuner's are accepted and ignored; a result whose
    metric is missing or not finite is not judged (Ray would crash on None and always
    continue NaN); unknown trials do not raise; rungs are rebuilt on restore.
    """

    def __init__(
        self,
        *,
        time_attr: str = EPOCHS_DONE,
        metric: str = VAL_ROBUST_ACC,
        mode: str = "max",
        max_t: int,
        grace_period: float = 1,
        reduction_factor: float = 3,
        brackets: int = 1,
        noise_z: float = 0.0,
        examples_attr: str = VAL_EXAMPLES,
        clock: BudgetClock | None = None,
        only_finishable: bool = False,
    ) -> None:
        _check_schedule(max_t, grace_period, reduction_factor, brackets)
        if mode not in _MODES:
            raise ValueError(f"mode must be 'max' or 'min', but got {mode!r}")
        if finite_number(noise_z) is None or noise_z < 0:
            raise ValueError(f"noise_z must be a number >= 0, but got {noise_z!r}")
        self._noise_z = float(noise_z)
        self._examples_attr = examples_attr
        self._clock = clock
        self._only_finishable = only_finishable
        super().__init__(
            time_attr=time_attr,
            metric=metric,
            mode=mode,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            brackets=brackets,
            stop_last_trials=True,
        )
        # (bracket, milestone) -> [stopped, continued, continued within noise]
        self._decisions: dict[tuple[int, float], list[int]] = {}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if metric and metric != self._metric:
            logger.info(
                "ASHA judges %r; the Tuner's metric %r only drives the searcher",
                self._metric,
                metric,
            )
        return True

    def on_trial_add(self, tune_controller: TuneController | None, trial: Trial) -> None:
        if trial.trial_id in self._trial_info:
            return
        super().on_trial_add(tune_controller, trial)
        self._replay(trial)

    def on_trial_result(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> str:
        time = finite_number(result.get(self._time_attr))
        if time is None:
            return TrialScheduler.CONTINUE
        if time >= self._max_t:
            return TrialScheduler.STOP
        value = finite_number(result.get(self._metric))
        if value is None:
            return TrialScheduler.CONTINUE
        if self._budget_stop(trial, result, time) is not None:
            self._num_stopped += 1
            return TrialScheduler.STOP
        if trial.trial_id not in self._trial_info:
            super().on_trial_add(tune_controller, trial)
        key = self._deciding_rung(trial.trial_id, time)
        cutoff = None
        if key is not None:
            bracket = self._brackets[key[0]]
            cutoff = bracket.cutoff(dict(bracket._rungs)[key[1]])  # before this result joins
        decision = super().on_trial_result(tune_controller, trial, result)
        if key is None:
            return decision
        margin = noise_margin(value, result.get(self._examples_attr), self._noise_z)
        within_noise = (decision == TrialScheduler.STOP and cutoff is not None
                        and self._metric_op * value + margin >= cutoff)
        if within_noise:
            decision = TrialScheduler.CONTINUE
            self._num_stopped -= 1  # Ray counted the stop it decided
        counts = self._decisions.setdefault(key, [0, 0, 0])
        counts[decision != TrialScheduler.STOP] += 1
        counts[2] += within_noise
        self._write(trial, result, milestone=key[1], decision=decision,
                    reason="within-noise" if within_noise else "rank", margin=round(margin, 4),
                    objectives={self._metric: value, PARAMS: finite_number(result.get(PARAMS))},
                    cutoff=None if cutoff is None else float(self._metric_op * cutoff))
        return decision

    def on_trial_complete(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> None:
        result = result or {}
        if trial.trial_id not in self._trial_info:
            return
        if (
            finite_number(result.get(self._metric)) is None
            or finite_number(result.get(self._time_attr)) is None
        ):
            del self._trial_info[trial.trial_id]
            return
        super().on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: TuneController | None, trial: Trial) -> None:
        self._trial_info.pop(trial.trial_id, None)

    def debug_string(self) -> str:
        return f"Using ASHA on {self._metric}: num_stopped={self._num_stopped}\n" + _rungs_text(
            self.rung_summary(), self._time_attr)

    def rung_summary(self) -> list[dict[str, Any]]:
        """As `MOASHAScheduler.rung_summary`: Ray's rungs below max_t, ascending."""
        out = []
        for index, bracket in enumerate(self._brackets):
            for milestone, recorded in reversed(bracket._rungs):
                if milestone >= self._max_t:
                    continue
                stopped, continued, within_noise = self._decisions.get((index, milestone),
                                                                       (0, 0, 0))
                out.append(
                    {
                        "bracket": index,
                        "milestone": milestone,
                        "recorded": len(recorded),
                        "stopped": stopped,
                        "continued": continued,
                        "within_noise": within_noise,
                    }
                )
        return out

    def _deciding_rung(self, trial_id: str, time: float) -> tuple[int, float] | None:
        """The (bracket, milestone) Ray's `_Bracket.on_result` is about to judge, if any."""
        bracket = self._trial_info[trial_id]
        for milestone, recorded in bracket._rungs:  # descending, as Ray walks them
            if time < milestone or trial_id in recorded:
                continue
            return self._brackets.index(bracket), milestone
        return None

    def _replay(self, trial: Trial) -> None:
        """Rebuild a restored trial's recorded values the way Ray's bracket records them."""
        rows = _result_history(trial)
        for index, row in enumerate(rows):
            time = finite_number(row.get(self._time_attr))
            value = finite_number(row.get(self._metric))
            if time is None or value is None or time >= self._max_t:
                continue
            key = self._deciding_rung(trial.trial_id, time)
            if key is None:
                continue
            bracket = self._brackets[key[0]]
            recorded = dict(bracket._rungs)[key[1]]
            recorded[trial.trial_id] = self._metric_op * value
            decision = _inferred_decision(trial, index, len(rows))
            if decision is not None:
                counts = self._decisions.setdefault(key, [0, 0, 0])
                counts[decision != TrialScheduler.STOP] += 1
                self._num_stopped += decision == TrialScheduler.STOP


# ---------------------------------------------------------------------------------------------
# From the spec



def milestones(grace_period: float, max_t: float, reduction_factor: float) -> list[float]:
    """The rung milestones (in epochs) of the single bracket the spec's schedulers use."""
    return _milestones(grace_period, max_t, reduction_factor, 0)


def build_scheduler(
    kind: str,
    *,
    max_t: int,
    grace_period: float,
    reduction_factor: float,
    metric: str = VAL_ROBUST_ACC,
    noise_z: float = 0.0,
    clock: BudgetClock | None = None,
    only_finishable: bool = False,
) -> TrialScheduler:
    """The scheduler a spec's `scheduler.kind` names. The spec has validated the settings
    (search.spec.SchedulerConfig); the classes check their own arguments with ValueError.

    Args:
        kind: "mo-asha" (Pareto rungs on `metric` max and PARAMS min), "asha" (Ray's ASHA on
            `metric`, max) or "none" (no early stopping).
        max_t: Full fidelity in epochs (the training epochs).
        grace_period: The first rung, in epochs (a fraction: a sub-epoch rung).
        reduction_factor: Keep the top 1/rf at each rung; rungs grace * rf**k.
        metric: The robust-accuracy key to judge by (the search objective's epsilon).
        noise_z: Keep trials within this many standard errors of a rung's cutoff.
        clock, only_finishable: Stop a trial that can no longer finish in the budget.
    """
    if not isinstance(kind, str) or kind not in SCHEDULERS:
        raise fail("scheduler.kind", kind, "allowed: " + ", ".join(SCHEDULERS))
    if kind == "none":
        return _FinishableFIFO(clock=clock, only_finishable=only_finishable)
    common = {"max_t": max_t, "grace_period": grace_period, "reduction_factor": reduction_factor,
              "noise_z": noise_z, "clock": clock, "only_finishable": only_finishable}
    if kind == "mo-asha":
        return MOASHAScheduler(objectives=((metric, "max"), (PARAMS, "min")), **common)
    return RecordingASHAScheduler(metric=metric, mode="max", **common)


class _FinishableFIFO(_Decisions, FIFOScheduler):
    """No early stopping, except of a trial that can no longer finish in the budget."""

    def __init__(self, *, clock: BudgetClock | None, only_finishable: bool) -> None:
        super().__init__()
        self._clock = clock
        self._only_finishable = only_finishable

    def on_trial_result(
        self, tune_controller: TuneController | None, trial: Trial, result: dict
    ) -> str:
        time = finite_number(result.get(EPOCHS_DONE))
        if time is not None and self._budget_stop(trial, result, time) is not None:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE


__all__ = [
    "DEFAULT_OBJECTIVES",
    "SCHEDULERS",
    "MOASHAScheduler",
    "RecordingASHAScheduler",
    "build_scheduler",
    "milestones",
    "noise_margin",
]
