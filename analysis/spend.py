"""What a run's budget bought: trial time by outcome, the cost model's error, rung decisions.

Read from the run folder alone (`analysis.load`): the report and `wrn-search status` show
these, and the search's own status line counts the same unfinished spend live.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.load import OUTCOMES, Run
from trainables import formats, metrics


def rung_table(run: Run) -> pd.DataFrame:
    """The scheduler's decisions (rungs.jsonl), one row per rung milestone, and one for the
    stops of trials that could not finish in the budget: how many trials were judged, stopped,
    continued, and continued only because their gap to the cutoff was within noise."""
    d = run.decisions
    if d.empty:
        return pd.DataFrame(columns=["milestone", "judged", "stopped", "continued",
                                     "within_noise"])
    rows = []
    ranked = d[d["reason"] != "budget"]
    for milestone, group in ranked.groupby("milestone", sort=True):
        rows.append({"milestone": milestone, "judged": len(group),
                     "stopped": int((group["decision"] == "STOP").sum()),
                     "continued": int((group["decision"] == "CONTINUE").sum()),
                     "within_noise": int((group["reason"] == "within-noise").sum())})
    budget = d[d["reason"] == "budget"]
    if len(budget):
        rows.append({"milestone": np.nan, "judged": len(budget), "stopped": len(budget),
                     "continued": 0, "within_noise": 0})
    return pd.DataFrame(rows)


def spend_table(run: Run) -> pd.DataFrame:
    """Trial seconds by how the trials ended (analysis.load.OUTCOMES)."""
    trials = run.trials
    if trials.empty:
        return pd.DataFrame(columns=["outcome", "trials", "seconds", "share"])
    seconds = trials[metrics.WALL_TIME_S].fillna(0.0)
    total = float(seconds.sum())
    rows = [{"outcome": o, "trials": int((trials["outcome"] == o).sum()),
             "seconds": float(seconds[trials["outcome"] == o].sum())} for o in OUTCOMES]
    table = pd.DataFrame([r for r in rows if r["trials"]])
    table["share"] = table["seconds"] / total if total > 0 else 0.0
    return table


def unfinished_spend(run: Run) -> str:
    """One line: trial time spent on trials that ended without full fidelity."""
    table = spend_table(run)
    if table.empty:
        return "no trial has reported yet"
    ended = table[~table["outcome"].isin(["full fidelity", "running"])]
    spent, total = float(ended["seconds"].sum()), float(table["seconds"].sum())
    share = f" ({100 * spent / total:.0f}%)" if total > 0 else ""
    span = formats.duration
    return (f"{span(spent)} of {span(total)} of trial time{share} went to trials that ended "
            "without full fidelity (their seconds bought no front)")


def cost_error(run: Run) -> dict[str, float] | None:
    """How far the search's predictions of seconds per epoch were from the measured ones:
    median factor (measured / predicted, or its inverse when below 1) and the share of trials
    within 1.5x and 2x."""
    trials = run.trials
    cols = [metrics.PREDICTED_EPOCH_S, metrics.ACTUAL_EPOCH_S]
    usable = trials.dropna(subset=cols) if len(trials) else trials
    usable = usable[(usable[cols] > 0).all(axis=1)] if len(usable) else usable
    if usable.empty:
        return None
    factor = np.exp(np.abs(np.log(usable[cols[1]] / usable[cols[0]])))
    return {"trials": float(len(usable)), "median_factor": float(np.median(factor)),
            "within_1_5": float((factor <= 1.5).mean()), "within_2": float((factor <= 2).mean())}


ITERATION_S = "time_this_iter_s"  # Ray's: seconds between a result and the one before


def training_spans(run: Run) -> list[tuple[float, float]]:
    """(start, end) epoch seconds of every reported step of every trial, from Ray's timestamp
    and time_this_iter_s in the results; steps without both are left out."""
    history = run.history
    if history.empty or ITERATION_S not in history or "timestamp" not in history:
        return []
    end = pd.to_numeric(history["timestamp"], errors="coerce")
    length = pd.to_numeric(history[ITERATION_S], errors="coerce")
    ok = end.notna() & length.notna() & (length >= 0)
    return sorted(zip((end - length)[ok].tolist(), end[ok].tolist(), strict=True))


def busy_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds during which at least one span was under way (their union's length): the time
    some trial was training, a lower bound of the run's wall-clock time."""
    total, reach = 0.0, -np.inf
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total
