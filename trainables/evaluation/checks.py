"""The sanity checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness") on an
evaluation's numbers: each passes, fails, or could not run."""

from __future__ import annotations

import logging
import math

from trainables.evaluation.records import Check, ModelEvaluation
from trainables.evaluation.suite import SuiteConfig
from trainables.formats import eps_text, percent
from trainables.metrics import (
    AUTOATTACK_KEY,
    FGSM_KEY,
    PGD_2RESTARTS_KEY,
    PGD_2STEPS_KEY,
    PGD_KEY,
    SEARCH_PGD_KEY,
)

logger = logging.getLogger(__name__)

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
