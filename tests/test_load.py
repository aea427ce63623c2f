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
