"""The Ray and Optuna releases this code is tested with, checked before Ray starts.

The search reaches into private attributes where no public API exists: the Tuner's
`_local_tuner` (to re-attach callbacks on resume, `search/tuner.py`) and its `_tune_config`
(to give an extended search its own search generator), OptunaSearch's
`_ot_study`/`_ot_trials`/`_space` (enqueued proposals and twins, `search/searchers.py`), the
keys of SearchGenerator's saved state ("total_samples", "finished": `ExtendedSearch`,
`search/searchers.py`), ASHA's brackets and rungs (`search/asha.py`), the W&B callback's
logging actor class and MLflow logger's util (`search/trackers.py`), and the
TuneController's `_trial_task_failure`/`_resetting_trials` (a worker lost during actor reuse
counts once, `search/actor_reuse.py`). It also reads the trial and checkpoint folder names
out of Ray's experiment_state-*.json (to mend a checkpoint Ray deleted as a killed driver's
state still named it, `search/tuner.py`), and relies on Ray restoring the TuneController's
stopper from the experiment state (why the budget is a `BudgetStopper`, `search/budget.py`).
A release that renames any of them would fail deep inside a search, or silently misbehave;
so an untested release is refused in one line before anything starts, unless the user opts
in with WRN_SEARCH_ALLOW_UNTESTED=1 (then it is a warning). pyautoattack is checked the same
way where it is used (`trainables.evaluation.suite.check_autoattack_version`). The same
ranges are declared in pyproject.toml; constraints.txt pins the exact versions CI ran.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import PackageNotFoundError, version

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from trainables.config import ConfigError

log = logging.getLogger(__name__)

TESTED = {"ray": ">=2.60,<2.61", "optuna": ">=5.0,<5.1"}
ALLOW_UNTESTED = "WRN_SEARCH_ALLOW_UNTESTED"


def untested(package: str, installed: str) -> bool:
    try:
        return Version(installed) not in SpecifierSet(TESTED[package])
    except InvalidVersion:
        return True


def check_tested_versions() -> None:
    """One ConfigError line naming the first untested release (or a warning when allowed)."""
    for package, tested in TESTED.items():
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = "not installed"
        if not untested(package, installed):
            continue
        message = (f"{package}: {installed!r} is not allowed; wrn-search is tested with "
                   f"{package}{tested} (pip install -c constraints.txt -e ., or set "
                   f"{ALLOW_UNTESTED}=1 to try anyway)")
        if os.environ.get(ALLOW_UNTESTED) == "1":
            log.warning("%s", message)
        else:
            raise ConfigError(message)
