"""`wrn-search export` (search/export.py): a model that loads with torch alone, its card."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import trained
from fake_run import EPS, make_run
from test_final_evaluation import write_trial

from analysis import front, load_run
from search.cli import main
from search.export import (
    CARD_FILE,
    CARD_JSON,
    PROGRAM_FILE,
    SCRIPT_FILE,
    choose_trial,
)
from trainables import metrics as M
from trainables import run_files
from trainables.checkpoint import best_checkpoint, load_best_model

# The fresh interpreter may import torch but none of this project's packages.
_LOAD = """
import sys
class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("models", "trainables", "search", "analysis"):
            raise ImportError("this package must not be needed: " + name)
sys.meta_path.insert(0, Blocked())
import torch
model = torch.export.load(sys.argv[1]).module()
x = torch.load(sys.argv[2], weights_only=True)
torch.save(model(x).detach(), sys.argv[3])
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, robust_trial) -> Path:
    run = tmp_path_factory.mktemp("export") / "demo"
    (run / run_files.DRIVER_DIR).mkdir(parents=True)
    spec = {"name": "demo", "data": {"dataset": "cifar10-sample"},
            "threat_model": {"norm": "linf", "epsilons": [4 / 255, 2 / 255], "steps": 2}}
    (run / run_files.DRIVER_DIR / run_files.SPEC_JSON).write_text(json.dumps(spec))
    (run / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps({"state": "finished"}))
    write_trial(run, "aaaa0001", *robust_trial)
    write_trial(run, "bbbb0002", *trained(1, model={"width": 2}, training={"epochs": 1},
                                            threat_model={"epsilons": ["4/255", "2/255"]}))
    return run


def test_an_exported_program_loads_without_this_package(
        run_dir: Path, robust_trial, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(run_dir), "--trial", "aaaa0001"]) == 0
    out = capsys.readouterr().out
    folder = Path(out.split(" to ", 1)[1].splitlines()[0])
    assert folder == run_dir / "export" / "aaaa0001"
    assert {p.name for p in folder.iterdir()} == {PROGRAM_FILE, CARD_FILE, CARD_JSON, SCRIPT_FILE}
    card = json.loads((folder / CARD_JSON).read_text())
    assert card["trial_id"] == folder.name and card["test"] is None
    assert card["threat_model"]["epsilons"] == pytest.approx([4 / 255, 2 / 255])
    assert "Not evaluated" in (folder / CARD_FILE).read_text()
    script = (folder / SCRIPT_FILE).read_text()
    compile(script, SCRIPT_FILE, "exec")  # standalone: torch, torchvision, argparse only
    assert "EPS = 0.0156" in script and "import search" not in script

    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.save(x, tmp_path / "x.pt")
    done = subprocess.run([sys.executable, "-c", _LOAD, str(folder / PROGRAM_FILE),
                           str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    logits = torch.load(tmp_path / "y.pt", weights_only=True)
    assert logits.shape == (5, 10)
    # the program is the best checkpoint's model, in eval mode
    model, _ = load_best_model(best_checkpoint(next(run_dir.glob("trial_aaaa0001*"))))
    with torch.no_grad():
        assert torch.allclose(logits, model(x), atol=1e-5)


def test_a_trial_with_test_figures_gets_them_on_its_card(run_dir: Path, tmp_path: Path) -> None:
    evaluation = run_dir / run_files.EVALUATION_DIR
    evaluation.mkdir(exist_ok=True)
    (evaluation / "bbbb0002.json").write_text(json.dumps({
        "trial_id": "bbbb0002", "n": 100, "subset": True, "attacks": ["pgd", "autoattack"],
        M.TEST_CLEAN_ACC: 0.31, M.TEST_CHECKS: "passed", M.TEST_MASKING_SUSPECTED: False,
        "per_eps": {"x": {"label": "4/255", "robust_acc": 0.12}}}))
    assert main(["export", str(run_dir), "--trial", "bbbb0002", "--out", str(tmp_path / "e")]) == 0
    card = json.loads((tmp_path / "e" / CARD_JSON).read_text())
    assert card["architecture"]["name"] == "WRN-10-2" and card["architecture"]["parameters"] == 303_706
    assert card["test"]["robust_acc"] == {"4/255": 0.12} and card["test"]["checks"] == "passed"
    text = (tmp_path / "e" / CARD_FILE).read_text()
    assert "robust at 4/255 (per-example minimum over pgd, autoattack): 12.0%" in text
    assert "(a subset of the test split)" in text


@pytest.mark.parametrize(("args", "needle"), [
    (["--trial", "nope"], "--trial: 'nope' is not allowed; known trials: "),
    (["--trial", "../../x"], "--trial: '../../x' is not allowed"),
])
def test_bad_choices_are_one_line(run_dir: Path, args: list[str], needle: str,
                                  capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


def test_the_knee_is_the_robust_fronts_and_a_front_without_one_is_one_line(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(run_dir), "--knee"]) == 2  # two models: no knee
    err = capsys.readouterr().err
    assert "--knee: the robust front has no knee" in err and "aaaa0001" in err
    run = load_run(make_run(tmp_path))
    trials = run.trials.copy()
    col = M.best_robust_acc_key(EPS[0])
    trials.loc[trials["trial_id"] == "t_b", col] = 0.44  # now well above the chord: the knee
    run = dataclasses.replace(run, trials=trials)
    assert choose_trial(run, None)["trial_id"] == front(run, EPS[0]).knee["trial_id"] == "t_b"
    assert choose_trial(run, "t_a")["trial_id"] == "t_a"


def test_a_folder_without_a_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["export", str(tmp_path), "--knee"]) == 3  # EXIT_NOT_A_RUN
    assert "RUN_DIR" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_symlink_cannot_lead_export_out_of_the_run_folder(run_dir: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    kept = tmp_path / "kept"
    if (run_dir / "export").exists():  # earlier tests' exports, put back afterwards
        (run_dir / "export").rename(kept)
    (run_dir / "export").symlink_to(outside, target_is_directory=True)
    try:
        assert main(["export", str(run_dir), "--trial", "aaaa0001"]) == 2
    finally:
        (run_dir / "export").unlink()
        if kept.exists():
            kept.rename(run_dir / "export")
    err = capsys.readouterr().err
    assert "leads outside the run folder" in err and len(err.strip().splitlines()) == 1
    assert list(outside.iterdir()) == []
