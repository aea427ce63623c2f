"""The loader and the report on hand-made run directories (no Ray involved)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from analysis import fronts, hypervolume_2d, load_run, write_report
from analysis.spend import cost_error, spend_table, unfinished_spend
from models import count_parameters, wrn_name
from trainables import formats, metrics, run_files
from trainables.config import ConfigError

EPS = (8 / 255, 4 / 255)
MAX_EPOCHS = 9
T0 = 1_790_000_000.0
SPACE_MAX = (28, 10)  # the largest model the hand-made spec's space allows
ERROR_TXT = """Failure # 1 (occurred at 2026-11-23_13-05-00)
ray::ImplicitFunc.train() (pid=123, ip=127.0.0.1, actor_id=abc, repr=train_wrn)
  File "/site-packages/ray/tune/trainable/trainable.py", line 331, in train
    raise skipped from exception_cause(skipped)
  File "/work/trainables/tune_trial.py", line 88, in train_wrn
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
"""


def _spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "data": {"dataset": "cifar10-sample", "val_size": 0.1, "seed": 0},
        "threat_model": {"norm": "linf", "epsilons": list(EPS), "steps": 10, "restarts": 1},
        "space": {"depth": [10, 16, 22, SPACE_MAX[0]], "width": [1, 2, 4, SPACE_MAX[1]]},
        "training": {"epochs": MAX_EPOCHS},
        "budget": {"time_s": 3600},
        "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
        "scheduler": {"kind": "mo-asha", "grace_period": 1, "reduction_factor": 3},
        "searcher": {"kind": "optuna", "seed": 0},
        "storage": {"path": "runs"},
    }


def _result(trial_id: str, depth: int, width: int, epoch: int, robust: float, clean: float,
            best: dict[str, float], start: float) -> dict[str, Any]:
    """One result.json line as the trainable reports it (names from trainables.metrics)."""
    hyper = {metrics.DEPTH: depth, metrics.WIDTH: width, metrics.METHOD: "pgd",
             metrics.TRAIN_EPS: 8 / 255, metrics.TRAIN_STEPS: 7, metrics.PEAK_LR: 0.1,
             metrics.WEIGHT_DECAY: 5e-4}
    wall = 10.0 * epoch * (depth * width) / 10
    line = {
        "trial_id": trial_id, "training_iteration": epoch, "time_total_s": wall,
        "timestamp": start + wall, "date": "2026-11-23_13-00-00",
        metrics.WRN: wrn_name(depth, width), metrics.PARAMS: count_parameters(depth, width),
        metrics.EPOCHS_DONE: epoch, metrics.MAX_EPOCHS: MAX_EPOCHS, **hyper,
        metrics.TRAIN_LOSS: 1.5, metrics.TRAIN_ACC: 0.4, metrics.LR: 0.01,
        metrics.VAL_CLEAN_ACC: clean, metrics.VAL_ROBUST_ACC: robust,
        metrics.EPOCH_TIME_S: 9.0, metrics.EVAL_TIME_S: 1.0, metrics.WALL_TIME_S: wall,
        metrics.TRAIN_IMAGES_PER_S: 500.0, metrics.GPU_SHARE: 0.0, metrics.SPLIT: "validation",
        "config": hyper,  # Ray nests the trial config in every result
    }
    line |= {metrics.robust_acc_key(e): _at(robust, i) for i, e in enumerate(EPS)}
    return line | best


def _at(robust: float, i: int) -> float:
    """Robust accuracy at the i-th (smaller) eval epsilon: higher than at the first."""
    return min(0.99, robust * (1 + 0.3 * i))


def _lines(trial_id: str, depth: int, width: int, epochs: int, robust: float, clean: float,
           start: float, peak: bool = False) -> list[dict[str, Any]]:
    """Accuracy rising to (robust, clean) at the last epoch; `peak`: best one epoch earlier."""
    lines, best = [], {}
    for epoch in range(1, epochs + 1):
        frac = 0.6 + 0.4 * epoch / epochs
        r, c = robust * frac, clean * frac
        if peak and epoch == epochs - 1:
            r = robust + 0.02
        if not best or r > best[metrics.BEST_VAL_ROBUST_ACC]:
            best = {metrics.BEST_VAL_ROBUST_ACC: r, metrics.BEST_VAL_CLEAN_ACC: c,
                    metrics.BEST_EPOCH: epoch}
            best |= {metrics.best_robust_acc_key(e): _at(r, i) for i, e in enumerate(EPS)}
        lines.append(_result(trial_id, depth, width, epoch, r, c, dict(best), start))
    return lines


# trial id -> (depth, width, epochs done, final robust, final clean)
COMPLETE = {
    "t_a": (10, 1, 9, 0.30, 0.55),
    "t_b": (16, 2, 9, 0.38, 0.65),
    "t_c": (16, 4, 9, 0.45, 0.72),  # peaks at epoch 8 (robust overfitting)
    "t_d": (22, 4, 9, 0.43, 0.73),  # dominated in robust accuracy, on the clean front
}
HALF_WRITTEN = ("t_e", (10, 2, 9, 0.36, 0.60))
STOPPED = ("t_s", (10, 1, 3, 0.90, 0.95))  # would dominate everything if (wrongly) included
STOPPED_RUNG0 = ("t_r0", (22, 2, 1, 0.20, 0.40))
ERRORED = ("t_x", (28, 10, 2, 0.20, 0.30))
RUNNING = ("t_run", (16, 1, 4, 0.25, 0.50))
GARBAGE = "train_wrn_t_u_7_depth=10,width=4"


def make_run(root: Path, *, state: str = "finished", events: bool = True) -> Path:
    """A run directory as `wrn-search run` writes it, with every kind of trial in it."""
    run = root / "demo"
    (run / run_files.DRIVER_DIR).mkdir(parents=True)
    (run / run_files.DRIVER_DIR / run_files.SPEC_JSON).write_text(json.dumps(_spec("demo")))
    (run / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps({
        "name": "demo", "created": "2026-11-23T13:00:00+00:00", "budget_s": 3600.0,
        "elapsed_s": 1500.0, "state": state, "resumes": 0, "ray_version": "2.60.0",
        "optuna_version": "5.0.0"}))
    log: list[dict[str, Any]] = []

    def trial(k: int, trial_id: str, spec: tuple, *, end: str | None, peak: bool = False,
              tail: str = "") -> Path:
        depth, width, epochs, robust, clean = spec
        start = T0 + 60 * k
        folder = run / f"train_wrn_{trial_id}_{k}_depth={depth},width={width}_2026-11-23"
        folder.mkdir()
        (folder / "params.json").write_text(json.dumps({"depth": depth, "width": width}))
        lines = _lines(trial_id, depth, width, epochs, robust, clean, start, peak)
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (folder / "result.json").write_text(text + tail)
        log.append({"time": start, "trial_id": trial_id, "event": "start",
                    "epochs_done": None, "error": None})
        if end is not None:
            log.append({"time": lines[-1]["timestamp"] + 1, "trial_id": trial_id, "event": end,
                        "epochs_done": epochs, "error": "OOM" if end == "error" else None})
        return folder

    for k, (trial_id, spec) in enumerate(COMPLETE.items()):
        trial(k, trial_id, spec, end="complete", peak=trial_id == "t_c")
    trial(4, *HALF_WRITTEN, end="complete", tail='{"trial_id": "t_e", "training_iter')
    trial(5, *STOPPED, end="complete")
    trial(6, *STOPPED_RUNG0, end="complete")
    errored = trial(7, *ERRORED, end="error")
    (errored / "error.txt").write_text(ERROR_TXT)
    trial(8, *RUNNING, end=None)
    garbage = run / GARBAGE
    garbage.mkdir()
    (garbage / "result.json").write_text("\x00\x01 not json at all\n<<<>>>\n")
    if events:
        log.sort(key=lambda e: e["time"])
        lines = "".join(json.dumps(e) + "\n" for e in log)
        (run / run_files.DRIVER_DIR / run_files.EVENTS_FILE).write_text(lines)
    return run


def _status(run_dir: Path) -> dict[str, str]:
    trials = load_run(run_dir).trials
    return dict(zip(trials["trial_id"], trials["status"], strict=True))


def test_load_run_statuses_fidelity_and_tolerance(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    status = dict(zip(run.trials["trial_id"], run.trials["status"], strict=True))
    assert status == {"t_a": "complete", "t_b": "complete", "t_c": "complete",
                      "t_d": "complete", "t_e": "complete", "t_s": "stopped",
                      "t_r0": "stopped", "t_x": "error", "t_run": "incomplete"}
    assert [name for name, _ in run.unreadable] == [GARBAGE]
    assert "no parsable line" in run.unreadable[0][1]
    trials = run.trials.set_index("trial_id")
    assert trials.loc["t_e", metrics.EPOCHS_DONE] == MAX_EPOCHS  # half line dropped only
    assert trials["full_fidelity"].sum() == 5
    assert trials.loc["t_x", "error"] == (
        "OOM")  # the driver's event wins over error.txt
    assert trials.loc["t_c", metrics.BEST_EPOCH] == MAX_EPOCHS - 1
    best = trials.loc["t_c", metrics.best_robust_acc_key(EPS[0])]
    assert best == pytest.approx(0.47)
    assert trials.loc["t_c", metrics.robust_acc_key(EPS[0])] == pytest.approx(0.45)  # last
    assert trials.loc["t_a", metrics.PARAMS] == count_parameters(10, 1)
    assert run.eval_epsilons == pytest.approx(list(EPS))
    assert len(run.history) == 9 * 5 + 3 + 1 + 2 + 4
    assert not run.history.duplicated(["trial_id", metrics.EPOCHS_DONE]).any()


def test_load_run_without_events_infers_status(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, events=False, state="interrupted")
    status = _status(run_dir)
    assert status["t_a"] == "complete"
    assert status["t_s"] == "incomplete"  # no event: stopped and crashed look the same
    assert status["t_x"] == "error"
    trials = load_run(run_dir).trials.set_index("trial_id")
    assert trials.loc["t_x", "error"].startswith("torch.OutOfMemoryError: CUDA out of memory")
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps({"state": "running"}))
    assert _status(run_dir)["t_run"] == "running"


def test_load_run_zero_epoch_and_restored_trials(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    # Errored before its first epoch: empty result.json, width not searched (base value).
    early = run_dir / "trial_0badc0de_wrn-16-8"
    early.mkdir()
    (early / "result.json").write_text("")
    (early / "params.json").write_text(json.dumps(
        {"depth": 16, "trial": {"model": {"depth": 28, "width": 8},
                                "training": {"epochs": MAX_EPOCHS}}}))
    (early / "error.txt").write_text(ERROR_TXT)
    # Restored from its epoch-2 checkpoint after a crash: epochs 3 and 4 were reported twice.
    restored = run_dir / "trial_0000beef_wrn-10-1"
    restored.mkdir()
    lines = _lines("0000beef", 10, 1, 4, 0.3, 0.5, T0)
    again = [dict(line, **{metrics.VAL_CLEAN_ACC: 0.11}) for line in lines[2:]]
    (restored / "result.json").write_text(
        "".join(json.dumps(x) + "\n" for x in lines + again))
    run = load_run(run_dir)
    trials = run.trials.set_index("trial_id")
    assert trials.loc["0badc0de", "status"] == "error"
    assert trials.loc["0badc0de", metrics.WRN] == "WRN-16-8"  # flat depth, base width
    assert trials.loc["0badc0de", metrics.PARAMS] == count_parameters(16, 8)
    assert trials.loc["0badc0de", metrics.EPOCHS_DONE] == 0
    assert trials.loc["0badc0de", metrics.MAX_EPOCHS] == MAX_EPOCHS
    curve = run.history[run.history["trial_id"] == "0000beef"]
    assert curve[metrics.EPOCHS_DONE].tolist() == [1, 2, 3, 4]
    assert curve[metrics.VAL_CLEAN_ACC].tolist()[2:] == [0.11, 0.11]  # the later report wins


def test_report_files_front_and_contents(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    written = write_report(run_dir, formats=("html", "md", "csv", "parquet"))
    out = run_dir / "report"
    for name in ("report.html", "report.md", "trials.csv", "front.csv", "history.csv",
                 "trials.parquet", "front.parquet", "front_8_255.png", "hypervolume.png"):
        assert out / name in written and (out / name).stat().st_size > 0, name
    assert all(p.exists() for p in written)

    front = pd.read_csv(out / "front.csv")
    robust8 = front[(front["objective"] == "robust") & np.isclose(front["eps"], EPS[0])]
    assert robust8["trial_id"].tolist() == ["t_a", "t_e", "t_b", "t_c"]  # sorted by size
    clean = front[front["objective"] == "clean"]
    assert set(clean["trial_id"]) == {"t_a", "t_e", "t_b", "t_c", "t_d"}
    assert not front["trial_id"].isin(["t_s", "t_r0", "t_x", "t_run"]).any()
    assert set(pd.read_parquet(out / "front.parquet")["trial_id"]) == set(front["trial_id"])
    trials_csv = pd.read_csv(out / "trials.csv")
    assert len(trials_csv) == 9 and "unreadable" not in set(trials_csv["status"])

    page = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for text in (page, md):
        assert "Selection and all accuracies here: validation split" in text
        assert GARBAGE in text and "no parsable line" in text  # unreadable, with its reason
        assert "t_x" in text and "OOM" in text  # errored, with its reason
        assert "PARTIAL RUN" not in text
        assert "WRN-16-4" in text
    # The headline hypervolume is the front's, against the stated reference point.
    points = load_run(run_dir).trials.set_index("trial_id").loc[
        ["t_a", "t_e", "t_b", "t_c"], [metrics.PARAMS, metrics.best_robust_acc_key(EPS[0])]]
    ref = 2 * count_parameters(*SPACE_MAX)
    hv = hypervolume_2d(points.to_numpy(), ref_params=ref)
    assert f"{hv:.4f}" in page and f"{ref:,}" in page
    assert page.count("<svg") >= 5 and "<title>WRN-16-4" in page  # plots with tooltips
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / image).is_file() and "/" not in image  # relative, next to report.md
    # CIFAR-10 images at L-inf 8/255: the objective front carries the published anchors,
    # each saying its evaluation and source; the 4/255 and clean fronts carry none.
    front8 = page[page.index('id="front_8_255-'):page.index('id="front_4_255-')]
    assert front8.count("source: RobustBench model_info/") == 6  # one tooltip per point
    assert front8.count("<title>Rice k=") == 12
    assert "published: AutoAttack (standard), full CIFAR-10 test set, RobustBench" in front8
    assert "Rice et al. 2020 WRN-34-k, PGD-10 (last iterate" in front8
    assert "<title>Madry 2018: WRN-34-10, 46,160,474 parameters" in front8
    assert "robust 44.04% at 8/255, clean 87.14%" in front8
    assert "source: RobustBench model_info/cifar10/Linf/Madry2018Towards.json" in front8
    assert "<title>Rice k=20: WRN-34-20" in front8 and "robust 58.16% at 8/255" in front8
    assert page.count("RobustBench model_info/") == 2 * 6  # tooltips + the sources table
    for text in (page, md):
        assert ("Published anchors at 8/255: under AutoAttack on the full CIFAR-10 test set, "
                "without extra data, the published front runs from 41.4% (Ding 2020, WRN-28-4, "
                "5.85M) to 58.1% (Chen 2024, WRN-34-20, 185M).") in text


def test_report_html_is_self_contained(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    page = Path(write_report(run_dir, formats=("html",))[0]).read_text()
    assert "http://" not in page and "https://" not in page  # not even SVG namespaces
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert "@import" not in page and "@font-face" not in page
    for attr, target in re.findall(r'\b(src|href)\s*=\s*["\']([^"\']*)', page):
        # Only links inside the page, or inline data (the colour bar is an embedded PNG).
        assert target.startswith(("#", "data:image/")), (attr, target[:80])
    assert re.search(r"url\((?!#)", page) is None


def _decisions(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (run_dir / run_files.DRIVER_DIR / run_files.RUNGS_FILE).write_text(text)


def test_partial_banner_and_the_schedulers_recorded_decisions(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, state="running")
    _decisions(run_dir, [  # what the scheduler wrote, not re-derived from epochs
        {"trial_id": "t_a", "milestone": 1, "decision": "CONTINUE", "reason": "rank"},
        {"trial_id": "t_r0", "milestone": 1, "decision": "STOP", "reason": "rank"},
        {"trial_id": "t_s", "milestone": 1, "decision": "CONTINUE", "reason": "within-noise"},
        {"trial_id": "t_s", "milestone": 3, "decision": "STOP", "reason": "rank"},
        {"trial_id": "t_b", "milestone": None, "decision": "STOP", "reason": "budget",
         "needed_s": 900.0, "remaining_s": 100.0},
        "not json",
    ])
    (run_dir / run_files.DRIVER_DIR / run_files.RUNGS_FILE).write_text(
        (run_dir / run_files.DRIVER_DIR / run_files.RUNGS_FILE).read_text().replace(
            '"not json"', '{"half'))
    write_report(run_dir, formats=("html", "md"))
    page = (run_dir / "report" / "report.html").read_text()
    md = (run_dir / "report" / "report.md").read_text()
    assert "PARTIAL RUN (state: running)" in page and "PARTIAL RUN (state: running)" in md
    # rung | judged | stopped | continued | continued within noise
    assert "| 1 | 3 | 1 | 2 | 1 |" in md, md
    assert "| 3 | 1 | 1 | 0 | 0 |" in md, md
    assert "| could not finish (budget) | 1 | 1 | 0 | 0 |" in md, md
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).unlink()
    page = Path(write_report(run_dir, formats=("html",))[0]).read_text()
    assert "PARTIAL RUN (state: unknown" in page


def test_where_the_budget_went(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    _decisions(run_dir, [{"trial_id": "t_r0", "milestone": None, "decision": "STOP",
                          "reason": "budget"}])
    run = load_run(run_dir)
    outcome = dict(zip(run.trials["trial_id"], run.trials["outcome"], strict=True))
    assert outcome["t_a"] == "full fidelity" and outcome["t_s"] == "stopped at a rung"
    assert outcome["t_r0"] == "stopped: could not finish"
    assert outcome["t_x"] == "errored" and outcome["t_run"] == "cut short"
    table = spend_table(run).set_index("outcome")
    wall = run.trials.set_index("trial_id")[metrics.WALL_TIME_S]
    assert table.loc["stopped at a rung", "seconds"] == pytest.approx(
        wall[[t for t, o in outcome.items() if o == "stopped at a rung"]].sum())
    assert table["share"].sum() == pytest.approx(1.0)
    line = unfinished_spend(run)
    ended = wall[[t for t, o in outcome.items() if o not in ("full fidelity", "running")]].sum()
    assert f"({100 * ended / wall.sum():.0f}%)" in line
    write_report(run_dir, formats=("md",))
    md = (run_dir / "report" / "report.md").read_text()
    assert "## Where the budget went" in md and "spend.png" in md
    assert "| stopped: could not finish |" in md


def test_cost_model_error_against_the_measured_epochs(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    run = load_run(run_dir)
    assert cost_error(run) is None  # nothing was predicted
    trials = run.trials.copy()
    trials[metrics.PREDICTED_EPOCH_S] = trials["actual_epoch_s"] * np.where(
        np.arange(len(trials)) % 2 == 0, 1.2, 3.0)
    error = cost_error(dataclasses.replace(run, trials=trials))
    usable = int(trials["actual_epoch_s"].notna().sum())
    assert error is not None and error["trials"] == usable
    assert error["within_2"] == pytest.approx(
        (np.arange(len(trials))[trials["actual_epoch_s"].notna().to_numpy()] % 2 == 0).mean())


def test_bad_format_is_a_config_error(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    with pytest.raises(ConfigError, match=r"'pdf'.*html, md, csv, parquet"):
        write_report(run_dir, formats=("html", "pdf"))
    assert not (run_dir / "report").exists()  # nothing half-written before the check


def test_fronts_exclude_stopped_trials(tmp_path: Path) -> None:
    run = load_run(make_run(tmp_path))
    for f in fronts(run):
        assert "t_s" not in set(f.members["trial_id"])
        assert f.members["full_fidelity"].all()
    assert [f.objective for f in fronts(run)] == ["robust", "robust", "clean"]


def test_empty_run_still_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "empty"
    run_dir.mkdir()
    written = write_report(run_dir)
    page = (run_dir / "report" / "report.html").read_text()
    assert "PARTIAL RUN" in page and len(written) >= 5


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


@pytest.mark.skipif(_chromium() is None, reason="no chromium binary")
def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    page = write_report(make_run(tmp_path), formats=("html",))[0]
    shot = tmp_path / "shot.png"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
        "--v=0", f"--screenshot={shot}", "--window-size=1200,2000", page.resolve().as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert shot.exists(), done.stderr[-2000:]
    console = [ln for ln in done.stderr.splitlines()
               if "CONSOLE" in ln or "Uncaught" in ln or "Failed to load resource" in ln]
    assert not console, console
    image = Image.open(shot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text and plots, not a blank page


def _evaluation_record(trial_id: str, depth: int, width: int, strong: float, *,
                       masked: bool) -> dict[str, Any]:
    """An evaluation/<trial_id>.json as `wrn-search evaluate` writes it (numbers made up)."""
    per_eps = {}
    for eps in EPS:
        key = metrics.eps_key(eps)
        attacks = {"search_pgd": {"label": "PGD-10", "acc": strong + 0.2, "seconds": 1.0},
                   "fgsm": {"label": "FGSM", "acc": strong + 0.25, "seconds": 0.1},
                   "pgd": {"label": "PGD-50x5", "acc": strong + 0.01, "seconds": 9.0},
                   "autoattack": {"label": "AutoAttack", "acc": strong, "seconds": 30.0}}
        per_eps[key] = {"eps": eps, "label": formats.eps_label(eps), "robust_acc": strong,
                        "attacks": attacks, "autoattack_steps": {}, "square_gain": 0.0}
    checks = [
        {"name": "near_zero_at_large_eps", "title": "Accuracy falls to about 0% at a large epsilon",
         "passed": True, "detail": "PGD-20 at eps 128/255: 0.0%", "masking": True,
         "values": {"chance": 0.1}},
        {"name": "search_gap", "title": "The search-time attack is close to the strong figure",
         "passed": not masked, "detail": "largest gap 20.0% at 8/255", "masking": True,
         "values": {}},
        {"name": "gradient_free_agrees", "title": "A gradient-free attack finds nothing ...",
         "passed": None, "detail": "not run: needs --attacks autoattack", "masking": True,
         "values": {}},
    ]
    return {
        "format": 2, "trial_id": trial_id, "wrn": wrn_name(depth, width),
        "params": count_parameters(depth, width), "split": "test", "n": 200, "n_total": 10000,
        "subset": True, "norm": "linf", "epsilons": list(EPS),
        "autoattack": "official AutoAttack code (pyautoattack 0.2.0), standard version",
        "search": {"split": "validation", "attack": "PGD-10",
                   metrics.BEST_VAL_CLEAN_ACC: 0.6,
                   **{metrics.best_robust_acc_key(e): strong + 0.15 for e in EPS}},
        "test_clean_acc": 0.58, "test_n": 200,
        **{f"test_robust_acc_eps_{metrics.eps_key(e)}": strong for e in EPS},
        "per_eps": per_eps,
        "curve": {"attack": "PGD-20", "eps": [0.0, 4 / 255, 8 / 255, 128 / 255],
                  "acc": [0.58, strong + 0.1, strong, 0.0]},
        "checks": checks, "checks_verdict": "failed" if masked else "incomplete",
        "gradient_masking_suspected": masked,
        "suite": {"gap_threshold": 0.06, "large_eps_max_acc": 0.02},
    }


def test_report_shows_the_test_split_evaluation(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    folder = run_dir / "evaluation"
    folder.mkdir()
    for trial_id, masked in (("t_a", False), ("t_b", True)):
        depth, width = COMPLETE[trial_id][:2]
        record = _evaluation_record(trial_id, depth, width, 0.2, masked=masked)
        (folder / f"{trial_id}.json").write_text(json.dumps(record))
    (folder / "transfer.json").write_text(json.dumps({
        "split": "test", "eps": EPS[0], "eps_label": "8/255", "norm": "linf", "n": 200,
        "trials": ["t_a", "t_b"], "wrn": ["WRN-10-1", "WRN-16-2"],
        "matrix": [[0.2, 0.41], [0.37, 0.2]]}))
    (folder / "t_c.json.tmp").write_text("{half")  # an interrupted write: ignored
    written = write_report(run_dir, formats=("html", "md", "csv"))
    out = run_dir / "report"
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    for text in (md, page):
        assert "Test-split evaluation (strong attacks)" in text
        assert "200 of 10000 test images (a subset, --n)" in text
        assert "except the section" in text and "Test-split figures appear only" not in text
        assert "GRADIENT MASKING SUSPECTED for WRN-16-2 (t_b)" in text
        assert "FAIL (masking)" in text and "PASS" in text and "not run" in text
        assert "checks INCOMPLETE (2 of 3 passed; not run: gradient_free_agrees; the verdict " \
               "rests on near_zero_at_large_eps, search_gap)" in text
        assert "checks FAILED (1 of 3 passed; failed: search_gap; not run" in text
        assert "at most 6.0% (plus one image) above the strong figure" in text
        assert "41.0%" in text and "20.0% (white-box)" in text  # the transfer matrix
        assert "official AutoAttack code" in text
    # Side by side: validation PGD-10 (35%) beside the test strong figure (20%), per epsilon.
    row = next(ln for ln in md.splitlines() if ln.startswith("| WRN-10-1 | t_a | 8/255"))
    assert "35.0% (PGD-10)" in row and "20.0% (AutoAttack)" in row and "-15.0 pts" in row
    # The front table gains the test columns; the CSV holds the side-by-side table.
    assert "test strong 8/255" in md
    table = pd.read_csv(out / "evaluation.csv")
    assert len(table) == 4 and set(table["trial_id"]) == {"t_a", "t_b"}
    assert set(table["checks"]) == {"incomplete", "failed"}
    assert set(table["checks_not_run"]) == {"gradient_free_agrees"}
    assert out / "evaluation_curves.png" in written
    assert "<svg" in page and "https://" not in page
    # The front figure puts the evaluated models' test figures beside the published ones.
    front8 = page[page.index('id="front_8_255-'):page.index('id="front_4_255-')]
    assert "test strong 20.0% at 8/255 on 200 test images" in front8
    assert "this run, test split: strongest attacks, per-example minimum (200 images)" in front8
