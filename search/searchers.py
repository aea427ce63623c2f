"""Optuna searchers over the WRN space, wired into Ray Tune.

Two things here are not Ray's defaults, on purpose:
- The space is define-by-run (a picklable callable object, so Ray can checkpoint the
  searcher): `train_steps` is only sampled when the method is PGD.
- Ray's OptunaSearch tells Optuna that an early-stopped trial COMPLETED with its
  truncated numbers. A model stopped after 1 of 10 epochs would then look like a cheap,
  weak model forever; `FidelityAwareOptunaSearch` tells Optuna it was PRUNED instead,
  so the searcher learns only from full-fidelity results.
- Optuna's samplers repeat points of a discrete space, and every trial trains with the
  spec's seed, so a repeat is the same training twice (benchmarks/search_efficiency.py
  measured 4 full runs of one configuration in a 16-point space). A repeat is told the
  twin's outcome and sampled again; once a finite space is used up, the search ends.
"""

from __future__ import annotations

import uuid
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher
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
    """OptunaSearch that records early-stopped trials as PRUNED and never repeats a
    configuration (see module docstring)."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        if result and not error and result.get(M.EPOCHS_DONE, 0) < result.get(M.MAX_EPOCHS, 0):
            result = None  # with no values and no error, Ray tells Optuna PRUNED
        super().on_trial_complete(trial_id, result, error)

    def suggest(self, trial_id: str) -> dict | str | None:
        params = super().suggest(trial_id)
        for _ in range(MAX_RESAMPLES):
            ot_trial = self._ot_trials.get(trial_id)
            twin = _twin(self._ot_study, ot_trial) if ot_trial is not None else None
            if twin is None:
                return params
            # Seen before: it would train to the same numbers. Optuna hears what the twin
            # got (or FAIL, "no information", while the twin still runs), then samples again.
            if twin.state == TrialState.COMPLETE:
                self._ot_study.tell(ot_trial, twin.values)
            else:
                self._ot_study.tell(ot_trial, state=TrialState.PRUNED
                                    if twin.state == TrialState.PRUNED else TrialState.FAIL)
            del self._ot_trials[trial_id]
            if self._every_configuration_tried():
                return Searcher.FINISHED
            params = super().suggest(trial_id)
        return params  # the sampler insists on seen points: let it repeat one

    def _every_configuration_tried(self) -> bool:
        trials = self._ot_study.get_trials(deepcopy=False)
        return space_exhausted(self._space, [t.params for t in trials if t.state != TrialState.WAITING])


MAX_RESAMPLES = 32  # samples per suggestion before a repeat is allowed


def space_exhausted(space: DefineByRunSpace | SpaceConfig, tried: list[dict[str, Any]]) -> bool:
    """Whether a finite space's every configuration is among `tried` (dicts holding at least
    the space's parameters). False for unbounded or conditional spaces."""
    if isinstance(space, DefineByRunSpace):
        method = space.space.get(M.METHOD)
        if space.conditional and method is not None and set(method.values) != {"pgd"}:
            return False  # some configurations omit train_steps: the product overcounts
        space = space.space
    try:
        size = space.grid_size()
    except ConfigError:
        return False
    names = [p.name for p in space.params if p.kind != "fixed"]
    seen = {tuple(c.get(n) for n in names) for c in tried}
    return len(seen) >= size


def _twin(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial | None:
    """An earlier trial of the study with exactly `trial`'s parameters, if any."""
    return next((other for other in study.get_trials(deepcopy=False)
                 if other.number != trial.number and other.state != TrialState.WAITING
                 and other.params == trial.params), None)


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
