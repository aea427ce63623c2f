"""Plain ASHA on one metric (Ray's), with the project's rung record, noise allowance, budget
stop and restore, so the report can set it beside MO-ASHA on equal terms."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from search.budget import BudgetClock
from search.rungs import (
    MODES,
    Decisions,
    check_schedule,
    inferred_decision,
    noise_margin,
    result_history,
    rungs_text,
)
from trainables.metrics import EPOCHS_DONE, PARAMS, VAL_EXAMPLES, VAL_ROBUST_ACC
from trainables.run_files import finite_number

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Plain ASHA with the same public record


class RecordingASHAScheduler(Decisions, AsyncHyperBandScheduler):
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
        check_schedule(max_t, grace_period, reduction_factor, brackets)
        if mode not in MODES:
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
        return f"Using ASHA on {self._metric}: num_stopped={self._num_stopped}\n" + rungs_text(
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
        rows = result_history(trial)
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
            decision = inferred_decision(trial, index, len(rows))
            if decision is not None:
                counts = self._decisions.setdefault(key, [0, 0, 0])
                counts[decision != TrialScheduler.STOP] += 1
                self._num_stopped += decision == TrialScheduler.STOP


