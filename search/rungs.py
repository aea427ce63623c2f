"""What both schedulers share: rung milestones, the noise margin, the budget stop and the
decision record, argument checks, and rebuilding rungs from result.json on restore.

Resuming: Ray 2.60's `Tuner.restore` unpickles the scheduler from `tuner.pkl`, which is
written when the Tuner is built, so it comes back with empty rungs. The controller never
calls `save`/`restore` on a scheduler. It re-adds every trial through `on_trial_add`, so both
schedulers rebuild their rungs there from each restored trial's `result.json` (with
`result_history` and `inferred_decision` here). A scheduler re-created from the spec is
rebuilt the same way.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.result import EXPR_RESULT_FILE
from ray.tune.schedulers import TrialScheduler

from search.budget import BudgetClock
from trainables import run_files
from trainables.cost import seconds_to_finish
from trainables.metrics import EPOCHS_DONE, PARAMS, VAL_ROBUST_ACC, WALL_TIME_S
from trainables.run_files import finite_number

if TYPE_CHECKING:
    pass

logger = logging.getLogger(__name__)

MODES = ("max", "min")
DEFAULT_OBJECTIVES: tuple[tuple[str, str], ...] = ((VAL_ROBUST_ACC, "max"), (PARAMS, "min"))


# ---------------------------------------------------------------------------------------------
# Small pure helpers: numbers, milestones, Pareto ranks



def bracket_milestones(
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


class Decisions:
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
        rest = seconds_to_finish(result)
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



def rungs_text(summary: list[dict[str, Any]], time_attr: str) -> str:
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


def check_schedule(max_t: Any, grace_period: Any, reduction_factor: Any, brackets: Any) -> None:
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


def check_objectives(objectives: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    checked: list[tuple[str, str]] = []
    for pair in objectives:
        if len(pair) != 2 or not isinstance(pair[0], str) or pair[1] not in MODES:
            raise ValueError(
                f"objectives entries must be (metric, 'max' | 'min'), but got {tuple(pair)!r}"
            )
        checked.append((pair[0], pair[1]))
    if not checked:
        raise ValueError("objectives must name at least one (metric, mode) pair, but got none")
    return tuple(checked)


# ---------------------------------------------------------------------------------------------
# Restored trials


def read_result_rows(trial: Trial) -> list[dict[str, Any]]:
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


def result_history(trial: Trial) -> list[dict[str, Any]]:
    """What a restored trial reported before the restart; nothing for a trial that never did."""
    last = dict(trial.run_metadata.last_result or {})
    if len(last) <= 1:  # nothing, or only the trial_id Ray fills in
        return []
    return read_result_rows(trial) or [last]


def inferred_decision(trial: Trial, row_index: int, n_rows: int) -> str | None:
    """What a replayed rung decision must have been: a later result means it continued;
    a finished trial whose last result is the rung's was stopped; otherwise unknown."""
    if row_index < n_rows - 1:
        return TrialScheduler.CONTINUE
    if trial.is_finished():
        return TrialScheduler.STOP
    return None


