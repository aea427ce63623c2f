"""The wall-clock budget: search/budget.py (the clock across sessions, the gate, a running
trial's own estimate)."""

from __future__ import annotations

import pickle

import pytest
from conftest import tiny_trial

from search.budget import BudgetClock, BudgetGate, BudgetStopper
from search.cluster import TrialResources
from search.cost_model import CostModel
from trainables import metrics as M
from trainables import run_files
from trainables.config import TrialConfig
from trainables.cost import epoch_flops


class _Clock:
    def __init__(self, remaining: float) -> None:
        self.remaining_s, self.budget_s, self.elapsed_s = remaining, 1000.0, 1000.0 - remaining


def _gate(remaining: float, *, only_finishable: bool = True, rungs: int = 0) -> BudgetGate:
    resources = TrialResources(cpus=1, gpus=0.0, cluster_gpus=0.0, batch_size=50,
                               gpu_memory_bytes=0)
    return BudgetGate(_Clock(remaining), CostModel(1e9, reference_flops=1e10),  # type: ignore[arg-type]
                      resources=resources, sub_epoch_rungs=rungs,
                      only_finishable=only_finishable)


def test_the_gate_admits_only_what_can_finish_pessimistically() -> None:
    cfg = TrialConfig.from_dict(tiny_trial())
    need = _gate(1e9).full_seconds(cfg)
    assert need == pytest.approx(cfg.training.epochs * epoch_flops(cfg) / 1e9)
    assert _gate(1e9, rungs=2).full_seconds(cfg) > need  # sub-epoch evaluations cost too
    pessimistic = _gate(1e9).full_seconds(cfg, pessimistic=True)
    assert _gate(pessimistic * 1.01).can_finish(cfg)
    assert not _gate(need * 1.01).can_finish(cfg)  # the point estimate fits; its error does not
    assert _gate(0.0, only_finishable=False).can_finish(cfg)  # the user asked for it


def test_the_gate_learns_from_a_trials_results() -> None:
    gate = _gate(100.0)
    cfg = TrialConfig.from_dict(tiny_trial())
    gate.observe("t", cfg, {M.EPOCHS_DONE: 0.5, M.WALL_TIME_S: 3.0})
    assert gate.cost.measured == 1
    assert gate.prediction(cfg).epoch_s == pytest.approx(6.0, rel=0.2)  # the prior said 9.9
    gate.observe("u", cfg, {M.EPOCHS_DONE: 0, M.WALL_TIME_S: 3.0})  # nothing to learn yet
    assert gate.cost.measured == 1


def test_the_gate_learns_an_epoch_not_the_evaluations_of_sub_epoch_rungs() -> None:
    """At a 1/8-epoch rung the trial has trained 1 s and evaluated once (2 s): an epoch with
    its evaluation costs 8 + 2 s, not the 24 s that wall time over epochs would say."""
    gate, cfg = _gate(100.0), TrialConfig.from_dict(tiny_trial())
    gate.observe("t", cfg, {M.EPOCHS_DONE: 0.125, M.WALL_TIME_S: 3.0, M.TRAIN_TIME_S: 1.0,
                            M.EVAL_TIME_S: 2.0})
    assert gate.prediction(cfg).epoch_s == pytest.approx(10.0, rel=0.2)


def test_the_budget_clock_continues_from_run_json(tmp_path) -> None:
    (tmp_path / run_files.DRIVER_DIR).mkdir()
    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": 120.0}')
    clock = BudgetClock(str(tmp_path), 600.0)
    assert 120.0 <= clock.elapsed_s < 125.0 and 475.0 < clock.remaining_s <= 480.0
    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": "abc"}')  # damaged
    assert BudgetClock(str(tmp_path), 600.0).elapsed_s < 5.0
    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": 300.0}')
    again = pickle.loads(pickle.dumps(clock))  # a resumed search re-reads what was recorded
    assert 300.0 <= again.elapsed_s < 305.0


def test_an_unpickled_clock_and_stopper_take_the_budget_resume_raised(tmp_path) -> None:
    """Ray restores its stopper from the experiment state on resume; ours re-reads run.json,
    so `resume --budget +2h` (which rewrites budget_s there) reaches it."""
    files = run_files.RunFiles(str(tmp_path))
    files.write_json(run_files.RUN_FILE, {"budget_s": 60.0, "elapsed_s": 60.0})
    stopper = BudgetStopper(BudgetClock(str(tmp_path), 60.0))
    blob = pickle.dumps(stopper)
    assert pickle.loads(blob).stop_all()  # the budget is spent
    files.write_json(run_files.RUN_FILE, {"budget_s": 7260.0, "elapsed_s": 60.0})
    restored = pickle.loads(blob)
    assert restored.clock.budget_s == 7260.0 and not restored.stop_all()
    assert not restored("trial", {})  # single trials are the schedulers' to stop
    fresh = BudgetClock(str(tmp_path), 30.0)  # a new clock keeps the budget it is given
    assert fresh.budget_s == 30.0
