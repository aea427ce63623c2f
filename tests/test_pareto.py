"""Pareto machinery against hand-computed cases and brute force."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_dominance import dominates

from analysis.pareto import (
    hypervolume_over_time,
    knee_point,
    pareto_front,
)

MIN_MAX = (False, True)  # (params: minimise, accuracy: maximise)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_front_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"params": rng.integers(1, 50, 300) * 1000.0,
                       "acc": rng.integers(0, 30, 300) / 30})
    front = pareto_front(df, acc_col="acc")
    pts = list(zip(df["params"], df["acc"], strict=True))
    expected = {i for i, p in enumerate(pts)
                if not any(dominates(q, p, MIN_MAX) for q in pts)}
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
