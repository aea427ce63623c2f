"""Pareto maths (analysis.dominance) against hand-computed cases and one brute-force oracle.

`brute_ranks` is the only oracle of non-dominated ranks in the suite: the scheduler's tests
import it too.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from analysis.dominance import (
    crowding_distances,
    expected_hypervolume_gain,
    front_size,
    hypervolume_2d,
    non_dominated_sort,
    nondominated_ranks,
)
from analysis.pareto import pareto_front

MIN_MAX = (False, True)  # (params: minimise, accuracy: maximise)


def dominates(a: tuple[float, ...], b: tuple[float, ...], maximize: tuple[bool, ...]) -> bool:
    better = False
    for x, y, up in zip(a, b, maximize, strict=True):
        if (x < y) if up else (x > y):
            return False
        better |= (x > y) if up else (x < y)
    return better

def brute_ranks(points: np.ndarray, maximize: tuple[bool, ...]) -> list[int]:
    """Rank = length of the longest chain of dominators above a point (a second definition)."""
    pts = [tuple(p) for p in points]
    signs = [-1 if up else 1 for up in maximize]
    order = sorted(range(len(pts)), key=lambda i: sum(s * v for s, v in zip(signs, pts[i],
                                                                              strict=True)))
    rank: dict[int, int] = {}
    for i in order:  # a dominator has a strictly smaller signed sum: it is ranked already
        above = [rank[j] for j in rank if dominates(pts[j], pts[i], maximize)]
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
    assert non_dominated_sort(points, maximize).tolist() == brute_ranks(points, maximize)

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

def test_crowding_distance_values_on_a_small_front() -> None:
    points = np.array([[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0], [5.0, 5.0]])
    ranks = nondominated_ranks(points)
    assert ranks.tolist() == [0, 0, 0, 0, 1]
    crowding = crowding_distances(points, ranks)
    # Interior: (3 - 0) / 4 per objective, twice; ends infinite; a lone front is infinite too.
    assert crowding.tolist() == [math.inf, 1.5, 1.5, math.inf, math.inf]

@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.1, 0.2, 0.5, 0.9, math.nan]), st.sampled_from([1.0, 2.0, 5.0])
        ),
        min_size=1,
        max_size=12,
    )
)
def test_nan_rows_rank_after_every_real_one(points: list[tuple[float, float]]) -> None:
    real = [i for i, (acc, _) in enumerate(points) if not math.isnan(acc)]
    brute = brute_ranks(np.array([points[i] for i in real]).reshape(-1, 2), (True, False))
    got = nondominated_ranks(np.array([(-a, p) for a, p in points]))
    assert [int(got[i]) for i in real] == brute
    tail = max(brute, default=-1) + 1
    assert all(int(got[i]) == tail for i, (a, _) in enumerate(points) if math.isnan(a))


def test_front_size_counts_what_the_report_counts() -> None:
    points = [(100, 0.5), (100, 0.5), (200, 0.4), (300, 0.9)]
    assert front_size(points) == 3  # identical points both count, as in pareto_front
    frame = pd.DataFrame(points, columns=["params", "acc"])
    assert front_size(points) == len(pareto_front(frame, acc_col="acc"))
    assert front_size([]) == 0


@pytest.mark.parametrize("seed", range(6))
def test_expected_hypervolume_gain_matches_quadrature(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ref = 1e7
    points = np.column_stack([10 ** rng.uniform(4, 6.8, seed), rng.uniform(0, 0.5, seed)])
    base = hypervolume_2d(points, ref_params=ref)
    for _ in range(3):
        size, mean, std = 10 ** rng.uniform(4, 6.9), rng.uniform(-0.1, 0.6), rng.uniform(0.005, 0.1)
        got = expected_hypervolume_gain(points, [size], [mean], [std], ref_params=ref)[0]
        acc = np.linspace(mean - 8 * std, mean + 8 * std, 2001)
        weights = norm.pdf(acc, mean, std)
        weights /= weights.sum()
        want = sum(w * (hypervolume_2d(np.vstack([points, [size, a]]), ref_params=ref) - base)
                   for a, w in zip(acc, weights, strict=True))
        assert got == pytest.approx(want, abs=1e-6)
