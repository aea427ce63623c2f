"""Seconds a trial will take, predicted before it starts and refined from every epoch measured.

A trial's work is known from its configuration (`trainables.cost`: FLOPs of one epoch of
training and evaluation). What is not known is how fast the cluster does that work for each
model size: small WRNs use a GPU poorly, and a CPU's speed depends on its cores and load. The
model here is a power law in the work per unit of device,

    seconds per epoch = exp(a) * (flops / units) ** b,

where `units` is the trial's GPU share (or its CPU count on CPU trials), fit by least squares
on log seconds over the latest rate of every trial seen (one point per trial, so a long trial
does not outvote the rest). A prior holds it near linear scaling (b = 1, a ridge penalty worth
`prior_weight` trials) at a prior throughput (worth a tenth of a trial: the first measured
trial sets the speed) until measurements say otherwise.
The spread of the residuals (shrunk towards a factor of 1.5 while few trials are measured,
never below 10%) is the prediction's error, used as a safety factor when deciding whether a
trial can still finish in the budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

# Before any trial reported: a GPU share is assumed to do this many FLOP/s per whole GPU
# (bf16 training of mid-size WRNs on an A100/H100 reaches 50-200 TFLOP/s; small ones far less).
GPU_PRIOR_FLOPS_PER_S = 20e12
CPU_PRIOR_FLOPS_PER_S = 30e9  # per core, when not measured (`measure_cpu_flops_per_s`)
PRIOR_SPREAD = math.log(2.0)  # a prior prediction is trusted to within a factor of 2
MIN_SPREAD = math.log(1.1)  # even a good fit is not trusted to better than 10%
INTERCEPT_PRIOR_WEIGHT = 0.1  # the prior speed counts as a tenth of a measured trial


@dataclass(frozen=True)
class Prediction:
    """A trial's predicted cost: seconds per epoch, and a factor for its 1-sigma error."""

    epoch_s: float
    error_factor: float

    def seconds(self, epochs: float) -> float:
        return epochs * self.epoch_s

    def pessimistic(self, epochs: float) -> float:
        return self.seconds(epochs) * self.error_factor


class CostModel:
    """Predicts seconds per epoch from FLOPs; see the module docstring.

    Args:
        prior_flops_per_s: Throughput assumed per unit of device before any measurement.
        reference_flops: A typical epoch's FLOPs per unit (centres the fit, so the prior
            on the slope barely moves the prediction for typical trials).
        prior_weight: How many trials' worth of evidence the prior is worth.
    """

    def __init__(self, prior_flops_per_s: float, *, reference_flops: float,
                 prior_weight: float = 1.0) -> None:
        if not (prior_flops_per_s > 0 and reference_flops > 0 and prior_weight > 0):
            raise ValueError("prior_flops_per_s, reference_flops and prior_weight must be > 0, "
                             f"but got {prior_flops_per_s}, {reference_flops}, {prior_weight}")
        self.prior_flops_per_s = float(prior_flops_per_s)
        self.x0 = math.log(reference_flops)
        self.prior_weight = float(prior_weight)
        self._rates: dict[str, tuple[float, float]] = {}  # trial -> (log work, log seconds)
        self._fit: tuple[float, float, float] | None = None  # (a, b, spread), cached
        self.version = 0  # counts observations: a changed model may make new trials fit

    def observe(self, trial_id: str, flops: float, units: float, epoch_s: float) -> None:
        """The latest measured seconds per epoch of a trial (replaces its earlier one)."""
        if flops > 0 and units > 0 and epoch_s > 0 and math.isfinite(epoch_s):
            self._rates[trial_id] = (math.log(flops / units), math.log(epoch_s))
            self._fit = None
            self.version += 1

    @property
    def measured(self) -> int:
        """How many trials the fit rests on."""
        return len(self._rates)

    def predict(self, flops: float, units: float = 1.0) -> Prediction:
        a, b, spread = self._parameters()
        x = math.log(flops / max(units, 1e-9)) - self.x0
        return Prediction(math.exp(a + b * x), math.exp(spread))

    def _parameters(self) -> tuple[float, float, float]:
        """(a, b, spread) of log seconds = a + b (log work - x0); prior a0, b0 = 1."""
        if self._fit is not None:
            return self._fit
        a0 = self.x0 - math.log(self.prior_flops_per_s)  # linear scaling at the prior speed
        if not self._rates:
            self._fit = (a0, 1.0, PRIOR_SPREAD)
            return self._fit
        x, y = (np.array(v) for v in zip(*self._rates.values(), strict=True))
        x = x - self.x0
        w, wa = self.prior_weight, INTERCEPT_PRIOR_WEIGHT
        # Ridge towards (a0, 1): minimise |y - a - b x|^2 + wa (a - a0)^2 + w (b - 1)^2. The
        # speed itself (a) is learned from the first trial; how cost scales with size (b) needs
        # trials of several sizes before it leaves linear.
        lhs = np.array([[len(x) + wa, x.sum()], [x.sum(), (x * x).sum() + w]])
        rhs = np.array([y.sum() + wa * a0, (x * y).sum() + w])
        a, b = np.linalg.solve(lhs, rhs)
        b = float(np.clip(b, 0.3, 1.5))  # physical: cost never falls, nor grows super-linearly
        residuals = y - a - b * x
        # Shrunk towards a factor of 1.5 by the prior's weight: one trial says little about
        # how a model ten times its size will run.
        spread = math.sqrt(((residuals**2).sum() + w * math.log(1.5) ** 2) / (len(x) + w))
        self._fit = (float(a), b, max(spread, MIN_SPREAD))
        return self._fit


def measure_cpu_flops_per_s(threads: int = 1, repeats: int = 3) -> float:
    """FLOP/s of this process's CPU on a small WRN training step: the prior of CPU searches.

    About half a second. Measured in the driver, so it describes the trials' speed when they
    run on the same kind of machine (a laptop, one node); a cluster's first epochs correct it.
    """
    import torch

    from models import WideResNet, forward_flops

    old_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        model = WideResNet(10, 1, 10)
        x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
        best = math.inf
        for i in range(repeats + 1):
            start = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            if i:  # the first one warms up the allocator and oneDNN
                best = min(best, time.perf_counter() - start)
        return 3.0 * 32 * forward_flops(10, 1, 10) / best
    finally:
        torch.set_num_threads(old_threads)
