"""The fault-injection suite (cases in tests/faults.py; the matrix in docs/reliability.md).

Fast: every kind of damage to every file a report reads, on the hand-made run folder:
`status` and `report` answer (or refuse in one line) and never print a traceback.
Slow: real tiny searches interrupted, killed and damaged at every phase, then resumed;
no finished trial lost or rerun, no traceback, nothing written outside the run folder.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import faults
import pytest
from fake_run import make_run

from search.cli import main
from trainables import run_files

FAKE_TARGETS = {
    "run.json": lambda r: r / run_files.DRIVER_DIR / run_files.RUN_FILE,
    "spec.json": lambda r: r / run_files.DRIVER_DIR / run_files.SPEC_JSON,
    "events.jsonl": lambda r: r / run_files.DRIVER_DIR / run_files.EVENTS_FILE,
    "result.json": lambda r: sorted(r.glob(f"train_wrn_*/{run_files.RESULT_FILE}"))[0],
}


def _cli(*args: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, out.getvalue() + err.getvalue()


@pytest.mark.parametrize("how", faults.DAMAGES)
@pytest.mark.parametrize("target", FAKE_TARGETS)
def test_status_and_report_survive_a_damaged_file(tmp_path: Path, target: str, how: str) -> None:
    run = make_run(tmp_path)
    faults.damage(FAKE_TARGETS[target](run), how)
    # the full report (plots) only where types are wrong; its tables and fronts for every damage
    formats = "html,md,csv" if how == "wrong types" else "csv"
    for args in (("status", str(run)), ("report", str(run), "--format", formats)):
        code, text = _cli(*args)
        assert not faults.has_traceback(text), text
        if code != 0:  # a refusal is one line that names what is wrong
            lines = [ln for ln in text.splitlines() if ln.startswith("wrn-search: error:")]
            assert len(lines) == 1, text
    assert {p.name for p in tmp_path.iterdir()} == {run.name}  # nothing written outside


def test_damage_modes_change_the_file(tmp_path: Path) -> None:
    """The harness itself: each damage really spoils the file, as the matrix claims."""
    run = make_run(tmp_path)
    path = FAKE_TARGETS["run.json"](run)
    original = path.read_bytes()
    for how in faults.DAMAGES:
        path.write_bytes(original)
        faults.damage(path, how)
        assert path.read_bytes() != original, how
    assert b'"abc"' in path.read_bytes()  # wrong types: numbers became text


# ------------------------------------------------------------------------------- slow
def _assert_recovered(outcome: faults.Outcome) -> None:
    assert not outcome.tracebacks, outcome.tracebacks[0]
    assert not outcome.lost and not outcome.rerun, (outcome.lost, outcome.rerun)
    assert not outcome.outside, outcome.outside
    assert outcome.final_full_fidelity == faults.TRIALS, outcome
    assert outcome.final_state in faults.FINISHED_STATES, outcome


# The whole matrix (`python tests/faults.py`) takes half an hour on 2 cores; the slow suite
# keeps the cases that once lost a run or that no other test covers.
SLOW_SIGNALS = ("SIGINT after the last trial started", "SIGKILL while a checkpoint is written",
                "SIGINT during the report")
SLOW_DAMAGE = ("run.json", "result.json (full-fidelity trial)",
               "state.pt (unfinished trial's checkpoint)")


@pytest.mark.slow
@pytest.mark.parametrize("fault", SLOW_SIGNALS)
def test_a_signal_to_the_driver_loses_nothing(tmp_path: Path, fault: str) -> None:
    moment, kill = faults.SIGNAL_CASES[fault]
    outcome = faults.signal_case(tmp_path, fault, moment, kill)
    assert not outcome.note, outcome.note  # the fault landed at its moment
    if not kill:
        assert outcome.driver_exit == 130, outcome  # Ctrl-C is honoured, even in the report
        expected = "finished" if moment is faults.during_report else "interrupted"
        assert outcome.state_after_fault == expected, outcome
    _assert_recovered(outcome)


@pytest.mark.slow
def test_a_killed_trial_worker_is_retried_from_its_checkpoint(tmp_path: Path) -> None:
    outcome = faults.worker_kill_case(tmp_path)
    assert not outcome.note, outcome.note
    assert outcome.driver_exit == 0, outcome
    _assert_recovered(outcome)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return faults.interrupted_run(tmp_path_factory.mktemp("source"))


@pytest.mark.slow
@pytest.mark.parametrize("target", SLOW_DAMAGE)
def test_a_damaged_file_of_an_interrupted_run_still_resumes(tmp_path: Path, interrupted: Path,
                                                             target: str) -> None:
    outcome = faults.damage_case(tmp_path, interrupted, target, "truncated", resume=True)
    _assert_recovered(outcome)



@pytest.mark.slow
def test_a_checkpoint_ray_replaced_as_the_driver_died_still_resumes(tmp_path: Path,
                                                                   interrupted: Path) -> None:
    """Ray's saved state names a checkpoint it deleted as it wrote the next one."""
    outcome = faults.damage_case(tmp_path, interrupted, faults.UNFINISHED_STATE, faults.REPLACED,
                                 resume=True)
    _assert_recovered(outcome)
