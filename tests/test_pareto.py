"""Pareto machinery against hand-computed cases and brute force."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis.pareto import (
    hypervolume_2d,
    hypervolume_over_time,
    knee_point,
    non_dominated_sort,
    pareto_front,
)

MIN_MAX = (False, True)  # (params: minimise, accuracy: maximise)


def _dominates(a: tuple[float, ...], b: tuple[float, ...], maximize: tuple[bool, ...]) -> bool:
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if (x < y) if up else (x > y):
            return False
        better |= (x > y) if up else (x < y)
    return better


def _brute_ranks(points: np.ndarray, maximize: tuple[bool, ...]) -> list[int]:
    """Rank = length of the longest chain of dominators above a point (a second definition)."""
    pts = [tuple(p) for p in points]
    signs = [-1 if up else 1 for up in maximize]
    order = sorted(range(len(pts)), key=lambda i: sum(s * v for s, v in zip(signs, pts[i],
                                                                              strict=True)))
    rank: dict[int, int] = {}
    for i in order:  # a dominator has a strictly smaller signed sum: it is ranked already
        above = [rank[j] for j in rank if _dominates(pts[j], pts[i], maximize)]
        rank[i] = 1 + max(above) if above else 0
    return [rank[i] for i in range(len(pts))]


def test_sort_hand_cases() -> None:
    points = np.array([[1, 1], [2, 2], [2, 1], [3, 3], [1, 1]], dtype=float)
    assert non_dominated_sort(points, MIN_MAX).tolist() == [0, 0, 1, 0, 0]
    chain = np.array([[1, 0.1], [2, 0.05], [3, 0.01]])
    assert non_dominated_sort(chain, MIN_MAX).tolist() == [0, 1, 2]
    assert non_dominated_sort(np.array([[5.0, 0.5]]), MIN_MAX).tolist() == [0]
    assert non_dominated_sort(np.empty((0, 2)), MIN_MAX).tolist() == []


def test_sort_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        non_dominated_sort(np.ones((3, 3)), MIN_MAX)
    with pytest.raises(ValueError, match="finite"):
        non_dominated_sort(np.array([[1.0, np.nan]]), MIN_MAX)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("maximize", [(False, True), (True, True), (False, True, False)])
def test_sort_matches_brute_force(seed: int, maximize: tuple[bool, ...]) -> None:
    rng = np.random.default_rng(seed)
    points = rng.random((250, len(maximize)))
    points[:60] = rng.integers(0, 4, size=(60, len(maximize)))  # ties and duplicates
    assert non_dominated_sort(points, maximize).tolist() == _brute_ranks(points, maximize)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"params": rng.integers(1, 50, 300) * 1000.0,
                       "acc": rng.integers(0, 30, 300) / 30})
    front = pareto_front(df, acc_col="acc")
    pts = list(zip(df["params"], df["acc"], strict=True))
    expected = {i for i, p in enumerate(pts)
                if not any(_dominates(q, p, MIN_MAX) for q in pts)}
    assert set(front.index) == expected
    assert front["params"].is_monotonic_increasing
    assert front["acc"].is_monotonic_increasing  # a front trades size for accuracy


def test_front_keeps_ties_drops_missing_and_sorts() -> None:
    df = pd.DataFrame({
        "params": [300.0, 100.0, 100.0, 200.0, np.nan, 50.0],
        "acc": [0.9, 0.5, 0.5, 0.4, 0.99, np.nan],
        "name": ["big", "small-a", "small-b", "dominated", "no-size", "no-acc"],
    })
    front = pareto_front(df, acc_col="acc")
    assert front["name"].tolist() == ["small-a", "small-b", "big"]
    single = pareto_front(df.iloc[[3]], acc_col="acc")
    assert single["name"].tolist() == ["dominated"]
    assert pareto_front(df.iloc[[4, 5]], acc_col="acc").empty


def test_hypervolume_hand_cases() -> None:
    assert hypervolume_2d(np.array([[10, 0.5]]), ref_params=1000) == pytest.approx(1.0)
    assert hypervolume_2d(np.array([[10, 0.5]]), ref_params=1000, ref_acc=0.1) == (
        pytest.approx(0.8))
    two = np.array([[10, 0.4], [100, 0.6]])
    assert hypervolume_2d(two, ref_params=1000) == pytest.approx(0.4 + 0.6)
    three = np.array([[1000, 0.6], [10, 0.2], [100, 0.5]])  # order does not matter
    assert hypervolume_2d(three, ref_params=1e4) == pytest.approx(0.2 + 0.5 + 0.6)
    # Non-decade sizes: exact logs.
    assert hypervolume_2d(np.array([[2e5, 0.3]]), ref_params=5e6) == pytest.approx(
        (math.log10(5e6) - math.log10(2e5)) * 0.3)
    assert hypervolume_2d(np.empty((0, 2)), ref_params=10) == 0.0


def test_hypervolume_ignores_dominated_and_out_of_reference_points() -> None:
    two = np.array([[10, 0.4], [100, 0.6]])
    base = hypervolume_2d(two, ref_params=1000)
    extra = np.array([[100, 0.3], [50, 0.4], [10, 0.4], [1000, 0.99], [5000, 0.99], [5, 0.0]])
    assert hypervolume_2d(np.vstack([two, extra]), ref_params=1000) == pytest.approx(base)


def test_hypervolume_rejects_bad_reference() -> None:
    with pytest.raises(ValueError, match="ref_params"):
        hypervolume_2d(np.array([[10, 0.5]]), ref_params=0)
    with pytest.raises(ValueError, match="positive"):
        hypervolume_2d(np.array([[0, 0.5]]), ref_params=10)


def _grid_hypervolume(points: np.ndarray, ref_params: float, n: int = 1000) -> float:
    x = np.log10(points[:, 0])
    lo, hi = x.min(), math.log10(ref_params)
    gx = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    gy = (np.arange(n) + 0.5) / n
    covered = np.zeros((n, n), dtype=bool)
    for px, acc in zip(x, points[:, 1], strict=True):
        covered |= (gx[None, :] >= px) & (gy[:, None] <= acc)
    return covered.mean() * (hi - lo) * 1.0


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_hypervolume_matches_grid_integration(seed: int) -> None:
    rng = np.random.default_rng(seed)
    points = np.column_stack([10 ** rng.uniform(4, 7, 12), rng.uniform(0, 1, 12)])
    exact = hypervolume_2d(points, ref_params=1e7)
    assert exact == pytest.approx(_grid_hypervolume(points, 1e7), abs=0.01)
    front = pareto_front(pd.DataFrame(points, columns=["params", "acc"]), acc_col="acc")
    assert hypervolume_2d(front.to_numpy(), ref_params=1e7) == pytest.approx(exact)


def test_hypervolume_matches_optuna_when_available() -> None:
    hv_module = pytest.importorskip("optuna._hypervolume")
    rng = np.random.default_rng(7)
    points = np.column_stack([10 ** rng.uniform(4, 7, 30), rng.uniform(0, 1, 30)])
    loss = np.column_stack([np.log10(points[:, 0]), -points[:, 1]])
    expected = hv_module.compute_hypervolume(loss, np.array([7.5, 0.0]))
    assert hypervolume_2d(points, ref_params=10**7.5) == pytest.approx(expected, rel=1e-9)


def test_knee_point_of_hand_made_fronts() -> None:
    front = pd.DataFrame({"params": [1e5, 1e6, 3e6, 1e7], "acc": [0.30, 0.50, 0.53, 0.55],
                          "name": ["a", "b", "c", "d"]})
    # Normalised: x = 0, .5, .739, 1; y = 0, .8, .92, 1: b is farthest above the chord.
    assert knee_point(front, acc_col="acc")["name"] == "b"
    convex = pd.DataFrame({"params": [1e5, 1e6, 1e7], "acc": [0.30, 0.31, 0.55]})
    assert knee_point(convex, acc_col="acc") is None  # nothing above the chord
    assert knee_point(front.iloc[:2], acc_col="acc") is None
    assert knee_point(front.iloc[[0, 0, 3]], acc_col="acc") is None  # two distinct points


def test_hypervolume_over_time_uses_full_fidelity_in_completion_order() -> None:
    trials = pd.DataFrame({
        "trial_id": ["a", "b", "s", "c"],
        "params": [1e5, 1e6, 1e4, 1e7],
        "acc": [0.3, 0.5, 0.99, 0.4],
        "full_fidelity": [True, True, False, True],
        "end_time": [130.0, 110.0, 105.0, 150.0],
    })
    curve = hypervolume_over_time(trials, acc_col="acc", ref_params=1e8, start_time=100.0)
    assert curve["trial_id"].tolist() == ["b", "a", "c"]  # the stopped trial never counts
    assert curve["time_s"].tolist() == [10.0, 30.0, 50.0]
    assert curve["hypervolume"].tolist() == pytest.approx([2 * 0.5, 0.3 + 2 * 0.5, 1.3])
    assert curve["n_complete"].tolist() == [1, 2, 3]
    assert hypervolume_over_time(trials.iloc[0:0], acc_col="acc", ref_params=1e8).empty
