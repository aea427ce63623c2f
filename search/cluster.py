"""Starting or joining Ray, and holding trial resource requests to what the cluster has.

Ray queues a trial whose request no node can satisfy and waits for it forever (PENDING).
`check_resources` turns that into an immediate, one-line error before any trial starts.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from typing import Any

from models import count_parameters
from search.versions import check_tested_versions
from trainables.config import ConfigError, RayStartError, trial_from_ray

log = logging.getLogger(__name__)

_GPU_SHARE_STEP = 1 / 8  # "auto" GPU shares are rounded up to eighths of a GPU
# Training holds fp32 weights, gradients and momentum plus bf16 copies: 16 bytes a parameter.
TRAIN_BYTES_PER_PARAMETER = 16
_DEFAULT_GPU_MEMORY = 16 * 2**30  # assumed when no GPU of the cluster or the driver answers
GPU_PROBE_SHARE = 0.01  # the share of a GPU the memory probe asks for: fits beside trials
GPU_PROBE_TIMEOUT_S = 30.0  # a cluster whose GPUs are all taken must not hold up the start


def prefer_loopback() -> None:
    """Make an embedded (local) Ray bind to 127.0.0.1: call before `import ray`.

    Ray resolves "localhost" to the machine's routable address unless this switch (meant
    for laptops) is off; a single-machine search has no reason to listen on the network.
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def quiet_ray() -> None:
    """Silence Ray Tune's per-checkpoint chatter; the CLI prints its own status line."""
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # no config box: `run` has its own lines
    # No traceback per failed trial: RunRecorder says it in one line, and Ray keeps the
    # traceback in the trial folder (error.txt).
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def _first_line(exc: BaseException) -> str:
    """Ray's start-up errors put the cause first and pages of advice after it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


DASHBOARD_HOST = "127.0.0.1"  # the embedded Ray's dashboard: this machine only


def check_dashboard(address: str | None) -> None:
    """`--dashboard` is for the embedded Ray and needs ray[default]: one line before Ray if not.

    A joined cluster already runs its own dashboard (on its head node, port 8265), set up by
    whoever started it; this process cannot add one there.
    """
    if address:
        raise ConfigError(f"--dashboard: {address!r} is not allowed; --dashboard starts the "
                          "embedded Ray's dashboard, and a joined cluster serves its own on its "
                          "head node (port 8265 unless set otherwise): drop --dashboard or "
                          "--address")
    try:
        import ray.dashboard.optional_deps  # noqa: F401 - what Ray itself checks
    except ImportError as exc:
        raise ConfigError("--dashboard: the Ray dashboard's packages are not installed "
                          f"({exc.name or exc} is missing); pip install \"wrn-search[dashboard]\"") \
            from None


def start_ray(address: str | None, num_cpus: int | None = None,
              worker_logs: bool = False, dashboard: bool = False,
              announce: Callable[[str], None] | None = None) -> list[dict[str, float]]:
    """Join the cluster at `address`, or start an embedded one; return each live node's resources.

    Worker output is not forwarded by default: a failed trial's traceback is kept in its
    folder (error.txt) and summarised in events.jsonl and the status line. `dashboard`: the
    embedded Ray serves its dashboard on 127.0.0.1; its URL goes to `announce`, once.
    """
    import ray

    if dashboard:
        check_dashboard(address)
    if ray.is_initialized():
        return node_resources()
    check_tested_versions()
    kwargs: dict[str, Any] = {"configure_logging": True, "logging_level": logging.WARNING,
                              "log_to_driver": worker_logs}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = _first_line(exc)
            raise ConfigError(f"--address: {address!r} is not allowed; no Ray cluster could be "
                              f"joined there ({first[:200]})") from None
    else:
        # Embedded default: a new Ray of our own ("local": never silently join a cluster that
        # happens to run on this machine), no dashboard unless asked for, and then on the
        # loopback address only; Ray 2.60 keeps token auth on.
        if dashboard:
            kwargs["dashboard_host"] = DASHBOARD_HOST
        try:
            context = ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                               include_dashboard=dashboard, **kwargs)
        except Exception as exc:  # noqa: BLE001 - Ray raises bare Exception on a slow start
            ray.shutdown()
            first = _first_line(exc)
            raise RayStartError(f"Ray did not start on this machine ({first[:200]}); nothing "
                                "was changed, try again when the machine is less busy") from None
        if dashboard and announce is not None:
            announce(f"Ray dashboard: {dashboard_url(context.dashboard_url)}")
    return node_resources()


def dashboard_url(address: str) -> str:
    """Ray gives the dashboard as HOST:PORT; a browser wants the scheme."""
    return address if "://" in address else f"http://{address}"


def node_resources() -> list[dict[str, float]]:
    """Resources of every live node: a trial must fit on one node, not on the sum."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def estimate_trial_memory_bytes(depth: int, width: int, batch_size: int,
                                num_classes: int = 10) -> int:
    """Rough peak GPU memory of one WRN training step (bf16 autocast), for 'auto' GPU shares.

    Weights, gradients and momentum in fp32 (16 B per parameter with bf16 copies), plus about
    8 saved activations per block of 4 bytes each (BN, ReLU, conv outputs) over the three
    stages' feature maps, plus 1.5 GiB for the CUDA context and cuDNN workspaces. It errs
    high: too big a share only costs concurrency, too small a share costs an OOM.
    """
    params = count_parameters(depth, width, num_classes)
    blocks = (depth - 4) // 6
    per_image = blocks * width * (16 * 32 * 32 + 32 * 16 * 16 + 64 * 8 * 8)
    activations = batch_size * per_image * 8 * 4
    return int(TRAIN_BYTES_PER_PARAMETER * params + activations + 1.5 * 2**30)


def auto_gpu_share(depth: int, width: int, batch_size: int, gpu_memory_bytes: int) -> float:
    need = estimate_trial_memory_bytes(depth, width, batch_size) / gpu_memory_bytes
    return min(1.0, math.ceil(need / _GPU_SHARE_STEP) * _GPU_SHARE_STEP)


def _gpu_memory_here() -> int | None:
    """Memory of this process's first GPU; None when it has none (a CPU head node). Run in
    the driver, and as a Ray task on each kind of GPU node (`probe_gpu_memory`)."""
    import torch

    if torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(0).total_memory)
    return None


def gpu_node_groups(nodes: list[dict[str, Any]]) -> list[str]:
    """One node id per kind of GPU node (its accelerator type and GPU count), from Ray's
    `ray.nodes()` entries: GPUs of one kind have one memory size, so one probe each is enough."""
    chosen: dict[tuple[Any, ...], str] = {}
    for node in nodes:
        resources = node.get("Resources", {})
        if not node.get("Alive") or resources.get("GPU", 0.0) <= 0:
            continue
        kind = (tuple(sorted(k for k in resources if k.startswith("accelerator_type:"))),
                resources.get("GPU"))
        chosen.setdefault(kind, node["NodeID"])
    return list(chosen.values())


def smallest_gpu_memory(reports: list[int | None], driver: int | None) -> tuple[int, str | None]:
    """The memory "auto" GPU shares are sized for: the smallest GPU the trial nodes reported,
    else the driver's GPU, else 16 GiB; with a warning line when it is not the nodes' own."""
    answered = [r for r in reports if isinstance(r, int) and r > 0]
    if answered:
        return min(answered), None
    if driver:
        return driver, (f"no GPU node of the cluster reported its memory; \"auto\" GPU shares are "
                        f"sized for the driver's GPU ({driver / 2**30:.0f} GiB)")
    return _DEFAULT_GPU_MEMORY, ("no GPU node of the cluster reported its memory and this machine "
                                 "has no GPU; \"auto\" GPU shares assume 16 GiB GPUs (set "
                                 "resources.gpus_per_trial to a share to choose it yourself)")


def probe_gpu_memory(node_ids: list[str], timeout_s: float = GPU_PROBE_TIMEOUT_S) -> list[int | None]:
    """Ask each node in `node_ids` for its GPU's memory with a tiny task pinned to it (a
    GPU_PROBE_SHARE of a GPU); a node that does not answer within `timeout_s` (its GPUs all
    taken, or no CUDA there) answers None. Ray's node resources count GPUs, not memory."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not node_ids or not ray.is_initialized():
        return [None] * len(node_ids)
    task = ray.remote(num_gpus=GPU_PROBE_SHARE, num_cpus=0, max_retries=0)(_gpu_memory_here)
    refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False))
            .remote() for node_id in node_ids]
    ready, waiting = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in waiting:
        ray.cancel(ref, force=True)
    answers: list[int | None] = []
    for ref in refs:
        try:
            answers.append(ray.get(ref, timeout=1.0) if ref in ready else None)
        except Exception:  # noqa: BLE001 - a failed probe is a node that did not answer
            answers.append(None)
    return answers


_PROBED: dict[tuple[str, ...], int] = {}  # GPU node ids -> memory, once per driver process


def trial_gpu_memory(timeout_s: float = GPU_PROBE_TIMEOUT_S) -> int:
    """GPU memory for "auto" shares, from the GPU nodes that will run the trials (a CPU head
    node has none), probed once per set of nodes; see `smallest_gpu_memory` for fallbacks."""
    import ray

    node_ids = gpu_node_groups(ray.nodes()) if ray.is_initialized() else []
    key = tuple(sorted(node_ids))
    if key not in _PROBED:
        memory, warning = smallest_gpu_memory(probe_gpu_memory(node_ids, timeout_s),
                                              _gpu_memory_here())
        if warning:
            log.warning("%s", warning)
        _PROBED[key] = memory
    return _PROBED[key]


class TrialResources:
    """Per-trial resource request; 'auto' GPU shares follow each config's model size.

    A picklable object (not a closure): Ray stores it with the experiment for restores.
    """

    def __init__(self, cpus: float, gpus: float | str, cluster_gpus: float,
                 batch_size: int, gpu_memory_bytes: int) -> None:
        self.cpus = cpus
        self.gpus = gpus
        self.cluster_gpus = cluster_gpus
        self.batch_size = batch_size
        self.gpu_memory_bytes = gpu_memory_bytes

    def gpus_for(self, depth: int, width: int) -> float:
        if self.gpus != "auto":
            return float(self.gpus)
        if self.cluster_gpus <= 0:
            return 0.0
        return auto_gpu_share(depth, width, self.batch_size, self.gpu_memory_bytes)

    def __call__(self, config: dict[str, Any]) -> dict[str, float]:
        model = trial_from_ray(config).model
        return {"cpu": self.cpus, "gpu": self.gpus_for(model.depth, model.width)}


def check_resources(cpus: float, gpus: float | str, nodes: list[dict[str, float]]) -> None:
    """Fail at once when no node could ever hold a trial (instead of hanging PENDING)."""
    have_cpu = max((n.get("CPU", 0.0) for n in nodes), default=0.0)
    have_gpu = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if cpus > have_cpu:
        raise ConfigError(f"resources.cpus_per_trial: {cpus:g} is not allowed; the largest Ray "
                          f"node has {have_cpu:g} CPUs")
    if gpus != "auto" and float(gpus) > have_gpu:
        raise ConfigError(f"resources.gpus_per_trial: {gpus:g} is not allowed; the largest Ray "
                          f"node has {have_gpu:g} GPUs (use 0 for CPU trials, or \"auto\")")
