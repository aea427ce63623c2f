"""Adversarial attacks for training and evaluation: PGD (L-inf, L2), FGSM, FGSM-RS.

Inputs are pixels in [0, 1] (normalisation lives inside the model), so every epsilon and
step size is in pixel units. Attacks run inside `attack_mode`: the model in eval mode (BN
uses its running statistics and does not update them) and every parameter frozen, so an
attack can never touch a weight, its `.grad`, or a BN buffer; gradients are taken with
`torch.autograd.grad` with respect to the perturbation alone. Float32 work inside attacks
and `predict` is IEEE float32 (`exact_float32`: no TF32 on NVIDIA GPUs).

PGD keeps, per example, the first iterate that fools the model (`freeze_fooled`, as the
evaluation of Rice et al. 2020 does): a later step can walk back out of the adversarial
region, and counting that example as robust would flatter the model. Training attacks
turn this off: Madry-style training keeps ascending the loss.

The layout follows the official AutoAttack (`autopgd_base.py`): settings with the papers'
defaults in `__init__` and a required `eps`; one public `perturb(x, y)`; restarts re-attack
only the points still classified correctly; the variants are subclasses that override the
norm-specific pieces (random start, step direction, projection), not string branches.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FGSM",
    "FGSMRS",
    "L2PGD",
    "PGD",
    "Attack",
    "LossFn",
    "attack_mode",
    "exact_float32",
    "predict",
    "robust_correct",
    "summed_cross_entropy",
]

LossFn = Callable[[Tensor, Tensor], Tensor]

_NORM_FLOOR = 1e-12  # keeps L2 normalisation finite where a gradient or delta is exactly 0


def summed_cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy summed over the batch, in float32.

    Summing (not averaging) keeps the per-example gradient independent of the batch size,
    which matters for the L2 step and for restarts that attack a shrinking subset. The cast
    makes the loss indifferent to the logits' dtype under a caller's bf16/fp16 autocast.
    """
    return F.cross_entropy(logits.float(), y, reduction="sum")


@contextmanager
def exact_float32() -> Iterator[None]:
    """Float32 convolutions and matmuls in IEEE float32 for the duration: no TF32.

    cuDNN lets float32 convolutions run in TF32 by default on NVIDIA GPUs (10-bit
    mantissa): a "float32" robust accuracy would then depend on the GPU generation, and
    attack gradients would be coarser. The caller's setting is put back exactly, even
    when the body raises. torch >= 2.9 has per-backend `fp32_precision` settings (and
    refuses reads of the legacy `allow_tf32` flags once they are mixed), so only the
    API the installed torch uses is touched. bf16/fp16 work (a caller's autocast) is
    unaffected.
    """
    b = torch.backends
    if hasattr(b, "fp32_precision"):
        nodes = (b.cudnn.conv, b.cuda.matmul)
        before = [node.fp32_precision for node in nodes]
        try:
            for node in nodes:
                node.fp32_precision = "ieee"
            yield
        finally:
            for node, value in zip(nodes, before, strict=True):
                node.fp32_precision = value
    else:  # pragma: no cover - torch < 2.9
        legacy = (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)
        try:
            b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = False
            yield
        finally:
            b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = legacy


@contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode, frozen parameters and exact float32 for the duration; restore all after.

    Eval mode makes BN use (and not update) its running statistics and turns dropout off.
    Freezing parameters is the honesty rule (an attack never reaches a weight or its
    `.grad`) and a speed-up: the backward pass skips weight gradients. Every module's
    training flag and every parameter's `requires_grad` are restored one by one, so mixed
    states (a frozen layer, a submodule kept in eval) survive, even when the body raises.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        with exact_float32():
            yield
    finally:
        for p, requires_grad in flags:
            p.requires_grad_(requires_grad)
        for m, training in modes:
            m.training = training


def _check_eps(eps: float) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
        raise ValueError(f"eps must be a finite number >= 0, but got {eps!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, but got {eps}")
    return float(eps)


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, but got {value!r}")
    return value


def _check_alpha(alpha: float) -> float:
    ok = not isinstance(alpha, bool) and isinstance(alpha, (int, float))
    if not ok or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0, but got {alpha!r}")
    return float(alpha)


class Attack(ABC):
    """An attack within the `norm`-ball of radius `eps` (pixel units) around each input.

    `perturb(x, y)` returns a detached `x_adv` of the same shape and dtype as `x`, inside
    the ball and inside [0, 1]; it runs under `attack_mode(model)`.
    """

    norm: ClassVar[str]
    eps: float
    model: nn.Module

    @abstractmethod
    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        """Adversarial examples for inputs `x` in [0, 1] with labels `y`."""


class PGD(Attack):
    """L-inf projected gradient descent (Madry et al., 2018).

    Args:
        model: maps inputs in [0, 1] to logits.
        eps: radius of the L-inf ball, in pixel units. 0 returns the input unchanged.
        steps: gradient steps per restart.
        alpha: step size; None takes the common rule 2.5 * eps / steps.
        restarts: attacks from fresh random starts. Each restart after the first
            re-attacks only the examples the model still classifies correctly; an
            example keeps the first adversarial input found for it (or, if none fools
            the model, the last restart's final iterate).
        random_start: start uniformly in the ball (Madry et al.) instead of at x.
        loss_fn: maximised loss `loss_fn(logits, y) -> scalar`; default: cross-entropy
            summed over the batch.
        generator: source of the random starts (on the inputs' device), for
            reproducible attacks; None uses torch's global generator.
        freeze_fooled: keep, per example, the first iterate that fools the model (its
            predicted class is not y) instead of the last one; Rice et al. 2020's
            `attack_pgd(early_stop=True)`, which they evaluate with. Without it, an
            example fooled at step 3 and classified correctly again at step 10 counts as
            robust. A mask, not an index: the step loop still makes no host sync. Pass
            False for training (Madry et al. keep ascending the loss).
    """

    norm: ClassVar[str] = "linf"

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        *,
        steps: int = 10,
        alpha: float | None = None,
        restarts: int = 1,
        random_start: bool = True,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
        freeze_fooled: bool = True,
    ) -> None:
        self.model = model
        self.eps = _check_eps(eps)
        self.steps = _check_count("steps", steps)
        self.restarts = _check_count("restarts", restarts)
        self.alpha = 2.5 * self.eps / self.steps if alpha is None else _check_alpha(alpha)
        if not isinstance(random_start, bool):
            raise ValueError(f"random_start must be True or False, but got {random_start!r}")
        self.random_start = random_start
        if not isinstance(freeze_fooled, bool):
            raise ValueError(f"freeze_fooled must be True or False, but got {freeze_fooled!r}")
        self.freeze_fooled = freeze_fooled
        self.loss_fn: LossFn = summed_cross_entropy if loss_fn is None else loss_fn
        self.generator = generator

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eps={self.eps:.6g}, steps={self.steps}, "
            f"alpha={self.alpha:.6g}, restarts={self.restarts}, "
            f"random_start={self.random_start}, freeze_fooled={self.freeze_fooled})"
        )

    def perturb(self, x: Tensor, y: Tensor) -> Tensor:
        if self.eps == 0:
            return x.detach().clone()
        x0 = x.detach().float()
        y = y.detach()
        with attack_mode(self.model), torch.enable_grad():
            x_adv = self._attack(x0, y)
            for _ in range(1, self.restarts):
                # One host sync per restart (not per step): which examples still stand.
                with torch.no_grad():
                    still = (self.model(x_adv).argmax(dim=1) == y).nonzero().squeeze(1)
                if still.numel() == 0:
                    break
                x_adv[still] = self._attack(x0[still], y[still])
        return x_adv.to(x.dtype)

    def _attack(self, x: Tensor, y: Tensor) -> Tensor:
        """One restart: `steps` ascent steps on the loss from a (random) start; no syncs."""
        delta = self._random_start(x) if self.random_start else torch.zeros_like(x)
        delta = self._project(x, delta)
        per_example = (-1,) + (1,) * (x.dim() - 1)
        for _ in range(self.steps):
            delta.requires_grad_(True)
            logits = self.model(x + delta)
            (grad,) = torch.autograd.grad(self.loss_fn(logits, y), delta)
            delta = delta.detach()
            stepped = self._project(x, delta + self.alpha * self._direction(grad))
            if self.freeze_fooled:  # the iterate just scored stays where it fooled the model
                fooled = (logits.detach().argmax(dim=1) != y).view(per_example)
                stepped = torch.where(fooled, delta, stepped)
            delta = stepped
        return (x + delta).clamp_(0.0, 1.0).detach()

    def _project(self, x: Tensor, delta: Tensor) -> Tensor:
        """Onto the ball, then onto the box [0, 1] (clipping only shrinks |delta_i|)."""
        return (x + self._project_ball(delta)).clamp_(0.0, 1.0) - x

    # The norm-specific pieces; L2PGD overrides all three.

    def _random_start(self, x: Tensor) -> Tensor:
        """Uniform in the L-inf ball."""
        u = torch.rand(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return (2.0 * u - 1.0) * self.eps

    def _direction(self, grad: Tensor) -> Tensor:
        """The steepest-ascent direction of unit L-inf norm: the gradient's sign."""
        return grad.sign()

    def _project_ball(self, delta: Tensor) -> Tensor:
        return delta.clamp(-self.eps, self.eps)


def _per_example_norm(t: Tensor) -> Tensor:
    """L2 norm of each example, shaped to broadcast against `t`."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


class L2PGD(PGD):
    """L2 PGD: random start uniform in the L2 ball, steps along the L2-normalised gradient,
    projection onto each example's L2 ball and onto [0, 1]. Same arguments as `PGD`, with
    `eps` and `alpha` (default 2.5 * eps / steps) measured in the L2 norm."""

    norm: ClassVar[str] = "l2"

    def _random_start(self, x: Tensor) -> Tensor:
        # Uniform in the d-ball: an isotropic direction times a radius eps * U^(1/d).
        g = torch.randn(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        direction = g / _per_example_norm(g).clamp_min(_NORM_FLOOR)
        shape = (x.shape[0],) + (1,) * (x.dim() - 1)
        u = torch.rand(shape, generator=self.generator, device=x.device, dtype=x.dtype)
        return direction * self.eps * u.pow(1.0 / x[0].numel())

    def _direction(self, grad: Tensor) -> Tensor:
        return grad / _per_example_norm(grad).clamp_min(_NORM_FLOOR)

    def _project_ball(self, delta: Tensor) -> Tensor:
        scale = (self.eps / _per_example_norm(delta).clamp_min(_NORM_FLOOR)).clamp(max=1.0)
        return delta * scale


class FGSM(PGD):
    """Fast gradient sign method (Goodfellow et al., 2015): one signed step of size eps
    from the clean input, clipped to [0, 1]. The step is always taken, also for an input
    the model already gets wrong (it trains fgsm-mix models)."""

    def __init__(self, model: nn.Module, eps: float, *, loss_fn: LossFn | None = None) -> None:
        eps = _check_eps(eps)
        super().__init__(
            model, eps, steps=1, alpha=eps if eps > 0 else None, restarts=1,
            random_start=False, loss_fn=loss_fn, freeze_fooled=False,
        )


class FGSMRS(PGD):
    """FGSM with a random start (Wong et al., 2020, "Fast is better than free"): a uniform
    start in the L-inf ball, one signed step of size alpha (default 1.25 * eps), then
    projection onto the ball and [0, 1]. A training attack: the step is always taken."""

    def __init__(
        self,
        model: nn.Module,
        eps: float,
        alpha: float | None = None,
        *,
        loss_fn: LossFn | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        eps = _check_eps(eps)
        if alpha is None and eps > 0:
            alpha = 1.25 * eps
        super().__init__(
            model, eps, steps=1, alpha=alpha, restarts=1, random_start=True,
            loss_fn=loss_fn, generator=generator, freeze_fooled=False,
        )


def _chunks(n: int, batch_size: int) -> Iterator[slice]:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, but got {batch_size!r}")
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration, then every module's previous flag back."""
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        yield
    finally:
        for m, training in modes:
            m.training = training


def predict(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """Predicted classes (N,), in eval mode, exact float32 and without autograd,
    `batch_size` at a time."""
    with _eval_mode(model), exact_float32(), torch.no_grad():
        preds = [model(x[s]).argmax(dim=1) for s in _chunks(x.shape[0], batch_size)]
    if not preds:
        return torch.empty(0, dtype=torch.long, device=x.device)
    return torch.cat(preds)


def robust_correct(
    model: nn.Module, attack: Attack, x: Tensor, y: Tensor, batch_size: int = 500
) -> Tensor:
    """Which examples the model still classifies correctly after `attack`, as bool (N,).

    Only clean-correct examples are attacked (the others count as not robust, and
    attacking them would only cost time), `batch_size` at a time.
    """
    result = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    for s in _chunks(x.shape[0], batch_size):
        xb, yb = x[s], y[s]
        idx = (predict(model, xb, batch_size) == yb).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        x_adv = attack.perturb(xb[idx], yb[idx])
        result[s][idx] = predict(model, x_adv, batch_size) == yb[idx]
    return result
