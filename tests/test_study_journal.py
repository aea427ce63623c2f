"""The Optuna study kept in the run folder (search.searchers.RunJournal): what a person watching
the run sees in it, in another process, through optuna-dashboard, and after a resume from a
moved folder. Real Optuna throughout; the one real Ray search is marked slow."""

from __future__ import annotations

import io
import json
import logging
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_searchers import COMPLETE, FOUR, PRUNED, _key, _result
from test_spec import VALID
from test_tuner import local_ray, tiny_spec  # noqa: F401  (local_ray: a fixture)

from analysis.status import status_text
from search.searchers import (
    JOURNAL_IN_RUN,
    LOST,
    NOT_TRAINED,
    TWIN_OF,
    build_searcher,
    journal_path,
    study_storage,
)
from search.spec import ExperimentSpec
from search.tuner import _check_journal, run_search
from trainables import metrics as M
from trainables import run_files
from trainables.config import ConfigError

# Run in a fresh interpreter: the study as `optuna.load_study` reads it from the journal alone.
READ_STUDY = """
import json, sys, optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
study = optuna.load_study(study_name=sys.argv[2], storage=JournalStorage(JournalFileBackend(sys.argv[1])))
print(json.dumps([{"number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
                   "user_attrs": t.user_attrs} for t in study.trials]))
"""


def read_study(journal: Path, name: str) -> list[dict[str, Any]]:
    out = subprocess.run([sys.executable, "-c", READ_STUDY, str(journal), name],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout)


def dashboard_get(journal: Path, path: str) -> dict[str, Any]:
    """GET one optuna-dashboard API path through its WSGI app (what `optuna-dashboard FILE`
    serves), opened on the journal file the way its CLI opens one."""
    from optuna_dashboard import wsgi
    from optuna_dashboard._storage_url import get_storage

    app = wsgi(get_storage(str(journal)))
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
               "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
               "wsgi.errors": sys.stderr}
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    assert status[0].startswith("200"), (status, body[:300])
    return json.loads(body)


def _searcher(run_dir: Path, **changes: Any) -> Any:
    spec = ExperimentSpec.from_dict({**VALID, "space": FOUR, **changes})
    searcher = build_searcher(spec, run_dir=str(run_dir))
    searcher.set_search_properties(None, None, {})
    return searcher


def test_the_study_is_a_journal_in_the_run_folder_that_another_process_and_the_dashboard_read(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    searcher = _searcher(run_dir, searcher={"kind": "tpe", "seed": 0, "n_startup_trials": 1})
    trained = {}
    for i in range(4):  # the whole 4-point space; TPE repeats points on the way (twins)
        config = searcher.suggest(str(i))
        searcher.on_trial_complete(str(i), _result(3 if i % 2 else 1, acc=0.1 * i))
        trained[_key(config)] = COMPLETE if i % 2 else PRUNED
    journal = run_dir / run_files.DRIVER_DIR / run_files.OPTUNA_JOURNAL
    assert journal.is_file() and str(journal) == journal_path(str(run_dir))
    record = searcher.study_record()
    assert record == {"study": searcher._study_name, "storage": JOURNAL_IN_RUN}  # noqa: SLF001

    trials = read_study(journal, record["study"])
    ran = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert {(t["params"][M.DEPTH], t["params"][M.WIDTH]): t["state"] for t in ran} == {
        k: v.name for k, v in trained.items()}
    assert len(ran) == 4 and all(NOT_TRAINED not in t["user_attrs"] for t in ran)
    assert all(t["values"] is not None for t in ran if t["state"] == "COMPLETE")
    twins = [t for t in trials if TWIN_OF in t["user_attrs"]]
    assert twins, "TPE drew no repeat in a 4-point space: the twin rule went untested"
    assert all(t["state"] == "FAIL" and t["user_attrs"][NOT_TRAINED] for t in twins)
    assert all(trials[t["user_attrs"][TWIN_OF]]["state"] in ("COMPLETE", "PRUNED") for t in twins)

    studies = dashboard_get(journal, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [record["study"]]
    detail = dashboard_get(journal, f"/api/studies/{studies[0]['study_id']}")
    assert len(detail["trials"]) == len(trials)
    assert sum(t["state"] == "Complete" for t in detail["trials"]) == 2
    assert len(detail["best_trials"]) >= 1


def test_a_resumed_search_keeps_its_study_when_the_run_folder_moved(tmp_path: Path) -> None:
    """What `resume` does: Ray unpickles the searcher from tuner.pkl, search.tuner._attach
    points it at the folder where the run is now, Ray restores its saved state (which names
    the old folder); trials asked after that save were lost with the driver."""
    old, new = tmp_path / "old" / "run", tmp_path / "new" / "run"
    searcher = _searcher(old, searcher={"kind": "random", "seed": 0})
    as_built = pickle.dumps(searcher)  # tuner.pkl
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.on_trial_complete("a", _result(3))
    state = tmp_path / "searcher-state.pkl"
    searcher.save(str(state))  # Ray's periodic checkpoint: "b" still runs
    searcher.suggest("c")  # asked after the last checkpoint, then the driver dies
    name = searcher._study_name  # noqa: SLF001
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))

    resumed = pickle.loads(as_built)
    resumed.attach_run(str(new))
    resumed.restore(str(state))
    resumed.on_trial_complete("b", _result(1))
    assert isinstance(resumed.suggest("d"), dict)
    assert not old.exists(), "the resumed searcher wrote to the folder the run left"

    trials = read_study(new / run_files.DRIVER_DIR / run_files.OPTUNA_JOURNAL, name)
    states = [(t["state"], t["user_attrs"].get(NOT_TRAINED)) for t in trials
              if TWIN_OF not in t["user_attrs"]]  # repeats the sampler drew on the way
    assert states == [("COMPLETE", None), ("PRUNED", None), ("FAIL", LOST), ("RUNNING", None)]
    assert trials[-1]["params"] == resumed._ot_trials["d"].params  # noqa: SLF001
    assert all(t["user_attrs"].get(TWIN_OF) != 2 for t in trials)  # the lost one was not trained


def test_a_run_on_object_storage_keeps_the_study_in_memory_and_says_so(
        caplog: pytest.LogCaptureFixture) -> None:
    spec = ExperimentSpec.from_dict(VALID)
    with caplog.at_level(logging.WARNING):
        assert study_storage(spec, "s3://bucket/runs/t") is None
    assert [r.getMessage().count("in memory") for r in caplog.records] == [1]
    assert study_storage(spec, None) is None  # no run folder (tools, tests): in memory, quietly


def test_resume_refuses_a_run_whose_journal_is_gone(tmp_path: Path) -> None:
    record = {"optuna": {"study": "t-1", "storage": JOURNAL_IN_RUN}}
    with pytest.raises(ConfigError, match=r"^RUN_DIR: .*optuna.journal is missing"):
        _check_journal(str(tmp_path), record)
    _check_journal(str(tmp_path), {"optuna": {"study": "t-1", "storage": "memory"}})


@pytest.mark.slow
def test_a_real_search_leaves_a_journal_of_exactly_its_trained_trials(tmp_path: Path,
                                                                       local_ray) -> None:  # noqa: F811
    """A 2-point space, TPE, room for 50 trials: the sampler repeats points, the search trains
    each once and ends; the journal holds both trainings and the repeats as not trained."""
    raw = tiny_spec(tmp_path, budget={"time": "5m", "max_trials": 50, "max_concurrent": 2},
                    searcher={"kind": "tpe", "seed": 0, "n_startup_trials": 1},
                    training={"epochs": 1}, space={"train_steps": 1})
    outcome = run_search(ExperimentSpec.from_dict(raw))
    assert outcome.state == "finished" and outcome.trials == 2
    run_dir = tmp_path / "tiny"
    record = json.loads((run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text())["optuna"]
    journal = run_dir / record["storage"]
    trials = read_study(journal, record["study"])
    ran = [t for t in trials if t["state"] in ("COMPLETE", "PRUNED")]
    assert sorted(t["params"][M.WIDTH] for t in ran) == [1, 2]
    assert all(t["state"] == "COMPLETE" and len(t["values"]) == 2 for t in ran)
    assert all(t["state"] == "FAIL" and NOT_TRAINED in t["user_attrs"]
               for t in trials if t not in ran)
    studies = dashboard_get(journal, "/api/studies")["study_summaries"]
    assert [s["study_name"] for s in studies] == [record["study"]]
    assert f"optuna-dashboard {journal}" in status_text(run_dir)


def test_a_grid_point_lost_with_the_driver_is_trained_after_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    searcher = _searcher(run_dir, searcher={"kind": "grid", "seed": 0})
    as_built = pickle.dumps(searcher)
    first = searcher.suggest("a")
    state = tmp_path / "searcher-state.pkl"
    searcher.save(str(state))
    lost = searcher.suggest("b")  # asked after the checkpoint: lost with the driver
    resumed = pickle.loads(as_built)
    resumed.attach_run(str(run_dir))
    resumed.restore(str(state))
    resumed.on_trial_complete("a", _result(3))
    trained = [_key(first)]
    for i in range(8):
        config = resumed.suggest(f"r{i}")
        if not isinstance(config, dict):
            break
        trained.append(_key(config))
        resumed.on_trial_complete(f"r{i}", _result(3))
    assert resumed.suggest("end") == "FINISHED" and resumed.ended == "space"
    assert sorted(trained) == [(10, 1), (10, 2), (16, 1), (16, 2)] and _key(lost) in trained
    # The grid proposed the freed point in its turn: the only repeats are the two draws that
    # found the grid used up (a lost point left visited costs random redraws of seen ones).
    trials = resumed._ot_study.trials  # noqa: SLF001
    assert sum(TWIN_OF in t.user_attrs for t in trials) == 2
