"""`wrn-search`: the only place that prints for humans.

Every bad input ends with one line on stderr ("wrn-search: error: <field>: <value> ...")
and exit status 2; Ctrl-C ends with status 130 after the run state is saved. The exit
statuses below are the only ones, each listed in README.md ("Exit status").
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from search.cluster import check_dashboard, prefer_loopback, quiet_ray
from trainables import formats
from trainables.config import ConfigError, NotARunError, RayStartError

EXIT_OK = 0  # done; a search finished or spent its budget, with at least one trial's results
EXIT_NO_RESULT = 1  # a search ended without a trial's results: every trial errored, or none ran
EXIT_USAGE = 2  # bad input: a setting, a flag, a spec, a path that is not a folder
EXIT_NOT_A_RUN = 3  # RUN_DIR is a folder that holds no run (status, report, resume, ...)
EXIT_RAY_START = 4  # Ray did not start on this machine (often overload): nothing written; retry
EXIT_INTERRUPTED = 130  # Ctrl-C, or a search stopped before it ended: `resume` continues it


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _say(text: str = "") -> None:
    """Print a line for the user; a URI's credentials in it are masked."""
    print(formats.mask_secrets(text), flush=True)


class _StatusPrinter:
    """The live status line: redrawn in place on a terminal; in a log, a line when the
    trial counts change or every `log_every_s` seconds."""

    def __init__(self, log_every_s: float = 30.0) -> None:
        self.tty = sys.stderr.isatty()
        self.log_every_s = log_every_s
        self.last_counts = ""
        self.last_time = 0.0

    def __call__(self, line: str) -> None:
        import time

        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            sys.stderr.flush()
            return
        counts = "|".join(line.split("|")[1:3])  # trials and front; not the clocks
        if counts != self.last_counts or time.time() - self.last_time >= self.log_every_s:
            self.last_counts, self.last_time = counts, time.time()
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# ------------------------------------------------------------------------- train
def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train one WRN config adversarially (no search)",
                       description="Train and evaluate one WRN-d-k, epoch by epoch.")
    d = p.add_argument_group("data")
    d.add_argument("--dataset",
                   help="cifar10, cifar10-sample (bundled, offline), cifar100, svhn")
    d.add_argument("--data-dir", help="folder or .tar.gz holding the dataset")
    d.add_argument("--download", action="store_true", help="allow torchvision to download")
    d.add_argument("--train-subset", type=int, help="stratified subset of the training split")
    d.add_argument("--val-size", type=float,
                   help="validation split: a count, or a fraction < 1 (default 0.1)")
    m = p.add_argument_group("model")
    m.add_argument("--depth", type=int, help="6n+4: 10, 16, 22, 28, 34, 40, ...")
    m.add_argument("--width", type=int, help="widening factor k >= 1")
    m.add_argument("--dropout", type=float)
    t = p.add_argument_group("training")
    t.add_argument("--method", help="pgd, fgsm-rs, fgsm-mix, clean")
    t.add_argument("--epsilon", help="training epsilon: 8/255 or 0.0314")
    t.add_argument("--steps", type=int, help="PGD steps (pgd)")
    t.add_argument("--alpha", help="attack step size (default 2.5*eps/steps; 1.25*eps fgsm-rs)")
    t.add_argument("--norm", help="linf or l2 (training and evaluation)")
    t.add_argument("--mix-weight", type=float, help="fgsm-mix clean-loss weight")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--momentum", type=float)
    t.add_argument("--weight-decay", type=float)
    t.add_argument("--schedule", help="cosine, piecewise, onecycle")
    t.add_argument("--warmup-epochs", type=float)
    t.add_argument("--label-smoothing", type=float)
    t.add_argument("--seed", type=int)
    e = p.add_argument_group("evaluation (the threat model)")
    e.add_argument("--eval-epsilon", action="append",
                   help="eval epsilon, repeatable (default: 8/255, or 0.5 for l2); the first one "
                        "is selected on")
    e.add_argument("--eval-steps", type=int)
    e.add_argument("--eval-restarts", type=int)
    e.add_argument("--eval-max-examples", type=int,
                   help="attack at most this many validation images per epoch")
    r = p.add_argument_group("run")
    r.add_argument("--device", help="auto, cpu, cuda")
    r.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    r.add_argument("--threads", type=int, help="CPU threads for torch")
    r.add_argument("--out", help="output folder (default runs/train-WRN-d-k-METHOD)")
    r.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    p.set_defaults(func=_cmd_train)


def _number_or_text(text: str | None) -> float | str | None:
    """L2 budgets are plain numbers; L-inf ones may be fractions like 8/255 (parsed later)."""
    try:
        return float(text) if text is not None else None
    except ValueError:
        return text


def _train_config(a: argparse.Namespace) -> Any:
    """The TrialConfig of `train`'s flags; a flag not given leaves the dataclass default."""
    from trainables.config import TrialConfig

    l2 = a.norm == "l2"
    eval_eps = a.eval_epsilon or (["0.5"] if l2 else None)
    if l2:
        a.epsilon, a.alpha = _number_or_text(a.epsilon), _number_or_text(a.alpha)
        eval_eps = [_number_or_text(e) for e in eval_eps]
    val_size = a.val_size
    if val_size is not None and float(val_size).is_integer():
        val_size = int(val_size)

    def given(**values: Any) -> dict[str, Any]:
        return {k: v for k, v in values.items() if v is not None}

    return TrialConfig.from_dict({
        "data": given(dataset=a.dataset, data_dir=a.data_dir, download=a.download or None,
                      train_subset=a.train_subset, val_size=val_size, seed=a.seed),
        "model": given(depth=a.depth, width=a.width, dropout=a.dropout),
        "training": given(method=a.method, norm=a.norm, eps=a.epsilon, steps=a.steps,
                          alpha=a.alpha, mix_weight=a.mix_weight, epochs=a.epochs,
                          batch_size=a.batch_size, lr=a.lr, momentum=a.momentum,
                          weight_decay=a.weight_decay, schedule=a.schedule,
                          warmup_epochs=a.warmup_epochs, label_smoothing=a.label_smoothing,
                          seed=a.seed),
        "threat_model": given(norm=a.norm, epsilons=tuple(eval_eps) if eval_eps else None,
                              steps=a.eval_steps, restarts=a.eval_restarts,
                              max_examples=a.eval_max_examples),
        **given(device=a.device, compile=a.compile or None, threads=a.threads),
    })


def _epoch_line(row: dict[str, Any], epochs: int, eps: Sequence[float]) -> str:
    from trainables import metrics as M

    robust = "  ".join(f"robust@{formats.eps_label(e)} {100 * row[M.robust_acc_key(e)]:.1f}%"
                       for e in eps)
    return (f"epoch {row[M.EPOCHS_DONE]:>3}/{epochs}  loss {row[M.TRAIN_LOSS]:.3f}  "
            f"train acc {100 * row[M.TRAIN_ACC]:.1f}%  val clean {100 * row[M.VAL_CLEAN_ACC]:.1f}%"
            f"  {robust}  (best {100 * row[M.BEST_VAL_ROBUST_ACC]:.1f}% @{row[M.BEST_EPOCH]})  "
            f"{row[M.TRAIN_IMAGES_PER_S]:.0f} img/s  {row[M.EPOCH_TIME_S] + row[M.EVAL_TIME_S]:.1f}s")


def _cmd_train(a: argparse.Namespace) -> int:
    from trainables.train_folder import TrainRun

    cfg = _train_config(a)
    out = Path(a.out or f"runs/train-WRN-{cfg.model.depth}-{cfg.model.width}-"
                       f"{cfg.training.method}")
    run = TrainRun(cfg, out, resume=a.resume)
    if run.trainer.done:
        raise ConfigError(f"--resume: {str(out)!r} already finished its "
                          f"{cfg.training.epochs} epochs; nothing to resume")
    facts = run.trainer.static_facts()
    _say(f"{facts['wrn']} ({facts['params']:,} parameters) on {cfg.data.dataset}: "
         f"{len(run.trainer.train_loader) * cfg.training.batch_size:,} training / "
         f"{run.trainer.val_x.shape[0]:,} validation images, device {run.trainer.device}"
         + (f", resuming after epoch {run.trainer.epoch}" if run.trainer.epoch else ""))
    for row in run.epochs(show_progress=sys.stderr.isatty()):
        _say(_epoch_line(row, cfg.training.epochs, cfg.threat_model.epsilons))
    _say(run.summary())
    _say(f"wrote {out}/: metrics.csv, metrics.jsonl, config.json, checkpoint/ "
         f"(state.pt, best_model.pt), tensorboard/")
    return EXIT_OK


# ------------------------------------------------------------------------ search
RUN_DIR_HELP = "the run folder, or its URI (s3://bucket/runs/NAME: see README, object storage)"


def _add_search(sub: Any) -> None:
    p = sub.add_parser("run", help="run a budgeted search from a TOML spec",
                       description="Search WRN depth, width, training epsilon and steps.")
    p.add_argument("spec", help="experiment spec (TOML), e.g. configs/quickstart.toml")
    p.add_argument("--name", help="run name (default: the spec's name)")
    p.add_argument("--budget", help="wall-clock budget, e.g. 90s, 10m, 2h (default: the spec's)")
    p.add_argument("--storage", help="parent folder or URI of run directories")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                   help="join a Ray cluster: auto or HOST:PORT (default: $RAY_ADDRESS, as Ray's "
                        "own tools and `ray job submit` set it; else start one)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the validated spec, the space and its parameter range; run nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the embedded Ray's dashboard on 127.0.0.1 and print its URL "
                        "(needs the dashboard extra; not with --address)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("resume", help="continue an interrupted search with its remaining budget, "
                                      "or extend an ended one (--budget, --max-trials)")
    p.add_argument("run_dir", help="the run directory, e.g. runs/quickstart")
    p.add_argument("--budget", help="more budget: +2h adds to the run's budget, 5h is the new "
                                    "total; continues a finished or budget-exhausted search")
    p.add_argument("--max-trials", help="more trials: +10 adds to the run's trial cap, 50 is the "
                                        "new cap; continues a finished search")
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                   help="join a Ray cluster: auto or HOST:PORT (default: $RAY_ADDRESS, as Ray's "
                        "own tools and `ray job submit` set it; else start one)")
    p.add_argument("--no-report", action="store_true")
    p.add_argument("--dashboard", action="store_true",
                   help="serve the embedded Ray's dashboard on 127.0.0.1 and print its URL "
                        "(needs the dashboard extra; not with --address)")
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("status", help="trials by state, budget used and the best-so-far front")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.set_defaults(func=_cmd_status)

    p = sub.add_parser("evaluate", help="strong attacks on the test split for front models",
                       description="Re-attack best-validation checkpoints on the TEST split with "
                                   "strong attacks; run sanity checks; store results in the run.")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--front", action="store_true", help="every front member (the default)")
    which.add_argument("--trial", action="append", dest="trials", metavar="ID",
                       help="a trial id, repeatable")
    p.add_argument("--attacks", default="pgd,autoattack",
                   help="comma-separated: pgd (many steps, restarts), autoattack, fgsm "
                        "(default pgd,autoattack)")
    p.add_argument("--n", type=int, help="evaluate only the first N test images (says so)")
    p.add_argument("--corruptions", action="store_true",
                   help="also measure how often JPEG, blur, noise and contrast destroy the "
                        "adversarial examples (Kurakin et al. 2017)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, help="CPU threads for torch (1 is fastest on busy cores)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("export", help="one model as a torch.export program with a model card",
                       description="Write a model that loads with torch alone (torch.export), "
                                   "its model card and a standalone evaluation script.")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", metavar="ID", help="the trial to export")
    which.add_argument("--knee", action="store_true",
                       help="the knee of the robust front (best trade-off of size and robustness)")
    p.add_argument("--out", help="output folder (default RUN_DIR/export/<trial id>)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("report", help="write the Pareto report (HTML, Markdown, CSV)")
    p.add_argument("run_dir", help=RUN_DIR_HELP)
    p.add_argument("--out", help="output folder (default RUN_DIR/report)")
    p.add_argument("--format", default="html,md,csv",
                   help="comma-separated: html, md, csv, parquet (default html,md,csv)")
    p.set_defaults(func=_cmd_report)


def _outcome_lines(outcome: Any) -> None:
    _say(f"search {outcome.state.replace('_', ' ')}: {outcome.trials} trials "
         f"({outcome.errored} errored) in {outcome.elapsed_s:.0f}s; results in {outcome.run_dir}")
    if outcome.state == "interrupted":
        _say(f"continue it with: wrn-search resume {outcome.run_dir}")
    elif outcome.errored >= outcome.trials:
        _say("no trial produced results: " + ("every trial errored (the report lists why)"
                                             if outcome.trials else "none could start"))


def _report_after(run_dir: str, skip: bool) -> None:
    if skip:
        return
    from analysis.remote import run_folder
    from analysis.report import write_report

    with run_folder(run_dir) as run:  # a run on object storage: mirrored, report uploaded
        files = write_report(run.local, location=run.display)
    _say("report: " + ", ".join(run.where(f) for f in files))


def _cmd_run(a: argparse.Namespace) -> int:
    from search.spec import load_spec
    from search.tuner import STORAGE_FIELD, absolute_storage, run_search, spec_summary
    from trainables.data import load_dataset
    from trainables.run_files import check_storage

    spec = load_spec(a.spec, name=a.name, **{"budget.time": a.budget, "storage.path": a.storage})
    if a.dry_run:
        _say(json.dumps(spec_summary(spec), indent=2))
        return EXIT_OK
    if a.dashboard:
        check_dashboard(a.address)
    check_storage(absolute_storage(spec.storage.path), STORAGE_FIELD)  # before decoding data
    if not a.address:
        load_dataset(spec.data)  # decode and cache once, and fail before Ray if data is missing
    return _searching(lambda printer: run_search(
        spec, address=a.address, spec_text=Path(a.spec).read_text("utf-8"), printer=printer,
        dashboard=a.dashboard, announce=_say), a.no_report)


def _searching(search: Any, no_report: bool) -> int:
    """Run a search with the live status line; then its closing lines and the report."""
    printer = _StatusPrinter()
    try:
        outcome = search(printer)
    finally:
        printer.close()
    _outcome_lines(outcome)
    _report_after(outcome.run_dir, no_report)
    return search_status(outcome)


def search_status(outcome: Any) -> int:
    """The exit status of a search that ran: interrupted, without any trial's results, or ok."""
    if outcome.state == "interrupted":
        return EXIT_INTERRUPTED
    return EXIT_NO_RESULT if outcome.errored >= outcome.trials else EXIT_OK


def _cmd_resume(a: argparse.Namespace) -> int:
    from search.tuner import resume_search

    if a.dashboard:
        check_dashboard(a.address)
    return _searching(lambda printer: resume_search(a.run_dir, address=a.address, printer=printer,
                                                    budget=a.budget, max_trials=a.max_trials,
                                                    dashboard=a.dashboard, announce=_say),
                      a.no_report)


def _cmd_status(a: argparse.Namespace) -> int:
    from analysis.remote import run_folder
    from analysis.status import status_text

    with run_folder(a.run_dir) as run:
        _say(run.show(status_text(run.local)))
    return EXIT_OK


def _cmd_evaluate(a: argparse.Namespace) -> int:
    from analysis.remote import run_folder
    from search.final_evaluation import evaluate_run

    if a.threads is not None:
        if a.threads < 1:
            raise ConfigError(f"--threads: {a.threads} is not allowed; must be >= 1")
        import torch

        torch.set_num_threads(a.threads)
    attacks = [x.strip() for x in a.attacks.split(",") if x.strip()]
    with run_folder(a.run_dir, checkpoints=True, adversarial=True) as run:
        summary = evaluate_run(run.local, trial_ids=a.trials, attacks=attacks, n=a.n,
                               corruptions=a.corruptions, device=a.device,
                               batch_size=a.batch_size, printer=run.printer(_say))
    for line in summary:
        _say(run.show(line))
    _uploaded(run)
    return EXIT_OK


def _uploaded(run: Any) -> None:
    """Say where a remote run's new files went (nothing for a local run)."""
    if run.uri is not None:
        _say(f"uploaded {len(run.uploaded)} files under {run.display}/")


def _cmd_export(a: argparse.Namespace) -> int:
    from analysis.remote import check_out, run_folder
    from search.export import export_model

    check_out(a.out)
    with run_folder(a.run_dir, checkpoints=True) as run:
        export_model(run.local, trial_id=a.trial, knee=a.knee, out=a.out,
                     printer=run.printer(_say))
    _uploaded(run)
    return EXIT_OK


def _cmd_report(a: argparse.Namespace) -> int:
    from analysis.remote import check_out, run_folder
    from analysis.report import write_report

    check_out(a.out)
    chosen = [f.strip() for f in a.format.split(",") if f.strip()]
    with run_folder(a.run_dir) as run:
        files = write_report(run.local, Path(a.out) if a.out else None, chosen,
                             location=run.display)
    for f in files:
        _say(run.where(f))
    return EXIT_OK


# -------------------------------------------------------------------------- main
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("wrn-search")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wrn-search", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"wrn-search {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub)
    _add_search(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    quiet_ray()
    if not getattr(args, "address", None):
        prefer_loopback()
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"wrn-search: error: {formats.mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_NOT_A_RUN if isinstance(exc, NotARunError) else EXIT_USAGE
    except RayStartError as exc:
        print(f"wrn-search: error: {formats.mask_secrets(str(exc))}", file=sys.stderr)
        return EXIT_RAY_START
    except KeyboardInterrupt:
        print("wrn-search: interrupted; finished work is saved", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
