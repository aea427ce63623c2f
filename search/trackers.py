"""Experiment trackers (MLflow, Weights & Biases) fed by Ray Tune's own logger callbacks.

Each tracker is an optional extra of the package; a spec that asks for one that is not
installed is refused in one line naming the extra, before Ray starts. The callbacks are
pickled with the Tuner (tuner.pkl) and come back from it on `resume`, so they hold no
secret: an "env:NAME" MLflow URI is read from the environment when the search starts or
resumes, a literal one is pickled with its password masked, and the W&B API key is only
ever read from the environment (WANDB_API_KEY) or `wandb login`.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback
from ray.air.integrations.wandb import WandbLoggerCallback, _WandbLoggingActor

from search.spec import ENV_PREFIX, LoggingConfig, MlflowConfig, WandbConfig, resolve_url
from trainables.config import fail
from trainables.formats import mask_url

# The default MLflow store, inside the run folder: a SQLite database (MLflow 3 keeps its
# file store in maintenance mode and refuses it unless MLFLOW_ALLOW_FILE_STORE is set) and
# the folder for any artifacts.
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"
_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb"}  # tracker -> the module its extra installs
_NAMED_STORES = ("databricks", "databricks-uc")  # tracking URIs that are a name, not a path
_TRIAL_TAG = "trial_id"  # MLflow run tag: finds a trial's run again after a resume


def install_hint(extra: str) -> str:
    return f'pip install "wrn-search[{extra}]"'


def check_trackers(config: LoggingConfig) -> None:
    """Refuse, before Ray starts, a tracker whose package is missing or that cannot log in."""
    for name in config.trackers:
        if importlib.util.find_spec(_PACKAGES[name]) is None:
            raise fail(f"logging.{name}", name, f"the {_PACKAGES[name]} package is not "
                       f"installed; {install_hint(name)}")
    if config.wandb is not None and config.wandb.mode == "online" and not _wandb_logged_in():
        raise fail("logging.wandb.mode", "online", "no W&B API key: export WANDB_API_KEY (or run "
                   "`wandb login`), or set mode = \"offline\" and `wandb sync` later")
    if config.mlflow is not None and config.mlflow.tracking_uri is not None:
        resolve_url(config.mlflow.tracking_uri, "logging.mlflow.tracking_uri",
                    "an MLflow tracking URI", need_scheme=False)


def _wandb_logged_in() -> bool:
    """What Ray's logger accepts: WANDB_API_KEY, or a key that `wandb login` stored."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import wandb

    try:
        return bool(wandb.api.api_key)
    except Exception:  # noqa: BLE001 - no settings file, no netrc: not logged in
        return False


def default_store(run_dir: str) -> str:
    """The run folder's own MLflow store: a SQLite database, `mlflow ui` opens it as
    `--backend-store-uri sqlite:///<run>/mlflow.db`."""
    return f"sqlite:///{Path(run_dir, MLFLOW_DB)}"


def tracking_uri(config: MlflowConfig, run_dir: str) -> str:
    """The MLflow tracking URI a search uses: a database in the run folder by default; a
    path (a file store folder; relative ones, and file:path, from the folder `run` started
    in), a URI as written."""
    value = config.tracking_uri
    if value is None:
        if "://" in run_dir:
            raise fail("logging.mlflow.tracking_uri", None, f"must be set when the run folder is "
                       f"not local ({run_dir}): a path, or a tracking server URI")
        return default_store(run_dir)
    if value.startswith(ENV_PREFIX) or "://" in value or value in _NAMED_STORES:
        return value
    path = value[len("file:"):] if value.startswith("file:") else value
    return Path(path).expanduser().resolve().as_uri()


def build_callbacks(config: LoggingConfig, run_dir: str, run_name: str) -> list[Any]:
    """Ray's logger callbacks for the trackers a spec asks for (none: an empty list)."""
    callbacks: list[Any] = []
    if config.mlflow is not None:
        callbacks.append(MlflowTracker(tracking_uri(config.mlflow, run_dir),
                                       experiment_name=config.mlflow.experiment or run_name,
                                       tags={"wrn_search_run": run_name},
                                       run_dir=run_dir if config.mlflow.tracking_uri is None
                                       else None))
    if config.wandb is not None:
        callbacks.append(wandb_callback(config.wandb, run_name))
    return callbacks


def wandb_callback(config: WandbConfig, run_name: str) -> WandbTracker:
    # resume="allow": a trial continued by `resume` logs into its run, not a new one
    extra = {"entity": config.entity} if config.entity else {}
    return WandbTracker(project=config.project, group=config.group or run_name, mode=config.mode,
                        resume="allow", **extra)


class MlflowTracker(MLflowLoggerCallback):
    """Ray's MLflow logger, keeping no secret in its pickle and one MLflow run per trial.

    The URI is resolved at `setup` (an "env:NAME" one from the environment); pickling masks a
    password in a literal one. Each run is tagged with its trial id, so a trial that a
    `resume` continues goes on logging into the same MLflow run.
    """

    def __init__(self, tracking_uri: str, *, experiment_name: str, tags: dict[str, str],
                 run_dir: str | None) -> None:
        super().__init__(tracking_uri, experiment_name=experiment_name, tags=tags)
        self.run_dir = run_dir  # the default store's run folder: the store follows it

    def attach(self, run_dir: str) -> None:
        """A resumed run's folder may have moved: its default store moves with it."""
        if self.run_dir is not None:
            self.run_dir = run_dir
            self.tracking_uri = default_store(run_dir)

    def setup(self, *args: Any, **kwargs: Any) -> None:
        uri = resolve_url(self.tracking_uri, "logging.mlflow.tracking_uri",
                          "an MLflow tracking URI", need_scheme=False)
        if uri.startswith("file:") or "://" not in uri:
            # a folder the user named: MLflow 3's file store, which it keeps but refuses
            # unless told (its own switch)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        artifacts = None if self.run_dir is None else Path(self.run_dir, MLFLOW_ARTIFACTS).as_uri()
        self.mlflow_util.setup_mlflow(tracking_uri=uri, registry_uri=self.registry_uri,
                                      experiment_name=self.experiment_name,
                                      tracking_token=self.tracking_token,
                                      artifact_location=artifacts)
        self.tags = dict(self.tags or {})
        self._trial_runs = {}

    def log_trial_start(self, trial: Any) -> None:
        if trial not in self._trial_runs:
            client = self.mlflow_util._get_client()  # noqa: SLF001 - the util's own client
            found = client.search_runs([self.mlflow_util.experiment_id], max_results=1,
                                       filter_string=f"tags.{_TRIAL_TAG} = '{trial.trial_id}'")
            if found:
                self._trial_runs[trial] = found[0].info.run_id
                client.update_run(found[0].info.run_id, status="RUNNING")
            else:
                tags = {**self.tags, "trial_name": str(trial), _TRIAL_TAG: trial.trial_id}
                run = self.mlflow_util.start_run(tags=tags, run_name=str(trial))
                self._trial_runs[trial] = run.info.run_id
                self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=trial.config)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        super().log_trial_end(trial, failed)
        self._trial_runs.pop(trial, None)  # a retry finds its run again by its tag

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Trials still training when the search stops (Ctrl-C) leave their runs KILLED, not
        RUNNING; `resume` reopens them."""
        for run_id in self._trial_runs.values():
            self.mlflow_util.end_run(run_id=run_id, status="KILLED")
        self._trial_runs = {}

    def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
        # the config is the run's parameters already, not a metric on every step
        super().log_trial_result(iteration, trial, {k: v for k, v in result.items() if k != "config"})

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if state.get("tracking_uri") and not state["tracking_uri"].startswith(ENV_PREFIX):
            state["tracking_uri"] = mask_url(state["tracking_uri"])
        return state


class _FlushingWandbActor(_WandbLoggingActor):
    """Ray's per-trial W&B logging actor, which returns once `wandb.finish()` has returned;
    Ray then kills it, and wandb-core (its child process) was seen killed before it had
    written the run file (an offline run left empty). `wandb.teardown()` waits for it."""

    def run(self) -> None:
        super().run()
        self._wandb.teardown()


class WandbTracker(WandbLoggerCallback):
    """Ray's W&B logger; in offline mode it needs no API key (Ray's asks for one unless the
    WANDB_MODE environment variable says offline). Each trial's W&B files are written
    straight into its folder in the run (wandb/, where `wandb sync` finds offline runs):
    Ray's default, its local staging folder, reaches the run folder only when Ray next
    syncs it, which may be before W&B has finished writing."""

    _logger_actor_cls = _FlushingWandbActor

    def setup(self, *args: Any, **kwargs: Any) -> None:
        if self.kwargs.get("mode") == "offline":
            return
        super().setup(*args, **kwargs)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        """Ray's logger waits (up to 30 minutes) for every trial's logging actor to finish,
        but only trials that ended have been told to: after Ctrl-C or the budget's end the
        driver would hang. Tell the others too; `resume` starts them again."""
        for trial in list(self._trial_logging_futures):
            self._signal_logging_actor_stop(trial)
        super().on_experiment_end(trials, **info)

    def log_trial_start(self, trial: Any) -> None:
        if "://" not in trial.path:
            Path(trial.path).mkdir(parents=True, exist_ok=True)
            self.kwargs["dir"] = trial.path
        super().log_trial_start(trial)
