"""Real searches through search/tuner.py: Ray, Optuna and PyTorch training on the bundled
CIFAR-10 sample.

Tiny WRNs and tiny data keep each search to tens of seconds on two cores. The first test is
the fast suite's one real search end to end; the others are marked `slow` (`pytest -m slow`).
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import psutil
import pytest
import ray
import torch
from ray.tune import Result

from analysis import front, load_run
from analysis.spend import cost_error
from search.budget import BudgetClock, BudgetGate
from search.cluster import TrialResources
from search.cost_model import CostModel
from search.proposer import Space
from search.recorder import RunRecorder, new_run_state
from search.searchers import DefineByRunSpace
from search.spec import ExperimentSpec
from search.tuner import (
    _finish,
    end_state,
    first_rung,
    load_run_spec,
    resume_search,
    run_search,
)
from trainables import metrics as M
from trainables import run_files
from trainables.config import ConfigError
from trainables.trainer import Trainer
from trainables.tune_trial import train_wrn

ROOT = Path(__file__).resolve().parents[1]


def tiny_spec(root: Path, **changes: Any) -> dict[str, Any]:
    """A grid of 4 tiny trials (WRN-10-1/2 x PGD-1/2), 2 epochs each, on 200 sample images."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "data": {"dataset": "cifar10-sample", "train_subset": 200, "val_size": 50},
        "threat_model": {"epsilons": ["8/255", "4/255"], "steps": 2, "batch_size": 50},
        "space": {"depth": [10], "width": [1, 2], "train_eps": "8/255", "train_steps": [1, 2]},
        "training": {"epochs": 2, "batch_size": 50, "lr": 0.05},
        "budget": {"time": "5m", "max_trials": 4, "max_concurrent": 2},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "scheduler": {"kind": "none"},
        "searcher": {"kind": "grid", "seed": 0},
        # every epoch, so a killed trial continues mid-run (the default, 1m, outlasts these trials)
        "storage": {"path": str(root), "checkpoint_interval": 0},
    }
    for key, value in changes.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    return raw


def nan_for_wide_two_step(config: dict[str, Any]) -> None:
    """The real trainable; WRN-10-2 with PGD-2 gets NaN weights in this worker: a real divergence."""
    if config[M.WIDTH] == 2 and config[M.TRAIN_STEPS] == 2:
        train_until = Trainer.train_until

        def poisoned(self: Trainer, fraction: float) -> dict:
            with torch.no_grad():
                self.model.fc.weight.fill_(float("nan"))
            return train_until(self, fraction)

        Trainer.train_until = poisoned  # undone below: workers are reused across trials
        try:
            train_wrn(config)
        finally:
            Trainer.train_until = train_until
        return
    train_wrn(config)


@pytest.fixture
def local_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _results(run_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for trial in sorted(run_dir.glob("trial_*")):
        lines = (trial / "result.json").read_text().splitlines() if (trial / "result.json").exists() else []
        out[trial.name] = [json.loads(line) for line in lines if line.strip()]
    return out


def interrupt_mid_training(driver: subprocess.Popen, run_dir: Path, *, trials: int,
                           epochs: int) -> tuple[str, str]:
    """Ctrl-C a `wrn-search run` driver once `trials` trials have each reported an epoch
    and none has finished its `epochs`; its output, after it ended with status 130."""
    deadline = time.time() + 240
    while time.time() < deadline:
        rows = _results(run_dir)
        if len(rows) == trials and all(r and r[-1][M.EPOCHS_DONE] < epochs for r in rows.values()):
            break
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        time.sleep(0.2)
    else:
        pytest.fail(f"the {trials} trials did not all report in time")
    driver.send_signal(signal.SIGINT)
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == 130, err[-3000:]
    return out, err


def _events(run_dir: Path) -> list[dict]:
    path = run_dir / run_files.DRIVER_DIR / run_files.EVENTS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_search_records_every_trial_and_survives_a_diverging_one(tmp_path: Path, local_ray) -> None:
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, resources={"max_failures": 2},
                                              storage={"checkpoint_interval": "1m"}))
    outcome = run_search(spec, trainable=nan_for_wide_two_step)
    run_dir = tmp_path / "tiny"
    assert outcome.state == "finished" and outcome.trials == 4 and outcome.errored == 1
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["state"] == "finished" and state["elapsed_s"] < spec.budget.time
    # The study, in the run folder's journal (tests/test_study_journal.py: what reads it)
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(
        str(run_dir / state["optuna"]["storage"])))
    study = optuna.load_study(study_name=state["optuna"]["study"], storage=journal)
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE"] * 3 + ["FAIL"]

    results = _results(run_dir)
    assert len(results) == 4
    finished = {name: rows for name, rows in results.items() if rows}
    assert len(finished) == 3  # the diverged trial never reported
    for rows in finished.values():
        assert [r[M.EPOCHS_DONE] for r in rows] == [1, 2]
        # epochs take seconds, the interval a minute: one checkpoint, after the last epoch
        assert [r["checkpoint_dir_name"] is not None for r in rows] == [False, True]
        last = rows[-1]
        assert last[M.PARAMS] in (77_850, 303_706) and last[M.MAX_EPOCHS] == 2
        assert 0 <= last[M.BEST_VAL_ROBUST_ACC] <= 1 and last[M.SPLIT] == "validation"
        assert last[M.robust_acc_key(4 / 255)] >= 0
        assert (Path(run_dir) / next(n for n in results if results[n] is rows)).exists()
    errors = [e for e in _events(run_dir) if e["event"] == "error"]
    assert len(errors) == 1 and "TrainingDiverged" in errors[0]["error"]
    assert "training loss became nan" in errors[0]["error"]
    assert "not retried" in errors[0]["error"]  # the retry stopped at once
    assert len([e for e in _events(run_dir) if e["event"] == "complete"]) == 3
    # every finished trial has a checkpoint with the last state and the best weights
    for name in finished:
        checkpoints = sorted((run_dir / name).glob("checkpoint_*"))
        assert len(checkpoints) == 1
        assert {p.name for p in checkpoints[0].iterdir()} >= {"state.pt", "best_model.pt"}
        assert list((run_dir / name).glob("events.out.tfevents.*"))  # TensorBoard

    # the report, from the real run's files alone
    from analysis.load import load_run
    from analysis.report import write_report

    frame = load_run(run_dir).trials
    assert frame[M.DIVERGED].tolist().count(True) == 1  # from the trainable's marker file
    assert frame.loc[frame[M.DIVERGED], "status"].tolist() == ["error"]

    files = {p.name for p in write_report(run_dir)}
    assert {"report.html", "report.md", "trials.csv", "front.csv"} <= files
    trials = (run_dir / "report" / "trials.csv").read_text()
    assert trials.count("\n") == 5 and "error" in trials  # header + 4 trials
    status = subprocess.run([sys.executable, "-m", "search.cli", "status", str(run_dir)],
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert status.returncode == 0 and "3 complete, 0 stopped, 1 error" in status.stdout
    assert f"optuna-dashboard {run_dir / state['optuna']['storage']}" in status.stdout


class _Grid(list):
    """A ResultGrid's part that `_finish` reads: its Results and how many errored."""

    @property
    def num_errors(self) -> int:
        return sum(r.error is not None for r in self)


class _StoppedTuner:
    """What `_finish` sees of a Tuner: its recorder, no searcher, and the ResultGrid that
    `fit` returned (here a list of real Ray `Result`s)."""

    def __init__(self, recorder: RunRecorder, results: list[Result]) -> None:
        config = SimpleNamespace(callbacks=[recorder])
        self._local_tuner = SimpleNamespace(get_run_config=lambda: config,
                                            _tune_config=SimpleNamespace(search_alg=None))
        self.results = results

    def fit(self) -> _Grid:
        return _Grid(self.results)


def _result(trial_id: str, epochs: float, max_epochs: int = 5, width: int = 1) -> Result:
    config = {M.DEPTH: 10, M.WIDTH: width, M.TRAIN_STEPS: 1, M.TRAIN_EPS: 8 / 255}
    return Result(metrics={"trial_id": trial_id, M.EPOCHS_DONE: epochs, M.MAX_EPOCHS: max_epochs,
                           "config": config}, checkpoint=None, error=None, path="")


def _stopped_run(tmp_path: Path, results: list[Result], events: list[tuple[str, str]]) -> str:
    """How `_finish` records a search whose `fit` returned `results`, with `events` (trial id,
    event) already in events.jsonl."""
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, budget={"max_trials": 2},
                                              training={"epochs": 5}))
    run_dir = tmp_path / "tiny"
    files = run_files.RunFiles(str(run_dir))
    files.write_json(run_files.RUN_FILE, new_run_state("tiny", spec.budget.time))
    for trial_id, event in events:
        files.append_line(run_files.EVENTS_FILE, json.dumps({"trial_id": trial_id, "event": event}))
    recorder = RunRecorder(str(run_dir), clock=BudgetClock(str(run_dir), spec.budget.time))
    outcome = _finish(_StoppedTuner(recorder, results), spec, str(run_dir))
    assert json.loads(files.read_text(run_files.RUN_FILE))["state"] == outcome.state
    return outcome.state


def test_ctrl_c_after_every_trial_started_is_an_interruption(tmp_path: Path) -> None:
    """The issue's case: max_trials = 2, both running at epoch 1 of 5 when Ctrl-C lands (Ray
    then marks them TERMINATED, and each has metrics): not finished, `resume` continues it."""
    cut = [_result("a", 1), _result("b", 1, width=2)]
    assert _stopped_run(tmp_path, cut, [("a", "start"), ("b", "start")]) == "interrupted"


@pytest.mark.parametrize(("epochs", "events", "state"), [
    ((5, 5), [], "finished"),  # both trained every epoch
    ((5, 2), [("b", "complete")], "finished"),  # b stopped at a rung by the scheduler
    ((5, 1), [("b", "error")], "finished"),  # b errored
    ((5, 2), [("b", "start"), ("b", "complete"), ("b", "start")], "interrupted"),  # b again
    ((5, 2), [("a", "complete")], "interrupted"),  # only a ended; b was cut short
])
def test_a_search_is_finished_only_when_every_trial_is_terminal(
        tmp_path: Path, epochs: tuple[int, int], events: list[tuple[str, str]], state: str) -> None:
    results = [_result("a", epochs[0]), _result("b", epochs[1], width=2)]
    assert _stopped_run(tmp_path, results, events) == state


def test_end_state_budget_and_searcher() -> None:
    assert end_state(budget_spent=True, searcher_ended=None, all_over=False,
                     search_done=False) == "budget_exhausted"
    assert end_state(budget_spent=False, searcher_ended="budget", all_over=True,
                     search_done=False) == "budget_exhausted"
    # the searcher found nothing that fits, but a trial was still training at Ctrl-C
    assert end_state(budget_spent=False, searcher_ended="budget", all_over=False,
                     search_done=False) == "interrupted"
    assert end_state(budget_spent=False, searcher_ended="space", all_over=True,
                     search_done=True) == "finished"


class _RayStarted(Exception):
    """Raised in place of starting Ray: the resume got past its checks."""


def _damaged_run(tmp_path: Path, epochs: tuple[int, int]) -> Path:
    """A search of two trials (9 epochs each) that trained `epochs`, whose run.json was cut
    off mid-write; max_trials = 2, so it is finished when both trained every epoch."""
    from fake_run import _lines

    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, budget={"max_trials": 2}))
    run_dir = tmp_path / "tiny"
    files = run_files.RunFiles(str(run_dir))
    files.write_json(run_files.SPEC_JSON, spec.to_json())
    (run_dir / run_files.TUNER_FILE).write_bytes(b"")
    start = 1_790_000_000.0
    for k, (width, done) in enumerate(zip((1, 2), epochs, strict=True)):
        folder = run_dir / f"trial_t{k}_wrn-10-{width}"
        folder.mkdir()
        (folder / run_files.PARAMS_FILE).write_text(json.dumps({M.DEPTH: 10, M.WIDTH: width}))
        lines = [{**line, "time_this_iter_s": 10.0 * width}
                 for line in _lines(f"t{k}", 10, width, done, 0.3, 0.5, start)]
        (folder / run_files.RESULT_FILE).write_text("".join(json.dumps(x) + "\n" for x in lines))
        files.append_line(run_files.EVENTS_FILE, json.dumps(
            {"time": start, "trial_id": f"t{k}", "event": "start"}))
        if done == 9:
            files.append_line(run_files.EVENTS_FILE, json.dumps(
                {"time": lines[-1]["timestamp"], "trial_id": f"t{k}", "event": "complete"}))
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"name": "tiny", "budg')
    return run_dir


def _resume_until_ray(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ray(address: Any, **_: Any) -> Any:
        raise _RayStarted

    monkeypatch.setattr("search.tuner.start_ray", no_ray)
    resume_search(str(run_dir))


def test_a_damaged_run_json_of_a_finished_search_still_refuses_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _damaged_run(tmp_path, (9, 9))
    with pytest.raises(ConfigError, match="already finished"):
        _resume_until_ray(run_dir, monkeypatch)


def test_a_damaged_run_json_is_rebuilt_not_written_back_in_part(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _damaged_run(tmp_path, (9, 4))
    monkeypatch.setattr("search.tuner.start_ray", lambda address, **_: [{"CPU": 2.0}])

    def no_restore(*args: Any, **kwargs: Any) -> Any:
        raise _RayStarted

    monkeypatch.setattr("ray.tune.Tuner.restore", no_restore)
    with pytest.raises(_RayStarted):
        resume_search(str(run_dir))
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["name"] == "tiny" and state["budget_s"] == 300.0
    assert state["created"] == "2026-09-21T14:13:20+00:00"  # the first trial's start
    assert state["elapsed_s"] == 90.0  # t0 trained 9 x 10 s while t1 trained 4 x 20 s
    assert state["state"] == "running" and state["resumes"] == 1
    assert state["rebuilt"] == ["budget_s", "created", "elapsed_s", "name", "resumes", "state"]


@pytest.mark.parametrize("damage", ["truncated", "empty", "wrong types"])
def test_a_damaged_spec_json_is_rebuilt_from_spec_toml_and_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    """Found by the fault matrix: resume refused a run whose spec.json was damaged, though the
    spec as written (spec.toml) and the run's own name, folder and budget were all there."""
    import faults

    run_dir = _damaged_run(tmp_path, (9, 4))
    raw = tiny_spec(tmp_path, budget={"max_trials": 2})
    driver = run_dir / run_files.DRIVER_DIR
    (driver / run_files.SPEC_TOML).write_text(_toml({**raw, "name": "other",
                                                     "budget": {"time": "1m", "max_trials": 2}}))
    (driver / run_files.RUN_FILE).write_text(json.dumps({"name": "tiny", "budget_s": 300.0,
                                                         "state": "interrupted"}))
    faults.damage(driver / run_files.SPEC_JSON, damage)
    spec = load_run_spec(str(run_dir))
    assert spec.name == "tiny" and spec.budget.time == 300.0  # the run's, not spec.toml's
    assert Path(spec.storage.path) == tmp_path and spec.budget.max_trials == 2
    assert json.loads((driver / run_files.SPEC_JSON).read_text()) == spec.to_json()
    (driver / run_files.SPEC_TOML).write_text("not = [toml")
    faults.damage(driver / run_files.SPEC_JSON, damage)
    with pytest.raises(ConfigError, match=r"spec.json is damaged .* no readable spec.toml"):
        load_run_spec(str(run_dir))


@pytest.mark.slow
def test_ctrl_c_with_every_trial_running_exits_130_and_resumes(tmp_path: Path) -> None:
    """The real case: both trials of max_trials = 2 at epoch 1 of 5, then SIGINT."""
    spec_path = tmp_path / "tiny.toml"
    raw = tiny_spec(tmp_path, budget={"time": "5m", "max_trials": 2, "max_concurrent": 2},
                    training={"epochs": 5}, space={"width": [1, 2], "train_steps": 1})
    spec_path.write_text(_toml(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec_path)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "tiny"
    out, err = interrupt_mid_training(driver, run_dir, trials=2, epochs=5)
    assert "search interrupted" in out and "search finished" not in out
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["state"] == "interrupted"
    assert "PARTIAL RUN" in (run_dir / "report" / "report.md").read_text()
    resumed = subprocess.run([sys.executable, "-m", "search.cli", "resume", str(run_dir),
                              "--no-report"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "search finished: 2 trials" in resumed.stdout
    assert all(rows[-1][M.EPOCHS_DONE] == 5 for rows in _results(run_dir).values())


@pytest.mark.slow
def test_the_wall_clock_budget_ends_the_search_and_keeps_results(tmp_path: Path, local_ray) -> None:
    raw = tiny_spec(tmp_path, budget={"time": "45s", "max_trials": 100, "max_concurrent": 2},
                    searcher={"kind": "random", "seed": 3},
                    space={"width": {"low": 1, "high": 3}, "train_steps": {"low": 1, "high": 3},
                           "train_eps": {"low": "2/255", "high": "8/255"}},  # unbounded
                    training={"epochs": 3})
    started = time.time()
    outcome = run_search(ExperimentSpec.from_dict(raw))
    assert outcome.state == "budget_exhausted"
    assert outcome.trials < 100
    assert time.time() - started < 45 + 90  # ends promptly once the budget is spent
    results = _results(tmp_path / "tiny")
    assert any(rows for rows in results.values())


@pytest.mark.slow
def test_a_used_up_finite_space_ends_the_search_without_repeats(tmp_path: Path, local_ray) -> None:
    raw = tiny_spec(tmp_path, budget={"time": "5m", "max_trials": 50, "max_concurrent": 2},
                    searcher={"kind": "tpe", "seed": 0, "n_startup_trials": 1},
                    training={"epochs": 1}, space={"train_steps": 1})
    outcome = run_search(ExperimentSpec.from_dict(raw))
    assert outcome.state == "finished" and outcome.trials == 2  # WRN-10-1 and WRN-10-2, once each
    widths = sorted(json.loads((tmp_path / "tiny" / name / "params.json").read_text())[M.WIDTH]
                    for name in _results(tmp_path / "tiny"))
    assert widths == [1, 2]


@pytest.mark.slow
def test_an_expensive_first_draw_is_not_started_and_the_budget_buys_a_front(
        tmp_path: Path, local_ray) -> None:
    """The issue's failure: the first draw takes the whole budget. Here the random sampler's
    first draw (seed 1) is WRN-28-8, about two minutes an epoch on a CPU core, in a 90-second
    budget; the search must not start it, and must spend the minute on models that finish."""
    space = {"depth": [10, 28], "width": [1, 8], "train_eps": "8/255", "train_steps": [1, 2]}
    raw = tiny_spec(tmp_path, space=space, searcher={"kind": "random", "seed": 1},
                    budget={"time": "90s", "max_trials": 50, "max_concurrent": 2},
                    scheduler={"kind": "mo-asha", "grace_period": "auto"})
    spec = ExperimentSpec.from_dict(raw)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1),
                                directions=["maximize", "minimize"])
    first = study.ask()
    DefineByRunSpace(spec.space)(first)
    assert (first.params["depth"], first.params["width"]) == (28, 8)  # deliberately expensive
    outcome = run_search(spec)
    assert outcome.state in ("budget_exhausted", "finished")
    run = load_run(tmp_path / "tiny")
    started = run.trials
    assert not ((started[M.DEPTH] == 28) & (started[M.WIDTH] == 8)).any()
    assert len(run.full_fidelity) >= 3
    # Models of several sizes to draw the front from. The front itself may be one model: on
    # 150 images and 2 epochs a small WRN is often as robust as any, and dominates the rest.
    assert run.full_fidelity[M.PARAMS].nunique() >= 2, run.full_fidelity[M.WRN].tolist()
    assert len(front(run, 8 / 255).members) >= 1
    # The cost model knew what it was starting: predicted vs measured seconds per epoch.
    error = cost_error(run)
    assert error is not None and error["median_factor"] <= 2.0, error


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.slow
def test_killed_driver_then_resume_finishes_without_rerunning(tmp_path: Path) -> None:
    spec_path = tmp_path / "tiny.toml"
    raw = tiny_spec(tmp_path, budget={"time": "5m", "max_trials": 4, "max_concurrent": 1})
    spec_path.write_text(_toml(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec_path), "--no-report"],
                              cwd=tmp_path, env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "tiny"
    deadline = time.time() + 240
    while time.time() < deadline:
        done = [e for e in _events(run_dir) if e["event"] == "complete"]
        if len(done) >= 1:
            break
        assert driver.poll() is None, "the driver ended before it could be killed"
        time.sleep(0.5)
    else:
        pytest.fail("no trial finished in time")
    time.sleep(3)  # let the next trial get under way, so the kill lands mid-trial
    finished_before = {e["trial_id"] for e in _events(run_dir) if e["event"] == "complete"}
    before = _results(run_dir)
    victims = [driver, *_descendants(driver.pid)]
    os.killpg(driver.pid, signal.SIGKILL)
    for proc in victims:  # Ray's own processes, wherever their session is
        try:
            proc.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    driver.wait(timeout=30)
    assert json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())["state"] == "running"

    resumed = subprocess.run([sys.executable, "-m", "search.cli", "resume", str(run_dir), "--no-report"],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "search finished: 4 trials" in resumed.stdout
    after = _results(run_dir)
    assert len(after) == 4
    for name, rows in after.items():
        assert [r[M.EPOCHS_DONE] for r in rows] == [1, 2], name
    for name, rows in before.items():  # finished trials: untouched, not rerun
        if rows and rows[-1]["trial_id"] in finished_before:
            assert after[name] == rows
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["state"] == "finished" and state["resumes"] == 1


def _toml(raw: dict[str, Any]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return json.dumps(v)

    lines = [f"name = {json.dumps(raw['name'])}"]
    for section, table in raw.items():
        if isinstance(table, dict):
            lines.append(f"[{section}]")
            lines += [f"{k} = {value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_two_node_cluster_runs_trials_on_both_and_retries_after_node_loss(tmp_path: Path,
                                                                          monkeypatch) -> None:
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    raw = tiny_spec(tmp_path, training={"epochs": 4},
                    resources={"cpus_per_trial": 1, "max_failures": 3})
    run_dir = tmp_path / "tiny"
    removed: list[str] = []

    def remove_worker_mid_trial() -> None:
        deadline = time.time() + 240
        while time.time() < deadline and not removed:
            for rows in _results(run_dir).values():
                if rows and rows[-1].get(M.NODE_ID) == worker.node_id and rows[-1][M.EPOCHS_DONE] < 4:
                    cluster.remove_node(worker)
                    removed.append(rows[-1]["trial_id"])
                    return
            time.sleep(0.2)

    remover = threading.Thread(target=remove_worker_mid_trial, daemon=True)
    try:
        remover.start()
        outcome = run_search(ExperimentSpec.from_dict(raw), address=cluster.address)
        remover.join(timeout=5)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert removed, "no trial ran on the worker node"
    assert outcome.trials == 4 and outcome.errored == 0
    results = _results(run_dir)
    nodes = {row[M.NODE_ID] for rows in results.values() for row in rows}
    assert worker.node_id in nodes and len(nodes) == 2
    moved = next(rows for rows in results.values() if rows and rows[0]["trial_id"] == removed[0])
    assert moved[-1][M.EPOCHS_DONE] == 4
    assert {r[M.NODE_ID] for r in moved} == nodes  # finished on the head node
    # continued from its checkpoint, not from scratch
    assert any(r["iterations_since_restore"] < r["training_iteration"] for r in moved)


SECRET = "PASSWORD"  # the database password a spec may hold: never shown, never stored


def test_a_database_password_never_reaches_the_run_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run writes spec.json, spec.toml and tuner.pkl (the searcher pickled) with the password
    masked; Ray itself is not needed for that, so it is stood in for."""
    import search.searchers as searchers
    import search.tuner as tuner
    from search.tuner import Outcome

    url = f"postgresql://user:{SECRET}@db.example/optuna"
    monkeypatch.setattr(searchers, "_storage", lambda url: None)  # no PostgreSQL here
    monkeypatch.setattr(tuner, "start_ray", lambda address, **_: [{"CPU": 2.0}])
    monkeypatch.setattr(tuner, "_finish", lambda t, spec, run_dir: Outcome(run_dir, "x", 0, 0, 0))
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, storage={"optuna_url": url}))
    text = f'name = "tiny"\n[storage]\noptuna_url = "{url}"\n'
    outcome = tuner.run_search(spec, spec_text=text)
    files = [p for p in Path(outcome.run_dir).rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"spec.json", "spec.toml", "tuner.pkl"}
    for path in files:
        assert SECRET.encode() not in path.read_bytes(), path
    stored = json.loads((Path(outcome.run_dir) / "wrn-search" / "spec.json").read_text())
    assert stored["storage"]["optuna_url"] == "postgresql://user:***@db.example/optuna"
    assert "user:***@db.example" in (Path(outcome.run_dir) / "wrn-search" / "spec.toml").read_text()


def test_an_env_optuna_url_is_pickled_as_written_and_resolved_on_restore(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    from search.searchers import build_searcher
    from trainables.config import ConfigError

    resolved = f"sqlite:///{tmp_path}/{SECRET}.db"
    monkeypatch.setenv("WRN_OPTUNA_URL", resolved)
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, storage={"optuna_url": "env:WRN_OPTUNA_URL"}))
    assert spec.to_json()["storage"]["optuna_url"] == "env:WRN_OPTUNA_URL"
    searcher = build_searcher(spec)
    blob = pickle.dumps(searcher)  # what tuner.pkl and searcher-state-*.pkl hold
    assert SECRET.encode() not in blob and b"env:WRN_OPTUNA_URL" in blob
    path = tmp_path / "searcher-state.pkl"
    searcher.save(str(path))
    assert SECRET.encode() not in path.read_bytes()
    restored = pickle.loads(blob)  # resume: the URL comes from the environment again
    assert restored._storage.url == resolved
    monkeypatch.delenv("WRN_OPTUNA_URL")
    with pytest.raises(ConfigError) as err:
        pickle.loads(blob)
    assert str(err.value).startswith("storage.optuna_url: 'env:WRN_OPTUNA_URL' is not allowed; "
                                     "the environment variable WRN_OPTUNA_URL is not set")


def _params(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each trial folder's searched configuration (params.json), by folder name; a trial the
    budget's end stopped before it started has a folder but no params.json."""
    return {d.name: json.loads((d / "params.json").read_text()) for d in sorted(run_dir.glob("trial_*"))
            if (d / "params.json").exists()}


_SEARCHED = (M.DEPTH, M.WIDTH, M.TRAIN_EPS, M.TRAIN_STEPS)


def _key(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(params.get(k) for k in _SEARCHED)


def test_resume_max_trials_extends_a_finished_search_with_its_searcher_state(
        tmp_path: Path, local_ray) -> None:
    """`resume --max-trials +2` on a search that finished at its trial cap: two more trials
    run, the old ones are untouched, and the new ones are not the old ones again (a fresh
    random sampler with the same seed would draw exactly the old configurations first)."""
    raw = tiny_spec(tmp_path, budget={"max_trials": 2, "max_concurrent": 2},
                    searcher={"kind": "random", "seed": 0}, training={"epochs": 1},
                    space={"width": [1, 2], "train_eps": ["2/255", "4/255", "8/255"],
                           "train_steps": [1, 2]})
    first = run_search(ExperimentSpec.from_dict(raw))
    run_dir = tmp_path / "tiny"
    assert first.state == "finished" and first.trials == 2
    before, params_before = _results(run_dir), _params(run_dir)
    with pytest.raises(ConfigError, match="--max-trials"):  # a plain resume says how to extend
        resume_search(str(run_dir))

    outcome = resume_search(str(run_dir), max_trials="+2")
    assert outcome.state == "finished" and outcome.trials == 4 and outcome.errored == 0
    after, params_after = _results(run_dir), _params(run_dir)
    assert len(after) == 4 and all(rows for rows in after.values())
    for name, rows in before.items():  # same trial ids, same results
        assert after[name] == rows
    new = [_key(p) for name, p in params_after.items() if name not in params_before]
    old = [_key(p) for p in params_before.values()]
    assert len(new) == 2 and not set(new) & set(old) and len(set(new)) == 2
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["state"] == "finished" and state["resumes"] == 1 and state["max_trials"] == 4
    [extension] = state["extensions"]
    assert extension["max_trials"] == "+2" and extension["max_trials_after"] == 4
    assert extension["state_before"] == "finished"
    assert load_run_spec(str(run_dir)).budget.max_trials == 4  # a later plain resume keeps it


@pytest.mark.slow
def test_resume_budget_extends_a_budget_exhausted_search(tmp_path: Path) -> None:
    """`wrn-search resume RUN --budget +60s` on a search that spent its budget: more trials
    run in the new budget, the old ones are kept as they were, none repeats an old one, and
    run.json, spec.json and `status` carry the new budget."""
    spec_path = tmp_path / "tiny.toml"
    raw = tiny_spec(tmp_path, budget={"time": "25s", "max_trials": 100, "max_concurrent": 2},
                    searcher={"kind": "random", "seed": 0}, training={"epochs": 1},
                    # 60 configurations: more than 25 s trains, two at a time, on any CPU
                    space={"width": [1, 2, 3], "train_eps": [f"{e}/255" for e in range(1, 11)],
                           "train_steps": [1, 2]})
    spec_path.write_text(_toml(raw))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=400)

    first = cli("run", str(spec_path), "--no-report")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "search budget exhausted" in first.stdout
    run_dir = tmp_path / "tiny"
    before, params_before = _results(run_dir), _params(run_dir)
    assert before
    refused = cli("resume", str(run_dir), "--max-trials", "+5")  # no budget: no room
    assert refused.returncode == 2 and "its budget is spent" in refused.stderr

    resumed = cli("resume", str(run_dir), "--budget", "+60s", "--no-report")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after, params_after = _results(run_dir), _params(run_dir)
    assert len(after) > len(before) and len(params_after) > len(params_before)
    for name, rows in before.items():
        assert after[name] == rows
    old = {_key(p) for p in params_before.values()}
    new = [_key(p) for name, p in params_after.items() if name not in params_before]
    assert not set(new) & old and len(set(new)) == len(new)
    state = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())
    assert state["budget_s"] == 85.0 and state["extensions"][0]["budget_s_before"] == 25.0
    assert state["state"] in ("budget_exhausted", "finished")
    assert load_run_spec(str(run_dir)).budget.time == 85.0
    status = cli("status", str(run_dir))
    assert status.returncode == 0 and "of 1m25s" in status.stdout


def test_a_checkpoint_ray_deleted_before_its_state_was_saved_is_mended(tmp_path: Path) -> None:
    """A driver killed between Ray's deleting a trial's old checkpoint and saving its state:
    the state names the deleted folder; resume copies the newer one under that name."""
    from search.tuner import mend_missing_checkpoints

    trial = tmp_path / "trial_e327be0a_wrn-10-2"
    (trial / "checkpoint_000001").mkdir(parents=True)
    (trial / "checkpoint_000001" / "state.pt").write_bytes(b"newer")
    (tmp_path / "trial_c96d8884_wrn-10-1" / "checkpoint_000002").mkdir(parents=True)
    saved = {t: pickle.dumps({"path": f"/old/place/{t}/{c}"}).hex()
             for t, c in (("trial_e327be0a_wrn-10-2", "checkpoint_000000"),
                          ("trial_c96d8884_wrn-10-1", "checkpoint_000002"))}
    state = {"trial_data": [[json.dumps({"trial_id": t}),
                             json.dumps({"checkpoint_manager": {"value": v}})]
                            for t, v in saved.items()]}
    (tmp_path / "experiment_state-2026-12-02_12-53-02.json").write_text(json.dumps(state))
    assert mend_missing_checkpoints(str(tmp_path)) == ["trial_e327be0a_wrn-10-2/checkpoint_000000"]
    assert (trial / "checkpoint_000000" / "state.pt").read_bytes() == b"newer"
    assert mend_missing_checkpoints(str(tmp_path)) == []  # nothing left to mend
    (tmp_path / "experiment_state-2026-12-02_12-53-02.json").write_text("{damaged")
    assert mend_missing_checkpoints(str(tmp_path)) == []  # Ray's restore speaks for its file


def _first_rung_of(root: Path, widths: list[int], budget_s: float, **budget: Any) -> float:
    """The "auto" first rung of a WRN-10 space, under a fixed cost model (1 GFLOP/s)."""
    spec = ExperimentSpec.from_dict(tiny_spec(
        root, space={"width": widths, "train_steps": [1]}, budget={"time": budget_s, **budget},
        scheduler={"kind": "mo-asha", "grace_period": "auto"}))
    clock = SimpleNamespace(budget_s=budget_s, remaining_s=budget_s, elapsed_s=0.0)
    resources = TrialResources(cpus=1, gpus=0.0, cluster_gpus=0.0, batch_size=50,
                               gpu_memory_bytes=0)
    gate = BudgetGate(clock, CostModel(1e9, reference_flops=1e10), resources=resources,  # type: ignore[arg-type]
                      only_finishable=spec.budget.only_finishable)
    return first_rung(spec, gate, Space(spec.space, spec.base_trial()))


def test_the_auto_first_rung_is_sized_by_the_priciest_trial_that_could_start(
        tmp_path: Path) -> None:
    """WRN-10-1's epoch is 4% of the budget: a first rung of one epoch. Adding WRN-10-8, about
    fifty times its cost and unable to finish in the budget, must not cut everyone's first
    rung to 1/8 epoch, unless the user lets any trial start."""
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, space={"width": [1], "train_steps": [1]}))
    (wrn_10_1,) = Space(spec.space, spec.base_trial()).pool(0)
    epoch_s = wrn_10_1.flops / 1e9  # the fixed model's linear prior: seconds = FLOPs / 1e9
    budget = 25 * epoch_s
    assert _first_rung_of(tmp_path, [1], budget) == 1.0
    assert _first_rung_of(tmp_path, [1, 8], budget) == 1.0
    assert _first_rung_of(tmp_path, [1, 8], budget, only_finishable=False) == 0.125
    assert _first_rung_of(tmp_path, [1], 4 * epoch_s) == 0.125  # 1/8 at the least
    spec = ExperimentSpec.from_dict(tiny_spec(tmp_path, scheduler={"kind": "mo-asha",
                                                                  "grace_period": 2}))
    assert first_rung(spec, None, None) == 2.0  # type: ignore[arg-type]  # the spec's own
