"""The official AutoAttack (Croce & Hein 2020, `pyautoattack`), run component by component
inside `attack_mode`, with its tested version checked before anything runs."""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from trainables.attacks import attack_mode
from trainables.evaluation.adversarial import _adversarial, _correct, fraction
from trainables.evaluation.suite import (
    AUTOATTACK_COMPONENTS,
    SuiteConfig,
    autoattack_version,
    check_autoattack_version,
)

logger = logging.getLogger(__name__)

def autoattack_description(cfg: SuiteConfig) -> str:
    """One line saying exactly which AutoAttack ran: official code, which budget."""
    code = f"official AutoAttack code (pyautoattack {autoattack_version()}, Croce & Hein 2020)"
    if cfg.aa_standard:
        return f"{code}, standard version: " + ", ".join(c.upper() for c in AUTOATTACK_COMPONENTS)
    return (f"{code}, REDUCED budget ({cfg.aa_iters} iterations, {cfg.aa_targets} target "
            f"classes, {cfg.aa_queries} Square queries; standard is 100/9/5000)")


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
