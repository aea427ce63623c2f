"""The loader and the report on hand-made run directories (no Ray involved)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fake_run import EPS, GARBAGE, SPACE_MAX, make_run, write_decisions

from analysis import fronts, hypervolume_2d, load_run, write_report
from models import count_parameters
from trainables import metrics, run_files
from trainables.config import ConfigError


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


def test_partial_banner_and_the_schedulers_recorded_decisions(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, state="running")
    write_decisions(run_dir, [  # what the scheduler wrote, not re-derived from epochs
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


def test_a_run_without_trials_still_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "started"
    (run_dir / run_files.DRIVER_DIR).mkdir(parents=True)
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text('{"state": "running"}')
    written = write_report(run_dir)
    page = (run_dir / "report" / "report.html").read_text()
    assert "PARTIAL RUN" in page and len(written) >= 5


def test_a_folder_without_a_run_is_refused_and_nothing_written(tmp_path: Path) -> None:
    from trainables.config import NotARunError

    (tmp_path / "notes.txt").write_text("not a run")
    with pytest.raises(NotARunError, match="holds no run"):
        write_report(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


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


def test_a_symlink_cannot_lead_the_report_out_of_the_run_folder(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (run_dir / "report").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="leads outside the run folder"):
        write_report(run_dir)
    assert list(outside.iterdir()) == []
    (run_dir / "report").unlink()
    (run_dir / "report").mkdir()
    victim = outside / "victim.txt"
    victim.write_text("keep")
    for name in ("report.html", "report.md.tmp", "trials.csv", "front_8_255.png.tmp"):
        (run_dir / "report" / name).symlink_to(victim)
    write_report(run_dir)
    assert victim.read_text() == "keep"
    assert not (run_dir / "report" / "report.html").is_symlink()


def test_a_trial_id_from_result_json_is_checked(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    folder = next(run_dir.glob("train_wrn_t_a_*"))
    result = folder / "result.json"
    result.write_text(result.read_text().replace('"t_a"', '"../../x/evil"'))
    ids = set(load_run(run_dir).trials["trial_id"])
    assert "../../x/evil" not in ids and all(run_files.is_trial_id(i) for i in ids)


def test_a_database_password_in_an_older_spec_json_is_masked_in_the_report(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    path = run_dir / run_files.DRIVER_DIR / run_files.SPEC_JSON
    spec = json.loads(path.read_text())
    spec["storage"]["optuna_url"] = "postgresql://user:PASSWORD@db.example/optuna"
    path.write_text(json.dumps(spec))
    write_report(run_dir, formats=("html", "md"))
    for name in ("report.html", "report.md"):
        text = (run_dir / "report" / name).read_text()
        assert "PASSWORD" not in text and "user:***@db.example" in text


def test_markdown_shows_run_contents_as_text_never_as_markup(tmp_path: Path) -> None:
    """A run folder may come from anyone: its name, error messages and spec go into report.md
    escaped, as report.html escapes them."""
    markdown = pytest.importorskip("markdown")
    run_dir = make_run(tmp_path)
    path = run_dir / run_files.DRIVER_DIR / run_files.SPEC_JSON
    evil = "<img src=x onerror=alert(1)> [click](http://evil.example) **loud** `x|y`"
    spec = json.loads(path.read_text())
    spec["name"] = evil
    spec["note"] = "```\n<script>alert(2)</script>\n```"
    path.write_text(json.dumps(spec))
    error = next(run_dir.glob("train_wrn_t_x_*")) / "error.txt"
    error.write_text(error.read_text() + f"RuntimeError: <script>alert(3)</script> {evil} | cell\n")
    write_report(run_dir, formats=("html", "md"))
    md = (run_dir / "report" / "report.md").read_text()
    rendered = markdown.markdown(md, extensions=["tables", "fenced_code"])
    for text in (rendered, (run_dir / "report" / "report.html").read_text()):
        assert "<script" not in text and "<img src=x" not in text
        assert 'href="http://evil.example"' not in text and "<strong>loud" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;" in md  # still there, as text
    row = next(line for line in md.splitlines() if line.startswith("| train_wrn_t_x_"))
    assert row.count(" | ") == 4  # the | in the message stays inside its cell
