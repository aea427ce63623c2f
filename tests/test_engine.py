"""The training engine on real images: learning, honest metrics, resume, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_trial
from trainables import metrics as M
from trainables.attacks import FGSM, FGSMRS, PGD
from trainables.checkpoint import load_best_model, restore_checkpoint, save_checkpoint
from trainables.config import TrialConfig
from trainables.engine import Trainer, TrainingDiverged, build_lr_schedule, training_attack


def _trainer(**sections: dict) -> Trainer:
    return Trainer(TrialConfig.from_dict(tiny_trial(**sections)))


def test_a_few_epochs_on_the_sample_beat_chance() -> None:
    trainer = _trainer(
        data={"train_subset": 1000, "val_size": 200},
        training={"method": "clean", "epochs": 4, "lr": 0.05, "batch_size": 50},
        threat_model={"steps": 3, "max_examples": 200},
    )
    rows = [trainer.run_epoch() for _ in range(4)]
    assert rows[-1][M.VAL_CLEAN_ACC] > 0.2  # chance is 0.1 on ten classes
    assert rows[-1][M.TRAIN_LOSS] < rows[0][M.TRAIN_LOSS]
    for row in rows:
        assert row[M.VAL_ROBUST_ACC] <= row[M.VAL_CLEAN_ACC]
        assert row[M.EPOCHS_DONE] == rows.index(row) + 1
        assert row[M.PARAMS] == 77_850 and row[M.WRN] == "WRN-10-1"
        assert row[M.TRAIN_IMAGES_PER_S] > 0


def test_metrics_row_has_every_eval_epsilon_and_the_best_epoch() -> None:
    trainer = _trainer(threat_model={"epsilons": ["8/255", "2/255"], "steps": 2})
    row = trainer.run_epoch()
    for eps in (8 / 255, 2 / 255):
        assert 0.0 <= row[M.robust_acc_key(eps)] <= row[M.VAL_CLEAN_ACC]
        assert row[M.best_robust_acc_key(eps)] == row[M.robust_acc_key(eps)]
    assert row[M.VAL_ROBUST_ACC] == row[M.robust_acc_key(8 / 255)]
    assert row[M.BEST_EPOCH] == 1 and row[M.SPLIT] == "validation"


def test_resume_from_a_checkpoint_continues_the_same_run(tmp_path) -> None:
    straight = _trainer()
    straight.run_epoch()
    final = straight.run_epoch()

    first = _trainer()
    first.run_epoch()
    save_checkpoint(first, tmp_path)
    resumed = _trainer()
    restore_checkpoint(resumed, tmp_path)
    assert resumed.epoch == 1
    again = resumed.run_epoch()

    for name, tensor in straight.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name
    for key in (M.TRAIN_LOSS, M.VAL_CLEAN_ACC, M.VAL_ROBUST_ACC, M.BEST_EPOCH, M.LR):
        assert again[key] == final[key], key


def test_best_checkpoint_holds_the_best_epoch_weights(tmp_path) -> None:
    trainer = _trainer()
    trainer.run_epoch()
    best_after_one = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.best[M.VAL_ROBUST_ACC] = 2.0  # no later epoch can beat this: epoch 1 stays best
    trainer.run_epoch()
    save_checkpoint(trainer, tmp_path)
    model, info = load_best_model(tmp_path)
    assert info["epoch"] == 1 and not model.training
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, best_after_one[name]), name


def test_a_nan_loss_stops_the_run_with_a_clear_error() -> None:
    trainer = _trainer()
    with torch.no_grad():
        trainer.model.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="training loss became nan in epoch 1"):
        trainer.run_epoch()


@pytest.mark.parametrize(("method", "kind", "alpha"), [
    ("pgd", PGD, 2.5 * (8 / 255) / 3), ("fgsm-rs", FGSMRS, 1.25 * 8 / 255), ("fgsm-mix", FGSM, 8 / 255),
])
def test_each_method_trains_with_its_attack(method: str, kind: type, alpha: float) -> None:
    trainer = _trainer(training={"method": method, "steps": 3, "epochs": 1})
    attack = training_attack(trainer.model, trainer.cfg.training, trainer.generator)
    assert isinstance(attack, kind)
    assert math.isclose(trainer.cfg.training.step_size, alpha)
    row = trainer.run_epoch()
    assert math.isfinite(row[M.TRAIN_LOSS])
    assert row[M.TRAIN_STEPS] == (3 if method == "pgd" else 1)


def test_clean_training_uses_no_attack() -> None:
    trainer = _trainer(training={"method": "clean", "epochs": 1})
    assert trainer.attack is None


@pytest.mark.parametrize("schedule", ["cosine", "piecewise", "onecycle"])
def test_lr_schedules_peak_at_lr_and_decay(schedule: str) -> None:
    cfg = TrialConfig.from_dict(tiny_trial(training={"schedule": schedule, "epochs": 4, "lr": 0.2}))
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.2)
    sched = build_lr_schedule(opt, cfg.training, steps_per_epoch=10)
    lrs = []
    for _ in range(40):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) == pytest.approx(0.2, rel=0.05)
    assert lrs[-1] < 0.2 * 0.1


@pytest.mark.gpu
def test_cuda_training_uses_bf16_channels_last_and_reports_fp32_eval() -> None:
    trainer = _trainer(training={"method": "pgd", "steps": 2, "epochs": 1}, device="cuda")
    assert trainer.device.type == "cuda" and torch.backends.cudnn.benchmark
    assert trainer.model.stem.weight.is_contiguous(memory_format=torch.channels_last)
    row = trainer.run_epoch()
    assert math.isfinite(row[M.TRAIN_LOSS])
    assert 0 <= row[M.VAL_ROBUST_ACC] <= row[M.VAL_CLEAN_ACC] <= 1
