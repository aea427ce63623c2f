"""Every command on object storage, against a real S3-compatible server (moto's server mode).

The server runs in this process on a free port; pyarrow (and the Ray workers a search
starts) reach it through AWS_ENDPOINT_URL_S3, as a user points them at MinIO or Ceph. The
fast tests read a hand-made run uploaded to the bucket; the slow one runs a real tiny search
on s3://, interrupts it, resumes it, and runs status, report, evaluate and export on it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from analysis.remote import mirror_folder, run_folder
from search.cli import EXIT_NOT_A_RUN, EXIT_USAGE, main
from trainables import formats, run_files
from trainables.run_files import join_uri

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "wrn-runs"
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
       "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server with an empty bucket; the environment points pyarrow at it (and
    keeps the mirrors of remote runs in a throwaway folder). Yields the endpoint URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {**AWS, "AWS_ENDPOINT_URL_S3": endpoint,
           "WRN_SEARCH_RUN_CACHE": str(tmp_path_factory.mktemp("run-cache"))}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


def _fs() -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(f"s3://{BUCKET}")[0]


def _keys(prefix: str) -> list[str]:
    """Every object under s3://BUCKET/prefix, as paths relative to it."""
    root = f"{BUCKET}/{prefix}"
    infos = _fs().get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path[len(root) + 1:] for i in infos if i.type == pafs.FileType.File)


def _read(key: str) -> str:
    with _fs().open_input_stream(f"{BUCKET}/{key}") as f:
        return f.read().decode("utf-8")


def _one_error_line(capsys: pytest.CaptureFixture, code: int, expected: int) -> str:
    err = capsys.readouterr().err.strip()
    assert code == expected, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------- no server needed
def test_a_secret_in_a_storage_uri_is_masked() -> None:
    line = ("s3://AKIAEXAMPLE:wJalr/K7+MDENG@bucket/runs/x failed; "
            "gs://b/r?session_token=abc123&region=us; postgresql://u:pw@db/optuna")
    masked = formats.mask_secrets(line)
    assert "wJalr" not in masked and "abc123" not in masked and "pw@" not in masked
    assert "s3://AKIAEXAMPLE:***@bucket/runs/x" in masked and "session_token=***&region=us" in masked


def test_a_run_folder_under_a_uri_keeps_its_query_at_the_end() -> None:
    assert join_uri("s3://b/runs?scheme=http&endpoint_override=h:9", "tiny") == \
        "s3://b/runs/tiny?scheme=http&endpoint_override=h:9"
    assert join_uri("/data/runs/", "tiny") == "/data/runs/tiny"


def test_the_mirror_of_a_run_is_named_without_its_secret(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRN_SEARCH_RUN_CACHE", str(tmp_path))
    folder = mirror_folder("s3://KEY:SECRET@bucket/runs/tiny?region=eu-west-1")
    assert folder.name == "tiny" and folder.parent.parent == tmp_path
    assert "SECRET" not in str(folder)
    assert mirror_folder("s3://bucket/runs/tiny") != folder  # another URI, another mirror


# ------------------------------------------------------------------ a hand-made run on S3
@pytest.fixture(scope="module")
def fake_on_s3(s3: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The hand-made run of fake_run.py, with a checkpoint, uploaded under s3://BUCKET/runs."""
    from fake_run import make_run

    run_dir = make_run(tmp_path_factory.mktemp("fake"))
    trial = next(d for d in sorted(run_dir.iterdir()) if (d / run_files.RESULT_FILE).exists())
    (trial / "checkpoint_000001").mkdir()
    (trial / "checkpoint_000001" / run_files.BEST_FILE).write_bytes(b"weights")
    (run_dir / run_files.TUNER_FILE).write_bytes(b"ray's pickle")
    _fs().create_dir(f"{BUCKET}/runs/{run_dir.name}")
    pafs.copy_files(str(run_dir), f"{BUCKET}/runs/{run_dir.name}",
                    source_filesystem=pafs.LocalFileSystem(), destination_filesystem=_fs())
    return f"s3://{BUCKET}/runs/{run_dir.name}"


def test_status_and_report_read_a_run_on_s3_and_upload_the_report(
        fake_on_s3: str, capsys: pytest.CaptureFixture) -> None:
    name = fake_on_s3.rpartition("/")[2]
    assert main(["status", fake_on_s3]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"run {name}: finished") and "front (robust accuracy" in out
    mirrored = [p.relative_to(mirror_folder(fake_on_s3)).as_posix()
                for p in mirror_folder(fake_on_s3).rglob("*") if p.is_file()]
    assert f"{run_files.DRIVER_DIR}/{run_files.SPEC_JSON}" in mirrored
    assert not [p for p in mirrored if "checkpoint_" in p or p == run_files.TUNER_FILE]

    assert main(["report", fake_on_s3, "--format", "md,csv"]) == 0
    printed = capsys.readouterr().out.split()
    assert f"{fake_on_s3}/report/report.md" in printed and f"{fake_on_s3}/report/trials.csv" in printed
    uploaded = _keys(f"runs/{name}/report")
    assert {"report.md", "trials.csv", "front.csv"} <= set(uploaded)
    report = _read(f"runs/{name}/report/report.md")
    assert f"({fake_on_s3})" in report and str(mirror_folder(fake_on_s3)) not in report


def test_the_endpoint_may_be_given_in_the_uri_instead_of_the_environment(
        s3: str, fake_on_s3: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")
    host_port = s3.partition("://")[2]
    assert main(["status", f"{fake_on_s3}?endpoint_override={host_port}&scheme=http"]) == 0
    assert capsys.readouterr().out.startswith(f"run {fake_on_s3.rpartition('/')[2]}: finished")


def test_a_uri_without_a_run_is_one_line_with_the_documented_status(
        s3: str, fake_on_s3: str, capsys: pytest.CaptureFixture) -> None:
    parent = fake_on_s3.rpartition("/")[0]
    cases = [
        (["status", parent], EXIT_NOT_A_RUN, "it holds no run"),
        (["report", f"{parent}/missing"], EXIT_USAGE, "no such folder"),
        (["evaluate", "s3://no-such-bucket/runs/x"], EXIT_USAGE, "no bucket 'no-such-bucket'"),
        (["export", "s3://KEY:SECRET@no-such-bucket/x", "--knee"], EXIT_USAGE, "KEY:***@"),
        (["status", "nosuch://bucket/runs/x"], EXIT_USAGE, "pyarrow has no filesystem for it"),
        (["report", fake_on_s3, "--out", "s3://elsewhere/r"], EXIT_USAGE, "must be a local folder"),
    ]
    for args, status, reason in cases:
        line = _one_error_line(capsys, main(args), status)
        assert line.startswith("wrn-search: error: ") and reason in line, line
        assert "SECRET" not in line


def test_an_unreachable_endpoint_is_one_line_not_a_hang(
        s3: str, fake_on_s3: str, capsys: pytest.CaptureFixture) -> None:
    started = time.time()
    uri = fake_on_s3 + "?endpoint_override=127.0.0.1:9&scheme=http"  # nothing listens on port 9
    line = _one_error_line(capsys, main(["status", uri]), EXIT_USAGE)
    assert "it cannot be read from here" in line or "no answer within" in line, line
    assert time.time() - started < run_files.PROBE_TIMEOUT_S + 10


def test_a_local_run_is_read_in_place(tmp_path: Path) -> None:
    with run_folder(str(tmp_path)) as run:
        assert run.local == tmp_path and run.uri is None and run.display is None
    with run_folder(f"file://{tmp_path}") as run:
        assert run.local == tmp_path


# ------------------------------------------------------------- a real search on S3
def _cli(*args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _events(run: str) -> list[dict]:
    try:
        text = _read(f"runs/{run}/{run_files.DRIVER_DIR}/{run_files.EVENTS_FILE}")
    except FileNotFoundError:  # the search has not started a trial yet
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.mark.slow
def test_a_search_on_s3_is_interrupted_resumed_reported_evaluated_and_exported(
        s3: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from test_tuner import _toml, tiny_spec

    spec = tmp_path / "tiny.toml"
    spec.write_text(_toml(tiny_spec(tmp_path, name="s3tiny")))  # 4 trials, 2 at a time
    storage = f"s3://{BUCKET}/runs"
    uri = f"{storage}/s3tiny"
    driver = subprocess.Popen([sys.executable, "-m", "search.cli", "run", str(spec),
                               "--storage", storage], cwd=tmp_path, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 300
    while not any(e.get("event") == "complete" for e in _events("s3tiny")):
        assert driver.poll() is None, driver.communicate()[1][-3000:]
        assert time.time() < deadline, "no trial finished in time"
        time.sleep(0.5)
    driver.send_signal(signal.SIGINT)  # one trial finished, others running or pending
    out, err = driver.communicate(timeout=180)
    assert driver.returncode == 130, err[-3000:]
    assert "search interrupted" in out and f"wrn-search resume {uri}" in out
    assert f"report: {uri}/report/" in out  # the end-of-run report, on S3 too
    assert "PARTIAL RUN" in _read("runs/s3tiny/report/report.md")
    finished = {e["trial_id"] for e in _events("s3tiny") if e.get("event") == "complete"}
    assert finished

    resumed = _cli("resume", uri)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "search finished: 4 trials" in resumed.stdout
    events = _events("s3tiny")
    for trial_id in finished:  # no finished trial lost, none trained again
        assert sum(e.get("event") == "start" and e["trial_id"] == trial_id for e in events) == 1
    assert "PARTIAL RUN" not in _read("runs/s3tiny/report/report.md")

    assert main(["status", uri]) == 0
    assert "4 complete" in capsys.readouterr().out
    assert main(["evaluate", uri, "--n", "20", "--attacks", "fgsm", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert f"results in {uri}/evaluation" in out and "uploaded" in out
    assert any(k.endswith(".json") and k != run_files.TRANSFER_FILE
               for k in _keys("runs/s3tiny/evaluation"))
    assert main(["report", uri, "--format", "md"]) == 0
    capsys.readouterr()
    assert "Test-split evaluation" in _read("runs/s3tiny/report/report.md")

    code = main(["export", uri, "--knee"])
    captured = capsys.readouterr()
    if code != 0:  # four tiny models need not make a front with a knee: name one instead
        assert "has no knee" in captured.err, captured.err
        member = captured.err.rsplit("front members: ", 1)[1].split(",")[0].split(";")[0].strip()
        code = main(["export", uri, "--trial", member])
        captured = capsys.readouterr()
    assert code == 0, captured.err
    exported = [k for k in _keys("runs/s3tiny/export") if k.endswith("model.pt2")]
    assert len(exported) == 1 and f"to {uri}/export/" in captured.out
