"""`wrn-search train`: one run and its output folder, outside Ray (trainables/train_folder.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import ROOT, run_cli

TINY_TRAIN = ["train", "--depth", "10", "--width", "1", "--epsilon", "8/255", "--steps", "1",
              "--epochs", "2", "--batch-size", "50", "--train-subset", "200", "--val-size", "50",
              "--eval-steps", "2", "--threads", "1"]


def test_train_writes_its_outputs_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "one"
    done = run_cli(*TINY_TRAIN, "--out", str(out))
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

    again = run_cli(*TINY_TRAIN, "--out", str(out))  # would clobber: refused
    assert again.returncode == 2 and "pass --resume" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1

    changed = run_cli(*TINY_TRAIN, "--out", str(out), "--resume", "--seed", "1")
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
    resumed = run_cli(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout and "epoch   4/4" in resumed.stdout
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert [r["epochs_done"] for r in rows] == [1, 2, 3, 4]
