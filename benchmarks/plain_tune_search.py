"""The outside baseline: a plain Ray Tune + Optuna + ASHA search, written the way a researcher
writes one without wrn-search (Ray Tune's examples, the Optuna search docs).

- The space is Ray Tune's own (`tune.choice`, `tune.randint`, `tune.uniform`), handed to
  `OptunaSearch` with two objectives (validation robust accuracy up, parameters down), which
  samples with Optuna's default multi-objective TPE.
- Ray's `ASHAScheduler` stops trials early on validation robust accuracy (one metric: ASHA
  has no multi-objective rung rule), grace period 1 epoch, reduction factor 3.
- `time_budget_s` ends the search; one trial at a time on one CPU.
- The training loop is the project's `Trainer` (the same data, model, PGD training and
  validation attack), so the comparison in `search_efficiency.py` is one of search
  strategies, not of training code. It reports every epoch with `tune.report`.

Nothing here knows the budget beyond `time_budget_s`: no cost model, no initial design, no
notion of a trial that cannot finish. That is the point of the baseline.

Run alone (prints the front):

    python benchmarks/plain_tune_search.py --budget 300 --seed 0 --storage runs/bench/plain
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.config import TrialConfig  # noqa: E402
from trainables.trainer import Trainer  # noqa: E402


def train(config: dict[str, Any]) -> None:
    """One trial: build the config, train epoch by epoch, report validation accuracy."""
    base = config["base"]
    cfg = TrialConfig.from_dict({
        **base,
        "model": {"depth": config["depth"], "width": config["width"]},
        "training": {**base["training"], "eps": config["train_eps"],
                     "steps": config["train_steps"]},
    })
    trainer = Trainer(cfg)
    for _ in range(cfg.training.epochs):
        row = trainer.run_epoch()
        tune.report({k: v for k, v in row.items() if isinstance(v, (int, float, str))})


def run(*, base: dict[str, Any], space: dict[str, Any], budget_s: float, seed: int,
        storage: str, name: str) -> str:
    """The search; returns the experiment folder (Ray's results, one folder per trial)."""
    param_space = {
        "base": base,
        "depth": tune.choice(space["depth"]),
        "width": tune.randint(space["width"][0], space["width"][1] + 1),  # upper bound excluded
        "train_eps": tune.uniform(*space["train_eps"]),
        "train_steps": tune.randint(space["train_steps"][0], space["train_steps"][1] + 1),
    }
    tuner = tune.Tuner(
        tune.with_resources(train, {"cpu": 1}),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=OptunaSearch(metric=["val_robust_acc", "params"], mode=["max", "min"],
                                    seed=seed),
            scheduler=ASHAScheduler(metric="val_robust_acc", mode="max",
                                    max_t=base["training"]["epochs"], grace_period=1,
                                    reduction_factor=3),
            num_samples=1000,
            max_concurrent_trials=1,
            time_budget_s=budget_s,
        ),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    tuner.fit()
    return str(Path(storage) / name)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10-jpeg.tar.gz")
    p.add_argument("--budget", type=float, default=300.0, help="seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--storage", default="runs/bench/plain")
    args = p.parse_args()
    base = {
        "data": {"dataset": "cifar10", "data_dir": str(Path(args.data_dir).resolve()),
                 "train_subset": 1000, "val_size": 250},
        "training": {"method": "pgd", "epochs": 3, "batch_size": 32, "lr": 0.05},
        "threat_model": {"epsilons": ["8/255"], "steps": 5, "batch_size": 250},
        "threads": 1,
    }
    space = {"depth": [10, 16, 22], "width": [1, 3], "train_eps": [2 / 255, 10 / 255],
             "train_steps": [1, 3]}
    ray.init(num_cpus=1, include_dashboard=False)
    folder = run(base=base, space=space, budget_s=args.budget, seed=args.seed,
                 storage=str(Path(args.storage).resolve()), name=f"plain-seed{args.seed}")
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
