"""A trial's cost: what one epoch computes, in FLOPs (the configuration side of the cost
model), and the seconds a running trial has measured (the side it is fitted to).

The search predicts a trial's seconds before it starts (`search.cost_model`) as this work
divided by a throughput it measures on the cluster. Only ratios between configurations
need to be right here: the throughput fit absorbs constant factors and overheads.

Accounting, per image, with F the model's forward FLOPs (`models.forward_flops`):
- a weight update is 3F (forward, backward to activations and to weights);
- an attack step is 2F: forward and backward to the input only, because attacks run with
  the parameters frozen (`trainables.attacks.attack_mode`);
- PGD-k training costs 3F + 2kF; FGSM-RS and fgsm-mix one step (fgsm-mix updates on the
  clean and the adversarial batch, 6F); clean training 3F;
- the validation evaluation predicts the clean images (F), then, per eval epsilon, predicts
  again (F) and attacks the clean-correct ones (about half early in training) with
  `restarts` x (`steps` x 2F + F).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from models import forward_flops
from trainables import metrics as M
from trainables.config import DataConfig, TrialConfig
from trainables.run_files import finite_number

# Images in each dataset's training split (before data.train_subset and the validation cut).
TRAIN_SPLIT_SIZES: dict[str, int] = {
    "cifar10": 50_000,
    "cifar10-sample": 2_000,
    "cifar100": 50_000,
    "svhn": 73_257,
}
_ATTACKED_SHARE = 0.5  # clean-correct share of validation images that the attack runs on


def split_sizes(data: DataConfig) -> tuple[int, int]:
    """(training, validation) images of a trial, as `trainables.data` will split them."""
    pool = TRAIN_SPLIT_SIZES[data.dataset]
    if data.train_subset is not None:
        pool = min(pool, data.train_subset)
    val = data.val_size if isinstance(data.val_size, int) else round(data.val_size * pool)
    val = min(max(val, 0), pool)
    return pool - val, val


def train_flops_per_image(cfg: TrialConfig) -> float:
    """Training FLOPs per image of one epoch, attack included."""
    t = cfg.training
    forward = forward_flops(cfg.model.depth, cfg.model.width, cfg.data.num_classes)
    if t.method == "clean" or t.eps == 0:
        return 3.0 * forward
    if t.method == "pgd":
        return (3.0 + 2.0 * t.steps) * forward
    if t.method == "fgsm-mix":
        return 8.0 * forward  # one attack step, then an update on clean + adversarial
    return 5.0 * forward  # fgsm-rs


def evaluation_flops(cfg: TrialConfig) -> float:
    """FLOPs of one validation evaluation (clean accuracy and PGD at every eval epsilon)."""
    tm = cfg.threat_model
    forward = forward_flops(cfg.model.depth, cfg.model.width, cfg.data.num_classes)
    _, n_val = split_sizes(cfg.data)
    n = n_val if tm.max_examples is None else min(n_val, tm.max_examples)
    attack = _ATTACKED_SHARE * tm.restarts * (2.0 * tm.steps + 1.0)
    return n * forward * (1.0 + len(tm.epsilons) * (1.0 + attack))


def training_flops(cfg: TrialConfig) -> float:
    """FLOPs of one epoch of training (whole batches only: the loader drops the last one)."""
    n_train, _ = split_sizes(cfg.data)
    batches = n_train // cfg.training.batch_size
    return batches * cfg.training.batch_size * train_flops_per_image(cfg)


def epoch_flops(cfg: TrialConfig) -> float:
    """One epoch of training and the evaluation that follows it."""
    return training_flops(cfg) + evaluation_flops(cfg)


def trial_flops(cfg: TrialConfig, extra_evaluations: int = 0) -> float:
    """A whole trial: every epoch, plus evaluations at sub-epoch rungs."""
    return cfg.training.epochs * epoch_flops(cfg) + extra_evaluations * evaluation_flops(cfg)


# --------------------------------------------------------------------------- measured


def measured_rates(result: Mapping[str, Any]) -> tuple[float, float] | None:
    """(training seconds per epoch, seconds per evaluation) a trial has measured so far, from
    one of its results; None before it has trained.

    Wall time over epochs would count every evaluation as training: a trial judged at a
    1/8-epoch rung has evaluated once after an eighth of an epoch, so its evaluation would be
    counted eight times over per epoch. Results from before training time was reported have
    no split: their wall time counts as training.
    """
    done = finite_number(result.get(M.EPOCHS_DONE))
    if done is None or done <= 0:
        return None
    train, evaluation = finite_number(result.get(M.TRAIN_TIME_S)), finite_number(result.get(M.EVAL_TIME_S))
    if train is not None and evaluation is not None:
        return train / done, evaluation
    wall = finite_number(result.get(M.WALL_TIME_S))
    return None if wall is None else (wall / done, 0.0)


def measured_epoch_s(result: Mapping[str, Any]) -> float | None:
    """Measured seconds per epoch in the cost model's unit: an epoch of training and the
    evaluation after it (`epoch_flops`)."""
    rates = measured_rates(result)
    return None if rates is None else sum(rates)


def seconds_to_finish(result: Mapping[str, Any]) -> float | None:
    """A running trial's own estimate of the seconds it still needs: the training left at its
    rate so far, and an evaluation after each epoch left (sub-epoch rungs still ahead are
    not counted, so the estimate errs low: a budget stop on it stops only what cannot
    finish). None when it has not reported enough to tell."""
    done, total = finite_number(result.get(M.EPOCHS_DONE)), finite_number(result.get(M.MAX_EPOCHS))
    rates = measured_rates(result)
    if done is None or total is None or rates is None:
        return None
    if done >= total:
        return 0.0
    train_s, evaluation_s = rates
    return (total - done) * train_s + (total - math.floor(done)) * evaluation_s
