"""Checkpoint files: the last state (to resume) and the best-validation-robust weights.

A checkpoint directory holds two files:
- `state.pt`: the whole `Trainer.state_dict()` (model, optimiser, LR schedule, epoch,
  random states, the config), so a resumed run continues the same run;
- `best_model.pt`: the weights of the epoch with the best validation robust accuracy so
  far, plus that epoch's metrics. Robust overfitting (Rice et al. 2020) makes the last
  epoch a poor model to keep, so this is what `evaluate` and users load.

Both are written atomically (temporary file, then rename) and read with
`weights_only=True`: checkpoints from elsewhere cannot run code on load.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from models import WideResNet
from trainables import metrics as M
from trainables import run_files
from trainables.config import ConfigError, TrialConfig
from trainables.trainer import Trainer

log = logging.getLogger(__name__)


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save into `path` in one step (`run_files.write_atomic`)."""
    run_files.write_atomic(path, lambda tmp: torch.save(obj, tmp))


def load_file(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def save_checkpoint(trainer: Trainer, directory: Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_atomic(trainer.state_dict(), directory / run_files.STATE_FILE)
    if trainer.best_state is not None:
        save_atomic(
            {"config": trainer.cfg.to_dict(), "epoch": trainer.best["best_epoch"],
             "metrics": dict(trainer.best), "model": trainer.best_state},
            directory / run_files.BEST_FILE,
        )


def restore_checkpoint(trainer: Trainer, directory: Path) -> None:
    """Continue `trainer` from a checkpoint directory written by `save_checkpoint`."""
    directory = Path(directory)
    trainer.load_state_dict(load_file(directory / run_files.STATE_FILE))
    best = directory / run_files.BEST_FILE
    if best.exists():
        try:
            trainer.best_state = load_file(best)["model"]
        except Exception as exc:  # noqa: BLE001 - torn by a kill while Ray copied it
            # The best weights are lost: choose the best again from the epochs to come rather
            # than report metrics no saved model has.
            log.warning("%s cannot be read (%s); the best epoch is chosen again from the epochs "
                        "to come", best, run_files.one_line(exc))
            trainer.best, trainer.best_state = {}, None


class UnreadableCheckpoint(ConfigError):
    """A checkpoint file that cannot be used: truncated, empty, foreign, or of other shapes.

    A ConfigError (one line naming the file), so a command that needs this one model stops
    in one line, and `evaluate`, which has others, can skip it and carry on.
    """


def unreadable(path: Path, exc: BaseException, what: str = "checkpoint") -> UnreadableCheckpoint:
    """The one-line error for a file that could not be read, naming it and why."""
    return UnreadableCheckpoint(f"{what}: {str(path)!r} cannot be read ({run_files.one_line(exc)})")


def best_config(directory: Path) -> TrialConfig:
    """The trial config stored in a checkpoint's best_model.pt (UnreadableCheckpoint if not)."""
    path = Path(directory) / run_files.BEST_FILE
    try:
        return TrialConfig.from_dict(load_file(path)["config"])
    except Exception as exc:  # truncated, empty or foreign: torch, pickle, key and config errors
        raise unreadable(path, exc) from None


def load_best_model(directory: Path, device: str | torch.device = "cpu") -> tuple[WideResNet, dict[str, Any]]:
    """The best-validation-robust model of a checkpoint, in eval mode, and its metrics.

    UnreadableCheckpoint when the file is truncated, empty, foreign, or holds weights of
    other shapes than its config's model.
    """
    path = Path(directory) / run_files.BEST_FILE
    try:
        blob = load_file(path)
        cfg = TrialConfig.from_dict(blob["config"])
        model = WideResNet(cfg.model.depth, cfg.model.width, cfg.data.num_classes,
                           dropout=cfg.model.dropout)
        model.load_state_dict(blob["model"])
        info = {"epoch": blob["epoch"], **blob["metrics"]}
    except Exception as exc:  # see best_config
        raise unreadable(path, exc) from None
    return model.to(device).eval(), info


def best_checkpoint(trial_dir: Path) -> Path | None:
    """A trial's latest checkpoint_* folder that holds best_model.pt (Ray numbers them in
    order); None when it has none."""
    for folder in sorted(Path(trial_dir).glob("checkpoint_*"), reverse=True):
        if (folder / run_files.BEST_FILE).is_file():
            return folder
    return None


def checkpoint_result(trial_dir: Path) -> dict[str, Any] | None:
    """What a trial's newest readable state.pt says, as result keys: the epochs done, the wall
    time and the best epoch's metrics. `analysis` recovers a trial from it when result.json
    lost its last lines (the last epoch always writes a checkpoint); None without one."""
    for folder in sorted(Path(trial_dir).glob("checkpoint_*"), reverse=True):
        path = folder / run_files.STATE_FILE
        if not path.is_file():
            continue
        try:  # mmap: the weights stay on disk
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError):
            continue
        best = state.get("best") or {}
        out = {M.EPOCHS_DONE: state.get("epoch"), M.WALL_TIME_S: state.get("wall_time_s"),
               M.BEST_VAL_ROBUST_ACC: best.get(M.VAL_ROBUST_ACC),
               M.BEST_VAL_CLEAN_ACC: best.get(M.VAL_CLEAN_ACC), M.BEST_EPOCH: best.get(M.BEST_EPOCH)}
        for key, value in best.items():
            eps = M.robust_acc_eps(key)
            if eps is not None:
                out[M.best_robust_acc_key(eps)] = value
        return {k: v for k, v in out.items() if v is not None}
    return None
