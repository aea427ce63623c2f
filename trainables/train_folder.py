"""One training run outside Ray (`wrn-search train`): the Trainer plus its output folder.

The folder holds what a researcher's per-config script would: the config, per-epoch
metrics (JSON lines and CSV), TensorBoard logs and a checkpoint (last state and best
weights) that `--resume` continues from.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainables import formats
from trainables import metrics as M
from trainables.checkpoint import load_file, restore_checkpoint, save_checkpoint
from trainables.config import ConfigError, TrialConfig
from trainables.run_files import STATE_FILE
from trainables.trainer import Trainer

CHECKPOINT_DIR = "checkpoint"
METRICS_JSONL = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
CONFIG_JSON = "config.json"
TENSORBOARD_DIR = "tensorboard"


# What may differ when resuming: where and how fast it runs, never what it computes.
_RUNTIME_FIELDS = ("device", "threads", "compile")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        out.update(_flat(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def _check_same_run(cfg: TrialConfig, checkpoint_dir: Path) -> None:
    """A resumed run must be the same run: other data, seeds or schedule would silently mix
    runs (a changed seed even moves validation images into training)."""
    saved = _flat(load_file(checkpoint_dir / STATE_FILE)["config"])
    asked = _flat(cfg.to_dict())
    for name, value in asked.items():
        if name not in _RUNTIME_FIELDS and saved.get(name) != value:
            raise ConfigError(
                f"--resume: {name} = {value!r} is not allowed; the saved run has "
                f"{saved.get(name)!r} (resume continues the same run: only --device, --threads "
                f"and --compile may change)")


class TrainRun:
    """A Trainer writing into `out`; refuses to clobber an earlier run unless resuming."""

    def __init__(self, cfg: TrialConfig, out: Path, *, resume: bool = False) -> None:
        self.cfg, self.out = cfg, Path(out)
        has_state = (self.out / CHECKPOINT_DIR / STATE_FILE).exists()
        if has_state and not resume:
            raise ConfigError(f"--out: {str(self.out)!r} already holds a run; pass --resume to "
                              "continue it, or choose another --out")
        if resume and not has_state:
            raise ConfigError(f"--resume: {str(self.out)!r} holds no checkpoint to resume from")
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out: {str(self.out)!r} is a file, not a folder")
        if resume:
            _check_same_run(cfg, self.out / CHECKPOINT_DIR)
        self.trainer = Trainer(cfg)
        if resume:
            restore_checkpoint(self.trainer, self.out / CHECKPOINT_DIR)
            self._truncate_metrics(self.trainer.epoch)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / CONFIG_JSON).write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
        self.last: dict[str, Any] = {}

    def _truncate_metrics(self, epochs: int) -> None:
        """Drop metric lines written after the checkpoint (a crash between the two writes)."""
        path = self.out / METRICS_JSONL
        if path.exists():
            rows = [ln for ln in path.read_text().splitlines() if ln.strip()]
            path.write_text("".join(ln + "\n" for ln in rows[:epochs]))

    def epochs(self, *, show_progress: bool = False) -> Iterator[dict[str, Any]]:
        """Train to the configured number of epochs, writing every output after each."""
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.out / TENSORBOARD_DIR))
        bar = None
        try:
            while not self.trainer.done:
                if show_progress:
                    from tqdm import tqdm

                    bar = tqdm(total=len(self.trainer.train_loader), leave=False,
                               desc=f"epoch {self.trainer.epoch + 1}", unit="batch")
                    self.trainer.on_batch = bar.update
                row = self.trainer.run_epoch()
                if bar is not None:
                    bar.close()
                self._write(row, writer)  # metrics first: resume trims rows past the checkpoint
                save_checkpoint(self.trainer, self.out / CHECKPOINT_DIR)
                self.last = row
                yield row
        finally:
            writer.close()

    def _write(self, row: dict[str, Any], writer: Any) -> None:
        with open(self.out / METRICS_JSONL, "a") as f:
            f.write(json.dumps(row) + "\n")
        rows = [json.loads(ln) for ln in (self.out / METRICS_JSONL).read_text().splitlines()]
        with open(self.out / METRICS_CSV, "w", newline="") as f:
            out = csv.DictWriter(f, fieldnames=list(rows[-1]))
            out.writeheader()
            out.writerows(rows)
        for key, value in row.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                writer.add_scalar(key, value, row[M.EPOCHS_DONE])
        writer.flush()

    def summary(self) -> str:
        t, tm = self.trainer, self.cfg.threat_model
        best = t.best
        robust = ", ".join(f"{100 * best[M.robust_acc_key(e)]:.1f}% at {formats.eps_label(e)}"
                           for e in tm.epsilons)
        facts = t.static_facts()
        return (f"{facts[M.WRN]} ({facts[M.PARAMS]:,} parameters): best epoch "
                f"{best[M.BEST_EPOCH]}/{self.cfg.training.epochs}: clean "
                f"{100 * best[M.VAL_CLEAN_ACC]:.1f}%, robust {robust} "
                f"(validation split, {tm.norm} PGD-{tm.steps}, {tm.restarts} restart(s))")
