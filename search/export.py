"""`wrn-search export`: one model of a run, in a form that leaves the project behind.

A user who found a model wants to use it where this package is not installed: in a
RobustBench evaluation, a notebook, a deployment. So the export is a `torch.export` program
(`model.pt2`: the graph and the weights, loaded by `torch.export.load` with torch alone;
inputs in [0, 1], the CIFAR normalisation inside; batch size free), a model card that says
what the model is and how far to trust its numbers (validation figures from the search, test
figures and sanity-check verdicts from `wrn-search evaluate` when it ran), the same facts as
JSON, and a standalone script that evaluates the program the way RobustBench's `benchmark()`
does (inputs in [0, 1], eval mode, L-inf AutoAttack at 8/255 if `autoattack` is installed).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from analysis import Run, front, load_run
from models import count_parameters, wrn_name
from trainables import formats, run_files
from trainables import metrics as M
from trainables.checkpoint import best_checkpoint, best_config, load_best_model
from trainables.config import ConfigError, TrialConfig, fail, not_a_run

PROGRAM_FILE = "model.pt2"
CARD_FILE = "MODEL_CARD.md"
CARD_JSON = "model_card.json"
SCRIPT_FILE = "evaluate_exported.py"
MAX_BATCH = 1 << 16


def export_model(run_dir: str | Path, *, trial_id: str | None = None, knee: bool = False,
                 out: str | Path | None = None,
                 printer: Callable[[str], None] = print) -> Path:
    """Export the trial `trial_id`, or the knee of the robust front, to `out` (default:
    RUN_DIR/export/<trial id>); returns the folder."""
    run_dir = Path(run_dir)
    if not (run_dir / run_files.DRIVER_DIR).is_dir():
        raise not_a_run(str(run_dir), run_dir.is_dir(), "it holds no wrn-search run (no "
                        f"{run_files.DRIVER_DIR}/ folder)")
    if (trial_id is None) == (not knee):
        raise ConfigError("export: choose one model, --trial ID or --knee")
    run = load_run(run_dir)
    row = choose_trial(run, trial_id)
    checkpoint = best_checkpoint(run_dir / str(row["trial_dir"]))
    if checkpoint is None:
        raise fail("--trial", str(row["trial_id"]), f"its folder holds no checkpoint_*/"
                   f"{run_files.BEST_FILE}")
    model, info = load_best_model(checkpoint)  # a damaged file: one line, not a traceback
    cfg = best_config(checkpoint)
    safe_id = run_files.check_trial_id(str(row["trial_id"]))  # it names files
    folder = Path(out) if out is not None else run_dir / run_files.EXPORT_DIR / safe_id
    run_files.output_dir(run_dir, folder, "--out" if out is not None else "RUN_DIR")
    _save_program(model, folder / PROGRAM_FILE)
    card = model_card(run, row, cfg, info, _test_record(run_dir, safe_id))
    run_files.write_json(folder / CARD_JSON, card)
    run_files.write_text(folder / CARD_FILE, card_markdown(card))
    run_files.write_text(folder / SCRIPT_FILE,
                         _SCRIPT.replace("@EPS@", repr(card["threat_model"]["epsilons"][0])))
    printer(f"exported {card['architecture']['name']} (trial {card['trial_id']}) to {folder}")
    printer(f"  {PROGRAM_FILE}: torch.export.load(path).module() takes images in [0, 1]")
    printer(f"  {CARD_FILE}, {CARD_JSON}: what it is and how it was measured")
    printer(f"  {SCRIPT_FILE}: python {SCRIPT_FILE} [--data-dir DIR] evaluates it without wrn-search")
    return folder


def choose_trial(run: Run, trial_id: str | None) -> Any:
    """The trials-table row of `trial_id`, or of the robust front's knee when None."""
    trials = run.trials
    if trial_id is not None:
        matches = trials[trials["trial_id"].astype(str) == trial_id] if len(trials) else trials
        if matches.empty:
            known = ", ".join(map(str, trials["trial_id"])) if len(trials) else "none"
            raise fail("--trial", trial_id, f"known trials: {known}")
        return matches.iloc[0]
    robust = front(run, run.eval_epsilons[0] if run.eval_epsilons else None)
    if robust.knee is None:
        members = ", ".join(map(str, robust.members["trial_id"])) or "none"
        raise ConfigError(f"--knee: the robust front has no knee (it needs three distinct "
                          f"models, one above the line joining the ends); front members: "
                          f"{members}; name one with --trial ID")
    return robust.knee


def _save_program(model: torch.nn.Module, path: Path) -> None:
    """torch.export with a free batch size, written in one step (temporary file, rename)."""
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    example = torch.rand(2, 3, 32, 32)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes={"x": {0: batch}})
    run_files.write_atomic(path, lambda tmp: torch.export.save(program, tmp))


def _test_record(run_dir: Path, trial_id: str) -> dict[str, Any]:
    record = run_files.read_json_object(run_dir / run_files.EVALUATION_DIR / f"{trial_id}.json")
    return record if isinstance(record.get("per_eps"), dict) else {}


def _number(value: Any) -> float | None:
    return run_files.finite_number(value)


def model_card(run: Run, row: Any, cfg: TrialConfig, info: dict[str, Any],
               test: dict[str, Any]) -> dict[str, Any]:
    """Everything a reader needs to judge the model, as plain JSON."""
    m, t, tm = cfg.model, cfg.training, cfg.threat_model
    validation = {formats.eps_text(e, tm.norm): _number(row.get(M.best_robust_acc_key(e)))
                  for e in tm.epsilons}
    card: dict[str, Any] = {
        "run": str(run.run_dir.name),
        "trial_id": str(row["trial_id"]),
        "architecture": {"name": wrn_name(m.depth, m.width), "depth": m.depth, "width": m.width,
                         "dropout": m.dropout, "classes": cfg.data.num_classes,
                         "parameters": count_parameters(m.depth, m.width, cfg.data.num_classes),
                         "input": "N x 3 x 32 x 32, RGB in [0, 1]; normalisation is inside"},
        "training": {"dataset": cfg.data.dataset, "method": t.method,
                     "eps": formats.eps_text(t.eps, tm.norm), "steps": t.steps,
                     "epochs": t.epochs, "batch_size": t.batch_size, "lr": t.lr,
                     "schedule": t.schedule, "best_epoch": info.get("epoch")},
        "threat_model": {"norm": tm.norm, "epsilons": list(tm.epsilons)},
        "validation": {"split": "validation", "attack": f"PGD-{tm.steps}"
                       + (f"x{tm.restarts}" if tm.restarts > 1 else ""),
                       "clean_acc": _number(row.get(M.BEST_VAL_CLEAN_ACC)),
                       "robust_acc": validation},
        "test": None,
    }
    if test:
        card["test"] = {
            "split": "test", "n": test.get("n"), "subset": test.get("subset"),
            "clean_acc": _number(test.get(M.TEST_CLEAN_ACC)),
            "robust_acc": {str(v.get("label")): _number(v.get("robust_acc"))
                           for v in test["per_eps"].values() if isinstance(v, dict)},
            "attacks": test.get("attacks"), "autoattack": test.get("autoattack"),
            "checks": test.get(M.TEST_CHECKS),
            "gradient_masking_suspected": test.get(M.TEST_MASKING_SUSPECTED),
        }
    return card


def card_markdown(card: dict[str, Any]) -> str:
    a, t, v, test = card["architecture"], card["training"], card["validation"], card["test"]
    lines = [
        f"# {a['name']} (run {card['run']}, trial {card['trial_id']})", "",
        f"- **Architecture:** Wide ResNet, depth {a['depth']}, width {a['width']}, "
        f"{formats.params(a['parameters'])} parameters, {a['classes']} classes, dropout {a['dropout']}.",
        f"- **Input:** {a['input']}.",
        f"- **Training:** {t['method']} on {t['dataset']}, eps {t['eps']}, {t['steps']} attack "
        f"steps, {t['epochs']} epochs, batch {t['batch_size']}, lr {t['lr']} ({t['schedule']}); "
        f"weights of epoch {t['best_epoch']}, the best validation robust accuracy.",
        f"- **Threat model:** {card['threat_model']['norm']}, epsilons "
        + ", ".join(formats.eps_text(e, card['threat_model']['norm'])
                    for e in card['threat_model']['epsilons']) + " (pixel units on [0, 1]).", "",
        f"## Validation (the search's selection split, {v['attack']})", "",
        f"- clean: {formats.percent(v['clean_acc'])}",
        *[f"- robust at {eps}: {formats.percent(acc)}" for eps, acc in v["robust_acc"].items()], "",
        "## Test split (`wrn-search evaluate`)", "",
    ]
    if test is None:
        lines += ["Not evaluated. Validation figures select models; they are not test figures.",
                  "Run `wrn-search evaluate RUN_DIR --trial " + card["trial_id"] + "` and "
                  "export again."]
    else:
        lines += [f"- images: {test['n']}" + (" (a subset of the test split)" if test["subset"] else ""),
                  f"- clean: {formats.percent(test['clean_acc'])}",
                  *[f"- robust at {eps} (per-example minimum over {', '.join(test['attacks'] or [])}): "
                    f"{formats.percent(acc)}" for eps, acc in test["robust_acc"].items()],
                  f"- sanity checks: {test['checks']}"
                  + ("; GRADIENT MASKING SUSPECTED" if test["gradient_masking_suspected"] else "")]
    lines += ["", "## Use", "", "```python", "import torch",
              f'model = torch.export.load("{PROGRAM_FILE}").module()  # torch alone',
              "logits = model(images)  # images: float N x 3 x 32 x 32 in [0, 1]", "```", "",
              f"`python {SCRIPT_FILE}` evaluates it on the CIFAR-10 test split the way "
              "RobustBench's `benchmark()` does.", ""]
    return "\n".join(lines)


_SCRIPT = '''"""Evaluate the exported model with torch and torchvision alone, RobustBench style:
inputs in [0, 1], eval mode, the model's own normalisation; L-inf AutoAttack (standard
version) when the `autoattack` package is installed, else clean accuracy only."""

import argparse
from pathlib import Path

import torch
import torchvision
import torchvision.transforms as T

EPS = @EPS@

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data-dir", default="data", help="torchvision CIFAR-10 folder")
parser.add_argument("--n", type=int, default=1000, help="test images (RobustBench: 10000)")
parser.add_argument("--download", action="store_true")
args = parser.parse_args()

model = torch.export.load(str(Path(__file__).with_name("model.pt2"))).module()
test = torchvision.datasets.CIFAR10(args.data_dir, train=False, transform=T.ToTensor(),
                                    download=args.download)
x = torch.stack([test[i][0] for i in range(args.n)])
y = torch.tensor([test[i][1] for i in range(args.n)])
with torch.no_grad():
    clean = sum((model(xb).argmax(1) == yb).sum().item()
                for xb, yb in zip(x.split(250), y.split(250))) / len(y)
print(f"clean accuracy: {clean:.2%} on {len(y)} test images")
try:
    from autoattack import AutoAttack
except ImportError:
    print("pip install autoattack (or pyautoattack) for the robust accuracy")
else:
    adversary = AutoAttack(model, norm="Linf", eps=EPS, version="standard")
    x_adv = adversary.run_standard_evaluation(x, y, bs=250)
    with torch.no_grad():
        robust = (model(x_adv).argmax(1) == y).float().mean().item()
    print(f"AutoAttack robust accuracy at eps={EPS:.4f}: {robust:.2%}")
'''

