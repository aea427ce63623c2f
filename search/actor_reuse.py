"""Actor reuse that keeps `max_failures` true for a worker lost between two trials.

The search runs with `reuse_actors=True` (`search/tuner.py`): a worker that finished a trial
is handed the next one with a `reset` call instead of a new process. In Ray 2.60, a worker
that dies during that call (SIGKILL, the OOM killer, a node lost) ends the trial it was about
to run as ERROR, whatever `resources.max_failures` says. Ray's actor manager passes the one
RayActorError to two callbacks, the actor's and then the reset task's
(`ray.air.execution._internal.actor_manager`, "may trigger _two_ on_error callbacks"). The
first, `TuneController._actor_failed`, retries the pending trial, as it should. The second,
`_trial_task_failure`, counts the same death again. It finds the trial pending, so it ends
it without asking `should_recover`. The trial also stays in `_resetting_trials`. A trial that
stayed there would look like it was being handed a worker forever.

`tests/test_actor_reuse.py` reproduces it with a Trainable whose reset is slow enough to kill
it mid-call: without this module the trial errors with `max_failures=1` (a plain Ray script
does the same with 3).

The fix drops the reset task's copy of an actor death once `_actor_failed` has handled it.
It recognises it as a RayActorError for a trial whose reset is in flight and that is not
RUNNING (`_actor_failed` sets RUNNING before it retries). Any other failure goes to Ray
as before. These are private names of the TuneController; `search/versions.py` pins the
tested Ray release.
"""

from __future__ import annotations

from typing import Any

from ray.exceptions import RayActorError
from ray.tune.execution.tune_controller import TuneController
from ray.tune.experiment import Trial

_PATCHED = "_wrn_search_counts_reset_deaths_once"


def count_reset_deaths_once() -> None:
    """Patch the TuneController (once per process) so a worker lost during a reset is one
    failure, retried within `max_failures` like a worker lost mid-training."""
    if getattr(TuneController, _PATCHED, False):
        return
    ray_handles = TuneController._trial_task_failure

    def trial_task_failure(self: TuneController, trial: Trial, exception: Any) -> None:
        resetting = self._resetting_trials
        if (isinstance(exception, RayActorError) and trial in resetting
                and trial.status != Trial.RUNNING):
            resetting.discard(trial)  # handled by _actor_failed: retried, or out of retries
            return
        ray_handles(self, trial, exception)

    TuneController._trial_task_failure = trial_task_failure
    setattr(TuneController, _PATCHED, True)
