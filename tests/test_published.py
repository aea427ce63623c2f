"""Published anchors: complete, checkable entries, and only where the threat model matches."""

from __future__ import annotations

import pandas as pd
import pytest

from analysis.pareto import pareto_front
from analysis.published import (
    AUTOATTACK,
    EVALUATIONS,
    PGD10,
    PUBLISHED_REFERENCE,
    RICE_WIDTH_SWEEP,
    ROBUSTBENCH,
    published_for,
)
from models import count_parameters


def test_every_point_says_what_it_is_and_where_it_comes_from() -> None:
    assert len(ROBUSTBENCH) == 6 and len(RICE_WIDTH_SWEEP) == 12
    for p in PUBLISHED_REFERENCE:
        assert 0 < p.robust_acc < p.clean_acc < 1, p
        assert p.evaluation in EVALUATIONS and p.paper and p.source
        assert p.params == count_parameters(p.depth, p.width, 10)
        tip = p.tooltip()
        assert p.wrn in tip and EVALUATIONS[p.evaluation] in tip and p.source in tip
    assert {p.evaluation for p in ROBUSTBENCH} == {AUTOATTACK}
    assert {p.evaluation for p in RICE_WIDTH_SWEEP} == {PGD10}
    assert all(p.source.startswith("RobustBench model_info/cifar10/Linf/") for p in ROBUSTBENCH)
    assert [p.width for p in RICE_WIDTH_SWEEP] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20]


def test_the_robustbench_points_are_the_published_front_and_two_baselines() -> None:
    table = pd.DataFrame([{"name": p.name, "params": p.params, "acc": p.robust_acc}
                          for p in ROBUSTBENCH])
    front = pareto_front(table, acc_col="acc", params_col="params")
    assert list(front["name"]) == ["Ding 2020", "Qin 2019", "Addepalli 2022", "Chen 2024"]
    assert set(table["name"]) - set(front["name"]) == {"Madry 2018", "Rice 2020"}


def test_one_model_under_both_evaluations_shows_the_gap() -> None:
    # Rice et al.'s WRN-34-20: 58.16% under their PGD-10, 53.42% under AutoAttack.
    rice_aa = next(p for p in ROBUSTBENCH if p.name == "Rice 2020")
    rice_pgd = next(p for p in RICE_WIDTH_SWEEP if p.width == 20)
    assert (rice_aa.depth, rice_aa.width) == (rice_pgd.depth, rice_pgd.width) == (34, 20)
    assert rice_pgd.robust_acc - rice_aa.robust_acc == pytest.approx(0.0474)
    assert rice_aa.clean_acc == rice_pgd.clean_acc == pytest.approx(0.8534)


@pytest.mark.parametrize(("dataset", "norm", "eps", "shown"), [
    ("cifar10", "linf", 8 / 255, True),
    ("cifar10-sample", "linf", 8 / 255, True),
    ("cifar10", "linf", 4 / 255, False),
    ("cifar10", "l2", 8 / 255, False),
    ("cifar100", "linf", 8 / 255, False),
    ("svhn", "linf", 8 / 255, False),
    ("cifar10", "linf", None, False),
])
def test_anchors_only_where_the_threat_model_matches(dataset: str, norm: str, eps: float | None,
                                                     shown: bool) -> None:
    assert bool(published_for(dataset, norm, eps)) is shown
