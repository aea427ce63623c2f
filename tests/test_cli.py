"""The command line: real runs of `train` and `run --dry-run`, and one line per bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["train", "--depth", "10", "--width", "1", "--epsilon", "8/255", "--steps", "1",
              "--epochs", "2", "--batch-size", "50", "--train-subset", "200", "--val-size", "50",
              "--eval-steps", "2", "--threads", "1"]


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def _one_error_line(capsys: pytest.CaptureFixture, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("wrn-search")
    return err


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--depth", "35"], "model.depth: 35 is not allowed"),
    (["train", "--width", "0"], "model.width: 0"),
    (["train", "--epsilon", "2"], "training.eps: '2'"),
    (["train", "--epsilon", "eight"], "training.eps: 'eight'"),
    (["train", "--method", "trades"], "training.method: 'trades'"),
    (["train", "--eval-epsilon", "8/0"], "threat_model.epsilons"),
    (["train", "--dataset", "mnist"], "data.dataset: 'mnist'"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["train", "--depth", "ten"], "argument --depth: invalid int value"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "/nonexistent/spec.toml"], "spec: '/nonexistent/spec.toml' does not exist"),
    (["resume", "/nonexistent/run"], "RUN_DIR: '/nonexistent/run'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str,
                                          capsys: pytest.CaptureFixture) -> None:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert needle in _one_error_line(capsys, code)


def test_cuda_requested_without_cuda(capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    code = main([*TINY_TRAIN, "--device", "cuda", "--out", "unused"])
    assert "device: 'cuda' is not allowed" in _one_error_line(capsys, code)


def test_bad_spec_field_fails_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[scheduler]\nkind = "hyperband"\n')
    code = main(["run", str(spec)])
    assert "scheduler.kind: 'hyperband' is not allowed; allowed: mo-asha, asha, none" in \
        _one_error_line(capsys, code)


def test_train_writes_its_outputs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "one"
    done = _cli(*TINY_TRAIN, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "epoch   2/2" in done.stdout and "WRN-10-1 (77,850 parameters)" in done.stdout
    assert "validation split" in done.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epochs_done"] for r in rows] == [1, 2]
    assert (out / "metrics.csv").read_text().count("\n") == 3
    assert {p.name for p in (out / "checkpoint").iterdir()} == {"state.pt", "best_model.pt"}
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert json.loads((out / "config.json").read_text())["model"] == {"depth": 10, "width": 1,
                                                                      "dropout": 0.0}

    again = _cli(*TINY_TRAIN, "--out", str(out))  # would clobber: refused
    assert again.returncode == 2 and "pass --resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    changed = _cli(*TINY_TRAIN, "--out", str(out), "--resume", "--seed", "1")
    assert changed.returncode == 2 and "--resume: data.seed = 1 is not allowed" in changed.stderr


def test_train_killed_mid_run_resumes_the_same_run(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = [*TINY_TRAIN[:TINY_TRAIN.index("--epochs") + 1], "4",
            *TINY_TRAIN[TINY_TRAIN.index("--epochs") + 2:], "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    done_before = len(metrics.read_text().splitlines())
    assert 1 <= done_before < 4, "the run ended before it could be killed"
    resumed = _cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout and "epoch   4/4" in resumed.stdout
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epochs_done"] for r in rows] == [1, 2, 3, 4]


def test_run_dry_run_prints_the_validated_spec(tmp_path: Path) -> None:
    done = _cli("run", str(ROOT / "configs" / "quickstart.toml"), "--dry-run", "--budget", "90s")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["budget"]["time"] == 90.0
    assert shown["parameter_range"] == {"min": 77_850, "max": 691_674}
    assert shown["space"]["depth"] == [10, 16]
