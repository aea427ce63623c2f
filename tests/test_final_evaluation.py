"""`wrn-search evaluate` on tiny trained models: the suite, the checks, the run-level command.

One adversarially trained WRN-10-1 (a few seconds on the bundled sample) is evaluated as
it is and behind a non-differentiable input quantisation (gradient masking by
construction); a hand-made run directory holds it and a second model for the command.
Budgets are cut to seconds (AutoAttack "reduced"); what is tested is the logic, not the
strength of full budgets.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import EXACT_FLOAT32, tf32_allowed, tf32_state, tiny_trial
from torch import Tensor, nn

import trainables.evaluation.suite as suite
from analysis import load_run, write_report
from analysis.load import read_evaluation
from analysis.pareto import front
from search.cli import main
from search.final_evaluation import evaluate_run
from trainables import metrics as M
from trainables import run_files
from trainables.checkpoint import save_checkpoint
from trainables.config import ConfigError, ThreatModel, TrialConfig
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
    attack_acc_key,
    strong_acc_key,
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


def _trainer(epochs: int, **sections: Any) -> tuple[Trainer, list[dict[str, Any]]]:
    trainer = Trainer(TrialConfig.from_dict(tiny_trial(**sections)))
    return trainer, [trainer.run_epoch() for _ in range(epochs)]


@pytest.fixture(scope="module")
def robust_trial() -> tuple[Trainer, list[dict[str, Any]]]:
    """WRN-10-1, PGD-1 adversarial training at 4/255: clean ~30%, robust ~20% at 4/255."""
    return _trainer(
        4, data={"train_subset": 1000, "val_size": 100},
        training={"method": "pgd", "steps": 1, "epochs": 4, "batch_size": 50, "lr": 0.1,
                  "eps": "4/255"},
        threat_model={"epsilons": ["4/255", "2/255"], "steps": 2, "batch_size": 100})


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


# ------------------------------------------------------------------------- the command


def _write_trial(run: Path, trial_id: str, trainer: Trainer, rows: list[dict[str, Any]]) -> None:
    folder = run / f"trial_{trial_id}_{trainer.cfg.model.depth}"
    save_checkpoint(trainer, folder / f"checkpoint_{len(rows):06d}")
    lines = [{"trial_id": trial_id, "training_iteration": r[M.EPOCHS_DONE], **r} for r in rows]
    (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (folder / "params.json").write_text(json.dumps({"depth": trainer.cfg.model.depth}))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory,
            robust_trial: tuple[Trainer, list]) -> Path:
    """A finished run as `wrn-search run` leaves it: two full-fidelity trials, one stopped."""
    run = tmp_path_factory.mktemp("evalrun") / "demo"
    driver = run / run_files.DRIVER_DIR
    driver.mkdir(parents=True)
    tm = {"norm": "linf", "epsilons": [EPS, 2 / 255], "steps": 2, "restarts": 1}
    (driver / run_files.SPEC_JSON).write_text(json.dumps({"name": "demo", "threat_model": tm,
                                                  "data": {"dataset": "cifar10-sample"}}))
    (driver / run_files.RUN_FILE).write_text(json.dumps({"name": "demo", "state": "finished"}))
    _write_trial(run, "aaaa0001", *robust_trial)
    wide = _trainer(1, model={"width": 2}, training={"method": "clean", "epochs": 1},
                    threat_model={"epsilons": ["4/255", "2/255"], "steps": 2})
    _write_trial(run, "bbbb0002", *wide)
    stopped, rows = _trainer(1, training={"epochs": 3})
    _write_trial(run, "cccc0003", stopped, rows)  # 1 of 3 epochs: not full fidelity
    return run


PGD_ONLY = SuiteConfig(threat_model=ThreatModel(steps=2), pgd_steps=5, pgd_restarts=2, curve_steps=5)


def _evaluate(run_dir: Path, lines: list[str], **kwargs: Any) -> list[str]:
    args: dict[str, Any] = {"trial_ids": ["aaaa0001", "bbbb0002"], "attacks": ["pgd"], "n": 30,
                            "corruptions": False, "device": "cpu", "batch_size": 50,
                            "printer": lines.append, "suite": PGD_ONLY}
    return evaluate_run(run_dir, **{**args, **kwargs})


def test_evaluate_run_stores_resumes_and_reports(run_dir: Path) -> None:
    lines: list[str] = []
    summary = _evaluate(run_dir, lines)
    out = run_dir / "evaluation"
    files = {p.name for p in out.glob("*.json")}
    assert files == {"aaaa0001.json", "bbbb0002.json", "transfer.json"}
    assert any("the first 30 of 500: a subset" in line for line in lines)
    assert any("first 30 of 500 test images only" in line for line in summary)
    assert any(" left" in line for line in lines if "PGD" in line)  # a running estimate
    record = json.loads((out / "aaaa0001.json").read_text())
    assert record["split"] == "test" and record["n"] == 30 and record["subset"] is True
    # --attacks pgd: Square never ran, so the record cannot claim every check passed.
    status = {c["name"]: c["status"] for c in record["checks"]}
    assert status["gradient_free_agrees"] == "not run" and set(status) == CHECK_NAMES
    assert record["checks_verdict"] == record[TEST_CHECKS] == "incomplete"
    assert "test_checks_passed" not in record
    line = next(ln for ln in summary if ln.startswith("WRN-10-1 (aaaa0001)"))
    assert "checks INCOMPLETE" in line and "not run: gradient_free_agrees" in line
    assert "rests on" in line
    best = next(run_dir.glob("trial_aaaa0001_*/checkpoint_*/best_model.pt"))
    assert record["fingerprint"]["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()
    assert record["search"]["split"] == "validation"
    for eps in (EPS, 2 / 255):
        strong = record[strong_acc_key(eps)]
        assert strong <= record[attack_acc_key("search_pgd", eps)] <= record["test_clean_acc"]
    # The analysis loader merges the headline numbers into the trials table.
    trials = load_run(run_dir).trials.set_index("trial_id")
    assert trials.loc["aaaa0001", strong_acc_key(EPS)] == record[strong_acc_key(EPS)]
    assert math.isnan(trials.loc["cccc0003", strong_acc_key(EPS)])
    # Transfer: the diagonal is each model's own white-box result.
    transfer = json.loads((out / "transfer.json").read_text())
    assert transfer["trials"] == ["aaaa0001", "bbbb0002"]  # by size
    for i, trial_id in enumerate(transfer["trials"]):
        own = json.loads((out / f"{trial_id}.json").read_text())
        assert transfer["matrix"][i][i] == own[strong_acc_key(EPS)]

    # A rerun skips finished models; corruptions are added from the stored examples.
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "adv").iterdir()}
    again: list[str] = []
    _evaluate(run_dir, again, corruptions=True)
    assert sum("skipped" in line for line in again) == 2
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (out / "adv").iterdir()}
    corr = json.loads((out / "aaaa0001.json").read_text())["corruptions"]
    assert set(corr) == {"jpeg", "blur", "noise", "brightness", "contrast"}
    for c in corr.values():
        assert 0 <= c["destroyed"] <= c["adversarial"]
    # A resumed trial writes a newer best_model.pt: the stored figures are stale, so redone.
    blob = torch.load(best, weights_only=True)
    blob["model"]["fc.bias"][0] += 1.0
    torch.save(blob, best)
    after: list[str] = []
    _evaluate(run_dir, after)
    assert [ln.split()[1] for ln in after if "skipped" in ln] == ["bbbb0002"]
    record = json.loads((out / "aaaa0001.json").read_text())
    assert record["fingerprint"]["checkpoint_sha256"] == hashlib.sha256(best.read_bytes()).hexdigest()

    written = write_report(run_dir, formats=("html", "md", "csv"))
    page = (run_dir / "report" / "report.html").read_text()
    md = (run_dir / "report" / "report.md").read_text()
    for text in (page, md):
        assert "Test-split evaluation (strong attacks)" in text
        assert "30 of 500 test images (a subset, --n)" in text
        assert "Sanity checks (Carlini et al. 2019)" in text and "PASS" in text
        assert "INCOMPLETE" in text and "not run" in text and "rests on" in text
        assert "(white-box)" in text and "destruction rate" in text
        assert "except the section" in text  # the split statement stays honest
    assert run_dir / "report" / "evaluation.csv" in written
    assert page.count("<svg") >= 5 and "https://" not in page and "<script" not in page.lower()

    # A different n is a different evaluation: redone, not skipped.
    third: list[str] = []
    _evaluate(run_dir, third, trial_ids=["aaaa0001"], n=20)
    assert not any("skipped" in line for line in third)
    assert json.loads((out / "aaaa0001.json").read_text())["n"] == 20


def test_evaluate_run_defaults_to_the_front(run_dir: Path) -> None:
    lines: list[str] = []
    _evaluate(run_dir, lines, trial_ids=None, n=10)
    run = load_run(run_dir)
    assert run.eval_epsilons[0] == EPS  # the spec's objective, read from the driver folder
    expected = set(front(run, EPS).members["trial_id"])
    assert expected and "cccc0003" not in expected
    evaluated = {line.split()[1] for line in lines if line.startswith("[")}
    assert evaluated == expected
    assert read_evaluation(run_dir) is not None


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"attacks": ["pgd", "foo"]}, "--attacks: 'foo' is not allowed; allowed: pgd, autoattack, fgsm"),
    ({"trial_ids": ["nope"]}, "--trial: 'nope' is not allowed; known trials: "),
    ({"n": 0}, "--n: 0 is not allowed"),
    ({"device": "tpu"}, "--device: 'tpu' is not allowed"),
    ({"batch_size": 0}, "--batch-size: 0 is not allowed"),
])
def test_bad_input_is_a_one_line_config_error(run_dir: Path, kwargs: dict[str, Any],
                                              needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        _evaluate(run_dir, [], **kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_an_untested_pyautoattack_fails_in_one_line(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(suite, "autoattack_version", lambda: "0.3.1")
    with pytest.raises(ConfigError) as err:
        _evaluate(run_dir, [], attacks=["pgd", "autoattack"])
    message = str(err.value)
    assert message.startswith("pyautoattack: '0.3.1' is not allowed") and "\n" not in message
    assert ">=0.2,<0.3" in message
    assert main(["evaluate", str(run_dir), "--attacks", "autoattack"]) == 2
    err_text = capsys.readouterr().err
    assert "pyautoattack: '0.3.1' is not allowed" in err_text and len(err_text.splitlines()) == 1


def test_run_without_finished_trials_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    with pytest.raises(ConfigError, match="no finished"):
        _evaluate(run, [])
    assert main(["evaluate", str(run), "--attacks", "pgd,bogus"]) == 2
    assert "--attacks: 'bogus' is not allowed" in capsys.readouterr().err
