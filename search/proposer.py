"""Cost-aware proposals: which configuration buys the most front for the seconds left.

The `cost-ehvi` searcher asks this module what to train next. Its rule, in order:

1. Only what can finish: a configuration whose predicted full training (pessimistic, see
   `search.cost_model`) does not fit in the remaining budget is never proposed, because
   fronts use full-fidelity trials only and its cost would buy nothing.
2. An initial design that spans the front cheaply (the first `n_startup` trials): the
   smallest model at the cheapest training setting (the front's left end), then the largest
   model whose full training fits a share of the startup budget (its right end), then a
   scrambled Sobol sequence over the whole space (Owen 1998), skipping points that cost more
   than that share. Startup trials after the first (the cheapest configuration, never held
   back) together get at most `STARTUP_SHARE` of the budget.
3. Then expected hypervolume gain per predicted second: a Gaussian process (scikit-learn,
   Matern 5/2 with per-dimension length scales, binomial noise per point) predicts each
   candidate's validation robust accuracy; the gain is the closed-form expected increase of
   the front's hypervolume in (log10 params, accuracy) (`analysis.pareto`), and it is divided
   by the predicted seconds to the power alpha = remaining budget / budget ("cost cooling",
   Lee et al. 2020: cheap points first, the best points last). Running trials count as if
   they had reached their predicted accuracy (the "kriging believer"), so concurrent slots
   do not pile onto one region.

Candidates are the first `CANDIDATES` points of the Sobol sequence mapped onto the space (every
configuration of a finite space that small), never one already tried or running.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from analysis.dominance import expected_hypervolume_gain
from analysis.pareto import REF_PARAMS_FACTOR
from models import count_parameters
from search.spec import Param, SpaceConfig
from trainables import metrics as M
from trainables.config import ConfigError, TrialConfig, with_searched
from trainables.cost import epoch_flops

CANDIDATES = 1024  # Sobol points mapped onto the space (a power of two keeps it balanced)
ENUMERATE_UP_TO = 4096  # finite spaces at most this big are enumerated in full
STARTUP_SHARE = 0.5  # the initial design's share of the budget (over all slots)
STOPPED_NOISE = 0.05  # extra std of an early-stopped trial's accuracy: it trained less


@dataclass(frozen=True)
class Candidate:
    """One configuration: what Optuna records, the whole trial, its size and epoch cost."""

    params: dict[str, Any]
    config: TrialConfig
    size: int
    flops: float

    @property
    def key(self) -> tuple[Any, ...]:
        return tuple(sorted(self.params.items()))


@dataclass(frozen=True)
class Observation:
    """What a trial told the searcher: its accuracy, on how many images, at what fidelity."""

    candidate: Candidate
    accuracy: float
    examples: int
    full: bool



class Space:
    """The searched parameters of a spec's space: mapping unit-cube points to candidates."""

    def __init__(self, space: SpaceConfig, base: TrialConfig) -> None:
        self.base = base
        self.params = [p for p in space.params if p.kind != "fixed"]
        self.space = space
        self.classes = base.data.num_classes

    def candidate(self, params: dict[str, Any]) -> Candidate:
        config = with_searched(self.base, params)
        size = count_parameters(config.model.depth, config.model.width, self.classes)
        return Candidate(dict(params), config, size, epoch_flops(config))

    def from_unit(self, u: Sequence[float]) -> Candidate:
        """A configuration from a point of the unit cube (one coordinate per parameter)."""
        chosen = {p.name: _from_unit(p, float(ui)) for p, ui in zip(self.params, u, strict=True)}
        return self.candidate(self._conditional(chosen))

    def _conditional(self, chosen: dict[str, Any]) -> dict[str, Any]:
        """train_steps exists only for PGD (as in the define-by-run space)."""
        method = chosen.get(M.METHOD, self.base.training.method)
        if method != "pgd":
            chosen.pop(M.TRAIN_STEPS, None)
        return chosen

    def pool(self, seed: int) -> list[Candidate]:
        """Distinct candidates in a space-filling order: Sobol points, then any configuration
        of a small finite space they missed."""
        from scipy.stats import qmc

        out: dict[tuple[Any, ...], Candidate] = {}
        if self.params:
            points = qmc.Sobol(len(self.params), scramble=True, seed=seed).random(CANDIDATES)
            for u in points:
                c = self.from_unit(u)
                out.setdefault(c.key, c)
        for params in self.every_configuration():
            c = self.candidate(params)
            out.setdefault(c.key, c)
        return list(out.values())

    def every_configuration(self) -> list[dict[str, Any]]:
        """Every configuration of a finite space of at most ENUMERATE_UP_TO points; [] for a
        space with a float range or a larger one (its candidates are a sample)."""
        try:
            size = math.prod(len(p.grid_values()) for p in self.params)
        except ConfigError:
            return []  # a float range: not finite
        if size > ENUMERATE_UP_TO:
            return []
        grids = [[(p.name, v) for v in p.grid_values()] for p in self.params]
        return [self._conditional(dict(combo)) for combo in _product(grids)]

    def end(self, depth: int, width: int) -> Candidate:
        """A front end: this (depth, width) at the cheapest training setting, the other
        parameters at their centre."""
        chosen = {}
        for p in self.params:
            if p.name == M.DEPTH:
                chosen[p.name] = depth
            elif p.name == M.WIDTH:
                chosen[p.name] = width
            elif p.name == M.TRAIN_STEPS:
                chosen[p.name] = p.extremes()[0]
            elif p.name == M.METHOD:
                chosen[p.name] = (self.base.training.method
                                  if self.base.training.method in p.values else p.values[0])
            else:
                chosen[p.name] = _from_unit(p, 0.5)
        return self.candidate(self._conditional(chosen))

    def architectures(self) -> list[tuple[int, int]]:
        """Every (depth, width) of the space, smallest model first."""
        depth = self.space.get(M.DEPTH)
        width = self.space.get(M.WIDTH)
        depths = depth.grid_values() if depth is not None else [self.base.model.depth]
        widths = width.grid_values() if width is not None else [self.base.model.width]
        pairs = [(d, w) for d in depths for w in widths]
        return sorted(pairs, key=lambda dw: count_parameters(*dw, self.classes))

    def features(self, candidates: Sequence[Candidate]) -> np.ndarray:
        """Each candidate as a point of [0, 1]^d for the surrogate (methods one-hot)."""
        columns = []
        for p in self.params:
            if p.name == M.METHOD:
                columns += [[float(c.params.get(p.name) == v) for c in candidates] for v in p.values]
            else:
                columns.append([_to_unit(p, c.params.get(p.name)) for c in candidates])
        return np.array(columns, dtype=float).T.reshape(len(candidates), -1)


def _product(grids: list[list[tuple[str, Any]]]) -> list[tuple[tuple[str, Any], ...]]:
    import itertools

    return list(itertools.product(*grids))


def _from_unit(p: Param, u: float) -> Any:
    u = min(max(u, 0.0), 1.0 - 1e-12)
    if p.kind == "choice":
        return p.values[int(u * len(p.values))]
    if p.is_int:
        values = p.grid_values() if not p.log else None
        if values is not None:
            return values[int(u * len(values))]
        low, high = math.log(p.low), math.log(p.high + 1)
        return min(int(math.exp(low + u * (high - low))), int(p.high))
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)


def _to_unit(p: Param, value: Any) -> float:
    if value is None:
        return 0.0  # a conditional parameter that does not apply (train_steps of FGSM)
    if p.kind == "choice":
        values = sorted(p.values) if all(isinstance(v, (int, float)) for v in p.values) \
            else list(p.values)
        return values.index(value) / max(len(values) - 1, 1)
    low, high = p.extremes()
    if p.log and low > 0:
        return (math.log(value) - math.log(low)) / max(math.log(high) - math.log(low), 1e-12)
    return (float(value) - low) / max(float(high) - low, 1e-12)


@dataclass(frozen=True)
class Situation:
    """What a proposal depends on, gathered by the searcher at the moment it is asked."""

    observed: Sequence[Observation]
    running: Sequence[Candidate]
    tried: set[tuple[Any, ...]]  # keys of every configuration already started
    remaining_s: float
    budget_s: float
    slots: int


class CostAwareProposer:
    """See the module docstring. `seconds(candidate)` and `feasible(candidate)` come from the
    searcher's cost model and budget gate, so the proposer holds no clock of its own."""

    def __init__(self, space: SpaceConfig, base: TrialConfig, *, n_startup: int, seed: int) -> None:
        self.space = Space(space, base)
        self.n_startup = n_startup
        self.seed = seed
        self._pool: list[Candidate] | None = None
        largest = max(count_parameters(d, w, base.data.num_classes)
                      for d, w in self.space.architectures())
        self.ref_params = REF_PARAMS_FACTOR * largest

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pool": None}  # rebuilt on demand: deterministic

    @property
    def pool(self) -> list[Candidate]:
        if self._pool is None:
            self._pool = self.space.pool(self.seed)
        return self._pool

    def used_up(self, situation: Situation) -> bool:
        """Whether every configuration of a finite space has been tried (False for spaces
        with a float range: their candidates are a sample)."""
        finite = self.space.every_configuration()
        return bool(finite) and all(self.space.candidate(p).key in situation.tried
                                    for p in finite)

    def propose(self, situation: Situation, seconds: Any, feasible: Any) -> Candidate | None:
        """The next configuration to train, or None when nothing left can finish."""
        fresh = [c for c in self.pool if c.key not in situation.tried and feasible(c)]
        started = len(situation.observed) + len(situation.running)
        if started < self.n_startup:
            cap = STARTUP_SHARE * situation.budget_s * situation.slots / self.n_startup
            pick = self._startup(situation, fresh, seconds, feasible, cap)
            if pick is not None:
                return pick
        if not fresh:
            return None
        return self._best_per_second(situation, fresh, seconds)

    # ------------------------------------------------------------------ startup
    def _startup(self, situation: Situation, fresh: list[Candidate], seconds: Any,
                 feasible: Any, cap: float) -> Candidate | None:
        sizes = [o.candidate.size for o in situation.observed]
        sizes += [c.size for c in situation.running]
        architectures = self.space.architectures()
        smallest = self.space.end(*architectures[0])
        if smallest.size not in sizes and smallest.key not in situation.tried and feasible(smallest):
            return smallest
        for depth, width in reversed(architectures[1:]):
            end = self.space.end(depth, width)
            if seconds(end) <= cap and feasible(end):
                if max(sizes, default=0) < end.size and end.key not in situation.tried:
                    return end
                break
        affordable = [c for c in fresh if seconds(c) <= cap]
        return affordable[0] if affordable else None

    # ------------------------------------------------------------------ model-based
    def _best_per_second(self, situation: Situation, fresh: list[Candidate],
                         seconds: Any) -> Candidate:
        observed = list(situation.observed)
        if not observed:
            return min(fresh, key=seconds)  # nothing to model yet: the cheapest
        mean, std = self._surrogate(observed, fresh + list(situation.running))
        n = len(fresh)
        front = [(o.candidate.size, o.accuracy) for o in observed if o.full]
        front += [(c.size, m) for c, m in zip(situation.running, mean[n:], strict=True)]
        gain = expected_hypervolume_gain(np.array(front, dtype=float).reshape(-1, 2),
                                         np.array([c.size for c in fresh], dtype=float),
                                         mean[:n], std[:n], ref_params=self.ref_params)
        alpha = min(max(situation.remaining_s / situation.budget_s, 0.0), 1.0)
        cost = np.array([max(seconds(c), 1e-3) for c in fresh])
        score = gain / cost**alpha
        return fresh[int(np.argmax(score))]

    def _surrogate(self, observed: list[Observation],
                   query: list[Candidate]) -> tuple[np.ndarray, np.ndarray]:
        """Predicted accuracy (mean, std) at `query` from a GP on the observations."""
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        x = self.space.features([o.candidate for o in observed])
        y = np.array([o.accuracy for o in observed], dtype=float)
        noise = np.array([_binomial_var(o.accuracy, o.examples)
                          + (0.0 if o.full else STOPPED_NOISE**2) for o in observed])
        scale = max(float(np.var(y)), 1e-4)
        dims = x.shape[1]
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(np.full(max(dims, 1), 0.5), (0.05, 20.0), nu=2.5)
                  + WhiteKernel(1e-3, (1e-6, 1e-1)))
        gp = GaussianProcessRegressor(kernel, alpha=noise / scale, normalize_y=True,
                                      n_restarts_optimizer=2, random_state=self.seed)
        q = self.space.features(query)
        if dims == 0:
            return np.full(len(query), y.mean()), np.full(len(query), max(y.std(), 0.02))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", UserWarning)
            gp.fit(x, y)
            mean, std = gp.predict(q, return_std=True)
        return mean, np.maximum(std, 1e-4)


def _binomial_var(p: float, n: int) -> float:
    """Variance of an accuracy measured on n images (Agresti-Coull style, never 0)."""
    n = max(int(n), 1)
    q = (p * n + 2) / (n + 4)
    return q * (1 - q) / n
