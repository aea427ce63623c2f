"""`wrn-search evaluate`: strong attacks on the TEST split for the front's checkpoints.

The search selects on a validation split; this is where the test split is touched. For
each chosen trial it loads the best-validation checkpoint (`weights_only=True`), attacks
the first N test images with the suite of `trainables.evaluation` at every eval epsilon
of the trial's threat model, runs the sanity checks and writes, atomically, one file per
model when that model is done:

    RUN_DIR/evaluation/<trial_id>.json      headline "test_*" numbers (merged into the
                                            report's trials table), curves, checks
    RUN_DIR/evaluation/adv/<trial_id>.pt    the worst-case adversarial test inputs at the
                                            first epsilon (for transfer and corruptions)
    RUN_DIR/evaluation/transfer.json        the cross-model transfer matrix

A rerun skips every model whose file was written with the same attacks, N, settings,
pyautoattack version and checkpoint content (its SHA-256), so an interrupted evaluation
resumes where it stopped, and a checkpoint rewritten by a resumed trial is evaluated anew.
While it runs, every line carries an estimate of the time left (this model, and the later
ones scaled by their parameter counts).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from analysis.load import Run, load_run, read_evaluation
from analysis.pareto import front
from models import count_parameters, wrn_name
from trainables import metrics, run_files
from trainables.checkpoint import (
    UnreadableCheckpoint,
    best_checkpoint,
    best_config,
    load_best_model,
    load_file,
    save_atomic,
    unreadable,
)
from trainables.config import DEVICES, ConfigError, DataConfig, TrialConfig, fail
from trainables.data import DatasetSplits, load_dataset
from trainables.evaluation import (
    ModelEvaluation,
    SuiteConfig,
    autoattack_description,
    check_attacks,
    check_autoattack_version,
    checks_summary,
    destruction_rates,
    estimate_text,
    evaluate_model,
    fingerprint,
    transfer_matrix,
)
from trainables.formats import duration, eps_text, percent
from trainables.trainer import resolve_device

logger = logging.getLogger(__name__)

# Bump when the stored files change meaning. 2: checks are passed / failed / not run with a
# verdict; PGD keeps the first adversarial iterate; robust needs the re-check to agree.
FORMAT = 2
Printer = Callable[[str], None]


@dataclass(frozen=True)
class _Target:
    """One model to evaluate: where its checkpoint is and what the search said about it."""

    trial_id: str
    trial_dir: str
    checkpoint: Path  # the checkpoint folder holding best_model.pt
    search: dict[str, Any]  # validation figures of the best checkpoint, from the run


@dataclass
class _Job:
    """One target, prepared: its settings, its images and whether its record is current."""

    target: _Target
    cfg: TrialConfig
    suite: SuiteConfig
    split: Any  # the test split (trainables.data)
    count: int  # images attacked: the first `count` of the split
    wanted: dict[str, Any]  # the fingerprint a current record carries
    old: dict[str, Any]  # the stored record ({} when none)
    record_path: Path
    adv_path: Path

    @property
    def current(self) -> bool:
        """True when the stored record is of this checkpoint, these settings and this n."""
        return (self.old.get("format") == FORMAT and self.old.get("fingerprint") == self.wanted
                and self.adv_path.is_file())

    @property
    def params(self) -> int:
        m = self.cfg.model
        return count_parameters(m.depth, m.width, self.cfg.data.num_classes)


def evaluate_run(
    run_dir: Path,
    *,
    trial_ids: list[str] | None,
    attacks: list[str],
    n: int | None,
    corruptions: bool,
    device: str,
    batch_size: int,
    printer: Printer,
    suite: SuiteConfig | None = None,
) -> list[str]:
    """Evaluate the front's (or the given) trials on the test split; return summary lines.

    Args:
        run_dir: a run directory written by `wrn-search run`.
        trial_ids: trials to evaluate; None takes the front at the first eval epsilon
            (full-fidelity trials only).
        attacks: strong attacks, from trainables.evaluation.ATTACKS.
        n: evaluate only the first n test images (a fixed, class-interleaved order).
        corruptions: also measure how often JPEG, blur, noise, brightness and contrast
            destroy the adversarial examples (Kurakin et al. 2017).
        device: auto, cpu or cuda.
        batch_size: images per attack batch.
        printer: receives one progress line at a time.
        suite: budgets of the attacks (default: the papers'); its norm, epsilons, search
            attack, attacks and batch size are replaced by the run's and the arguments.
    """
    chosen = check_attacks(attacks)
    if "autoattack" in chosen:
        check_autoattack_version()
    _check_args(n, device, batch_size)
    dev = resolve_device(device)
    run = load_run(Path(run_dir))
    targets = _targets(run, trial_ids)
    out = run_files.output_dir(run_dir, Path(run_dir) / run_files.EVALUATION_DIR, "RUN_DIR")
    run_files.output_dir(run_dir, out / run_files.ADV_DIR, "RUN_DIR")
    base = replace(suite or SuiteConfig(), attacks=chosen, batch_size=batch_size)
    datasets: dict[DataConfig, DatasetSplits] = {}
    jobs, skipped = [], []
    for target in targets:  # a damaged checkpoint skips its model, not the others
        try:
            jobs.append(_prepare(target, out, base, n, datasets))
        except UnreadableCheckpoint as exc:
            skipped.append(_skip(target, exc))
    records = []
    for i, job in enumerate(jobs):
        tag = f"[{i + 1}/{len(jobs)}] {job.target.trial_id}"
        later = [j for j in jobs[i + 1:] if not j.current]
        try:
            records.append(_evaluate_one(job, corruptions, dev, later,
                                         lambda line, tag=tag: printer(f"{tag} {line}")))
        except UnreadableCheckpoint as exc:
            skipped.append(_skip(job.target, exc))
    if not records:
        raise ConfigError(f"run directory: {str(run_dir)!r}: no model could be evaluated; "
                          + "; ".join(skipped))
    transfer = _write_transfer(out, _group_key(records[-1]), dev, batch_size, printer)
    return _summary(records, transfer, out, skipped)


def _skip(target: _Target, exc: UnreadableCheckpoint) -> str:
    """Say, in one warning line, which file stops a model from being evaluated."""
    logger.warning("%s skipped: %s", target.trial_id, exc)
    return f"{target.trial_id} ({exc})"


def _check_args(n: int | None, device: str, batch_size: int) -> None:
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise fail("--n", n, "must be an integer >= 1 (the number of test images)")
    if device not in DEVICES:
        raise fail("--device", device, "allowed: " + ", ".join(DEVICES))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise fail("--batch-size", batch_size, "must be an integer >= 1")


# ------------------------------------------------------------------------- choosing trials


def _targets(run: Run, trial_ids: Sequence[str] | None) -> list[_Target]:
    trials = run.trials
    full = run.full_fidelity
    if full.empty:
        raise ConfigError(f"run directory: {str(run.run_dir)!r} has no finished (full-fidelity) "
                          "trial to evaluate")
    if trial_ids:
        known = list(trials["trial_id"].astype(str))
        for trial_id in trial_ids:
            if trial_id not in known:
                raise fail("--trial", trial_id, "known trials: " + ", ".join(known))
        rows = trials.set_index("trial_id").loc[list(dict.fromkeys(trial_ids))].reset_index()
    else:
        rows = front(run, run.eval_epsilons[0]).members
    targets = []
    for _, row in rows.iterrows():
        checkpoint = best_checkpoint(run.run_dir / str(row["trial_dir"]))
        if checkpoint is None:
            if trial_ids:
                raise fail("--trial", row["trial_id"], f"its folder {row['trial_dir']} holds no "
                           f"checkpoint_*/{run_files.BEST_FILE}")
            logger.warning("front member %s has no checkpoint; skipped", row["trial_id"])
            continue
        search = {k: _plain(v) for k, v in row.items()
                  if str(k).startswith(("best_val_", metrics.WRN, metrics.PARAMS, "status"))
                  or k in (metrics.BEST_EPOCH, metrics.EPOCHS_DONE, metrics.MAX_EPOCHS)}
        trial_id = run_files.check_trial_id(str(row["trial_id"]))  # it names files
        targets.append(_Target(trial_id, str(row["trial_dir"]), checkpoint, search))
    if not targets:
        raise ConfigError(f"run directory: {str(run.run_dir)!r}: no front member has a "
                          f"checkpoint_*/{run_files.BEST_FILE} to evaluate")
    return targets


def _plain(value: Any) -> Any:
    """A JSON-safe scalar (numpy and pandas values to Python; NaN to None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    return value


# ------------------------------------------------------------------------- one model


def _prepare(target: _Target, out: Path, base: SuiteConfig, n: int | None,
             datasets: dict[DataConfig, DatasetSplits]) -> _Job:
    cfg = best_config(target.checkpoint)
    suite = replace(base, threat_model=cfg.threat_model)
    split = _test_split(cfg.data, datasets)
    count = len(split.y) if n is None else min(n, len(split.y))
    record_path = out / f"{target.trial_id}.json"
    wanted = fingerprint(suite, count, _sha256(target.checkpoint / run_files.BEST_FILE))
    job = _Job(target, cfg, suite, split, count, wanted, run_files.read_json_object(record_path),
               record_path, out / run_files.ADV_DIR / f"{target.trial_id}.pt")
    if job.current and not (_usable(job.old, target.trial_id)
                            and _read_adv(job.adv_path, count, "it is evaluated again")):
        job.old = {}  # a damaged record or examples: redo the model rather than trust them
    return job


def _usable(record: dict[str, Any], trial_id: str) -> bool:
    """True when a stored record holds what the summary and the transfer step read."""
    try:
        _summary_line(record)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError):
        logger.warning("%s/%s.json is damaged; it is evaluated again", run_files.EVALUATION_DIR,
                       trial_id)
        return False
    return record.get("trial_id") == trial_id and _group_key(record) is not None


def _read_adv(path: Path, count: int, then: str) -> dict[str, Any] | None:
    """A model's stored worst-case inputs; None, with a warning naming the file and saying
    what happens `then`, when it is truncated, foreign or of another size."""
    try:
        blob = load_file(path)
        x, y = blob["x_adv"], blob["y"]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor) and x.ndim == 4
                and len(x) == len(y) == count):
            raise ValueError(f"not {count} adversarial images with their labels")
    except Exception as exc:  # torch, pickle, key and shape errors all mean "not usable"
        logger.warning("%s; %s", unreadable(path, exc, "adversarial examples"), then)
        return None
    return blob


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _estimate(job: _Job, later: Sequence[_Job]) -> Callable[[float, float], str]:
    """Words for the time left: this model's, plus the later ones' scaled by their size.

    A WRN's FLOPs per image are nearly proportional to its parameter count (every stage
    grows as width^2 x blocks in both), so the later models' cost is this model's
    predicted total times their parameters over its parameters.
    """
    later_params = sum(j.params for j in later)

    def text(elapsed: float, left: float) -> str:
        words = estimate_text(elapsed, left)
        if later:
            rest = (elapsed + left) * later_params / job.params
            words += (f", about {duration(left + rest)} for all "
                      f"{len(later) + 1} models left")
        return words

    return text


def _evaluate_one(job: _Job, corruptions: bool, dev: torch.device, later: Sequence[_Job],
                  say: Printer) -> dict[str, Any]:
    target, cfg, suite, split, count = job.target, job.cfg, job.suite, job.split, job.count
    if job.current:
        say("already evaluated: same checkpoint, attacks, n and settings; skipped")
        old = job.old
        if corruptions and "corruptions" not in old:
            model, _ = load_best_model(target.checkpoint, dev)
            old["corruptions"] = _corruptions(model, split, count, job.adv_path, suite, dev)
            run_files.write_json(job.record_path, old, indent=1, default=_plain)
        return old
    model, info = load_best_model(target.checkpoint, dev)
    x = split.x[:count].to(dev).float().div_(255)
    y = split.y[:count].to(dev)
    subset = f" (the first {count} of {len(split.y)}: a subset)" if count < len(split.y) else ""
    say(f"{wrn_name(cfg.model.depth, cfg.model.width)}: attacking {count} test images{subset} at "
        + ", ".join(eps_text(e, suite.norm) for e in suite.epsilons) + " with "
        + ", ".join(suite.attacks))
    ev = evaluate_model(model, x, y, suite, num_classes=cfg.data.num_classes, progress=say,
                        eta_text=_estimate(job, later))
    save_atomic({"x_adv": ev.x_adv, "y": y.cpu(), "eps": suite.epsilons[0]}, job.adv_path)
    record = _record(target, cfg, info, suite, ev, count, len(split.y), dev, job.wanted)
    if corruptions:
        record["corruptions"] = destruction_rates(model, x, ev.x_adv.to(dev), y,
                                                  batch_size=suite.batch_size, seed=suite.seed)
    run_files.write_json(job.record_path, record, indent=1, default=_plain)
    say(f"done in {duration(ev.seconds)}: " + _verdict(record))
    return record


def _test_split(data: DataConfig, cache: dict[DataConfig, DatasetSplits]) -> Any:
    if data not in cache:
        cache[data] = load_dataset(data, with_test=True)
    split = cache[data].test
    if split is None or len(split.y) == 0:
        raise ConfigError(f"data.dataset: {data.dataset!r} has no test split to evaluate on")
    return split


def _corruptions(model: nn.Module, split: Any, count: int, adv_path: Path, suite: SuiteConfig,
                 dev: torch.device) -> dict[str, Any]:
    blob = load_file(adv_path)
    x = split.x[:count].to(dev).float().div_(255)
    return destruction_rates(model, x, blob["x_adv"].to(dev), split.y[:count].to(dev),
                             batch_size=suite.batch_size, seed=suite.seed)


def _record(target: _Target, cfg: TrialConfig, info: dict[str, Any], suite: SuiteConfig,
            ev: ModelEvaluation, count: int, total: int, dev: torch.device,
            wanted: dict[str, Any]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "trial_id": target.trial_id,
        "trial_dir": target.trial_dir,
        "wrn": wrn_name(cfg.model.depth, cfg.model.width),
        "params": count_parameters(cfg.model.depth, cfg.model.width, cfg.data.num_classes),
        "checkpoint": str(Path(target.trial_dir) / target.checkpoint.name / run_files.BEST_FILE),
        "best_epoch": info.get("epoch"),
        "split": "test",
        "dataset": cfg.data.dataset,
        "n": count,
        "n_total": total,
        "subset": count < total,
        "norm": suite.norm,
        "epsilons": list(suite.epsilons),
        "attacks": list(suite.attacks),
        "autoattack": autoattack_description(suite) if "autoattack" in suite.attacks else None,
        "suite": suite.to_dict(),
        "fingerprint": wanted,
        "search": {"split": "validation", "attack": f"PGD-{suite.threat_model.steps}"
                   + (f"x{suite.threat_model.restarts}" if suite.threat_model.restarts > 1 else ""),
                   **target.search},
        "device": str(dev),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "adversarial_examples": f"{run_files.ADV_DIR}/{target.trial_id}.pt",
        **ev.headline(),
        **ev.details(),
    }


def _verdict(record: dict[str, Any]) -> str:
    text = checks_summary(record.get("checks", []))
    if record.get("gradient_masking_suspected"):
        text += "; GRADIENT MASKING SUSPECTED"
    return text


# ------------------------------------------------------------------------- transfer


def _write_transfer(out: Path, key: tuple[int, float, str], dev: torch.device, batch_size: int,
                    printer: Printer) -> dict[str, Any] | None:
    """The cross-model matrix over every evaluated model sharing `key` (n, first eps, norm):
    the models of this call, and those evaluated alike by earlier calls."""
    evaluation = read_evaluation(out.parent)
    records = [r for r in evaluation.records if r.get("format") == FORMAT] if evaluation else []
    group = [r for r in records if _group_key(r) == key and _adv_path(out, r).is_file()]
    if not group:
        return None
    skipped = [r["trial_id"] for r in records if r not in group]
    if skipped:
        printer("transfer matrix leaves out (evaluated with another n or epsilon): "
                + ", ".join(skipped))
    run_dir = out.parent
    models, blobs, readable = [], [], []
    for r in group:  # a damaged file leaves its model out of the matrix, in one warning line
        try:
            model = load_best_model(_checkpoint_dir(run_dir, r), dev)[0]
        except ConfigError as exc:
            logger.warning("%s; %s is left out of the transfer matrix", exc, r["trial_id"])
            continue
        blob = _read_adv(_adv_path(out, r), key[0],
                         f"{r['trial_id']} is left out of the transfer matrix")
        if blob is not None:
            models.append(model)
            blobs.append(blob)
            readable.append(r)
    group = readable
    if not group:
        return None
    matrix = transfer_matrix(models, [b["x_adv"] for b in blobs], blobs[0]["y"], batch_size)
    for r, row in zip(group, matrix, strict=True):
        own = ((r.get("per_eps") or {}).get(metrics.eps_key(key[1])) or {}).get("robust_acc")
        own = run_files.finite_number(own)
        if own is not None and abs(own - row[group.index(r)]) > 1e-9:
            logger.warning("transfer diagonal of %s (%.4f) differs from its white-box %.4f "
                           "(other device or batch size than the evaluation)",
                           r["trial_id"], row[group.index(r)], own)
    transfer = {
        "split": "test", "eps": key[1], "eps_label": eps_text(key[1], key[2]), "norm": key[2],
        "n": key[0], "trials": [r["trial_id"] for r in group], "wrn": [r["wrn"] for r in group],
        "matrix": matrix,
        "about": "matrix[i][j]: accuracy of model j on the worst-case adversarial test inputs "
                 "crafted on model i (white-box on the diagonal)",
    }
    run_files.write_json(out / run_files.TRANSFER_FILE, transfer, indent=1, default=_plain)
    return transfer


def _group_key(record: dict[str, Any]) -> tuple[int, float, str] | None:
    """What models must share to enter one transfer matrix: n, first epsilon and norm (None
    for a record that does not say)."""
    try:
        return int(record["n"]), float(record["epsilons"][0]), str(record["norm"])
    except (KeyError, TypeError, IndexError, ValueError):
        return None


def _adv_path(out: Path, record: dict[str, Any]) -> Path:
    """A record's adversarial examples, named by its (checked) trial id, never by a path the
    record spells out: a record may come from anywhere."""
    return out / run_files.ADV_DIR / f"{run_files.check_trial_id(record['trial_id'])}.pt"


def _checkpoint_dir(run_dir: Path, record: dict[str, Any]) -> Path:
    """The checkpoint folder a record was evaluated from, only if it lies in the run folder."""
    return run_files.confined(run_dir, run_dir / Path(str(record["checkpoint"])).parent,
                              f"evaluation/{record['trial_id']}.json: checkpoint")


# ------------------------------------------------------------------------- summary and files


def _summary_line(r: dict[str, Any]) -> str:
    """One model's line: validation against test figures at each epsilon, and the verdict."""
    parts = [f"clean {percent(r['test_clean_acc'])}"]
    for eps in r["epsilons"]:
        e = r["per_eps"][metrics.eps_key(eps)]
        val = r.get("search", {}).get(metrics.best_robust_acc_key(eps))
        parts.append(f"{e['label']}: val {r['search']['attack']} {percent(val)} | test "
                     f"{e['attacks']['search_pgd']['label']} "
                     f"{percent(e['attacks']['search_pgd']['acc'])}, strong {percent(e['robust_acc'])}")
    return f"{r['wrn']} ({r['trial_id']}): " + "; ".join(parts) + f"; {_verdict(r)}"


def _summary(records: list[dict[str, Any]], transfer: dict[str, Any] | None, out: Path,
             skipped: Sequence[str] = ()) -> list[str]:
    lines = [_summary_line(r) for r in records]
    if skipped:
        lines.append("not evaluated, a file could not be read: " + "; ".join(skipped))
    if records and records[0].get("subset"):
        lines.append(f"evaluated the first {records[0]['n']} of {records[0]['n_total']} test "
                     "images only (--n): a subset")
    if transfer and len(transfer["trials"]) > 1:
        lines.append(f"transfer matrix over {len(transfer['trials'])} models at "
                     f"{transfer['eps_label']}: {out / run_files.TRANSFER_FILE}")
    lines.append(f"results in {out}; `wrn-search report {out.parent}` adds them to the report")
    return lines





__all__ = ["FORMAT", "evaluate_run"]
