"""The driver's record of a run: run.json, events.jsonl, and the live status line.

These files are what `analysis` reads besides Ray's own trial folders; they let a
report tell an early-stopped trial from a finished one and a crashed run from a
finished one, without Ray running. They go through pyarrow's filesystem layer, so a
run directory on shared storage (NFS path or object-store URI) works the same.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from ray import tune

from analysis.dominance import front_size
from search.budget import BudgetClock
from trainables import formats, run_files
from trainables import metrics as M

log = logging.getLogger(__name__)



def new_run_state(name: str, budget_s: float) -> dict[str, Any]:
    import optuna
    import ray

    return {"name": name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "budget_s": budget_s, "elapsed_s": 0.0, "state": "running", "resumes": 0,
            "ray_version": ray.__version__, "optuna_version": optuna.__version__}


class RunRecorder(tune.Callback):
    """Tune callback: appends trial events and keeps run.json's budget use current.

    Pickled with the experiment, so after `resume` it carries on; its `BudgetClock` (shared
    with the searcher and the scheduler) re-reads what the previous driver wrote and restarts
    the session clock.
    """

    def __init__(self, run_dir: str, printer: Callable[[str], None] | None = None,
                 interval_s: float = 2.0, clock: BudgetClock | None = None) -> None:
        self.run_dir = run_dir
        self.printer = printer
        self.interval_s = interval_s
        self.clock = clock if clock is not None else BudgetClock(run_dir, 0.0)
        self._reset()

    def _reset(self) -> None:
        self.files = run_files.RunFiles(self.run_dir)
        self.last_flush = 0.0
        self.last_line = ""
        self.whole_record: dict[str, Any] | None = None  # the last whole run.json seen

    def attach(self, run_dir: str, printer: Callable[[str], None] | None) -> None:
        """Point at the run folder where it is now (it may have moved) and print there."""
        self.run_dir, self.printer = run_dir, printer
        self.clock.attach(run_dir)
        self._reset()
        record, problem = self.files.run_record()
        if problem is None:
            self.whole_record = record

    def __getstate__(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "printer": None, "interval_s": self.interval_s,
                "clock": self.clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    @property
    def elapsed_s(self) -> float:
        return self.clock.elapsed_s

    @property
    def budget_s(self) -> float:
        return self.clock.budget_s

    # ---------------------------------------------------------------- events
    def _event(self, trial: Any, event: str, error: str | None = None) -> None:
        self._line(trial.trial_id, trial.last_result or {}, event, error)

    def _line(self, trial_id: str, last: dict[str, Any], event: str, error: str | None) -> None:
        line = json.dumps({
            "time": time.time(), "trial_id": trial_id, "event": event,
            "epochs_done": last.get(M.EPOCHS_DONE), "error": error,
        })
        self.files.append_line(run_files.EVENTS_FILE, line)

    def record_stopped(self, ended: dict[str, dict[str, Any]]) -> None:
        """A "complete" event for each trial Ray ended (`ended`: id -> last result) that has
        none: Ray's budget stop ends the running trials without telling the callbacks, and
        a search continued with more budget must count them as over (early-stopped), not as
        still running."""
        over = self.ended_trials()
        for trial_id, last in sorted(ended.items()):
            if trial_id not in over:
                self._line(trial_id, last, "complete", None)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event(trial, "start")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._event(trial, "complete")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = _error_line(trial)
        self._event(trial, "error", error)
        log.warning("trial %s failed: %s (traceback in its folder, %s)", trial.trial_id, error,
                    run_files.ERROR_FILE)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A failed trial Ray will retry (a worker or node lost, within max_failures)."""
        error = _error_line(trial)
        self._event(trial, "retry", error)
        log.warning("trial %s failed: %s; Ray retries it from its last checkpoint",
                    trial.trial_id, error)

    def ended_trials(self) -> set[str]:
        """Ids of the trials Ray ended for good, in any session: completed, early-stopped or
        errored (their last event). After Ctrl-C Ray marks the trials it was running
        TERMINATED as well, without telling the callbacks, so its statuses cannot tell."""
        if not self.files.exists(run_files.EVENTS_FILE):
            return set()
        good, _ = run_files.parse_json_lines(self.files.read_text(run_files.EVENTS_FILE))
        last = {str(e.get("trial_id")): e.get("event") for e in good}
        return {trial_id for trial_id, event in last.items() if event in ("complete", "error")}

    # ---------------------------------------------------------- budget, status
    def update_run_state(self, **changes: Any) -> None:
        """Rewrite run.json with the budget used and `changes`. A damaged run.json is never
        written back in part: its lost fields come from the last whole copy this recorder
        saw, and without one the file is left for `resume` to rebuild."""
        record, problem = self.files.run_record()
        if problem is not None:
            where = self.files.path(run_files.RUN_FILE)
            if self.whole_record is None:
                log.warning("%s: %s; not rewriting it (`resume` rebuilds it)", where, problem)
                return
            log.warning("%s: %s; rewriting it from the last whole copy", where, problem)
            record = {**self.whole_record, **record}
        record.update(elapsed_s=round(self.elapsed_s, 1), **changes)
        self.whole_record = record
        self.files.write_json(run_files.RUN_FILE, record)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.time()
        if now - self.last_flush < self.interval_s:
            return
        self.last_flush = now
        self.update_run_state()
        if self.printer is not None:
            line = status_line(trials, self.elapsed_s, self.budget_s)
            if line != self.last_line:
                self.last_line = line
                self.printer(line)


def _error_line(trial: Any) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    path = getattr(trial, "error_file", None)
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
        return lines[-1][:500] if lines else "unknown error"
    except (OSError, TypeError):
        return "unknown error (no error file)"



def status_line(trials: list, elapsed_s: float, budget_s: float) -> str:
    """Budget used/left, trials by state, the size of the full-fidelity front, and how much
    trial time went to trials that ended without full fidelity (their seconds buy no front)."""
    counts = {"done": 0, "running": 0, "pending": 0, "stopped": 0, "errored": 0}
    points = []
    spent = unfinished = 0.0
    for t in trials:
        last = t.last_result or {}
        wall = last.get(M.WALL_TIME_S)
        seconds = float(wall) if isinstance(wall, (int, float)) else 0.0
        spent += seconds
        if t.status == "ERROR":
            counts["errored"] += 1
            unfinished += seconds
        elif t.status == "RUNNING":
            counts["running"] += 1
        elif t.status == "PENDING":
            counts["pending"] += 1
        elif t.status == "TERMINATED":
            if last.get(M.EPOCHS_DONE, 0) >= last.get(M.MAX_EPOCHS, 1):
                counts["done"] += 1
                points.append((last[M.PARAMS], last[M.BEST_VAL_ROBUST_ACC]))
            else:
                counts["stopped"] += 1
                unfinished += seconds
    span = formats.duration
    return (f"budget {span(elapsed_s)} used, {span(budget_s - elapsed_s)} left | trials: "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f" | front: {front_size(points)}"
            + f" | no full fidelity: {span(unfinished)} of {span(spent)} trial time")
