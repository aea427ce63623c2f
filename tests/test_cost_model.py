"""The cost model: FLOPs of a configuration, the throughput fit, and predictions of real trials."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import tiny_trial
from torch.utils.flop_counter import FlopCounterMode

from models import WideResNet, forward_flops
from search.budget import BudgetClock, BudgetGate, seconds_to_finish
from search.cluster import TrialResources
from search.cost_model import MIN_SPREAD, PRIOR_SPREAD, CostModel, measure_cpu_flops_per_s
from trainables import metrics as M
from trainables import run_files
from trainables.config import TrialConfig
from trainables.cost import epoch_flops, evaluation_flops, split_sizes, train_flops_per_image
from trainables.data import load_dataset
from trainables.trainer import Trainer

# A prediction made from one measured trial of another size is trusted to this factor in the
# tests (the README states it); the fit's own error estimate is usually much tighter.
FACTOR = 3.0


@pytest.mark.parametrize("depth, width, classes", [(10, 1, 10), (16, 4, 10), (28, 10, 100)])
def test_forward_flops_match_torchs_counter(depth: int, width: int, classes: int) -> None:
    model = WideResNet(depth, width, classes).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.rand(1, 3, 32, 32))
    assert forward_flops(depth, width, classes) == counter.get_total_flops()


def test_training_flops_follow_the_method() -> None:
    base = TrialConfig.from_dict(tiny_trial())
    f = forward_flops(10, 1)

    def per_image(**training: object) -> float:
        return train_flops_per_image(TrialConfig.from_dict(tiny_trial(training=training)))

    assert per_image(method="pgd", steps=1) == 5 * f
    assert per_image(method="pgd", steps=10) == 23 * f  # 3F update + 10 x 2F attack steps
    assert per_image(method="fgsm-rs") == 5 * f
    assert per_image(method="fgsm-mix") == 8 * f
    assert per_image(method="clean") == 3 * f
    assert split_sizes(base.data) == (150, 50)
    assert epoch_flops(base) > evaluation_flops(base) > 0


def test_the_prior_predicts_linear_scaling_until_something_is_measured() -> None:
    cost = CostModel(1e9, reference_flops=1e10)
    p = cost.predict(2e10)
    assert p.epoch_s == pytest.approx(20.0)
    assert p.error_factor == pytest.approx(math.exp(PRIOR_SPREAD))
    assert cost.predict(2e10, units=2).epoch_s == pytest.approx(10.0)  # two CPUs, half the time
    assert cost.measured == 0 and cost.version == 0


def test_measurements_move_the_fit_and_its_error() -> None:
    cost = CostModel(1e9, reference_flops=1e10)  # a prior 4x too optimistic
    cost.observe("a", 1e10, 1, 40.0)
    cost.observe("b", 4e10, 1, 160.0)
    assert cost.measured == 2 and cost.version == 2
    assert cost.predict(2e10).epoch_s == pytest.approx(80.0, rel=0.3)
    cost.observe("a", 1e10, 1, 40.0)  # the latest rate replaces a trial's earlier one
    assert cost.measured == 2
    for i, flops in enumerate((1e9, 3e9, 1e10, 3e10, 1e11)):
        cost.observe(f"t{i}", flops, 1, flops / 2.5e8)
    assert cost.predict(5e10).epoch_s == pytest.approx(200.0, rel=0.05)
    assert math.log(cost.predict(5e10).error_factor) == pytest.approx(MIN_SPREAD, abs=0.1)
    cost.observe("bad", 1e10, 1, float("nan"))  # ignored
    cost.observe("zero", 0, 1, 1.0)
    assert cost.measured == 7


def test_the_cpu_probe_measures_a_plausible_speed() -> None:
    flops = measure_cpu_flops_per_s(threads=1, repeats=1)
    assert 1e8 < flops < 1e13  # from a slow laptop core to a server's vector units
    assert torch.get_num_threads() == 1  # the caller's thread count is restored


def _measured_epoch_s(cfg: TrialConfig, data: object) -> float:
    trainer = Trainer(cfg, data)
    start = time.perf_counter()
    trainer.run_epoch()
    return time.perf_counter() - start


def test_predictions_of_real_tiny_trials_hold_within_the_stated_factor() -> None:
    """Calibrate on one real trial, predict two others of different size and attack cost."""
    calibrate = TrialConfig.from_dict(tiny_trial(training={"steps": 1}))
    others = [TrialConfig.from_dict(tiny_trial(model={"depth": 16, "width": 2},
                                               training={"steps": 2})),
              TrialConfig.from_dict(tiny_trial(model={"depth": 10, "width": 3},
                                               training={"steps": 4}))]
    data = load_dataset(calibrate.data)
    _measured_epoch_s(calibrate, data)  # warm up: first use of each kernel is slow
    cost = CostModel(30e9, reference_flops=epoch_flops(calibrate))
    cost.observe("calibration", epoch_flops(calibrate), 1, _measured_epoch_s(calibrate, data))
    for cfg in others:
        predicted = cost.predict(epoch_flops(cfg)).epoch_s
        measured = _measured_epoch_s(cfg, data)
        assert 1 / FACTOR < measured / predicted < FACTOR, (cfg.model, predicted, measured)


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


def test_a_running_trials_own_estimate_of_what_it_still_needs() -> None:
    row = {M.EPOCHS_DONE: 1, M.MAX_EPOCHS: 3, M.WALL_TIME_S: 40.0}
    assert seconds_to_finish(row) == 80.0
    assert seconds_to_finish({**row, M.EPOCHS_DONE: 3}) == 0.0
    assert seconds_to_finish({**row, M.EPOCHS_DONE: 0}) is None
    assert seconds_to_finish({M.EPOCHS_DONE: "one"}) is None


def test_the_budget_clock_continues_from_run_json(tmp_path) -> None:
    (tmp_path / run_files.DRIVER_DIR).mkdir()
    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": 120.0}')
    clock = BudgetClock(str(tmp_path), 600.0)
    assert 120.0 <= clock.elapsed_s < 125.0 and 475.0 < clock.remaining_s <= 480.0
    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": "abc"}')  # damaged
    assert BudgetClock(str(tmp_path), 600.0).elapsed_s < 5.0
    import pickle

    (tmp_path / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"elapsed_s": 300.0}')
    again = pickle.loads(pickle.dumps(clock))  # a resumed search re-reads what was recorded
    assert 300.0 <= again.elapsed_s < 305.0
