"""A hand-made run folder, as `wrn-search run` writes it, with every kind of trial in it:
shared by the tests of everything that reads a run (load, spend, status, report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from models import count_parameters, wrn_name
from trainables import metrics, run_files

EPS = (8 / 255, 4 / 255)
MAX_EPOCHS = 9
T0 = 1_790_000_000.0
SPACE_MAX = (28, 10)  # the largest model the hand-made spec's space allows
ERROR_TXT = """Failure # 1 (occurred at 2026-11-23_13-05-00)
ray::ImplicitFunc.train() (pid=123, ip=127.0.0.1, actor_id=abc, repr=train_wrn)
  File "/site-packages/ray/tune/trainable/trainable.py", line 331, in train
    raise skipped from exception_cause(skipped)
  File "/work/trainables/tune_trial.py", line 88, in train_wrn
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"dataset": "cifar10-sample", "val_size": 0.1, "seed": 0},
        "threat_model": {"norm": "linf", "epsilons": list(EPS), "steps": 10, "restarts": 1},
        "space": {"depth": [10, 16, 22, SPACE_MAX[0]], "width": [1, 2, 4, SPACE_MAX[1]]},
        "training": {"epochs": MAX_EPOCHS},
        "budget": {"time_s": 3600},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        "scheduler": {"kind": "mo-asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"kind": "optuna", "seed": 0},
        "storage": {"path": "runs"},
    }


def _result(trial_id: str, depth: int, width: int, epoch: int, robust: float, clean: float,
            best: dict[str, float], start: float) -> dict[str, Any]:
    """One result.json line as the trainable reports it (names from trainables.metrics)."""
    hyper = {metrics.DEPTH: depth, metrics.WIDTH: width, metrics.METHOD: "pgd",
             metrics.TRAIN_EPS: 8 / 255, metrics.TRAIN_STEPS: 7, metrics.PEAK_LR: 0.1,
             metrics.WEIGHT_DECAY: 5e-4}
    wall = 10.0 * epoch * (depth * width) / 10
    line = {
        "trial_id": trial_id, "training_iteration": epoch, "time_total_s": wall,
        "timestamp": start + wall, "date": "2026-11-23_13-00-00",
        metrics.WRN: wrn_name(depth, width), metrics.PARAMS: count_parameters(depth, width),
        metrics.EPOCHS_DONE: epoch, metrics.MAX_EPOCHS: MAX_EPOCHS, **hyper,
        metrics.TRAIN_LOSS: 1.5, metrics.TRAIN_ACC: 0.4, metrics.LR: 0.01,
        metrics.VAL_CLEAN_ACC: clean, metrics.VAL_ROBUST_ACC: robust,
        metrics.EPOCH_TIME_S: 9.0, metrics.EVAL_TIME_S: 1.0, metrics.WALL_TIME_S: wall,
        metrics.TRAIN_IMAGES_PER_S: 500.0, metrics.GPU_SHARE: 0.0, metrics.SPLIT: "validation",
        "config": hyper,  # Ray nests the trial config in every result
    }
    line |= {metrics.robust_acc_key(e): _at(robust, i) for i, e in enumerate(EPS)}
    return line | best


def _at(robust: float, i: int) -> float:
    """Robust accuracy at the i-th (smaller) eval epsilon: higher than at the first."""
    return min(0.99, robust * (1 + 0.3 * i))


def _lines(trial_id: str, depth: int, width: int, epochs: int, robust: float, clean: float,
           start: float, peak: bool = False) -> list[dict[str, Any]]:
    """Accuracy rising to (robust, clean) at the last epoch; `peak`: best one epoch earlier."""
    lines, best = [], {}
    for epoch in range(1, epochs + 1):
        frac = 0.6 + 0.4 * epoch / epochs
        r, c = robust * frac, clean * frac
        if peak and epoch == epochs - 1:
            r = robust + 0.02
        if not best or r > best[metrics.BEST_VAL_ROBUST_ACC]:
            best = {metrics.BEST_VAL_ROBUST_ACC: r, metrics.BEST_VAL_CLEAN_ACC: c,
                    metrics.BEST_EPOCH: epoch}
            best |= {metrics.best_robust_acc_key(e): _at(r, i) for i, e in enumerate(EPS)}
        lines.append(_result(trial_id, depth, width, epoch, r, c, dict(best), start))
    return lines


# trial id -> (depth, width, epochs done, final robust, final clean)
COMPLETE = {
    "t_a": (10, 1, 9, 0.30, 0.55),
    "t_b": (16, 2, 9, 0.38, 0.65),
    "t_c": (16, 4, 9, 0.45, 0.72),  # peaks at epoch 8 (robust overfitting)
    "t_d": (22, 4, 9, 0.43, 0.73),  # dominated in robust accuracy, on the clean front
}
HALF_WRITTEN = ("t_e", (10, 2, 9, 0.36, 0.60))
STOPPED = ("t_s", (10, 1, 3, 0.90, 0.95))  # would dominate everything if (wrongly) included
STOPPED_RUNG0 = ("t_r0", (22, 2, 1, 0.20, 0.40))
ERRORED = ("t_x", (28, 10, 2, 0.20, 0.30))
RUNNING = ("t_run", (16, 1, 4, 0.25, 0.50))
GARBAGE = "train_wrn_t_u_7_depth=10,width=4"


def make_run(root: Path, *, state: str = "finished", events: bool = True) -> Path:
    """A run directory as `wrn-search run` writes it, with every kind of trial in it."""
    run = root / "demo"
    (run / run_files.DRIVER_DIR).mkdir(parents=True)
    (run / run_files.DRIVER_DIR / run_files.SPEC_JSON).write_text(json.dumps(_spec("demo")))
    (run / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps({
        "name": "demo", "created": "2026-11-23T13:00:00+00:00", "budget_s": 3600.0,
        "elapsed_s": 1500.0, "state": state, "resumes": 0, "ray_version": "2.60.0",
        "optuna_version": "5.0.0"}))
    log: list[dict[str, Any]] = []

    def trial(k: int, trial_id: str, spec: tuple, *, end: str | None, peak: bool = False,
              tail: str = "") -> Path:
        depth, width, epochs, robust, clean = spec
        start = T0 + 60 * k
        folder = run / f"train_wrn_{trial_id}_{k}_depth={depth},width={width}_2026-11-23"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"depth": depth, "width": width}))
        lines = _lines(trial_id, depth, width, epochs, robust, clean, start, peak)
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (folder / "result.json").write_text(text + tail)
        log.append({"time": start, "trial_id": trial_id, "event": "start",
                    "epochs_done": None, "error": None})
        if end is not None:
            log.append({"time": lines[-1]["timestamp"] + 1, "trial_id": trial_id, "event": end,
                        "epochs_done": epochs, "error": "OOM" if end == "error" else None})
        return folder

    for k, (trial_id, spec) in enumerate(COMPLETE.items()):
        trial(k, trial_id, spec, end="complete", peak=trial_id == "t_c")
    trial(4, *HALF_WRITTEN, end="complete", tail='{"trial_id": "t_e", "training_iter')
    trial(5, *STOPPED, end="complete")
    trial(6, *STOPPED_RUNG0, end="complete")
    errored = trial(7, *ERRORED, end="error")
    (errored / "error.txt").write_text(ERROR_TXT)
    trial(8, *RUNNING, end=None)
    garbage = run / GARBAGE
    garbage.mkdir()
    (garbage / "result.json").write_text("\x00\x01 not json at all\n<<<>>>\n")
    if events:
        log.sort(key=lambda e: e["time"])
        lines = "".join(json.dumps(e) + "\n" for e in log)
        (run / run_files.DRIVER_DIR / run_files.EVENTS_FILE).write_text(lines)
    return run


def write_decisions(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (run_dir / run_files.DRIVER_DIR / run_files.RUNGS_FILE).write_text(text)
