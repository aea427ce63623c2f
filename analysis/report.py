"""The Pareto report of one run: self-contained HTML, Markdown with PNGs, and CSV tables.

The content is assembled once as a list of blocks (headings, tables, plots, ...) and
rendered to each format, so the HTML and the Markdown can never disagree. Everything is
read from the run directory (no Ray); every accuracy is a validation-split number.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis.document import (
    Block,
    Code,
    Details,
    Facts,
    Heading,
    Para,
    Plot,
    Table,
    write_html,
    write_markdown,
)
from analysis.load import (
    OUTCOMES,
    STATUSES,
    Evaluation,
    Run,
    load_run,
    read_evaluation,
    spec_epsilons,
)
from analysis.pareto import Front, fronts, hypervolume_over_time
from analysis.pareto import reference_params as _reference_params
from analysis.published import AUTOATTACK, EVALUATIONS, PublishedPoint, published_for
from analysis.report_evaluation import evaluation_sections, evaluation_table
from analysis.spend import cost_error, rung_table, spend_table, unfinished_spend
from trainables import metrics, run_files
from trainables.config import ConfigError, fail
from trainables.formats import (
    duration,
    eps_label,
    eps_text,
    mask_secrets,
    number,
    params,
    percent,
    whole,
)
from trainables.metrics import TEST_CLEAN_ACC, strong_acc_key

logger = logging.getLogger(__name__)

FORMATS = ("html", "md", "csv", "parquet")
SPLIT_STATEMENT = (
    "Selection and all accuracies here: validation split carved from the training set. "
    "Test-split figures appear only after `wrn-search evaluate`."
)
SPLIT_STATEMENT_EVALUATED = (
    "Selection and all accuracies here: validation split carved from the training set, "
    "except the section \"Test-split evaluation (strong attacks)\" and the columns named "
    "\"test\", which come from the test split (never used for selection)."
)


# ---------------------------------------------------------------- public entry point


def write_report(
    run_dir: Path, out_dir: Path | None = None, formats: Sequence[str] = ("html", "md", "csv"),
    location: str | None = None,
) -> list[Path]:
    """Write the report of the run in `run_dir`; return every file written.

    Args:
        run_dir: a run directory (layout: README, "The run directory"); Ray need not be running.
        out_dir: where to write; default `run_dir/report`.
        formats: any of "html" (self-contained page), "md" (Markdown + PNGs), "csv"
            (trials, front, history tables), "parquet" (the same tables; needs pyarrow).
        location: where the run really is when `run_dir` is a local mirror of it (a URI,
            secrets masked): the report names that, not the mirror.
    """
    chosen = _check_formats(formats)
    run = load_run(Path(run_dir))
    if location is not None:
        run = dataclasses.replace(run, location=location)
    evaluation = read_evaluation(Path(run_dir))
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / run_files.REPORT_DIR
    run_files.output_dir(Path(run_dir), out, "--out" if out_dir is not None else "RUN_DIR")
    ref_params, ref_reason = _reference_params(run.spec, run.trials)
    all_fronts = fronts(run, ref_params=ref_params)
    written: list[Path] = []
    for fmt in ("csv", "parquet"):
        if fmt in chosen:
            written += _write_tables(run, all_fronts, out, fmt, evaluation)
    if "html" in chosen or "md" in chosen:
        blocks = _document(run, all_fronts, ref_reason, evaluation)
        if "md" in chosen:
            written += write_markdown(blocks, out)
        if "html" in chosen:
            written.append(write_html(f"wrn-search report: {run.name}", blocks, out))
    logger.info("report of %s: %d files in %s", run.name, len(written), out)
    return written


def _check_formats(formats: Sequence[str]) -> list[str]:
    chosen = [formats] if isinstance(formats, str) else list(formats)
    if not chosen:
        raise fail("formats", chosen, "allowed: " + ", ".join(FORMATS))
    for fmt in chosen:
        if fmt not in FORMATS:
            raise fail("formats", fmt, "allowed: " + ", ".join(FORMATS))
    if "parquet" in chosen and importlib.util.find_spec("pyarrow") is None:
        raise ConfigError("formats: 'parquet' needs pyarrow; pip install pyarrow, or use csv")
    return chosen


# ---------------------------------------------------------------- tables (csv/parquet)


def front_table(all_fronts: Sequence[Front]) -> pd.DataFrame:
    """Members of every front, one row per (front, member), with the objective named."""
    parts = []
    for f in all_fronts:
        members = f.members.copy()
        members.insert(0, "objective", f.objective)
        members.insert(1, "eps", np.nan if f.eps is None else f.eps)
        members.insert(2, "eps_label", "" if f.eps is None else eps_label(f.eps))
        knee = f.knee["trial_id"] if f.knee is not None else None
        members.insert(3, "knee", members["trial_id"] == knee)
        parts.append(members)
    non_empty = [p for p in parts if len(p)]
    return pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(
        columns=["objective", "eps", "eps_label", "knee", "trial_id"])


def _write_tables(run: Run, all_fronts: Sequence[Front], out: Path, fmt: str,
                  evaluation: Evaluation | None = None) -> list[Path]:
    tables = {"trials": run.trials, "front": front_table(all_fronts), "history": run.history}
    if evaluation is not None:
        tables["evaluation"] = evaluation_table(evaluation)
    written = []
    for name, table in tables.items():
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            run_files.write_atomic(path, lambda tmp, t=table: t.to_csv(tmp, index=False))
        else:
            run_files.write_atomic(path, lambda tmp, t=table: t.to_parquet(tmp, index=False))
        written.append(path)
    return written


# ---------------------------------------------------------------- content


def _budget(run_state: dict[str, Any]) -> str:
    used, budget = run_state.get("elapsed_s"), run_state.get("budget_s")
    if used is None:
        return "unknown (run.json records no budget used)"
    text = f"{duration(used)} used"
    if budget:
        left = max(0.0, float(budget) - float(used))
        text += f" of {duration(budget)} ({100 * float(used) / float(budget):.0f}%), "
        text += f"{duration(left)} left"
    resumes = run_state.get("resumes")
    return text + (f"; resumed {resumes} time(s)" if resumes else "")


def _status_counts(run: Run) -> str:
    counts = run.trials["status"].value_counts() if len(run.trials) else pd.Series(dtype=int)
    parts = [f"{int(counts.get(s, 0))} {s}" for s in STATUSES]
    parts.append(f"{len(run.unreadable)} unreadable")
    total = len(run.trials) + len(run.unreadable)
    return f"{total} total: " + ", ".join(parts)


def _threat_model(spec: dict[str, Any]) -> str:
    tm = spec.get("threat_model") or {}
    if not tm:
        return "unknown (no spec.json)"
    eps = ", ".join(eps_label(e) for e in spec_epsilons(spec))
    return (f"{str(tm.get('norm', '?')).upper()} eps {eps}; PGD-{tm.get('steps', '?')}, "
            f"{tm.get('restarts', '?')} restart(s)")


def _member_name(row: pd.Series | None, acc_col: str) -> str:
    if row is None:
        return "none: no front member lies above the line joining the front's extremes"
    size = params(row[metrics.PARAMS])
    return f"{row[metrics.WRN]} ({size} parameters, {percent(row[acc_col])})"


def _headline(run: Run, all_fronts: Sequence[Front], ref_reason: str,
              evaluated: bool = False) -> list[Block]:
    main = all_fronts[0]
    state = run.state or "unknown (no run.json)"
    blocks: list[Block] = []
    if run.is_partial:
        blocks.append(Para(f"PARTIAL RUN (state: {state}): the run has not finished; fronts "
                           "and counts below are a snapshot.", css="banner"))
    blocks.append(Para(SPLIT_STATEMENT_EVALUATED if evaluated else SPLIT_STATEMENT, css="split"))
    n_full = len(run.full_fidelity)
    blocks.append(Facts([
        ("Run", f"{run.name} ({run.where})"),
        ("State", state),
        ("Budget", _budget(run.run_state)),
        ("Trials", _status_counts(run)),
        ("Spent without full fidelity", unfinished_spend(run)),
        ("Threat model", _threat_model(run.spec)),
        ("Objective", f"validation {main.label} of the best-robust checkpoint"),
        ("Front size", f"{len(main.members)} of {n_full} full-fidelity trials"),
        ("Hypervolume", f"{main.hypervolume:.4f} in (log10 params, accuracy) space"),
        ("Reference point", f"params = {main.ref_params:,.0f}, accuracy = {main.ref_acc:g}; "
                            f"params bound: {ref_reason}"),
        ("Knee", _member_name(main.knee, main.acc_col)),
    ]))
    return blocks


def _front_rows(run: Run, f: Front) -> Table:
    epsilons = run.eval_epsilons
    named = [(TEST_CLEAN_ACC, "test clean")]
    named += [(strong_acc_key(e), f"test strong {eps_label(e)}") for e in epsilons]
    tests = [c for c, _ in named if c in run.test_columns]
    headers = ["", "WRN", "params", "method", "train eps", "train steps", "peak lr",
               "best epoch", "val clean"]
    headers += [f"val robust {eps_label(e)}" for e in epsilons]
    headers += [h for c, h in named if c in tests]
    numeric = [False, False, True, False, True, True, True, True, True]
    numeric += [True] * (len(epsilons) + len(tests))
    rows, marked = [], set()
    knee = f.knee["trial_id"] if f.knee is not None else None
    for i, (_, r) in enumerate(f.members.iterrows()):
        if r["trial_id"] == knee:
            marked.add(i)
        rows.append([
            "knee" if r["trial_id"] == knee else "",
            str(r[metrics.WRN]),
            params(r[metrics.PARAMS]),
            str(r[metrics.METHOD]),
            eps_text(r[metrics.TRAIN_EPS]),
            whole(r[metrics.TRAIN_STEPS]),
            f"{r[metrics.PEAK_LR]:g}",
            f"{whole(r[metrics.BEST_EPOCH])}/{whole(r[metrics.MAX_EPOCHS])}",
            percent(r[metrics.BEST_VAL_CLEAN_ACC]),
            *[percent(r.get(metrics.best_robust_acc_key(e))) for e in epsilons],
            *[_test_value(r.get(c)) for c in tests],
        ])
    return Table(headers, rows, numeric, marked)


def _test_value(value: Any) -> str:
    if isinstance(value, (int, float)) and 0 <= value <= 1:
        return percent(value)
    return "—" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _front_sections(run: Run, all_fronts: Sequence[Front]) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Pareto fronts")]
    n_stopped = int((run.trials["status"] != "complete").sum()) if len(run.trials) else 0
    n_error = int((run.trials["status"] == "error").sum()) if len(run.trials) else 0
    blocks.append(Para(
        "Fronts use full-fidelity trials only. Early-stopped and unfinished trials "
        f"({n_stopped - n_error}) are drawn as hollow grey circles and never enter a front "
        f"or a hypervolume; errored trials ({n_error}) are not plotted. Accuracies are the "
        "best-robust checkpoint's; hover over a point for its settings."
    ))
    for i, f in enumerate(all_fronts):
        title = f.label[0].upper() + f.label[1:]
        if i == 0:
            title += " (search objective)"
        blocks.append(Heading(3, title))
        published = _published(run, f)
        fig, tips = plots.front_figure(run, f, published=published)
        stem = f"front_{metrics.eps_key(f.eps)}" if f.eps is not None else "front_clean"
        caption = f"Validation {f.label} vs parameters; hypervolume {f.hypervolume:.4f}."
        if published:
            caption += (" Black: published models on the full CIFAR-10 test set (legend: which "
                        "evaluation), a different split and attack from the run's validation "
                        "points; crosses: this run's test-split figures, where evaluated.")
        blocks.append(Plot(stem, fig, caption, tips))
        if f.members.empty:
            blocks.append(Para("No full-fidelity trial yet: no front."))
        else:
            blocks.append(_front_rows(run, f))
        if published:
            blocks += _published_blocks(f, published)
    return blocks


def _published(run: Run, f: Front) -> tuple[PublishedPoint, ...]:
    dataset = (run.spec.get("data") or {}).get("dataset")
    norm = (run.spec.get("threat_model") or {}).get("norm")
    return published_for(dataset, norm, f.eps)


def _published_blocks(f: Front, published: Sequence[PublishedPoint]) -> list[Block]:
    """Where the published state of the art stands, and at which evaluation."""
    aa = [p for p in published if p.evaluation == AUTOATTACK]
    best = max(aa, key=lambda p: p.robust_acc)
    smallest = min(aa, key=lambda p: p.params)
    ours = ""
    if not f.members.empty:
        top = f.members.loc[f.members[f.acc_col].idxmax()]
        ours = (f" This run's front reaches {percent(top[f.acc_col])} ({top[metrics.WRN]}, "
                f"{params(top[metrics.PARAMS])} parameters) on its validation split under "
                "the search's PGD: an upper bound of what AutoAttack would give on the test set.")
    rows = [[p.name, p.wrn, params(p.params), percent(p.clean_acc), percent(p.robust_acc),
             p.evaluation, p.source] for p in published]
    return [
        Para(f"Published anchors at {eps_label(f.eps or 0.0)}: under AutoAttack on the "
             f"full CIFAR-10 test set, without extra data, the published front runs from "
             f"{percent(smallest.robust_acc)} ({smallest.name}, {smallest.wrn}, "
             f"{params(smallest.params)}) to {percent(best.robust_acc)} ({best.name}, "
             f"{best.wrn}, {params(best.params)})." + ours),
        Details(f"Published anchors ({len(published)} models; sources)", [
            Para("Evaluations: " + "; ".join(f"{k}: {v}" for k, v in EVALUATIONS.items())
                 + ". Parameter counts: the standard WRN-d-k for ten classes."),
            Table(["model", "WRN", "params", "clean", "robust", "evaluation", "source"], rows,
                  [False, False, True, True, True, False, False]),
        ]),
    ]


def _progress_sections(run: Run, all_fronts: Sequence[Front]) -> list[Block]:
    robust = [f for f in all_fronts if f.eps is not None]
    start = _run_start(run)
    curves = {
        f.label: hypervolume_over_time(run.trials, acc_col=f.acc_col, ref_params=f.ref_params,
                                       start_time=start)
        for f in robust
    }
    blocks: list[Block] = [Heading(2, "Clean vs robust accuracy")]
    if robust:
        fig, tips = plots.clean_robust_figure(run, robust[0])
        blocks.append(Plot("clean_vs_robust", fig, "Best-robust checkpoint of every trial; "
                           "colour: parameters; black edge: on the robust front.", tips))
    blocks += [
        Heading(2, "Search progress"),
        Plot("hypervolume", plots.hypervolume_figure(curves),
             "Hypervolume of the full-fidelity front after each trial completed, against "
             "wall time since the run started (time between resumes included)."),
        Heading(2, "Learning curves of the front"),
    ]
    if robust:
        blocks.append(Plot("learning_curves", plots.learning_curves_figure(run, robust[0]),
                           "Validation accuracy per epoch of the objective front's members."))
    return blocks


def _run_start(run: Run) -> float | None:
    """Earliest trial start the driver logged, else the earliest result minus its wall time."""
    trials = run.trials
    if trials.empty:
        return None
    if trials["start_time"].notna().any():
        return float(trials["start_time"].min())
    begun = trials["end_time"] - trials[metrics.WALL_TIME_S].fillna(0)
    return float(begun.min()) if begun.notna().any() else None


def _rung_section(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Early stopping")]
    scheduler = run.spec.get("scheduler") or {}
    kind = scheduler.get("kind", "unknown")
    plan = run.run_state.get("plan") or {}
    rungs = rung_table(run)
    text = f"Scheduler: {kind}"
    if kind != "none" and plan.get("rungs"):
        text += (f"; rungs at {', '.join(f'{m:g}' for m in plan['rungs'])} epochs (grace period "
                 f"{plan.get('grace_period', scheduler.get('grace_period'))}, reduction factor "
                 f"{scheduler.get('reduction_factor')}); a trial is judged at the first result "
                 "past a milestone")
    if kind != "none":
        text += (f". Noise allowance: a trial is stopped only if it would still be stopped with "
                 f"its robust accuracy raised by {scheduler.get('noise_z', 0)} standard errors of "
                 "the difference of two accuracies on its validation images (binomial).")
    if (run.spec.get("budget") or {}).get("only_finishable", False):
        text += (" A running trial whose own rate says it cannot reach full fidelity in the "
                 "budget left is stopped (\"could not finish\").")
    blocks.append(Para(text))
    if rungs.empty:
        blocks.append(Para("No decision recorded (no trial reached a rung, or the run predates "
                           "the decision record)."))
        return blocks
    rows = [["could not finish (budget)" if pd.isna(r.milestone) else f"{r.milestone:g}",
             str(r.judged), str(r.stopped), str(r.continued), str(r.within_noise)]
            for r in rungs.itertuples()]
    blocks.append(Table(["rung (epochs)", "trials judged", "stopped", "continued",
                         "continued within noise"], rows, [False, True, True, True, True]))
    return blocks


def _spend_sections(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Where the budget went")]
    fig, tips = plots.spend_figure(run)
    blocks.append(Plot("spend", fig, "Seconds each trial trained, against its size, coloured "
                       "by how it ended. Only full-fidelity trials can enter a front.", tips))
    table = spend_table(run)
    if len(table):
        blocks.append(Table(["outcome", "what it means", "trials", "trial time", "share"],
                            [[r.outcome, OUTCOMES[r.outcome], str(r.trials), duration(r.seconds),
                              f"{100 * r.share:.0f}%"] for r in table.itertuples()],
                            [False, False, True, True, True]))
    blocks.append(Para(unfinished_spend(run) + "."))
    blocks.append(Heading(3, "Cost model"))
    error = cost_error(run)
    plan = run.run_state.get("plan") or {}
    prior = plan.get("cost_prior_flops_per_s")
    prior_text = (f" Before any trial reported, it assumed {prior / 1e9:.0f} GFLOP/s per unit "
                  "of device." if isinstance(prior, (int, float)) else "")
    if error is None:
        blocks.append(Para("No trial carries both a prediction and a measured epoch."
                           + prior_text))
        return blocks
    fig, tips = plots.cost_figure(run)
    blocks.append(Para(
        "Before it started each trial, the search predicted its seconds per epoch from the "
        "configuration's FLOPs and the throughput measured so far (`search.cost_model`)."
        + prior_text + f" Over {error['trials']:.0f} trials the measured time was within a "
        f"median factor of {error['median_factor']:.2f} of the prediction; "
        f"{100 * error['within_1_5']:.0f}% within 1.5x, {100 * error['within_2']:.0f}% within 2x."))
    blocks.append(Plot("cost_model", fig, "Predicted vs measured seconds per epoch, per trial "
                       "(dotted: a factor of 2).", tips))
    return blocks


def _problem_section(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Errored, unreadable and recovered trials")]
    errors = run.trials[run.trials["status"] == "error"] if len(run.trials) else run.trials
    recovered = run.recovered
    if errors.empty and not run.unreadable and recovered.empty:
        blocks.append(Para("None."))
        return blocks
    rows = [[str(r["trial_dir"]), "error", str(r[metrics.WRN]),
             number(r[metrics.EPOCHS_DONE]), str(r["error"] or "no message")]
            for _, r in errors.iterrows()]
    rows += [[name, "unreadable", "—", "—", reason] for name, reason in run.unreadable]
    rows += [[str(r["trial_dir"]), f"recovered ({r['status']})", str(r[metrics.WRN]),
              number(r[metrics.EPOCHS_DONE]),
              f"{run_files.RESULT_FILE} damaged or incomplete; read from {r['recovered_from']}"]
             for _, r in recovered.iterrows()]
    blocks.append(Table(["trial directory", "status", "WRN", "epochs", "reason"], rows,
                        [False, False, False, True, False]))
    return blocks


def _all_trials(run: Run) -> list[Block]:
    if run.trials.empty:
        return []
    main = metrics.best_robust_acc_key(run.eval_epsilons[0]) if run.eval_epsilons else None
    order = run.trials.sort_values(["status", metrics.PARAMS], kind="stable")
    rows = [[str(r["trial_id"]), str(r[metrics.WRN]), params(r[metrics.PARAMS]),
             str(r["status"]),
             f"{number(r[metrics.EPOCHS_DONE])}/{whole(r[metrics.MAX_EPOCHS])}",
             percent(r[metrics.BEST_VAL_CLEAN_ACC]), percent(r[main]) if main else "—",
             duration(r[metrics.WALL_TIME_S])] for _, r in order.iterrows()]
    table = Table(["trial", "WRN", "params", "status", "epochs", "val clean", "val robust",
                   "wall time"], rows, [False, False, True, False, True, True, True, True])
    return [Details(f"All {len(rows)} trials (also in trials.csv)", [table])]


def compact_json(value: Any, indent: str = "") -> str:
    """Pretty JSON with short lists on one line: a spec reads top to bottom."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(k)}: {compact_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [f"{inner}{compact_json(v, inner)}" for v in value]
        return "[\n" + ",\n".join(items) + f"\n{indent}]"
    return json.dumps(value)


def _document(run: Run, all_fronts: Sequence[Front], ref_reason: str,
              evaluation: Evaluation | None = None) -> list[Block]:
    blocks: list[Block] = [Heading(1, f"wrn-search report: {run.name}")]
    blocks += _headline(run, all_fronts, ref_reason, evaluated=evaluation is not None)
    blocks += _front_sections(run, all_fronts)
    if evaluation is not None:
        blocks += evaluation_sections(run, evaluation)
    blocks += _progress_sections(run, all_fronts)
    blocks += _spend_sections(run)
    blocks += _rung_section(run)
    blocks += _problem_section(run)
    blocks += [Heading(2, "Trials"), *_all_trials(run)]
    blocks += [Heading(2, "Spec and budget"), Para(f"Budget: {_budget(run.run_state)}."),
               Code(mask_secrets(compact_json(run.spec)) if run.spec else "(no spec.json)")]
    return blocks


