"""Strong evaluation of one model on held-out images: attack suite, per-example minimum, checks.

PGD-k on a validation split is a good search signal and a weak final claim: published PGD
figures often drop several points under AutoAttack, and a model with masked gradients can
look robust to every gradient attack while being broken. This module attacks a model with
a suite of attacks and runs the automated sanity checks of Carlini et al. 2019 ("On
Evaluating Adversarial Robustness"), returning plain results; `search.evaluate` loads the
checkpoints and the test split, and stores what comes back.

- Attacks (the model in eval mode, parameters frozen, inputs in [0, 1]): FGSM (one step;
  the single-step baseline of the checks), the search's own PGD-k (the like-for-like
  figure on this split), a strong PGD (many steps, restarts), and AutoAttack (APGD-CE,
  APGD-T, FAB-T, Square: the official code of Croce & Hein 2020 from the `pyautoattack`
  package, with the settings of its "standard" version; see `autoattack_components`).
- Robust accuracy is the per-example minimum over every attack run at that epsilon: an
  example counts as robust only if it is clean-correct, no attack found an adversarial
  input for it, and a re-check of its worst-case input agrees (a disagreement, from a
  non-deterministic model or numerics, never counts in the model's favour).
- Only clean-correct examples are attacked; every adversarial input is re-checked to lie
  in the eps-ball and in [0, 1] before it counts. PGD keeps each example's first
  adversarial iterate (`attacks.PGD(freeze_fooled=True)`), and everything runs in exact
  float32 (`attacks.exact_float32`: no TF32).
- Every check ends "passed", "failed" or "not run" (a check that could not run, e.g. the
  Square check without AutoAttack, is never counted as passed); the verdict names the
  checks it rests on (`checks_summary`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables import metrics
from trainables.attacks import FGSM, L2PGD, PGD, attack_mode, exact_float32, predict
from trainables.config import NORMS, ConfigError, fail
from trainables.formats import duration, eps_text, percent
from trainables.metrics import (
    AUTOATTACK_KEY,
    FGSM_KEY,
    HEADLINE_ATTACKS,
    PGD_2RESTARTS_KEY,
    PGD_2STEPS_KEY,
    PGD_KEY,
    SEARCH_PGD_KEY,
    TEST_CHECKS,
    TEST_CLEAN_ACC,
    TEST_MASKING_SUSPECTED,
    TEST_N,
    attack_acc_key,
    strong_acc_key,
)

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



# ------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SuiteConfig:
    """What to run. Defaults are the papers' (AutoAttack standard; PGD 50 steps x 5 restarts).

    Args:
        norm, epsilons: the run's threat model; the first epsilon is the search objective
            (the convergence check and the adversarial examples kept for transfer use it).
        attacks: strong attacks to run, from ATTACKS. FGSM and the search's PGD-k always
            run: the checks need them, and they are cheap.
        search_steps, search_restarts: the search's validation attack, re-run on this split.
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

    norm: str = "linf"
    epsilons: tuple[float, ...] = (8 / 255,)
    attacks: tuple[str, ...] = ("pgd", "autoattack")
    search_steps: int = 10
    search_restarts: int = 1
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
        if self.norm not in NORMS:
            raise fail("norm", self.norm, "allowed: " + ", ".join(NORMS))
        object.__setattr__(self, "attacks", check_attacks(self.attacks))
        eps = tuple(float(e) for e in self.epsilons)
        if not eps or any(not math.isfinite(e) or e <= 0 for e in eps):
            raise fail("epsilons", list(self.epsilons), "must be a non-empty list of numbers > 0")
        object.__setattr__(self, "epsilons", eps)
        for name in ("search_steps", "search_restarts", "pgd_steps", "pgd_restarts", "aa_iters",
                     "aa_queries", "aa_targets", "curve_steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise fail(name, value, "must be an integer >= 1")
        for name in ("gap_threshold", "large_eps_max_acc"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise fail(name, value, "must be an accuracy fraction in [0, 1]")
        if self.curve_epsilons is not None:
            object.__setattr__(self, "curve_epsilons", tuple(float(e) for e in self.curve_epsilons))

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
        out["epsilons"] = list(self.epsilons)
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


def autoattack_description(cfg: SuiteConfig) -> str:
    """One line saying exactly which AutoAttack ran: official code, which budget."""
    code = f"official AutoAttack code (pyautoattack {autoattack_version()}, Croce & Hein 2020)"
    if cfg.aa_standard:
        return f"{code}, standard version: " + ", ".join(c.upper() for c in AUTOATTACK_COMPONENTS)
    return (f"{code}, REDUCED budget ({cfg.aa_iters} iterations, {cfg.aa_targets} target "
            f"classes, {cfg.aa_queries} Square queries; standard is 100/9/5000)")


# ------------------------------------------------------------------------- results


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


# ------------------------------------------------------------------------- attacks

Perturb = Callable[[Tensor, Tensor], Tensor]


def _pgd(model: nn.Module, norm: str, eps: float, steps: int, restarts: int,
         generator: torch.Generator) -> PGD:
    cls = L2PGD if norm == "l2" else PGD
    return cls(model, eps, steps=steps, restarts=restarts, generator=generator)


def _single_step(model: nn.Module, norm: str, eps: float) -> PGD:
    """FGSM (L-inf), or the fast gradient method (one L2-normalised step of size eps)."""
    if norm == "l2":
        return L2PGD(model, eps, steps=1, alpha=eps, random_start=False)
    return FGSM(model, eps)


def _inside(x: Tensor, x_adv: Tensor, eps: float, norm: str) -> Tensor:
    """Which rows of x_adv lie in the eps-ball around x and in [0, 1] (float slack only)."""
    delta = (x_adv - x).flatten(1)
    size = delta.abs().amax(dim=1) if norm == "linf" else delta.norm(dim=1)
    in_box = (x_adv.flatten(1).amin(dim=1) >= -1e-6) & (x_adv.flatten(1).amax(dim=1) <= 1 + 1e-6)
    return (size <= eps * (1 + 1e-5) + 1e-7) & in_box


def _adversarial(model: nn.Module, perturb: Perturb, x: Tensor, y: Tensor, todo: Tensor,
                 eps: float, norm: str, batch_size: int) -> Tensor:
    """x with the rows in `todo` (bool) replaced by `perturb`'s output, where that is valid.

    An output outside the threat model never counts: its row keeps the clean input.
    """
    x_adv = x.clone()
    idx = todo.nonzero().squeeze(1)
    for chunk in idx.split(batch_size):
        adv = perturb(x[chunk], y[chunk]).detach().to(x.dtype)
        ok = _inside(x[chunk], adv, eps, norm)
        if not bool(ok.all()):
            logger.warning("%d adversarial inputs left the eps-ball or [0, 1]; ignored",
                           int((~ok).sum()))
        x_adv[chunk[ok]] = adv[ok]
    return x_adv


def fraction(mask: Tensor) -> float:
    """Share of True in a bool tensor, as an exact count / n (no float32 rounding)."""
    return int(mask.sum()) / max(mask.numel(), 1)


def _correct(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> Tensor:
    return predict(model, x, batch_size) == y


def _aa_norm(norm: str) -> str:
    return {"linf": "Linf", "l2": "L2"}[norm]


def autoattack_components(model: nn.Module, eps: float, cfg: SuiteConfig, num_classes: int,
                          device: torch.device) -> dict[str, Any]:
    """The four attacks of AutoAttack's standard version, configured by the official class.

    `AutoAttack(version="standard")` sets every hyperparameter; the components are then
    run here the way its `run_standard_evaluation` runs them (in order, each only on the
    points still robust, targeted FAB with one restart), so that each component's effect
    is recorded and its adversarial inputs can join the per-example minimum. A reduced
    budget rebuilds the APGD objects, whose checkpoint schedule depends on n_iter. Returns
    the attack objects by AUTOATTACK_COMPONENTS name (each has `perturb(x, y)`). Sets
    pyautoattack's attributes directly: see `check_autoattack_version`.
    """
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    check_autoattack_version()

    norm = _aa_norm(cfg.norm)
    aa = AutoAttack(model, norm=norm, eps=eps, version="standard", seed=cfg.seed, device=device)
    targets = min(cfg.aa_targets, num_classes - 1)
    if not cfg.aa_standard or targets != 9:
        aa.apgd = APGDAttack(model, n_restarts=1, n_iter=cfg.aa_iters, eps=eps, norm=norm,
                             eot_iter=1, rho=0.75, seed=cfg.seed, device=device,
                             logger=aa.logger)
        aa.apgd_targeted = APGDAttack_targeted(
            model, n_restarts=1, n_iter=cfg.aa_iters, eps=eps, norm=norm, eot_iter=1,
            rho=0.75, seed=cfg.seed, device=device, n_target_classes=targets, logger=aa.logger)
        aa.fab.n_iter = cfg.aa_iters
        aa.fab.n_target_classes = targets
        aa.square.n_queries = cfg.aa_queries
    aa.apgd.loss = "ce"
    aa.fab.targeted = True  # run_standard_evaluation's "fab-t"
    aa.fab.n_restarts = 1
    return {"apgd-ce": aa.apgd, "apgd-t": aa.apgd_targeted, "fab-t": aa.fab, "square": aa.square}


def _run_autoattack(model: nn.Module, x: Tensor, y: Tensor, correct: Tensor, eps: float,
                    cfg: SuiteConfig, num_classes: int) -> tuple[Tensor, dict[str, float], Tensor]:
    """AutoAttack's adversarial inputs, robust accuracy after each component, and which
    examples only Square (the gradient-free component, run last) fooled."""
    attacks = autoattack_components(model, eps, cfg, num_classes, x.device)
    x_adv = x.clone()
    robust = correct.clone()
    after: dict[str, float] = {}
    for name in AUTOATTACK_COMPONENTS:
        # The official attacks call the model directly, and FAB calls .backward(): frozen
        # parameters keep that off the weights' .grad, eval mode keeps BN statistics still.
        with attack_mode(model):
            candidate = _adversarial(model, attacks[name].perturb, x, y, robust, eps, cfg.norm,
                                     cfg.batch_size)
        fooled = robust & ~_correct(model, candidate, y, cfg.batch_size)
        x_adv[fooled] = candidate[fooled]
        robust &= ~fooled
        after[name] = fraction(robust)
        last = fooled
    return x_adv, after, last


@dataclass
class _Plan:
    key: str
    label: str
    run: Callable[[], Tensor]  # -> x_adv for every example


def _plans(model: nn.Module, x: Tensor, y: Tensor, correct: Tensor, eps: float, first: bool,
           cfg: SuiteConfig, num_classes: int, gen: torch.Generator,
           aa_out: dict[str, Any]) -> list[_Plan]:
    norm, bs = cfg.norm, cfg.batch_size

    def gradient(attack: PGD) -> Callable[[], Tensor]:
        return lambda: _adversarial(model, attack.perturb, x, y, correct, eps, norm, bs)

    def autoattack() -> Tensor:
        x_adv, after, square_fooled = _run_autoattack(model, x, y, correct, eps, cfg, num_classes)
        aa_out.update(steps=after, square_fooled=square_fooled)
        return x_adv

    search = _pgd(model, norm, eps, cfg.search_steps, cfg.search_restarts, gen)
    plans = [_Plan(FGSM_KEY, "FGM" if norm == "l2" else "FGSM",
                   gradient(_single_step(model, norm, eps))),
             _Plan(SEARCH_PGD_KEY, _pgd_label(cfg.search_steps, cfg.search_restarts),
                   gradient(search))]
    if "pgd" in cfg.attacks:
        plans.append(_Plan(PGD_KEY, _pgd_label(cfg.pgd_steps, cfg.pgd_restarts),
                           gradient(_pgd(model, norm, eps, cfg.pgd_steps, cfg.pgd_restarts, gen))))
    if first and cfg.convergence_check:
        steps, restarts = _base_pgd(cfg)
        plans += [
            _Plan(PGD_2STEPS_KEY, _pgd_label(2 * steps, restarts),
                  gradient(_pgd(model, norm, eps, 2 * steps, restarts, gen))),
            _Plan(PGD_2RESTARTS_KEY, _pgd_label(steps, 2 * restarts),
                  gradient(_pgd(model, norm, eps, steps, 2 * restarts, gen))),
        ]
    if "autoattack" in cfg.attacks:
        label = "AutoAttack" if cfg.aa_standard else "AutoAttack (reduced)"
        plans.append(_Plan(AUTOATTACK_KEY, label, autoattack))
    return plans


def _pgd_label(steps: int, restarts: int) -> str:
    return f"PGD-{steps}" + (f"x{restarts}" if restarts > 1 else "")


def _base_pgd(cfg: SuiteConfig) -> tuple[int, int]:
    """The PGD whose convergence is checked: the strong one, else the search's."""
    if "pgd" in cfg.attacks:
        return cfg.pgd_steps, cfg.pgd_restarts
    return cfg.search_steps, cfg.search_restarts


# The time estimate. Unit: one forward and backward pass of one attacked image (a forward
# alone counts half). Gradient attacks cost steps x (1 + later restarts x survivors), since
# restarts only re-attack the survivors; AutoAttack runs APGD-CE on every attacked image
# and APGD-T, FAB-T (targets x iterations each) and Square (one forward per query) on the
# survivors. "Survivors" is the share of attacked images no attack has fooled yet (0.5
# before the first attack has run). Each stage also re-predicts all n images (a forward,
# 0.5 / clean accuracy per attacked image; AutoAttack once per component, the curve once
# per epsilon), which dominates the cheap stages of a weak model. The estimate is the
# measured seconds per unit so far times the units left, so it corrects itself as the
# model is attacked.


def _pgd_units(steps: int, restarts: int, survive: float) -> float:
    return steps * (1 + (restarts - 1) * survive)


def _stage_units(cfg: SuiteConfig, key: str, survive: float, recheck: float) -> float:
    """Estimated cost of one stage of `evaluate_model`, per attacked image (`recheck`: the
    cost of one forward pass over all n images, per attacked image)."""
    steps, restarts = _base_pgd(cfg)
    if key == FGSM_KEY:
        return 1.0 + recheck
    if key == "zero_grad":
        return 1.0
    if key == SEARCH_PGD_KEY:
        return _pgd_units(cfg.search_steps, cfg.search_restarts, survive) + recheck
    if key == PGD_KEY:
        return _pgd_units(cfg.pgd_steps, cfg.pgd_restarts, survive) + recheck
    if key == PGD_2STEPS_KEY:
        return _pgd_units(2 * steps, restarts, survive) + recheck
    if key == PGD_2RESTARTS_KEY:
        return _pgd_units(steps, 2 * restarts, survive) + recheck
    if key == AUTOATTACK_KEY:
        return (cfg.aa_iters + survive * (2 * cfg.aa_targets * cfg.aa_iters + 0.5 * cfg.aa_queries)
                + len(AUTOATTACK_COMPONENTS) * recheck)
    if key == "curve":
        return sum(cfg.curve_steps + recheck for e in cfg.curve() if e > 0)
    raise ValueError(f"unknown stage {key!r}")


def _stages(cfg: SuiteConfig) -> list[str]:
    """Every stage of `evaluate_model` in order (per-epsilon attacks, the curve, gradients)."""
    stages = []
    for i in range(len(cfg.epsilons)):
        keys = [FGSM_KEY, SEARCH_PGD_KEY] + ([PGD_KEY] if "pgd" in cfg.attacks else [])
        if i == 0 and cfg.convergence_check:
            keys += [PGD_2STEPS_KEY, PGD_2RESTARTS_KEY]
        if "autoattack" in cfg.attacks:
            keys.append(AUTOATTACK_KEY)
        stages += [f"{i}:{k}" for k in keys]
    return stages + ["curve", "zero_grad"]


def estimate_text(elapsed: float, left: float) -> str:
    """The default wording of the running estimate (`evaluate_model`'s `eta_text`)."""
    return f"about {duration(left)} left for this model"


class _Clock:
    """Running estimate of the time left for one model (see the cost model above)."""

    def __init__(self, cfg: SuiteConfig, text: Callable[[float, float], str],
                 clean_acc: float) -> None:
        self.cfg, self.text = cfg, text
        self.recheck = 0.5 / max(clean_acc, 0.01)
        self.start = time.perf_counter()
        self.todo = _stages(cfg)
        self.units_done = 0.0
        self.survive = 0.5

    def done(self, key: str, survive: float | None = None) -> str:
        """Mark the next stage (`key`, without its epsilon prefix) done; the estimate text."""
        keys = [s.rsplit(":", 1)[-1] for s in self.todo]
        if key in keys:
            self.todo.pop(keys.index(key))
        self.units_done += _stage_units(self.cfg, key, self.survive, self.recheck)
        if survive is not None:
            self.survive = min(max(survive, 0.0), 1.0)
        elapsed = time.perf_counter() - self.start
        units_left = sum(_stage_units(self.cfg, s.rsplit(":", 1)[-1], self.survive, self.recheck)
                         for s in self.todo)
        return self.text(elapsed, elapsed / max(self.units_done, 1e-9) * units_left)


def _attack_eps(model: nn.Module, x: Tensor, y: Tensor, correct: Tensor, eps: float,
                first: bool, cfg: SuiteConfig, num_classes: int,
                say: Callable[[str], None], clock: _Clock) -> tuple[EpsResult, Tensor, Tensor]:
    """Every attack at one epsilon: outcomes, the worst-case inputs and the robust flags."""
    gen = torch.Generator(device=x.device).manual_seed(cfg.seed)
    aa_out: dict[str, Any] = {}
    worst = x.clone()
    fooled_any = torch.zeros_like(correct)
    outcomes: dict[str, AttackOutcome] = {}
    survived: dict[str, Tensor] = {}
    for plan in _plans(model, x, y, correct, eps, first, cfg, num_classes, gen, aa_out):
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(cfg.seed)
            x_adv = plan.run()
        ok = correct & _correct(model, x_adv, y, cfg.batch_size)
        survived[plan.key] = ok
        new = correct & ~ok & ~fooled_any  # keep the first adversarial input found
        worst[new] = x_adv[new]
        fooled_any |= correct & ~ok
        outcomes[plan.key] = AttackOutcome(plan.label, fraction(ok),
                                           time.perf_counter() - start)
        eta = clock.done(plan.key, fraction(correct & ~fooled_any) / max(fraction(correct), 1e-12))
        say(f"{eps_text(eps, cfg.norm)}: {plan.label} {100 * outcomes[plan.key].acc:.1f}% "
            f"({outcomes[plan.key].seconds:.0f}s; {eta})")
    # Robust: clean-correct, fooled by no attack, and the worst case re-checked as a whole
    # agrees. A disagreement (a non-deterministic model, or batch-dependent numerics on a
    # GPU) never counts in the model's favour.
    recheck = _correct(model, worst, y, cfg.batch_size)
    robust = correct & ~fooled_any & recheck
    disagree = correct & (fooled_any == recheck)
    if bool(disagree.any()):
        logger.warning("%d of the re-checked worst-case inputs disagree with the attacks "
                       "(a non-deterministic model, or numerical ties); they count as not robust",
                       int(disagree.sum()))
    result = EpsResult(eps, outcomes, fraction(robust), aa_out.get("steps", {}),
                       _square_gain(aa_out.get("square_fooled"), survived))
    return result, worst, robust


def _square_gain(square_fooled: Tensor | None, survived: Mapping[str, Tensor]) -> float | None:
    """Fraction of examples fooled by Square and by no gradient attack at all."""
    if square_fooled is None:
        return None
    others = [ok for key, ok in survived.items() if key != AUTOATTACK_KEY]
    alone = square_fooled.clone()
    for ok in others:
        alone &= ok
    return fraction(alone)


def accuracy_curve(model: nn.Module, x: Tensor, y: Tensor, cfg: SuiteConfig) -> list[tuple[float, float]]:
    """(eps, robust accuracy under PGD-curve_steps) for every curve epsilon, each alone."""
    gen = torch.Generator(device=x.device).manual_seed(cfg.seed)
    correct = _correct(model, x, y, cfg.batch_size)
    points = []
    for eps in cfg.curve():
        if eps == 0:
            points.append((0.0, fraction(correct)))
            continue
        attack = _pgd(model, cfg.norm, eps, cfg.curve_steps, 1, gen)
        x_adv = _adversarial(model, attack.perturb, x, y, correct, eps, cfg.norm, cfg.batch_size)
        points.append((eps, fraction(correct & _correct(model, x_adv, y, cfg.batch_size))))
    return points


def zero_gradient_fraction(model: nn.Module, x: Tensor, y: Tensor, batch_size: int) -> float:
    """Fraction of examples whose margin loss has an exactly zero input gradient.

    The margin (true logit minus the best other) never saturates the way cross-entropy
    does at confident points, so a zero gradient means the gradient path is cut: a
    non-differentiable layer, i.e. gradient masking (AutoAttack warns on the same).
    """
    if x.shape[0] == 0:
        return 0.0
    zero = 0
    with attack_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size].clone().requires_grad_(True)
            yb = y[start:start + batch_size]
            logits = model(xb).float()
            true = logits.gather(1, yb[:, None]).squeeze(1)
            other = logits.masked_fill(F.one_hot(yb, logits.shape[1]).bool(), -torch.inf)
            (grad,) = torch.autograd.grad((true - other.amax(dim=1)).sum(), xb)
            zero += int((grad.flatten(1).abs().sum(dim=1) == 0).sum())
    return zero / x.shape[0]


# ------------------------------------------------------------------------- checks


def noise(n: int, p: float) -> float:
    """Tolerance for comparing two accuracies on n examples: two standard errors + one example."""
    p = min(max(p, 0.0), 1.0)
    return 2 * math.sqrt(p * (1 - p) / max(n, 1)) + 1 / max(n, 1)


def _check_near_zero(ev: ModelEvaluation, cfg: SuiteConfig) -> Check:
    name, title = "near_zero_at_large_eps", "Accuracy falls to about 0% at a large epsilon"
    eps, acc = ev.curve[-1]
    large = cfg.large_eps()
    allowed = max(cfg.large_eps_max_acc, 1 / ev.n)  # at least one image
    values = {"eps": eps, "acc": acc, "allowed": allowed, "chance": 1 / ev.num_classes}
    if eps < large * (1 - 1e-6):
        return Check(name, title, None, f"not run: the curve stops at {eps_text(eps, ev.norm)}, "
                     f"below {eps_text(large, ev.norm)}", masking=True, values=values)
    return Check(name, title, acc <= allowed + 1e-9,
                 f"{ev.curve_attack} at eps {eps_text(eps, ev.norm)}: {percent(acc)} (allowed up to "
                 f"{percent(allowed)}; chance is {percent(1 / ev.num_classes)}, a working untargeted "
                 "attack fools about every image)", masking=True, values=values)


def _check_monotone(ev: ModelEvaluation) -> Check:
    rises = [(e1, a0, a1) for (_, a0), (e1, a1) in zip(ev.curve, ev.curve[1:], strict=False)]
    worst = max(rises, key=lambda r: r[2] - r[1], default=None)
    rise = max(0.0, worst[2] - worst[1]) if worst else 0.0
    tol = noise(ev.n, max((a for _, a in ev.curve), default=0.0))
    where = f" (largest rise {percent(rise)} at eps {eps_text(worst[0], ev.norm)})" if rise > 0 else ""
    return Check("monotone_in_eps", "Accuracy is non-increasing in epsilon", rise <= tol,
                 f"{ev.curve_attack} curve over {len(ev.curve)} epsilons{where}; tolerance "
                 f"{percent(tol)}", masking=False, values={"largest_rise": rise, "tolerance": tol})


_ITERATIVE = (SEARCH_PGD_KEY, PGD_KEY, PGD_2STEPS_KEY, PGD_2RESTARTS_KEY)  # gradient-based


def _check_single_step(ev: ModelEvaluation) -> Check:
    worst_gap, parts = 0.0, []
    for r in ev.per_eps:
        single = r.attacks[FGSM_KEY].acc
        iterative = min(o.acc for k, o in r.attacks.items() if k in _ITERATIVE)
        parts.append(f"{eps_text(r.eps, ev.norm)}: single-step {percent(single)}, "
                     f"iterative {percent(iterative)}")
        tol = noise(ev.n, max(single, iterative))
        worst_gap = max(worst_gap, iterative - single - tol)
    return Check("iterative_beats_single_step", "Iterative attacks beat single-step ones",
                 worst_gap <= 0, "; ".join(parts), masking=True,
                 values={"excess_over_tolerance": worst_gap})


def _check_converged(ev: ModelEvaluation) -> Check:
    first = ev.per_eps[0]
    base_key = PGD_KEY if PGD_KEY in first.attacks else SEARCH_PGD_KEY
    if PGD_2STEPS_KEY not in first.attacks:
        return Check("converged", "Doubling steps or restarts changes nothing beyond noise",
                     None, "not run: convergence_check is off", masking=False)
    base = first.attacks[base_key]
    parts, ok, values = [], True, {"base": base.acc}
    for key in (PGD_2STEPS_KEY, PGD_2RESTARTS_KEY):
        other = first.attacks[key]
        tol = noise(ev.n, max(base.acc, other.acc))
        ok &= abs(other.acc - base.acc) <= tol
        values[key] = other.acc
        parts.append(f"{other.label} {percent(other.acc)}")
    return Check("converged", "Doubling steps or restarts changes nothing beyond noise", ok,
                 f"at {eps_text(first.eps, ev.norm)}: {base.label} {percent(base.acc)} vs "
                 + ", ".join(parts) + f" (tolerance {percent(noise(ev.n, base.acc))})",
                 masking=False, values=values)


_STRONG = (PGD_KEY, AUTOATTACK_KEY)  # what makes the per-example minimum "strong"


def _check_gap(ev: ModelEvaluation, threshold: float) -> Check:
    title = "The search-time attack is close to the strong figure"
    if not any(k in ev.per_eps[0].attacks for k in _STRONG):
        return Check("search_gap", title, None, "not run: no strong attack ran (needs --attacks "
                     "pgd or autoattack)", masking=True)
    gaps = [(r.eps, r.attacks[SEARCH_PGD_KEY].acc - r.robust_acc) for r in ev.per_eps]
    eps, gap = max(gaps, key=lambda g: g[1])
    label = ev.per_eps[0].attacks[SEARCH_PGD_KEY].label
    limit = threshold + 1 / ev.n
    return Check("search_gap", title, gap <= limit + 1e-9,
                 f"largest gap {percent(gap)} at {eps_text(eps, ev.norm)} between {label} and the "
                 f"strong minimum on the same images (flagged above {percent(limit)}: "
                 f"{percent(threshold)} plus one image; honest PGD-to-AutoAttack gaps are 3-6 points)",
                 masking=True, values={"gap": gap, "eps": eps, "threshold": threshold,
                                       "limit": limit})


def _check_square(ev: ModelEvaluation) -> Check:
    gains = [(r.eps, r.square_gain) for r in ev.per_eps if r.square_gain is not None]
    title = "A gradient-free attack finds nothing the gradient attacks missed"
    if not gains:
        return Check("gradient_free_agrees", title, None, "not run: needs --attacks autoattack",
                     masking=True)
    eps, gain = max(gains, key=lambda g: g[1])
    limit = max(0.002, 1 / ev.n)  # AutoAttack flags Square gains above 0.2%
    return Check("gradient_free_agrees", title, gain <= limit + 1e-9,
                 f"Square alone fooled {percent(gain)} of the examples that every gradient attack "
                 f"missed, at {eps_text(eps, ev.norm)} (flagged above {percent(limit)})",
                 masking=True, values={"gain": gain, "eps": eps, "limit": limit})


def _check_gradients(ev: ModelEvaluation) -> Check:
    frac = ev.zero_grad_fraction
    if ev.clean_acc == 0:
        return Check("nonzero_gradients", "Input gradients are non-zero", None,
                     "not run: no clean-correct image to take a gradient at", masking=True)
    return Check("nonzero_gradients", "Input gradients are non-zero", frac == 0,
                 f"{percent(frac)} of the examples have an exactly zero input gradient of the "
                 "margin loss", masking=True, values={"zero_fraction": frac})


def sanity_checks(ev: ModelEvaluation, cfg: SuiteConfig) -> list[Check]:
    """Carlini et al. 2019's automated checks, plus AutoAttack's zero-gradient and Square ones."""
    return [_check_near_zero(ev, cfg), _check_monotone(ev), _check_single_step(ev),
            _check_converged(ev), _check_gap(ev, cfg.gap_threshold), _check_square(ev),
            _check_gradients(ev)]


# ------------------------------------------------------------------------- entry points


def evaluate_model(model: nn.Module, x: Tensor, y: Tensor, cfg: SuiteConfig, *,
                   num_classes: int, progress: Callable[[str], None] | None = None,
                   eta_text: Callable[[float, float], str] = estimate_text) -> ModelEvaluation:
    """Attack `model` on (x, y) at every epsilon of `cfg`; run the checks.

    Everything runs in exact float32 (no TF32), whatever the caller's setting.

    Args:
        model: maps inputs in [0, 1] to logits; attacked in eval mode, parameters frozen.
        x, y: float images in [0, 1] and labels, on the model's device.
        cfg: the suite.
        num_classes: for chance level and AutoAttack's target classes.
        progress: called with one line per finished attack (default: logging), each with
            an estimate of the time left.
        eta_text: words for that estimate from (seconds so far, seconds left for this
            model); a caller evaluating several models adds their time.
    """
    if x.shape[0] == 0:
        raise ValueError("evaluate_model needs at least one example")
    if "autoattack" in cfg.attacks:
        check_autoattack_version()
    say = progress or logger.info
    start = time.perf_counter()
    x, y = x.detach().float(), y.detach()
    with exact_float32():
        correct = _correct(model, x, y, cfg.batch_size)
        clock = _Clock(cfg, eta_text, fraction(correct))
        per_eps, worst, robust = [], x, correct
        for i, eps in enumerate(cfg.epsilons):
            result, worst_i, robust_i = _attack_eps(model, x, y, correct, eps, i == 0, cfg,
                                                    num_classes, say, clock)
            per_eps.append(result)
            if i == 0:
                worst, robust = worst_i, robust_i
        curve = accuracy_curve(model, x, y, cfg)
        say("curve: " + ", ".join(f"{eps_text(e, cfg.norm)} {100 * a:.0f}%" for e, a in curve)
            + f" ({clock.done('curve')})")
        zero_grad = zero_gradient_fraction(model, x[correct], y[correct], cfg.batch_size)
        clock.done("zero_grad")
    ev = ModelEvaluation(
        n=int(x.shape[0]), num_classes=num_classes, norm=cfg.norm, clean_acc=fraction(correct),
        per_eps=per_eps, curve=curve, curve_attack=_pgd_label(cfg.curve_steps, 1),
        zero_grad_fraction=zero_grad, checks=[], x_adv=worst.cpu(), robust=robust.cpu(),
        seconds=0.0,
    )
    ev.checks = sanity_checks(ev, cfg)
    ev.seconds = time.perf_counter() - start
    return ev


def transfer_matrix(models: Sequence[nn.Module], adversarial: Sequence[Tensor], y: Tensor,
                    batch_size: int) -> list[list[float]]:
    """m[i][j]: accuracy of model j on the adversarial inputs crafted on model i.

    The diagonal is each model's own white-box robust accuracy (Szegedy et al. 2014's
    cross-model table reads off the rest). Inputs and labels go to each model's device.
    """
    out = []
    for x_adv in adversarial:
        row = []
        for model in models:
            device = next(model.parameters()).device
            ok = predict(model, x_adv.to(device), batch_size) == y.to(device)
            row.append(fraction(ok))
        out.append(row)
    return out


# ------------------------------------------------------------------------- corruptions


def _jpeg(x: Tensor, gen: torch.Generator) -> Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    images = (x.cpu() * 255).round().to(torch.uint8)
    decoded = decode_jpeg(encode_jpeg(list(images), quality=75))
    return torch.stack(decoded).to(x.device).float() / 255


def _blur(x: Tensor, gen: torch.Generator) -> Tensor:
    from torchvision.transforms.v2.functional import gaussian_blur

    return gaussian_blur(x, kernel_size=[3, 3], sigma=[1.0, 1.0])


def _noise(x: Tensor, gen: torch.Generator) -> Tensor:
    z = torch.randn(x.shape, generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    return (x + 0.05 * z).clamp(0, 1)


def _brightness(x: Tensor, gen: torch.Generator) -> Tensor:
    return (x + 0.1).clamp(0, 1)


def _contrast(x: Tensor, gen: torch.Generator) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * 0.8 + mean).clamp(0, 1)


CORRUPTIONS: Mapping[str, tuple[str, Callable[[Tensor, torch.Generator], Tensor]]] = {
    "jpeg": ("JPEG, quality 75", _jpeg),
    "blur": ("Gaussian blur, 3x3, sigma 1", _blur),
    "noise": ("Gaussian noise, sigma 0.05", _noise),
    "brightness": ("brightness +0.1", _brightness),
    "contrast": ("contrast x0.8", _contrast),
}


def destruction_rates(model: nn.Module, x: Tensor, x_adv: Tensor, y: Tensor, *,
                      batch_size: int, seed: int = 0) -> dict[str, dict[str, Any]]:
    """How often each transformation undoes an adversarial example (Kurakin et al. 2017).

    d = #(clean correct, adversarial wrong, transformed adversarial correct) /
        #(clean correct, adversarial wrong); `clean_acc` is the accuracy on transformed
    clean inputs, for context (a transformation that breaks clean inputs "destroys" little).
    """
    clean_ok = _correct(model, x, y, batch_size)
    fooled = clean_ok & ~_correct(model, x_adv, y, batch_size)
    count = int(fooled.sum())
    out: dict[str, dict[str, Any]] = {}
    for name, (label, transform) in CORRUPTIONS.items():
        gen = torch.Generator().manual_seed(seed)
        t_adv_ok = _correct(model, transform(x_adv, gen), y, batch_size)
        t_clean_ok = _correct(model, transform(x, torch.Generator().manual_seed(seed)), y,
                              batch_size)
        destroyed = int((fooled & t_adv_ok).sum())
        out[name] = {"label": label, "adversarial": count, "destroyed": destroyed,
                     "rate": destroyed / count if count else None,
                     "clean_acc": fraction(t_clean_ok)}
    return out


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
