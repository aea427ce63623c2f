"""How the project's search scales: trials/hour on one Ray node vs two, and driver memory.

Three measurements, all through the project's own code path (`search.tuner.run_search` with an
`ExperimentSpec`), with a dummy trainable in place of `train_wrn` so that what is measured is
the search machinery, not training:

1. **Throughput, one node vs two.** The same N dummy trials (E epochs of D seconds each,
   reporting every epoch with a small checkpoint, as `train_wrn` does with
   `storage.checkpoint_interval = 0`) on (a) the embedded
   Ray `wrn-search run` starts (`ray.init(address="local", num_cpus=2)`) and (b) a two-node
   `ray.cluster_utils.Cluster` that splits this machine's two cores (1 CPU per node),
   joined with `--address`. Two trial slots either way. The work is either a sleep (no CPU:
   isolates Ray's orchestration) or a fixed compute loop (calibrated to D seconds on one
   core before Ray starts). Trials/hour = N / wall x 3600; the ideal is slots x 3600 /
   (E x D). The Ray start (or cluster start) is timed apart from the search.

2. **Driver memory per 1,000 trials.** Many very short dummy trials (E epochs of tens of
   milliseconds) under the default MO-ASHA scheduler, within a wall-clock cap: by default
   once with the random searcher as the project builds the Tuner, and once each with the
   random and TPE searchers with `reuse_actors=True` (set by this script), which pushes
   several times more trials through the same driver code. The driver's RSS (psutil) and
   that of Ray's own processes (GCS server, raylet) are sampled every second with the
   number of trials started; a least-squares line through the samples after the first 10%
   of trials gives MB per 1,000 trials. Where the cap ends a run before 1,000 trials, the
   figure is that slope extrapolated, and the table says how many trials it rests on. The
   driver's per-event costs that grow with the number of trials are timed too: the
   experiment-state snapshot (`TuneController.save_to_dir`) and the project's `RunRecorder`
   event write. `--tracemalloc` adds where the driver's Python heap grew, by file. A run
   written `SEARCHER:reuse-actors@1m` uses that `storage.checkpoint_interval` (default 0,
   every epoch): `@0` against `@1m` measures the checkpoint interval side by side.

3. **Suggestions/s.** The project's searcher (`search.searchers.build_searcher`, random and
   TPE) asked for 1,000 suggestions outside Ray, two in three told "pruned" and one in three
   told its objectives, as under MO-ASHA: the time per suggestion as the study grows.

Usage (about 12 minutes on a 2-core machine):

    python benchmarks/scaling.py --json runs/bench/scaling.json
    python benchmarks/scaling.py --parts throughput --work sleep --trials 12   # a quick look
    python benchmarks/scaling.py --parts memory --memory-cap-s 90 \
        --memory-runs random:reuse-actors@0,random:reuse-actors@1m   # checkpoint interval
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from search.cluster import prefer_loopback, quiet_ray
from trainables import run_files

quiet_ray()
prefer_loopback()

import psutil  # noqa: E402
import ray  # noqa: E402
from _common import VARIANTS, machine_facts, patched  # noqa: E402
from ray import tune  # noqa: E402

from search.cluster import start_ray  # noqa: E402
from search.spec import ExperimentSpec  # noqa: E402
from search.tuner import run_search  # noqa: E402
from trainables import metrics as M  # noqa: E402
from trainables.tune_trial import CHECKPOINT_INTERVAL, checkpoint_due  # noqa: E402

WORK_ENV = "WRN_BENCH_WORK"  # "sleep:SECONDS" or "compute:ITERATIONS", per epoch
NUM_CPUS = 2
PARTS = ("throughput", "memory", "suggest")


# --------------------------------------------------------------------------- the dummy trial


def _compute(iterations: int) -> float:
    """A fixed amount of pure-Python arithmetic: CPU-bound, one core, no imports."""
    acc = 0.0
    for i in range(iterations):
        acc += (i % 7) * 0.5
    return acc


def calibrate_compute(seconds: float) -> int:
    """Iterations of `_compute` that take `seconds` on one core of this machine now."""
    n = 200_000
    start = time.perf_counter()
    _compute(n)
    per = (time.perf_counter() - start) / n
    return max(1, int(seconds / per))


def dummy_trial(config: dict[str, Any]) -> None:
    """Stands in for `train_wrn`: reports what the searcher and scheduler read, every epoch,
    after a fixed amount of work ($WRN_BENCH_WORK), with a small checkpoint when due (the
    same rule as `train_wrn`)."""
    kind, _, amount = os.environ.get(WORK_ENV, "sleep:0.05").partition(":")
    training = config.get("trial", {}).get("training", {})
    epochs = int(training.get("epochs", 4))
    depth, width = int(config.get(M.DEPTH, 16)), int(config.get(M.WIDTH, 1))
    params = (depth - 4) // 6 * width * width * 30_000  # grows with size, like a WRN's count
    quality = 0.2 + 0.02 * width + 0.003 * depth + 0.01 * (zlib.crc32(repr(config).encode()) % 7)
    node = ray.get_runtime_context().get_node_id()
    best, interval_s, last = 0.0, float(config.get(CHECKPOINT_INTERVAL, 0.0)), time.monotonic()
    for epoch in range(1, epochs + 1):
        if kind == "compute":
            _compute(int(amount))
        else:
            time.sleep(float(amount))
        robust = quality * (1 - 0.5 ** epoch)
        best = max(best, robust)
        row = {M.EPOCHS_DONE: epoch, M.MAX_EPOCHS: epochs, M.PARAMS: params,
               M.VAL_ROBUST_ACC: robust, M.BEST_VAL_ROBUST_ACC: best,
               M.VAL_CLEAN_ACC: robust + 0.3, M.DEPTH: depth, M.WIDTH: width, M.NODE_ID: node}
        if not checkpoint_due(epoch == epochs, time.monotonic() - last, interval_s):
            tune.report(row)
            continue
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / "state.bin").write_bytes(b"\0" * 64 * 1024)
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(directory))
        last = time.monotonic()


def dummy_spec(name: str, storage: str, *, trials: int, epochs: int, budget_s: float,
               scheduler: str, searcher: str,
               checkpoint_interval: float | str = 0) -> ExperimentSpec:
    """The default search space; two 1-CPU slots; by default a checkpoint every epoch (what
    `train_wrn` did before `storage.checkpoint_interval`)."""
    return ExperimentSpec.from_dict({
        "name": name,
        "training": {"epochs": epochs},
        "budget": {"time": budget_s, "max_trials": trials, "max_concurrent": NUM_CPUS},
        "resources": {"cpus_per_trial": 1, "max_failures": 0},
        "scheduler": {"kind": scheduler},
        "searcher": {"kind": searcher, "seed": 0},
        "storage": {"path": storage, "checkpoint_interval": checkpoint_interval},
    })


# --------------------------------------------------------------------------- probes


def _timed(record: list[Any], fn: Callable[..., Any],
           size: Callable[[Any], int] | None = None) -> Callable[..., Any]:
    """Wraps a method; records its seconds, or (size(self), seconds) when `size` is given."""
    @functools.wraps(fn)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(self, *args, **kwargs)
        finally:
            took = time.perf_counter() - start
            record.append((size(self), took) if size else took)

    return wrapper


@contextlib.contextmanager
def driver_probes() -> Iterator[dict[str, list[Any]]]:
    """(trials so far, seconds) of each experiment snapshot and each RunRecorder event write."""
    from ray.tune.execution.tune_controller import TuneController

    from search.recorder import RunRecorder

    record: dict[str, list[Any]] = {"snapshots": [], "events": []}
    with patched(TuneController, "save_to_dir", _timed(
            record["snapshots"], TuneController.save_to_dir, lambda c: len(c._trials))), \
         patched(RunRecorder, "_event", _timed(
            record["events"], RunRecorder._event, lambda r: len(record["events"]))):
        yield record


class MemorySampler:
    """Samples the driver's RSS, Ray's system processes' RSS and the trials started, 1/s."""

    def __init__(self, run_dir: Path, interval_s: float = 1.0) -> None:
        self.events = run_dir / run_files.DRIVER_DIR / run_files.EVENTS_FILE
        self.interval_s = interval_s
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._start = time.time()

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        me = psutil.Process()
        system = 0
        for child in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if any(n in child.name() for n in ("gcs_server", "raylet")):
                    system += child.memory_info().rss
        started = completed = 0
        with contextlib.suppress(OSError):
            for line in self.events.read_text().splitlines():
                started += '"event": "start"' in line
                completed += '"event": "complete"' in line
        self.samples.append({"t": time.time() - self._start, "driver_mb": me.memory_info().rss / 2**20,
                             "ray_system_mb": system / 2**20, "started": started,
                             "completed": completed})


def slope_per_1000(samples: list[dict[str, float]], key: str) -> float:
    """Least-squares MB per 1,000 trials started, after the first 10% of the trials."""
    total = samples[-1]["started"]
    pts = [(s["started"], s[key]) for s in samples if s["started"] >= max(1, 0.1 * total)]
    if len(pts) < 3 or pts[-1][0] == pts[0][0]:
        return math.nan
    mx = statistics.fmean(x for x, _ in pts)
    my = statistics.fmean(y for _, y in pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    return 1000 * sum((x - mx) * (y - my) for x, y in pts) / sxx


# --------------------------------------------------------------------------- parts


def _with_work(kind: str, epoch_s: float) -> str:
    if kind == "compute":
        return f"compute:{calibrate_compute(epoch_s)}"
    return f"sleep:{epoch_s}"


@contextlib.contextmanager
def ray_nodes(nodes: int) -> Iterator[tuple[str | None, float]]:
    """Ray as `wrn-search run` starts it (one node), or a local two-node cluster to join."""
    start = time.perf_counter()
    if nodes == 1:
        start_ray(None, num_cpus=NUM_CPUS)
        try:
            yield None, time.perf_counter() - start
        finally:
            ray.shutdown()
        return
    from ray.cluster_utils import Cluster

    old = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "token"  # as README's cluster setup (and tests) do
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": NUM_CPUS // 2})
    try:
        cluster.add_node(num_cpus=NUM_CPUS - NUM_CPUS // 2)
        cluster.wait_for_nodes()
        yield cluster.address, time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()
        if old is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = old


def throughput(args: argparse.Namespace, storage: Path,
               rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = [k.strip() for k in args.work.split(",") if k.strip()]
    for rep in range(args.reps):
        for kind in kinds:
            work = _with_work(kind, args.epoch_s)
            order = (1, 2) if (rep + kinds.index(kind)) % 2 == 0 else (2, 1)
            for nodes in order:
                os.environ[WORK_ENV] = work  # before Ray starts: its workers inherit it
                name = f"scaling-{kind}-{nodes}node-{rep}"
                spec = dummy_spec(name, str(storage), trials=args.trials, epochs=args.epochs,
                                  budget_s=3600, scheduler="none", searcher="random")
                load = os.getloadavg()[0]
                # one process per trial, as when the documented figures were taken
                with ray_nodes(nodes) as (address, start_s):
                    t0 = time.perf_counter()
                    outcome = run_search(spec, address=address, trainable=dummy_trial,
                                         reuse_actors=False)
                    wall = time.perf_counter() - t0
                ideal = NUM_CPUS * 3600 / (args.epochs * args.epoch_s)
                per_hour = outcome.trials * 3600 / wall
                nodes_used = _nodes_used(storage / name)
                rows.append({"work": kind, "nodes": nodes, "rep": rep, "trials": outcome.trials,
                             "errored": outcome.errored, "state": outcome.state, "wall_s": wall,
                             "ray_start_s": start_s, "trials_per_hour": per_hour,
                             "ideal_per_hour": ideal, "efficiency": per_hour / ideal,
                             "nodes_used": nodes_used,
                             "load_1min": [load, os.getloadavg()[0]]})
                print(f"{kind} {nodes} node(s): {per_hour:.0f} trials/h "
                      f"({per_hour / ideal:.0%} of ideal)", flush=True)
    return rows


def _nodes_used(run_dir: Path) -> int:
    """How many Ray nodes ran trials (from the node ids the trials reported)."""
    ids = set()
    for path in run_dir.glob("trial_*/result.json"):
        ids.update(json.loads(line).get(M.NODE_ID) for line in path.read_text().splitlines()
                   if line.strip())
    return len(ids - {None})


def _checkpoints_reported(run_dir: Path) -> int:
    """Results that carried a checkpoint, over every trial's result.json."""
    count = 0
    for path in run_dir.glob("*/result.json"):
        for line in path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                count += json.loads(line).get("checkpoint_dir_name") is not None
    return count


def memory(args: argparse.Namespace, storage: Path,
           rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for i, run in enumerate(r.strip() for r in args.memory_runs.split(",") if r.strip()):
        tuner, _, interval = run.partition("@")
        searcher, _, variant = tuner.partition(":")
        variant = variant or "process-per-trial"
        os.environ[WORK_ENV] = f"sleep:{args.memory_epoch_s}"
        name = f"memory-{i}-{searcher}-{variant}-{interval or 0}"
        spec = dummy_spec(name, str(storage), trials=args.memory_trials, epochs=args.epochs,
                          budget_s=args.memory_cap_s, scheduler="mo-asha", searcher=searcher,
                          checkpoint_interval=interval or 0)
        load = os.getloadavg()[0]
        with ray_nodes(1), driver_probes() as probes, \
                MemorySampler(storage / name) as sampler, traced(args.tracemalloc) as growth:
            t0 = time.perf_counter()
            outcome = run_search(spec, trainable=dummy_trial, reuse_actors=VARIANTS[variant])
            wall = time.perf_counter() - t0
        s = sampler.samples
        rows.append({
            "searcher": searcher, "variant": variant, "trials": outcome.trials,
            "checkpoint_interval_s": spec.storage.checkpoint_interval,
            "checkpoints": _checkpoints_reported(storage / name),
            "state": outcome.state, "wall_s": wall, "trials_per_s": outcome.trials / wall,
            "driver_mb_start": s[0]["driver_mb"], "driver_mb_end": s[-1]["driver_mb"],
            "driver_mb_per_1000": slope_per_1000(s, "driver_mb"),
            "ray_system_mb_per_1000": slope_per_1000(s, "ray_system_mb"),
            "snapshot_s": _by_size(probes["snapshots"]), "event_write_s": _by_size(probes["events"]),
            "snapshot_total_s": sum(t for _, t in probes["snapshots"]),
            "snapshots": len(probes["snapshots"]),
            "event_write_total_s": sum(t for _, t in probes["events"]),
            "load_1min": [load, os.getloadavg()[0]], "samples": s, "growth_by_file": growth,
        })
        print(f"memory {run}: {outcome.trials} trials in {wall:.0f} s", flush=True)
    return rows


@contextlib.contextmanager
def traced(on: bool) -> Iterator[list[dict[str, Any]]]:
    """With `on`: where the driver's Python heap grew during the run (tracemalloc, by file).

    Tracing slows the driver several-fold, so a traced run says where memory goes, not how
    fast trials run.
    """
    growth: list[dict[str, Any]] = []
    if not on:
        yield growth
        return
    import tracemalloc

    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    try:
        yield growth
    finally:
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        for stat in after.compare_to(before, "filename")[:12]:
            growth.append({"file": stat.traceback[0].filename, "mb": stat.size_diff / 2**20,
                           "blocks": stat.count_diff})


def _by_size(record: list[tuple[int, float]]) -> dict[str, float]:
    """Median seconds per call, by how many trials (or events) there were at the time."""
    out: dict[str, float] = {}
    for low, high in ((0, 100), (100, 300), (300, 600), (600, 1000), (1000, 10**9)):
        times = [t for n, t in record if low <= n < high]
        if times:
            out[f"{low}-{high if high < 10**9 else ''}"] = statistics.median(times)
    return out


def suggest_speed(args: argparse.Namespace, storage: Path) -> list[dict[str, Any]]:
    """The project's searcher alone: seconds per suggestion as the study grows."""
    from search.searchers import build_searcher

    rows = []
    for searcher in [s.strip() for s in args.searchers.split(",") if s.strip()]:
        spec = dummy_spec(f"suggest-{searcher}", str(storage), trials=args.suggestions,
                          epochs=args.epochs, budget_s=3600, scheduler="mo-asha",
                          searcher=searcher)
        search = build_searcher(spec)
        times: list[tuple[int, float]] = []
        deadline = time.perf_counter() + args.suggest_cap_s
        for i in range(args.suggestions):
            start = time.perf_counter()
            config = search.suggest(f"t{i}")
            times.append((i, time.perf_counter() - start))
            depth, width = config[M.DEPTH], config[M.WIDTH]
            result = None
            if i % 3 == 2:  # one in three reaches full fidelity, as under MO-ASHA with rf 3
                result = {M.BEST_VAL_ROBUST_ACC: 0.2 + 0.02 * width + 0.003 * depth,
                          M.PARAMS: (depth - 4) // 6 * width * width * 30_000,
                          M.EPOCHS_DONE: args.epochs, M.MAX_EPOCHS: args.epochs}
            search.on_trial_complete(f"t{i}", result)
            if time.perf_counter() > deadline:
                break
        rows.append({"searcher": searcher, "suggestions": len(times),
                     "seconds_by_size": _by_size(times),
                     "per_s_by_size": {k: 1 / v for k, v in _by_size(times).items() if v > 0},
                     "total_s": sum(t for _, t in times)})
        print(f"suggest {searcher}: {len(times)} in {rows[-1]['total_s']:.1f} s", flush=True)
    return rows


# --------------------------------------------------------------------------- output




def throughput_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| work | nodes | trials | wall s | Ray start s | trials/h | ideal/h | of ideal "
             "| vs 1 node | nodes used | load |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {(r["work"], r["rep"]): r["trials_per_hour"] for r in rows if r["nodes"] == 1}
    for r in sorted(rows, key=lambda r: (r["work"], r["rep"], r["nodes"])):
        ref = base.get((r["work"], r["rep"]))
        vs = f"{r['trials_per_hour'] / ref:.2f}x" if ref else "-"
        lines.append(f"| {r['work']} #{r['rep']} | {r['nodes']} | {r['trials']} | {r['wall_s']:.1f} "
                     f"| {r['ray_start_s']:.1f} | {r['trials_per_hour']:.0f} | {r['ideal_per_hour']:.0f} "
                     f"| {r['efficiency']:.0%} | {vs} | {r['nodes_used']} "
                     f"| {r['load_1min'][0]:.1f}-{r['load_1min'][1]:.1f} |")
    return "\n".join(lines)


def memory_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| searcher | Tuner | checkpoint interval s | checkpoints | trials | wall s | trials/s "
             "| driver MB start -> end "
             "| driver MB / 1,000 trials | Ray GCS+raylet MB / 1,000 | snapshots: n, total s, "
             "median by trials so far | events.jsonl rewrite: median by events so far |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|---|"]
    for r in rows:
        snap = ", ".join(f"{k}: {v * 1000:.0f} ms" for k, v in r["snapshot_s"].items())
        ev = ", ".join(f"{k}: {v * 1000:.1f} ms" for k, v in r["event_write_s"].items())
        lines.append(f"| {r['searcher']} | {r['variant']} | {r.get('checkpoint_interval_s', 0):g} "
                     f"| {r.get('checkpoints', '–')} | {r['trials']} | {r['wall_s']:.0f} "
                     f"| {r['trials_per_s']:.2f} "
                     f"| {r['driver_mb_start']:.0f} -> {r['driver_mb_end']:.0f} "
                     f"| {r['driver_mb_per_1000']:.0f} | {r['ray_system_mb_per_1000']:.0f} "
                     f"| {r['snapshots']}, {r['snapshot_total_s']:.1f} s; {snap} | {ev} |")
    return "\n".join(lines)


def suggest_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| searcher | suggestions | total s | suggestions/s (by trials so far) |",
             "|---|---:|---:|---|"]
    for r in rows:
        rates = ", ".join(f"{k}: {v:.0f}/s" for k, v in r["per_s_by_size"].items())
        lines.append(f"| {r['searcher']} | {r['suggestions']} | {r['total_s']:.1f} | {rates} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--work", default="sleep,compute", help="throughput work: sleep, compute")
    p.add_argument("--trials", type=int, default=16, help="throughput: trials per run")
    p.add_argument("--epochs", type=int, default=4, help="epochs (reports) per trial")
    p.add_argument("--epoch-s", type=float, default=0.5, help="throughput: seconds per epoch")
    p.add_argument("--reps", type=int, default=1, help="throughput: repetitions")
    p.add_argument("--searchers", default="random,tpe", help="suggest: searchers")
    p.add_argument("--memory-runs", default="random,random:reuse-actors,tpe:reuse-actors",
                   help="memory: SEARCHER[:reuse-actors][@CHECKPOINT_INTERVAL] runs, "
                   "comma-separated (interval default 0: a checkpoint every epoch)")
    p.add_argument("--memory-trials", type=int, default=1000, help="memory: trial cap")
    p.add_argument("--memory-epoch-s", type=float, default=0.03,
                   help="memory: seconds per epoch (a trial is epochs x this)")
    p.add_argument("--memory-cap-s", type=float, default=150.0,
                   help="memory: wall-clock budget of each run")
    p.add_argument("--tracemalloc", action="store_true",
                   help="memory: also report where the driver's heap grew (slows the driver)")
    p.add_argument("--suggestions", type=int, default=1000, help="suggest: suggestions")
    p.add_argument("--suggest-cap-s", type=float, default=60.0, help="suggest: time cap")
    p.add_argument("--storage", default=None,
                   help="where runs go (default: a temporary folder, deleted at the end)")
    p.add_argument("--json", default=None, help="write every measurement to this file")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    out: dict[str, Any] = {"facts": machine_facts(
        memory_gb=psutil.virtual_memory().total / 2**30, ray=ray.__version__), "settings": vars(args)}
    storage = Path(args.storage or tempfile.mkdtemp(prefix="wrn-bench-scaling-")).resolve()
    try:
        if "suggest" in parts:
            out["suggest"] = suggest_speed(args, storage)
        if "throughput" in parts:
            out["throughput"] = throughput(args, storage, out.setdefault("throughput", []))
        if "memory" in parts:
            out["memory"] = memory(args, storage, out.setdefault("memory", []))
    finally:
        ray.shutdown()
        if args.storage is None:
            shutil.rmtree(storage, ignore_errors=True)
        out["facts"]["load_average_end"] = list(os.getloadavg())
        if args.json:  # also what was measured before a failure
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=1))
    print()
    if "throughput" in out:
        print(throughput_table(out["throughput"]) + "\n")
    if "memory" in out:
        print(memory_table(out["memory"]) + "\n")
        for r in out["memory"]:
            for g in r.get("growth_by_file", []):
                print(f"  {r['searcher']}/{r['variant']}: {g['mb']:+7.1f} MB "
                      f"{g['blocks']:+8d} blocks  {g['file']}")
    if "suggest" in out:
        print(suggest_table(out["suggest"]) + "\n")
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
