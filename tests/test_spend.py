"""What a run's budget bought: analysis/spend.py."""

from __future__ import annotations

import dataclasses
import json
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


def test_the_report_shows_how_far_the_cost_model_was_off(tmp_path: Path) -> None:
    """Trials that report their training time apart from their evaluations, each predicted
    at twice its measured seconds per epoch (an epoch of training and one evaluation)."""
    run_dir = make_run(tmp_path)
    for path in run_dir.glob("*/result.json"):
        lines = []
        for text in path.read_text().splitlines():
            try:
                row = json.loads(text)
            except ValueError:  # the damaged lines stay as they are
                lines.append(text)
                continue
            epoch_s = row[metrics.WALL_TIME_S] / row[metrics.EPOCHS_DONE]
            row[metrics.TRAIN_TIME_S] = 0.8 * row[metrics.WALL_TIME_S]
            row[metrics.PREDICTED_EPOCH_S] = 2 * (0.8 * epoch_s + row[metrics.EVAL_TIME_S])
            lines.append(json.dumps(row))
        path.write_text("\n".join(lines) + "\n")
    run = load_run(run_dir)
    measured = run.trials.dropna(subset=[metrics.ACTUAL_EPOCH_S])
    assert len(measured) >= 5
    assert measured[metrics.ACTUAL_EPOCH_S].to_numpy() == pytest.approx(
        (measured[metrics.PREDICTED_EPOCH_S] / 2).to_numpy())
    write_report(run_dir, formats=("md",))
    md = (run_dir / "report" / "report.md").read_text()
    assert f"Over {len(measured)} trials the measured time was within a median factor of 2.00" in md
    assert "0% within 1.5x, 100% within 2x" in md and "cost_model.png" in md
