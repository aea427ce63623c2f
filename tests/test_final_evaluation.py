"""`wrn-search evaluate` (search/final_evaluation.py): a hand-made run directory holding the
tiny trained model of the suite's tests and a second model; stored records, resumes, the
report's section, one-line errors.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import trained
from test_evaluation import CHECK_NAMES

import trainables.evaluation.suite as suite
from analysis import load_run, write_report
from analysis.load import read_evaluation
from analysis.pareto import front
from search.cli import main
from search.final_evaluation import evaluate_run
from trainables import metrics as M
from trainables import run_files
from trainables.checkpoint import save_checkpoint
from trainables.config import ConfigError, ThreatModel
from trainables.evaluation import (
    SuiteConfig,
)
from trainables.metrics import (
    TEST_CHECKS,
    attack_acc_key,
    strong_acc_key,
)
from trainables.trainer import Trainer

EPS = 4 / 255


def write_trial(run: Path, trial_id: str, trainer: Trainer, rows: list[dict[str, Any]]) -> None:
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
    write_trial(run, "aaaa0001", *robust_trial)
    wide = trained(1, model={"width": 2}, training={"method": "clean", "epochs": 1},
                    threat_model={"epsilons": ["4/255", "2/255"], "steps": 2})
    write_trial(run, "bbbb0002", *wide)
    stopped, rows = trained(1, training={"epochs": 3})
    write_trial(run, "cccc0003", stopped, rows)  # 1 of 3 epochs: not full fidelity
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
    (run / run_files.DRIVER_DIR).mkdir(parents=True)  # a run that has only started
    (run / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"state": "running"}')
    with pytest.raises(ConfigError, match="no finished"):
        _evaluate(run, [])
    assert main(["evaluate", str(run), "--attacks", "pgd,bogus"]) == 2
    assert "--attacks: 'bogus' is not allowed" in capsys.readouterr().err


def _one_model_run(root: Path, trainer: Trainer, rows: list[dict[str, Any]],
                   trial_id: str) -> Path:
    """A finished run with one trial in trial_abcd0001_10/ whose result.json says `trial_id`."""
    run = root / "demo"
    driver = run / run_files.DRIVER_DIR
    driver.mkdir(parents=True)
    tm = {"norm": "linf", "epsilons": [EPS], "steps": 2, "restarts": 1}
    (driver / run_files.SPEC_JSON).write_text(json.dumps({"name": "demo", "threat_model": tm,
                                                          "data": {"dataset": "cifar10-sample"}}))
    (driver / run_files.RUN_FILE).write_text(json.dumps({"name": "demo", "state": "finished"}))
    folder = run / "trial_abcd0001_10"
    save_checkpoint(trainer, folder / f"checkpoint_{len(rows):06d}")
    lines = [{"trial_id": trial_id, "training_iteration": r[M.EPOCHS_DONE], **r} for r in rows]
    (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def test_a_trial_id_cannot_lead_evaluate_out_of_the_run_folder(
        tmp_path: Path, robust_trial: tuple[Trainer, list]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = f"../../../../../../../..{outside}/evil"
    run = _one_model_run(tmp_path / "a", *robust_trial, trial_id=evil)
    _evaluate(run, [], trial_ids=None, n=10)
    assert list(outside.iterdir()) == []  # no evil.json, no evil.pt
    assert (run / "evaluation" / "abcd0001.json").is_file()  # the folder's id instead
    assert (run / "evaluation" / "adv" / "abcd0001.pt").is_file()
    # A record may not name files either: its trial id and checkpoint are checked.
    record = json.loads((run / "evaluation" / "abcd0001.json").read_text())
    (run / "evaluation" / "abcd0001.json").write_text(json.dumps({**record, "trial_id": evil}))
    _evaluate(run, [], trial_ids=None, n=10)
    assert list(outside.iterdir()) == []


def test_a_symlink_cannot_lead_evaluate_out_of_the_run_folder(
        tmp_path: Path, robust_trial: tuple[Trainer, list], capsys: pytest.CaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    run = _one_model_run(tmp_path / "b", *robust_trial, trial_id="abcd0001")
    (run / "evaluation").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="leads outside the run folder") as err:
        _evaluate(run, [], trial_ids=None, n=10)
    assert "\n" not in str(err.value)
    assert main(["evaluate", str(run), "--attacks", "pgd", "--n", "10"]) == 2
    assert "leads outside the run folder" in capsys.readouterr().err
    assert list(outside.iterdir()) == []
    # A link planted where a file is written is replaced, never written through.
    (run / "evaluation").unlink()
    (run / "evaluation" / "adv").mkdir(parents=True)
    victim = outside / "victim.txt"
    victim.write_text("keep")
    for name in ("abcd0001.json", "abcd0001.json.tmp", "adv/abcd0001.pt.tmp"):
        (run / "evaluation" / name).symlink_to(victim)
    _evaluate(run, [], trial_ids=None, n=10)
    assert victim.read_text() == "keep"
    assert not (run / "evaluation" / "abcd0001.json").is_symlink()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_damaged_files_skip_or_redo_a_model_and_never_stop_evaluate(
        tmp_path: Path, robust_trial: tuple[Trainer, list], caplog: pytest.LogCaptureFixture) -> None:
    run = _one_model_run(tmp_path, *robust_trial, trial_id="abcd0001")
    write_trial(run, "bbbb0002", *trained(1, model={"width": 2},
                                          training={"method": "clean", "epochs": 1},
                                          threat_model={"epsilons": ["4/255"], "steps": 2}))
    both = ["abcd0001", "bbbb0002"]
    _evaluate(run, [], trial_ids=both, n=10)
    out = run / "evaluation"

    # A truncated adv file would break every later transfer step: its model is redone.
    _truncate(out / "adv" / "abcd0001.pt")
    lines: list[str] = []
    _evaluate(run, lines, trial_ids=both, n=10)
    assert [ln.split()[1] for ln in lines if "skipped" in ln] == ["bbbb0002"]
    assert "adversarial examples: " in caplog.text and "abcd0001.pt" in caplog.text
    # A damaged record is ignored and redone.
    (out / "bbbb0002.json").write_text('{"format": 2, "trial_')
    lines = []
    _evaluate(run, lines, trial_ids=both, n=10)
    assert [ln.split()[1] for ln in lines if "skipped" in ln] == ["abcd0001"]
    assert json.loads((out / "bbbb0002.json").read_text())["trial_id"] == "bbbb0002"

    # A truncated checkpoint: one warning naming it, the others carry on.
    best = next(run.glob("trial_abcd0001_*/checkpoint_*/best_model.pt"))
    _truncate(best)
    caplog.clear()
    summary = _evaluate(run, [], trial_ids=both, n=10)
    warned = [r.getMessage() for r in caplog.records if "abcd0001 skipped" in r.getMessage()]
    assert len(warned) == 1 and str(best) in warned[0] and "\n" not in warned[0]
    assert any(ln.startswith("not evaluated, a file could not be read: abcd0001") for ln in summary)
    assert any(ln.startswith("WRN-10-2 (bbbb0002)") for ln in summary)

    # Empty, foreign, and of other shapes: the same; with no model left, one line.
    other = next(run.glob("trial_bbbb0002_*/checkpoint_*/best_model.pt"))
    blob = torch.load(other, weights_only=True)
    blob["model"] = torch.load(best.with_name("state.pt"), weights_only=True)["model"]  # WRN-10-1
    torch.save(blob, other)
    for content in (b"", b"\x80\x04K\x01.", None):
        if content is not None:
            best.write_bytes(content)
        with pytest.raises(ConfigError) as err:
            _evaluate(run, [], trial_ids=both, n=10)
        message = str(err.value)
        assert "no model could be evaluated" in message and "\n" not in message
        assert str(best) in message and str(other) in message and "size mismatch" in message
