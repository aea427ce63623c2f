"""The experiment spec: one TOML file read into one validated, typed object.

Every bad field fails here, before Ray starts, with one line naming the field, the value
and what is allowed (`ConfigError`). The trial-level sections (`data`, `threat_model`,
`training`) are the very dataclasses the trainable uses, so there is one definition of
each setting; this module adds the search-level ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from models import count_parameters, validate_architecture, wrn_name
from search.cluster import TRAIN_BYTES_PER_PARAMETER
from trainables import metrics as M
from trainables import run_files
from trainables.config import (
    METHODS,
    SEARCHABLE,
    ConfigError,
    DataConfig,
    ModelConfig,
    ThreatModel,
    TrainingConfig,
    TrialConfig,
    build_section,
    check_bool,
    check_float,
    check_int,
    fail,
    parse_epsilon,
)
from trainables.formats import MASK, mask_secrets, mask_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SEARCHERS = ("cost-ehvi", "tpe", "nsga2", "random", "grid")
# The largest model a space may hold: 16 GB to train before activations, a whole large GPU
# once they are added; published CIFAR WRNs stay under half of it (WRN-106-16: 0.42 B).
MAX_PARAMETERS = 1_000_000_000
_RUN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}")  # ASCII only: \w takes any script
SCHEDULERS = ("mo-asha", "asha", "none")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(d|h|m|s)")
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(value: Any, field_name: str = "budget.time") -> float:
    """'2h', '90s', '1h30m', '10m' or a number of seconds -> seconds (> 0)."""
    allowed = "a duration like '90s', '10m', '2h', '1h30m' or a number of seconds"
    if isinstance(value, bool):
        raise fail(field_name, value, allowed)
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise fail(field_name, value, allowed)
        seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    else:
        raise fail(field_name, value, allowed)
    if not (math.isfinite(seconds) and seconds > 0):
        raise fail(field_name, value, allowed)
    return seconds


# --------------------------------------------------------------------- the space
_INT_PARAMS = (M.DEPTH, M.WIDTH, M.TRAIN_STEPS)
_EPS_PARAMS = (M.TRAIN_EPS,)


@dataclass(frozen=True)
class Param:
    """One searched hyperparameter: a fixed value, a list of choices, or a range."""

    name: str
    kind: str  # "fixed" | "choice" | "range"
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False
    step: int | None = None

    @property
    def is_int(self) -> bool:
        return self.name in _INT_PARAMS

    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (define-by-run) for this parameter's value."""
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.values))
        if self.is_int:
            return trial.suggest_int(self.name, int(self.low), int(self.high),
                                     step=self.step or 1, log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, log=self.log)

    def grid_values(self) -> list[Any]:
        if self.kind in ("fixed", "choice"):
            return list(self.values)
        if self.is_int and not self.log:
            return list(range(int(self.low), int(self.high) + 1, self.step or 1))
        raise fail(f"space.{self.name}", {"low": self.low, "high": self.high},
                   "grid search needs a list of values (or an integer range), not a float range")

    def extremes(self) -> tuple[Any, Any]:
        if self.kind == "range":
            return (int(self.low), int(self.high)) if self.is_int else (self.low, self.high)
        return min(self.values), max(self.values)

    def to_json(self) -> Any:
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return list(self.values)
        low, high = self.extremes()
        out: dict[str, Any] = {"low": low, "high": high}
        if self.log:
            out["log"] = True
        if self.step:
            out["step"] = self.step
        return out


def _scalar(name: str, value: Any) -> Any:
    field_name = f"space.{name}"
    if name == M.METHOD:
        if value not in METHODS:
            raise fail(field_name, value, "allowed: " + ", ".join(METHODS))
        return value
    if name in _EPS_PARAMS:
        return parse_epsilon(value, field_name)
    if name in _INT_PARAMS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise fail(field_name, value, "must be an integer >= 1")
        if name == M.DEPTH:
            try:
                validate_architecture(value, 1)
            except ValueError as exc:
                raise fail(field_name, value, str(exc)) from None
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(field_name, value, "must be a number")
    if value < 0 or (name == M.PEAK_LR and value == 0):
        raise fail(field_name, value, "must be positive")
    return float(value)


def parse_param(name: str, raw: Any) -> Param:
    """A TOML value -> Param: `16`, `[10, 16, 22]`, or `{ low = 1, high = 8, log = false }`."""
    field_name = f"space.{name}"
    if name not in SEARCHABLE:
        raise fail(field_name, raw, "unknown hyperparameter; allowed: " + ", ".join(SEARCHABLE))
    if isinstance(raw, list):
        if not raw:
            raise fail(field_name, raw, "a list of choices must not be empty")
        values = tuple(_scalar(name, v) for v in raw)
        if len(set(values)) != len(values):
            raise fail(field_name, raw, "choices must be distinct")
        return Param(name, "choice", values)
    if isinstance(raw, Mapping):
        if name in (M.DEPTH, M.METHOD):
            raise fail(field_name, dict(raw), "give a list of choices (depth must be 6n+4)")
        unknown = set(raw) - {"low", "high", "log", "step"}
        if unknown or "low" not in raw or "high" not in raw:
            raise fail(field_name, dict(raw), "a range is { low = ..., high = ..., log = false }")
        low, high = _scalar(name, raw["low"]), _scalar(name, raw["high"])
        if low > high:
            raise fail(field_name, dict(raw), "low must be <= high")
        log = raw.get("log", False)
        if not isinstance(log, bool) or (log and low <= 0):
            raise fail(f"{field_name}.log", log, "must be true or false, and low > 0 when true")
        step = raw.get("step")
        if step is not None and (name not in _INT_PARAMS or isinstance(step, bool)
                                 or not isinstance(step, int) or step < 1 or log):
            raise fail(f"{field_name}.step", step,
                       "an integer >= 1, for integer ranges without log only")
        if low == high:
            return Param(name, "fixed", (low,))
        return Param(name, "range", (), float(low), float(high), log, step)
    return Param(name, "fixed", (_scalar(name, raw),))


DEFAULT_SPACE: dict[str, Any] = {
    M.DEPTH: [10, 16, 22, 28],
    M.WIDTH: {"low": 1, "high": 8},
    M.TRAIN_EPS: {"low": "4/255", "high": "12/255"},
    M.TRAIN_STEPS: {"low": 1, "high": 10},
}


@dataclass(frozen=True)
class SpaceConfig:
    """The searched hyperparameters. Anything not listed keeps its `training` value."""

    params: tuple[Param, ...]

    @classmethod
    def from_raw(cls, raw: Any) -> SpaceConfig:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            raise fail("space", raw, "must be a table of hyperparameters")
        merged = {**DEFAULT_SPACE, **raw}
        # method first: whether train_steps is searched depends on it (define-by-run)
        order = sorted(merged, key=lambda k: k != M.METHOD)
        return cls(tuple(parse_param(k, merged[k]) for k in order))

    def get(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    def parameter_range(self, num_classes: int) -> tuple[int, int]:
        """Smallest and largest parameter count in the space (counts grow with d and k)."""
        depth = self.get(M.DEPTH).extremes()  # type: ignore[union-attr]
        width = self.get(M.WIDTH).extremes()  # type: ignore[union-attr]
        return (count_parameters(depth[0], width[0], num_classes),
                count_parameters(depth[1], width[1], num_classes))

    def grid_size(self) -> int:
        return math.prod(len(p.grid_values()) for p in self.params)

    def to_json(self) -> dict[str, Any]:
        return {p.name: p.to_json() for p in self.params}


# -------------------------------------------------------------- search sections

@dataclass(frozen=True)
class BudgetConfig:
    time: float | str = "1h"  # wall-clock budget for the whole search
    max_trials: int = 1000  # upper bound on the number of trials started
    max_concurrent: int | None = None  # None: as many as the resources allow
    # Start a trial only if its predicted full training fits in the budget left, and stop one
    # whose own rate says it no longer can: fronts use full-fidelity trials only.
    only_finishable: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "time", parse_duration(self.time, "budget.time"))
        check_int("budget.max_trials", self.max_trials, 1)
        if self.max_concurrent is not None:
            check_int("budget.max_concurrent", self.max_concurrent, 1)
        check_bool("budget.only_finishable", self.only_finishable)


_EXTEND_BUDGET = "a duration to add ('+2h', '+30m') or the new total ('5h')"
_EXTEND_TRIALS = "a number of trials to add ('+10') or the new cap ('50')"


def extended_budget(budget: BudgetConfig, *, time: str | None, max_trials: str | None,
                    spent_s: float, started: int) -> BudgetConfig:
    """`resume --budget/--max-trials`: "+X" adds to the run's budget or trial cap, a plain value
    is the new total. A total must exceed what the run already spent or started, else resuming
    would end at once; bad values are one line, before Ray starts."""
    from trainables.formats import duration

    new_time, new_trials = float(budget.time), budget.max_trials
    if time is not None:
        text = time.strip()
        relative = text.startswith("+")
        try:
            amount = parse_duration(text[1:] if relative else text, "--budget")
        except ConfigError:
            raise fail("--budget", time, _EXTEND_BUDGET) from None
        new_time = new_time + amount if relative else amount
        if new_time <= spent_s:
            raise fail("--budget", time, f"the new budget ({duration(new_time)}) must exceed the "
                                         f"{duration(spent_s)} the search already spent")
    if max_trials is not None:
        text = max_trials.strip()
        relative = text.startswith("+")
        digits = text[1:] if relative else text
        if not digits.isdigit() or int(digits) < 1:
            raise fail("--max-trials", max_trials, _EXTEND_TRIALS)
        new_trials = new_trials + int(digits) if relative else int(digits)
        if new_trials <= started:
            raise fail("--max-trials", max_trials, f"the new cap ({new_trials}) must exceed the "
                                                   f"{started} trials the search already started")
    return dataclasses.replace(budget, time=new_time, max_trials=new_trials)


@dataclass(frozen=True)
class ResourcesConfig:
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | str = 0.0  # a fraction of one GPU, or "auto"
    max_failures: int = 2  # retries of a failed trial, from its last checkpoint

    def __post_init__(self) -> None:
        c = self.cpus_per_trial
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 < c <= 1024:
            raise fail("resources.cpus_per_trial", c, "must be a number in (0, 1024]")
        g = self.gpus_per_trial
        # Training is single-device: a second GPU per trial would sit idle. Fractions pack
        # several trials onto one GPU instead, which is what uses a multi-GPU node fully.
        if g != "auto" and (isinstance(g, bool) or not isinstance(g, (int, float))
                            or not 0 <= g <= 1):
            raise fail("resources.gpus_per_trial", g,
                       "must be \"auto\" or a share of one GPU in [0, 1] (training uses one "
                       "device; use fractions such as 0.5 to run several trials per GPU)")
        check_int("resources.max_failures", self.max_failures, 0)


@dataclass(frozen=True)
class SchedulerConfig:
    kind: str = "mo-asha"
    # Epochs before the first rung; a fraction makes trials also evaluate mid-epoch there.
    # "auto": 1, or the largest of 1/2, 1/4, 1/8 at which the priciest configuration of the
    # space reaches its first rung within 5% of the budget (search.tuner.first_rung).
    grace_period: float | str = "auto"
    reduction_factor: float = 3.0
    # Keep a trial whose accuracy is within this many standard errors (of a difference of
    # two validation accuracies) of a rung's cutoff; 0: rank on the raw numbers.
    noise_z: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULERS:
            raise fail("scheduler.kind", self.kind, "allowed: " + ", ".join(SCHEDULERS))
        g = self.grace_period
        if g != "auto" and (isinstance(g, bool) or not isinstance(g, (int, float))
                            or not math.isfinite(g) or not 1 / 64 <= g <= 10_000):
            raise fail("scheduler.grace_period", g,
                       "must be \"auto\" or a number of epochs in [1/64, 10000] (0.25: a quarter)")
        rf = self.reduction_factor
        if isinstance(rf, bool) or not isinstance(rf, (int, float)) or not 1 < rf <= 100:
            raise fail("scheduler.reduction_factor", rf, "must be a number in (1, 100]")
        check_float("scheduler.noise_z", self.noise_z, 0.0, 10.0)


@dataclass(frozen=True)
class SearcherConfig:
    kind: str = "cost-ehvi"
    seed: int = 0
    # cost-ehvi: the initial design's size (front ends, then Sobol points); tpe: random trials
    # before TPE models the space
    n_startup_trials: int = 8

    def __post_init__(self) -> None:
        if self.kind not in SEARCHERS:
            raise fail("searcher.kind", self.kind, "allowed: " + ", ".join(SEARCHERS))
        check_int("searcher.seed", self.seed, 0)
        check_int("searcher.n_startup_trials", self.n_startup_trials, 1)


@dataclass(frozen=True)
class StorageConfig:
    path: str = "runs"  # parent of run directories: a folder, or a URI every node can reach
    optuna_url: str | None = None  # optional Optuna RDB storage, e.g. sqlite:///optuna.db
    # A trial checkpoints at most this often (and always after its last epoch); 0: every
    # epoch. Each checkpoint costs a write, Ray's copy to `path` and a forced snapshot of
    # the whole experiment in the driver (docs/benchmarks.md); a crash or Ctrl-C costs a
    # running trial at most this much training.
    checkpoint_interval: float | str = "1m"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.strip():
            raise fail("storage.path", self.path, "must be a folder path or a URI")
        every = self.checkpoint_interval
        every_epoch = not isinstance(every, bool) and every in (0, "0")
        object.__setattr__(self, "checkpoint_interval", 0.0 if every_epoch else
                           parse_duration(every, "storage.checkpoint_interval"))
        url = self.optuna_url
        if url is None:
            return
        if isinstance(url, str) and url.startswith(ENV_PREFIX):
            if not _ENV_NAME.fullmatch(url[len(ENV_PREFIX):]):
                raise fail("storage.optuna_url", url, "env: must name an environment variable "
                           "(letters, digits, _), e.g. \"env:WRN_OPTUNA_URL\"")
        elif not isinstance(url, str) or "://" not in url:
            raise fail("storage.optuna_url", mask_url(url) if isinstance(url, str) else url,
                       "must be a database URL like sqlite:///optuna.db, or \"env:NAME\" "
                       "naming an environment variable that holds one")


ENV_PREFIX = "env:"  # storage.optuna_url = "env:NAME": the URL is in that environment variable
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def resolve_optuna_url(value: str) -> str:
    """The database URL to open, from the spec's `storage.optuna_url` as written."""
    return resolve_url(value, "storage.optuna_url", "a database URL like sqlite:///optuna.db")


def resolve_url(value: str, field_name: str, example: str, need_scheme: bool = True) -> str:
    """The URL to open, from a spec field as written (`storage.optuna_url`,
    `logging.mlflow.tracking_uri`).

    "env:NAME" is read from the environment each time a run starts or resumes, so the URL
    (and its password) is never written to the run folder. A literal URL whose password was
    masked when the spec was stored cannot be opened again: it says so in one line.
    """
    key = field_name.rpartition(".")[2]
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):]
        url = os.environ.get(name, "").strip()
        if not url:
            raise fail(field_name, value, f"the environment variable {name} is not "
                       f"set; export it with {example} before run or resume")
        if need_scheme and "://" not in url:
            raise fail(field_name, value, f"the environment variable {name} must "
                       f"hold {example}, not {mask_url(url)!r}")
        return url
    if _password(value) == MASK or MASK + "@" in value:
        raise fail(field_name, value, "its password is not kept in the run folder, "
                   "so it cannot be reopened; put the URL in an environment variable "
                   f"and set {key} = \"env:NAME\"")
    return value


def has_password(url: str | None) -> bool:
    """True for a literal URL that carries a password (it is masked wherever it is stored)."""
    return bool(url) and not url.startswith(ENV_PREFIX) and mask_url(url) != url


def _password(url: str) -> str | None:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).password
    except Exception:  # not a URL SQLAlchemy parses
        return None


WANDB_MODES = ("online", "offline")
_TRACKERS = ("mlflow", "wandb")


@dataclass(frozen=True)
class MlflowConfig:
    """Ray's MLflow logger: one MLflow run per trial, its parameters and every result."""

    # None: a SQLite store in the run folder (<run>/mlflow.db). A relative path (or file:path)
    # is taken from the folder `run` is started in; "env:NAME" reads the URI from that
    # environment variable at run and resume, so a password never reaches the run folder.
    tracking_uri: str | None = None
    experiment: str | None = None  # None: the run's name

    def __post_init__(self) -> None:
        uri = self.tracking_uri
        if uri is not None:
            if not isinstance(uri, str) or not uri.strip():
                raise fail("logging.mlflow.tracking_uri", uri, "must be a path, a URI like "
                           "http://host:5000, or \"env:NAME\" naming an environment variable")
            if uri.startswith(ENV_PREFIX) and not _ENV_NAME.fullmatch(uri[len(ENV_PREFIX):]):
                raise fail("logging.mlflow.tracking_uri", uri, "env: must name an environment "
                           "variable (letters, digits, _), e.g. \"env:MLFLOW_TRACKING_URI\"")
        if self.experiment is not None and (not isinstance(self.experiment, str)
                                            or not self.experiment.strip()):
            raise fail("logging.mlflow.experiment", self.experiment, "must be a non-empty name")


@dataclass(frozen=True)
class WandbConfig:
    """Ray's Weights & Biases logger: one W&B run per trial. The API key is read from the
    environment (WANDB_API_KEY) or `wandb login`, never from the spec: it would be stored."""

    project: str = "wrn-search"
    mode: str = "online"  # "offline": runs are written in each trial folder, synced later
    entity: str | None = None  # None: the API key's default entity
    group: str | None = None  # None: the run's name

    def __post_init__(self) -> None:
        for name in ("project", "entity", "group"):
            value = getattr(self, name)
            if (value is not None or name == "project") and (not isinstance(value, str)
                                                             or not value.strip()):
                raise fail(f"logging.wandb.{name}", value, "must be a non-empty name")
        if self.mode not in WANDB_MODES:
            raise fail("logging.wandb.mode", self.mode, "allowed: " + ", ".join(WANDB_MODES))


@dataclass(frozen=True)
class LoggingConfig:
    """Experiment trackers fed by Ray's logger callbacks; each needs its optional extra."""

    mlflow: MlflowConfig | None = None
    wandb: WandbConfig | None = None

    def __post_init__(self) -> None:
        wandb = self.wandb
        if isinstance(wandb, Mapping) and "api_key" in wandb:
            raise fail("logging.wandb.api_key", MASK, "the key would be stored with the run; "
                       "export WANDB_API_KEY (or run `wandb login`) instead")
        object.__setattr__(self, "mlflow", None if self.mlflow is None else
                           build_section(MlflowConfig, self.mlflow, "logging.mlflow"))
        object.__setattr__(self, "wandb", None if wandb is None else
                           build_section(WandbConfig, wandb, "logging.wandb"))

    @property
    def trackers(self) -> tuple[str, ...]:
        """The trackers asked for, by name (their extras have the same names)."""
        return tuple(t for t in _TRACKERS if getattr(self, t) is not None)


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole search: what to train, how to attack, what to search, within what budget."""

    name: str = "search"
    data: DataConfig = field(default_factory=DataConfig)
    threat_model: ThreatModel = field(default_factory=ThreatModel)
    space: SpaceConfig = field(default_factory=lambda: SpaceConfig.from_raw({}))
    training: TrainingConfig = field(default_factory=TrainingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    searcher: SearcherConfig = field(default_factory=SearcherConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        # The name is a folder name (on any filesystem or object store) and shows in reports.
        if not isinstance(self.name, str) or not _RUN_NAME.fullmatch(self.name):
            raise fail("name", self.name, "ASCII letters, digits, '_', '-' and '.' (not first); "
                       "at most 100 characters")
        if (self.scheduler.kind != "none" and self.scheduler.grace_period != "auto"
                and self.scheduler.grace_period > self.training.epochs):
            raise fail("scheduler.grace_period", self.scheduler.grace_period,
                       f"must be <= training.epochs ({self.training.epochs})")
        if self.searcher.kind == "grid":
            self.space.grid_size()  # raises on float ranges
        self._check_largest_model()
        self._check_space_against_trial()

    def _check_largest_model(self) -> None:
        """A space whose largest model cannot be trained would fail in every trial that
        draws it (and the cost model would plan around it): refuse it here, before Ray."""
        depth = self.space.get(M.DEPTH).extremes()[1]  # type: ignore[union-attr]
        width = self.space.get(M.WIDTH).extremes()[1]  # type: ignore[union-attr]
        size = self.space.parameter_range(self.data.num_classes)[1]
        if size > MAX_PARAMETERS:
            need = size * TRAIN_BYTES_PER_PARAMETER
            raise fail("space", wrn_name(int(depth), int(width)),
                       f"the space's largest model has {size:.3g} parameters, {need:.2g} bytes to "
                       f"train ({TRAIN_BYTES_PER_PARAMETER} a parameter for weights, gradients, "
                       f"momentum and bf16 copies, before activations); at most "
                       f"{MAX_PARAMETERS:.0e} parameters "
                       f"({MAX_PARAMETERS * TRAIN_BYTES_PER_PARAMETER / 1e9:.0f} GB) per model: "
                       "lower space.width or space.depth")

    def _check_space_against_trial(self) -> None:
        """Every value the space can propose must make a valid trial, or each such trial
        would fail (and be retried) at run time instead of here."""
        base = self.base_trial()
        for param in self.space.params:
            section, name = SEARCHABLE[param.name]
            values = param.values if param.kind != "range" else param.extremes()
            for value in values:
                try:
                    dataclasses.replace(getattr(base, section), **{name: value})
                except ConfigError as exc:
                    reason = str(exc).split("; ", 1)[-1]
                    raise fail(f"space.{param.name}", value, reason) from None

    @property
    def run_dir(self) -> str:
        return run_files.join_uri(self.storage.path, self.name)

    def base_trial(self) -> TrialConfig:
        """The fixed part of every trial; the searched values are applied per trial."""
        return TrialConfig(data=self.data, model=self.model, training=self.training,
                           threat_model=self.threat_model)

    def to_json(self) -> dict[str, Any]:
        """The spec as shown (--dry-run) and stored (spec.json): a database password and a
        storage URI's secret key masked, an "env:NAME" URL kept as written."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out = {k: (v.to_json() if isinstance(v, SpaceConfig) else
                   dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
               for k, v in out.items()}
        out["storage"]["path"] = mask_secrets(self.storage.path)  # s3://KEY_ID:SECRET@bucket
        if self.storage.optuna_url is not None:
            out["storage"]["optuna_url"] = mask_url(self.storage.optuna_url)
        if self.logging.mlflow is not None and self.logging.mlflow.tracking_uri is not None:
            out["logging"]["mlflow"]["tracking_uri"] = mask_url(self.logging.mlflow.tracking_uri)
        return json.loads(json.dumps(out))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExperimentSpec:
        sections: dict[str, type] = {
            "data": DataConfig, "threat_model": ThreatModel, "training": TrainingConfig,
            "model": ModelConfig, "budget": BudgetConfig, "resources": ResourcesConfig,
            "scheduler": SchedulerConfig, "searcher": SearcherConfig, "storage": StorageConfig,
            "logging": LoggingConfig,
        }
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key == "name":
                kwargs["name"] = value
            elif key == "space":
                kwargs["space"] = SpaceConfig.from_raw(value)
            elif key in sections:
                kwargs[key] = build_section(sections[key], value, key)
            else:
                raise fail(key, value, "unknown section; allowed: name, space, "
                           + ", ".join(sections))
        return cls(**kwargs)


def load_spec(path: str | Path, **overrides: Any) -> ExperimentSpec:
    """Read and validate a TOML spec; `overrides` replace top-level keys (CLI flags)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"spec: {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"spec: {str(path)!r} is a folder, not a TOML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"spec: {str(path)!r} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"spec: {str(path)!r} is not valid TOML ({exc})") from None
    raw.setdefault("name", path.stem)
    for key, value in overrides.items():
        if value is None:
            continue
        section, _, name = key.partition(".")
        if name:
            table = raw.setdefault(section, {})
            if not isinstance(table, dict):
                raise fail(section, table, "must be a table of settings")
            table[name] = value
        else:
            raw[key] = value
    return ExperimentSpec.from_dict(raw)
