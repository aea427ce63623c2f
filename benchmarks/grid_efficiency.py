"""Grid study: hypervolume against wall-clock time for each search strategy vs the full grid.

Every strategy searches the same discrete space of small WRNs on the same CIFAR-10 subset,
through the project's own code path (`search.tuner.run_search`, the real `train_wrn`), with
the same trial slots. The full grid runs once, to the end, with no early stopping: its front is
the best this space can give, and its wall time is "the grid's compute". Then each strategy runs
for the same wall-clock budget (a fraction of the grid's time), once per searcher seed:

- `mo-asha+tpe`: the project's default (multi-objective ASHA, multi-objective TPE);
- `asha+tpe`: ASHA on robust validation accuracy alone, the same TPE;
- `none+tpe`: TPE, every trial trained to the end;
- `random`: random search, every trial trained to the end.

Training uses a fixed seed for every trial, so a configuration trains to the same numbers in
every run (CPU training is deterministic here): the grid's front is exactly what a strategy
finds when it trains the same configurations, and 95% of the grid's hypervolume is a target
every strategy can reach.

What is reported, per strategy and seed, from the run directories alone (`analysis`):

- hypervolume over time: the front of the full-fidelity trials completed by each moment, in
  (log10 params, robust validation accuracy) space, with the reference point of `analysis`
  (2x the largest model of the space, accuracy 0), as a fraction of the grid's hypervolume;
  time counts from the run's first trial start, so Ray's start-up is outside it;
- the fraction of the grid's compute needed to reach 95% of the grid's hypervolume: the first
  moment the fraction reaches 0.95, over the grid's wall time (same slots, so wall time is
  compute); "not reached" when the budget ran out first.

The order of strategies rotates from one seed to the next, so load from other work on a shared
machine falls on every strategy alike. Run directories are kept (`--storage`), and a run that
already finished there is read instead of run again, so an interrupted benchmark continues.

Usage (on a 2-core machine: the small space about 60 minutes with 3 seeds, the large one
about 50; the data is the JPEG CIFAR-10 archive):

    python benchmarks/grid_efficiency.py --space large --epochs 4 --val-size 400 \
        --train-subset 1400 --budget 0.25 --seeds 3 \
        --storage runs/bench/search-efficiency-large --json runs/bench/search_efficiency_large.json

    python benchmarks/grid_efficiency.py --render runs/bench/search_efficiency_large.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine_facts, write_results  # noqa: E402

from analysis.load import load_run  # noqa: E402
from analysis.pareto import hypervolume_over_time, reference_params  # noqa: E402
from search.cluster import quiet_ray, start_ray  # noqa: E402
from search.spec import ExperimentSpec  # noqa: E402
from search.tuner import run_search  # noqa: E402
from trainables import (
    metrics,  # noqa: E402
    run_files,
)
from trainables.config import ConfigError  # noqa: E402
from trainables.data import load_dataset  # noqa: E402

STRATEGIES = {  # name: (scheduler, searcher)
    "mo-asha+tpe": ("mo-asha", "tpe"),
    "asha+tpe": ("asha", "tpe"),
    "none+tpe": ("none", "tpe"),
    "random": ("none", "random"),
}
DEFAULT = "mo-asha+tpe"
SPACES = {
    # 16 configurations; one WRN-10-1 trained at 8/255 already holds most of the hypervolume
    "small": {"depth": [10, 16], "width": [1, 2], "train_eps": ["2/255", "8/255"],
              "train_steps": [1, 2]},
    # 48 configurations of cheaper models, where the good settings are rarer
    "large": {"depth": [10, 16, 22], "width": [1],
              "train_eps": ["2/255", "4/255", "6/255", "8/255"], "train_steps": [1, 2],
              "peak_lr": [0.02, 0.1]},
}
TARGET = 0.95
CHECKPOINTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)  # fractions of the grid's time
REFERENCES = {  # the hypervolume's reference accuracy: name -> what it is
    "zero": "accuracy 0, the reference point of `analysis`",
    "floor": "the grid's worst full-fidelity accuracy: only gains over the worst choice count",
}
FINISHED = ("finished", "budget_exhausted")


def base_spec(args: argparse.Namespace) -> dict[str, Any]:
    """What every run shares: data, threat model, space, training, slots."""
    return {
        "data": {"dataset": "cifar10", "data_dir": args.data_dir,
                 "train_subset": args.train_subset, "val_size": args.val_size},
        "threat_model": {"epsilons": ["8/255"], "steps": args.eval_steps, "batch_size": 250},
        "space": SPACES[args.space],
        # batch 32: about 190 SGD steps in 6 epochs of 1,000 images; with batch 100 (60 steps)
        # the small WRNs ended near chance (robust 8-13%), too close to noise to rank them
        "training": {"method": "pgd", "epochs": args.epochs, "batch_size": 32, "lr": 0.05,
                     "schedule": "cosine"},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "storage": {"path": str(args.storage)},
    }


def grid_spec(args: argparse.Namespace) -> ExperimentSpec:
    return ExperimentSpec.from_dict({
        **base_spec(args), "name": "grid",
        "budget": {"time": "6h", "max_trials": 1000, "max_concurrent": args.slots},
        "scheduler": {"kind": "none"}, "searcher": {"kind": "grid", "seed": 0},
    })


def strategy_spec(args: argparse.Namespace, strategy: str, seed: int,
                  budget_s: float) -> ExperimentSpec:
    scheduler, searcher = STRATEGIES[strategy]
    return ExperimentSpec.from_dict({
        **base_spec(args), "name": f"{strategy.replace('+', '_')}-seed{seed}",
        "budget": {"time": budget_s, "max_trials": 1000, "max_concurrent": args.slots},
        "scheduler": {"kind": scheduler, "grace_period": 1, "reduction_factor": 3},
        "searcher": {"kind": searcher, "seed": seed, "n_startup_trials": args.startup},
    })


def ensure_run(spec: ExperimentSpec) -> Path:
    """Run the spec unless its run directory already holds a finished run."""
    run_dir = Path(spec.run_dir)
    state_file = run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE
    if state_file.exists():
        state = json.loads(state_file.read_text()).get("state")
        if state in FINISHED:
            return run_dir
        raise SystemExit(f"--storage: {run_dir} holds an unfinished run ({state}); "
                         "delete it or pick another --storage")
    print(f"[{time.strftime('%H:%M:%S')}] {spec.name}: running "
          f"({spec.budget.time:.0f} s budget)", flush=True)
    run_search(spec)
    return run_dir


@dataclass(frozen=True)
class RunView:
    """What the benchmark needs of one run directory, read once."""

    name: str
    trials: pd.DataFrame
    acc_col: str  # the search objective: best validation robust accuracy at the first epsilon
    ref_params: float  # the hypervolume's size bound (analysis.pareto.reference_params)
    origin: float  # the first trial's start: time zero
    span_s: float  # first trial start to last trial end
    searched: list[str]  # the space's parameters, as trials columns


def read_run(run_dir: Path) -> RunView:
    run = load_run(run_dir)
    trials = run.trials
    origin = float(pd.to_numeric(trials["start_time"], errors="coerce").min())
    return RunView(
        name=run_dir.name, trials=trials,
        acc_col=metrics.best_robust_acc_key(run.eval_epsilons[0]),
        ref_params=reference_params(run.spec, trials)[0], origin=origin,
        span_s=float(pd.to_numeric(trials["end_time"], errors="coerce").max()) - origin,
        searched=[c for c in run.spec.get("space", {}) if c in trials.columns])


def curve(run: RunView, ref_acc: float) -> pd.DataFrame:
    """Hypervolume after each full-fidelity completion, timed from the run's first trial start."""
    return hypervolume_over_time(run.trials, acc_col=run.acc_col, ref_params=run.ref_params,
                                 ref_acc=ref_acc, start_time=run.origin)


def floor_accuracy(grid: RunView) -> float:
    """The grid's worst full-fidelity accuracy: the accuracy of the 'floor' reference point."""
    done = grid.trials[grid.trials["full_fidelity"].astype(bool)]
    return float(pd.to_numeric(done[grid.acc_col], errors="coerce").min())


def record(run: RunView, strategy: str | None, seed: int | None,
           references: dict[str, float]) -> dict[str, Any]:
    """One run's hypervolume curves at each reference accuracy, and its size."""
    curves = {name: curve(run, acc) for name, acc in references.items()}
    out = {"strategy": strategy, "seed": seed, "span_s": run.span_s, "trials": len(run.trials),
           "distinct": len(run.trials[run.searched].drop_duplicates()),
           "reference_accuracy": references,
           "hypervolume": {k: float(hv["hypervolume"].max()) if len(hv) else 0.0
                           for k, hv in curves.items()},
           "curve": {k: hv[["time_s", "hypervolume"]].to_dict(orient="records")
                     for k, hv in curves.items()}}
    print(f"  {run.name}: {len(run.trials)} trials, {len(curves['zero'])} full fidelity, "
          f"span {run.span_s:.0f} s, hypervolume {out['hypervolume']}", flush=True)
    return out


def hv_at(hv: pd.DataFrame, t: float) -> float:
    """The step function: hypervolume reached by time t (0 before the first completion)."""
    if hv.empty:
        return 0.0
    done = hv[hv["time_s"] <= t]
    return float(done["hypervolume"].max()) if len(done) else 0.0


def time_to(hv: pd.DataFrame, target: float) -> float:
    if hv.empty:
        return math.inf
    reached = hv[hv["hypervolume"] >= target - 1e-12]
    return float(reached["time_s"].min()) if len(reached) else math.inf


def summarise(runs: dict[str, dict[str, Any]], reference: str, budget_fraction: float,
              checkpoints: Sequence[float]) -> dict[str, Any]:
    """Per strategy: fractions of the grid's hypervolume (at `reference`) and compute."""
    grid = runs["grid"]
    grid_hv, grid_time = grid["hypervolume"][reference], grid["span_s"]
    table: dict[str, Any] = {}
    for strategy in STRATEGIES:
        seeds = [r for r in runs.values() if r.get("strategy") == strategy]
        if not seeds:
            continue
        curves = [pd.DataFrame(r["curve"][reference]) for r in seeds]
        table[strategy] = {
            "seeds": len(seeds),
            # checkpoint (fraction of the grid's compute) -> one value per seed
            "hv_fraction_at": {f"{c:.2f}": [hv_at(hv, c * grid_time) / grid_hv for hv in curves]
                               for c in checkpoints},
            "compute_to_95": [time_to(hv, TARGET * grid_hv) / grid_time for hv in curves],
            "trials": [r["trials"] for r in seeds],
            "distinct": [r.get("distinct") for r in seeds],
            "full_fidelity_trials": [len(hv) for hv in curves],
        }
    return {"reference": reference, "reference_accuracy": grid["reference_accuracy"][reference],
            "grid_hypervolume": grid_hv, "grid_time_s": grid_time, "grid_trials": grid["trials"],
            "grid_time_to_95": time_to(pd.DataFrame(grid["curve"][reference]),
                                       TARGET * grid_hv) / grid_time,
            "budget_fraction": budget_fraction, "strategies": table}


# --------------------------------------------------------------------------- output


def _fmt_fraction(values: Sequence[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    reached = f"{len(finite)}/{len(values)} seeds"
    if not finite:
        return f"not reached ({reached})"
    return f"median {np.median(values):.0%}, {min(finite):.0%}–{max(finite):.0%} ({reached})" \
        if len(finite) == len(values) else f"{', '.join(f'{v:.0%}' for v in finite)} ({reached})"


def tables(summary: dict[str, Any]) -> str:
    s = summary["strategies"]
    checkpoints = list(next(iter(s.values()))["hv_fraction_at"]) if s else []
    lines = [f"### Reference accuracy {summary['reference_accuracy']:.3f} "
             f"({REFERENCES[summary['reference']]})", "",
             f"grid: {summary['grid_trials']} trials in {summary['grid_time_s']:.0f} s, "
             f"hypervolume {summary['grid_hypervolume']:.4f}, 95% of it after "
             f"{summary['grid_time_to_95']:.0%} of its time; each strategy's budget: "
             f"{summary['budget_fraction']:.0%} of the grid's time", "",
             "| strategy | seeds | trials: all / distinct configurations / full fidelity, per seed "
             "| compute to reach 95% of the grid's HV |",
             "|---|---:|---|---|"]
    for name, row in s.items():
        trials = ", ".join(f"{t}/{d}/{f}" for t, d, f in zip(
            row["trials"], row.get("distinct", [None] * row["seeds"]), row["full_fidelity_trials"],
            strict=True))
        lines.append(f"| {name} | {row['seeds']} | {trials} | {_fmt_fraction(row['compute_to_95'])} |")
    lines += ["", "Hypervolume as a fraction of the grid's, mean over seeds (min–max), at a "
              "fraction of the grid's compute:", "",
              "| strategy | " + " | ".join(f"{float(c):.0%}" for c in checkpoints) + " |",
              "|---|" + "---:|" * len(checkpoints)]
    for name, row in s.items():
        cells = [f"{np.mean(v):.3f} ({min(v):.2f}–{max(v):.2f})" for v in row["hv_fraction_at"].values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if DEFAULT in s and "random" in s:
        diffs = [np.mean(s[DEFAULT]["hv_fraction_at"][c]) - np.mean(s["random"]["hv_fraction_at"][c])
                 for c in checkpoints]
        signs = [0 if abs(d) < 1e-9 else np.sign(d) for d in diffs]
        lines += ["", f"{DEFAULT} against random (mean over seeds): "
                  + ", ".join(f"{float(c):.0%} {'>=<'[1 - int(sign)]}"
                              for c, sign in zip(checkpoints, signs, strict=True))]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10-jpeg.tar.gz",
                   help="CIFAR-10: the JPEG archive, an ImageFolder or a torchvision copy")
    p.add_argument("--space", default="small", choices=tuple(SPACES),
                   help="small: 16 configurations; large: 48")
    p.add_argument("--train-subset", type=int, default=1500,
                   help="stratified training images, validation included")
    p.add_argument("--val-size", type=int, default=500, help="validation images (selection)")
    p.add_argument("--epochs", type=int, default=6, help="full fidelity (ASHA rungs 1 and 3)")
    p.add_argument("--eval-steps", type=int, default=3, help="PGD steps of the validation attack")
    p.add_argument("--slots", type=int, default=2, help="trials at once, one CPU each")
    p.add_argument("--seeds", type=int, default=3, help="searcher seeds per strategy")
    p.add_argument("--budget", type=float, default=0.5,
                   help="each strategy's wall-clock budget, as a fraction of the grid's time")
    p.add_argument("--startup", type=int, default=4, help="random trials before TPE models")
    p.add_argument("--strategies", default=",".join(STRATEGIES))
    p.add_argument("--storage", default="runs/bench/search-efficiency",
                   help="run directories (kept; finished runs there are read, not re-run)")
    p.add_argument("--json", default=None, help="write every curve and the summary here")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the tables of an earlier --json file and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        summary = json.loads(Path(args.render).read_text())["summary"]
        print("\n\n".join(tables(part) for part in summary.values()))
        return 0
    args.storage = Path(args.storage).resolve()
    args.data_dir = str(Path(args.data_dir).resolve())
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown:
        raise SystemExit(f"--strategies: {unknown} not allowed; allowed: {', '.join(STRATEGIES)}")
    torch.set_num_threads(1)
    quiet_ray()
    facts = machine_facts(torch=torch.__version__, ray=ray.__version__)
    grid = grid_spec(args)
    load_dataset(grid.data)  # decode the archive into the cache once, outside every timing
    start_ray(None, num_cpus=args.slots)
    runs: dict[str, dict[str, Any]] = {}
    try:
        grid_run = read_run(ensure_run(grid))
        references = {"zero": 0.0, "floor": floor_accuracy(grid_run)}
        runs["grid"] = record(grid_run, None, None, references)
        budget_s = math.ceil(args.budget * runs["grid"]["span_s"])
        for seed in range(args.seeds):
            order = strategies[seed % len(strategies):] + strategies[:seed % len(strategies)]
            for strategy in order:
                run = read_run(ensure_run(strategy_spec(args, strategy, seed, budget_s)))
                runs[run.name] = record(run, strategy, seed, references)
    finally:
        ray.shutdown()
    checkpoints = [c for c in CHECKPOINTS if c <= args.budget + 1e-9]
    summary = {name: summarise(runs, name, args.budget, checkpoints) for name in REFERENCES}
    facts["load_average_end"] = list(os.getloadavg())
    print("\n" + "\n\n".join(tables(part) for part in summary.values()))
    write_results(args.json, facts, args, summary, runs)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as exc:  # a bad --data-dir or setting: one line, no traceback
        sys.exit(f"error: {exc}")
