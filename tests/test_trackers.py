"""The `[logging]` trackers and `--dashboard` (search/trackers.py, search/cluster.py).

The searches here are real (Ray, Optuna, PyTorch on the bundled sample) and so are the
trackers: an MLflow store on disk read back with MlflowClient, and W&B in offline mode, its
run files read back record by record. Nothing reaches the network.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import ray
from test_tuner import _results, _toml, interrupt_mid_training, tiny_spec

from search.cli import main
from search.spec import ExperimentSpec, LoggingConfig
from search.trackers import (
    MLFLOW_DB,
    MlflowTracker,
    WandbTracker,
    build_callbacks,
    check_trackers,
    tracking_uri,
)
from search.tuner import run_search
from trainables import metrics as M
from trainables.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SECRET = "PASSWORD0123456789SECRETKEY0123456789abcd"  # a W&B key or an MLflow password: 40 chars
PROJECT = "wrn-search-test"


def _spec(root: Path, logging: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """Two tiny trials (WRN-10-1, PGD-1 and PGD-2), 2 epochs each, with trackers."""
    raw = tiny_spec(root, budget={"max_trials": 2, "max_concurrent": 2},
                    space={"width": [1], "train_steps": [1, 2]}, **changes)
    return {**raw, "logging": logging}


def _offline_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No W&B settings from the machine: offline comes from the spec alone."""
    for name in ("WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT_NAME", "WANDB_GROUP_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of a W&B run file (.wandb): W&B's LevelDB-style log, 32 KiB blocks
    of records each with a 7-byte header (CRC, length, kind: 1 whole, 2 first, 3 middle,
    4 last), after a 7-byte file header. wandb >= 0.19 ships no Python reader for it."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:8]
    pos, block, records, partial = 7, 32768, [], b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        partial += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(partial)
            records.append(record)
            partial = b""
    return records


def wandb_run(trial_dir: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    """The W&B run records of one trial's offline runs, and its logged rows (history)."""
    runs, rows = [], []
    for path in sorted(trial_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                runs.append(record.run)
            elif kind == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})
    return runs, rows


def mlflow_runs(uri: str, experiment: str) -> dict[str, Any]:
    """{trial id: MLflow run} of one experiment, read back with MLflow's own client."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, client.search_experiments()
    return {run.data.tags["trial_id"]: run for run in client.search_runs([found.experiment_id])}


def mlflow_steps(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    import mlflow

    history = mlflow.MlflowClient(tracking_uri=uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


@pytest.fixture
def local_ray():
    yield
    ray.shutdown()


def test_a_search_logs_every_trial_to_an_mlflow_file_store_and_wandb_offline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_ray: None) -> None:
    _offline_env(monkeypatch)
    monkeypatch.setenv("WANDB_API_KEY", SECRET)  # present, and never written anywhere
    monkeypatch.chdir(tmp_path)  # the relative tracking path is taken from here
    raw = _spec(tmp_path / "runs", {"mlflow": {"tracking_uri": "file:store", "experiment": "tiny-exp"},
                                    "wandb": {"project": PROJECT, "mode": "offline"}})
    outcome = run_search(ExperimentSpec.from_dict(raw), spec_text=_toml(raw))
    assert outcome.state == "finished" and outcome.trials == 2 and outcome.errored == 0
    run_dir = tmp_path / "runs" / "tiny"
    results = _results(run_dir)
    trials = {name.split("_")[1]: rows for name, rows in results.items()}
    assert len(trials) == 2 and all(len(rows) == 2 for rows in trials.values())

    # MLflow: one run per trial, its parameters, and each epoch's metrics at its step
    uri = (tmp_path / "store").as_uri()
    assert (tmp_path / "store").is_dir()
    runs = mlflow_runs(uri, "tiny-exp")
    assert set(runs) == set(trials)
    for trial_id, run in runs.items():
        rows = trials[trial_id]
        assert run.info.status == "FINISHED"
        assert run.data.tags["wrn_search_run"] == "tiny"
        assert run.data.params["width"] == "1" and run.data.params["depth"] == "10"
        assert run.data.params["train_steps"] == str(rows[-1][M.TRAIN_STEPS])
        assert run.data.params["trial/data/dataset"] == "cifar10-sample"
        key = M.robust_acc_key(8 / 255)
        assert mlflow_steps(uri, run.info.run_id, key) == [(1, rows[0][key]), (2, rows[1][key])]
        assert mlflow_steps(uri, run.info.run_id, M.BEST_VAL_ROBUST_ACC)[-1] == \
            (2, rows[-1][M.BEST_VAL_ROBUST_ACC])
        assert not [k for k in run.data.metrics if k.startswith("config/")]

    # W&B offline: each trial's run in its own folder, with both epochs' rows
    for name, rows in results.items():
        trial_id = name.split("_")[1]
        (run,), logged = wandb_run(run_dir / name)
        assert run.run_id == trial_id and run.project == PROJECT and run.run_group == "tiny"
        assert [r["training_iteration"] for r in logged] == [1, 2]
        assert [r[M.VAL_ROBUST_ACC] for r in logged] == [r[M.VAL_ROBUST_ACC] for r in rows]
        assert [r[M.EPOCHS_DONE] for r in logged] == [1, 2]

    # the key is in no file of the run (spec.json, spec.toml, tuner.pkl, W&B's own files)
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # the callbacks come back from tuner.pkl as `resume` restores them
    stored = pickle.loads((run_dir / "tuner.pkl").read_bytes())
    kinds = {type(c) for c in stored["_run_config"].callbacks}
    assert {MlflowTracker, WandbTracker} <= kinds


def test_tracker_callbacks_pickle_without_secrets(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import ray.cloudpickle as cloudpickle

    literal = LoggingConfig(mlflow={"tracking_uri": f"http://me:{SECRET}@mlflow.example:5000"},
                            wandb={"mode": "online", "entity": "team"})
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    mlflow_cb, wandb_cb = build_callbacks(literal, str(tmp_path / "tiny"), "tiny")
    assert mlflow_cb.tracking_uri == f"http://me:{SECRET}@mlflow.example:5000"  # used, in memory
    for callback in (mlflow_cb, wandb_cb):
        assert SECRET.encode() not in cloudpickle.dumps(callback)
    restored = pickle.loads(cloudpickle.dumps(mlflow_cb))
    assert restored.tracking_uri == "http://me:***@mlflow.example:5000"
    with pytest.raises(ConfigError, match=r"^logging.mlflow.tracking_uri: .*password is not kept"):
        restored.setup()  # resume cannot reopen it: one line, as for storage.optuna_url
    assert wandb_cb.kwargs == {"mode": "online", "resume": "allow", "entity": "team"}  # no key

    # "env:NAME" is pickled as written and read from the environment at setup
    env = LoggingConfig(mlflow={"tracking_uri": "env:WRN_MLFLOW_URI"})
    (callback,) = build_callbacks(env, str(tmp_path / "tiny"), "tiny")
    blob = cloudpickle.dumps(callback)
    assert b"env:WRN_MLFLOW_URI" in blob
    monkeypatch.setenv("WRN_MLFLOW_URI", f"sqlite:///{tmp_path}/env.db")
    pickle.loads(blob).setup()
    assert (tmp_path / "env.db").exists()
    monkeypatch.delenv("WRN_MLFLOW_URI")
    with pytest.raises(ConfigError, match=r"^logging.mlflow.tracking_uri: 'env:WRN_MLFLOW_URI' is "
                                          r"not allowed; the environment variable WRN_MLFLOW_URI"):
        check_trackers(env)


def test_tracking_uris_default_to_the_run_folder_and_paths_to_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = LoggingConfig(mlflow={}).mlflow
    assert tracking_uri(config, "/runs/tiny") == f"sqlite:////runs/tiny/{MLFLOW_DB}"
    for written in ("mlruns", "./mlruns", "file:mlruns", str(tmp_path / "mlruns")):
        config = LoggingConfig(mlflow={"tracking_uri": written}).mlflow
        assert tracking_uri(config, "/runs/tiny") == (tmp_path / "mlruns").as_uri()
    for uri in ("http://mlflow.example:5000", "databricks", "env:URI"):
        config = LoggingConfig(mlflow={"tracking_uri": uri}).mlflow
        assert tracking_uri(config, "/runs/tiny") == uri
    with pytest.raises(ConfigError, match=r"^logging.mlflow.tracking_uri: None is not allowed; "
                                          r"must be set when the run folder is not local"):
        tracking_uri(LoggingConfig(mlflow={}).mlflow, "s3://bucket/runs/tiny")


def test_offline_wandb_needs_no_key_and_online_without_one_is_one_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _offline_env(monkeypatch)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path))  # no stored `wandb login`
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    offline = LoggingConfig(wandb={"mode": "offline"})
    check_trackers(offline)
    (callback,) = build_callbacks(offline, str(tmp_path), "tiny")
    callback.setup()  # Ray's own setup asks for a key even offline
    with pytest.raises(ConfigError, match=r"^logging.wandb.mode: 'online' is not allowed; no W&B "
                                          r"API key: export WANDB_API_KEY"):
        check_trackers(LoggingConfig(wandb={}))


def _one_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize(("tracker", "module"), [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_a_tracker_whose_package_is_missing_names_its_extra_before_ray(
        tracker: str, module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: import fails
    spec = tmp_path / "t.toml"
    spec.write_text(_toml(_spec(tmp_path / "runs", {tracker: {"mode": "offline"}
                                                   if tracker == "wandb" else {}})))
    assert main(["run", str(spec)]) == 2
    err = _one_line(capsys)
    assert err == (f"wrn-search: error: logging.{tracker}: {tracker!r} is not allowed; the "
                   f"{module} package is not installed; pip install \"wrn-search[{tracker}]\"")
    assert not ray.is_initialized() and not (tmp_path / "runs" / "tiny").exists()


def test_dashboard_is_refused_with_an_address_or_without_its_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "t.toml"
    spec.write_text(_toml(_spec(tmp_path / "runs", {})))
    assert main(["run", str(spec), "--dashboard", "--address", "10.0.0.5:6379"]) == 2
    assert _one_line(capsys).startswith("wrn-search: error: --dashboard: '10.0.0.5:6379' is not "
                                        "allowed; --dashboard starts the embedded Ray's")
    monkeypatch.delitem(sys.modules, "ray.dashboard.optional_deps", raising=False)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # as without ray[default]
    for command in (["run", str(spec)], ["resume", str(tmp_path / "runs" / "tiny")]):
        assert main([*command, "--dashboard"]) == 2
        err = _one_line(capsys)
        assert err.startswith("wrn-search: error: --dashboard: the Ray dashboard's packages are "
                              "not installed (aiohttp is missing)"), err
        assert err.endswith('pip install "wrn-search[dashboard]"')
    assert not ray.is_initialized() and not (tmp_path / "runs").exists()


def _dashboard_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_dashboard_and_trackers_through_ctrl_c_and_resume(tmp_path: Path) -> None:
    """The CLI as a user runs it: `run --dashboard` with both trackers (MLflow in its default
    store, the run folder's database), Ctrl-C after the first epoch, `resume --dashboard`: the
    dashboard answers on 127.0.0.1 both times, and each trial keeps one MLflow run that holds
    all its epochs."""
    raw = _spec(tmp_path, {"mlflow": {}, "wandb": {"project": PROJECT, "mode": "offline"}},
                training={"epochs": 3})
    spec = tmp_path / "tiny.toml"
    spec.write_text(_toml(raw))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(ROOT), WANDB_SILENT="true")
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec), "--dashboard",
                               "--no-report"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    first = driver.stdout.readline()  # type: ignore[union-attr]
    url = re.fullmatch(r"Ray dashboard: (http://127\.0\.0\.1:\d+)\n", first)
    assert url, (first, driver.poll())
    assert _dashboard_answers(url[1])
    run_dir = tmp_path / "tiny"
    interrupt_mid_training(driver, run_dir, trials=2, epochs=3)
    uri = f"sqlite:///{run_dir / MLFLOW_DB}"
    assert {run.info.status for run in mlflow_runs(uri, "tiny").values()} == {"KILLED"}

    resumed = subprocess.Popen([sys.executable, "-m", "search.cli", "resume", str(run_dir),
                                "--dashboard", "--no-report"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = resumed.stdout.readline()  # type: ignore[union-attr]
    url = re.fullmatch(r"Ray dashboard: (http://127\.0\.0\.1:\d+)\n", first)
    assert url and _dashboard_answers(url[1]), first
    out, err = resumed.communicate(timeout=400)
    assert resumed.returncode == 0, err[-3000:]
    assert "search finished: 2 trials" in out and "Ray dashboard" not in out  # said once

    runs = mlflow_runs(uri, "tiny")
    results = {name.split("_")[1]: rows for name, rows in _results(run_dir).items()}
    assert set(runs) == set(results)  # one MLflow run per trial, across the resume
    for trial_id, run in runs.items():
        assert run.info.status == "FINISHED"
        steps = mlflow_steps(uri, run.info.run_id, M.EPOCHS_DONE)
        assert [s for s, _ in steps][-1] == 3 and steps[-1][1] == 3
        assert results[trial_id][-1][M.EPOCHS_DONE] == 3
    for name in _results(run_dir):
        runs_wb, logged = wandb_run(run_dir / name)
        assert {r.run_id for r in runs_wb} == {name.split("_")[1]}
        assert max(r[M.EPOCHS_DONE] for r in logged) == 3
