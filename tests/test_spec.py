"""Spec validation: every bad field is one line naming the field; never a traceback."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from search.searchers import DefineByRunSpace
from search.spec import ExperimentSpec, load_spec, parse_duration
from trainables import metrics as M
from trainables.config import ConfigError, TrialConfig, parse_epsilon

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

VALID = {
    "name": "t",
    "data": {"dataset": "cifar10-sample", "train_subset": 200, "val_size": 50},
    "threat_model": {"norm": "linf", "epsilons": ["8/255", 0.0157], "steps": 3, "restarts": 1},
    "space": {"depth": [10, 16], "width": {"low": 1, "high": 4},
              "train_eps": {"low": "2/255", "high": "8/255"}, "train_steps": {"low": 1, "high": 5},
              "method": ["pgd", "fgsm-rs"], "peak_lr": {"low": 0.01, "high": 0.2, "log": True}},
    "training": {"epochs": 3, "batch_size": 50, "schedule": "cosine"},
    "budget": {"time": "10m", "max_trials": 5, "max_concurrent": 2},
    "resources": {"cpus_per_trial": 1, "gpus_per_trial": 0},
    "scheduler": {"kind": "mo-asha", "grace_period": 1, "reduction_factor": 3},
    "searcher": {"kind": "tpe", "seed": 1},
    "storage": {"path": "runs"},
    "logging": {},
}


def _with(section: str, key: str | None, value: object) -> dict:
    raw = copy.deepcopy(VALID)
    if key is None:
        raw[section] = value
    else:
        raw[section][key] = value
    return raw


def test_the_valid_spec_and_every_shipped_config_load() -> None:
    spec = ExperimentSpec.from_dict(VALID)
    assert spec.threat_model.epsilons == (8 / 255, 0.0157)
    assert spec.budget.time == 600.0
    assert spec.space.parameter_range(10) == (77_850, 2_748_890)  # WRN-10-1 .. WRN-16-4
    for path in sorted(CONFIGS.glob("*.toml")):
        loaded = load_spec(path)
        assert loaded.name == path.stem
        assert ExperimentSpec.from_dict(loaded.to_json()) == loaded  # spec.json round-trips


@pytest.mark.parametrize(("section", "key", "value", "field"), [
    ("data", "dataset", "imagenet", "data.dataset"),
    ("data", "val_size", 0, "data.val_size"),
    ("data", "val_size", 1.5, "data.val_size"),
    ("data", "train_subset", 3, "data.train_subset"),
    ("data", "colour", True, "data.colour"),
    ("threat_model", "norm", "l3", "threat_model.norm"),
    ("threat_model", "epsilons", ["8/0"], "threat_model.epsilons"),
    ("threat_model", "epsilons", [2], "threat_model.epsilons"),
    ("threat_model", "epsilons", [], "threat_model.epsilons"),
    ("threat_model", "steps", 0, "threat_model.steps"),
    ("space", "depth", [35], "space.depth"),
    ("space", "depth", {"low": 10, "high": 16}, "space.depth"),
    ("space", "width", {"low": 4, "high": 1}, "space.width"),
    ("space", "width", {"low": 1}, "space.width"),
    ("space", "train_eps", {"low": "2/255", "high": "3"}, "space.train_eps"),
    ("space", "method", ["pgd", "trades"], "space.method"),
    ("space", "momentum", [0.9], "space.momentum"),
    ("space", "train_steps", [], "space.train_steps"),
    ("training", "epochs", 0, "training.epochs"),
    ("training", "schedule", "step", "training.schedule"),
    ("training", "lr", -1, "training.lr"),
    ("training", "eps", "1/0", "training.eps"),
    ("budget", "time", "ten minutes", "budget.time"),
    ("budget", "time", 0, "budget.time"),
    ("budget", "max_trials", 0, "budget.max_trials"),
    ("budget", "max_concurrent", 1.5, "budget.max_concurrent"),
    ("resources", "gpus_per_trial", "half", "resources.gpus_per_trial"),
    ("resources", "gpus_per_trial", 1.5, "resources.gpus_per_trial"),
    ("resources", "gpus_per_trial", 2, "resources.gpus_per_trial"),
    ("resources", "cpus_per_trial", 0, "resources.cpus_per_trial"),
    ("scheduler", "kind", "hyperband", "scheduler.kind"),
    ("scheduler", "grace_period", 10, "scheduler.grace_period"),
    ("scheduler", "reduction_factor", 1, "scheduler.reduction_factor"),
    ("scheduler", "grace_period", 0, "scheduler.grace_period"),
    ("scheduler", "grace_period", "soon", "scheduler.grace_period"),
    ("scheduler", "noise_z", -1, "scheduler.noise_z"),
    ("scheduler", "noise_z", True, "scheduler.noise_z"),
    ("budget", "only_finishable", "yes", "budget.only_finishable"),
    ("searcher", "kind", "bayes", "searcher.kind"),
    ("searcher", "seed", -1, "searcher.seed"),
    ("storage", "path", "", "storage.path"),
    ("storage", "optuna_url", "optuna.db", "storage.optuna_url"),
    ("storage", "checkpoint_interval", "-1m", "storage.checkpoint_interval"),
    ("storage", "checkpoint_interval", False, "storage.checkpoint_interval"),
    ("training", None, "fast", "training"),
    ("logging", "sentry", {}, "logging.sentry"),
    ("logging", "mlflow", "yes", "logging.mlflow"),
    ("logging", "mlflow", {"uri": "mlruns"}, "logging.mlflow.uri"),
    ("logging", "mlflow", {"tracking_uri": 5}, "logging.mlflow.tracking_uri"),
    ("logging", "mlflow", {"tracking_uri": " "}, "logging.mlflow.tracking_uri"),
    ("logging", "mlflow", {"tracking_uri": "env:1-X"}, "logging.mlflow.tracking_uri"),
    ("logging", "mlflow", {"experiment": ""}, "logging.mlflow.experiment"),
    ("logging", "wandb", {"mode": "cloud"}, "logging.wandb.mode"),
    ("logging", "wandb", {"project": 3}, "logging.wandb.project"),
    ("logging", "wandb", {"entity": ""}, "logging.wandb.entity"),
    ("logging", "wandb", {"api_key": "0123456789abcdef"}, "logging.wandb.api_key"),
    ("logging", None, ["mlflow"], "logging"),
])
def test_each_bad_field_is_named_in_one_line(section: str, key: str | None, value: object,
                                             field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict(_with(section, key, value))
    message = str(info.value)
    assert message.startswith(field + ":"), message
    assert "\n" not in message


def test_budget_aware_defaults_and_fractional_rungs() -> None:
    spec = ExperimentSpec.from_dict({})
    assert spec.searcher.kind == "cost-ehvi"
    assert spec.scheduler.grace_period == "auto" and spec.scheduler.noise_z == 1.0
    assert spec.budget.only_finishable is True
    quarter = ExperimentSpec.from_dict({**VALID, "scheduler": {"grace_period": 0.25}})
    assert quarter.scheduler.grace_period == 0.25
    legacy = ExperimentSpec.from_dict({**VALID, "scheduler": {"grace_period": 1, "noise_z": 0},
                                       "budget": {"only_finishable": False}})
    assert legacy.scheduler.noise_z == 0 and not legacy.budget.only_finishable


def test_unknown_section_and_grid_over_a_float_range() -> None:
    with pytest.raises(ConfigError, match="^colour: .*unknown section"):
        ExperimentSpec.from_dict({**VALID, "colour": {}})
    with pytest.raises(ConfigError, match="^space.train_eps: .*grid search"):
        ExperimentSpec.from_dict(_with("searcher", "kind", "grid"))


def test_load_spec_reports_missing_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_spec(bad)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1.5h", 5400), (45, 45), ("1d", 86400),
])
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "10", "-5m", "5 minutes", "m", "0s", True, None, "1h1x"])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ConfigError, match="^budget.time:"):
        parse_duration(text)


def test_epsilons_in_pixel_units() -> None:
    assert parse_epsilon("8/255") == pytest.approx(0.031372549)
    assert parse_epsilon(0.0314) == 0.0314
    for bad in ("8/0", "-1/255", "1.5", "eps", math.nan, True):
        with pytest.raises(ConfigError):
            parse_epsilon(bad)


class _FakeTrial:
    """Stands in for an Optuna trial: picks the low end of every distribution."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def suggest_categorical(self, name: str, choices: list) -> object:
        self.asked.append(name)
        return choices[-1]

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        self.asked.append(name)
        return low

    def suggest_float(self, name: str, low: float, high: float, log: bool = False) -> float:
        self.asked.append(name)
        return low


def test_define_by_run_space_skips_steps_for_single_step_methods() -> None:
    spec = ExperimentSpec.from_dict(VALID)
    trial = _FakeTrial()
    fixed = DefineByRunSpace(spec.space)(trial)  # method choices [pgd, fgsm-rs]: picks fgsm-rs
    assert trial.asked[0] == M.METHOD and M.TRAIN_STEPS not in trial.asked
    assert fixed is None


# ---------------------------------------------------------------- property test
_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 100), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8), st.sampled_from(["8/255", "auto", "pgd", "10m", "cosine", "mo-asha"]),
    st.lists(st.integers(-3, 50), max_size=3), st.dictionaries(st.sampled_from(["low", "high", "log"]),
                                                                st.integers(-3, 40), max_size=3),
)


@st.composite
def _mangled(draw: st.DrawFn) -> dict:
    raw = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(raw)))
        if isinstance(raw[section], dict) and raw[section] and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(raw[section])))
            raw[section][key] = draw(_leaf)
        elif draw(st.booleans()):
            raw[section] = draw(_leaf)
        else:
            raw.pop(section)
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mangled())
def test_mangled_specs_give_a_valid_spec_or_one_clean_line(raw: dict) -> None:
    try:
        spec = ExperimentSpec.from_dict(raw)
    except ConfigError as exc:
        message = str(exc)
        assert message and "\n" not in message and ":" in message
        return
    TrialConfig.from_dict(spec.base_trial().to_dict())  # what the trainable will rebuild


@pytest.mark.parametrize(("value", "seconds"), [(0, 0.0), ("0", 0.0), ("30s", 30.0), (90, 90.0)])
def test_checkpoint_interval_zero_means_every_epoch(value: object, seconds: float) -> None:
    spec = ExperimentSpec.from_dict(_with("storage", "checkpoint_interval", value))
    assert spec.storage.checkpoint_interval == seconds
    assert ExperimentSpec.from_dict(VALID).storage.checkpoint_interval == 60.0  # the default


def test_more_than_one_gpu_per_trial_points_at_fractions() -> None:
    with pytest.raises(ConfigError, match=r"gpus_per_trial: 2 is not allowed; .*training uses one "
                                          r"device; use fractions such as 0.5"):
        ExperimentSpec.from_dict({**VALID, "resources": {"gpus_per_trial": 2}})


@pytest.mark.parametrize("name", ["café", "ｒｕｎ", "run١", "日本", ".hidden", "a/b", "a b", "", "x" * 101])
def test_run_names_are_ascii_letters_digits_and_three_marks(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict({**VALID, "name": name})
    message = str(info.value)
    assert message.startswith("name: ") and "\n" not in message
    assert "ASCII letters, digits, '_', '-' and '.' (not first)" in message


@pytest.mark.parametrize("name", ["run-1", "a.b_c", "_x", "WRN.2026-01"])
def test_ascii_run_names_are_accepted(name: str) -> None:
    assert ExperimentSpec.from_dict({**VALID, "name": name}).name == name


@pytest.mark.parametrize(("space", "model"), [
    ({"width": 100000}, "WRN-28-100000"),  # 3.6e15 parameters
    ({"depth": [10, 1000], "width": {"low": 1, "high": 10}}, "WRN-1000-10"),  # 1.6e9
])
def test_a_space_whose_largest_model_cannot_be_trained_is_refused(space: dict, model: str) -> None:
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict({**VALID, "space": space})
    message = str(info.value)
    assert message.startswith(f"space: {model!r} is not allowed; the space's largest model has ")
    assert "at most 1e+09 parameters (16 GB) per model" in message and "\n" not in message


def test_the_largest_published_wrns_fit_under_the_ceiling() -> None:
    spec = ExperimentSpec.from_dict({**VALID, "space": {"depth": [34, 70, 106], "width": [10, 16, 20]}})
    assert spec.space.parameter_range(10)[1] < 1e9


def test_logging_section_defaults_round_trip_and_mask_a_tracking_password() -> None:
    plain = ExperimentSpec.from_dict(VALID)
    assert plain.logging.trackers == ()
    raw = _with("logging", None, {"mlflow": {"tracking_uri": "http://me:PASSWORD@mlflow.example"},
                                  "wandb": {"mode": "offline"}})
    spec = ExperimentSpec.from_dict(raw)
    assert spec.logging.trackers == ("mlflow", "wandb")
    assert spec.logging.mlflow.experiment is None and spec.logging.wandb.project == "wrn-search"
    stored = spec.to_json()["logging"]
    assert stored["mlflow"]["tracking_uri"] == "http://me:***@mlflow.example"
    assert "PASSWORD" not in str(spec.to_json())
    env = ExperimentSpec.from_dict(_with("logging", "mlflow", {"tracking_uri": "env:MLFLOW_URI"}))
    assert ExperimentSpec.from_dict(env.to_json()) == env  # spec.json round-trips
    assert env.to_json()["logging"] == {"mlflow": {"tracking_uri": "env:MLFLOW_URI",
                                                   "experiment": None}, "wandb": None}
    with pytest.raises(ConfigError) as info:
        ExperimentSpec.from_dict(_with("logging", "wandb", {"api_key": "SECRETKEY"}))
    assert "SECRETKEY" not in str(info.value) and "WANDB_API_KEY" in str(info.value)
