"""The report's test-split section: analysis/report_evaluation.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from fake_run import COMPLETE, EPS, make_run

from analysis import write_report
from models import count_parameters, wrn_name
from trainables import formats, metrics


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
