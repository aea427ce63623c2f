"""Pareto maths on plain arrays: non-dominated sorting, crowding distance, 2-D hypervolume.

The one home of these ideas: the scheduler ranks a rung with them, the live status line
counts the front with them, and `analysis.pareto` builds the report's fronts with them, so
all three agree on ties (identical points share a rank) and on missing values (a row with
a NaN ranks after every real one). Pure numpy (scipy for the normal tails of the expected
gain); no pandas, no Ray.

Hypervolume and its expected gain work in (log10 params, accuracy): sizes span orders of
magnitude, so halving a model counts the same at 1M as at 30M parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

REF_ACC = 0.0  # the hypervolume's reference accuracy, unless a caller states another


def nondominated_ranks(points: np.ndarray) -> np.ndarray:
    """Pareto front index of every row (0 = non-dominated), all objectives minimised.

    Rows with a NaN get the rank after the last real front: dominated by every real result.
    Front peeling on a dominance matrix is O(n^2) memory, fine for a rung's few hundred trials.
    """
    ranks = np.zeros(len(points), dtype=int)
    valid = ~np.isnan(points).any(axis=1)
    real = points[valid]
    dominates = (real[:, None, :] <= real[None, :, :]).all(axis=2) & (
        real[:, None, :] < real[None, :, :]
    ).any(axis=2)  # [i, j]: i dominates j
    n_dominators = dominates.sum(axis=0)
    remaining = np.ones(len(real), dtype=bool)
    real_ranks = np.zeros(len(real), dtype=int)
    rank = 0
    while remaining.any():
        front = remaining & (n_dominators == 0)
        real_ranks[front] = rank
        remaining &= ~front
        n_dominators = n_dominators - dominates[front].sum(axis=0)
        rank += 1
    ranks[valid] = real_ranks
    ranks[~valid] = rank
    return ranks


def crowding_distances(points: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance inside each front; a front's ends are infinitely far.

    The NaN tail has no geometry: its rows all get 0, so they tie among themselves.
    """
    crowding = np.zeros(len(points))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        front = points[members]
        if np.isnan(front).any():
            continue
        for m in range(points.shape[1]):
            order = np.argsort(front[:, m], kind="stable")
            values = front[order, m]
            crowding[members[order[[0, -1]]]] = math.inf
            span = values[-1] - values[0]
            if len(members) > 2 and span > 0:
                crowding[members[order[1:-1]]] += (values[2:] - values[:-2]) / span
    return crowding


def non_dominated_sort(points: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Rank of every point: 0 for the non-dominated front, 1 for the front under it, ...

    A point dominates another when it is at least as good in every objective and better
    in one; identical points do not dominate each other, so they share a rank.

    Args:
        points: (n, m) finite objective values.
        maximize: m flags, True where larger is better.
    """
    values = np.asarray(points, dtype=float)
    if values.ndim != 2 or values.shape[1] != len(maximize):
        raise ValueError(
            f"points must have shape (n, {len(maximize)}), but got {values.shape}"
        )
    if not np.isfinite(values).all():
        raise ValueError("points must be finite; drop rows with missing values first")
    signs = np.where(np.asarray(maximize, dtype=bool), -1.0, 1.0)
    return nondominated_ranks(values * signs)


def front_size(points: Sequence[tuple[float, float]]) -> int:
    """How many (params: min, accuracy: max) points are non-dominated (identical ones count
    each): the live status line's "front: N", equal to `wrn-search status`'s front."""
    values = np.asarray(points, dtype=float).reshape(-1, 2)
    if not len(values):
        return 0
    return int((non_dominated_sort(values, (False, True)) == 0).sum())


def hypervolume_2d(points: np.ndarray, *, ref_params: float, ref_acc: float = REF_ACC) -> float:
    """Area dominated by `points` in (log10 params, accuracy) space, up to the reference.

    Reference-point convention: the region counted is bounded by params <= `ref_params`
    (an upper bound on model size stated by the caller, e.g. `reference_params`) and by
    accuracy >= `ref_acc` (0 by default). A point (p, a) dominates the rectangle
    [log10 p, log10 ref_params] x [ref_acc, a]; the result is the area of the union of
    those rectangles, in decades x accuracy (accuracy as a fraction in [0, 1]). Points
    at or beyond the reference contribute nothing; dominated points change nothing.

    Args:
        points: (n, 2) array of (params, accuracy); params > 0.
        ref_params: the size bound of the reference point (> 0, in parameters).
        ref_acc: the accuracy of the reference point.
    """
    widths, heights = _staircase(points, ref_params=ref_params, ref_acc=ref_acc)
    return float(np.sum(widths * (heights - ref_acc)))


def _staircase(points: np.ndarray, *, ref_params: float,
               ref_acc: float) -> tuple[np.ndarray, np.ndarray]:
    """The dominated region as segments of log10 params: (widths, best accuracy over each).

    Segment i spans from the i-th smallest model to the next (the last one to the reference);
    its height is the best accuracy of any point at or left of it, never below `ref_acc`.
    """
    values = np.asarray(points, dtype=float).reshape(-1, 2)
    if not (ref_params > 0 and math.isfinite(ref_params)):
        raise ValueError(f"ref_params must be a positive number, but got {ref_params}")
    if (values[:, 0] <= 0).any():
        raise ValueError("params must be positive to take log10")
    x_ref = math.log10(ref_params)
    x, acc = np.log10(values[:, 0]), values[:, 1]
    keep = (x < x_ref) & (acc > ref_acc) & np.isfinite(acc)
    x, acc = x[keep], acc[keep]
    if len(x) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.lexsort((-acc, x))  # by size, best accuracy first among equal sizes
    x, acc = x[order], acc[order]
    heights = np.maximum.accumulate(acc)  # best accuracy reachable at this size
    return np.diff(np.append(x, x_ref)), heights


def expected_hypervolume_gain(
    points: np.ndarray,
    params: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    *,
    ref_params: float,
    ref_acc: float = REF_ACC,
) -> np.ndarray:
    """Expected hypervolume a new point adds to the front of `points`, for each candidate.

    A candidate's size is known exactly and its accuracy is uncertain, A ~ N(mean, std^2).
    It adds the area between A and the front's staircase from its size to the reference,
    so the expectation is a sum over staircase segments of width x E[max(0, A - height)],
    each the closed form of expected improvement: (m - h) Phi(z) + s phi(z), z = (m - h) / s
    (Emmerich et al. 2006 in two objectives, one of them known).

    Args:
        points: (n, 2) front (or any set) of (params, accuracy); may be empty.
        params, mean, std: per candidate, its size and its predicted accuracy.
        ref_params, ref_acc: the reference point, as in `hypervolume_2d`.
    """
    from scipy.stats import norm

    params = np.asarray(params, dtype=float)
    mean, std = np.asarray(mean, dtype=float), np.maximum(np.asarray(std, dtype=float), 1e-9)
    x_ref = math.log10(ref_params)
    widths, heights = _staircase(np.asarray(points, dtype=float).reshape(-1, 2),
                                 ref_params=ref_params, ref_acc=ref_acc)
    if len(widths):
        starts = x_ref - np.cumsum(widths[::-1])[::-1]  # left edge of every segment
    else:
        starts = np.zeros(0)
    # Segments as [left, right) with the height that holds there; left of the smallest
    # front point only the reference accuracy holds.
    lefts = np.concatenate([[-np.inf], starts])
    rights = np.concatenate([starts[:1] if len(starts) else [x_ref], starts[1:], [x_ref]])
    rights = rights[: len(lefts)]
    levels = np.concatenate([[ref_acc], heights])
    x = np.log10(params)[:, None]
    covered = np.clip(rights[None, :] - np.maximum(lefts[None, :], x), 0.0, None)
    z = (mean[:, None] - levels[None, :]) / std[:, None]
    gain = (mean[:, None] - levels[None, :]) * norm.cdf(z) + std[:, None] * norm.pdf(z)
    return np.sum(covered * gain, axis=1)
