"""Fault injection on real tiny searches: inject one fault, then check what survived.

Every case starts `wrn-search run` in a fresh sandbox folder on a grid of 4 tiny trials
(WRN-10-1/2 x PGD-1/2, 3 epochs, the bundled CIFAR-10 sample), injects one fault (a signal
to the driver or to a trial's worker at a chosen moment, or damage to one run file), then
runs `status`, `report` and, where the run is not over, `resume`, as a user would. It
compares the trials that had reached full fidelity before the fault with what is there at
the end (lost: missing or no longer full fidelity; rerun: its results rewritten or its
configuration trained twice), looks for tracebacks in every command's output, and lists
any file that appeared in the sandbox outside the run folder.

`python tests/faults.py` runs every case and prints the matrix that docs/reliability.md
records; tests/test_faults.py runs the cases one by one (`pytest -m slow`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_tuner import _toml, tiny_spec  # noqa: E402

from analysis.load import FINISHED_STATES  # noqa: E402
from trainables import metrics as M  # noqa: E402
from trainables import run_files  # noqa: E402

TRIALS = 4
EPOCHS = 3
NAME = "tiny"


# --------------------------------------------------------------------------- observing
def results(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each trial folder's result rows that parse (a torn last line is skipped)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for trial in sorted(run_dir.glob("trial_*")):
        path = trial / run_files.RESULT_FILE
        out[trial.name] = run_files.json_lines(path)[0] if path.exists() else []
    return out


def full_fidelity(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {name: rows for name, rows in results(run_dir).items()
            if rows and rows[-1].get(M.EPOCHS_DONE) == EPOCHS}


def events(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / run_files.DRIVER_DIR / run_files.EVENTS_FILE
    good, _ = run_files.json_lines(path) if path.exists() else ([], [])
    return good


def run_state(run_dir: Path) -> str | None:
    path = run_dir / run_files.DRIVER_DIR / run_files.RUN_FILE
    return run_files.read_json_object(path).get("state")


def files_outside(sandbox: Path, run_dir: Path, before: set[Path]) -> list[str]:
    """Files that appeared in the sandbox but not inside the run folder."""
    now = {p for p in sandbox.rglob("*") if p.is_file()}
    return sorted(str(p.relative_to(sandbox)) for p in now - before
                  if run_dir not in p.parents)


def readable_full_fidelity(run_dir: Path, outputs: list[str]) -> int:
    """Full-fidelity trials as the project reads the run (what a report's front draws on)."""
    import traceback

    from analysis import load_run

    try:
        return len(load_run(run_dir).full_fidelity)
    except Exception:  # noqa: BLE001 - counted as a traceback in the matrix
        outputs.append(traceback.format_exc())
        return 0


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text


# ------------------------------------------------------------------------------ driving
def cli_env() -> dict[str, str]:
    """The user's environment; decoded-data caches in one throwaway folder, not ~/.cache."""
    if "WRN_SEARCH_DATA" not in os.environ:
        os.environ["WRN_SEARCH_DATA"] = tempfile.mkdtemp(prefix="wrn-search-faults-data-")
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(sandbox: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=sandbox,
                          env=cli_env(), capture_output=True, text=True, timeout=timeout)


def spec_text(sandbox: Path) -> str:
    raw = tiny_spec(sandbox / "runs", training={"epochs": EPOCHS},
                    budget={"time": "15m", "max_trials": TRIALS, "max_concurrent": 2},
                    resources={"cpus_per_trial": 1, "max_failures": 1})
    return _toml(raw)


@dataclass
class Driver:
    """`wrn-search run` in its own session, as a terminal runs it (Ctrl-C reaches the group)."""

    sandbox: Path
    report: bool = False
    proc: subprocess.Popen = field(init=False)
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        (self.sandbox / "tiny.toml").write_text(spec_text(self.sandbox))
        self.log = self.sandbox.parent / f"{self.sandbox.name}-driver.log"
        args = [sys.executable, "-m", "search.cli", "run", "tiny.toml"]
        if not self.report:
            args.append("--no-report")
        self.proc = subprocess.Popen(args, cwd=self.sandbox, env=cli_env(),
                                     start_new_session=True, stdout=self.log.open("w"),
                                     stderr=subprocess.STDOUT, preexec_fn=_ctrl_c_as_in_a_terminal)

    @property
    def run_dir(self) -> Path:
        return self.sandbox / "runs" / NAME

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, moment: Callable[[Driver], bool], timeout: float = 300) -> bool:
        """Poll until the moment comes; False if the driver ended first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if moment(self):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        raise TimeoutError("the moment to inject the fault never came")

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the driver's process group; Ray saves, the driver exits."""
        os.killpg(self.proc.pid, signal.SIGINT)
        return self.proc.wait(timeout=180)

    def kill(self) -> int:
        """SIGKILL of the driver and every process it started (Ray's too): a power cut."""
        victims = [self.proc, *descendants(self.proc.pid)]
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for proc in victims:
            try:
                proc.kill()
            except (psutil.NoSuchProcess, ProcessLookupError):
                pass
        return self.proc.wait(timeout=60)

    def finish(self) -> int:
        return self.proc.wait(timeout=900)


def _ctrl_c_as_in_a_terminal() -> None:
    """A command typed in a terminal gets Ctrl-C; one started in the background by a
    non-interactive shell (CI, `cmd &`) inherits SIGINT ignored, and would never see it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def trial_workers(pid: int) -> list[psutil.Process]:
    """Ray's worker processes that run a trial (their title names the trainable actor)."""
    out = []
    for proc in descendants(pid):
        try:
            title = " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "ray::" in title and ("ImplicitFunc" in title or "train_wrn" in title):
            out.append(proc)
    return out


# ------------------------------------------------------------------------------ moments
def before_first_result(d: Driver) -> bool:
    return any(e.get("event") == "start" for e in events(d.run_dir)) and not any(
        results(d.run_dir).values())


def mid_epoch(d: Driver) -> bool:
    """A trial has reported its first epoch and is training its second."""
    return any(rows and rows[-1].get(M.EPOCHS_DONE) == 1 for rows in results(d.run_dir).values())


def one_finished(d: Driver) -> bool:
    """One trial reached full fidelity and another one is training."""
    return len(full_fidelity(d.run_dir)) >= 1


def checkpoint_write(d: Driver) -> bool:
    """A trial that has not finished is writing a checkpoint: its newest checkpoint folder
    changed within the last half second (Ray copies the files into it one by one)."""
    if not one_finished(d):
        return False
    done = set(full_fidelity(d.run_dir))
    now = time.time()
    return any(now - p.stat().st_mtime < 0.5 for p in d.run_dir.glob("trial_*/checkpoint_*")
               if p.parent.name not in done)


def one_finished_one_checkpointed(d: Driver) -> bool:
    """One trial reached full fidelity and another has a checkpoint to continue from."""
    done = set(full_fidelity(d.run_dir))
    return bool(done) and any(p.parent.parent.name not in done for p in d.run_dir.glob(
        f"trial_*/checkpoint_*/{run_files.STATE_FILE}"))


def all_started(d: Driver) -> bool:
    """Every trial has started and the last ones are mid-training: the searcher is done."""
    started = {e["trial_id"] for e in events(d.run_dir) if e.get("event") == "start"}
    running = [rows for rows in results(d.run_dir).values()
               if rows and rows[-1].get(M.EPOCHS_DONE, 0) < EPOCHS]
    return len(started) >= TRIALS and bool(running)


def during_report(d: Driver) -> bool:
    return "search finished" in d.output()


# ---------------------------------------------------------------------------- outcomes
@dataclass
class Outcome:
    """One row of the fault matrix."""

    fault: str
    driver_exit: int | None = None
    state_after_fault: str | None = None
    commands: dict[str, int] = field(default_factory=dict)  # status/report/resume: exit status
    failures: dict[str, str] = field(default_factory=dict)  # a command's output when it failed
    finished_before: int = 0
    lost: list[str] = field(default_factory=list)
    rerun: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    final_full_fidelity: int = 0
    final_state: str | None = None
    resumed: bool = True  # False: only status and report were asked of the damaged run
    note: str = ""

    @property
    def recovered(self) -> bool:
        """Nothing lost, rerun, traced back or written outside; and the search ended with
        every trial at full fidelity (or, where it was not resumed, no trial fewer)."""
        clean = not (self.lost or self.rerun or self.tracebacks or self.outside)
        if not self.resumed:
            return clean and self.final_full_fidelity >= self.finished_before
        return (clean and self.final_full_fidelity == TRIALS
                and self.final_state in FINISHED_STATES)

    def row(self) -> str:
        cmds = ", ".join(f"{k} {v}" for k, v in self.commands.items())
        end = self.final_state if self.resumed else "(not resumed)"
        return (f"| {self.fault} | {self.driver_exit} | {self.state_after_fault} | {cmds} | "
                f"{self.finished_before} | {len(self.lost)} | {len(self.rerun)} | "
                f"{len(self.tracebacks)} | {len(self.outside)} | "
                f"{self.final_full_fidelity}/{TRIALS} {end} | "
                f"{'yes' if self.recovered else 'NO'} |"
                + (f" {self.note}" if self.note else ""))


HEADER = ("| fault | driver exit | run.json after | status / report / resume exit | "
          "full fidelity before | lost | rerun | tracebacks | files outside run | "
          "at the end | recovered |\n|---|---:|---|---|---:|---:|---:|---:|---:|---|---|")


def check_after(out: Outcome, sandbox: Path, run_dir: Path, before: dict[str, list[dict]],
                sandbox_files: set[Path], outputs: list[str], resume: bool = True) -> Outcome:
    """status, report, resume until the run is over; then compare with `before`."""
    out.state_after_fault = run_state(run_dir)
    for name, args in (("status", ("status", str(run_dir))),
                       ("report", ("report", str(run_dir)))):
        _command(out, name, cli(sandbox, *args), outputs)
    if resume and run_state(run_dir) not in FINISHED_STATES:
        done = cli(sandbox, "resume", str(run_dir), "--no-report", timeout=900)
        _command(out, "resume", done, outputs)
    after = results(run_dir)
    out.finished_before = len(before)
    for name, rows in before.items():
        now = after.get(name, [])
        if not now or now[-1].get(M.EPOCHS_DONE) != EPOCHS:
            out.lost.append(name)
        elif now != rows:
            out.rerun.append(name)
    configs = [json.dumps(rows[0].get("config"), sort_keys=True)
               for rows in after.values() if rows]
    out.rerun += [c for c in set(configs) if configs.count(c) > 1]
    out.final_full_fidelity = readable_full_fidelity(run_dir, outputs)
    out.tracebacks = [o[-2000:] for o in outputs if has_traceback(o)]
    out.outside = files_outside(sandbox, run_dir, sandbox_files)
    out.final_state = run_state(run_dir)
    return out


def _command(out: Outcome, name: str, done: subprocess.CompletedProcess,
             outputs: list[str]) -> None:
    out.commands[name] = done.returncode
    outputs.append(done.stdout + done.stderr)
    if done.returncode != 0:
        out.failures[name] = (done.stdout + done.stderr)[-1500:]


def new_sandbox(base: Path, name: str) -> tuple[Path, set[Path]]:
    sandbox = base / name
    sandbox.mkdir(parents=True)
    (sandbox / "tiny.toml").write_text(spec_text(sandbox))
    return sandbox, {p for p in sandbox.rglob("*") if p.is_file()}


# ------------------------------------------------------------------------------- cases
def signal_case(base: Path, fault: str, moment: Callable[[Driver], bool], kill: bool) -> Outcome:
    """A signal to the driver at a moment; then status, report, resume."""
    sandbox, files = new_sandbox(base, fault.replace(" ", "-").replace(":", ""))
    driver = Driver(sandbox, report=moment is during_report)
    out = Outcome(fault)
    if not driver.wait_for(moment):
        out.note = "the driver ended before the moment came"
        out.driver_exit = driver.finish()
    else:
        before = full_fidelity(driver.run_dir)
        out.driver_exit = driver.kill() if kill else driver.interrupt()
        return check_after(out, sandbox, driver.run_dir, before, files, [driver.output()])
    return check_after(out, sandbox, driver.run_dir, full_fidelity(driver.run_dir), files,
                       [driver.output()])


def worker_kill_case(base: Path) -> Outcome:
    """SIGKILL of a trial's worker mid-epoch: Ray retries the trial from its checkpoint."""
    sandbox, files = new_sandbox(base, "worker-kill")
    driver = Driver(sandbox)
    out = Outcome("SIGKILL a trial's worker, mid-epoch")
    driver.wait_for(one_finished)
    before = full_fidelity(driver.run_dir)
    workers = trial_workers(driver.proc.pid)
    if workers:
        workers[0].kill()
    else:
        out.note = "no trial worker found to kill"
    out.driver_exit = driver.finish()
    return check_after(out, sandbox, driver.run_dir, before, files, [driver.output()])


# Damage to one file of an interrupted run (killed after one trial reached full fidelity).
def _first_complete(run_dir: Path) -> Path:
    return run_dir / sorted(full_fidelity(run_dir))[0]


TARGETS: dict[str, Callable[[Path], Path]] = {
    "run.json": lambda r: r / run_files.DRIVER_DIR / run_files.RUN_FILE,
    "spec.json": lambda r: r / run_files.DRIVER_DIR / run_files.SPEC_JSON,
    "events.jsonl": lambda r: r / run_files.DRIVER_DIR / run_files.EVENTS_FILE,
    "result.json (full-fidelity trial)": lambda r: _first_complete(r) / run_files.RESULT_FILE,
    "best_model.pt (full-fidelity trial)": lambda r: next(
        _first_complete(r).glob(f"checkpoint_*/{run_files.BEST_FILE}")),
    "state.pt (unfinished trial's checkpoint)": lambda r: _unfinished_checkpoint(r),
}
UNFINISHED_STATE = "state.pt (unfinished trial's checkpoint)"


def _unfinished_checkpoint(run_dir: Path) -> Path:
    """The newest state.pt of a trial that has not finished: what resume continues from."""
    done = set(full_fidelity(run_dir))
    return sorted(p for p in run_dir.glob(f"trial_*/checkpoint_*/{run_files.STATE_FILE}")
                  if p.parent.parent.name not in done)[-1]


REPLACED = "replaced by a newer one"  # a checkpoint folder, as Ray replaces it (not in DAMAGES)


def damage(path: Path, how: str) -> None:
    if how == REPLACED:  # the race of a driver killed after Ray deleted the checkpoint its
        # saved state names and wrote the next one: the folder holding `path` moves up one index
        folder = path.parent
        index = int(folder.name.rpartition("_")[2])
        folder.rename(folder.with_name(f"checkpoint_{index + 1:06d}"))
        return
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(b"\x00\xff garbage <<<>>> \n" * 7)
    elif how == "wrong types":
        path.write_bytes(wrong_types(path, data))
    else:
        raise ValueError(how)


def wrong_types(path: Path, data: bytes) -> bytes:
    """Every scalar of a JSON file (or of each JSON line) turned into a string of letters."""
    def spoil(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: spoil(v) for k, v in value.items()}
        if isinstance(value, list):
            return "two"
        return "abc" if isinstance(value, (int, float)) and not isinstance(value, bool) else value

    if path.suffix == ".pt":
        return b'{"not": "a checkpoint"}'
    lines = data.decode("utf-8", "replace").splitlines()
    if path.suffix == ".jsonl" or path.name == run_files.RESULT_FILE:
        return "".join(json.dumps(spoil(json.loads(x))) + "\n" for x in lines if x.strip()).encode()
    return json.dumps(spoil(json.loads(data))).encode()


def interrupted_run(base: Path) -> Path:
    """One run killed (SIGKILL) after a trial reached full fidelity and another wrote a
    checkpoint: the damage cases' source."""
    sandbox, _ = new_sandbox(base, "source")
    driver = Driver(sandbox)
    if not driver.wait_for(one_finished_one_checkpointed):
        raise RuntimeError("the source run ended before it could be killed:\n" + driver.output())
    driver.kill()
    return driver.run_dir


def damage_case(base: Path, source: Path, target: str, how: str, resume: bool) -> Outcome:
    sandbox, files = new_sandbox(base, f"damage-{target.split()[0]}-{how.replace(' ', '-')}")
    run_dir = sandbox / "runs" / NAME
    shutil.copytree(source, run_dir, symlinks=True)
    files = {p for p in sandbox.rglob("*") if p.is_file()}
    before = full_fidelity(run_dir)
    path = TARGETS[target](run_dir)
    if target.startswith("result.json"):  # a damaged record cannot be the yardstick
        before = {k: v for k, v in before.items() if k != path.parent.name}
    damage(path, how)
    out = Outcome(f"{target}: {how}", resumed=resume)
    return check_after(out, sandbox, run_dir, before, files, [], resume=resume)


SIGNAL_CASES: dict[str, tuple[Callable[[Driver], bool], bool]] = {
    "SIGINT before the first result": (before_first_result, False),
    "SIGINT mid-epoch": (mid_epoch, False),
    "SIGINT after the last trial started": (all_started, False),
    "SIGINT during the report": (during_report, False),
    "SIGKILL before the first result": (before_first_result, True),
    "SIGKILL mid-epoch": (mid_epoch, True),
    "SIGKILL while a checkpoint is written": (checkpoint_write, True),
    "SIGKILL after the last trial started": (all_started, True),
    "SIGKILL during the report": (during_report, True),
}
DAMAGES = ("truncated", "empty", "garbage", "wrong types")


PARTS = ("signals", "worker", "damage")


def run_matrix(base: Path, printer: Callable[[str], None] = print,
               parts: tuple[str, ...] = PARTS) -> list[Outcome]:
    outcomes: list[Outcome] = []

    def record(o: Outcome) -> None:
        outcomes.append(o)
        printer(o.row())

    printer(HEADER)
    if "signals" in parts:
        for fault, (moment, kill) in SIGNAL_CASES.items():
            record(signal_case(base, fault, moment, kill))
    if "worker" in parts:
        record(worker_kill_case(base))
    if "damage" in parts:
        source = interrupted_run(base)
        for target in TARGETS:
            for how in DAMAGES:
                # resume (minutes each) once per file kind; status and report for every damage
                record(damage_case(base, source, target, how, resume=how == "truncated"))
        record(damage_case(base, source, UNFINISHED_STATE, REPLACED, resume=True))
    return outcomes


def summary(outcomes: list[Outcome]) -> str:
    return (f"{len(outcomes)} faults injected, {sum(o.recovered for o in outcomes)} recovered; "
            f"finished trials lost {sum(len(o.lost) for o in outcomes)}, rerun "
            f"{sum(len(o.rerun) for o in outcomes)}; tracebacks "
            f"{sum(len(o.tracebacks) for o in outcomes)}; files written outside the run folder "
            f"{sum(len(o.outside) for o in outcomes)}")


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", help="folder for the sandboxes (default: a temporary one)")
    parser.add_argument("--details", action="store_true", help="print each failure's output")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated, of {', '.join(PARTS)} (default: all)")
    args = parser.parse_args()
    base = Path(args.work or tempfile.mkdtemp(prefix="wrn-search-faults-"))
    base.mkdir(parents=True, exist_ok=True)
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: {','.join(unknown)} is not allowed; choose from {', '.join(PARTS)}")
    outcomes = run_matrix(base, parts=parts)
    print()
    print(summary(outcomes))
    if args.details:
        for o in outcomes:
            for text in o.tracebacks:
                print(f"--- {o.fault}\n{text}")
            if o.lost or o.rerun or o.outside:
                print(f"--- {o.fault}: lost {o.lost} rerun {o.rerun} outside {o.outside}")
    return 0 if all(o.recovered for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
