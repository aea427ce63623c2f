"""Search efficiency under a wall-clock budget: the budget-aware search against today's search
and a plain Ray Tune + Optuna + ASHA script, side by side in one script run.

Three ways to search the same space on the same CIFAR-10 subset, one trial at a time on one
CPU (one Ray instance of 1 CPU, started once for the whole script):

- `new`: the project's defaults (searcher cost-ehvi, MO-ASHA with sub-epoch rungs "auto" and
  the noise allowance, only trials that can finish);
- `today`: the project as it searched before the budget-aware work (multi-objective TPE with
  8 random startup trials, MO-ASHA from epoch 1 judging raw numbers, any trial may start);
- `plain`: `benchmarks/plain_tune_search.py`, the script a researcher writes without this
  project (OptunaSearch's multi-objective TPE, Ray's ASHA on robust accuracy).

All three train with the project's `Trainer`, so only the search differs. Budgets are set
from T_max, the measured time to train the space's priciest configuration to full fidelity
on this machine (one epoch measured, times the epochs): tight budgets where T_max is a large
share of the budget (`--tight 1.0,0.25`: T_max is 100% and 25% of it), and one larger budget
where it is under 10% (`--large 0.09`).

Reported per budget, variant and seed, from the run folders alone (`analysis.load`): the
hypervolume of the full-fidelity front in (log10 parameters, best-checkpoint validation
robust accuracy at 8/255), reference point (2 x the space's largest model, accuracy 0), and
also with accuracy 0.1 (chance) as the reference, so only accuracy above chance counts; the
number of full-fidelity models; and the share of trial time spent on trials that ended
without full fidelity. The order of variants rotates from one seed to the next, so drifting
load on a shared machine falls on each alike. Finished runs in `--storage` are read, not run
again, so an interrupted benchmark continues where it stopped.

Usage (2-core machine: about 3 hours; the data is the JPEG CIFAR-10 archive):

    python benchmarks/search_efficiency.py --seeds 3 --storage runs/bench/budget \
        --json runs/bench/budget.json
    python benchmarks/search_efficiency.py --render runs/bench/budget.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import plain_tune_search  # noqa: E402
from _common import machine_facts, write_results  # noqa: E402
from plain_tune_search import run as run_plain  # noqa: E402

from analysis.dominance import hypervolume_2d, non_dominated_sort  # noqa: E402
from analysis.load import load_run  # noqa: E402
from analysis.pareto import REF_PARAMS_FACTOR, pareto_front  # noqa: E402
from models import count_parameters  # noqa: E402
from search.cluster import quiet_ray, start_ray  # noqa: E402
from search.spec import ExperimentSpec  # noqa: E402
from search.tuner import run_search  # noqa: E402
from trainables import metrics  # noqa: E402
from trainables.config import ConfigError, TrialConfig  # noqa: E402
from trainables.data import load_dataset  # noqa: E402
from trainables.trainer import Trainer  # noqa: E402

VARIANTS = ("new", "today", "plain")
EPS = 8 / 255
SPACE = {"depth": [10, 16, 22], "width": [1, 3], "train_eps": [2 / 255, 10 / 255],
         "train_steps": [1, 3]}  # lists are [low, high] for the ranges
REFERENCES = {"zero": 0.0, "chance": 0.1}  # reference accuracies of the hypervolume


def trial_base(args: argparse.Namespace) -> dict[str, Any]:
    """The fixed part of every trial, as a TrialConfig dict."""
    return {
        "data": {"dataset": "cifar10", "data_dir": args.data_dir,
                 "train_subset": args.train_subset, "val_size": args.val_size},
        "training": {"method": "pgd", "epochs": args.epochs, "batch_size": 32, "lr": 0.05,
                     "schedule": "cosine"},
        "threat_model": {"epsilons": ["8/255"], "steps": args.eval_steps, "batch_size": 250},
        "threads": 1,
    }


def project_spec(args: argparse.Namespace, variant: str, seed: int, budget_s: float,
                 name: str) -> ExperimentSpec:
    base = trial_base(args)
    raw: dict[str, Any] = {
        "name": name, "data": base["data"], "threat_model": base["threat_model"],
        "training": base["training"],
        "space": {"depth": SPACE["depth"],
                  "width": {"low": SPACE["width"][0], "high": SPACE["width"][1]},
                  "train_eps": {"low": SPACE["train_eps"][0], "high": SPACE["train_eps"][1]},
                  "train_steps": {"low": SPACE["train_steps"][0], "high": SPACE["train_steps"][1]}},
        "budget": {"time": budget_s, "max_trials": 1000, "max_concurrent": 1},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "searcher": {"seed": seed},
        "storage": {"path": str(args.storage)},
    }
    if variant == "today":  # the search as it was before it knew its budget
        raw["searcher"] = {"kind": "tpe", "seed": seed, "n_startup_trials": 8}
        raw["scheduler"] = {"kind": "mo-asha", "grace_period": 1, "noise_z": 0}
        raw["budget"]["only_finishable"] = False
    return ExperimentSpec.from_dict(raw)


def measure_t_max(args: argparse.Namespace) -> float:
    """Seconds to train the priciest configuration to full fidelity here: one epoch (with its
    evaluation) measured, times the epochs."""
    base = trial_base(args)
    cfg = TrialConfig.from_dict({
        **base, "model": {"depth": max(SPACE["depth"]), "width": SPACE["width"][1]},
        "training": {**base["training"], "eps": EPS, "steps": SPACE["train_steps"][1]}})
    start = time.perf_counter()
    Trainer(cfg).run_epoch()
    return args.epochs * (time.perf_counter() - start)


def ensure(args: argparse.Namespace, variant: str, seed: int, budget_s: float, tag: str) -> Path:
    """Run one search unless its folder already holds a finished one."""
    name = f"{tag}-{variant}-seed{seed}"
    folder = Path(args.storage) / name
    done = folder / "done.json"
    if done.exists():
        return folder
    if folder.exists():
        import shutil

        shutil.rmtree(folder)  # an interrupted run: start it again
    print(f"[{time.strftime('%H:%M:%S')}] {name}: {budget_s:.0f} s", flush=True)
    if variant == "plain":
        run_plain(base=trial_base(args), space=SPACE, budget_s=budget_s, seed=seed,
                  storage=str(args.storage), name=name)
    else:
        run_search(project_spec(args, variant, seed, budget_s, name))
    done.write_text(json.dumps({"budget_s": budget_s}))
    return folder


def measure(folder: Path, ref_params: float) -> dict[str, Any]:
    """Hypervolumes, full-fidelity models and unfinished spend of one run folder."""
    run = load_run(folder)
    trials = run.trials
    acc = metrics.best_robust_acc_key(EPS)
    full = run.full_fidelity
    front = pareto_front(full, acc_col=acc) if len(full) else full
    points = front[[metrics.PARAMS, acc]].to_numpy(float) if len(front) else np.zeros((0, 2))
    wall = trials[metrics.WALL_TIME_S].fillna(0.0) if len(trials) else trials
    spent = float(wall.sum()) if len(trials) else 0.0
    unfinished = float(wall[~trials["full_fidelity"]].sum()) if len(trials) else 0.0
    return {
        "hypervolume": {k: hypervolume_2d(points, ref_params=ref_params, ref_acc=a)
                        if len(points) else 0.0 for k, a in REFERENCES.items()},
        "trials": int(len(trials)), "full_fidelity": int(len(full)),
        "front": [[int(p), float(a)] for p, a in points],
        "models": sorted({str(w) for w in full[metrics.WRN]}) if len(full) else [],
        "trial_seconds": spent, "unfinished_seconds": unfinished,
    }


# --------------------------------------------------------------------------- output


def tables(summary: dict[str, Any]) -> str:
    here = summary.get("t_max_here_s")
    lines = [f"T_max (priciest configuration, full fidelity, {'given' if here else 'measured'}) "
             f"= {summary['t_max_s']:.0f} s; reference point: params "
             f"{summary['ref_params']:,.0f} (2 x the largest model), accuracy 0 (and 0.1)."]
    if here:
        lines[0] += (f" The budgets were set from a T_max given with --t-max; measured on this "
                     f"machine after the runs it is {here:.0f} s, and the shares below are of that.")
    for budget in summary["budgets"]:
        share = here / budget["budget_s"] if here else budget["t_max_share"]
        lines += ["", f"### Budget {budget['budget_s']:.0f} s: T_max is "
                  f"{share:.0%} of it ({budget['kind']})", "",
                  "| variant | hypervolume per seed (ref acc 0) | mean | ref acc 0.1: mean "
                  "| full-fidelity models per seed | unfinished share of trial time |",
                  "|---|---|---:|---:|---|---|"]
        for variant, row in budget["variants"].items():
            hv = row["hypervolume"]["zero"]
            lines.append(
                f"| {variant} | {', '.join(f'{v:.4f}' for v in hv)} | {np.mean(hv):.4f} | "
                f"{np.mean(row['hypervolume']['chance']):.4f} | "
                f"{', '.join(str(n) for n in row['full_fidelity'])} | "
                f"{', '.join(f'{u:.0%}' for u in row['unfinished_share'])} |")
        lines.append("")
        for other in ("plain", "today"):
            ratio = budget["ratios"].get(other)
            if ratio is not None:
                lines.append(f"- new / {other}: mean hypervolume ratio {_ratio(ratio['mean'])} "
                             f"(per seed: {', '.join(_ratio(r) for r in ratio['per_seed'])})")
        lines += _ceiling(budget)
    return "\n".join(lines)


def _ceiling(budget: dict[str, Any]) -> list[str]:
    """How far any search could have beaten the plain script, as far as the pooled runs know."""
    best = budget.get("best_known")
    plain = budget["variants"].get("plain", {}).get("hypervolume", {}).get("zero")
    if not best or not best["front"]:
        return []
    front = ", ".join(f"{p / 1e6:.2f}M params {a:.1%}" for p, a in best["front"])
    lines = [f"- best known front ({best['full_fidelity']} full-fidelity models of "
             f"{best['runs']} runs pooled): {front}; hypervolume {best['hypervolume']:.4f}"]
    if plain:
        lines.append("- ceiling on new / plain that the best known front allows: mean "
                     f"{_ratio(_divide(best['hypervolume'], float(np.mean(plain))))} (per seed: "
                     f"{', '.join(_ratio(_divide(best['hypervolume'], h)) for h in plain)})")
    return lines


def _ratio(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f}x"


def summarise(runs: dict[str, dict[str, Any]], budgets: Sequence[dict[str, Any]],
              seeds: Sequence[int], t_max: float, ref_params: float) -> dict[str, Any]:
    out = []
    for b in budgets:
        table: dict[str, Any] = {}
        for variant in VARIANTS:
            rows = [runs.get(f"{b['tag']}-{variant}-seed{s}") for s in seeds]
            rows = [r for r in rows if r is not None]
            if not rows:
                continue
            table[variant] = {
                "hypervolume": {k: [r["hypervolume"][k] for r in rows] for k in REFERENCES},
                "full_fidelity": [r["full_fidelity"] for r in rows],
                "trials": [r["trials"] for r in rows],
                "unfinished_share": [r["unfinished_seconds"] / r["trial_seconds"]
                                     if r["trial_seconds"] else 0.0 for r in rows],
            }
        ratios = {}
        new = table.get("new", {}).get("hypervolume", {}).get("zero")
        for other in ("plain", "today"):
            base = table.get(other, {}).get("hypervolume", {}).get("zero")
            if new and base and len(new) == len(base):
                ratios[other] = {"mean": _divide(np.mean(new), np.mean(base)),
                                 "per_seed": [_divide(a, c) for a, c in zip(new, base, strict=True)]}
        pooled = [runs[k] for k in runs if k.startswith(f"{b['tag']}-")]
        out.append({**b, "variants": table, "ratios": ratios,
                    "best_known": best_known(pooled, ref_params)})
    return {"t_max_s": t_max, "ref_params": ref_params, "budgets": out}


def best_known(runs: Sequence[dict[str, Any]], ref_params: float) -> dict[str, Any]:
    """The front of every full-fidelity model any run at one budget trained, all variants and
    seeds pooled: the best front known for the setting, so `hypervolume / a run's` bounds from
    below how far the best search could have beaten that run (a ceiling on the ratio that no
    search reaches without a model better than all of them)."""
    points = np.array([p for r in runs for p in r["front"]], dtype=float).reshape(-1, 2)
    models = sum(r["full_fidelity"] for r in runs)
    if not len(points):
        return {"hypervolume": 0.0, "runs": len(runs), "full_fidelity": int(models), "front": []}
    front = np.unique(points[non_dominated_sort(points, (False, True)) == 0], axis=0)
    return {"hypervolume": hypervolume_2d(points, ref_params=ref_params), "runs": len(runs),
            "full_fidelity": int(models), "front": [[int(p), float(a)] for p, a in front]}


def rerender(record: dict[str, Any]) -> dict[str, Any]:
    """The summary of an earlier `--json` record, recomputed from its runs (so records written
    before a row was added to the tables still show it)."""
    old, runs = record["summary"], record["runs"]
    budgets = [{k: v for k, v in b.items() if k not in ("variants", "ratios", "best_known")}
               for b in old["budgets"]]
    seeds = sorted({int(name.rsplit("-seed", 1)[1]) for name in runs})
    return {**summarise(runs, budgets, seeds, old["t_max_s"], old["ref_params"]),
            **({"t_max_here_s": old["t_max_here_s"]} if "t_max_here_s" in old else {})}


def _divide(a: float, b: float) -> float:
    return float(a / b) if b > 0 else (math.inf if a > 0 else 1.0)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/data/cifar10-jpeg.tar.gz",
                   help="CIFAR-10: the JPEG archive, an ImageFolder or a torchvision copy")
    p.add_argument("--train-subset", type=int, default=1000,
                   help="stratified training images, validation included")
    p.add_argument("--val-size", type=int, default=250, help="validation images (selection)")
    p.add_argument("--epochs", type=int, default=3, help="full fidelity")
    p.add_argument("--eval-steps", type=int, default=5, help="PGD steps of the validation attack")
    p.add_argument("--seeds", type=int, default=3, help="searcher seeds per variant and budget")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first searcher seed (to add seeds to an earlier benchmark)")
    p.add_argument("--tight", default="1.0,0.25",
                   help="tight budgets, as T_max's share of the budget (comma-separated)")
    p.add_argument("--large", type=float, default=0.09,
                   help="the larger budget, as T_max's share of it (0: skip)")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--t-max", type=float, default=None,
                   help="seconds: set the budgets from this T_max (e.g. to continue a "
                        "benchmark); T_max is still measured after the runs and the shares "
                        "are reported of that")
    p.add_argument("--storage", default="runs/bench/budget",
                   help="run folders (kept; finished runs there are read, not re-run)")
    p.add_argument("--json", default=None, help="write every run's figures and the summary here")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the tables of an earlier --json file and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        print(tables(rerender(json.loads(Path(args.render).read_text()))))
        return 0
    args.storage = Path(args.storage).resolve()
    args.storage.mkdir(parents=True, exist_ok=True)
    args.data_dir = str(Path(args.data_dir).resolve())
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"--variants: {variants} not allowed; allowed: {', '.join(VARIANTS)}")
    torch.set_num_threads(1)
    quiet_ray()
    # Ray runs trial workers at niceness 15 by default; T_max is measured in this process at 0.
    # Equal priority keeps T_max and the trials comparable (and other work on the machine
    # from starving the trials).
    os.environ.setdefault("RAY_worker_niceness", "0")
    facts = machine_facts(torch=torch.__version__, ray=ray.__version__)
    load_dataset(TrialConfig.from_dict(trial_base(args)).data)  # decode once, outside timings
    t_max = args.t_max or measure_t_max(args)
    print(f"T_max = {t_max:.0f} s", flush=True)
    shares = [float(x) for x in args.tight.split(",") if x.strip()]
    budgets = [{"tag": f"tight{s:g}", "kind": "tight", "t_max_share": s, "budget_s": t_max / s}
               for s in shares]
    if args.large > 0:
        budgets.append({"tag": f"large{args.large:g}", "kind": "large",
                        "t_max_share": args.large, "budget_s": t_max / args.large})
    ref_params = REF_PARAMS_FACTOR * count_parameters(max(SPACE["depth"]), SPACE["width"][1])
    start_ray(None, num_cpus=1)
    # The plain script's trainable lives in a sibling file Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(plain_tune_search)
    runs: dict[str, dict[str, Any]] = {}
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    try:
        for b in budgets:
            for seed in seeds:
                k = seed % len(variants)
                for variant in variants[k:] + variants[:k]:
                    folder = ensure(args, variant, seed, b["budget_s"], b["tag"])
                    runs[folder.name] = measure(folder, ref_params)
                    print(f"  {folder.name}: {runs[folder.name]['full_fidelity']} full fidelity, "
                          f"HV {runs[folder.name]['hypervolume']['zero']:.4f}", flush=True)
    finally:
        ray.shutdown()
    summary = summarise(runs, budgets, seeds, t_max, ref_params)
    if args.t_max:  # a T_max from another machine or day would mislabel every budget's share
        summary["t_max_here_s"] = measure_t_max(args)
    facts["load_average_end"] = list(os.getloadavg())
    print("\n" + tables(summary))
    write_results(args.json, facts, args, summary, runs)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ConfigError as exc:  # a bad --data-dir or setting: one line, no traceback
        sys.exit(f"error: {exc}")
