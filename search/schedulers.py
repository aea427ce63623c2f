"""The schedulers a spec can name, built from it.

Plain ASHA ranks a rung by one number, so on robust accuracy it stops the small models first,
and those are the left end of the accuracy-per-parameter front this search exists to find:
`mo-asha` (`search.mo_asha`) promotes by Pareto rank instead; `asha` (`search.asha`) is Ray's
ASHA with the same record; `none` stops nothing early.

All of them (a) stop a trial that can no longer reach full fidelity in the budget left, from
its own rate so far (its seconds would buy no front); the two ASHAs also (b) keep a trial
whose score is within validation noise of the cutoff: it is stopped only if it would still be
stopped with its accuracy raised by `noise_z` standard errors of a difference of two
accuracies measured on `val_examples` images each (binomial), so a rung is not a coin toss;
and (c) write every decision, with its reason, to the run's `wrn-search/rungs.jsonl`, which
the report reads (`search.rungs`). Rungs may start at a fraction of an epoch
(`grace_period` < 1): trials then evaluate and report there too, so an expensive trial is
judged before it spends a whole epoch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from search.asha import RecordingASHAScheduler
from search.budget import BudgetClock
from search.mo_asha import MOASHAScheduler
from search.rungs import DEFAULT_OBJECTIVES, Decisions, bracket_milestones, noise_margin
from search.spec import SCHEDULERS
from trainables.config import fail
from trainables.metrics import EPOCHS_DONE, PARAMS, VAL_ROBUST_ACC
from trainables.run_files import finite_number

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController



def milestones(grace_period: float, max_t: float, reduction_factor: float) -> list[float]:
    """The rung milestones (in epochs) of the single bracket the spec's schedulers use."""
    return bracket_milestones(grace_period, max_t, reduction_factor, 0)


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


class _FinishableFIFO(Decisions, FIFOScheduler):
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
