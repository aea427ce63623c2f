"""What an evaluation runs: the attack suite and its settings (SuiteConfig), and the
fingerprint that says when stored results are stale."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from trainables.config import ConfigError, ThreatModel, check_float, check_int, fail

logger = logging.getLogger(__name__)

ATTACKS = ("pgd", "autoattack", "fgsm")  # what a user may ask for (--attacks)
AUTOATTACK_COMPONENTS = ("apgd-ce", "apgd-t", "fab-t", "square")  # the standard version, in order
# pyautoattack versions this code is tested with: it sets the attacks' attributes directly
# (`aa.apgd`, `aa.fab.targeted`, ...), which a new release may rename. Keep in step with
# pyproject.toml.
AUTOATTACK_TESTED = ">=0.2,<0.3"
_AUTOATTACK_TESTED_MINOR = (0, 2)
LINF_CURVE = tuple(k / 255 for k in (0, 1, 2, 4, 8, 16, 32, 64, 128))  # 128/255 > 0.5: chance
L2_CURVE_FACTORS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # times the first eval eps





@dataclass(frozen=True)
class SuiteConfig:
    """What to run. Defaults are the papers' (AutoAttack standard; PGD 50 steps x 5 restarts).

    Args:
        threat_model: the run's threat model: its norm, its epsilons (the first is the search
            objective; the convergence check and the adversarial examples kept for transfer
            use it) and its validation attack (PGD steps and restarts), re-run on this split.
        attacks: strong attacks to run, from ATTACKS. FGSM and the search's PGD-k always
            run: the checks need them, and they are cheap.
        pgd_steps, pgd_restarts: the strong PGD (step 2.5 * eps / steps, Madry et al.).
        aa_iters, aa_queries, aa_targets: AutoAttack budgets (standard: 100 iterations,
            5000 Square queries, 9 target classes); anything else is labelled "reduced".
        curve_epsilons: epsilons of the accuracy-vs-epsilon curve; None: 0..128/255
            doubling for L-inf, 0..32x the first epsilon for L2 (the eval epsilons added).
        curve_steps: PGD steps of the curve attack (one restart).
        convergence_check: also run the strong PGD with twice the steps and twice the
            restarts at the first epsilon (Carlini et al.: the attack has converged).
        gap_threshold: a test PGD-k figure more than this (plus one image) above the
            strong figure on the same images (accuracy fraction) is flagged as suspected
            gradient masking. Honest PGD to AutoAttack gaps are 3-6 points (RobustBench's
            reported vs AutoAttack figures: Madry et al. 2018 47.04 vs 44.04, Rice et al.
            2020 58 (PGD-10) vs 53.42), so 6 points is the edge of honest.
        large_eps_max_acc: the accuracy allowed at the curve's largest epsilon (128/255
            for L-inf). There an untargeted attack can move every image onto a uniform
            grey one and beyond, so a working attack fools (almost) every image; chance
            level (10%) would let a broken attack through. At least one image is allowed.
        batch_size: examples per attack batch.
        seed: seeds every random start (each attack forks the global RNG).
    """

    threat_model: ThreatModel = field(default_factory=ThreatModel)
    attacks: tuple[str, ...] = ("pgd", "autoattack")
    pgd_steps: int = 50
    pgd_restarts: int = 5
    aa_iters: int = 100
    aa_queries: int = 5000
    aa_targets: int = 9
    curve_epsilons: tuple[float, ...] | None = None
    curve_steps: int = 20
    convergence_check: bool = True
    gap_threshold: float = 0.06
    large_eps_max_acc: float = 0.02
    batch_size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.threat_model, ThreatModel):
            raise fail("threat_model", self.threat_model, "must be a ThreatModel")
        if any(e <= 0 for e in self.epsilons):
            raise fail("threat_model.epsilons", list(self.epsilons), "attacks need epsilons > 0")
        object.__setattr__(self, "attacks", check_attacks(self.attacks))
        for name in ("pgd_steps", "pgd_restarts", "aa_iters", "aa_queries", "aa_targets",
                     "curve_steps", "batch_size"):
            check_int(name, getattr(self, name), 1)
        for name in ("gap_threshold", "large_eps_max_acc"):
            check_float(name, getattr(self, name), 0.0, 1.0)
        if self.curve_epsilons is not None:
            object.__setattr__(self, "curve_epsilons", tuple(float(e) for e in self.curve_epsilons))

    @property
    def norm(self) -> str:
        return self.threat_model.norm

    @property
    def epsilons(self) -> tuple[float, ...]:
        return self.threat_model.epsilons

    @property
    def aa_standard(self) -> bool:
        """True when AutoAttack runs with the official standard version's budgets."""
        return (self.aa_iters, self.aa_queries, self.aa_targets) == (100, 5000, 9)

    def large_eps(self) -> float:
        """The default curve's largest epsilon: where accuracy must have fallen to ~0."""
        return LINF_CURVE[-1] if self.norm == "linf" else L2_CURVE_FACTORS[-1] * self.epsilons[0]

    def curve(self) -> tuple[float, ...]:
        if self.curve_epsilons is not None:
            grid = self.curve_epsilons
        elif self.norm == "linf":
            grid = LINF_CURVE
        else:
            grid = tuple(f * self.epsilons[0] for f in L2_CURVE_FACTORS)
        return tuple(sorted({0.0, *grid, *self.epsilons}))

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["attacks"] = list(self.attacks)
        out["threat_model"]["epsilons"] = list(self.epsilons)
        out["curve_epsilons"] = list(self.curve())
        return out


def check_attacks(attacks: Sequence[str]) -> tuple[str, ...]:
    """Validated, de-duplicated attack names in the order given."""
    if isinstance(attacks, str):
        attacks = [attacks]
    chosen = tuple(dict.fromkeys(attacks))
    if not chosen:
        raise fail("--attacks", "", "allowed: " + ", ".join(ATTACKS))
    for name in chosen:
        if name not in ATTACKS:
            raise fail("--attacks", name, "allowed: " + ", ".join(ATTACKS))
    return chosen


def fingerprint(cfg: SuiteConfig, n: int, checkpoint_sha256: str) -> dict[str, Any]:
    """What makes two evaluations of one model the same (device and batch size do not).

    The checkpoint's content hash is part of it: a resumed trial rewrites best_model.pt
    in place (or in a newer checkpoint folder), and figures of the old weights must not
    be kept as "already evaluated". So is the pyautoattack version, when AutoAttack ran.
    """
    settings = cfg.to_dict()
    settings.pop("batch_size")
    aa = autoattack_version() if "autoattack" in cfg.attacks else None
    return {"n": n, "checkpoint_sha256": checkpoint_sha256, "pyautoattack": aa, **settings}


def autoattack_version() -> str:
    """The installed pyautoattack version (it is a dependency; '?' if metadata is missing)."""
    try:
        return importlib.metadata.version("pyautoattack")
    except importlib.metadata.PackageNotFoundError:
        return "?"


def check_autoattack_version() -> str:
    """The installed pyautoattack version, or one line of ConfigError if it is untested.

    Called before any attack runs, so an untested release fails at once instead of after
    minutes of PGD (or, worse, silently running with renamed settings ignored).
    """
    version = autoattack_version()
    found = re.match(r"(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) != _AUTOATTACK_TESTED_MINOR:
        raise ConfigError(f"pyautoattack: {version!r} is not allowed; wrn-search is tested with "
                          f"pyautoattack{AUTOATTACK_TESTED} (pip install "
                          f"'pyautoattack{AUTOATTACK_TESTED}')")
    return version


