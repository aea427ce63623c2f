"""The training engine on real images: learning, honest metrics, resume, divergence."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import EXACT_FLOAT32, tf32_state, tiny_trial

from trainables import metrics as M
from trainables.attacks import FGSM, FGSMRS, PGD, predict, robust_correct
from trainables.config import TrialConfig
from trainables.trainer import Trainer, TrainingDiverged, build_lr_schedule


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
        assert row[M.EPOCHS_DONE] == rows.index(row) + 1
        assert row[M.PARAMS] == 77_850 and row[M.WRN] == "WRN-10-1"
        assert row[M.TRAIN_IMAGES_PER_S] > 0


def test_metrics_row_has_every_eval_epsilon_and_the_best_epoch() -> None:
    trainer = _trainer(threat_model={"epsilons": ["8/255", "2/255"], "steps": 2})
    row = trainer.run_epoch()
    for eps in (8 / 255, 2 / 255):
        assert row[M.best_robust_acc_key(eps)] == row[M.robust_acc_key(eps)]
    assert row[M.VAL_ROBUST_ACC] == row[M.robust_acc_key(8 / 255)]
    assert row[M.BEST_EPOCH] == 1 and row[M.SPLIT] == "validation"


def test_a_nan_loss_stops_the_run_with_a_clear_error() -> None:
    trainer = _trainer()
    with torch.no_grad():
        trainer.model.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match="training loss became nan in epoch 1"):
        trainer.run_epoch()


def test_validation_figures_are_the_threat_models_pgd_on_the_validation_split() -> None:
    trainer = _trainer(threat_model={"epsilons": ["8/255", "2/255"], "steps": 3, "restarts": 2})
    trainer.run_epoch()
    state = trainer.generator.get_state()
    row = trainer.evaluate()
    trainer.generator.set_state(state)  # replay the same random starts by hand
    tm, model = trainer.cfg.threat_model, trainer.net
    clean = predict(model, trainer.val_x) == trainer.val_y
    assert row[M.VAL_CLEAN_ACC] == clean.float().mean().item()
    for eps in (8 / 255, 2 / 255):
        attack = PGD(model, eps, steps=3, restarts=2, generator=trainer.generator)
        assert attack.freeze_fooled  # the first adversarial iterate counts (Rice et al.)
        robust = robust_correct(model, attack, trainer.val_x, trainer.val_y, tm.batch_size)
        assert row[M.robust_acc_key(eps)] == robust.float().mean().item()
    assert row[M.robust_acc_key(8 / 255)] < row[M.VAL_CLEAN_ACC]


@pytest.mark.parametrize(("method", "kind", "alpha", "random_start"), [
    ("pgd", PGD, 2.5 * (8 / 255) / 3, True), ("fgsm-rs", FGSMRS, 1.25 * 8 / 255, True),
    ("fgsm-mix", FGSM, 8 / 255, False),
])
def test_each_method_trains_with_its_attack(method: str, kind: type, alpha: float,
                                            random_start: bool) -> None:
    trainer = _trainer(training={"method": method, "steps": 3, "epochs": 1})
    attack = trainer.attack  # the attack the trainer really uses, not the config's numbers
    assert type(attack) is kind and attack.model is trainer.net
    assert math.isclose(attack.eps, 8 / 255) and math.isclose(attack.alpha, alpha)
    assert (attack.steps, attack.restarts) == ((3, 1) if method == "pgd" else (1, 1))
    assert attack.random_start is random_start
    assert attack.freeze_fooled is False  # Madry et al.: training attacks keep ascending
    assert attack.generator is (None if kind is FGSM else trainer.generator)
    row = trainer.run_epoch()
    assert math.isfinite(row[M.TRAIN_LOSS])
    assert row[M.TRAIN_STEPS] == (3 if method == "pgd" else 1)


def _mix_losses(mix_weight: float) -> tuple[float, float, float]:
    """(reported training loss, clean-half loss, adversarial-half loss) of one fgsm-mix step.

    One batch per epoch; the training forward pass (train mode) is recorded with a hook,
    and its rows are told apart by comparing inputs with the attack's own inputs/outputs.
    """
    trainer = _trainer(data={"train_subset": 200, "val_size": 50},
                       training={"method": "fgsm-mix", "mix_weight": mix_weight,
                                 "batch_size": 150, "epochs": 1})
    assert len(trainer.train_loader) == 1
    attacked: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    perturb = trainer.attack.perturb

    def recording_perturb(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = perturb(x, y)
        attacked.append((x.clone(), y.clone(), x_adv.clone()))
        return x_adv

    trainer.attack.perturb = recording_perturb
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    trainer.net.register_forward_hook(
        lambda m, args, out: seen.append((args[0].detach(), out.detach())) if m.training else None)
    loss = trainer.train_epoch()[M.TRAIN_LOSS]
    [(x, y, x_adv)] = attacked
    inputs = torch.cat([i for i, _ in seen]).flatten(1)
    logits = torch.cat([o for _, o in seen])

    def rows_of(images: torch.Tensor) -> torch.Tensor:
        rows = []
        for image in images.flatten(1):
            (row,) = (inputs == image).all(dim=1).nonzero()[:, 0].tolist()  # exactly one
            rows.append(row)
        return logits[rows]

    clean = torch.nn.functional.cross_entropy(rows_of(x), y).item()
    adversarial = torch.nn.functional.cross_entropy(rows_of(x_adv), y).item()
    return loss, clean, adversarial


def test_fgsm_mix_weight_one_is_the_clean_loss_and_zero_the_adversarial_loss() -> None:
    loss, clean, adversarial = _mix_losses(1.0)
    assert math.isclose(loss, clean, rel_tol=1e-5) and not math.isclose(clean, adversarial, rel_tol=1e-3)
    loss, clean, adversarial = _mix_losses(0.0)
    assert math.isclose(loss, adversarial, rel_tol=1e-5)
    assert not math.isclose(clean, adversarial, rel_tol=1e-3)
    loss, clean, adversarial = _mix_losses(0.25)
    assert math.isclose(loss, 0.25 * clean + 0.75 * adversarial, rel_tol=1e-5)


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
    seen: list[tuple[torch.dtype, tuple[object, ...]]] = []

    def record(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> None:
        seen.append((out.dtype, tf32_state()))

    row = trainer.run_epoch()
    assert math.isfinite(row[M.TRAIN_LOSS])
    handle = trainer.net.register_forward_hook(record)
    trainer.evaluate()
    handle.remove()
    assert seen and set(seen) == {(torch.float32, EXACT_FLOAT32)}  # fp32, and no TF32


# --- sub-epoch rungs -------------------------------------------------------------------------


def test_evaluating_mid_epoch_leaves_training_unchanged() -> None:
    """A trial judged at a sub-epoch rung trains exactly as one that is not."""
    cfg = TrialConfig.from_dict(tiny_trial(training={"epochs": 2}))
    plain, judged = Trainer(cfg), Trainer(cfg)
    plain_rows = [plain.run_epoch(), plain.run_epoch()]
    early = judged.run_until(0.4)
    assert 0 < early[M.EPOCHS_DONE] < 1 and judged.epoch == 0
    assert early[M.VAL_EXAMPLES] == 50
    rows = [judged.run_until(1), judged.run_until(2)]
    assert [r[M.EPOCHS_DONE] for r in rows] == [1, 2]
    for a, b in zip(plain_rows, rows, strict=True):
        assert a[M.TRAIN_LOSS] == b[M.TRAIN_LOSS]  # the whole epoch's loss, both parts counted
        assert a[M.VAL_ROBUST_ACC] == b[M.VAL_ROBUST_ACC]
    for name, tensor in plain.model.state_dict().items():
        assert torch.equal(tensor, judged.model.state_dict()[name]), name


def test_state_is_saved_between_epochs_only_and_run_until_checks_its_target() -> None:
    trainer = Trainer(TrialConfig.from_dict(tiny_trial()))
    trainer.run_until(0.5)
    with pytest.raises(RuntimeError, match="between epochs"):
        trainer.state_dict()
    with pytest.raises(ValueError, match="epochs must lie in"):
        trainer.run_until(1.5)
    trainer.run_until(1)
    assert trainer.state_dict()["epoch"] == 1
