"""What a run's budget bought: analysis/spend.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from fake_run import make_run, write_decisions

from analysis import load_run, write_report
from analysis.spend import cost_error, spend_table, unfinished_spend
from trainables import metrics


def test_where_the_budget_went(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    write_decisions(run_dir, [{"trial_id": "t_r0", "milestone": None, "decision": "STOP",
                          "reason": "budget"}])
    run = load_run(run_dir)
    outcome = dict(zip(run.trials["trial_id"], run.trials["outcome"], strict=True))
    assert outcome["t_a"] == "full fidelity" and outcome["t_s"] == "stopped at a rung"
    assert outcome["t_r0"] == "stopped: could not finish"
    assert outcome["t_x"] == "errored" and outcome["t_run"] == "cut short"
    table = spend_table(run).set_index("outcome")
    wall = run.trials.set_index("trial_id")[metrics.WALL_TIME_S]
    assert table.loc["stopped at a rung", "seconds"] == pytest.approx(
        wall[[t for t, o in outcome.items() if o == "stopped at a rung"]].sum())
    assert table["share"].sum() == pytest.approx(1.0)
    line = unfinished_spend(run)
    ended = wall[[t for t, o in outcome.items() if o not in ("full fidelity", "running")]].sum()
    assert f"({100 * ended / wall.sum():.0f}%)" in line
    write_report(run_dir, formats=("md",))
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Where the budget went" in md and "spend.png" in md
    assert "| stopped: could not finish |" in md


def test_cost_model_error_against_the_measured_epochs(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = load_run(run_dir)
    assert cost_error(run) is None  # nothing was predicted
    trials = run.trials.copy()
    trials[metrics.PREDICTED_EPOCH_S] = trials[metrics.ACTUAL_EPOCH_S] * np.where(
        np.arange(len(trials)) % 2 == 0, 1.2, 3.0)
    error = cost_error(dataclasses.replace(run, trials=trials))
    usable = int(trials[metrics.ACTUAL_EPOCH_S].notna().sum())
    assert error is not None and error["trials"] == usable
    assert error["within_2"] == pytest.approx(
        (np.arange(len(trials))[trials[metrics.ACTUAL_EPOCH_S].notna().to_numpy()] % 2 == 0).mean())
