"""Optuna searchers over the WRN space, wired into Ray Tune.

Two things here are not Ray's defaults, on purpose:
- The space is define-by-run (a picklable callable object, so Ray can checkpoint the
  searcher): `train_steps` is only sampled when the method is PGD.
- Ray's OptunaSearch tells Optuna that an early-stopped trial COMPLETED with its
  truncated numbers. A model stopped after 1 of 10 epochs would then look like a cheap,
  weak model forever; `FidelityAwareOptunaSearch` tells Optuna it was PRUNED instead,
  so the searcher learns only from full-fidelity results.
"""

from __future__ import annotations

import uuid
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from search.spec import ExperimentSpec, SpaceConfig
from trainables import metrics as M
from trainables.config import ConfigError

# What the searcher optimises: the best-checkpoint robust accuracy (the model a user keeps)
# against the parameter count.
OBJECTIVES: tuple[tuple[str, str], ...] = ((M.BEST_VAL_ROBUST_ACC, "max"), (M.PARAMS, "min"))


class DefineByRunSpace:
    """Samples one configuration from the spec's space for an Optuna trial."""

    def __init__(self, space: SpaceConfig, *, conditional: bool = True) -> None:
        self.space = space
        self.conditional = conditional

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        fixed: dict[str, Any] = {}
        chosen: dict[str, Any] = {}
        for param in self.space.params:  # method is listed before train_steps (see DEFAULT_SPACE)
            if param.kind == "fixed":
                fixed[param.name] = chosen[param.name] = param.values[0]
            elif (self.conditional and param.name == M.TRAIN_STEPS
                  and chosen.get(M.METHOD, "pgd") != "pgd"):
                continue  # FGSM-based methods take one step: nothing to search
            else:
                chosen[param.name] = param.suggest(trial)
        # Ray merges these constants with the sampled values into the trial config.
        return fixed or None


class FidelityAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records early-stopped trials as PRUNED (see module docstring)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if result and not error and result.get(M.EPOCHS_DONE, 0) < result.get(M.MAX_EPOCHS, 0):
            result = None  # with no values and no error, Ray tells Optuna PRUNED
        super().on_trial_complete(trial_id, result, error)


def _sampler(spec: ExperimentSpec) -> optuna.samplers.BaseSampler:
    s = spec.searcher
    if s.kind == "tpe":
        # constant_liar keeps concurrent trials from piling onto one point.
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials,
                                          multivariate=True, constant_liar=True)
    if s.kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    if s.kind == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    grid = {p.name: p.grid_values() for p in spec.space.params if p.kind != "fixed"}
    return optuna.samplers.GridSampler(grid, seed=s.seed)


def _storage(url: str | None) -> optuna.storages.BaseStorage | None:
    if url is None:
        return None
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean "cannot use this URL"
        raise ConfigError(f"storage.optuna_url: {url!r} is not allowed; it cannot be opened "
                          f"({type(exc).__name__})") from None


def build_searcher(spec: ExperimentSpec) -> FidelityAwareOptunaSearch:
    # A study name of its own: a shared Optuna database must never feed an older run's
    # trials (other data, threat model or epochs) into this run's sampler.
    return FidelityAwareOptunaSearch(
        space=DefineByRunSpace(spec.space, conditional=spec.searcher.kind != "grid"),
        metric=[m for m, _ in OBJECTIVES],
        mode=[d for _, d in OBJECTIVES],
        sampler=_sampler(spec),
        study_name=f"{spec.name}-{uuid.uuid4().hex[:8]}",
        storage=_storage(spec.storage.optuna_url),
    )


def num_trials(spec: ExperimentSpec) -> int:
    """How many trials to start: the budget's cap, or the grid's size for a grid search."""
    if spec.searcher.kind == "grid":
        return min(spec.budget.max_trials, spec.space.grid_size())
    return spec.budget.max_trials
