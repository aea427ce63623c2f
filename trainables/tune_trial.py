"""The Ray Tune trainable: one trial = one `Trainer`, reporting every epoch, checkpointing
at most every `CHECKPOINT_INTERVAL` seconds and after the last epoch.

The Tune config holds:
- the experiment's fixed trial settings under "trial" and the searched hyperparameters as
  flat keys, both decoded by `trainables.config.trial_from_ray` (the one decoder);
- the checkpoint interval under `CHECKPOINT_INTERVAL` (seconds; 0 or absent: every epoch);
- the sub-epoch rungs under `REPORT_EPOCHS`: fractional epochs where the trial also
  evaluates and reports, so early stopping can judge an expensive trial early;
- the searcher's cost prediction under `metrics.PREDICTED_EPOCH_S` (reported back as is).

Module-level on purpose: Ray pickles it by reference, and OptunaSearch's state with it.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables import metrics as M
from trainables import run_files
from trainables.checkpoint import restore_checkpoint, save_checkpoint
from trainables.config import TrialConfig, trial_from_ray
from trainables.trainer import Trainer, TrainingDiverged

CHECKPOINT_INTERVAL = "checkpoint_interval_s"
REPORT_EPOCHS = "report_epochs"

log = logging.getLogger(__name__)



def _limit_resources() -> float:
    """Hold the trial to what Ray granted: CPU threads, and its share of GPU memory."""
    granted = ray.get_runtime_context().get_assigned_resources()
    cpus = int(granted.get("CPU", 1)) or 1
    torch.set_num_threads(cpus)
    gpu_share = float(granted.get("GPU", 0.0))
    if 0 < gpu_share < 1 and torch.cuda.is_available():
        # Ray's GPU fractions are bookkeeping only; this makes them a real memory cap, so
        # four 0.25-GPU trials cannot starve each other out of memory.
        torch.cuda.set_per_process_memory_fraction(gpu_share)
    return gpu_share


def train_wrn(config: dict[str, Any]) -> None:
    """Train one WRN adversarially; report metrics every epoch, with a checkpoint when due.

    A diverged trial errors (and says why). Ray would retry it from its last checkpoint,
    where, with its random state restored, it would diverge again: a marker in the trial
    folder makes such a retry fail at once instead of repeating the work.
    """
    marker = Path(tune.get_context().get_trial_dir()) / run_files.DIVERGED_MARKER
    if marker.exists():
        raise TrainingDiverged(f"{marker.read_text()} (not retried: it would diverge again)")
    gpu_share = _limit_resources()
    cfg = trial_from_ray(config)
    facts = {M.GPU_SHARE: gpu_share, M.PREDICTED_EPOCH_S: config.get(M.PREDICTED_EPOCH_S)}
    points = report_points(cfg.training.epochs, config.get(REPORT_EPOCHS, ()))
    try:
        trainer = _restored(cfg)
        if trainer is not None:
            _train(trainer, facts, points, float(config.get(CHECKPOINT_INTERVAL, 0.0)))
    except TrainingDiverged as exc:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(str(exc))
        raise
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # the worker process is reused by the next trial


def checkpoint_due(done: bool, since_last_s: float, interval_s: float) -> bool:
    """After the last epoch always (the front's weights live there), else once per interval:
    every checkpoint is a write, Ray's copy and a forced experiment snapshot in the driver."""
    return done or since_last_s >= interval_s


def report_points(epochs: int, sub_epoch: Any = ()) -> list[float]:
    """Where a trial evaluates and reports: after every epoch, and at the sub-epoch rungs."""
    extra = {float(p) for p in sub_epoch or () if 0 < float(p) < epochs}
    return sorted({float(e) for e in range(1, epochs + 1)} | extra)


def _reported_every_epoch(cfg: TrialConfig) -> bool:
    """The trial's own result.json reaches its last epoch: a driver killed just after the
    trial finished can leave Ray's saved state calling it running."""
    path = Path(tune.get_context().get_trial_dir()) / run_files.RESULT_FILE
    rows = run_files.json_lines(path)[0] if path.exists() else []
    done = [run_files.finite_number(r.get(M.EPOCHS_DONE)) for r in rows]
    return any(d is not None and d >= cfg.training.epochs for d in done)


def _restored(cfg: TrialConfig) -> Trainer | None:
    """The trial's Trainer at its last checkpoint, or a fresh one.

    A checkpoint can be unreadable: a worker killed while Ray copied it to storage leaves
    torn files, and an experiment state saved before the newest checkpoint may name one that
    `num_to_keep` has since deleted. Erroring would lose the trial for good (every retry
    reads the same files); training it again from epoch 0 loses only its progress. None
    when the trial had already reported its last epoch: there is nothing left to train.
    """
    trainer = Trainer(cfg)
    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        return trainer
    try:
        with checkpoint.as_directory() as directory:
            restore_checkpoint(trainer, Path(directory))
    except Exception as exc:  # noqa: BLE001 - torn, missing or foreign files alike
        if _reported_every_epoch(cfg):
            log.warning("the checkpoint of %s cannot be read (%s); it had already reported "
                        "every epoch, so it is not trained again", trainer.static_facts()[M.WRN],
                        run_files.one_line(exc))
            return None
        log.warning("the checkpoint of %s cannot be read (%s); training it again from epoch 0",
                    trainer.static_facts()[M.WRN], run_files.one_line(exc))
        return Trainer(cfg)
    log.info("restored %s at epoch %d", trainer.static_facts()[M.WRN], trainer.epoch)
    return trainer


def _train(trainer: Trainer, facts: dict[str, Any], points: list[float], interval_s: float) -> None:
    last = time.monotonic()
    node = ray.get_runtime_context().get_node_id()
    for point in points:
        if point <= trainer.progress:
            continue  # reached before a restore
        row = {**trainer.run_until(point), **facts, M.NODE_ID: node}
        whole_epoch = trainer.progress == trainer.epoch  # state is saved between epochs only
        if not whole_epoch or not checkpoint_due(trainer.done, time.monotonic() - last, interval_s):
            tune.report(row)
            continue
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(trainer, Path(directory))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))
        last = time.monotonic()
