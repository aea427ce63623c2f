"""`wrn-search evaluate` on tiny trained models: the suite, the checks, the run-level command.

One adversarially trained WRN-10-1 (a few seconds on the bundled sample) is evaluated as
it is and behind a non-differentiable input quantisation (gradient masking by
construction); a hand-made run directory holds it and a second model for the command.
Budgets are cut to seconds (AutoAttack "reduced"); what is tested is the logic, not the
strength of full budgets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from analysis import load_run, write_report
from analysis.load import read_evaluation
from analysis.pareto import front
from search.cli import main
from search.evaluate import evaluate_run
from tests.conftest import tiny_trial
from trainables import metrics as M
from trainables.checkpoint import save_checkpoint
from trainables.config import ConfigError, TrialConfig
from trainables.data import load_dataset
from trainables.engine import Trainer
from trainables.evaluation import (
    AUTOATTACK_KEY,
    SEARCH_PGD_KEY,
    ModelEvaluation,
    SuiteConfig,
    attack_acc_key,
    evaluate_model,
    strong_acc_key,
    transfer_matrix,
)

EPS = 4 / 255
N = 50
# Seconds-long budgets; the search attack is PGD-10, as in the test.
SMALL = SuiteConfig(epsilons=(EPS,), attacks=("pgd", "autoattack"), search_steps=10,
                    pgd_steps=10, pgd_restarts=2, aa_iters=10, aa_queries=200, aa_targets=2,
                    curve_steps=10, batch_size=N)


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


def test_curve_is_monotone_and_reaches_chance(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["normal"]
    eps, acc = zip(*ev.curve, strict=True)
    assert eps[0] == 0 and acc[0] == ev.clean_acc
    assert eps[-1] >= 0.5 and EPS in eps
    assert all(b <= a for a, b in zip(acc, acc[1:], strict=False)), acc
    assert acc[-1] <= 0.1 + 1 / N  # about chance (ten classes) at eps = 0.5


def test_normal_model_passes_every_check(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["normal"]
    checks = _checks(ev)
    assert set(checks) == {"chance_at_large_eps", "monotone_in_eps", "iterative_beats_single_step",
                           "converged", "search_gap", "gradient_free_agrees", "nonzero_gradients"}
    assert all(passed is True for passed in checks.values()), [c for c in ev.checks if not c.passed]
    assert not ev.masking_suspected and ev.checks_passed
    assert ev.zero_grad_fraction == 0


def test_gradient_masked_model_is_flagged(evaluations: dict[str, ModelEvaluation]) -> None:
    ev = evaluations["masked"]
    checks = _checks(ev)
    assert ev.masking_suspected and not ev.checks_passed
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
    suite = SuiteConfig(epsilons=(EPS,), attacks=("pgd", "autoattack"), pgd_steps=2,
                        search_steps=2, aa_iters=3, aa_queries=5, aa_targets=1, curve_steps=2,
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
    driver = run / M.DRIVER_DIR
    driver.mkdir(parents=True)
    tm = {"norm": "linf", "epsilons": [EPS, 2 / 255], "steps": 2, "restarts": 1}
    (driver / M.SPEC_JSON).write_text(json.dumps({"name": "demo", "threat_model": tm,
                                                  "data": {"dataset": "cifar10-sample"}}))
    (driver / M.RUN_FILE).write_text(json.dumps({"name": "demo", "state": "finished"}))
    _write_trial(run, "aaaa0001", *robust_trial)
    wide = _trainer(1, model={"width": 2}, training={"method": "clean", "epochs": 1},
                    threat_model={"epsilons": ["4/255", "2/255"], "steps": 2})
    _write_trial(run, "bbbb0002", *wide)
    stopped, rows = _trainer(1, training={"epochs": 3})
    _write_trial(run, "cccc0003", stopped, rows)  # 1 of 3 epochs: not full fidelity
    return run


PGD_ONLY = SuiteConfig(search_steps=2, pgd_steps=5, pgd_restarts=2, curve_steps=5)


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
    record = json.loads((out / "aaaa0001.json").read_text())
    assert record["split"] == "test" and record["n"] == 30 and record["subset"] is True
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

    written = write_report(run_dir, formats=("html", "md", "csv"))
    page = (run_dir / "report" / "report.html").read_text()
    md = (run_dir / "report" / "report.md").read_text()
    for text in (page, md):
        assert "Test-split evaluation (strong attacks)" in text
        assert "30 of 500 test images (a subset, --n)" in text
        assert "Sanity checks (Carlini et al. 2019)" in text and "PASS" in text
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


def test_run_without_finished_trials_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "empty"
    run.mkdir()
    with pytest.raises(ConfigError, match="no finished"):
        _evaluate(run, [])
    assert main(["evaluate", str(run), "--attacks", "pgd,bogus"]) == 2
    assert "--attacks: 'bogus' is not allowed" in capsys.readouterr().err
