"""Optuna searchers over the WRN space, wired into Ray Tune.

Several things here are not Ray's defaults, on purpose:
- The space is define-by-run (a picklable callable object, so Ray can checkpoint the
  searcher): `train_steps` is only sampled when the method is PGD.
- Ray's OptunaSearch tells Optuna that an early-stopped trial COMPLETED with its
  truncated numbers. A model stopped after 1 of 10 epochs would then look like a cheap,
  weak model forever; `FidelityAwareOptunaSearch` tells Optuna it was PRUNED instead,
  so the searcher learns only from full-fidelity results.
- Optuna's samplers repeat points of a discrete space, and every trial trains with the
  spec's seed, so a repeat is the same training twice (benchmarks/search_efficiency.py
  measured 4 full runs of one configuration in a 16-point space). A repeat (a "twin") is
  never trained: it is told FAIL with user attrs `twin_of` (the earlier trial's number) and
  `not_trained` (why), and the sampler draws again. The study then lists exactly the
  trained trials as COMPLETE or PRUNED (optuna-dashboard shows what ran), and the sampler
  learns a point's value once, from the trial that trained it: a FAIL trial is no evidence
  to TPE, NSGA-II or the grid's bookkeeping beyond "visited". After MAX_RESAMPLES unusable
  draws in a row (twins, or too costly for the budget left) the searcher stops asking the
  sampler and enqueues an untried configuration of the space's pool itself (space-filling
  order), so a sampler that insists on seen points costs draws, never a training. Once a
  finite space is used up, the search ends.
- A trial whose predicted full training does not fit in the budget left is not started
  (`search.budget`): it is told FAIL with `not_trained` saying so, the sampler draws again,
  and when nothing fits the searcher waits for running trials (their epochs refine the
  cost model), then ends.
- The study is kept where a person can watch it: the spec's `storage.optuna_url`, else a
  journal file in the run folder (`RunJournal`), which `optuna-dashboard` opens. A run on
  object storage keeps it in memory (a journal needs a local file and a file lock); it is
  pickled with the searcher either way, so `resume` continues it.
- The default kind, `cost-ehvi`, does not sample at all: `search.proposer` picks each
  configuration by expected hypervolume gain per predicted second, after an initial design
  that pins the front's ends cheaply, and Optuna records what it picked.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search.budget import BudgetClock, BudgetGate
from search.cluster import TrialResources
from search.cost_model import CPU_PRIOR_FLOPS_PER_S, GPU_PRIOR_FLOPS_PER_S, CostModel
from search.proposer import Candidate, CostAwareProposer, Observation, Situation, Space
from search.spec import ExperimentSpec, SpaceConfig, resolve_optuna_url
from trainables import metrics as M
from trainables.config import ConfigError
from trainables.formats import mask_url
from trainables.run_files import DRIVER_DIR, OPTUNA_JOURNAL

log = logging.getLogger(__name__)

# What the searcher optimises: the best-checkpoint robust accuracy (the model a user keeps)
# against the parameter count.
OBJECTIVES: tuple[tuple[str, str], ...] = ((M.BEST_VAL_ROBUST_ACC, "max"), (M.PARAMS, "min"))

# User attrs of a study trial that was never trained (told FAIL): why, and for a repeat of an
# earlier configuration, that trial's number.
NOT_TRAINED = "not_trained"
TWIN_OF = "twin_of"
NO_TIME = "cannot finish in the remaining budget"
LOST = "asked before the driver stopped, never recorded by the searcher"


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


@dataclass
class _TrialRecord:
    """What the searcher knows of one trial it suggested."""

    candidate: Candidate
    result: dict[str, Any] = field(default_factory=dict)
    finished: bool = False


class FidelityAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that records early-stopped trials as PRUNED, never repeats a
    configuration, and only starts what can finish in the budget (see module docstring).

    With a `proposer` (kind cost-ehvi) the proposer picks every configuration and Optuna
    records it (enqueued, so the study shows exactly what was trained); otherwise Optuna's
    sampler proposes and the budget gate only filters.
    """

    # Defaults for a searcher pickled before these existed (a run resumed after an upgrade).
    _run_dir: str | None = None
    _reconcile: bool = False
    _pool_seed: int = 0

    def __init__(self, *args: Any, space_view: Space, gate: BudgetGate, slots: int = 1,
                 proposer: CostAwareProposer | None = None, run_dir: str | None = None,
                 pool_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._run_dir = run_dir  # where a RunJournal lives: re-pointed on resume
        self._reconcile = False  # on the first suggestion after a restore: close lost trials
        self._pool_seed = pool_seed  # the fallback's pool, after MAX_RESAMPLES unusable draws
        self._view = space_view
        self._gate = gate
        self._slots = max(1, slots)
        self._proposer = proposer
        self._records: dict[str, _TrialRecord] = {}
        self._idle: tuple[int, int] | None = None  # (finished, model version) when nothing fit
        self._ended: str | None = None  # why the searcher finished: "space" or "budget"
        self._reopen = False  # `reopen`: forget, on restore, that the search had ended

    # ------------------------------------------------------------------ restore
    def restore(self, checkpoint_path: str) -> None:
        """Ray's restore replaces the whole state; the live budget gate (and its clock, shared
        with the recorder and the scheduler) is kept."""
        gate, run_dir, reopen = self._gate, self._run_dir, getattr(self, "_reopen", False)
        super().restore(checkpoint_path)
        if gate is not None:
            gate.cost = self._gate.cost  # what was learned about the cluster's speed
            self._gate = gate
        if run_dir is not None:
            self.attach_run(run_dir)  # the restored journal names the folder it was saved in
        self._reconcile = True
        self._reopen = False
        if reopen:  # `resume --budget/--max-trials` gave the search room: it may propose again
            self._ended, self._idle = None, None

    def attach_run(self, run_dir: str) -> None:
        """Keep the study's journal in the run folder where it is now (it may have moved since
        the searcher was pickled)."""
        self._run_dir = run_dir
        if isinstance(self._storage, RunJournal):
            self._storage.attach(run_dir)

    def study_record(self) -> dict[str, str]:
        """Where the study is, for run.json: its name and storage (the journal's path inside
        the run folder, the database URL as the spec wrote it, password masked, or "memory")."""
        if isinstance(self._storage, RunJournal):
            where = JOURNAL_IN_RUN
        elif isinstance(self._storage, SpecStorage):
            where = self._storage.optuna_url
        else:
            where = "memory"
        return {"study": self._study_name, "storage": where}

    def _close_lost_trials(self) -> None:
        """A persistent study outlives the searcher's last checkpoint: trials asked after it
        are unknown to the restored searcher and to Ray, and would stay RUNNING (and count as
        tried) for ever. They were never trained: tell them FAIL, saying so."""
        self._reconcile = False
        if self._ot_study is None:
            return
        known = {t.number for t in self._ot_trials.values()}
        storage = self._ot_study._storage  # noqa: SLF001
        for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known:
                if "grid_id" in t.system_attrs:  # a finished trial's grid point counts as
                    # visited: free it, so that the grid proposes it again
                    storage.set_trial_system_attr(t._trial_id, "grid_id", -1)  # noqa: SLF001
                storage.set_trial_user_attr(t._trial_id, NOT_TRAINED, LOST)  # noqa: SLF001
                storage.set_trial_state_values(t._trial_id, TrialState.FAIL)  # noqa: SLF001

    def reopen(self) -> None:
        """Let an ended search propose again after `resume --budget/--max-trials`: the state
        restored from the run (study, cost model, the proposer's observations) is kept, only
        the "space"/"budget" end and the nothing-fits latch are forgotten (a space that is
        really used up ends again at the first suggestion)."""
        self._reopen = True
        self._ended, self._idle = None, None

    def attach_clock(self, clock: BudgetClock) -> None:
        """Hold trials to the run's live clock (shared with the recorder and the scheduler)."""
        self._gate.clock = clock

    def running(self) -> list[str]:
        """Ids of the trials this searcher suggested and has not heard the end of."""
        return [trial_id for trial_id, r in self._records.items() if not r.finished]

    @property
    def ended(self) -> str | None:
        """Why the searcher stopped proposing: "space" (every configuration of a finite space
        is tried, or could not finish in time), "budget" (nothing that could still finish
        fits in the budget left), or None (it did not)."""
        return self._ended

    # ------------------------------------------------------------------ results
    def on_trial_result(self, trial_id: str, result: dict) -> None:
        record = self._records.get(trial_id)
        if record is not None:
            record.result = dict(result)
            self._gate.observe(trial_id, record.candidate.config, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        record = self._records.get(trial_id)
        if record is not None:
            record.finished = True
            if result:
                record.result = dict(result)
                self._gate.observe(trial_id, record.candidate.config, result)
            if error:
                record.result = {}
        if result and not error and (result.get(M.EPOCHS_DONE, 0) < result.get(M.MAX_EPOCHS, 0)
                                     or any(result.get(m) is None for m, _ in OBJECTIVES)):
            result = None  # with no values and no error, Ray tells Optuna PRUNED
        super().on_trial_complete(trial_id, result, error)

    # ------------------------------------------------------------------ suggestions
    def suggest(self, trial_id: str) -> dict | str | None:
        if self._reconcile:
            self._close_lost_trials()
        idle = (sum(r.finished for r in self._records.values()), self._gate.cost.version)
        if self._idle == idle:
            return self._nothing_fits()  # nothing changed since nothing fit: do not redo it
        if self._proposer is not None:
            params = self._proposed(trial_id)
        else:
            params = self._sampled(trial_id)
        if params is None or params == Searcher.FINISHED:
            if params is None:
                self._idle = idle
                return self._nothing_fits()
            return params
        self._idle = None
        candidate = self._records[trial_id].candidate
        return {**params, M.PREDICTED_EPOCH_S: self._gate.prediction(candidate.config).epoch_s}

    def _nothing_fits(self) -> str | None:
        """Wait while trials run (their epochs refine the cost model); end when none does."""
        if any(not r.finished for r in self._records.values()):
            return None
        self._ended = self._ended or "budget"
        return Searcher.FINISHED

    def _proposed(self, trial_id: str) -> dict | None:
        situation = self._situation()
        choice = self._proposer.propose(
            situation, seconds=lambda c: self._gate.full_seconds(c.config),
            feasible=lambda c: self._gate.can_finish(c.config))
        if choice is None:
            if self._proposer.used_up(situation):
                self._ended = "space"
            return None
        self._ot_study.enqueue_trial(choice.params)
        params = super().suggest(trial_id)
        self._records[trial_id] = _TrialRecord(choice)
        return params

    def _situation(self) -> Situation:
        observed, running = [], []
        for record in self._records.values():
            r = record.result
            accuracy = r.get(M.BEST_VAL_ROBUST_ACC)
            if record.finished and isinstance(accuracy, (int, float)):
                full = r.get(M.EPOCHS_DONE, 0) >= r.get(M.MAX_EPOCHS, 1)
                observed.append(Observation(record.candidate, float(accuracy),
                                            int(r.get(M.VAL_EXAMPLES) or 0), full))
            elif not record.finished:
                running.append(record.candidate)
        return Situation(observed, running, {r.candidate.key for r in self._records.values()},
                         self._gate.clock.remaining_s, self._gate.clock.budget_s, self._slots)

    def _sampled(self, trial_id: str) -> dict | str | None:
        """Optuna's proposal, drawn again while it repeats a configuration or cannot finish in
        the budget (either is told FAIL, never trained; see the module docstring); after
        MAX_RESAMPLES such draws, an untried configuration of the pool instead."""
        for _ in range(MAX_RESAMPLES):
            params = super().suggest(trial_id)
            twin = _twin(self._ot_study, self._ot_trials[trial_id])
            candidate = self._view.candidate(_searched(params, self._view))
            if twin is None and self._gate.can_finish(candidate.config):
                self._records[trial_id] = _TrialRecord(candidate)
                return params
            self._not_trained(trial_id, twin)
            if self._every_configuration_tried():  # tried, or told it could not finish in time
                # Nothing new for the sampler to draw. The pool decides at the budget left now:
                # the space is used up only if all was trained; untried configurations that
                # lack time mean the budget ran out (and a "could not finish" told before
                # `resume --budget` raised it no longer holds).
                break
        return self._from_pool(trial_id)

    def _not_trained(self, trial_id: str, twin: FrozenTrial | None) -> None:
        """Tell Optuna that the trial just asked for `trial_id` will not be trained: a repeat
        of `twin`, or (None) one that cannot finish in the budget left."""
        ot_trial = self._ot_trials.pop(trial_id)
        if twin is None:
            ot_trial.set_user_attr(NOT_TRAINED, NO_TIME)
        else:
            ot_trial.set_user_attr(TWIN_OF, twin.number)
            ot_trial.set_user_attr(NOT_TRAINED, f"a repeat of trial {twin.number}'s configuration")
        self._ot_study.tell(ot_trial, state=TrialState.FAIL)

    def _from_pool(self, trial_id: str) -> dict | str | None:
        """The sampler keeps proposing what was tried (or cannot finish): the first untried
        configuration of the space's pool that can finish, enqueued so that Optuna records
        it; None (wait, or end) when none can finish; FINISHED when the pool, which holds
        every configuration of a finite space (a conditional one too), is all tried."""
        tried = {_key(t.params) for t in self._ot_study.get_trials(deepcopy=False) if _trained(t)}
        untried = [c for c in self._view.pool(self._pool_seed)  # rare: not kept (nor pickled)
                   if _key(c.params) not in tried]
        if not untried:
            self._ended = "space"
            return Searcher.FINISHED
        fresh = next((c for c in untried if self._gate.can_finish(c.config)), None)
        if fresh is None:
            return None
        self._ot_study.enqueue_trial(fresh.params)
        params = super().suggest(trial_id)
        self._records[trial_id] = _TrialRecord(fresh)
        return params

    def _every_configuration_tried(self) -> bool:
        trials = self._ot_study.get_trials(deepcopy=False)
        return space_exhausted(self._space, [t.params for t in trials if t.state != TrialState.WAITING
                                             and t.user_attrs.get(NOT_TRAINED) != LOST])


class ExtendedSearch(SearchGenerator):
    """Ray's SearchGenerator for a search continued with more room (`resume --budget +2h`,
    `--max-trials +10`). Ray restores the generator's trial cap and its "finished" flag from
    the run (search_gen_state-*.json) after the TuneConfig is read, so a finished experiment
    would start nothing; this one takes the new cap and forgets that it had finished, through
    the public get_state/set_state pair. Not pickled into tuner.pkl (Ray writes that only when
    a search starts), so a later plain `resume` is Ray's own generator again.

    `ended`: the trials Ray will not run again (TERMINATED or ERROR in the run), with their
    last results. When the budget ran out, Ray's stopper ended the running trials without
    telling the searcher, so the restored searcher (and Ray's ConcurrencyLimiter) would wait
    for them forever; they are told here that those trials are over.
    """

    def __init__(self, searcher: Searcher, *, total_samples: int, max_concurrent: int | None,
                 ended: dict[str, dict] | None = None) -> None:
        inner = ConcurrencyLimiter(searcher, max_concurrent=max_concurrent) if max_concurrent else searcher
        super().__init__(inner)
        self.extended_total = total_samples
        self.ended = dict(ended or {})

    def set_state(self, state: dict) -> None:
        super().set_state({**state, "total_samples": self.extended_total, "finished": False})

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        base = base_searcher(self)
        live = set(base.running()) if isinstance(base, FidelityAwareOptunaSearch) else set()
        if isinstance(self.searcher, ConcurrencyLimiter):
            live |= set(self.searcher.live_trials)
        for trial_id in sorted(live & set(self.ended)):
            self.on_trial_complete(trial_id, result=self.ended[trial_id])


def base_searcher(search_alg: Any) -> Any:
    """The searcher inside Ray's wrappers (SearchGenerator, ConcurrencyLimiter)."""
    while hasattr(search_alg, "searcher"):
        search_alg = search_alg.searcher
    return search_alg


def _searched(params: dict[str, Any], view: Space) -> dict[str, Any]:
    """The searched values of a suggestion (Ray merges the space's constants in too)."""
    names = {p.name for p in view.params}
    return {k: v for k, v in params.items() if k in names}


MAX_RESAMPLES = 32  # samples per suggestion before the pool's untried configurations are used


def _key(params: dict[str, Any]) -> tuple[Any, ...]:
    """A configuration's identity, as `Candidate.key` (the searched parameters, sorted)."""
    return tuple(sorted(params.items()))


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


def _trained(trial: FrozenTrial) -> bool:
    """Whether a study trial was trained or is training (asked, and not told "not trained")."""
    return trial.state != TrialState.WAITING and NOT_TRAINED not in trial.user_attrs


def _twin(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial | None:
    """An earlier trained (or training) trial of the study with exactly `trial`'s parameters."""
    return next((other for other in study.get_trials(deepcopy=False)
                 if other.number != trial.number and _trained(other)
                 and other.params == trial.params), None)


def _sampler(spec: ExperimentSpec) -> optuna.samplers.BaseSampler:
    s = spec.searcher
    if s.kind == "tpe":
        # constant_liar keeps concurrent trials from piling onto one point.
        return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials,
                                          multivariate=True, constant_liar=True)
    if s.kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s.seed)
    if s.kind in ("random", "cost-ehvi"):  # cost-ehvi enqueues every trial's values itself
        return optuna.samplers.RandomSampler(seed=s.seed)
    grid = {p.name: p.grid_values() for p in spec.space.params if p.kind != "fixed"}
    return _GridSampler(grid, seed=s.seed)


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler, except that it does not stop the study when its grid is used up:
    `Study.stop` raises outside `study.optimize` (Ray asks and tells), after the trial is
    stored but before the searcher goes on. The searcher ends the search itself
    (`_every_configuration_tried`, `num_trials`)."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Any) -> None:
        return None


class SpecStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage, opened from the spec's `storage.optuna_url` as written.

    Ray pickles the searcher, and with it this storage, into the run folder (tuner.pkl,
    searcher-state-*.pkl). RDBStorage would pickle the resolved URL, password and all; this
    one pickles the URL as the spec wrote it ("env:NAME", or the URL with its password
    masked) and resolves it again when unpickled (`resume`), from the environment.
    """

    def __init__(self, optuna_url: str) -> None:
        self.optuna_url = mask_url(optuna_url)
        super().__init__(resolve_optuna_url(optuna_url))

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "url": self.optuna_url}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__({**state, "url": resolve_optuna_url(state["optuna_url"])})


class RunJournal(optuna.storages.JournalStorage):
    """The study as an Optuna journal file in the run folder (DRIVER_DIR/OPTUNA_JOURNAL):
    what `optuna-dashboard <file>` and `optuna.load_study` open, with or without Ray.

    Only the driver writes it (Ray runs the searcher there), so the journal backend's file
    lock is all the locking needed. Pickled with the searcher (tuner.pkl, searcher-state-*.pkl),
    it keeps only the file's path and reads the file again when next used; `attach` points it
    at the run folder where it is now, since a resumed run may have moved.
    """

    def __init__(self, run_dir: str) -> None:
        self.path = journal_path(run_dir)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        super().__init__(optuna.storages.journal.JournalFileBackend(self.path))

    def attach(self, run_dir: str) -> None:
        """Read and write the journal of `run_dir` from now on."""
        if journal_path(run_dir) != self.path or not os.path.exists(self.path):
            RunJournal.__init__(self, run_dir)  # a fresh backend and replay of that file


JOURNAL_IN_RUN = f"{DRIVER_DIR}/{OPTUNA_JOURNAL}"  # the journal's path inside a run folder


def journal_path(run_dir: str) -> str:
    """The study's journal file in a (local) run folder."""
    return os.path.join(run_dir, JOURNAL_IN_RUN)


def study_storage(spec: ExperimentSpec, run_dir: str | None) -> optuna.storages.BaseStorage | None:
    """Where the study lives: the spec's `storage.optuna_url` when set; else the journal in
    a local run folder; else (no run folder, or one on object storage, where a journal file
    and its lock cannot live) in memory, pickled with the searcher."""
    if spec.storage.optuna_url is not None:
        return _storage(spec.storage.optuna_url)
    if run_dir is None:
        return None
    if "://" in run_dir and not run_dir.startswith("file://"):
        log.warning("the Optuna study stays in memory: a journal file cannot live on object storage "
                    "(%s); set storage.optuna_url to a database to watch it with optuna-dashboard",
                    run_dir)
        return None
    return RunJournal(run_dir.removeprefix("file://"))


def _storage(url: str | None) -> optuna.storages.BaseStorage | None:
    if url is None:
        return None
    try:
        return SpecStorage(url)
    except ConfigError:
        raise
    except Exception as exc:  # SQLAlchemy raises many kinds; all mean "cannot use this URL"
        raise ConfigError(f"storage.optuna_url: {mask_url(url)!r} is not allowed; it cannot be "
                          f"opened ({type(exc).__name__})") from None


def default_gate(spec: ExperimentSpec, clock: BudgetClock | None = None) -> BudgetGate:
    """A budget gate from the spec alone (no measurement of this machine): for tests and tools
    that build a searcher outside a run; `search.tuner` builds the run's own."""
    view = Space(spec.space, spec.base_trial())
    flops = sorted(c.flops for c in view.pool(spec.searcher.seed))
    gpus = spec.resources.gpus_per_trial
    cost = CostModel(GPU_PRIOR_FLOPS_PER_S if gpus else CPU_PRIOR_FLOPS_PER_S,
                     reference_flops=flops[len(flops) // 2] if flops else 1e12)
    resources = TrialResources(cpus=spec.resources.cpus_per_trial, gpus=gpus,
                               cluster_gpus=1.0 if gpus else 0.0,
                               batch_size=spec.training.batch_size,
                               gpu_memory_bytes=16 * 2**30)
    return BudgetGate(clock or BudgetClock(spec.run_dir, spec.budget.time), cost,
                      resources=resources, only_finishable=spec.budget.only_finishable)


def build_searcher(spec: ExperimentSpec, *, gate: BudgetGate | None = None,
                   slots: int = 1, run_dir: str | None = None) -> FidelityAwareOptunaSearch:
    """The spec's searcher. `gate` predicts costs and holds the budget (default: from the
    spec); `slots` is how many trials run at once (the initial design's budget is per slot);
    `run_dir`, the run folder, holds the study's journal (`study_storage`; without it, and
    without `storage.optuna_url`, the study is in memory)."""
    view = Space(spec.space, spec.base_trial())
    proposer = None
    if spec.searcher.kind == "cost-ehvi":
        proposer = CostAwareProposer(spec.space, spec.base_trial(),
                                     n_startup=spec.searcher.n_startup_trials,
                                     seed=spec.searcher.seed)
    # A study name of its own: a shared Optuna database must never feed an older run's
    # trials (other data, threat model or epochs) into this run's sampler.
    return FidelityAwareOptunaSearch(
        space=DefineByRunSpace(spec.space, conditional=spec.searcher.kind != "grid"),
        metric=[m for m, _ in OBJECTIVES],
        mode=[d for _, d in OBJECTIVES],
        sampler=_sampler(spec),
        study_name=f"{spec.name}-{uuid.uuid4().hex[:8]}",
        storage=study_storage(spec, run_dir),
        space_view=view,
        gate=gate or default_gate(spec),
        slots=slots,
        proposer=proposer,
        run_dir=run_dir,
        pool_seed=spec.searcher.seed,
    )


def num_trials(spec: ExperimentSpec) -> int:
    """How many trials to start: the budget's cap, or the grid's size for a grid search."""
    if spec.searcher.kind == "grid":
        return min(spec.budget.max_trials, spec.space.grid_size())
    return spec.budget.max_trials
