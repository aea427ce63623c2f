"""Running the suite on one model: every attack at every epsilon, the per-example minimum,
the accuracy-vs-epsilon curve, the zero-gradient count, a running time estimate."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainables.attacks import PGD, attack_mode, exact_float32
from trainables.evaluation.adversarial import _adversarial, _correct, _pgd, _single_step, fraction
from trainables.evaluation.autoattack import _run_autoattack
from trainables.evaluation.checks import sanity_checks
from trainables.evaluation.records import AttackOutcome, EpsResult, ModelEvaluation
from trainables.evaluation.suite import AUTOATTACK_COMPONENTS, SuiteConfig, check_autoattack_version
from trainables.formats import duration, eps_text
from trainables.metrics import (
    AUTOATTACK_KEY,
    FGSM_KEY,
    PGD_2RESTARTS_KEY,
    PGD_2STEPS_KEY,
    PGD_KEY,
    SEARCH_PGD_KEY,
)

logger = logging.getLogger(__name__)



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

    search = _pgd(model, norm, eps, cfg.threat_model.steps, cfg.threat_model.restarts, gen)
    plans = [_Plan(FGSM_KEY, "FGM" if norm == "l2" else "FGSM",
                   gradient(_single_step(model, norm, eps))),
             _Plan(SEARCH_PGD_KEY, _pgd_label(cfg.threat_model.steps, cfg.threat_model.restarts),
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
    return cfg.threat_model.steps, cfg.threat_model.restarts


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
        return _pgd_units(cfg.threat_model.steps, cfg.threat_model.restarts, survive) + recheck
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
