"""The report's test-split section: what `wrn-search evaluate` stored, beside the validation
figures that selected each model (search-time PGD against strong attacks, the sanity
checks' verdicts, the accuracy-vs-epsilon curves, the transfer matrix, corruptions)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from analysis import plots
from analysis.document import Block, Heading, Para, Plot, Table
from analysis.load import Evaluation, Run
from trainables import metrics
from trainables.evaluation import check_status, checks_summary, checks_verdict
from trainables.formats import percent
from trainables.metrics import TEST_CLEAN_ACC

EVALUATION_TITLE = "Test-split evaluation (strong attacks)"


_ATTACK_COLUMNS = (("search_pgd", "test search PGD"), ("fgsm", "test FGSM"),
                   ("pgd", "test strong PGD"), ("autoattack", "test AutoAttack"))


def evaluation_table(evaluation: Evaluation) -> pd.DataFrame:
    """One row per (evaluated model, eval epsilon): validation (search-time) and test figures."""
    rows = []
    for r in evaluation.records:
        search = r.get("search") or {}
        for key, e in (r.get("per_eps") or {}).items():
            eps = float(e.get("eps", np.nan))
            attacks = e.get("attacks") or {}
            val = search.get(metrics.best_robust_acc_key(eps)) if np.isfinite(eps) else None
            row = {
                "trial_id": r["trial_id"], "wrn": r.get("wrn"), "params": r.get("params"),
                "eps": eps, "eps_label": e.get("label", key), "test_n": r.get("n"),
                "test_n_total": r.get("n_total"), "search_attack": search.get("attack"),
                "val_clean_acc": search.get(metrics.BEST_VAL_CLEAN_ACC),
                "val_search_robust_acc": val, "test_clean_acc": r.get(TEST_CLEAN_ACC),
            }
            for name, _ in _ATTACK_COLUMNS:
                row[f"test_{name}_acc"] = (attacks.get(name) or {}).get("acc")
                row[f"test_{name}_label"] = (attacks.get(name) or {}).get("label")
            row["test_strong_acc"] = e.get("robust_acc")
            row["drop_val_to_test_strong"] = (
                val - e["robust_acc"] if val is not None and e.get("robust_acc") is not None
                else None)
            checks = r.get("checks") or []
            row["checks"] = checks_verdict(check_status(c.get("passed")) for c in checks)
            row["checks_not_run"] = ", ".join(str(c.get("name")) for c in checks
                                              if c.get("passed") is None)
            row["gradient_masking_suspected"] = r.get("gradient_masking_suspected")
            rows.append(row)
    return pd.DataFrame(rows)


def evaluation_sections(run: Run, evaluation: Evaluation) -> list[Block]:
    records = evaluation.records
    blocks: list[Block] = [Heading(2, EVALUATION_TITLE), Para(_evaluation_intro(records),
                                                              css="split")]
    masked = [f"{r.get('wrn')} ({r['trial_id']})" for r in records
              if r.get("gradient_masking_suspected")]
    if masked:
        blocks.append(Para("GRADIENT MASKING SUSPECTED for " + ", ".join(masked) + ": the "
                           "checks below failed in a way that gradient masking produces; "
                           "treat these robust accuracies as upper bounds.", css="banner"))
    blocks += [Heading(3, "Search-time vs strong robust accuracy"), _side_by_side(evaluation)]
    blocks += [Heading(3, "Sanity checks (Carlini et al. 2019)"), Para(
        "Automated checks from Carlini et al. 2019, \"On Evaluating Adversarial Robustness\", "
        "plus AutoAttack's zero-gradient and Square checks. Each check passed, failed, or was "
        "not run (it needs an attack that was not asked for); a check that did not run is "
        "never counted as passed, and each model's verdict names the checks it rests on. "
        "Comparisons of two accuracies allow for noise: two binomial standard errors plus one "
        "image. A failure marked \"masking\" is the kind gradient masking produces."),
        Para(_thresholds(records)), _verdict_table(records), _checks_table(records)]
    blocks += [Heading(3, "Accuracy vs epsilon"),
               Plot("evaluation_curves", plots.evaluation_curves_figure(records),
                    "Test-split accuracy under the curve attack at each epsilon (lines) and "
                    "the strong figure at the run's eval epsilons (crosses).")]
    blocks += [Heading(3, "Transferability"), *_transfer_blocks(evaluation.transfer)]
    corrupted = [r for r in records if isinstance(r.get("corruptions"), dict)]
    if corrupted:
        blocks += [Heading(3, "Destruction rate under input transformations"),
                   Para("Kurakin et al. 2017: of the test images the model classifies "
                        "correctly and whose adversarial version (first eval epsilon) fools "
                        "it, the share the transformation makes correct again. \"clean acc\" "
                        "is the accuracy on transformed clean images."),
                   _corruption_table(corrupted)]
    return blocks


def _evaluation_intro(records: Sequence[dict[str, Any]]) -> str:
    sizes = sorted({(r.get("n"), r.get("n_total")) for r in records}, key=str)
    images = "; ".join(f"{n} of {total} test images" + (" (a subset, --n)" if n != total else "")
                       for n, total in sizes)
    aa = sorted({str(r["autoattack"]) for r in records if r.get("autoattack")})
    aa_text = ("AutoAttack: " + "; ".join(aa) + "." if aa else
               "AutoAttack was not run: the strong figures are PGD-only bounds.")
    return ("Test split, " + images + ", attacked by `wrn-search evaluate` on each model's "
            "best-validation checkpoint. Validation figures (the search-time PGD that selected "
            "the model) stand beside test figures; the test split was never used for "
            "selection. \"Strong\" is the per-example minimum over every attack run: an image "
            "counts as robust only if no attack fooled the model on it. " + aa_text)


def _side_by_side(evaluation: Evaluation) -> Table:
    table = evaluation_table(evaluation)
    headers = ["WRN", "trial", "eps", "val clean", "val search PGD", "test clean",
               *[h for _, h in _ATTACK_COLUMNS], "test strong", "val → test strong"]
    rows = []
    for _, r in table.iterrows():
        label = f" ({r['search_attack']})" if r.get("search_attack") else ""
        drop = r["drop_val_to_test_strong"]
        rows.append([
            str(r["wrn"]), str(r["trial_id"]), str(r["eps_label"]),
            percent(r["val_clean_acc"]), percent(r["val_search_robust_acc"]) + label,
            percent(r["test_clean_acc"]),
            *[_attack_cell(r, name) for name, _ in _ATTACK_COLUMNS],
            percent(r["test_strong_acc"]),
            "—" if drop is None or pd.isna(drop) else f"{100 * (0.0 - drop):+.1f} pts",
        ])
    numeric = [False, False, False] + [True] * (len(headers) - 3)
    return Table(headers, rows, numeric)


def _attack_cell(row: pd.Series, name: str) -> str:
    acc, label = row.get(f"test_{name}_acc"), row.get(f"test_{name}_label")
    if acc is None or pd.isna(acc):
        return "not run"
    return f"{percent(acc)} ({label})"


def _thresholds(records: Sequence[dict[str, Any]]) -> str:
    """The thresholds the checks used, as stored with each record (they are configurable)."""
    texts = set()
    for r in records:
        suite = r.get("suite") or {}
        if "gap_threshold" in suite and "large_eps_max_acc" in suite:
            texts.add(f"search-time PGD at most {percent(suite['gap_threshold'])} (plus one image) "
                      f"above the strong figure; at most {percent(suite['large_eps_max_acc'])} "
                      "accuracy (and at least one image) at the largest curve epsilon")
    if not texts:
        return "Thresholds: as stored with each record."
    return ("Thresholds: " + "; ".join(sorted(texts)) + ". Honest PGD-to-AutoAttack gaps are "
            "3-6 points, and an untargeted attack at 128/255 fools about every image, so "
            "chance level would let a broken attack pass.")


def _verdict_table(records: Sequence[dict[str, Any]]) -> Table:
    rows = [[f"{r.get('wrn')} ({r['trial_id']})", checks_summary(r.get("checks") or [])
             + ("; GRADIENT MASKING SUSPECTED" if r.get("gradient_masking_suspected") else "")]
            for r in records]
    return Table(["model", "verdict"], rows, [False, False])


def _checks_table(records: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for r in records:
        for c in r.get("checks") or []:
            passed = c.get("passed")
            verdict = "not run" if passed is None else "PASS" if passed else (
                "FAIL (masking)" if c.get("masking") else "FAIL")
            rows.append([f"{r.get('wrn')} ({r['trial_id']})", str(c.get("title")), verdict,
                         str(c.get("detail"))])
    return Table(["model", "check", "verdict", "numbers"], rows, [False] * 4)


def _transfer_blocks(transfer: dict[str, Any] | None) -> list[Block]:
    if not transfer:
        return [Para("No transfer matrix yet.")]
    names = [f"{w} ({t})" for w, t in zip(transfer["wrn"], transfer["trials"], strict=True)]
    rows = [[names[i], *[percent(v) + (" (white-box)" if i == j else "") for j, v in enumerate(row)]]
            for i, row in enumerate(transfer["matrix"])]
    return [Para(f"Test split, {transfer['n']} images, {transfer['eps_label']}: row = model the "
                 "adversarial inputs were crafted on (its worst case over every attack), "
                 "column = model evaluated; cells are accuracy. The diagonal is each model's "
                 "own white-box robust accuracy; off the diagonal, higher means the attack "
                 "transfers less (Szegedy et al. 2014)."),
            Table(["crafted on (row) / evaluated on (column)", *names], rows,
                  [False] + [True] * len(names))]


def _corruption_table(records: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for r in records:
        for name, c in r["corruptions"].items():
            rate = c.get("rate")
            rows.append([f"{r.get('wrn')} ({r['trial_id']})", str(c.get("label", name)),
                         str(c.get("adversarial")), str(c.get("destroyed")),
                         "—" if rate is None else percent(rate), percent(c.get("clean_acc"))])
    return Table(["model", "transformation", "adversarial images", "destroyed",
                  "destruction rate", "clean acc"], rows, [False, False, True, True, True, True])
