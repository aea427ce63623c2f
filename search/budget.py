"""The wall-clock budget of a search: how much is left, and whether a trial can still finish.

One `BudgetClock` per run is shared by the driver's recorder (which writes run.json), the
searcher (which only starts what can finish) and the scheduler (which stops a trial that no
longer can). They are pickled together in Ray's tuner.pkl, so they stay one object when the
search is resumed; unpickled, the clock re-reads run.json (elapsed_s and budget_s), so a
resumed search continues with the budget the previous driver left, or the budget
`resume --budget` raised.

`BudgetStopper` ends the search when the clock says the budget is spent, in place of Ray's
`time_budget_s`: Ray 2.60 saves its TimeoutStopper in the experiment state and restores it,
with the budget it had left, on `Tuner.restore`, ignoring the restored TuneConfig's
time_budget_s; a search given more budget would stop at once. Ours is restored the same way
and re-reads run.json's budget.

`BudgetGate` turns a configuration into predicted seconds (`search.cost_model`) and says
whether its full training fits in what is left. Fronts use full-fidelity trials only, so the
seconds of a trial that cannot finish buy nothing; `budget.only_finishable = false` turns the
gate off for users who want such trials anyway.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pyarrow.fs as pafs
from ray.tune import Stopper

from search.cluster import TrialResources
from search.cost_model import CostModel, Prediction
from trainables import metrics as M
from trainables import run_files
from trainables.config import TrialConfig
from trainables.cost import epoch_flops, evaluation_flops, measured_epoch_s

log = logging.getLogger(__name__)


class BudgetClock:
    """Seconds of budget used across sessions: run.json's elapsed_s plus this session's time."""

    def __init__(self, run_dir: str, budget_s: float) -> None:
        self.run_dir = run_dir
        self.budget_s = float(budget_s)
        self._restart()

    def _restart(self) -> None:
        self.elapsed_before = _recorded_elapsed(self.run_dir)
        self.session_start = time.time()

    def attach(self, run_dir: str) -> None:
        """Point at the run folder where it is now (it may have moved) and restart there."""
        self.run_dir = run_dir
        self._restart()

    @property
    def elapsed_s(self) -> float:
        return self.elapsed_before + time.time() - self.session_start

    @property
    def remaining_s(self) -> float:
        return max(0.0, self.budget_s - self.elapsed_s)

    def __getstate__(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "budget_s": self.budget_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled (a resumed search): the budget is run.json's, which `resume --budget`
        may have raised since the clock was pickled."""
        self.__dict__.update(state)
        self._restart()
        budget = _recorded(self.run_dir, "budget_s", 0.0)
        if budget > 0:
            self.budget_s = budget


def _recorded(run_dir: str, key: str, default: float) -> float:
    """A non-negative number in the run's run.json; `default` when there is none (a new run)."""
    try:
        fs, root = pafs.FileSystem.from_uri(run_dir)
        with fs.open_input_stream(f"{root.rstrip('/')}/{run_files.DRIVER_DIR}/{run_files.RUN_FILE}") as f:
            value = json.loads(f.read().decode("utf-8")).get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        return float(value) if ok else default
    except (OSError, ValueError, AttributeError):  # missing, damaged, not an object
        return default


def _recorded_elapsed(run_dir: str) -> float:
    """elapsed_s in the run's run.json; 0 when there is none yet (a new run)."""
    return _recorded(run_dir, "elapsed_s", 0.0)


class BudgetStopper(Stopper):
    """Ray Tune stopper: end the whole search once the run's budget clock is spent."""

    def __init__(self, clock: BudgetClock) -> None:
        self.clock = clock

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False  # trials are stopped by the schedulers; this ends the search as a whole

    def stop_all(self) -> bool:
        return self.clock.remaining_s <= 0


class BudgetGate:
    """Predicted seconds of a configuration, and whether it can finish in the budget left.

    Args:
        clock: The run's budget clock.
        cost: The cost model (prior, refined by `observe`).
        resources: The trials' resource request (`search.cluster.TrialResources`): a trial
            holds its GPU share, or on CPU trials its CPUs, as units of device.
        sub_epoch_rungs: Extra evaluations every trial makes (early stopping's sub-epoch rungs).
        only_finishable: When False, `can_finish` is always True (the user asked for it).
    """

    def __init__(self, clock: BudgetClock, cost: CostModel, *, resources: TrialResources,
                 sub_epoch_rungs: int = 0, only_finishable: bool = True) -> None:
        self.clock = clock
        self.cost = cost
        self.resources = resources
        self.sub_epoch_rungs = sub_epoch_rungs
        self.only_finishable = only_finishable

    def units(self, config: TrialConfig) -> float:
        share = self.resources.gpus_for(config.model.depth, config.model.width)
        return share if share > 0 else float(self.resources.cpus)

    def prediction(self, config: TrialConfig) -> Prediction:
        return self.cost.predict(epoch_flops(config), self.units(config))

    def full_seconds(self, config: TrialConfig, pessimistic: bool = False) -> float:
        """Seconds to train `config` to full fidelity, sub-epoch evaluations included."""
        p = self.prediction(config)
        epochs = config.training.epochs + self.sub_epoch_rungs * (
            evaluation_flops(config) / epoch_flops(config))
        return p.pessimistic(epochs) if pessimistic else p.seconds(epochs)

    def can_finish(self, config: TrialConfig) -> bool:
        """Whether a trial started now would (pessimistically) reach full fidelity in time."""
        if not self.only_finishable:
            return True
        return self.full_seconds(config, pessimistic=True) <= self.clock.remaining_s

    def observe(self, trial_id: str, config: TrialConfig, result: dict[str, Any]) -> None:
        """Refine the cost model from a trial's latest result (its seconds per epoch so far)."""
        epoch_s = measured_epoch_s(result)
        if epoch_s is None:
            return
        share = result.get(M.GPU_SHARE)
        units = share if isinstance(share, (int, float)) and share > 0 else self.units(config)
        self.cost.observe(trial_id, epoch_flops(config), units, epoch_s)
