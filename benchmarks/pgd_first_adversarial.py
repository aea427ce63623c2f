"""How much keeping PGD's last iterate flattered robust accuracy, on a real checkpoint.

PGD used to return each example's last iterate: an example fooled at step 3 and classified
correctly again at step 10 counted as robust. It now keeps the first adversarial iterate
(`trainables.attacks.PGD(freeze_fooled=True)`, as Rice et al. 2020 evaluate). This script
attacks one checkpoint both ways, with the same random starts, and prints the difference:

- the validation objective: the threat model's PGD-k on the validation split, as
  `Trainer.evaluate` runs it (its first `threat_model.max_examples` images);
- the test figures of `wrn-search evaluate`: the search's PGD-k and the strong PGD
  (50 steps x 5 restarts by default) on the first `--n` test images;
- with `--search-steps 5,2`, the same two for other search attacks (fewer steps mean a
  larger default step, 2.5 * eps / steps, and more iterates that overshoot).

For each it prints the robust accuracy with the last iterate, with the first adversarial
iterate, the change in points, how many images only the first-iterate attack fools, and
how many only the last-iterate one fools (0 by construction: same random starts, same
steps until an example is fooled).

Usage:

    python benchmarks/pgd_first_adversarial.py CHECKPOINT_DIR \
        --data-dir /path/to/cifar10-jpeg.tar.gz --n 1000 --threads 1 [--search-steps 5,2] [--json OUT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_facts  # noqa: E402

from trainables import (
    formats,  # noqa: E402
)
from trainables.attacks import L2PGD, PGD, predict, robust_correct  # noqa: E402
from trainables.checkpoint import load_best_model, load_file  # noqa: E402
from trainables.config import TrialConfig  # noqa: E402
from trainables.data import load_dataset  # noqa: E402
from trainables.run_files import BEST_FILE  # noqa: E402
from trainables.trainer import resolve_device  # noqa: E402


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="a folder holding best_model.pt")
    p.add_argument("--data-dir", help="override the checkpoint's data.data_dir")
    p.add_argument("--n", type=int, default=1000, help="test images (the first N)")
    p.add_argument("--search-steps", default="",
                   help="comma-separated PGD step counts to measure besides the threat model's")
    p.add_argument("--strong-steps", type=int, default=50)
    p.add_argument("--strong-restarts", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="write every row and the machine facts here")
    return p.parse_args(argv)


def _robust(model: torch.nn.Module, cls: type[PGD], x: torch.Tensor, y: torch.Tensor, eps: float,
            steps: int, restarts: int, freeze: bool, args: argparse.Namespace) -> tuple[torch.Tensor, float]:
    gen = torch.Generator(device=x.device).manual_seed(args.seed)
    attack = cls(model, eps, steps=steps, restarts=restarts, generator=gen, freeze_fooled=freeze)
    start = time.perf_counter()
    ok = robust_correct(model, attack, x, y, args.batch_size)
    return ok, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = TrialConfig.from_dict(load_file(args.checkpoint / BEST_FILE)["config"])
    data = cfg.data if args.data_dir is None else dataclasses.replace(cfg.data, data_dir=args.data_dir)
    splits = load_dataset(data, with_test=True)
    model, info = load_best_model(args.checkpoint, device)
    tm = cfg.threat_model
    n_val = len(splits.val.y) if tm.max_examples is None else min(tm.max_examples, len(splits.val.y))
    sets = {"validation": (splits.val.x[:n_val], splits.val.y[:n_val]),
            "test": (splits.test.x[:args.n], splits.test.y[:args.n])}
    cls = L2PGD if tm.norm == "l2" else PGD
    searches = [(tm.steps, tm.restarts)] + [(int(k), tm.restarts) for k in args.search_steps.split(",")
                                            if k.strip() and int(k) != tm.steps]
    plan = [(split, role, search) for search in searches
            for split, role in (("validation", "objective"), ("test", "search PGD"))]
    plan.append(("test", "strong PGD", (args.strong_steps, args.strong_restarts)))
    rows: list[dict[str, Any]] = []
    print(f"{cfg.model.depth}-{cfg.model.width} checkpoint epoch {info['epoch']}; "
          f"{cfg.data.dataset}; norm {tm.norm}")
    print(f"{'split':<10} {'attack':<22} {'eps':>6} {'n':>5} {'clean':>6} {'last':>6} {'first':>6} "
          f"{'change':>7} {'only first':>10} {'only last':>9} {'seconds':>8}")
    for split, role, (steps, restarts) in plan:
        xu8, y = sets[split]
        x, y = xu8.to(device).float().div_(255), y.to(device)
        for eps in tm.epsilons:
            last, t_last = _robust(model, cls, x, y, eps, steps, restarts, False, args)
            first, t_first = _robust(model, cls, x, y, eps, steps, restarts, True, args)
            clean = (predict(model, x, args.batch_size) == y).float().mean().item()
            label = f"PGD-{steps}" + (f"x{restarts}" if restarts > 1 else "")
            row = {"split": split, "role": role, "attack": label, "eps": eps, "n": len(y),
                   "clean_acc": clean, "last_iterate_acc": last.float().mean().item(),
                   "first_adversarial_acc": first.float().mean().item(),
                   "only_first_fools": int((last & ~first).sum()),
                   "only_last_fools": int((first & ~last).sum()),
                   "seconds_last": t_last, "seconds_first": t_first}
            rows.append(row)
            change = 100 * (row["first_adversarial_acc"] - row["last_iterate_acc"])
            print(f"{split:<10} {role + ' ' + label:<22} {formats.eps_label(eps):>6} {len(y):>5} "
                  f"{100 * clean:>5.1f}% {100 * row['last_iterate_acc']:>5.1f}% "
                  f"{100 * row['first_adversarial_acc']:>5.1f}% {change:>+6.1f}p "
                  f"{row['only_first_fools']:>10} {row['only_last_fools']:>9} "
                  f"{t_last + t_first:>8.0f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine_facts(threads=args.threads),
                                         "checkpoint": str(args.checkpoint), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
