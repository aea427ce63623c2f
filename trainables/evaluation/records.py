"""What an evaluation returns: per-attack outcomes, per-epsilon results, checks and their
verdict, and the whole record of one model."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from trainables import metrics
from trainables.formats import eps_text
from trainables.metrics import (
    HEADLINE_ATTACKS,
    TEST_CHECKS,
    TEST_CLEAN_ACC,
    TEST_MASKING_SUSPECTED,
    TEST_N,
    attack_acc_key,
    strong_acc_key,
)

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class AttackOutcome:
    label: str  # e.g. "PGD-50x5"
    acc: float  # robust accuracy under this attack alone
    seconds: float


@dataclass
class EpsResult:
    eps: float
    attacks: dict[str, AttackOutcome]  # key (FGSM_KEY, ...) -> outcome
    robust_acc: float  # per-example minimum over every attack above
    autoattack_steps: dict[str, float] = field(default_factory=dict)  # after each component
    square_gain: float | None = None  # fraction fooled by Square and no gradient attack


PASSED, FAILED, NOT_RUN = "passed", "failed", "not run"  # a check's status
INCOMPLETE = "incomplete"  # the verdict when none failed but some did not run


def check_status(passed: bool | None) -> str:
    """A check's status from its `passed` field (None: it could not run)."""
    return NOT_RUN if passed is None else PASSED if passed else FAILED


@dataclass(frozen=True)
class Check:
    """One automated check: passed is None when it could not run (and says why)."""

    name: str
    title: str
    passed: bool | None
    detail: str
    masking: bool  # a failure here suggests gradient masking (else: an unreliable attack)
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> str:
        return check_status(self.passed)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "status": self.status}


def checks_verdict(statuses: Iterable[str]) -> str:
    """"failed" if any check failed; else "incomplete" if any did not run; else "passed".

    A check that did not run is never a pass: the verdict then says what it rests on.
    """
    found = set(statuses)
    return FAILED if FAILED in found else INCOMPLETE if NOT_RUN in found else PASSED


def checks_summary(checks: Sequence[Mapping[str, Any]]) -> str:
    """One line for humans: the verdict, what failed, what did not run, what it rests on.

    Takes stored checks (dicts with "name" and "passed"), so the CLI and the report say
    the same thing about a record.
    """
    names: dict[str, list[str]] = {PASSED: [], FAILED: [], NOT_RUN: []}
    for c in checks:
        names[check_status(c.get("passed"))].append(str(c.get("name")))
    verdict = checks_verdict(s for s, found in names.items() for _ in found)
    head = {PASSED: "checks passed", FAILED: "checks FAILED", INCOMPLETE: "checks INCOMPLETE"}[verdict]
    parts = [f"{len(names[PASSED])} of {len(checks)} passed"]
    if names[FAILED]:
        parts.append("failed: " + ", ".join(names[FAILED]))
    if names[NOT_RUN]:
        ran = names[PASSED] + names[FAILED]
        parts.append("not run: " + ", ".join(names[NOT_RUN]))
        parts.append("the verdict rests on " + (", ".join(ran) if ran else "no check"))
    return f"{head} ({'; '.join(parts)})"


@dataclass
class ModelEvaluation:
    n: int
    num_classes: int
    norm: str
    clean_acc: float
    per_eps: list[EpsResult]
    curve: list[tuple[float, float]]
    curve_attack: str
    zero_grad_fraction: float
    checks: list[Check]
    x_adv: Tensor  # (n, ...) on CPU: per-example worst case at the first epsilon
    robust: Tensor  # (n,) bool: robust at the first epsilon (per-example minimum)
    seconds: float

    @property
    def checks_verdict(self) -> str:
        """"passed" only when every check ran and passed; see `checks_verdict`."""
        return checks_verdict(c.status for c in self.checks)

    @property
    def masking_suspected(self) -> bool:
        return any(c.passed is False and c.masking for c in self.checks)

    def headline(self) -> dict[str, Any]:
        """Scalar test-split numbers under the "test_" keys the analysis loader merges."""
        out: dict[str, Any] = {TEST_N: self.n, TEST_CLEAN_ACC: self.clean_acc}
        for r in self.per_eps:
            out[strong_acc_key(r.eps)] = r.robust_acc
            for key, outcome in r.attacks.items():
                if key in HEADLINE_ATTACKS:
                    out[attack_acc_key(key, r.eps)] = outcome.acc
        out[TEST_CHECKS] = self.checks_verdict
        out[TEST_MASKING_SUSPECTED] = self.masking_suspected
        return out

    def details(self) -> dict[str, Any]:
        """Everything else, JSON-ready: per-epsilon attacks, the curve, the checks."""
        return {
            "per_eps": {
                metrics.eps_key(r.eps): {
                    "eps": r.eps, "label": eps_text(r.eps, self.norm), "robust_acc": r.robust_acc,
                    "attacks": {k: dataclasses.asdict(o) for k, o in r.attacks.items()},
                    "autoattack_steps": r.autoattack_steps, "square_gain": r.square_gain,
                }
                for r in self.per_eps
            },
            "curve": {"attack": self.curve_attack, "eps": [e for e, _ in self.curve],
                      "acc": [a for _, a in self.curve]},
            "zero_grad_fraction": self.zero_grad_fraction,
            "checks": [c.to_dict() for c in self.checks],
            "checks_verdict": self.checks_verdict,
            "checks_rest_on": [c.name for c in self.checks if c.passed is not None],
            "checks_failed": [c.name for c in self.checks if c.passed is False],
            "checks_not_run": [c.name for c in self.checks if c.passed is None],
            "gradient_masking_suspected": self.masking_suspected,
            "seconds": self.seconds,
        }
