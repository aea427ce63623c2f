"""Trial resources held to what the cluster has: search/cluster.py (no Ray cluster needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_spec import VALID

from search.cluster import (
    TrialResources,
    auto_gpu_share,
    check_resources,
    estimate_trial_memory_bytes,
    gpu_node_groups,
    probe_gpu_memory,
    smallest_gpu_memory,
    trial_gpu_memory,
)
from search.searchers import build_searcher
from search.spec import ExperimentSpec
from trainables.config import ConfigError, RayStartError

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_and_cpu_requests_beyond_the_cluster_fail_at_once() -> None:
    cpu_only = [{"CPU": 2.0}, {"CPU": 1.0}]
    check_resources(1, 0, cpu_only)
    check_resources(1, "auto", cpu_only)
    with pytest.raises(ConfigError,
                       match=r"^resources.gpus_per_trial: 1 is not allowed; the largest Ray node has 0 GPUs"):
        check_resources(1, 1, cpu_only)
    with pytest.raises(ConfigError, match=r"^resources.gpus_per_trial: 0.25"):
        check_resources(1, 0.25, cpu_only)
    with pytest.raises(ConfigError,
                       match=r"^resources.cpus_per_trial: 3 is not allowed; the largest Ray node has 2 CPUs"):
        check_resources(3, 0, cpu_only)  # 3 CPUs in total, but no node holds 3
    with pytest.raises(ConfigError, match=r"^storage.optuna_url: 'foo://bar' is not allowed"):
        build_searcher(ExperimentSpec.from_dict({**VALID, "storage": {"optuna_url": "foo://bar"}}))


def test_auto_gpu_shares_grow_with_the_model_and_stay_in_eighths() -> None:
    gib = 2**30
    small = auto_gpu_share(10, 1, 128, 16 * gib)
    big = auto_gpu_share(34, 10, 128, 16 * gib)  # about 8 GB: half of a 16 GiB card
    assert small == 0.125 and small < big <= 1.0
    assert auto_gpu_share(34, 10, 128, 80 * gib) == 0.125
    assert (big * 8).is_integer()
    assert auto_gpu_share(40, 10, 512, 16 * gib) == 1.0
    assert estimate_trial_memory_bytes(34, 10, 256) > estimate_trial_memory_bytes(34, 10, 128)
    on_cpu = TrialResources(cpus=1, gpus="auto", cluster_gpus=0, batch_size=128, gpu_memory_bytes=gib)
    assert on_cpu({"depth": 34, "width": 10}) == {"cpu": 1, "gpu": 0.0}
    on_gpu = TrialResources(cpus=2, gpus="auto", cluster_gpus=1, batch_size=128, gpu_memory_bytes=80 * gib)
    assert on_gpu({"depth": 10, "width": 1})["gpu"] == 0.125
    fixed = TrialResources(cpus=1, gpus=0.5, cluster_gpus=1, batch_size=128, gpu_memory_bytes=0)
    assert fixed({"depth": 10, "width": 1}) == {"cpu": 1, "gpu": 0.5}


def test_ray_that_does_not_start_is_one_line_with_its_own_exit_status(monkeypatch, capsys,
                                                                     tmp_path) -> None:
    """Ray's startup can time out on an overloaded machine (seen here: 'The current node timed
    out during startup'); that is exit status 4 and one line, not a traceback."""
    import ray

    from search import cli, cluster

    def slow_start(*args, **kwargs):
        raise Exception("The current node timed out during startup.\nmore lines")  # noqa: TRY002

    monkeypatch.setattr(ray, "init", slow_start)
    with pytest.raises(RayStartError, match=r"^Ray did not start on this machine \(The current "
                                            r"node timed out during startup\.\); nothing"):
        cluster.start_ray(None, num_cpus=1)
    ray.shutdown()
    code = cli.main(["run", str(ROOT / "configs" / "quickstart.toml"), "--storage", str(tmp_path)])
    assert code == cli.EXIT_RAY_START == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("wrn-search: error: Ray did not start"), err
    assert not any(tmp_path.iterdir())  # nothing written


def _node(node_id: str, gpus: float, kind: str | None = None, alive: bool = True) -> dict:
    resources = {"CPU": 8.0, **({"GPU": gpus} if gpus else {})}
    if kind:
        resources[f"accelerator_type:{kind}"] = 1.0
    return {"NodeID": node_id, "Alive": alive, "Resources": resources}


def test_auto_gpu_memory_comes_from_the_gpu_nodes_not_the_driver() -> None:
    """A CPU head node and GPU workers: one probe per kind of GPU node, the smallest answer
    wins; without answers the driver's GPU, then 16 GiB, each with a warning line."""
    gib = 2**30
    nodes = [_node("head", 0), _node("a1", 8, "A100"), _node("a2", 8, "A100"),
             _node("h1", 4, "H100"), _node("dead", 8, "T4", alive=False), _node("x", 2)]
    assert gpu_node_groups(nodes) == ["a1", "h1", "x"]
    assert smallest_gpu_memory([80 * gib, 40 * gib, None], driver=None) == (40 * gib, None)
    memory, warning = smallest_gpu_memory([None, None], driver=24 * gib)
    assert memory == 24 * gib and "driver's GPU (24 GiB)" in warning
    memory, warning = smallest_gpu_memory([], driver=None)
    assert memory == 16 * gib and "assume 16 GiB" in warning and len(warning.splitlines()) == 1


def test_the_gpu_memory_probe_is_bounded_and_falls_back_on_a_real_ray(caplog) -> None:
    """A real local Ray that advertises a GPU this machine does not have: the probe's task runs
    there and finds no CUDA; with the GPU held by an actor it cannot be scheduled and gives up
    after its timeout. Either way "auto" shares fall back to 16 GiB with a warning."""
    import time

    import ray

    from search import cluster

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        [node_id] = gpu_node_groups(ray.nodes())
        assert probe_gpu_memory([node_id], timeout_s=120) == [None]  # ran, no CUDA here
        cluster._PROBED.clear()
        with caplog.at_level("WARNING", logger="search.cluster"):
            assert trial_gpu_memory(timeout_s=120) == 16 * 2**30
        assert "assume 16 GiB" in caplog.text

        @ray.remote(num_gpus=1, num_cpus=0)
        class Holder:
            def ready(self) -> bool:
                return True

        holder = Holder.remote()
        ray.get(holder.ready.remote(), timeout=120)
        started = time.time()
        assert probe_gpu_memory([node_id], timeout_s=3) == [None]  # every GPU share is taken
        assert time.time() - started < 20
    finally:
        cluster._PROBED.clear()
        ray.shutdown()
