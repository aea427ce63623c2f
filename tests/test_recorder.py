"""The driver's record of a run: events.jsonl, run.json and the status line (search/recorder.py),
driven by calling the Tune callback's hooks directly on real (stub) Ray trials."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

from ray.tune.experiment import Trial

from search.budget import BudgetClock
from search.recorder import RunRecorder, new_run_state, status_line
from trainables import metrics as M
from trainables import run_files


def _trial(status: str, epochs: float | None = None, max_epochs: int = 3, params: int = 1000,
           acc: float = 0.3, wall: float = 10.0) -> Trial:
    trial = Trial("__fake", stub=True)
    trial.set_status(status)
    if epochs is not None:
        trial.run_metadata.last_result = {M.EPOCHS_DONE: epochs, M.MAX_EPOCHS: max_epochs,
                                          M.PARAMS: params, M.BEST_VAL_ROBUST_ACC: acc,
                                          M.WALL_TIME_S: wall}
    return trial


def _recorder(run_dir: Path, budget_s: float = 600.0) -> RunRecorder:
    (run_dir / run_files.DRIVER_DIR).mkdir(parents=True, exist_ok=True)
    run_files.RunFiles(str(run_dir)).write_json(run_files.RUN_FILE, new_run_state("demo", budget_s))
    return RunRecorder(str(run_dir), clock=BudgetClock(str(run_dir), budget_s), interval_s=0.0)


def _events(run_dir: Path) -> list[dict]:
    text = (run_dir / run_files.DRIVER_DIR / run_files.EVENTS_FILE).read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_every_trial_event_is_appended_with_its_epochs(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    started, done = _trial("RUNNING"), _trial("TERMINATED", epochs=3)
    recorder.on_trial_start(0, [], started)
    recorder.on_trial_complete(1, [], done)
    failed = _trial("ERROR", epochs=1)
    failed.run_metadata.error_filename = None
    recorder.on_trial_error(2, [], failed)
    events = _events(tmp_path)
    assert [e["event"] for e in events] == ["start", "complete", "error"]
    assert [e["trial_id"] for e in events] == [started.trial_id, done.trial_id, failed.trial_id]
    assert events[1]["epochs_done"] == 3 and events[0]["epochs_done"] is None
    assert events[2]["error"].startswith("unknown error")


def test_run_json_keeps_its_fields_and_tracks_the_budget_used(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    recorder.update_run_state(state="finished")
    state = json.loads((tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["name"] == "demo" and state["budget_s"] == 600.0 and state["created"]
    assert state["state"] == "finished" and 0.0 <= state["elapsed_s"] < 5.0


def test_a_resumed_recorder_continues_the_budget_and_prints_only_changes(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    run_file = tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE
    run_file.write_text(json.dumps({**json.loads(run_file.read_text()), "elapsed_s": 200.0}))
    again = pickle.loads(pickle.dumps(recorder))  # what Tuner.restore does with the callback
    lines: list[str] = []
    again.attach(str(tmp_path), lines.append)
    assert 200.0 <= again.elapsed_s < 205.0
    trials = [_trial("RUNNING", epochs=1)]
    again.on_step_end(0, trials)
    again.on_step_end(1, trials)  # nothing changed: nothing printed
    assert len(lines) == 1 and "trials: 0 done, 1 running" in lines[0]


def test_status_line_counts_trials_and_the_unfinished_spend() -> None:
    trials = [_trial("TERMINATED", epochs=3, params=1000, acc=0.3, wall=30.0),
              _trial("TERMINATED", epochs=3, params=1000, acc=0.3, wall=30.0),  # a twin
              _trial("TERMINATED", epochs=3, params=4000, acc=0.2, wall=60.0),  # dominated
              _trial("TERMINATED", epochs=1, wall=10.0),  # stopped at a rung
              _trial("ERROR", epochs=1, wall=5.0),
              _trial("RUNNING", epochs=2, wall=20.0), _trial("PENDING")]
    line = status_line(trials, elapsed_s=125.0, budget_s=600.0)
    assert "trials: 3 done, 1 running, 1 pending, 1 stopped, 1 errored" in line
    assert "front: 2" in line  # twins count each, as in `wrn-search status`
    assert "no full fidelity: 0m15s of 2m35s trial time" in line


def test_a_damaged_run_json_is_rewritten_whole_or_not_at_all(tmp_path: Path) -> None:
    recorder = _recorder(tmp_path)
    run_file = tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE
    recorder.attach(str(tmp_path), None)  # sees the whole record
    run_file.write_text('{"name": "demo", "budget_s": 600.0, "elap')  # torn
    recorder.update_run_state(state="interrupted")
    state = json.loads(run_file.read_text())
    assert state["name"] == "demo" and state["budget_s"] == 600.0 and state["created"]
    assert state["state"] == "interrupted" and state["ray_version"]
    run_file.write_text(json.dumps({**state, "budget_s": "abc", "resumes": 3}))  # wrong type
    recorder.update_run_state()
    state = json.loads(run_file.read_text())
    assert state["budget_s"] == 600.0 and state["resumes"] == 3  # the rest as read now

    fresh = RunRecorder(str(tmp_path), clock=BudgetClock(str(tmp_path), 600.0))
    run_file.write_text("{}")  # damaged before this recorder saw a whole record
    fresh.update_run_state(state="finished")
    assert run_file.read_text() == "{}"  # not written back in part; `resume` rebuilds it
