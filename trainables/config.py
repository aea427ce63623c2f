"""The configuration of one trial: frozen, typed, validated once when built.

Every check raises `ConfigError` with one line: the field, the value, and what is
allowed. The CLI and the spec loader print that line and exit; inner code trusts
the object it is handed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, TypeVar

from models import validate_architecture
from trainables import metrics

DATASETS: dict[str, int] = {  # name -> number of classes
    "cifar10": 10,
    "cifar10-sample": 10,
    "cifar100": 100,
    "svhn": 10,
}
METHODS = ("pgd", "fgsm-rs", "fgsm-mix", "clean")
NORMS = ("linf", "l2")
SCHEDULES = ("cosine", "piecewise", "onecycle")
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A user-supplied setting is invalid; the message is one line for humans."""


class NotARunError(ConfigError):
    """RUN_DIR is a folder, but holds no run: nothing to read, resume or report (its own
    exit status, so a script can tell it from a bad setting)."""


class RayStartError(RuntimeError):
    """This machine could not start Ray (or reach it once started): not the user's input,
    often a passing overload, so it has its own exit status and nothing is written."""


def not_a_run(run_dir: str, is_folder: bool, why: str) -> ConfigError:
    """RUN_DIR names no run: a folder without one (NotARunError), or no folder at all (a bad
    input, ConfigError)."""
    error = NotARunError if is_folder else ConfigError
    return error(f"RUN_DIR: {run_dir!r} is not allowed; {why}")


def fail(field_name: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{field_name}: {value!r} is not allowed; {allowed}")


def parse_epsilon(value: Any, field_name: str = "epsilon") -> float:
    """Accept 8/255, '8/255', 0.0314 or '0.0314'; return a float in [0, 1]."""
    if isinstance(value, bool):
        raise fail(field_name, value, "expected a number like 0.0314 or a fraction like 8/255")
    if isinstance(value, (int, float)):
        eps = float(value)
    elif isinstance(value, str):
        try:
            eps = float(Fraction(value.strip()))
        except (ValueError, ZeroDivisionError):
            raise fail(
                field_name, value, "expected a number like 0.0314 or a fraction like 8/255"
            ) from None
    else:
        raise fail(field_name, value, "expected a number like 0.0314 or a fraction like 8/255")
    if not (math.isfinite(eps) and 0.0 <= eps <= 1.0):
        raise fail(field_name, value, "epsilon is in pixel units on [0, 1] inputs: 0 <= eps <= 1")
    return eps


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(name, value, f"must be an integer >= {minimum}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise fail(name, value, f"must be an integer {bound}")
    return value


def check_float(name: str, value: Any, low: float, high: float, *, open_high: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise fail(name, value, "must be a finite number")
    if value < low or value > high or (open_high and value == high):
        closing = ")" if open_high else "]"
        raise fail(name, value, f"must be in [{low:g}, {high:g}{closing}")
    return float(value)


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise fail(name, value, "allowed: " + ", ".join(choices))
    return value


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise fail(name, value, "must be true or false")
    return value


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


@dataclass(frozen=True)
class DataConfig:
    """Which images, and how the training set is split for selection."""

    dataset: str = "cifar10-sample"
    data_dir: str | None = None  # None: ~/.cache/wrn-search (or $WRN_SEARCH_DATA)
    download: bool = False  # allow torchvision to download when the data is missing
    train_subset: int | None = None  # stratified subset of the training split, for cheap runs
    val_size: int | float = 0.1  # count (>= 1) or fraction (< 1) of the training split
    seed: int = 0  # seeds the subset and the validation split

    def __post_init__(self) -> None:
        check_choice("data.dataset", self.dataset, tuple(DATASETS))
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            raise fail("data.data_dir", self.data_dir, "must be a path string")
        check_bool("data.download", self.download)
        if self.train_subset is not None:
            check_int("data.train_subset", self.train_subset, 20)
        v = self.val_size
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise fail("data.val_size", v, "must be a count >= 10 or a fraction in (0, 1)")
        if isinstance(v, float) and not v.is_integer():
            if not 0.0 < v < 1.0:
                raise fail("data.val_size", v, "must be a count >= 10 or a fraction in (0, 1)")
        else:
            check_int("data.val_size", int(v), 10)
            _set(self, "val_size", int(v))
        check_int("data.seed", self.seed, 0)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset]


@dataclass(frozen=True)
class ModelConfig:
    depth: int = 16
    width: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        try:
            validate_architecture(self.depth, self.width)
        except ValueError as exc:
            name = "depth" if str(exc).startswith("depth") else "width"
            raise fail(f"model.{name}", getattr(self, name), str(exc)) from None
        check_float("model.dropout", self.dropout, 0.0, 1.0, open_high=True)


@dataclass(frozen=True)
class TrainingConfig:
    """How the model is trained: the attack used for training and the optimiser."""

    method: str = "pgd"
    norm: str = "linf"
    eps: float = 8 / 255  # training epsilon, pixel units
    steps: int = 10  # PGD steps (pgd only)
    alpha: float | None = None  # step size; None: 2.5*eps/steps (pgd), 1.25*eps (fgsm-rs)
    mix_weight: float = 0.5  # fgsm-mix: weight a of the clean loss in a*L(clean)+(1-a)*L(adv)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1  # peak learning rate (SGD, Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up (cosine, piecewise); onecycle has its own
    label_smoothing: float = 0.0
    seed: int = 0  # model init, batch order, augmentation and attack random starts

    def __post_init__(self) -> None:
        check_choice("training.method", self.method, METHODS)
        check_choice("training.norm", self.norm, NORMS)
        if self.norm == "l2" and self.method not in ("pgd", "clean"):
            raise fail("training.norm", self.norm, f"{self.method} is an L-inf method; use "
                       "linf, or method pgd for L2 training")
        if self.norm == "linf":
            _set(self, "eps", parse_epsilon(self.eps, "training.eps"))
        else:
            _set(self, "eps", check_float("training.eps", self.eps, 0.0, 100.0))
        check_int("training.steps", self.steps, 1, 1000)
        if self.alpha is not None:
            if self.method not in ("pgd", "fgsm-rs"):
                raise fail("training.alpha", self.alpha, "a step size only applies to pgd and "
                           "fgsm-rs (fgsm-mix steps by eps, clean has no attack)")
            alpha = (parse_epsilon(self.alpha, "training.alpha") if self.norm == "linf"
                     else check_float("training.alpha", self.alpha, 0.0, 100.0))
            if alpha <= 0:
                raise fail("training.alpha", self.alpha, "the step size must be > 0")
            _set(self, "alpha", alpha)
        check_float("training.mix_weight", self.mix_weight, 0.0, 1.0)
        check_int("training.epochs", self.epochs, 1, 10_000)
        check_int("training.batch_size", self.batch_size, 1, 65_536)
        check_float("training.lr", self.lr, 1e-8, 10.0)
        check_float("training.momentum", self.momentum, 0.0, 1.0, open_high=True)
        check_float("training.weight_decay", self.weight_decay, 0.0, 1.0)
        check_choice("training.schedule", self.schedule, SCHEDULES)
        check_float("training.warmup_epochs", self.warmup_epochs, 0.0, float(self.epochs))
        check_float("training.label_smoothing", self.label_smoothing, 0.0, 1.0, open_high=True)
        check_int("training.seed", self.seed, 0)

    @property
    def step_size(self) -> float:
        """The attack step size actually used (explicit alpha, or the method's rule)."""
        if self.alpha is not None:
            return self.alpha
        if self.method == "pgd":
            return 2.5 * self.eps / self.steps  # Madry et al. 2018
        if self.method == "fgsm-rs":
            return 1.25 * self.eps  # Wong et al. 2020
        return self.eps  # fgsm-mix: Goodfellow et al. 2015


@dataclass(frozen=True)
class ThreatModel:
    """The threat model: fixed per experiment so robust accuracies stay comparable; the
    validation attack of the search, and the epsilons `evaluate` attacks at."""

    norm: str = "linf"
    epsilons: tuple[float, ...] = (8 / 255,)  # the first one is the search objective
    steps: int = 10
    restarts: int = 1
    batch_size: int = 500
    max_examples: int | None = None  # evaluate at most this many validation images per epoch

    def __post_init__(self) -> None:
        check_choice("threat_model.norm", self.norm, NORMS)
        eps = self.epsilons
        if isinstance(eps, (str, int, float)):
            eps = (eps,)
        if not isinstance(eps, (list, tuple)) or not eps:
            raise fail("threat_model.epsilons", self.epsilons, "must be a non-empty list")
        if self.norm == "linf":
            parsed = tuple(parse_epsilon(e, "threat_model.epsilons") for e in eps)
        else:
            parsed = tuple(check_float("threat_model.epsilons", e, 0.0, 100.0) for e in eps)
        if len(set(parsed)) != len(parsed):
            raise fail("threat_model.epsilons", list(eps), "epsilons must be distinct")
        _set(self, "epsilons", parsed)
        check_int("threat_model.steps", self.steps, 1, 10_000)
        check_int("threat_model.restarts", self.restarts, 1, 100)
        check_int("threat_model.batch_size", self.batch_size, 1, 65_536)
        if self.max_examples is not None:
            check_int("threat_model.max_examples", self.max_examples, 10)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one training run needs; the Ray trainable and `train` both build one."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    threat_model: ThreatModel = field(default_factory=ThreatModel)
    device: str = "auto"
    compile: bool = False  # torch.compile the model (GPU only)
    threads: int | None = None  # torch intra-op threads on CPU; None: leave as set

    def __post_init__(self) -> None:
        check_choice("device", self.device, DEVICES)
        check_bool("compile", self.compile)
        if self.threads is not None:
            check_int("threads", self.threads, 1, 1024)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrialConfig:
        """Build from nested plain data (JSON, TOML, a Ray config), rejecting unknown keys."""
        sections = {"data": DataConfig, "model": ModelConfig, "training": TrainingConfig,
                    "threat_model": ThreatModel}
        kwargs: dict[str, Any] = {}
        for key, value in raw.items():
            if key in sections:
                kwargs[key] = build_section(sections[key], value, key)
            elif key in ("device", "compile", "threads"):
                kwargs[key] = value
            else:
                raise fail(key, value, "unknown field; allowed: " + ", ".join(
                    [*sections, "device", "compile", "threads"]))
        return cls(**kwargs)


# Searchable hyperparameter -> (section, field) of TrialConfig it overrides. The keys are the
# metric names the results carry (trainables.metrics), and the spec's [space] entries.
SEARCHABLE: dict[str, tuple[str, str]] = {
    metrics.DEPTH: ("model", "depth"),
    metrics.WIDTH: ("model", "width"),
    metrics.METHOD: ("training", "method"),
    metrics.TRAIN_EPS: ("training", "eps"),
    metrics.TRAIN_STEPS: ("training", "steps"),
    metrics.PEAK_LR: ("training", "lr"),
    metrics.WEIGHT_DECAY: ("training", "weight_decay"),
}
RAY_TRIAL_KEY = "trial"  # where a Ray trial's config keeps the fixed TrialConfig dict


def with_searched(base: TrialConfig, values: Mapping[str, Any]) -> TrialConfig:
    """`base` with searched values (SEARCHABLE keys; others ignored) applied, validated."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if key in SEARCHABLE:
            section, name = SEARCHABLE[key]
            sections.setdefault(section, {})[name] = value
    changes = {s: dataclasses.replace(getattr(base, s), **f) for s, f in sections.items()}
    return dataclasses.replace(base, **changes)


def trial_from_ray(config: Mapping[str, Any]) -> TrialConfig:
    """The TrialConfig of a Ray trial: its fixed settings (under RAY_TRIAL_KEY) with the
    searched values (flat SEARCHABLE keys) applied. Every reader of a Ray config calls this."""
    return with_searched(TrialConfig.from_dict(config.get(RAY_TRIAL_KEY) or {}), config)


def hyperparameters(cfg: TrialConfig) -> dict[str, Any]:
    """What a trial's results carry about its configuration, keyed as the metrics are: the
    searchable values and the full fidelity (metrics.HYPERPARAMETERS and MAX_EPOCHS)."""
    t = cfg.training
    return {
        metrics.DEPTH: cfg.model.depth,
        metrics.WIDTH: cfg.model.width,
        metrics.METHOD: t.method,
        metrics.TRAIN_EPS: t.eps,
        metrics.TRAIN_STEPS: t.steps if t.method == "pgd" else 1,
        metrics.PEAK_LR: t.lr,
        metrics.WEIGHT_DECAY: t.weight_decay,
        metrics.MAX_EPOCHS: t.epochs,
    }


T = TypeVar("T")


def build_section(cls: type[T], raw: Any, prefix: str) -> T:
    """Construct one section dataclass from a mapping, naming any unknown key."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, Mapping):
        raise fail(prefix, raw, "must be a table of settings")
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for key in raw:
        if key not in names:
            raise fail(f"{prefix}.{key}", raw[key], "unknown field; allowed: " + ", ".join(names))
    values = dict(raw)
    if "epsilons" in values and isinstance(values["epsilons"], list):
        values["epsilons"] = tuple(values["epsilons"])
    return cls(**values)
