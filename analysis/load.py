"""Read a run directory into pandas, without Ray (its layout: README, "The run directory").

A run directory is whatever `wrn-search run` left behind, possibly mid-run or after a
crash, so every reader here tolerates partial files: a half-written last line of
`result.json` is dropped, a missing `events.jsonl` is inferred around, and a trial
whose results cannot be parsed at all is listed in `Run.unreadable` instead of
stopping the report.

Column names in `Run.trials` reuse the metric constants: the plain name
(`val_clean_acc`, `val_robust_acc_eps_8_255`) is the LAST epoch's value, the `best_`
name is the best-validation-robust checkpoint's value (the model a user deploys).
"""

from __future__ import annotations

import csv
import io
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models import count_parameters, wrn_name
from trainables import metrics, run_files
from trainables.config import (
    DATASETS,
    RAY_TRIAL_KEY,
    ConfigError,
    hyperparameters,
    not_a_run,
    parse_epsilon,
    trial_from_ray,
)
from trainables.cost import measured_epoch_s

logger = logging.getLogger(__name__)

STATUSES = ("complete", "stopped", "error", "running", "incomplete")
# Where a trial's seconds went, for the report's spend plot: status, split by who stopped it.
OUTCOMES = {
    "full fidelity": "reached full fidelity: eligible for the front",
    "stopped at a rung": "stopped early by the scheduler's rung rule",
    "stopped: could not finish": "stopped because its own rate said it could not finish in "
                                 "the budget left",
    "cut short": "still training when the budget ran out or the run was interrupted",
    "errored": "failed",
    "running": "still running (the run is live)",
}
FINISHED_STATES = ("finished", "budget_exhausted")
run_files.EVENTS_FILE = run_files.EVENTS_FILE

_TIMESTAMP = "timestamp"  # Ray's: epoch seconds of the result
_ITERATION = "training_iteration"  # Ray's: == epochs_done
# Trial ids inside directory names: this project's "trial_<id>_wrn-d-k", Ray's default
# "<trainable>_<5 hex>_<5 digits>_...". Used only when result.json holds no trial_id yet.
_DIR_TRIAL_ID = (re.compile(r"^trial_([0-9a-f]+)_"), re.compile(r"_([0-9a-f]{5}_\d{5})_"))


@dataclass(frozen=True)
class Run:
    """One run directory, read: what the report and the fronts work on."""

    run_dir: Path
    spec: dict[str, Any]
    run_state: dict[str, Any]
    trials: pd.DataFrame  # one row per trial
    history: pd.DataFrame  # one row per trial per epoch
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (trial_dir, reason)
    # every early-stopping decision the scheduler made (rungs.jsonl), one row each
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)
    # where the run really is, when `run_dir` is a local mirror of it (analysis.remote)
    location: str | None = None

    @property
    def where(self) -> str:
        """The run's folder or URI, as the report names it."""
        return self.location or str(self.run_dir)

    @property
    def name(self) -> str:
        return str(self.spec.get("name") or self.run_state.get("name") or self.run_dir.name)

    @property
    def state(self) -> str | None:
        state = self.run_state.get("state")
        return str(state) if state is not None else None

    @property
    def is_partial(self) -> bool:
        """True unless run.json says the driver ended the run normally."""
        return self.state not in FINISHED_STATES

    @property
    def eval_epsilons(self) -> list[float]:
        """The evaluation epsilons; the first is the search objective."""
        return spec_epsilons(self.spec) or _epsilons_in(self.history.columns)

    @property
    def full_fidelity(self) -> pd.DataFrame:
        """The trials that fronts may be drawn from."""
        if self.trials.empty:
            return self.trials
        return self.trials[self.trials["full_fidelity"].astype(bool)]

    @property
    def recovered(self) -> pd.DataFrame:
        """The trials whose result.json was damaged or stopped short, rebuilt from their other
        records ("recovered_from" names them): flagged in the report and `status`."""
        if self.trials.empty:
            return self.trials
        return self.trials[self.trials["recovered_from"].notna()]

    @property
    def test_columns(self) -> list[str]:
        return [c for c in self.trials.columns if str(c).startswith(metrics.TEST_PREFIX)]


@dataclass(frozen=True)
class Evaluation:
    """What `wrn-search evaluate` stored: per-model test-split results and the transfer matrix."""

    records: list[dict[str, Any]]  # one per model, ordered by parameter count
    transfer: dict[str, Any] | None


def read_evaluation(run_dir: Path) -> Evaluation | None:
    """RUN_DIR/evaluation read back; None when `evaluate` has not stored a model yet.

    A record is a JSON object with "trial_id" and "per_eps" (the per-epsilon results);
    anything else in the folder (a half-written .tmp file, the adversarial examples) is
    ignored.
    """
    folder = Path(run_dir) / run_files.EVALUATION_DIR
    if not folder.is_dir():
        return None
    records = []
    for path in sorted(folder.glob("*.json")):
        if path.name == run_files.TRANSFER_FILE:
            continue
        record = run_files.read_json_object(path)
        if run_files.is_trial_id(record.get("trial_id")) and isinstance(record.get("per_eps"), dict):
            records.append(record)
    if not records:
        return None
    records.sort(key=lambda r: (_size_key(r.get("params")), str(r["trial_id"])))
    transfer = run_files.read_json_object(folder / run_files.TRANSFER_FILE) or None
    if transfer is not None and not isinstance(transfer.get("matrix"), list):
        transfer = None
    return Evaluation(records, transfer)


def _size_key(value: Any) -> float:
    size = _number(value)
    return math.inf if math.isnan(size) else size


# What the readers of spec.json use, with the type each must have (threat_model.epsilons
# is read by `spec_epsilons`); a value of another type is read as missing.
SPEC_FIELDS: dict[str, dict[str, type]] = {
    "data": {"dataset": str},
    "threat_model": {"norm": str, "steps": int, "restarts": int},
    "space": {},
    "scheduler": {"kind": str, "reduction_factor": float, "noise_z": float},
    "budget": {"only_finishable": bool},
}
PLAN_FIELDS: dict[str, type] = {"grace_period": float, "rungs": list,
                                "cost_prior_flops_per_s": float, "slots": int}


def typed_spec(raw: Mapping[str, Any]) -> dict[str, Any]:
    """spec.json with wrong-typed values read as missing (warned about), so a hand-edited or
    damaged file cannot crash `status` or `report`."""
    where = run_files.SPEC_JSON
    spec = run_files.typed_fields(raw, {"name": str, **dict.fromkeys(SPEC_FIELDS, dict)}, where)
    for name, fields in SPEC_FIELDS.items():
        if name in spec:
            spec[name] = run_files.typed_fields(spec[name], fields, f"{where} {name}")
    return spec


def typed_run_state(raw: Mapping[str, Any]) -> dict[str, Any]:
    """run.json with wrong-typed values read as missing (warned about), its plan included."""
    state = run_files.typed_fields(raw, run_files.RUN_FIELDS, run_files.RUN_FILE)
    if "plan" in state:
        plan = run_files.typed_fields(state["plan"], PLAN_FIELDS, f"{run_files.RUN_FILE} plan")
        if "rungs" in plan:
            plan["rungs"] = [r for r in map(run_files.finite_number, plan["rungs"]) if r is not None]
        state["plan"] = plan
    return state


def spec_epsilons(spec: Mapping[str, Any]) -> list[float]:
    """threat_model.epsilons of a spec.json, as floats ([] when absent or unreadable)."""
    raw = run_files.section(spec, "threat_model", run_files.SPEC_JSON).get("epsilons") or []
    out = []
    for value in raw if isinstance(raw, list) else [raw]:
        try:
            out.append(parse_epsilon(value, "threat_model.epsilons"))
        except ConfigError as err:
            logger.warning("spec.json: %s", err)
    return out


def load_run(run_dir: Path) -> Run:
    """Read spec.json, run.json, events.jsonl and every trial directory under `run_dir`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run directory: {str(run_dir)!r} does not exist or is not a folder")
    if not holds_run(run_dir):
        raise not_a_run(str(run_dir), True, f"it holds no run (no {run_files.DRIVER_DIR}/"
                        f"{run_files.SPEC_JSON}, {run_files.RUN_FILE} or "
                        f"{run_files.EVENTS_FILE}, no trial folder)")
    driver = run_dir / run_files.DRIVER_DIR
    spec = typed_spec(run_files.read_json_object(driver / run_files.SPEC_JSON))
    run_state = typed_run_state(run_files.read_json_object(driver / run_files.RUN_FILE))
    events = _read_events(driver / run_files.EVENTS_FILE)
    decisions = read_decisions(driver / run_files.RUNGS_FILE)
    context = _Context(
        epsilons=spec_epsilons(spec),
        num_classes=DATASETS.get(str((spec.get("data") or {}).get("dataset")), 10),
        run_running=run_state.get("state") == "running",
    )
    unreadable: list[tuple[str, str]] = []
    readable: list[tuple[Path, pd.DataFrame, str]] = []
    recovered: dict[str, str] = {}  # trial id -> the records its results were rebuilt from
    for trial_dir in trial_dirs(run_dir):
        records, problem, torn = _read_results(trial_dir / run_files.RESULT_FILE)
        trial_id = _trial_id(records, trial_dir.name)
        records, sources = _recover(trial_dir, records, problem is not None or torn,
                                    events.get(trial_id, []))
        if sources:
            recovered[trial_id] = ", ".join(sources)
        elif problem is not None:
            unreadable.append((trial_dir.name, problem))
            continue
        history = _history(records, trial_dir.name)
        history.insert(0, "trial_id", trial_id)
        readable.append((trial_dir, history, trial_id))
    if not context.epsilons:  # no spec: take the epsilons the results carry
        context.epsilons.extend(_epsilons_in(c for _, h, _ in readable for c in h.columns))
    budget_stops = set(decisions.loc[decisions["reason"] == "budget", "trial_id"].astype(str)) \
        if len(decisions) else set()
    rows = [
        _summarise(d, trial_id, h, run_files.read_json_object(d / run_files.PARAMS_FILE), events, context)
        for d, h, trial_id in readable
    ]
    for row in rows:
        row["recovered_from"] = recovered.get(row["trial_id"])
        row["stopped_by"] = (("budget" if row["trial_id"] in budget_stops else "rung")
                             if row["status"] == "stopped" else None)
        row["outcome"] = _outcome(row["status"], row["stopped_by"])
    histories = [h for _, h, _ in readable]
    trials = _trials_frame(rows, context.epsilons)
    trials = _merge_evaluation(trials, run_dir / run_files.EVALUATION_DIR)
    history = pd.concat(histories, ignore_index=True) if histories else pd.DataFrame()
    return Run(run_dir, spec, run_state, trials, history, unreadable, decisions)


def _outcome(status: str, stopped_by: str | None) -> str:
    """The trial's entry in OUTCOMES."""
    if status == "stopped":
        return "stopped: could not finish" if stopped_by == "budget" else "stopped at a rung"
    return {"complete": "full fidelity", "error": "errored", "running": "running"}.get(
        status, "cut short")


def read_decisions(path: Path) -> pd.DataFrame:
    """rungs.jsonl as a table: trial_id, milestone (None for a budget stop), decision, reason
    ("rank", "within-noise" or "budget"), margin, epochs_done, wall_time_s, ..."""
    columns = ["trial_id", "milestone", "decision", "reason", "margin", metrics.EPOCHS_DONE]
    if not path.exists():
        return pd.DataFrame(columns=columns)
    good, bad = run_files.json_lines(path)
    for number, message in bad:
        logger.warning("%s line %d dropped: %s", path, number, message)
    frame = pd.DataFrame([{k: v for k, v in r.items() if _scalar(v)} for r in good])
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    for column in ("milestone", "margin", metrics.EPOCHS_DONE):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def holds_run(run_dir: Path) -> bool:
    """Whether a folder holds a run (even one that has only started): the driver's record,
    or a trial folder (a Ray experiment without it)."""
    driver = run_dir / run_files.DRIVER_DIR
    names = (run_files.SPEC_JSON, run_files.RUN_FILE, run_files.EVENTS_FILE)
    return any((driver / name).is_file() for name in names) or bool(trial_dirs(run_dir))


def trial_dirs(run_dir: Path) -> list[Path]:
    """Sub-folders holding a result.json or params.json, sorted by name (Ray's order)."""
    return sorted(
        p for p in run_dir.iterdir()
        if p.is_dir() and ((p / run_files.RESULT_FILE).exists() or (p / run_files.PARAMS_FILE).exists())
    )


@dataclass
class _Context:
    epsilons: list[float]
    num_classes: int
    run_running: bool




def _read_results(path: Path) -> tuple[list[dict[str, Any]], str | None, bool]:
    """Records of result.json; when nothing in it can be used, why; and whether a line was
    dropped (a torn file: `_recover` looks for the rest elsewhere).

    An empty or missing result.json is not a problem: Ray creates it when the trial
    starts, so a trial that has not finished its first epoch (or errored before it)
    looks exactly like that. Only a file with content and no parsable line is.
    """
    if not path.exists():
        return [], None, False
    try:
        good, bad = run_files.json_lines(path)
    except OSError as err:
        return [], f"cannot read {run_files.RESULT_FILE}: {err}", True
    if bad and not good:
        number, message = bad[0]
        return [], f"{run_files.RESULT_FILE} has no parsable line (line {number}: {message})", True
    for number, message in bad:
        logger.warning("%s line %d dropped: %s", path, number, message)
    return good, None, bool(bad)


PROGRESS_FILE = "progress.csv"  # in a trial folder: Ray's copy of the results, as CSV
# Result keys that hold text (ours, then Ray's); every other one holds a number.
_TEXT_KEYS = {metrics.WRN, metrics.METHOD, metrics.SPLIT, metrics.NODE_ID, "trial_id",
              "trial_dir", "date", "hostname", "node_ip", "checkpoint_dir_name", "experiment_tag"}
_CARRIED = ("trial_id", metrics.WRN, metrics.PARAMS, metrics.MAX_EPOCHS, *metrics.HYPERPARAMETERS)


def _epoch(record: Mapping[str, Any]) -> float | None:
    return run_files.finite_number(record.get(metrics.EPOCHS_DONE, record.get(_ITERATION)))


def _recover(trial_dir: Path, records: list[dict[str, Any]], torn: bool,
             events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The trial's records completed from its other records when result.json is torn or
    stops short of the epochs its "complete" event recorded, and where the rest came from:
    Ray's progress.csv (the same results), then the newest checkpoint (epochs, wall time and
    the best epoch's metrics), then the event itself (the epochs done)."""
    completed = [_epoch(e) for e in events if e.get("event") == "complete"]
    target = completed[-1] if completed and completed[-1] is not None else None
    done = max((e for e in map(_epoch, records) if e is not None), default=0.0)
    if not torn and (target is None or done >= target):
        return records, []
    sources: list[str] = []
    seen = {_epoch(r) for r in records}
    extra = [r for r in _progress_records(trial_dir / PROGRESS_FILE) if _epoch(r) not in seen]
    if extra:
        records, done = records + extra, max([done, *(e for e in map(_epoch, extra) if e)])
        sources.append(PROGRESS_FILE)
    carried = {k: records[-1][k] for k in _CARRIED if records and k in records[-1]}
    if target is not None and done < target:
        from trainables.checkpoint import checkpoint_result  # torch: only when needed

        final = checkpoint_result(trial_dir)
        if final is not None and (_epoch(final) or 0.0) > done:
            records, done = records + [{**carried, **final}], _epoch(final) or done
            sources.append("checkpoint")
    if target is not None and done < target:
        records = records + [{**carried, metrics.EPOCHS_DONE: target}]
        sources.append(run_files.EVENTS_FILE)
    if sources:
        logger.warning("%s: %s is damaged or incomplete; recovered from %s", trial_dir.name,
                       run_files.RESULT_FILE, ", ".join(sources))
    return records, sources


def _progress_records(path: Path) -> list[dict[str, Any]]:
    """Ray's progress.csv as result records: the rows with every field, numbers as numbers;
    a last line cut short is dropped."""
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return []
    header, out = rows[0], []
    for row in rows[1:]:
        if len(row) == len(header):
            out.append({k: _csv_value(k, v) for k, v in zip(header, row, strict=True) if v != ""})
    return out


def _csv_value(key: str, text: str) -> Any:
    if key in _TEXT_KEYS:
        return text
    if text in ("True", "False"):
        return text == "True"
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() and "." not in text and "e" not in text else number


def _read_events(path: Path) -> dict[str, list[dict[str, Any]]]:
    """events.jsonl grouped by trial id, in file order (the order the driver saw them)."""
    if not path.exists():
        return {}
    good, bad = run_files.json_lines(path)
    for number, message in bad:
        logger.warning("%s line %d dropped: %s", path, number, message)
    grouped: dict[str, list[dict[str, Any]]] = {}
    for event in good:
        grouped.setdefault(str(event.get("trial_id")), []).append(event)
    return grouped


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _history(records: list[dict[str, Any]], dirname: str) -> pd.DataFrame:
    """One row per epoch; a restored trial repeats epochs, the last report of each wins."""
    flat = [{k: v for k, v in r.items() if _scalar(v) and k != "trial_id"} for r in records]
    frame = _numbers_as_numbers(pd.DataFrame(flat), dirname)
    frame.insert(0, "trial_dir", dirname)
    if frame.empty:
        return frame
    if metrics.EPOCHS_DONE not in frame.columns and _ITERATION in frame.columns:
        frame[metrics.EPOCHS_DONE] = frame[_ITERATION]
    if metrics.EPOCHS_DONE in frame.columns:
        frame = frame.drop_duplicates(subset=[metrics.EPOCHS_DONE], keep="last")
        frame = frame.sort_values(metrics.EPOCHS_DONE, kind="stable")
    return frame.reset_index(drop=True)


def _numbers_as_numbers(frame: pd.DataFrame, dirname: str) -> pd.DataFrame:
    """Every result key but the text ones (`_TEXT_KEYS`) holds a number: text there
    ("epochs_done": "two") is read as missing, with a warning, not compared with numbers."""
    for column in frame.columns:
        if column in _TEXT_KEYS or frame[column].dtype != object:
            continue
        text = frame[column].map(lambda v: isinstance(v, str))
        if text.any():
            logger.warning("%s: %s = %r is not a number; read as missing", dirname, column,
                           frame.loc[text, column].iloc[0])
            frame[column] = pd.to_numeric(frame[column].where(~text), errors="coerce")
    return frame


def _trial_id(records: list[dict[str, Any]], dirname: str) -> str:
    """The trial's id: result.json's, when it is a safe one (ids become file names, and a
    result.json may come from anywhere), else from the folder's name."""
    for record in reversed(records):
        if record.get("trial_id"):
            if run_files.is_trial_id(record["trial_id"]):
                return str(record["trial_id"])
            logger.warning("%s/%s: trial_id %r is not letters, digits and _; using the "
                           "folder's name", dirname, run_files.RESULT_FILE,
                           str(record["trial_id"])[:80])
            break
    for pattern in _DIR_TRIAL_ID:
        if match := pattern.search(dirname):
            return match.group(1)
    return run_files.as_trial_id(dirname)


def _configured(config: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters (metric keys) from a trial's params.json: all of them for a wrn-search
    trial (its fixed settings are there too), only the flat searched ones for a foreign one."""
    if RAY_TRIAL_KEY in config:
        try:
            return hyperparameters(trial_from_ray(config))
        except ConfigError as err:
            logger.warning("params.json is not a valid trial config (%s)", err)
    return {k: config[k] for k in (*metrics.HYPERPARAMETERS, metrics.MAX_EPOCHS) if k in config}


def _error_summary(text: str) -> str | None:
    """The line that names the exception in Ray's error.txt.

    Ray writes 'Failure # n (occurred at ...)' and then a traceback, so the first line
    says nothing; the last unindented line of a traceback ('ValueError: ...') does.
    """
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith("Failure # ")]
    for line in reversed(lines):
        if not line[0].isspace() and not line.startswith(("ray::", "Traceback")):
            return line.strip()
    return lines[0].strip() if lines else None


def _status(
    *, events: list[dict[str, Any]], full: bool, has_error_file: bool, run_running: bool
) -> str:
    """Status from the driver's last event, the fidelity reached, and error.txt.

    A trial retried after an error (FailureConfig) keeps its old error.txt and gets a
    new 'start' event, so error.txt decides only when the driver logged nothing.
    """
    kinds = [e.get("event") for e in events if e.get("event") in ("start", "complete", "error")]
    last = kinds[-1] if kinds else None
    if last == "error" or (last is None and has_error_file and not full):
        return "error"
    if full:
        return "complete"
    if last == "complete":
        return "stopped"
    return "running" if run_running else "incomplete"


def _last(history: pd.DataFrame, key: str) -> Any:
    if key not in history.columns:
        return None
    values = history[key].dropna()
    return values.iloc[-1] if len(values) else None


def _number(value: Any) -> float:
    """A number read from a file, NaN when it is not one (the trials table's missing value)."""
    number = run_files.finite_number(value)
    return math.nan if number is None else number


def _best_values(history: pd.DataFrame, epsilons: Sequence[float]) -> dict[str, Any]:
    """Best-checkpoint numbers: reported by the trial, else rebuilt from its history."""
    keys = [metrics.BEST_VAL_ROBUST_ACC, metrics.BEST_VAL_CLEAN_ACC, metrics.BEST_EPOCH]
    keys += [metrics.best_robust_acc_key(e) for e in epsilons]
    best = {k: _last(history, k) for k in keys}
    objective = metrics.VAL_ROBUST_ACC
    if all(v is not None for v in best.values()) or objective not in history.columns:
        return best
    scores = pd.to_numeric(history[objective], errors="coerce")
    if scores.notna().any():
        row = history.loc[scores.idxmax()]  # first epoch of the maximum, like the trainable
        rebuilt = {
            metrics.BEST_VAL_ROBUST_ACC: row.get(objective),
            metrics.BEST_VAL_CLEAN_ACC: row.get(metrics.VAL_CLEAN_ACC),
            metrics.BEST_EPOCH: row.get(metrics.EPOCHS_DONE),
        }
        rebuilt |= {metrics.best_robust_acc_key(e): row.get(metrics.robust_acc_key(e))
                    for e in epsilons}
        best = {k: v if v is not None else rebuilt.get(k) for k, v in best.items()}
    return best


def _summarise(
    trial_dir: Path,
    trial_id: str,
    history: pd.DataFrame,
    config: Mapping[str, Any],
    events: Mapping[str, list[dict[str, Any]]],
    context: _Context,
) -> dict[str, Any]:
    """One trials row: hyperparameters, status, fidelity, best and last accuracies."""
    configured = _configured(config)
    hyper = {k: _last(history, k) for k in metrics.HYPERPARAMETERS}
    hyper = {k: v if v is not None else configured.get(k) for k, v in hyper.items()}
    epochs_done = _number(_last(history, metrics.EPOCHS_DONE))
    epochs_done = 0.0 if math.isnan(epochs_done) else epochs_done  # a fraction at sub-epoch rungs
    max_epochs = _last(history, metrics.MAX_EPOCHS)
    if max_epochs is None:
        max_epochs = configured.get(metrics.MAX_EPOCHS)
    max_epochs = run_files.finite_number(max_epochs)
    max_epochs = int(max_epochs) if max_epochs is not None else None
    trial_events = events.get(trial_id, [])
    error_file = trial_dir / run_files.ERROR_FILE
    error_text = error_file.read_text(errors="replace") if error_file.exists() else ""
    full = max_epochs is not None and epochs_done >= max_epochs
    status = _status(events=trial_events, full=full, has_error_file=bool(error_text),
                     run_running=context.run_running)
    event_errors = [e.get("error") for e in trial_events if e.get("event") == "error"]
    error = next((_error_summary(str(e)) for e in reversed(event_errors) if e), None)
    error = error or _error_summary(error_text)
    end_time = _number(_last(history, _TIMESTAMP))
    if math.isnan(end_time) and trial_events:
        end_time = _number(trial_events[-1].get("time"))
    wall = _last(history, metrics.WALL_TIME_S)
    wall = wall if wall is not None else _last(history, "time_total_s")
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "trial_dir": trial_dir.name,
        metrics.WRN: _last(history, metrics.WRN),
        **hyper,
        metrics.PARAMS: _last(history, metrics.PARAMS),
        "status": status,
        "error": error,
        # the trainable's marker: a diverged trial raises before it can report the flag
        metrics.DIVERGED: bool(_last(history, metrics.DIVERGED) or False)
        or (trial_dir / run_files.DIVERGED_MARKER).exists(),
        metrics.EPOCHS_DONE: epochs_done,
        metrics.MAX_EPOCHS: max_epochs,
        "full_fidelity": status == "complete",
        **_best_values(history, context.epsilons),
        metrics.VAL_CLEAN_ACC: _last(history, metrics.VAL_CLEAN_ACC),
        metrics.VAL_ROBUST_ACC: _last(history, metrics.VAL_ROBUST_ACC),
        **{metrics.robust_acc_key(e): _last(history, metrics.robust_acc_key(e))
           for e in context.epsilons},
        metrics.WALL_TIME_S: wall,
        # predicted before the trial started, and measured: seconds per epoch
        metrics.PREDICTED_EPOCH_S: _last(history, metrics.PREDICTED_EPOCH_S),
        metrics.ACTUAL_EPOCH_S: _number(measured_epoch_s({
            metrics.EPOCHS_DONE: epochs_done, metrics.WALL_TIME_S: wall,
            **{k: _last(history, k) for k in (metrics.TRAIN_TIME_S, metrics.EVAL_TIME_S)}})),
        metrics.GPU_SHARE: _last(history, metrics.GPU_SHARE),
        "start_time": _number(next((e.get("time") for e in trial_events), None)),
        "end_time": end_time,
    }
    _fill_architecture(row, context.num_classes)
    return row


def _fill_architecture(row: dict[str, Any], num_classes: int) -> None:
    """Name and size of a trial that has not reported yet, from its depth and width."""
    depth, width = row.get(metrics.DEPTH), row.get(metrics.WIDTH)
    if depth is None or width is None:
        return
    try:
        depth, width = int(depth), int(width)
        if row.get(metrics.WRN) is None:
            row[metrics.WRN] = wrn_name(depth, width)
        if row.get(metrics.PARAMS) is None:
            row[metrics.PARAMS] = count_parameters(depth, width, num_classes)
    except (TypeError, ValueError):
        return


def _epsilons_in(columns: Iterable[Any]) -> list[float]:
    found = {metrics.robust_acc_eps(str(c)) for c in columns}
    return sorted(e for e in found if e is not None)


def _trials_frame(rows: list[dict[str, Any]], epsilons: Sequence[float]) -> pd.DataFrame:
    """The trials table: every column present and numbers typed, even with no trial."""
    accuracy = [metrics.BEST_VAL_ROBUST_ACC, metrics.BEST_VAL_CLEAN_ACC,
                metrics.VAL_CLEAN_ACC, metrics.VAL_ROBUST_ACC]
    accuracy += [metrics.best_robust_acc_key(e) for e in epsilons]
    accuracy += [metrics.robust_acc_key(e) for e in epsilons]
    numeric = [metrics.PARAMS, metrics.BEST_EPOCH, metrics.WALL_TIME_S, metrics.GPU_SHARE,
               metrics.PEAK_LR, metrics.WEIGHT_DECAY, metrics.TRAIN_EPS, metrics.TRAIN_STEPS,
               metrics.EPOCHS_DONE, metrics.PREDICTED_EPOCH_S, metrics.ACTUAL_EPOCH_S,
               "start_time", "end_time", *accuracy]
    columns = ["trial_id", "trial_dir", metrics.WRN, *metrics.HYPERPARAMETERS, "status",
               "stopped_by", "outcome", "recovered_from", "error", metrics.DIVERGED, metrics.MAX_EPOCHS,
               "full_fidelity", *numeric]
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(dict.fromkeys(columns)))
    for column in numeric:
        if column not in frame.columns:
            frame[column] = np.nan
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["full_fidelity"] = frame["full_fidelity"].astype(bool)
    return frame


def _merge_evaluation(trials: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Test-split columns written by `wrn-search evaluate`, when it has run (the hook)."""
    if trials.empty or not folder.is_dir():
        return trials
    rows = []
    for path in sorted(folder.glob("*.json")):
        record = run_files.read_json_object(path)
        tests = {k: v for k, v in record.items() if k.startswith(metrics.TEST_PREFIX) and _scalar(v)}
        if run_files.is_trial_id(record.get("trial_id")) and tests:
            rows.append({"trial_id": str(record["trial_id"]), **tests})
    if not rows:
        return trials
    tests = pd.DataFrame(rows).drop_duplicates("trial_id", keep="last")
    return trials.merge(tests, on="trial_id", how="left")
