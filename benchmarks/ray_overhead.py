"""What running trials through the project's Ray Tune search costs, against a bare loop.

Two measurements, both through the project's own code path (`search.tuner.run_search` with an
`ExperimentSpec` and the real `trainables.tune_trial.train_wrn`), so what is measured is what
`wrn-search run` users get:

1. **Overhead.** For each trial length (short ~5 s, medium ~20 s, long ~60 s on one core of
   this machine), the same N identical trials run (a) through the Tuner with one trial slot
   (`budget.max_concurrent = 1`, no scheduler, so every trial trains every epoch) and (b) as
   a bare sequential loop in this process that does what `train_wrn` does without Ray:
   build the `Trainer`, run each epoch, write the checkpoint to a temporary folder, and hand
   the row to a stub report. The two sides alternate which goes first from one length (and
   repetition) to the next. Per-trial overhead = (Tuner wall - loop wall) / N; the ratio is
   Tuner wall / loop wall. The Tuner wall starts at the `run_search` call with Ray already
   running: `ray.init` is a once-per-search cost and is reported on its own line.

2. **Worker utilisation.** A separate budgeted search with two trial slots, the default
   MO-ASHA scheduler and TPE searcher over a small space, as a fraction of wall time x slots:
   "reserved" is the time a slot was held for a trial (the driver's start event to its
   completion event, actor start included), "busy" is Ray's `time_total_s` of each trial's
   last result (result.json), and "useful" is the epochs (training plus validation) whose
   results reached the search, the work a user pays for.

Where the overhead goes. The Ray side runs `train_wrn` unchanged, inside a wrapper
(`timed_train_wrn`) that, in the trial's own worker process only, swaps in a `Trainer`
subclass that timestamps construction and every epoch, and times `save_checkpoint` and Ray's
checkpoint upload (`StorageContext.persist_current_checkpoint`). In the driver, the
experiment-state snapshots (`TuneController.save_to_dir` and the sync around it) and the
searcher's `suggest` are timed the same way. Each trial's time then splits into: the gap
before it starts (actor and worker process start, imports, unpickling the trainable: the
driver's side of scheduling it), Trainer construction (data load, model build, first-use
costs in a fresh process), epochs, and report (checkpoint write, upload, Ray's report).

The trial work is identical on both sides: the same `TrialConfig` (WRN-10-1 on the bundled
CIFAR-10 sample, PGD training, 5 epochs, one torch thread), the same seed.

Usage (about 10 minutes on a 2-core machine):

    python benchmarks/ray_overhead.py --json runs/bench/ray_overhead.json

    python benchmarks/ray_overhead.py --lengths short --trials 4 --util-budget 0   # a quick look
    python benchmarks/ray_overhead.py --variant reuse-actors   # the Tuner with reuse_actors=True

It also times one epoch's checkpoint of a real-sized WRN (`--checkpoint-probe 28-10`): the
write that `train_wrn` does and the copy Ray makes of it, both paid every epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.cluster import prefer_loopback, quiet_ray
from trainables import run_files

quiet_ray()
prefer_loopback()

import psutil  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from _common import VARIANTS, machine_facts, patched  # noqa: E402
from ray import tune  # noqa: E402

from search.cluster import start_ray  # noqa: E402
from search.spec import ExperimentSpec  # noqa: E402
from search.tuner import run_search  # noqa: E402
from trainables import metrics as M  # noqa: E402
from trainables.checkpoint import save_checkpoint  # noqa: E402
from trainables.config import trial_from_ray  # noqa: E402
from trainables.trainer import Trainer  # noqa: E402

TIMELINE_ENV = "WRN_BENCH_TIMELINE_DIR"  # where Ray-side trials write their timelines
NUM_CPUS = 2


# --------------------------------------------------------------------------- trial sizes


@dataclass(frozen=True)
class TrialSize:
    """One trial length: the training images per epoch and PGD steps that set it."""

    name: str
    train_subset: int
    steps: int
    trials: int  # default number of trials per side
    target_s: float  # what it takes on one core of an idle 2-core AMD EPYC

    def spec(self, name: str, storage: str, n: int) -> ExperimentSpec:
        return ExperimentSpec.from_dict({
            "name": name,
            "data": {"dataset": "cifar10-sample", "train_subset": self.train_subset,
                     "val_size": 50},
            "threat_model": {"steps": 2, "batch_size": 50},
            # Every value fixed: N identical trials, so the loop can run exactly the same work.
            "space": {"depth": [10], "width": 1, "train_eps": "8/255", "train_steps": self.steps},
            "training": {"method": "pgd", "epochs": 5, "batch_size": 50, "lr": 0.05},
            "budget": {"time": "1h", "max_trials": n, "max_concurrent": 1},
            "resources": {"cpus_per_trial": 1, "max_failures": 0},
            "scheduler": {"kind": "none"},
            "searcher": {"kind": "tpe", "seed": 0},
            # a checkpoint every epoch, as the bare loop writes one (and as measured here)
            "storage": {"path": storage, "checkpoint_interval": 0},
        })


SIZES = {s.name: s for s in (
    TrialSize("short", train_subset=400, steps=1, trials=6, target_s=5),
    TrialSize("medium", train_subset=1200, steps=1, trials=3, target_s=20),
    TrialSize("long", train_subset=1200, steps=6, trials=2, target_s=60),
)}


def utilisation_spec(name: str, storage: str, budget_s: float) -> ExperimentSpec:
    """A small real search: default scheduler (MO-ASHA) and searcher (TPE), two slots."""
    return ExperimentSpec.from_dict({
        "name": name,
        "data": {"dataset": "cifar10-sample", "train_subset": 600, "val_size": 50},
        "threat_model": {"steps": 2, "batch_size": 50},
        "space": {"depth": [10], "width": 1, "train_eps": {"low": "4/255", "high": "8/255"},
                  "train_steps": {"low": 1, "high": 3}},
        "training": {"method": "pgd", "epochs": 4, "batch_size": 50, "lr": 0.05},
        "budget": {"time": budget_s, "max_trials": 1000, "max_concurrent": NUM_CPUS},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "storage": {"path": storage, "checkpoint_interval": 0},
    })


def fixed_trial_dict(spec: ExperimentSpec) -> dict[str, Any]:
    """The Tune config every trial of an all-fixed spec gets (fixed values, flat keys)."""
    flat = {p.name: p.values[0] for p in spec.space.params}
    return {"trial": spec.base_trial().to_dict(), **flat}


# --------------------------------------------------------------------------- timelines


class TimedTrainer(Trainer):
    """The project's Trainer, timestamping its construction and every epoch into `timeline`."""

    def __init__(self, *args: Any, timeline: dict[str, Any], **kwargs: Any) -> None:
        self.timeline = timeline
        timeline["init_start"] = time.time()
        super().__init__(*args, **kwargs)
        timeline["init_end"] = time.time()
        timeline["epochs"] = []

    def run_epoch(self) -> dict[str, Any]:
        start = time.time()
        row = super().run_epoch()
        self.timeline["epochs"].append([start, time.time()])
        _flush_timeline(self.timeline)  # a trial the scheduler or the budget stops never returns
        return row


def _new_timeline(trial_id: str, folder: str | None = None) -> dict[str, Any]:
    proc = psutil.Process()
    return {"trial_id": trial_id, "folder": folder, "pid": proc.pid,
            "proc_start": proc.create_time(), "entry": time.time(), "saves": [], "persists": []}


def _flush_timeline(timeline: dict[str, Any]) -> None:
    """Written as the trial goes (a stopped trial never returns); the loop keeps it in memory."""
    if timeline.get("folder"):
        path = Path(timeline["folder"]) / f"{timeline['trial_id']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(timeline))
        os.replace(tmp, path)


def _timed(record: list[float], fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    return wrapper




def timed_train_wrn(config: dict[str, Any]) -> None:
    """The real `train_wrn`, with timestamps; the patches live in this worker process only.

    Timelines go to $WRN_BENCH_TIMELINE_DIR/<experiment>/<trial id>.json (the variable is
    set before Ray starts: workers inherit the environment Ray was started with).
    """
    from ray.train._internal.storage import StorageContext

    import trainables.tune_trial as tt

    context = tune.get_context()
    folder = Path(os.environ[TIMELINE_ENV]) / context.get_experiment_name()
    timeline = _new_timeline(context.get_trial_id(), str(folder))
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(tt, "Trainer", functools.partial(TimedTrainer,
                                                                      timeline=timeline)))
        stack.enter_context(patched(tt, "save_checkpoint",
                                     _timed(timeline["saves"], tt.save_checkpoint)))
        stack.enter_context(patched(
            StorageContext, "persist_current_checkpoint",
            _timed(timeline["persists"], StorageContext.persist_current_checkpoint)))
        tt.train_wrn(config)
    timeline["exit"] = time.time()
    _flush_timeline(timeline)


def loop_trial(config: dict[str, Any], trial_id: str) -> dict[str, Any]:
    """What `train_wrn` does, without Ray: the bare loop's trial."""
    timeline = _new_timeline(trial_id)
    torch.set_num_threads(1)  # what `_limit_resources` grants a 1-CPU trial
    trainer = TimedTrainer(trial_from_ray(config), timeline=timeline)
    reported: list[dict[str, Any]] = []
    while not trainer.done:
        row = trainer.run_epoch()
        row[M.GPU_SHARE] = 0.0
        with tempfile.TemporaryDirectory() as directory:
            _timed(timeline["saves"], save_checkpoint)(trainer, Path(directory))
            reported.append(row)  # the stub report
    timeline["exit"] = time.time()
    return timeline


# --------------------------------------------------------------------------- driver probes


@dataclass
class DriverProbe:
    """Times the driver's own work that can hold trials up."""

    snapshots: list[float]  # TuneController.save_to_dir: experiment_state + searcher pickle
    syncs: list[float]  # the whole sync_up_experiment_state call, when it did anything
    suggests: list[float]  # searcher suggest calls

    @classmethod
    @contextlib.contextmanager
    def attached(cls) -> Iterator[DriverProbe]:
        from ray.tune.execution.experiment_state import _ExperimentCheckpointManager
        from ray.tune.execution.tune_controller import TuneController

        from search.searchers import FidelityAwareOptunaSearch

        probe = cls([], [], [])
        sync = _ExperimentCheckpointManager.sync_up_experiment_state

        def timed_sync(self: Any, save_fn: Callable[[], None], force: bool = False,
                       wait: bool = False) -> None:
            before = len(probe.snapshots)
            start = time.perf_counter()
            sync(self, save_fn, force=force, wait=wait)
            if len(probe.snapshots) > before:
                probe.syncs.append(time.perf_counter() - start)

        with contextlib.ExitStack() as stack:
            stack.enter_context(patched(TuneController, "save_to_dir",
                                         _timed(probe.snapshots, TuneController.save_to_dir)))
            stack.enter_context(patched(_ExperimentCheckpointManager,
                                         "sync_up_experiment_state", timed_sync))
            stack.enter_context(patched(FidelityAwareOptunaSearch, "suggest", _timed(
                probe.suggests, FidelityAwareOptunaSearch.suggest)))
            yield probe

    def summary(self) -> dict[str, Any]:
        return {"snapshots": len(self.snapshots), "snapshot_s": sum(self.snapshots),
                "sync_s": sum(self.syncs), "suggests": len(self.suggests),
                "suggest_s": sum(self.suggests)}




# --------------------------------------------------------------------------- sides


def run_tuner_side(spec: ExperimentSpec, variant: str) -> dict[str, Any]:
    """`run_search` as the CLI calls it, with the trials' timelines and the driver's probes."""
    with DriverProbe.attached() as probe:
        start = time.time()
        outcome = run_search(spec, trainable=timed_train_wrn, reuse_actors=VARIANTS[variant])
        end = time.time()
    folder = Path(os.environ[TIMELINE_ENV]) / spec.name
    timelines = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    return {"start": start, "end": end, "trials": sorted(timelines, key=lambda t: t["entry"]),
            "driver": probe.summary(), "state": outcome.state, "errored": outcome.errored}


def run_loop_side(spec: ExperimentSpec, n: int) -> dict[str, Any]:
    config = fixed_trial_dict(spec)
    start = time.time()
    timelines = [loop_trial(config, f"loop{i}") for i in range(n)]
    return {"start": start, "end": time.time(), "trials": timelines}


def breakdown(side: dict[str, Any]) -> dict[str, float]:
    """Seconds of a side's wall time, by where they went (sums over its trials)."""
    trials = side["trials"]
    out = {"wall": side["end"] - side["start"],
           "before_first": trials[0]["entry"] - side["start"],
           "after_last": side["end"] - trials[-1]["exit"],
           "between": sum(b["entry"] - a["exit"] for a, b in itertools.pairwise(trials)),
           "pre_init": 0.0, "init": 0.0, "epochs": 0.0, "save": 0.0, "persist": 0.0,
           "report": 0.0, "first_init": trials[0]["init_end"] - trials[0]["init_start"]}
    for t in trials:
        epochs = sum(e - s for s, e in t["epochs"])
        inside = t["exit"] - t["entry"]
        init = t["init_end"] - t["init_start"]
        pre = t["init_start"] - t["entry"]
        saves, persists = sum(t["saves"]), sum(t["persists"])
        out["pre_init"] += pre
        out["init"] += init
        out["epochs"] += epochs
        out["save"] += saves
        out["persist"] += persists
        out["report"] += inside - pre - init - epochs - saves - persists
    return out


def compare(size: TrialSize, n: int, storage: Path, rep: int, loop_first: bool,
            variant: str) -> dict[str, Any]:
    spec = size.spec(f"overhead-{size.name}-{variant}-{rep}", str(storage), n)
    sides: dict[str, dict[str, Any]] = {}
    order = ("loop", "tuner") if loop_first else ("tuner", "loop")
    load = [os.getloadavg()[0]]
    for side in order:
        if side == "loop":
            sides["loop"] = run_loop_side(spec, n)
        else:
            sides["tuner"] = run_tuner_side(spec, variant)
            if sides["tuner"]["errored"] or sides["tuner"]["state"] != "finished":
                raise RuntimeError(f"the Tuner side did not finish cleanly: {sides['tuner']}")
        load.append(os.getloadavg()[0])
    tuner, loop = breakdown(sides["tuner"]), breakdown(sides["loop"])
    return {
        "size": size.name, "variant": variant, "rep": rep, "n": n, "order": list(order),
        "load_1min": load, "tuner": tuner, "loop": loop, "driver": sides["tuner"]["driver"],
        "worker_processes": len({t["pid"] for t in sides["tuner"]["trials"]}),
        "overhead_per_trial_s": (tuner["wall"] - loop["wall"]) / n,
        "ratio": tuner["wall"] / loop["wall"],
        "loop_s_per_trial": loop["wall"] / n,
        "timelines": {k: v["trials"] for k, v in sides.items()},
    }


# --------------------------------------------------------------------------- utilisation


def utilisation(storage: Path, budget_s: float, variant: str) -> dict[str, Any]:
    """Busy time / (wall time x slots) of a budgeted two-slot search, three ways.

    - reserved: a slot held for the trial, from the driver's start event to its completion
      event (or the end of the run, for a trial the budget cut): actor start included;
    - busy: Ray's `time_total_s` of the trial's last result, the time its function ran up
      to its last report (what result.json says);
    - useful: the trial's finished epochs (training and validation), from its timeline.
    """
    spec = utilisation_spec(f"utilisation-{variant}", str(storage), budget_s)
    load_start = os.getloadavg()[0]
    side = run_tuner_side(spec, variant)
    run_dir = storage / spec.name
    events: dict[str, dict[str, float]] = {}
    for line in (run_dir / run_files.DRIVER_DIR / run_files.EVENTS_FILE).read_text().splitlines():
        e = json.loads(line)
        events.setdefault(e["trial_id"], {})[e["event"]] = e["time"]
    wall = side["end"] - side["start"]
    timelines = {t["trial_id"]: t for t in side["trials"]}
    reserved = busy = useful = 0.0
    full = stopped = cut = 0
    for trial_id, ev in events.items():
        reserved += ev.get("complete", ev.get("error", side["end"])) - ev["start"]
        rows = [json.loads(x) for f in run_dir.glob(f"trial_{trial_id}_*/result.json")
                for x in f.read_text().splitlines() if x.strip()]
        if rows:
            busy += rows[-1]["time_total_s"]
        # only the epochs whose results reached the search: an epoch the budget cut is waste
        epochs = timelines.get(trial_id, {}).get("epochs", [])[:len(rows)]
        useful += sum(e - s for s, e in epochs)
        if "complete" not in ev:
            cut += 1
        elif rows and rows[-1][M.EPOCHS_DONE] >= rows[-1][M.MAX_EPOCHS]:
            full += 1
        else:
            stopped += 1
    slots = spec.budget.max_concurrent or NUM_CPUS
    available = wall * slots
    return {"variant": variant, "budget_s": budget_s, "wall_s": wall, "slots": slots,
            "trials": len(events), "full_fidelity": full, "early_stopped": stopped,
            "cut_by_budget": cut, "reserved_s": reserved, "busy_s": busy, "useful_s": useful,
            "reserved_utilisation": reserved / available, "busy_utilisation": busy / available,
            "useful_utilisation": useful / available,
            "worker_processes": len({t["pid"] for t in side["trials"]}),
            "load_1min": [load_start, os.getloadavg()[0]], "driver": side["driver"],
            "state": side["state"], "timelines": side["trials"]}


# --------------------------------------------------------------------------- startup probes


def fresh_import_s(reps: int = 3) -> float:
    """Median seconds for a new Python process to import what a trial's worker imports."""
    import subprocess

    code = "import ray, torch, ray.tune, trainables.tune_trial"
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def checkpoint_cost(depth: int, width: int, storage: Path) -> dict[str, Any]:
    """What one epoch's checkpoint of a real-sized WRN costs: `train_wrn` writes it to a
    temporary folder, then Ray copies it into the trial folder (`persist_current_checkpoint`).

    The files hold what `save_checkpoint` writes after a training step: state.pt (weights,
    SGD momentum buffers of the same size, schedule, random states) and best_model.pt (the
    best weights), so the sizes are those of a real trial; the copy uses the pyarrow call Ray
    uses. On a cluster the copy goes to shared storage instead of the local disk.
    """
    import pyarrow.fs as pafs
    from ray.train._internal.storage import _pyarrow_fs_copy_files

    from models import WideResNet
    from trainables.checkpoint import save_atomic
    from trainables.run_files import BEST_FILE, STATE_FILE

    model = WideResNet(depth, width, 10)
    weights = model.state_dict()
    momentum = {i: {"momentum_buffer": p.detach().clone()}
                for i, p in enumerate(model.parameters())}
    state = {"model": weights, "optimizer": {"state": momentum, "param_groups": []},
             "torch_rng": torch.get_rng_state(), "epoch": 1}
    source, target = storage / "ckpt-source", storage / "ckpt-target"
    source.mkdir(parents=True)
    target.mkdir(parents=True)  # Ray creates the checkpoint folder first, too
    start = time.perf_counter()
    save_atomic(state, source / STATE_FILE)
    save_atomic({"model": weights, "epoch": 1}, source / BEST_FILE)
    os.sync()
    write_s = time.perf_counter() - start
    size = sum(f.stat().st_size for f in source.iterdir())
    start = time.perf_counter()
    _pyarrow_fs_copy_files(str(source), str(target), source_filesystem=pafs.LocalFileSystem(),
                           destination_filesystem=pafs.LocalFileSystem())
    os.sync()
    copy_s = time.perf_counter() - start
    shutil.rmtree(source)
    shutil.rmtree(target)
    return {"wrn": f"WRN-{depth}-{width}", "mb": size / 2**20, "write_s": write_s,
            "copy_s": copy_s}


# --------------------------------------------------------------------------- output




def _median(rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], float]) -> float:
    return statistics.median(key(r) for r in rows)


def outside_epochs(r: dict[str, Any]) -> float:
    """Overhead per trial outside the epochs: the Tuner's own costs, free of the load noise
    that changes how long the (identical) epochs take on each side."""
    def rest(b: dict[str, float]) -> float:
        return b["wall"] - b["epochs"]

    return (rest(r["tuner"]) - rest(r["loop"])) / r["n"]


def fixed_and_marginal(r: dict[str, Any]) -> tuple[float, float]:
    """Split the overhead outside the epochs into a once-per-search and a per-trial part.

    The first trial's start gap also holds the Tuner's setup; the part of it above a typical
    later start gap, plus the time after the last trial returns, is the fixed cost.
    """
    def fixed(b: dict[str, float]) -> float:
        gap = b["between"] / (r["n"] - 1) if r["n"] > 1 else 0.0
        return b["before_first"] - gap + b["after_last"]

    once = fixed(r["tuner"]) - fixed(r["loop"])
    return once, outside_epochs(r) - once / r["n"]


def overhead_table(rows: list[dict[str, Any]]) -> str:
    """Medians over repetitions. 'many trials' = 1 + per-trial part / loop s per trial."""
    lines = ["| trial length | variant | n x reps | loop s/trial | Tuner s/trial | overhead s/trial "
             "| ratio | epochs diff s/trial | outside epochs s/trial | per-trial part s "
             "| fixed part s/search | ratio, many trials | load (1 min) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["size"], r["variant"]), []).append(r)
    for (size, variant), rs in groups.items():
        fixed = _median(rs, lambda r: fixed_and_marginal(r)[0])
        marginal = _median(rs, lambda r: fixed_and_marginal(r)[1])
        loop_s = _median(rs, lambda r: r["loop_s_per_trial"])
        epochs = _median(rs, lambda r: (r["tuner"]["epochs"] - r["loop"]["epochs"]) / r["n"])
        loads = [x for r in rs for x in r["load_1min"]]
        lines.append(
            f"| {size} | {variant} | {rs[0]['n']} x {len(rs)} | {loop_s:.2f} "
            f"| {_median(rs, lambda r: r['tuner']['wall'] / r['n']):.2f} "
            f"| {_median(rs, lambda r: r['overhead_per_trial_s']):.2f} "
            f"| {_median(rs, lambda r: r['ratio']):.3f}x | {epochs:+.2f} "
            f"| {_median(rs, outside_epochs):.2f} | {marginal:.2f} | {fixed:.2f} "
            f"| {1 + marginal / loop_s:.3f}x | {min(loads):.1f}-{max(loads):.1f} |")
    return "\n".join(lines)


PARTS = ("between", "pre_init", "init", "epochs", "save", "persist", "report")


def breakdown_table(rows: list[dict[str, Any]]) -> str:
    """Per trial, seconds by part: Tuner, loop, and the difference."""
    lines = ["| trial length | variant | side | start gap | pre-init | Trainer init | epochs "
             "| ckpt write | ckpt upload | report rest | snapshots (n, s) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        n = r["n"]
        for side in ("tuner", "loop", "diff"):
            vals = {p: (r["tuner"][p] - r["loop"][p]) if side == "diff" else r[side][p]
                    for p in PARTS}
            # the first trial's start gap is in before_first; spread over the n - 1 others
            gap_n = max(1, n - 1)
            cells = [vals["between"] / gap_n] + [vals[p] / n for p in PARTS[1:]]
            snap = (f"{r['driver']['snapshots']}, {r['driver']['sync_s']:.2f}"
                    if side == "tuner" else "")
            lines.append(f"| {r['size']} #{r['rep']} | {r['variant']} | {side} | "
                         + " | ".join(f"{c:+.3f}" if side == "diff" else f"{c:.3f}" for c in cells)
                         + f" | {snap} |")
    return "\n".join(lines)


def utilisation_table(u: dict[str, Any]) -> str:
    return "\n".join([
        "| variant | budget s | wall s | slots | trials (full / stopped / cut) | reserved | busy "
        "| useful | snapshots (n, s) | load |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|",
        f"| {u['variant']} | {u['budget_s']:.0f} | {u['wall_s']:.1f} | {u['slots']} | {u['trials']} "
        f"({u['full_fidelity']} / {u['early_stopped']} / {u['cut_by_budget']}) "
        f"| {u['reserved_utilisation']:.1%} | {u['busy_utilisation']:.1%} "
        f"| {u['useful_utilisation']:.1%} "
        f"| {u['driver']['snapshots']}, {u['driver']['sync_s']:.2f} "
        f"| {u['load_1min'][0]:.1f}-{u['load_1min'][1]:.1f} |",
    ])


def print_tables(out: dict[str, Any]) -> None:
    print(f"\nray.init: {out['ray_init_s']:.1f} s (once per search); a fresh process importing "
          f"ray + torch + trainables: {out['fresh_import_s']:.2f} s\n")
    if out.get("overhead"):
        print(overhead_table(out["overhead"]) + "\n")
        print(breakdown_table(out["overhead"]) + "\n")
    if "utilisation" in out:
        print(utilisation_table(out["utilisation"]) + "\n")
    if "checkpoint_probe" in out:
        c = out["checkpoint_probe"]
        print(f"checkpoint of {c['wrn']}: {c['mb']:.0f} MB; written in {c['write_s']:.2f} s, "
              f"copied by Ray's persist call in {c['copy_s']:.2f} s (per epoch, local disk)\n")


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", default="short,medium,long",
                   help="comma-separated trial lengths: " + ", ".join(SIZES) + " (none: skip)")
    p.add_argument("--trials", type=int, default=None,
                   help="trials per side for every length (default: 6, 3, 2 by length)")
    p.add_argument("--reps", type=int, default=1, help="repetitions of each comparison")
    p.add_argument("--variant", default="process-per-trial", choices=tuple(VARIANTS),
                   help="reuse-actors: the Tuner with reuse_actors=True (a proposed fix)")
    p.add_argument("--util-budget", type=float, default=120.0,
                   help="seconds of the budgeted 2-slot utilisation run (0 skips it)")
    p.add_argument("--checkpoint-probe", default="28-10",
                   help="DEPTH-WIDTH of a real-sized WRN whose checkpoint cost to time ('none' skips)")
    p.add_argument("--storage", default=None,
                   help="where the runs go (default: a temporary folder, deleted at the end)")
    p.add_argument("--json", default=None, help="write every measurement to this file")
    p.add_argument("--render", default=None, metavar="JSON",
                   help="print the tables of an earlier --json file and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.render:
        print_tables(json.loads(Path(args.render).read_text()))
        return 0
    sizes = [SIZES[s.strip()] for s in args.lengths.split(",") if s.strip() not in ("", "none")]
    torch.set_num_threads(1)
    facts = machine_facts(torch=torch.__version__, ray=ray.__version__)
    storage = Path(args.storage or tempfile.mkdtemp(prefix="wrn-bench-overhead-")).resolve()
    out: dict[str, Any] = {"facts": facts, "settings": vars(args)}
    try:
        out["fresh_import_s"] = fresh_import_s()
        os.environ[TIMELINE_ENV] = str(storage / "timelines")  # before Ray: workers inherit it
        start = time.perf_counter()
        start_ray(None, num_cpus=NUM_CPUS)
        out["ray_init_s"] = time.perf_counter() - start
        rows = []
        for rep in range(args.reps):
            for i, size in enumerate(sizes):
                n = args.trials or size.trials
                loop_first = (i + rep) % 2 == 0
                rows.append(compare(size, n, storage, rep, loop_first, args.variant))
                print(f"{size.name} rep {rep}: ratio {rows[-1]['ratio']:.3f}", flush=True)
        out["overhead"] = rows
        if args.util_budget > 0:
            out["utilisation"] = utilisation(storage, args.util_budget, args.variant)
        if args.checkpoint_probe != "none":
            depth, width = (int(x) for x in args.checkpoint_probe.split("-"))
            out["checkpoint_probe"] = checkpoint_cost(depth, width, storage)
    finally:
        ray.shutdown()
        if args.storage is None:
            shutil.rmtree(storage, ignore_errors=True)
    out["facts"]["load_average_end"] = list(os.getloadavg())
    print_tables(out)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
