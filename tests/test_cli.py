"""The command line: `run --dry-run`, and one line per bad input (search/cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT, run_cli
from test_train_folder import TINY_TRAIN

from search.cli import main
from trainables.config import ConfigError


def _one_error_line(capsys: pytest.CaptureFixture, code: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("wrn-search")
    return err


@pytest.mark.parametrize(("args", "needle"), [
    (["train", "--depth", "35"], "model.depth: 35 is not allowed"),
    (["train", "--width", "0"], "model.width: 0"),
    (["train", "--epsilon", "2"], "training.eps: '2'"),
    (["train", "--epsilon", "eight"], "training.eps: 'eight'"),
    (["train", "--method", "trades"], "training.method: 'trades'"),
    (["train", "--eval-epsilon", "8/0"], "threat_model.epsilons"),
    (["train", "--dataset", "mnist"], "data.dataset: 'mnist'"),
    (["train", "--dataset", "cifar10", "--data-dir", "/nonexistent/cifar"], "/nonexistent/cifar"),
    (["train", "--depth", "ten"], "argument --depth: invalid int value"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    (["run", "/nonexistent/spec.toml"], "spec: '/nonexistent/spec.toml' does not exist"),
    (["resume", "/nonexistent/run"], "RUN_DIR: '/nonexistent/run'"),
])
def test_bad_input_is_one_line_and_exit_2(args: list[str], needle: str,
                                          capsys: pytest.CaptureFixture) -> None:
    try:
        code = main(args)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert needle in _one_error_line(capsys, code)


def test_cuda_requested_without_cuda(capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is present")
    code = main([*TINY_TRAIN, "--device", "cuda", "--out", "unused"])
    assert "device: 'cuda' is not allowed" in _one_error_line(capsys, code)


def test_bad_spec_field_fails_before_ray(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "bad.toml"
    spec.write_text('[scheduler]\nkind = "hyperband"\n')
    code = main(["run", str(spec)])
    assert "scheduler.kind: 'hyperband' is not allowed; allowed: mo-asha, asha, none" in \
        _one_error_line(capsys, code)


def test_run_dry_run_prints_the_validated_spec(tmp_path: Path) -> None:
    done = run_cli("run", str(ROOT / "configs" / "quickstart.toml"), "--dry-run", "--budget", "90s")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["budget"]["time"] == 90.0
    assert shown["parameter_range"] == {"min": 77_850, "max": 691_674}
    assert shown["space"]["depth"] == [10, 16]
    assert 0 < shown["predicted_full_training_s"]["share_that_fits_the_budget"] <= 1
    assert "warning" not in shown
    hopeless = json.loads(run_cli("run", str(ROOT / "configs" / "quickstart.toml"), "--dry-run",
                                  "--budget", "1s").stdout)
    assert hopeless["predicted_full_training_s"]["share_that_fits_the_budget"] == 0
    assert hopeless["warning"].startswith("no configuration is predicted to finish in 1 s")


def test_a_gpu_specs_dry_run_is_planned_for_gpus_not_this_machines_cpus() -> None:
    """configs/cifar10-wrn.toml asks for "auto" GPU shares: its predictions rest on the GPU
    prior (this machine has no GPU to measure), and say so."""
    from search.cost_model import GPU_PRIOR_FLOPS_PER_S

    done = run_cli("run", str(ROOT / "configs" / "cifar10-wrn.toml"), "--dry-run")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["plan"]["cost_prior_flops_per_s"] == GPU_PRIOR_FLOPS_PER_S
    assert shown["predicted_full_training_s"]["basis"] == "a prior of 20 TFLOP/s per GPU"


def test_version_is_the_installed_one(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"wrn-search {version('wrn-search')}"


@pytest.mark.parametrize("command", [["run", "spec.toml"], ["resume", "runs/demo"]])
def test_ray_address_from_the_environment_as_rays_tools_use_it(
        command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from search.cli import build_parser

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert build_parser().parse_args(command).address is None  # start an embedded Ray
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert build_parser().parse_args(command).address == "10.0.0.5:6379"
    assert build_parser().parse_args([*command, "--address", "auto"]).address == "auto"


@pytest.mark.parametrize("command", ["status", "report"])
def test_a_folder_that_holds_no_run_exits_3_and_writes_nothing(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from search.cli import EXIT_NOT_A_RUN

    (tmp_path / "notes.txt").write_text("not a run")
    assert main([command, str(tmp_path)]) == EXIT_NOT_A_RUN
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("wrn-search: error: RUN_DIR: ")
    assert "holds no run" in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert main([command, str(tmp_path / "missing")]) == 2  # no folder at all: bad input


@pytest.mark.parametrize(("state", "trials", "errored", "status"), [
    ("finished", 3, 3, 1),  # every trial errored
    ("budget_exhausted", 0, 0, 1),  # none could start
    ("finished", 3, 1, 0),
    ("budget_exhausted", 2, 0, 0),
    ("interrupted", 2, 2, 130),
])
def test_a_search_exit_status_says_how_it_ended(state: str, trials: int, errored: int,
                                                 status: int, capsys: pytest.CaptureFixture) -> None:
    from search.cli import _searching
    from search.tuner import Outcome

    outcome = Outcome("runs/x", state, trials, errored, 12.0)
    assert _searching(lambda printer: outcome, no_report=True) == status
    assert ("no trial produced results" in capsys.readouterr().out) == (status == 1)


def test_every_exit_status_is_in_the_readme_table() -> None:
    import re

    import search.cli as cli

    defined = {v for k, v in vars(cli).items() if k.startswith("EXIT_")}
    text = (ROOT / "README.md").read_text()
    table = text[text.index("### Exit status"):]
    table = table[:table.index("\n\n", table.index("|"))]
    assert {int(c) for c in re.findall(r"^\| (\d+) \|", table, re.M)} == defined


def test_a_database_password_is_masked_in_dry_run_and_error_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "secret.toml"
    spec.write_text('[storage]\noptuna_url = "postgresql://user:PASSWORD@db.example/optuna"\n')
    assert main(["run", str(spec), "--dry-run"]) == 0
    shown = capsys.readouterr()
    assert "PASSWORD" not in shown.out + shown.err
    assert json.loads(shown.out)["storage"]["optuna_url"] == "postgresql://user:***@db.example/optuna"
    bad = tmp_path / "bad.toml"
    bad.write_text('[storage]\noptuna_url = "postgresql:PASSWORD@db.example"\n')  # no ://
    line = _one_error_line(capsys, main(["run", str(bad)]))
    assert line.startswith("wrn-search: error: storage.optuna_url:")
    # The URL from the environment: resolved at run time, one line when it is not set.
    env = tmp_path / "env.toml"
    env.write_text('[storage]\noptuna_url = "env:WRN_TEST_OPTUNA_URL"\n')
    monkeypatch.delenv("WRN_TEST_OPTUNA_URL", raising=False)
    from search.spec import load_spec
    from search.tuner import run_search

    with pytest.raises(ConfigError, match="WRN_TEST_OPTUNA_URL is not set"):
        run_search(load_spec(env, **{"storage.path": str(tmp_path / "runs")}))
    assert not (tmp_path / "runs" / "env").exists()  # refused before Ray and before any file


def test_an_opening_error_never_shows_the_password(capsys: pytest.CaptureFixture) -> None:
    from search.searchers import build_searcher
    from search.spec import ExperimentSpec

    spec = ExperimentSpec.from_dict({"storage": {"optuna_url": "nodriver://user:PASSWORD@h/d"}})
    with pytest.raises(ConfigError) as err:
        build_searcher(spec)
    assert "PASSWORD" not in str(err.value) and "user:***@h/d" in str(err.value)


def _storage_cases(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return [
        ("http://example.com/runs", "pyarrow has no filesystem for it"),
        (str(a_file), "it is a file, not a folder"),
        (str(a_file / "runs"), "run folders cannot be written there (NotADirectoryError"),
        ("/sys/wrn-search-read-only", "run folders cannot be written there (PermissionError"),
    ]


def test_storage_that_cannot_hold_runs_is_one_line_before_ray(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import ray

    spec = str(ROOT / "configs" / "quickstart.toml")
    for storage, reason in _storage_cases(tmp_path):
        if storage.startswith("/sys/") and not Path("/sys/kernel").is_dir():
            continue  # no sysfs here (Linux's /sys takes no new folder, even from root)
        line = _one_error_line(capsys, main(["run", spec, "--storage", storage]))
        assert line.startswith(f"wrn-search: error: --storage / storage.path: {storage!r} is not "
                               "allowed; "), line
        assert reason in line, line
        assert not ray.is_initialized()
    line = _one_error_line(capsys, main(["resume", "http://example.com/runs/demo"]))
    assert "RUN_DIR: 'http://example.com/runs/demo' is not allowed; pyarrow has no filesystem" in line


def test_a_model_too_large_to_train_is_one_line_before_ray(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    spec = tmp_path / "huge.toml"
    spec.write_text("[space]\nwidth = 100000\n")
    for args in (["run", str(spec), "--dry-run"], ["run", str(spec)]):
        line = _one_error_line(capsys, main(args))
        assert "space: 'WRN-28-100000' is not allowed; the space's largest model has 3.64e+15 " \
               "parameters" in line


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    """A search that finished at its trial cap (2 trials, 90 s of a 300 s budget), made by
    hand: `resume`'s checks run before Ray starts."""
    from test_tuner import _damaged_run

    from trainables import run_files

    run_dir = _damaged_run(tmp_path, (9, 9))
    (run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE).write_text(json.dumps(
        {"name": "tiny", "budget_s": 300.0, "elapsed_s": 90.0, "state": "finished", "resumes": 0,
         "created": "2026-09-21T14:13:20+00:00"}))
    return run_dir


@pytest.mark.parametrize(("flags", "needle"), [
    ([], "that search already finished (give it more with --budget +1h or --max-trials +10"),
    (["--budget=-5m"], "--budget: '-5m' is not allowed; a duration to add ('+2h', '+30m') or the "
                       "new total ('5h')"),
    (["--budget", "-5m"], "argument --budget: expected one argument"),
    (["--budget", "+abc"], "--budget: '+abc' is not allowed"),
    (["--budget", "+"], "--budget: '+' is not allowed"),
    (["--budget", "1m"], "--budget: '1m' is not allowed; the new budget (1m00s) must exceed the "
                         "1m30s the search already spent"),
    (["--max-trials", "0"], "--max-trials: '0' is not allowed; a number of trials to add"),
    (["--max-trials", "+0"], "--max-trials: '+0' is not allowed"),
    (["--max-trials", "2.5"], "--max-trials: '2.5' is not allowed"),
    (["--max-trials", "2"], "--max-trials: '2' is not allowed; the new cap (2) must exceed the 2 "
                            "trials the search already started"),
    (["--budget", "+30s"], "that search already finished and its 2 trials reached the trial cap "
                           "(raise it with --max-trials)"),
])
def test_resume_bad_extensions_are_one_line_and_exit_2(finished_run: Path, flags: list[str],
                                                       needle: str,
                                                       capsys: pytest.CaptureFixture) -> None:
    from trainables import run_files

    before = (finished_run / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text()
    try:
        code = main(["resume", str(finished_run), *flags])
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert needle in _one_error_line(capsys, code)
    assert (finished_run / run_files.DRIVER_DIR / run_files.RUN_FILE).read_text() == before
