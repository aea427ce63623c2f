"""Names of the metrics a trial reports: one spelling, shared by every reader.

`trainables` writes these keys into every result; `search` (schedulers, searchers,
the live status line) and `analysis` (fronts, the report) read them.
"""

from __future__ import annotations

import math

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
TRAIN_IMAGES_PER_S = "train_images_per_s"  # training throughput (attack included)

DIVERGED = "diverged"  # the loss went NaN/inf; the trial stopped itself
# The searcher's prediction of the trial's seconds per epoch (training and one evaluation),
# made before it started; analysis sets it beside the measured WALL_TIME_S / EPOCHS_DONE.
PREDICTED_EPOCH_S = "predicted_epoch_s"

_ROBUST_PREFIX = "val_robust_acc_eps_"
_CLEAN_PREFIX = "val_clean_acc"


def eps_label(eps: float) -> str:
    """Human form of an epsilon: '8/255' when it is a whole number of 1/255 steps."""
    steps = eps * 255
    if abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:g}"


def duration_label(seconds: float) -> str:
    """Human form of a wall-clock span for status lines: '4m07s', '2h05m00s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def eps_key(eps: float) -> str:
    """Metric-safe form of an epsilon ('8_255' or '0.0314'): no '/' (Ray nests on it)."""
    return eps_label(eps).replace("/", "_")


def robust_acc_key(eps: float) -> str:
    """The key of validation robust accuracy at one eval epsilon."""
    return f"{_ROBUST_PREFIX}{eps_key(eps)}"


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

# The driver's files inside a run directory. They live in a subfolder on purpose: when a
# search is resumed, Ray downloads every top-level *.json/*.pkl into its staging folder and
# copies them back periodically (non-atomically), which would revert and tear these files.
DRIVER_DIR = "wrn-search"
RUN_FILE = "run.json"  # run state and budget used
EVENTS_FILE = "events.jsonl"  # trial start / complete / error events
RUNGS_FILE = "rungs.jsonl"  # every early-stopping decision the scheduler made, and why
DIVERGED_MARKER = "diverged.txt"  # in a trial folder: its loss went NaN/inf (the reason)
SPEC_JSON = "spec.json"  # the validated spec, every default filled in
SPEC_TOML = "spec.toml"  # the spec as the user wrote it
