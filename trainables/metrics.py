"""Every metric key, one spelling shared by every writer and reader, and nothing else.

`trainables` writes the validation keys into every result and the test keys into every
evaluation record; `search` (schedulers, searchers, the status line) and `analysis`
(fronts, the report) read them. File names live in `trainables.run_files`, display forms
in `trainables.formats`.
"""

from __future__ import annotations

import math

from trainables import formats

EPOCHS_DONE = "epochs_done"  # epochs trained so far (a fraction at a sub-epoch rung): the fidelity
MAX_EPOCHS = "max_epochs"  # the full fidelity this trial was configured for
PARAMS = "params"  # exact trainable-parameter count
WRN = "wrn"  # "WRN-d-k"

TRAIN_LOSS = "train_loss"  # mean loss on the (adversarial) training batches
TRAIN_ACC = "train_acc"  # accuracy on the inputs the model was trained on
LR = "lr"  # learning rate at the end of the epoch

VAL_CLEAN_ACC = "val_clean_acc"  # clean accuracy on the validation split
VAL_ROBUST_ACC = "val_robust_acc"  # robust accuracy at the first eval epsilon: the objective
BEST_VAL_ROBUST_ACC = "best_val_robust_acc"  # best VAL_ROBUST_ACC over the epochs so far
BEST_EPOCH = "best_epoch"  # epoch of BEST_VAL_ROBUST_ACC (its checkpoint is kept)

VAL_EXAMPLES = "val_examples"  # validation images attacked per evaluation: the n of its noise

EPOCH_TIME_S = "epoch_time_s"  # wall time of the training part of the epoch
EVAL_TIME_S = "eval_time_s"  # wall time of the validation attacks
WALL_TIME_S = "wall_time_s"  # wall time since the trial started (across restores)
TRAIN_TIME_S = "train_time_s"  # the training part of WALL_TIME_S (evaluations left out)
TRAIN_IMAGES_PER_S = "train_images_per_s"  # training throughput (attack included)

DIVERGED = "diverged"  # the loss went NaN/inf; the trial stopped itself
# The searcher's prediction of the trial's seconds per epoch (training and one evaluation),
# made before it started; analysis sets it beside the measured one (`trainables.cost`).
PREDICTED_EPOCH_S = "predicted_epoch_s"
ACTUAL_EPOCH_S = "actual_epoch_s"  # analysis's column of the measured one

ROBUST_PREFIX = "val_robust_acc_eps_"  # + eps_key(eps): validation robust accuracy at eps


def eps_key(eps: float) -> str:
    """Metric-safe form of an epsilon ('8_255' or '0.0314'): no '/' (Ray nests on it)."""
    return formats.eps_label(eps).replace("/", "_")


def robust_acc_key(eps: float) -> str:
    """The key of validation robust accuracy at one eval epsilon."""
    return f"{ROBUST_PREFIX}{eps_key(eps)}"


def best_robust_acc_key(eps: float) -> str:
    """The key of the best-checkpoint's validation robust accuracy at one eval epsilon."""
    return f"best_{robust_acc_key(eps)}"


def parse_eps_key(key: str) -> float:
    """Inverse of `eps_key` (for readers that find keys in a results file)."""
    if "_" in key:
        num, den = key.split("_", 1)
        return float(num) / float(den)
    value = float(key)
    if not math.isfinite(value):
        raise ValueError(f"not an epsilon key: {key!r}")
    return value


def robust_acc_eps(key: str) -> float | None:
    """The epsilon of a `robust_acc_key`, or None for any other key."""
    if not key.startswith(ROBUST_PREFIX):
        return None
    try:
        return parse_eps_key(key[len(ROBUST_PREFIX):])
    except ValueError:
        return None


# Hyperparameters every result carries, so readers never need the Tune config.
DEPTH = "depth"
WIDTH = "width"
METHOD = "method"
TRAIN_EPS = "train_eps"
TRAIN_STEPS = "train_steps"
PEAK_LR = "peak_lr"
WEIGHT_DECAY = "weight_decay"
HYPERPARAMETERS = (DEPTH, WIDTH, METHOD, TRAIN_EPS, TRAIN_STEPS, PEAK_LR, WEIGHT_DECAY)

BEST_VAL_CLEAN_ACC = "best_val_clean_acc"  # clean accuracy of the best-robust epoch
GPU_SHARE = "gpu_share"  # fraction of one GPU the trial held (0 on CPU)
NODE_ID = "node_id"  # the Ray node the epoch ran on (which machine did the work)
SPLIT = "split"  # which split the accuracies come from: always "validation" during search

# Test-split figures of `wrn-search evaluate`, merged into the trials table (prefix "test_").
TEST_PREFIX = "test_"
TEST_CLEAN_ACC = "test_clean_acc"
TEST_N = "test_n"
TEST_CHECKS = "test_checks"  # the checks' verdict: "passed", "failed" or "incomplete"
TEST_MASKING_SUSPECTED = "test_gradient_masking_suspected"
_TEST_ROBUST = "test_robust_acc_eps_"  # strong: per-example minimum over all attacks
_TEST_ATTACK = "test_{}_acc_eps_"  # one attack alone

# Keys of one attack's result inside an epsilon's results (and in the stored JSON).
FGSM_KEY = "fgsm"
SEARCH_PGD_KEY = "search_pgd"
PGD_KEY = "pgd"
PGD_2STEPS_KEY = "pgd_2x_steps"
PGD_2RESTARTS_KEY = "pgd_2x_restarts"
AUTOATTACK_KEY = "autoattack"
HEADLINE_ATTACKS = (FGSM_KEY, SEARCH_PGD_KEY, PGD_KEY, AUTOATTACK_KEY)  # also in the trials table


def strong_acc_key(eps: float) -> str:
    """The test-split strong robust accuracy at one epsilon (minimum over all attacks)."""
    return f"{_TEST_ROBUST}{eps_key(eps)}"


def attack_acc_key(attack: str, eps: float) -> str:
    """The test-split robust accuracy under one attack alone (e.g. 'pgd', 'search_pgd')."""
    return f"{_TEST_ATTACK.format(attack)}{eps_key(eps)}"
