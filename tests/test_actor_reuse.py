"""A worker killed while it is handed the next trial: that trial is retried, not errored."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import tune

from search.actor_reuse import count_reset_deaths_once

RESET_S = 3.0  # long enough to kill the worker mid-reset


class SlowReset(tune.Trainable):
    """Three quick steps; its reset, the hand-over to the next trial, takes RESET_S and
    leaves the worker's pid in a file, the moment to kill it."""

    def setup(self, config: dict[str, Any]) -> None:
        self.steps = 0

    def step(self) -> dict[str, Any]:
        self.steps += 1
        return {"steps": self.steps, "done": self.steps >= 3}

    def reset_config(self, new_config: dict[str, Any]) -> bool:
        flag = Path(new_config["flag"])
        if not flag.exists():  # only the first hand-over is killed
            flag.write_text(str(os.getpid()))
            time.sleep(RESET_S)
        self.steps = 0
        return True

    def save_checkpoint(self, checkpoint_dir: str) -> None:
        return None

    def load_checkpoint(self, checkpoint: Any) -> None:
        pass


def kill_when_resetting(flag: Path) -> None:
    deadline = time.time() + 120
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # well inside the reset
    os.kill(int(flag.read_text()), signal.SIGKILL)


@pytest.fixture
def one_cpu_ray():
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=1, include_dashboard=False)
    yield
    ray.shutdown()


def test_a_worker_killed_during_its_reset_is_one_retried_failure(one_cpu_ray, tmp_path: Path) -> None:
    count_reset_deaths_once()
    count_reset_deaths_once()  # idempotent: the second call must not wrap the patch again
    flag = tmp_path / "resetting"
    killer = threading.Thread(target=kill_when_resetting, args=(flag,), daemon=True)
    killer.start()
    tuner = tune.Tuner(
        SlowReset,
        param_space={"x": tune.grid_search([1, 2, 3]), "flag": str(flag)},
        tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
        run_config=tune.RunConfig(storage_path=str(tmp_path / "runs"), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=1)))
    grid = tuner.fit()
    killer.join(timeout=1)
    assert flag.exists(), "no trial was handed a reused worker"
    assert grid.num_errors == 0, [str(r.error)[:300] for r in grid if r.error]
    assert sorted(r.metrics["steps"] for r in grid) == [3, 3, 3]
