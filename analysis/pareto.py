"""Pareto fronts of accuracy against parameter count, their hypervolume and knee.

The objectives are (parameters: minimise, accuracy: maximise). Sizes span orders of
magnitude, so hypervolume and the knee work in (log10 params, accuracy) space: halving
a model counts the same at 1M as at 30M parameters.

Fronts are drawn from full-fidelity trials only. An early-stopped trial's numbers are
those of a truncated schedule (often an unfinished cosine decay, so they can even look
better than a finished run's), so mixing them in would compare unlike things.

The 2-D hypervolume is a sort and a cumulative maximum (exact, O(n log n)); Optuna's
exact `compute_hypervolume` lives in a private module (`optuna._hypervolume`), so it is
used only as a cross-check in the tests rather than depended on here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.dominance import REF_ACC, hypervolume_2d, non_dominated_sort
from analysis.load import Run
from models import count_parameters
from trainables import formats, metrics
from trainables.config import DATASETS

logger = logging.getLogger(__name__)

REF_PARAMS_FACTOR = 2.0  # reference = 2x the largest model of the space (see reference_params)


def pareto_front(
    df: pd.DataFrame, *, acc_col: str, params_col: str = metrics.PARAMS
) -> pd.DataFrame:
    """The rows not dominated in (max `acc_col`, min `params_col`), sorted by params.

    Rows missing either value are ignored; identical points are both kept.
    """
    values = df[[params_col, acc_col]].apply(pd.to_numeric, errors="coerce")
    usable = df[np.isfinite(values.to_numpy(dtype=float)).all(axis=1)]
    if usable.empty:
        return usable.copy()
    ranks = non_dominated_sort(
        usable[[params_col, acc_col]].to_numpy(dtype=float), maximize=(False, True)
    )
    front = usable[ranks == 0]
    return front.sort_values([params_col, acc_col], ascending=[True, False], kind="stable")


def hypervolume_over_time(
    trials: pd.DataFrame,
    *,
    acc_col: str,
    ref_params: float,
    ref_acc: float = REF_ACC,
    start_time: float | None = None,
    params_col: str = metrics.PARAMS,
) -> pd.DataFrame:
    """Hypervolume of the full-fidelity front after each trial completed, in order.

    Columns: time_s (since `start_time`, default the first completion), hypervolume,
    trial_id (the trial that completed then), n_complete. Trials without an end_time
    or the accuracy are skipped; early-stopped and running trials never count.
    """
    columns = ["time_s", "hypervolume", "trial_id", "n_complete"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    done = trials[trials["full_fidelity"].astype(bool)]
    done = done[np.isfinite(done[[params_col, acc_col, "end_time"]].to_numpy(float)).all(1)]
    done = done.sort_values("end_time", kind="stable")
    if done.empty:
        return pd.DataFrame(columns=columns)
    origin = float(done["end_time"].iloc[0]) if start_time is None else float(start_time)
    points = done[[params_col, acc_col]].to_numpy(dtype=float)
    rows = [
        {
            "time_s": float(end) - origin,
            "hypervolume": hypervolume_2d(points[: i + 1], ref_params=ref_params,
                                          ref_acc=ref_acc),
            "trial_id": trial_id,
            "n_complete": i + 1,
        }
        for i, (end, trial_id) in enumerate(zip(done["end_time"], done["trial_id"], strict=True))
    ]
    return pd.DataFrame(rows, columns=columns)


def knee_point(
    front: pd.DataFrame, *, acc_col: str, params_col: str = metrics.PARAMS
) -> pd.Series | None:
    """The front member farthest above the chord joining the front's two extremes.

    Rule: map the front to [0, 1]^2 by min-max normalising log10(params) and accuracy
    over the front; draw the line from the smallest model to the most accurate one;
    the knee is the member with the largest perpendicular distance on the side of
    higher accuracy / fewer parameters (the best trade-off: beyond it, accuracy costs
    more parameters than the front's average rate). None when the front has fewer
    than three distinct points or no member lies strictly above the line.
    """
    points = front[[params_col, acc_col]].to_numpy(dtype=float)
    if len(np.unique(points, axis=0)) < 3:
        return None
    x, y = np.log10(points[:, 0]), points[:, 1]
    x_span, y_span = np.ptp(x), np.ptp(y)
    if x_span == 0 or y_span == 0:
        return None
    u, v = (x - x.min()) / x_span, (y - y.min()) / y_span
    first, last = np.argmin(points[:, 0]), np.argmax(points[:, 0])
    du, dv = u[last] - u[first], v[last] - v[first]
    above = (du * (v - v[first]) - dv * (u - u[first])) / math.hypot(du, dv)
    best = int(np.argmax(above))
    if above[best] <= 1e-12:
        return None
    return front.iloc[best]


@dataclass(frozen=True)
class Front:
    """One objective's front: its members, hypervolume and knee."""

    objective: str  # "robust" or "clean"
    eps: float | None  # the eval epsilon of a robust front
    acc_col: str
    members: pd.DataFrame
    hypervolume: float
    ref_params: float
    ref_acc: float
    knee: pd.Series | None

    @property
    def label(self) -> str:
        if self.eps is None:
            return "clean accuracy"
        return f"robust accuracy at {formats.eps_label(self.eps)}"


def front(run: Run, eps: float | None, *, ref_params: float | None = None) -> Front:
    """The front of one objective: robust accuracy at `eps`, or clean accuracy for None."""
    acc_col = metrics.BEST_VAL_CLEAN_ACC if eps is None else metrics.best_robust_acc_key(eps)
    ref = ref_params if ref_params is not None else reference_params(run.spec, run.trials)[0]
    full = run.full_fidelity
    if full.empty or acc_col not in full.columns:
        members = full.iloc[0:0]
    else:
        members = pareto_front(full, acc_col=acc_col)
    points = members[[metrics.PARAMS, acc_col]].to_numpy(dtype=float) if len(members) else []
    return Front(
        objective="clean" if eps is None else "robust",
        eps=eps,
        acc_col=acc_col,
        members=members,
        hypervolume=hypervolume_2d(np.asarray(points), ref_params=ref) if len(members) else 0.0,
        ref_params=ref,
        ref_acc=REF_ACC,
        knee=knee_point(members, acc_col=acc_col) if len(members) else None,
    )


def fronts(run: Run, *, ref_params: float | None = None) -> list[Front]:
    """A robust front per eval epsilon (the objective's first), then the clean front."""
    ref = ref_params if ref_params is not None else reference_params(run.spec, run.trials)[0]
    return [front(run, e, ref_params=ref) for e in run.eval_epsilons] + [
        front(run, None, ref_params=ref)
    ]


def _largest(value: Any) -> int | None:
    """The largest integer in a space entry: a list, a {low, high} table, or a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return int(value)
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        found = [v for v in (_largest(item) for item in value) if v is not None]
        return max(found) if found else None
    return None


def reference_params(spec: Mapping[str, Any], trials: pd.DataFrame) -> tuple[float, str]:
    """The hypervolume's size bound and a sentence saying where it came from.

    REF_PARAMS_FACTOR x the largest model the spec's space allows (so runs of one spec
    are comparable, and the largest model still earns area), else the same factor x
    the largest model among the trials (then not comparable across runs).
    """
    space = spec.get("space") or {}
    depth, width = _largest(space.get(metrics.DEPTH)), _largest(space.get(metrics.WIDTH))
    classes = DATASETS.get(str((spec.get("data") or {}).get("dataset")), 10)
    if depth is not None and width is not None:
        try:
            largest = count_parameters(depth, width, classes)
        except ValueError as err:
            logger.warning("space max WRN-%s-%s is not a WRN (%s)", depth, width, err)
        else:
            return REF_PARAMS_FACTOR * largest, (
                f"{REF_PARAMS_FACTOR:g} x the largest model of the search space "
                f"(WRN-{depth}-{width}, {largest:,} parameters)"
            )
    sizes = pd.to_numeric(trials.get(metrics.PARAMS, pd.Series(dtype=float)), errors="coerce")
    largest = float(sizes.max()) if sizes.notna().any() else 1.0
    return REF_PARAMS_FACTOR * largest, (
        f"{REF_PARAMS_FACTOR:g} x the largest model among the trials ({largest:,.0f} "
        "parameters; the spec's space gave no bound, so not comparable across runs)"
    )
