"""The evaluation suite on a tiny trained model (trainables/evaluation/): attacks, the
per-example minimum, the sanity checks, transfer.

One adversarially trained WRN-10-1 (a few seconds on the bundled sample, shared with
test_final_evaluation.py) is evaluated as it is and behind a non-differentiable input
quantisation (gradient masking by construction). Budgets are cut to seconds (AutoAttack
"reduced"); what is tested is the logic, not the strength of full budgets.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from conftest import EXACT_FLOAT32, tf32_allowed, tf32_state
from torch import Tensor, nn

from trainables.config import ConfigError, ThreatModel
from trainables.data import load_dataset
from trainables.evaluation import (
    AUTOATTACK_COMPONENTS,
    AttackOutcome,
    EpsResult,
    ModelEvaluation,
    SuiteConfig,
    autoattack_components,
    evaluate_model,
    sanity_checks,
    transfer_matrix,
)
from trainables.metrics import (
    AUTOATTACK_KEY,
    FGSM_KEY,
    PGD_2RESTARTS_KEY,
    PGD_2STEPS_KEY,
    PGD_KEY,
    SEARCH_PGD_KEY,
    TEST_CHECKS,
)
from trainables.trainer import Trainer

EPS = 4 / 255
N = 50
# Seconds-long budgets; the search attack is PGD-10, as in the test.
SMALL = SuiteConfig(threat_model=ThreatModel(epsilons=(EPS,), steps=10),
                    attacks=("pgd", "autoattack"), pgd_steps=10, pgd_restarts=2, aa_iters=10,
                    aa_queries=200, aa_targets=2, curve_steps=10, batch_size=N)


class Quantised(nn.Module):
    """x -> round(4x)/4 before the model: torch.round has a zero gradient everywhere, so
    every gradient attack is blind while the model still classifies (gradient masking)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * 4) / 4)


@pytest.fixture(scope="module")
def test_images(robust_trial: tuple[Trainer, list]) -> tuple[Tensor, Tensor]:
    data = load_dataset(robust_trial[0].cfg.data, with_test=True)
    return data.test.x[:N].float() / 255, data.test.y[:N]


@pytest.fixture(scope="module")
def model(robust_trial: tuple[Trainer, list]) -> nn.Module:
    return robust_trial[0].model.eval()


@pytest.fixture(scope="module")
def evaluations(model: nn.Module, test_images: tuple[Tensor, Tensor]) -> dict[str, ModelEvaluation]:
    x, y = test_images
    return {name: evaluate_model(m, x, y, SMALL, num_classes=10)
            for name, m in (("normal", model), ("masked", Quantised(model)))}


def _checks(ev: ModelEvaluation) -> dict[str, bool | None]:
    return {c.name: c.passed for c in ev.checks}


CHECK_NAMES = {"near_zero_at_large_eps", "monotone_in_eps", "iterative_beats_single_step",
               "converged", "search_gap", "gradient_free_agrees", "nonzero_gradients"}


# ------------------------------------------------------------------------- the suite


def test_strong_is_at_most_pgd10_is_at_most_clean(evaluations: dict[str, ModelEvaluation],
                                                  test_images: tuple[Tensor, Tensor],
                                                  model: nn.Module) -> None:
    ev = evaluations["normal"]
    (r,) = ev.per_eps
    assert r.attacks[SEARCH_PGD_KEY].label == "PGD-10"
    assert r.robust_acc <= r.attacks[SEARCH_PGD_KEY].acc <= ev.clean_acc
    assert r.robust_acc <= min(o.acc for o in r.attacks.values())  # the per-example minimum
    assert 0 < r.robust_acc and ev.clean_acc > 0.2  # a real model, not a trivial zero
    assert r.robust_acc == int(ev.robust.sum()) / N
    # The kept worst-case inputs obey the threat model and are what the model gets wrong.
    x, y = test_images
    assert (ev.x_adv - x).abs().max() <= EPS + 1e-6 and 0 <= ev.x_adv.min() <= ev.x_adv.max() <= 1
    with torch.no_grad():
        assert torch.equal(model(ev.x_adv).argmax(1) == y, ev.robust)
    assert set(r.autoattack_steps) == {"apgd-ce", "apgd-t", "fab-t", "square"}
    steps = list(r.autoattack_steps.values())
    assert steps == sorted(steps, reverse=True) and steps[-1] == r.attacks[AUTOATTACK_KEY].acc


def test_curve_is_monotone_and_reaches_zero(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["normal"]
    eps, acc = zip(*ev.curve, strict=True)
    assert eps[0] == 0 and acc[0] == ev.clean_acc
    assert eps[-1] >= 0.5 and EPS in eps
    assert all(b <= a for a, b in zip(acc, acc[1:], strict=False)), acc
    assert acc[-1] == 0  # an untargeted attack at eps = 128/255 fools every image


def test_normal_model_passes_every_check(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["normal"]
    checks = _checks(ev)
    assert set(checks) == CHECK_NAMES
    assert all(passed is True for passed in checks.values()), [c for c in ev.checks if not c.passed]
    assert not ev.masking_suspected and ev.checks_verdict == "passed"
    assert ev.zero_grad_fraction == 0


def test_gradient_masked_model_is_flagged(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["masked"]
    checks = _checks(ev)
    assert ev.masking_suspected and ev.checks_verdict == "failed"
    assert checks["nonzero_gradients"] is False and ev.zero_grad_fraction == 1.0
    assert checks["gradient_free_agrees"] is False  # Square finds what PGD cannot
    (r,) = ev.per_eps
    assert r.square_gain is not None and r.square_gain > 1 / N
    # Blind gradient attacks barely move: the gradient-free attack does the work.
    assert r.attacks[SEARCH_PGD_KEY].acc - r.robust_acc >= r.square_gain - 1e-9


def test_transfer_diagonal_is_the_white_box_result(evaluations: dict[str, ModelEvaluation],
                                                   test_images: tuple[Tensor, Tensor],
                                                   model: nn.Module) -> None:
    normal, masked = evaluations["normal"], evaluations["masked"]
    matrix = transfer_matrix([model, Quantised(model)], [normal.x_adv, masked.x_adv],
                             test_images[1], batch_size=N)
    assert matrix[0][0] == normal.per_eps[0].robust_acc
    assert matrix[1][1] == masked.per_eps[0].robust_acc
    assert all(0 <= v <= 1 for row in matrix for v in row)


def test_the_suite_never_touches_weights_grads_or_bn_statistics() -> None:
    from models import WideResNet

    torch.manual_seed(0)
    model = WideResNet(10, 1, 10).train()  # training mode on purpose: restored afterwards
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(8, 3, 32, 32)
    y = model.eval()(x).argmax(1)  # all clean-correct: every attack, FAB's .backward() too
    model.train()
    suite = SuiteConfig(threat_model=ThreatModel(epsilons=(EPS,), steps=2),
                        attacks=("pgd", "autoattack"), pgd_steps=2,
                        aa_iters=3, aa_queries=5, aa_targets=1, curve_steps=2,
                        curve_epsilons=(EPS,), batch_size=8)
    evaluate_model(model, x, y, suite, num_classes=10)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    for name, value in model.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_suite_config_rejects_bad_attacks() -> None:
    with pytest.raises(ConfigError, match=r"--attacks: 'foo' is not allowed; allowed: pgd, "
                                          r"autoattack, fgsm"):
        SuiteConfig(attacks=("pgd", "foo"))


# ------------------------------------------------------------------------- the checks, by hand
# Made-up results where one check must fail, or must pass, or cannot run: a check that
# always said "passed" would fail here.

HEALTHY_CURVE = ((0.0, 0.80), (1 / 255, 0.72), (2 / 255, 0.64), (4 / 255, 0.55), (8 / 255, 0.42),
                 (16 / 255, 0.18), (32 / 255, 0.02), (64 / 255, 0.0), (128 / 255, 0.0))


def hand_made(*, n: int = 1000, clean: float = 0.80, fgsm: float = 0.50, search: float = 0.44,
              pgd: float = 0.42, steps2: float = 0.42, restarts2: float = 0.415, aa: float = 0.40,
              square_gain: float | None = 0.0, curve: tuple = HEALTHY_CURVE, zero_grad: float = 0.0,
              drop: tuple[str, ...] = ()) -> ModelEvaluation:
    """One model at 8/255 on n test images; the defaults are a healthy, robust model."""
    accs = {FGSM_KEY: ("FGSM", fgsm), SEARCH_PGD_KEY: ("PGD-10", search),
            PGD_KEY: ("PGD-50x5", pgd), PGD_2STEPS_KEY: ("PGD-100x5", steps2),
            PGD_2RESTARTS_KEY: ("PGD-50x10", restarts2), AUTOATTACK_KEY: ("AutoAttack", aa)}
    attacks = {k: AttackOutcome(label, acc, 1.0) for k, (label, acc) in accs.items() if k not in drop}
    result = EpsResult(8 / 255, attacks, min(o.acc for o in attacks.values()), {}, square_gain)
    return ModelEvaluation(n=n, num_classes=10, norm="linf", clean_acc=clean, per_eps=[result],
                           curve=list(curve), curve_attack="PGD-20", zero_grad_fraction=zero_grad,
                           checks=[], x_adv=torch.zeros(0), robust=torch.zeros(0, dtype=torch.bool),
                           seconds=0.0)


def _curve_with(last: float | None = None, rise: bool = False) -> tuple:
    curve = list(HEALTHY_CURVE)
    if last is not None:
        curve[-1] = (curve[-1][0], last)
    if rise:
        curve[5] = (curve[5][0], 0.50)  # 16/255 above 8/255's 42%
    return tuple(curve)


@pytest.mark.parametrize(("check", "made", "status"), [
    ("near_zero_at_large_eps", {}, "passed"),
    ("near_zero_at_large_eps", {"curve": _curve_with(last=0.02)}, "passed"),
    ("near_zero_at_large_eps", {"curve": _curve_with(last=0.30)}, "failed"),
    ("near_zero_at_large_eps", {"curve": _curve_with(last=0.05)}, "failed"),  # below chance, not ~0
    ("near_zero_at_large_eps", {"curve": HEALTHY_CURVE[:7]}, "not run"),  # stops at 32/255
    ("monotone_in_eps", {}, "passed"),
    ("monotone_in_eps", {"curve": _curve_with(rise=True)}, "failed"),
    ("iterative_beats_single_step", {}, "passed"),
    ("iterative_beats_single_step", {"fgsm": 0.30}, "failed"),
    ("converged", {}, "passed"),
    ("converged", {"steps2": 0.33}, "failed"),
    ("converged", {"restarts2": 0.33}, "failed"),
    ("converged", {"drop": (PGD_2STEPS_KEY, PGD_2RESTARTS_KEY)}, "not run"),
    ("search_gap", {}, "passed"),  # 4 points: an honest PGD-10 to AutoAttack gap
    ("search_gap", {"search": 0.55}, "failed"),  # 15 points
    ("search_gap", {"search": 0.48}, "failed"),  # 8 points: above the honest 3-6
    ("search_gap", {"drop": (PGD_KEY, AUTOATTACK_KEY)}, "not run"),  # no strong attack ran
    ("gradient_free_agrees", {}, "passed"),
    ("gradient_free_agrees", {"square_gain": 0.01}, "failed"),
    ("gradient_free_agrees", {"square_gain": None}, "not run"),
    ("nonzero_gradients", {}, "passed"),
    ("nonzero_gradients", {"zero_grad": 0.01}, "failed"),
    ("nonzero_gradients", {"clean": 0.0}, "not run"),  # no clean-correct image to look at
])
def test_each_check_fails_passes_or_is_not_run_on_hand_made_results(
        check: str, made: dict[str, Any], status: str) -> None:
    checks = {c.name: c for c in sanity_checks(hand_made(**made), SuiteConfig())}
    assert set(checks) == CHECK_NAMES
    assert checks[check].status == status, checks[check].detail
    assert (checks[check].passed is None) == (status == "not run")
    if status == "not run":
        assert checks[check].detail.startswith("not run")


def test_healthy_hand_made_results_pass_every_check() -> None:
    ev = hand_made()
    ev.checks = sanity_checks(ev, SuiteConfig())
    assert ev.checks_verdict == "passed" and ev.headline()[TEST_CHECKS] == "passed"


def test_thresholds_are_stated_and_configurable() -> None:
    tight, loose = SuiteConfig(), SuiteConfig(gap_threshold=0.10, large_eps_max_acc=0.10)
    assert (tight.gap_threshold, tight.large_eps_max_acc) == (0.06, 0.02)
    made = hand_made(search=0.48, curve=_curve_with(last=0.05))
    for cfg, status in ((tight, "failed"), (loose, "passed")):
        checks = {c.name: c for c in sanity_checks(made, cfg)}
        assert checks["search_gap"].status == status
        assert checks["near_zero_at_large_eps"].status == status
    checks = {c.name: c for c in sanity_checks(made, tight)}
    assert "flagged above 6.1%" in checks["search_gap"].detail  # 6 points + one image of 1000
    assert "allowed up to 2.0%" in checks["near_zero_at_large_eps"].detail
    with pytest.raises(ConfigError, match="large_eps_max_acc"):
        SuiteConfig(large_eps_max_acc=1.5)


def test_a_check_that_did_not_run_is_not_a_pass() -> None:
    ev = hand_made(square_gain=None)  # as with --attacks pgd: Square never ran
    ev.checks = sanity_checks(ev, SuiteConfig())
    assert ev.checks_verdict == "incomplete"
    headline = ev.headline()
    assert headline[TEST_CHECKS] == "incomplete" and "test_checks_passed" not in headline
    details = ev.details()
    assert details["checks_not_run"] == ["gradient_free_agrees"]
    assert "gradient_free_agrees" not in details["checks_rest_on"]
    assert len(details["checks_rest_on"]) == 6 and details["checks_failed"] == []


class Noisy(nn.Module):
    """Answers at random between two classes, anew on every call: whatever an attack found,
    a re-check of the same input disagrees with it half of the time."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape[0], 2, generator=self.gen)
        return 0 * x.flatten(1)[:, :2] + noise  # on the input's graph, with a zero gradient


def test_robust_means_clean_correct_unfooled_and_confirmed_by_the_recheck() -> None:
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(200, 3, 8, 8, generator=gen), torch.randint(0, 2, (200,), generator=gen)
    suite = SuiteConfig(threat_model=ThreatModel(epsilons=(EPS,), steps=2), attacks=("pgd",),
                        pgd_steps=2,
                        pgd_restarts=1, curve_steps=1, curve_epsilons=(EPS,), batch_size=200)
    ev = evaluate_model(Noisy(), x, y, suite, num_classes=2)
    (r,) = ev.per_eps
    assert r.robust_acc == int(ev.robust.sum()) / 200
    assert r.robust_acc <= min(o.acc for o in r.attacks.values())  # no attack fooled it
    assert r.robust_acc <= ev.clean_acc / 4  # far below: the re-check had to agree as well


def test_evaluation_runs_in_exact_float32_and_restores_the_callers_setting(
        model: nn.Module, test_images: tuple[Tensor, Tensor]) -> None:
    x, y = test_images
    seen: list[tuple[object, ...]] = []
    handle = model.register_forward_pre_hook(lambda m, args: seen.append(tf32_state()))
    suite = SuiteConfig(threat_model=ThreatModel(epsilons=(EPS,), steps=2),
                        attacks=("pgd", "autoattack"), pgd_steps=2,
                        aa_iters=2, aa_queries=5, aa_targets=1, curve_steps=2,
                        curve_epsilons=(EPS,), batch_size=N)
    try:
        with tf32_allowed() as caller:
            evaluate_model(model, x[:10], y[:10], suite, num_classes=10)
            assert tf32_state() == caller
    finally:
        handle.remove()
    assert seen and set(seen) == {EXACT_FLOAT32}


def test_autoattack_runs_with_the_standard_versions_settings(model: nn.Module) -> None:
    parts = autoattack_components(model, 8 / 255, SuiteConfig(), 10, torch.device("cpu"))
    assert tuple(parts) == AUTOATTACK_COMPONENTS == ("apgd-ce", "apgd-t", "fab-t", "square")
    apgd, apgd_t, fab, square = parts.values()
    assert (apgd.loss, apgd.n_restarts, apgd.n_iter, apgd.norm) == ("ce", 1, 100, "Linf")
    assert math.isclose(apgd.eps, 8 / 255) and apgd.eot_iter == 1
    assert (apgd_t.n_target_classes, apgd_t.n_restarts, apgd_t.n_iter) == (9, 1, 100)
    assert (fab.targeted, fab.n_target_classes, fab.n_restarts, fab.n_iter) == (True, 9, 1, 100)
    assert (square.n_queries, square.n_restarts, square.p_init) == (5000, 1, 0.8)
    # A reduced budget is applied to every component (and labelled "reduced" elsewhere).
    reduced = SuiteConfig(aa_iters=7, aa_queries=30, aa_targets=2)
    apgd, apgd_t, fab, square = autoattack_components(model, 8 / 255, reduced, 10,
                                                      torch.device("cpu")).values()
    assert (apgd.n_iter, apgd_t.n_iter, fab.n_iter, square.n_queries) == (7, 7, 7, 30)
    assert (apgd_t.n_target_classes, fab.n_target_classes, apgd.loss, fab.targeted) == (2, 2, "ce", True)
