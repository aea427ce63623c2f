"""Building, running and resuming the Ray Tune search for one experiment spec.

spec -> (searcher, scheduler, resources, budget) -> Tuner -> trial folders + run files.
The run directory is Ray's experiment folder; `search.recorder` adds the driver's
record next to the trial folders.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import tomllib
from ray import tune

from analysis.load import FINISHED_STATES, load_run
from analysis.spend import busy_seconds, training_spans
from search.actor_reuse import count_reset_deaths_once
from search.budget import BudgetClock, BudgetGate, BudgetStopper
from search.cluster import TrialResources, check_resources, start_ray, trial_gpu_memory
from search.cost_model import GPU_PRIOR_FLOPS_PER_S, CostModel, measure_cpu_flops_per_s
from search.proposer import Space
from search.recorder import RunRecorder, new_run_state
from search.schedulers import build_scheduler, milestones
from search.searchers import (
    JOURNAL_IN_RUN,
    ExtendedSearch,
    FidelityAwareOptunaSearch,
    base_searcher,
    build_searcher,
    journal_path,
    num_trials,
    space_exhausted,
)
from search.spec import ExperimentSpec, extended_budget, has_password, resolve_optuna_url
from trainables import metrics as M
from trainables.config import RAY_TRIAL_KEY, ConfigError, not_a_run, trial_from_ray
from trainables.formats import mask_secrets
from trainables.run_files import (
    DRIVER_DIR,
    EVENTS_FILE,
    PARAMS_FILE,
    RUN_FILE,
    SPEC_JSON,
    SPEC_TOML,
    TUNER_FILE,
    RunFiles,
    check_storage,
    finite_number,
    join_uri,
    one_line,
    parse_json_lines,
    read_json_object,
)
from trainables.tune_trial import CHECKPOINT_INTERVAL, REPORT_EPOCHS, train_wrn

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Outcome:
    """How a search ended, for the CLI's closing lines."""

    run_dir: str
    state: str
    trials: int
    errored: int
    elapsed_s: float


def trial_dirname(trial: Any) -> str:
    """Short, readable trial folder names (Ray's default embeds every parameter)."""
    model = trial_from_ray(trial.config).model
    return f"trial_{trial.trial_id}_wrn-{model.depth}-{model.width}"


STORAGE_FIELD = "--storage / storage.path"  # where the parent of run folders is set


def absolute_storage(path: str) -> str:
    """Ray needs an absolute path or a URI for its storage."""
    return path if "://" in path else str(Path(path).expanduser().resolve())


def _resources(spec: ExperimentSpec, nodes: list[dict[str, float]]) -> TrialResources:
    gpus = spec.resources.gpus_per_trial
    cluster_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    return TrialResources(
        cpus=spec.resources.cpus_per_trial, gpus=gpus, cluster_gpus=cluster_gpus,
        batch_size=spec.training.batch_size,
        gpu_memory_bytes=trial_gpu_memory() if gpus == "auto" and cluster_gpus > 0 else 0,
    )


def _trainable(spec: ExperimentSpec, nodes: list[dict[str, float]],
               function: Callable[[dict[str, Any]], None] = train_wrn) -> Any:
    """The trial function wrapped with its resource request (a custom one may stand in)."""
    return tune.with_resources(function, _resources(spec, nodes))


def slots(spec: ExperimentSpec, nodes: list[dict[str, float]]) -> int:
    """How many trials can run at once: the spec's cap, else what the nodes' CPUs hold."""
    per_node = [int(n.get("CPU", 0.0) // spec.resources.cpus_per_trial) for n in nodes]
    fit = max(1, sum(per_node))
    return min(fit, spec.budget.max_concurrent) if spec.budget.max_concurrent else fit


FIRST_RUNG_SHARE = 0.05  # "auto": the priciest trial meets its first rung within 5% of the budget
_SUB_EPOCH = (1.0, 0.5, 0.25, 0.125)


def first_rung(spec: ExperimentSpec, gate: BudgetGate, view: Space) -> float:
    """The scheduler's grace period: the spec's, or for "auto" the largest of 1, 1/2, 1/4,
    1/8 epochs at which the space's priciest configuration that could start (predicted to
    finish in the budget) reaches its first rung within FIRST_RUNG_SHARE of the budget (1/8
    at the least). Configurations the gate will never start do not shorten everyone's rungs."""
    if spec.scheduler.grace_period != "auto":
        return float(spec.scheduler.grace_period)
    pool = [c.config for c in view.pool(spec.searcher.seed)]
    startable = [c for c in pool if gate.can_finish(c)] or pool
    epoch_s = max(gate.prediction(c).epoch_s for c in startable)
    share = FIRST_RUNG_SHARE * spec.budget.time
    return next((g for g in _SUB_EPOCH if g * epoch_s <= share), _SUB_EPOCH[-1])


@dataclass(frozen=True)
class Plan:
    """What a search was set up with beyond its spec: recorded in run.json."""

    grace_period: float
    rungs: tuple[float, ...]  # the scheduler's milestones, in epochs
    sub_epoch_rungs: tuple[float, ...]  # the fractional ones: where trials also report
    prior_flops_per_s: float  # the cost model's prior throughput per unit of device
    slots: int

    def to_json(self) -> dict[str, Any]:
        return {"grace_period": self.grace_period, "rungs": list(self.rungs),
                "sub_epoch_rungs": list(self.sub_epoch_rungs),
                "cost_prior_flops_per_s": self.prior_flops_per_s, "slots": self.slots}


def _prior_throughput(spec: ExperimentSpec, resources: TrialResources) -> float:
    """FLOP/s per unit of device before any trial reports: measured here for CPU trials."""
    if spec.resources.gpus_per_trial and resources.cluster_gpus > 0:
        return GPU_PRIOR_FLOPS_PER_S
    cpus = max(1, int(spec.resources.cpus_per_trial))
    return measure_cpu_flops_per_s(cpus) / cpus


def plan_search(spec: ExperimentSpec, nodes: list[dict[str, float]],
                clock: BudgetClock) -> tuple[Plan, BudgetGate]:
    """The budget gate (cost model, clock) and the rung ladder of a new search."""
    resources = _resources(spec, nodes)
    view = Space(spec.space, spec.base_trial())
    flops = sorted(c.flops for c in view.pool(spec.searcher.seed))
    prior = _prior_throughput(spec, resources)
    cost = CostModel(prior, reference_flops=flops[len(flops) // 2])
    gate = BudgetGate(clock, cost, resources=resources,
                      only_finishable=spec.budget.only_finishable)
    grace = first_rung(spec, gate, view)
    rungs = (tuple(milestones(grace, spec.training.epochs, spec.scheduler.reduction_factor))
             if spec.scheduler.kind != "none" else ())
    sub_epoch = tuple(m for m in rungs if not float(m).is_integer())
    gate.sub_epoch_rungs = len(sub_epoch)
    return Plan(grace, rungs, sub_epoch, prior, slots(spec, nodes)), gate


def build_tuner(spec: ExperimentSpec, nodes: list[dict[str, float]],
                printer: Callable[[str], None] | None = None,
                trainable: Callable[[dict[str, Any]], None] = train_wrn,
                plan: tuple[Plan, BudgetGate] | None = None,
                reuse_actors: bool = True) -> tune.Tuner:
    """The whole search as one Tuner; everything it holds pickles for `resume`.

    `reuse_actors=False` is Ray's own default (a new worker process per trial), kept as an
    option for the overhead benchmarks that measure what reuse saves.
    """
    storage = absolute_storage(spec.storage.path)
    run_dir = join_uri(storage, spec.name)
    clock = BudgetClock(run_dir, spec.budget.time)
    setup, gate = plan if plan is not None else plan_search(spec, nodes, clock)
    gate.clock = clock  # one clock for the recorder, the searcher and the scheduler
    scheduler = build_scheduler(spec.scheduler.kind, max_t=spec.training.epochs,
                                grace_period=setup.grace_period,
                                reduction_factor=spec.scheduler.reduction_factor,
                                noise_z=spec.scheduler.noise_z, clock=clock,
                                only_finishable=spec.budget.only_finishable)
    scheduler.attach(run_dir)
    tune_config = tune.TuneConfig(
        search_alg=build_searcher(spec, gate=gate, slots=setup.slots, run_dir=run_dir),
        scheduler=scheduler,
        num_samples=num_trials(spec),
        max_concurrent_trials=spec.budget.max_concurrent,
        # No time_budget_s: Ray restores its TimeoutStopper with what it had left, so a search
        # given more budget would stop at once; BudgetStopper reads the run's clock instead.
        # One worker process per slot, not per trial: a new process re-imports torch and Ray
        # (~5 s a trial). Measured in benchmarks/ray_overhead.py: 12% -> 0.3% overhead on
        # one-minute trials, worker utilisation 58% -> 91% (docs/benchmarks.md).
        reuse_actors=reuse_actors,
        trial_dirname_creator=trial_dirname,
    )
    run_config = tune.RunConfig(
        name=spec.name,
        storage_path=storage,
        failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        # The latest checkpoint holds both the last state and the best weights.
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[RunRecorder(run_dir, printer, clock=clock), *_trackers(spec, run_dir)],
        stop=BudgetStopper(clock),
        verbose=0,
    )
    return tune.Tuner(_trainable(spec, nodes, trainable),
                      param_space={RAY_TRIAL_KEY: spec.base_trial().to_dict(),
                                   CHECKPOINT_INTERVAL: spec.storage.checkpoint_interval,
                                   REPORT_EPOCHS: list(setup.sub_epoch_rungs)},
                      tune_config=tune_config, run_config=run_config)


def _trackers(spec: ExperimentSpec, run_dir: str) -> list[Any]:
    """The `[logging]` trackers' callbacks; their packages are imported only when asked for."""
    if not spec.logging.trackers:
        return []
    from search.trackers import build_callbacks

    return build_callbacks(spec.logging, run_dir, spec.name)


def _check_trackers(spec: ExperimentSpec) -> None:
    """A tracker whose package is missing (or that cannot log in) is one line before Ray."""
    if spec.logging.trackers:
        from search.trackers import check_trackers

        check_trackers(spec.logging)


def _callbacks(tuner: tune.Tuner) -> list[Any]:
    """The run's callbacks as the Tuner holds them (restored from tuner.pkl on resume)."""
    return tuner._local_tuner.get_run_config().callbacks or []  # noqa: SLF001


def _recorder(tuner: tune.Tuner) -> RunRecorder:
    return next(c for c in _callbacks(tuner) if isinstance(c, RunRecorder))


def _tune_config(tuner: tune.Tuner) -> tune.TuneConfig:
    return tuner._local_tuner._tune_config  # noqa: SLF001


def _searcher(tuner: tune.Tuner) -> FidelityAwareOptunaSearch | None:
    searcher = base_searcher(_tune_config(tuner).search_alg)
    return searcher if isinstance(searcher, FidelityAwareOptunaSearch) else None


def _attach(tuner: tune.Tuner, run_dir: str, printer: Callable[[str], None] | None,
            budget_s: float | None = None) -> None:
    """Point the recorder, the budget clock it shares with the searcher and the scheduler,
    the scheduler's decision record and the study's journal at the run folder where it is
    now (a resumed one may have moved); `budget_s`: the run's budget now (`resume --budget`
    may have raised it)."""
    recorder = _recorder(tuner)
    recorder.attach(run_dir, printer)
    if budget_s is not None:
        recorder.clock.budget_s = float(budget_s)
    for callback in _callbacks(tuner):
        if callback is not recorder and hasattr(callback, "attach"):
            callback.attach(run_dir)  # a tracker's store in the run folder follows it
    scheduler = _tune_config(tuner).scheduler
    if hasattr(scheduler, "attach"):
        scheduler.attach(run_dir, recorder.clock)
    searcher = _searcher(tuner)
    if searcher is not None:
        searcher.attach_clock(recorder.clock)
        searcher.attach_run(run_dir)


def trial_over(metrics: dict[str, Any], errored: bool, ended: set[str]) -> bool:
    """Whether a trial is terminal: it errored, trained all its epochs, or Ray ended it (an
    early stop; `ended` from the driver's events). A trial cut short by Ctrl-C is not."""
    if errored or str(metrics.get("trial_id")) in ended:
        return True
    done, total = finite_number(metrics.get(M.EPOCHS_DONE)), finite_number(metrics.get(M.MAX_EPOCHS))
    return done is not None and total is not None and done >= total


def budget_spent(elapsed_s: float, budget_s: float) -> bool:
    """Whether a search has used its budget: within 1% of it (Ray stops a little short)."""
    return elapsed_s >= budget_s * 0.99


def end_state(*, budget_spent: bool, searcher_ended: str | None, all_over: bool,
              search_done: bool) -> str:
    """How a search ended: "finished" only when every trial is terminal and the searcher or
    the trial cap is done; "budget_exhausted" when the budget is spent, or the searcher found
    nothing that fits in what is left and nothing is still training; else "interrupted"
    (Ctrl-C, or Ray stopped early: `resume` continues it)."""
    if budget_spent or (all_over and searcher_ended == "budget"):
        return "budget_exhausted"
    if all_over and search_done:
        return "finished"
    return "interrupted"


def _finish(tuner: tune.Tuner, spec: ExperimentSpec, run_dir: str) -> Outcome:
    """Run to the end (budget, trial cap, or Ctrl-C) and record how it ended."""
    recorder = _recorder(tuner)
    count_reset_deaths_once()  # a worker lost between two trials is retried (reuse_actors)
    on_ctrl_c = signal.getsignal(signal.SIGINT)
    try:
        grid = tuner.fit()
    except BaseException:
        recorder.update_run_state(state="failed")
        raise
    finally:
        # Tune leaves its own SIGINT handler behind, which would swallow a Ctrl-C during
        # the report that follows: give Ctrl-C back to the caller.
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, on_ctrl_c)
    trials = len(grid)
    elapsed = recorder.elapsed_s
    searcher = _searcher(tuner)
    ended = searcher.ended if searcher is not None else None
    over = recorder.ended_trials()
    state = end_state(
        budget_spent=budget_spent(elapsed, spec.budget.time), searcher_ended=ended,
        all_over=all(trial_over(r.metrics or {}, r.error is not None, over) for r in grid),
        search_done=(trials >= num_trials(spec) or ended == "space"
                     or space_exhausted(spec.space, [r.config for r in grid if r.config])))
    recorder.update_run_state(state=state)
    return Outcome(run_dir, state, trials, grid.num_errors, elapsed)


def run_search(spec: ExperimentSpec, *, address: str | None = None,
               spec_text: str | None = None,
               printer: Callable[[str], None] | None = None,
               trainable: Callable[[dict[str, Any]], None] = train_wrn,
               reuse_actors: bool = True, dashboard: bool = False,
               announce: Callable[[str], None] | None = None) -> Outcome:
    """Start a new search; refuses to overwrite an existing run directory.

    `dashboard`: the embedded Ray also serves its dashboard on 127.0.0.1, whose URL is given
    to `announce` once."""
    storage = absolute_storage(spec.storage.path)
    check_storage(storage, STORAGE_FIELD)  # before Ray: pyarrow and Ray fail deep inside
    run_dir = join_uri(storage, spec.name)
    files = RunFiles(run_dir)
    if RunFiles(run_dir, folder="").exists(TUNER_FILE) or files.exists(RUN_FILE):
        raise ConfigError(f"name: {spec.name!r} is not allowed; {run_dir} already holds a run "
                          f"(continue it with `wrn-search resume {run_dir}`, or pick --name)")
    _check_optuna_url(spec, resuming=False)
    _check_trackers(spec)
    nodes = start_ray(address, dashboard=dashboard, announce=announce)
    check_resources(spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, nodes)
    plan = plan_search(spec, nodes, BudgetClock(run_dir, spec.budget.time))
    tuner = build_tuner(spec, nodes, printer, trainable, plan,  # may fail: before any file
                        reuse_actors=reuse_actors)
    files.write_json(SPEC_JSON, spec.to_json())  # a database password masked
    if spec_text is not None:
        files.write_text(SPEC_TOML, mask_secrets(spec_text))
    searcher = _searcher(tuner)
    study = {"optuna": searcher.study_record()} if searcher is not None else {}
    files.write_json(RUN_FILE, {**new_run_state(spec.name, spec.budget.time),
                                "plan": plan[0].to_json(), **study})
    _attach(tuner, run_dir, printer)
    return _finish(tuner, spec, run_dir)


def _check_optuna_url(spec: ExperimentSpec, resuming: bool) -> None:
    """Resolve the Optuna database URL before Ray starts: an unset "env:NAME" is one line
    here, not an error inside Ray's restore."""
    url = spec.storage.optuna_url
    if url is None:
        return
    resolve_optuna_url(url)
    if not resuming and has_password(url):
        log.warning("storage.optuna_url holds a password: the run folder keeps it masked, so "
                    "`resume` cannot reopen the database; use optuna_url = \"env:NAME\" to "
                    "keep the URL in an environment variable")


def _check_journal(run_dir: str, record: dict[str, Any]) -> None:
    """A study kept in the run folder's journal must still be there: the searcher's memory of
    what was tried is in it (its pickled state holds only the file's name)."""
    study = record.get("optuna")
    if not isinstance(study, dict) or study.get("storage") != JOURNAL_IN_RUN:
        return
    where = journal_path(run_dir.removeprefix("file://"))
    if not os.path.isfile(where):
        raise ConfigError(f"RUN_DIR: {run_dir!r} is not allowed; its Optuna study {where} is "
                          "missing (the searcher continues from it: put it back to resume)")


def load_run_spec(run_dir: str) -> ExperimentSpec:
    files = RunFiles(run_dir)
    if not files.exists(SPEC_JSON) or not RunFiles(run_dir, folder="").exists(TUNER_FILE):
        raise not_a_run(run_dir, RunFiles(run_dir, folder="").exists(""), "it holds no search "
                        f"started by `wrn-search run` (no {SPEC_JSON} and {TUNER_FILE})")
    try:
        return ExperimentSpec.from_dict(json.loads(files.read_text(SPEC_JSON)))
    except (json.JSONDecodeError, UnicodeDecodeError, ConfigError) as exc:
        damage = one_line(exc)
    spec = _spec_from_toml(run_dir, files)
    if spec is None:
        raise ConfigError(f"RUN_DIR: {run_dir!r} is not allowed; its {DRIVER_DIR}/{SPEC_JSON} "
                          f"is damaged ({damage}) and no readable {SPEC_TOML} can rebuild it")
    log.warning("%s/%s/%s is damaged (%s); rebuilt from %s", run_dir, DRIVER_DIR, SPEC_JSON,
                damage, SPEC_TOML)
    files.write_json(SPEC_JSON, spec.to_json())
    return spec


def _spec_from_toml(run_dir: str, files: RunFiles) -> ExperimentSpec | None:
    """The spec as the user wrote it (spec.toml), with what `run`'s flags may have changed
    taken from the run itself: the name and storage from the folder, the budget from
    run.json. None when spec.toml is missing or damaged too."""
    try:
        raw = tomllib.loads(files.read_text(SPEC_TOML))
        storage, _, name = run_dir.rstrip("/").rpartition("/")
        raw["name"] = name
        raw.setdefault("storage", {})["path"] = storage
        record = files.read_json(RUN_FILE)
        budget = finite_number(record.get("budget_s"))
        if budget is not None:
            raw.setdefault("budget", {})["time"] = budget
        if isinstance(record.get("max_trials"), int):  # `resume --max-trials` raised it
            raw.setdefault("budget", {})["max_trials"] = record["max_trials"]
        return ExperimentSpec.from_dict(raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ConfigError, AttributeError,
            TypeError):
        return None


def run_record(run_dir: str, spec: ExperimentSpec) -> dict[str, Any]:
    """The run's run.json as a whole record: as it stands, or, when it is damaged, rebuilt
    (`rebuild_run_record`) and said so; a damaged one on shared storage is refused."""
    record, problem = RunFiles(run_dir).run_record()
    if problem is None:
        return record
    where = f"{run_dir.rstrip('/')}/{DRIVER_DIR}/{RUN_FILE}"
    if "://" in run_dir:
        raise ConfigError(f"RUN_DIR: {where} is not allowed; {problem} (copy the run folder "
                          "down and resume it there: a local folder's run.json is rebuilt)")
    record = rebuild_run_record(Path(run_dir), spec, record)
    log.warning("%s: %s; rebuilt %s from spec.json and the trials' records", where, problem,
                ", ".join(record["rebuilt"]))
    return record


def rebuild_run_record(run_dir: Path, spec: ExperimentSpec, record: dict[str, Any]) -> dict[str, Any]:
    """`record` (run.json's valid fields) with the missing ones rebuilt, listed in "rebuilt":
    name and budget from spec.json; elapsed_s as the seconds some trial was training (a lower
    bound: driver start-up and idle time are not in the results); created from the first
    trial's start; the state from the trials, as `end_state` decides it at the end of a
    search (so a finished search stays finished)."""
    run = load_run(run_dir)
    spans = training_spans(run)
    elapsed = round(busy_seconds(spans), 1)
    starts = run.trials["start_time"].dropna().tolist() + [a for a, _ in spans[:1]]
    first = min(starts) if starts else (run_dir / DRIVER_DIR / SPEC_JSON).stat().st_mtime
    configs = [read_json_object(run_dir / d / PARAMS_FILE) for d in run.trials["trial_dir"]]
    over = run.trials["status"].isin(("complete", "stopped", "error")).all() and not run.unreadable
    state = end_state(budget_spent=budget_spent(elapsed, spec.budget.time), searcher_ended=None,
                      all_over=bool(over),
                      search_done=(len(run.trials) + len(run.unreadable) >= num_trials(spec)
                                   or space_exhausted(spec.space, configs)))
    facts = {"name": spec.name, "budget_s": spec.budget.time, "elapsed_s": elapsed,
             "created": datetime.fromtimestamp(first, timezone.utc).isoformat(timespec="seconds"),
             "state": state, "resumes": 0}
    rebuilt = sorted(k for k in facts if k not in record)
    return {**facts, **record, "rebuilt": rebuilt}


ROOM_FLAGS = "--budget +1h or --max-trials +10"  # how `resume` gives an ended search room


def extend_run(run_dir: str, spec: ExperimentSpec, state: dict[str, Any], *, budget: str | None,
               max_trials: str | None) -> tuple[ExperimentSpec, dict[str, Any]]:
    """The spec with `resume --budget/--max-trials` applied, and the extension's record for
    run.json. An ended search must get room from them: a finished one whose trial cap or space
    is used up, or a budget-exhausted one given no budget, is refused in one line."""
    started, configs = _started(run_dir)
    spent = finite_number(state.get("elapsed_s")) or 0.0
    new = dataclasses.replace(spec, budget=extended_budget(
        spec.budget, time=budget, max_trials=max_trials, spent_s=spent, started=started))
    if state["state"] in FINISHED_STATES:
        used_up = []
        if started >= num_trials(new):
            used_up.append(f"its {started} trials reached the trial cap (raise it with --max-trials)")
        if budget_spent(spent, new.budget.time) or (state["state"] == "budget_exhausted" and budget is None):
            used_up.append("its budget is spent (raise it with --budget)")
        if space_exhausted(spec.space, configs):
            used_up.append("every configuration of its space was tried (start a new search with run)")
        if used_up:
            raise ConfigError(f"RUN_DIR: {run_dir!r} is not allowed; that search already "
                              f"{state['state'].replace('_', ' ')} and " + "; ".join(used_up))
    record = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "budget": budget, "max_trials": max_trials,
              "budget_s_before": spec.budget.time, "budget_s": new.budget.time,
              "max_trials_before": spec.budget.max_trials, "max_trials_after": new.budget.max_trials,
              "state_before": state["state"]}
    return new, record


def _started(run_dir: str) -> tuple[int, list[dict[str, Any]]]:
    """How many trials a run started, and their configurations: from the trial folders, or on
    object storage (which `analysis` does not read) from the driver's start events alone."""
    if "://" not in run_dir:
        run = load_run(Path(run_dir))
        configs = [read_json_object(Path(run_dir) / d / PARAMS_FILE) for d in run.trials["trial_dir"]]
        return len(run.trials) + len(run.unreadable), configs
    files = RunFiles(run_dir)
    text = files.read_text(EVENTS_FILE) if files.exists(EVENTS_FILE) else ""
    events, _ = parse_json_lines(text)
    return len({e.get("trial_id") for e in events if e.get("event") == "start"}), []


def _extend_tuner(tuner: tune.Tuner, run_dir: str, spec: ExperimentSpec) -> None:
    """Let a restored Tuner run more trials (`resume --budget/--max-trials`).

    Ray ignores the restored TuneConfig's num_samples: the trial cap and a "finished" flag come
    back from the run's saved generator state, so the Tuner gets a generator that takes the new
    cap, forgets it had finished and hears the end of the trials the budget's end stopped
    (`ExtendedSearch`), and a searcher that may propose again. The budget itself is the
    clock's (run.json, `BudgetStopper`).
    """
    config = _tune_config(tuner)
    config.num_samples = num_trials(spec)  # what Ray would start with; the generator holds it
    searcher = base_searcher(config.search_alg)
    if isinstance(searcher, FidelityAwareOptunaSearch):
        searcher.reopen()
    ended = {t.trial_id: dict(t.last_result or {}) for t in tune.ExperimentAnalysis(run_dir).trials
             if t.status in ("TERMINATED", "ERROR")}
    _recorder(tuner).record_stopped(ended)
    config.search_alg = ExtendedSearch(searcher, total_samples=num_trials(spec),
                                       max_concurrent=config.max_concurrent_trials, ended=ended)
    config.max_concurrent_trials = None  # held by ExtendedSearch's ConcurrencyLimiter


_SAVED_CHECKPOINT = re.compile(rb"(trial_[A-Za-z0-9_.\-]+)/(checkpoint_\d{6})")


def mend_missing_checkpoints(run_dir: str) -> list[str]:
    """Give back to Ray the checkpoint folders its saved state names but that are gone.

    Ray keeps one checkpoint per trial (num_to_keep=1) and deletes the older one when a new
    one is registered; a driver killed after that but before Ray saved its experiment state
    leaves a state that names the deleted folder, and Ray's restore then fails the trial on
    every retry ("does not exist on storage anymore"). The trial's newer checkpoint is there:
    copied under the old name, the trial continues from it (a torn one is trained again from
    epoch 0 by the trainable). The names are read from the newest experiment_state-*.json,
    whose checkpoint records are pickled: the trial and checkpoint folder names are found in
    their bytes, nothing is unpickled. Local run folders only. Returns what was mended.
    """
    if "://" in run_dir:
        return []
    root = Path(run_dir)
    states = sorted(root.glob("experiment_state-*.json"))
    try:
        trial_data = json.loads(states[-1].read_text("utf-8"))["trial_data"] if states else []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # Ray's restore says what is wrong with its own file
    mended = []
    for entry in trial_data:
        text = entry[1] if isinstance(entry, list) and len(entry) == 2 else ""
        try:
            record = json.loads(text)["checkpoint_manager"]["value"]
            names = set(_SAVED_CHECKPOINT.findall(bytes.fromhex(record)))
        except (ValueError, KeyError, TypeError):
            continue
        for trial, checkpoint in names:
            trial_dir = root / trial.decode()
            missing = trial_dir / checkpoint.decode()
            newer = sorted(trial_dir.glob("checkpoint_*"))
            if missing.exists() or not newer:
                continue
            shutil.copytree(newer[-1], missing)
            mended.append(f"{trial_dir.name}/{missing.name}")
            log.warning("%s: Ray's saved state names %s, which is gone (the driver was killed as "
                        "Ray replaced it); the trial continues from %s", trial_dir.name,
                        missing.name, newer[-1].name)
    return mended


def resume_search(run_dir: str, *, address: str | None = None,
                  printer: Callable[[str], None] | None = None,
                  trainable: Callable[[dict[str, Any]], None] = train_wrn,
                  budget: str | None = None, max_trials: str | None = None,
                  dashboard: bool = False,
                  announce: Callable[[str], None] | None = None) -> Outcome:
    """Continue an interrupted or crashed search with what is left of its budget; with
    `budget` / `max_trials` ("+2h" adds, "5h" is the new total), also a finished or
    budget-exhausted one, with more room.

    Finished trials stay as they are; trials that were running continue from their last
    checkpoint; the searcher and scheduler come back with their state.
    """
    run_dir = absolute_storage(run_dir)
    check_storage(run_dir, "RUN_DIR", create=False)  # a resumed run writes there too
    spec = load_run_spec(run_dir)
    files = RunFiles(run_dir)
    state = run_record(run_dir, spec)
    extension = None
    if budget is not None or max_trials is not None:
        spec, extension = extend_run(run_dir, spec, state, budget=budget, max_trials=max_trials)
    elif state["state"] in FINISHED_STATES:
        raise ConfigError(f"RUN_DIR: {run_dir!r} is not allowed; that search already "
                          f"{state['state'].replace('_', ' ')} (give it more with {ROOM_FLAGS}, "
                          "or start a new one with run)")
    _check_optuna_url(spec, resuming=True)
    _check_journal(run_dir, state)
    _check_trackers(spec)
    nodes = start_ray(address, dashboard=dashboard, announce=announce)
    check_resources(spec.resources.cpus_per_trial, spec.resources.gpus_per_trial, nodes)
    record = {**state, "state": "running", "resumes": state.get("resumes", 0) + 1}
    if extension is not None:  # the new totals, for this session and any later plain resume
        files.write_json(SPEC_JSON, spec.to_json())
        record.update(budget_s=spec.budget.time, max_trials=spec.budget.max_trials,
                      extensions=[*state.get("extensions", []), extension])
    files.write_json(RUN_FILE, record)
    mend_missing_checkpoints(run_dir)
    tuner = tune.Tuner.restore(run_dir, trainable=_trainable(spec, nodes, trainable),
                               resume_unfinished=True, resume_errored=False)
    _attach(tuner, run_dir, printer, spec.budget.time)  # the folder may have moved since
    if extension is not None:
        _extend_tuner(tuner, run_dir, spec)
    return _finish(tuner, spec, run_dir)


def spec_summary(spec: ExperimentSpec) -> dict[str, Any]:
    """What `run --dry-run` prints: the validated spec, the space and its parameter range, and
    what its cheapest and priciest configurations would cost at this machine's speed."""
    low, high = spec.space.parameter_range(spec.data.num_classes)
    on_gpus = bool(spec.resources.gpus_per_trial)
    out = spec.to_json()
    out["parameter_range"] = {"min": low, "max": high}
    out["trials"] = num_trials(spec)
    out["cpus"] = os.cpu_count()
    # A GPU spec is planned for the GPU nodes it will run on, not for this machine's CPUs.
    nodes = [{"CPU": float(os.cpu_count() or 1), **({"GPU": 1.0} if on_gpus else {})}]
    plan, gate = plan_search(spec, nodes, BudgetClock(spec.run_dir, spec.budget.time))
    pool = Space(spec.space, spec.base_trial()).pool(spec.searcher.seed)
    seconds = sorted(((gate.full_seconds(c.config), c) for c in pool), key=lambda sc: sc[0])
    out["predicted_full_training_s"] = {
        "basis": (f"a prior of {GPU_PRIOR_FLOPS_PER_S / 1e12:g} TFLOP/s per GPU" if on_gpus
                  else "this machine's CPU"),
        "cheapest": {"seconds": round(seconds[0][0], 1), **seconds[0][1].params},
        "priciest": {"seconds": round(seconds[-1][0], 1), **seconds[-1][1].params},
    }
    fits = sum(gate.can_finish(c.config) for c in pool) / len(pool)
    out["predicted_full_training_s"]["share_that_fits_the_budget"] = round(fits, 3)
    if fits == 0:
        out["warning"] = (f"no configuration is predicted to finish in {spec.budget.time:g} s; "
                          "the search would start nothing (raise budget.time, or set "
                          "budget.only_finishable = false)")
    out["plan"] = plan.to_json()
    return out
