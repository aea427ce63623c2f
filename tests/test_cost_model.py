"""The cost model: FLOPs of a configuration, the throughput fit, and predictions of real trials."""

from __future__ import annotations

import math
import time

import pytest
import torch
from conftest import tiny_trial
from torch.utils.flop_counter import FlopCounterMode

from models import WideResNet, forward_flops
from search.cost_model import MIN_SPREAD, PRIOR_SPREAD, CostModel, measure_cpu_flops_per_s
from trainables import metrics as M
from trainables.config import TrialConfig
from trainables.cost import (
    epoch_flops,
    evaluation_flops,
    measured_epoch_s,
    measured_rates,
    seconds_to_finish,
    split_sizes,
    train_flops_per_image,
)
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


def test_a_trials_measured_rate_splits_training_from_evaluation() -> None:
    """At a 1/8-epoch rung: 1 s of training and one 2 s evaluation is an 8 s training epoch
    and a 2 s evaluation, not 3 s / 0.125 = 24 s an epoch."""
    row = {M.EPOCHS_DONE: 0.125, M.MAX_EPOCHS: 3, M.WALL_TIME_S: 3.0, M.TRAIN_TIME_S: 1.0,
           M.EVAL_TIME_S: 2.0}
    assert measured_rates(row) == (8.0, 2.0)
    assert measured_epoch_s(row) == 10.0
    # 2.875 epochs of training left and an evaluation after each of the 3 epochs
    assert seconds_to_finish(row) == pytest.approx(2.875 * 8 + 3 * 2)
    assert seconds_to_finish({**row, M.EPOCHS_DONE: 3}) == 0.0
    # results from before training time was reported: all of the wall time is training
    old = {M.EPOCHS_DONE: 1, M.MAX_EPOCHS: 3, M.WALL_TIME_S: 40.0}
    assert measured_epoch_s(old) == 40.0 and seconds_to_finish(old) == 80.0
    for nothing in ({**old, M.EPOCHS_DONE: 0}, {M.EPOCHS_DONE: "one"}, {M.EPOCHS_DONE: 1}):
        assert measured_epoch_s(nothing) is None and seconds_to_finish(nothing) is None


def test_a_real_trainer_reports_its_training_time_apart_from_its_evaluations() -> None:
    cfg = TrialConfig.from_dict(tiny_trial())
    trainer = Trainer(cfg)
    rung = trainer.run_until(0.5)
    end = trainer.run_until(1.0)
    assert 0 < rung[M.TRAIN_TIME_S] < end[M.TRAIN_TIME_S] < end[M.WALL_TIME_S]
    # everything of the wall time that is not training is at least the two evaluations
    assert end[M.WALL_TIME_S] - end[M.TRAIN_TIME_S] >= rung[M.EVAL_TIME_S] + end[M.EVAL_TIME_S]
    restored = Trainer(cfg)
    restored.load_state_dict(trainer.state_dict())
    assert restored.train_time_s == end[M.TRAIN_TIME_S]  # kept across restores
