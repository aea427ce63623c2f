"""Finding adversarial inputs: the PGD attacks of the suite, run only on the images still
robust, every candidate verified to lie in the eps-ball and in [0, 1] before it counts."""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from trainables.attacks import FGSM, L2PGD, PGD, predict

logger = logging.getLogger(__name__)

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
