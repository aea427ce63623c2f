"""Reading a run folder into pandas: analysis/load.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_run import EPS, ERROR_TXT, GARBAGE, MAX_EPOCHS, T0, _lines, make_run

from analysis import load_run
from models import count_parameters
from trainables import metrics, run_files


def _status(run_dir: Path) -> dict[str, str]:
    trials = load_run(run_dir).trials
    return dict(zip(trials["trial_id"], trials["status"], strict=True))


def test_load_run_statuses_fidelity_and_tolerance(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    status = dict(zip(run.trials["trial_id"], run.trials["status"], strict=True))
    assert status == {"t_a": "complete", "t_b": "complete", "t_c": "complete",
                      "t_d": "complete", "t_e": "complete", "t_s": "stopped",
                      "t_r0": "stopped", "t_x": "error", "t_run": "incomplete"}
    assert [name for name, _ in run.unreadable] == [GARBAGE]
    assert "no parsable line" in run.unreadable[0][1]
    trials = run.trials.set_index("trial_id")
    assert trials.loc["t_e", metrics.EPOCHS_DONE] == MAX_EPOCHS  # half line dropped only
    assert trials["full_fidelity"].sum() == 5
    assert trials.loc["t_x", "error"] == (
        "OOM")  # the driver's event wins over error.txt
    assert trials.loc["t_c", metrics.BEST_EPOCH] == MAX_EPOCHS - 1
    best = trials.loc["t_c", metrics.best_robust_acc_key(EPS[0])]
    assert best == pytest.approx(0.47)
    assert trials.loc["t_c", metrics.robust_acc_key(EPS[0])] == pytest.approx(0.45)  # last
    assert trials.loc["t_a", metrics.PARAMS] == count_parameters(10, 1)
    assert run.eval_epsilons == pytest.approx(list(EPS))
    assert len(run.history) == 9 * 5 + 3 + 1 + 2 + 4
    assert not run.history.duplicated(["trial_id", metrics.EPOCHS_DONE]).any()


def test_load_run_without_events_infers_status(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, events=False, state="interrupted")
    status = _status(run_dir)
    assert status["t_a"] == "complete"
    assert status["t_s"] == "incomplete"  # no event: stopped and crashed look the same
    assert status["t_x"] == "error"
    trials = load_run(run_dir).trials.set_index("trial_id")
    assert trials.loc["t_x", "error"].startswith("torch.OutOfMemoryError: CUDA out of memory")
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps({"state": "running"}))
    assert _status(run_dir)["t_run"] == "running"


def test_load_run_zero_epoch_and_restored_trials(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    # Errored before its first epoch: empty result.json, width not searched (base value).
    early = run_dir / "trial_0badc0de_wrn-16-8"
    early.mkdir()
    (early / "result.json").write_text("")
    (early / "params.json").write_text(json.dumps(
        {"depth": 16, "trial": {"model": {"depth": 28, "width": 8},
                                "training": {"epochs": MAX_EPOCHS}}}))
    (early / "error.txt").write_text(ERROR_TXT)
    # Restored from its epoch-2 checkpoint after a crash: epochs 3 and 4 were reported twice.
    restored = run_dir / "trial_0000beef_wrn-10-1"
    restored.mkdir()
    lines = _lines("0000beef", 10, 1, 4, 0.3, 0.5, T0)
    again = [dict(line, **{metrics.VAL_CLEAN_ACC: 0.11}) for line in lines[2:]]
    (restored / "result.json").write_text(
        "".join(json.dumps(x) + "\n" for x in lines + again))
    run = load_run(run_dir)
    trials = run.trials.set_index("trial_id")
    assert trials.loc["0badc0de", "status"] == "error"
    assert trials.loc["0badc0de", metrics.WRN] == "WRN-16-8"  # flat depth, base width
    assert trials.loc["0badc0de", metrics.PARAMS] == count_parameters(16, 8)
    assert trials.loc["0badc0de", metrics.EPOCHS_DONE] == 0
    assert trials.loc["0badc0de", metrics.MAX_EPOCHS] == MAX_EPOCHS
    curve = run.history[run.history["trial_id"] == "0000beef"]
    assert curve[metrics.EPOCHS_DONE].tolist() == [1, 2, 3, 4]
    assert curve[metrics.VAL_CLEAN_ACC].tolist()[2:] == [0.11, 0.11]  # the later report wins


def _folder(run_dir: Path, trial_id: str) -> Path:
    return next(run_dir.glob(f"train_wrn_{trial_id}_*"))


def _cut(folder: Path, lines: int, tail: str = "") -> list[dict]:
    """Keep the first `lines` lines of result.json (and `tail`); return every original line."""
    path = folder / run_files.RESULT_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[:lines]) + tail)
    return rows


def test_a_torn_result_json_of_a_complete_trial_is_recovered_and_flagged(tmp_path: Path) -> None:
    import csv

    import torch

    from analysis import front
    from analysis.status import status_text

    intact = load_run(make_run(tmp_path / "intact"))
    run_dir = make_run(tmp_path / "torn")
    # t_a: cut mid-line; Ray's progress.csv still holds every epoch
    rows = _cut(_folder(run_dir, "t_a"), 8, tail='{"trial_id": "t_a", "epochs_do')
    with open(_folder(run_dir, "t_a") / "progress.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, [k for k in rows[0] if k != "config"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    # t_b: cut at a line boundary, no progress.csv; the last epoch's checkpoint remains
    rows = _cut(_folder(run_dir, "t_b"), 7)
    best = {metrics.VAL_ROBUST_ACC: rows[-1][metrics.BEST_VAL_ROBUST_ACC],
            metrics.VAL_CLEAN_ACC: rows[-1][metrics.BEST_VAL_CLEAN_ACC], metrics.BEST_EPOCH: 9}
    best |= {metrics.robust_acc_key(e): rows[-1][metrics.best_robust_acc_key(e)] for e in EPS}
    (_folder(run_dir, "t_b") / "checkpoint_000002").mkdir()
    torch.save({"epoch": 9, "wall_time_s": 180.0, "best": best},
               _folder(run_dir, "t_b") / "checkpoint_000002" / run_files.STATE_FILE)
    # t_d: cut, and nothing else left but the driver's "complete" event
    _cut(_folder(run_dir, "t_d"), 8)

    run = load_run(run_dir)
    trials = run.trials.set_index("trial_id")
    assert trials["recovered_from"].dropna().to_dict() == {
        "t_a": "progress.csv", "t_b": "checkpoint", "t_d": run_files.EVENTS_FILE}
    assert (trials.loc[["t_a", "t_b", "t_d"], "status"] == "complete").all()
    assert (trials.loc[["t_a", "t_b", "t_d"], metrics.EPOCHS_DONE] == MAX_EPOCHS).all()
    expected = intact.trials.set_index("trial_id")
    for trial_id in ("t_a", "t_b"):
        for column in (metrics.BEST_VAL_ROBUST_ACC, metrics.best_robust_acc_key(EPS[1])):
            assert trials.loc[trial_id, column] == pytest.approx(expected.loc[trial_id, column])
    assert trials.loc["t_b", metrics.WALL_TIME_S] == 180.0
    assert len(run.history[run.history["trial_id"] == "t_a"]) == MAX_EPOCHS
    assert set(front(run, EPS[0]).members["trial_id"]) == set(
        front(intact, EPS[0]).members["trial_id"])
    assert "3 recovered from damaged results: t_a (progress.csv)" in status_text(run_dir)
    from analysis import write_report

    write_report(run_dir, formats=("md",))
    md = (run_dir / "report" / "report.md").read_text()
    assert "recovered (complete)" in md and "read from progress.csv" in md


def test_wrong_typed_values_are_read_as_missing_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from analysis import write_report
    from analysis.status import status_text

    run_dir = make_run(tmp_path)
    driver = run_dir / run_files.DRIVER_DIR
    state = json.loads((driver / run_files.RUN_FILE).read_text())
    state |= {"elapsed_s": "abc", "budget_s": [1], "resumes": "x", "plan": {"rungs": ["a", 1]}}
    (driver / run_files.RUN_FILE).write_text(json.dumps(state))
    spec = json.loads((driver / run_files.SPEC_JSON).read_text())
    spec |= {"threat_model": [1], "data": "cifar10", "scheduler": {"kind": 3, "noise_z": "z"}}
    (driver / run_files.SPEC_JSON).write_text(json.dumps(spec))
    folder = next(run_dir.glob("train_wrn_t_b_*"))
    rows = [json.loads(line) for line in (folder / run_files.RESULT_FILE).read_text().splitlines()]
    rows[3][metrics.EPOCHS_DONE] = "two"
    rows[4][metrics.VAL_ROBUST_ACC] = "high"
    (folder / run_files.RESULT_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))

    run = load_run(run_dir)
    assert "elapsed_s" not in run.run_state and run.run_state["plan"]["rungs"] == [1.0]
    assert "threat_model" not in run.spec  # the epsilons then come from the results
    assert run.eval_epsilons == pytest.approx(sorted(EPS))
    trials = run.trials.set_index("trial_id")
    assert trials.loc["t_b", "status"] == "complete"  # its other epochs still say so
    curve = run.history[run.history["trial_id"] == "t_b"]
    assert curve[metrics.EPOCHS_DONE].isna().sum() == 1 and curve[metrics.VAL_ROBUST_ACC].isna().sum() == 1
    text = status_text(run_dir)
    assert "budget:" not in text and "5 complete" in text  # no budget known: not shown
    write_report(run_dir, formats=("md", "csv"))
    md = (run_dir / "report" / "report.md").read_text()
    assert "Budget: unknown (run.json records no budget used)" in md
    warned = caplog.text
    for needle in ("elapsed_s = 'abc' is not a number", "threat_model = [1] is not a JSON object",
                   "epochs_done = 'two' is not a number", "noise_z = 'z' is not a number"):
        assert needle in warned, needle
