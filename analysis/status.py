"""`wrn-search status`: a run at a glance, from its files alone (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

from analysis.load import STATUSES, load_run
from analysis.pareto import front
from analysis.spend import unfinished_spend
from trainables import formats, metrics
from trainables.run_files import OPTUNA_JOURNAL


def study_line(run_dir: Path, study: dict) -> str:
    """Where the run's Optuna study is (run.json's "optuna"), and how to watch a journal."""
    where = str(study.get("storage", "unknown storage"))
    if where.endswith(OPTUNA_JOURNAL):
        return f"optuna study {study['study']}: watch it with `optuna-dashboard {run_dir / where}`"
    return f"optuna study {study['study']} in {where}"


def status_text(run_dir: Path) -> str:
    """Trials by state, budget used and left, and the best-so-far front (validation split)."""
    from trainables.config import ConfigError

    if not Path(run_dir).is_dir():
        raise ConfigError(f"RUN_DIR: {str(run_dir)!r} is not allowed; no such folder")
    run = load_run(Path(run_dir))
    state = run.run_state
    counts = run.trials["status"].value_counts() if len(run.trials) else {}
    lines = [f"run {run.name}: {run.state or 'unknown state'}"]
    if "budget_s" in state:
        used, budget = float(state.get("elapsed_s", 0.0)), float(state["budget_s"])
        span = formats.duration
        lines.append(f"budget: {span(used)} used of {span(budget)} ({span(budget - used)} left), "
                     f"resumed {state.get('resumes', 0)} times")
    study = state.get("optuna")
    if isinstance(study, dict) and isinstance(study.get("study"), str):
        lines.append(study_line(Path(run_dir), study))
    recovered = run.recovered
    lines.append("trials: " + ", ".join(f"{int(counts.get(s, 0))} {s}" for s in STATUSES)
                 + (f", {len(run.unreadable)} unreadable" if run.unreadable else "")
                 + (f"; {len(recovered)} recovered from damaged results: "
                    + ", ".join(f"{r['trial_id']} ({r['recovered_from']})"
                                for _, r in recovered.iterrows()) if len(recovered) else ""))
    lines.append("spend: " + unfinished_spend(run))
    epsilons = run.eval_epsilons
    if not epsilons:
        return "\n".join(lines)
    best = front(run, epsilons[0])
    lines.append(f"front (robust accuracy at {formats.eps_label(epsilons[0])}, validation split, "
                 f"full-fidelity trials only): {len(best.members)} models")
    for _, row in best.members.iterrows():
        lines.append(f"  {row[metrics.WRN]:<10} {int(row[metrics.PARAMS]):>12,} params  "
                     f"robust {100 * row[best.acc_col]:5.1f}%  "
                     f"clean {100 * row[metrics.BEST_VAL_CLEAN_ACC]:5.1f}%  "
                     f"train eps {formats.eps_text(row[metrics.TRAIN_EPS])}, "
                     f"{row[metrics.METHOD]}-{int(row[metrics.TRAIN_STEPS])}")
    return "\n".join(lines)
