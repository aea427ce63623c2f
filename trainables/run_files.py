"""The files of a run folder: their names, tolerant readers and atomic writers, in one place.

A run folder is whatever `wrn-search run` left behind, possibly mid-run, after a crash, or
on shared storage, so readers here never raise on a damaged file: they return what could
be read and say what could not. Writers replace a file in one step (a temporary file, then
a rename), so a reader never sees half a file. `RunFiles` goes through pyarrow's
filesystem layer, so a run on an NFS path or an object-store URI works the same.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from trainables.config import fail

log = logging.getLogger(__name__)

# The driver's files inside a run directory. They live in a subfolder on purpose: when a
# search is resumed, Ray downloads every top-level *.json/*.pkl into its staging folder and
# copies them back periodically (non-atomically), which would revert and tear these files.
DRIVER_DIR = "wrn-search"
RUN_FILE = "run.json"  # run state and budget used
EVENTS_FILE = "events.jsonl"  # trial start / complete / error events
RUNGS_FILE = "rungs.jsonl"  # every early-stopping decision the scheduler made, and why
DIVERGED_MARKER = "diverged.txt"  # in a trial folder: its loss went NaN/inf (the reason)
SPEC_JSON = "spec.json"  # the validated spec, every default filled in
SPEC_TOML = "spec.toml"  # the spec as the user wrote it
OPTUNA_JOURNAL = "optuna.journal"  # the Optuna study (journal file storage): `optuna-dashboard` reads it
RESULT_FILE = "result.json"  # in a trial folder: Ray's per-epoch results, one JSON per line
PARAMS_FILE = "params.json"  # in a trial folder: Ray's copy of the trial's config
ERROR_FILE = "error.txt"  # in a trial folder: Ray's traceback of a failed trial
TUNER_FILE = "tuner.pkl"  # Ray's pickled Tuner: what `resume` restores
EVALUATION_DIR = "evaluation"  # what `wrn-search evaluate` writes (test split)
TRANSFER_FILE = "transfer.json"  # evaluation/transfer.json: the cross-model matrix
ADV_DIR = "adv"  # evaluation/adv/<trial_id>.pt: each model's worst-case test inputs
REPORT_DIR = "report"  # what `wrn-search report` writes by default
STATE_FILE = "state.pt"  # in a checkpoint: everything needed to continue the trial
BEST_FILE = "best_model.pt"  # in a checkpoint: the best-validation-robust weights
EXPORT_DIR = "export"  # export/<trial_id>/: what `wrn-search export` writes by default

# A trial id becomes file names (evaluation/<id>.json, adv/<id>.pt, export/<id>/), and it is
# read from files a user may not have written: only these characters can never leave a folder.
_TRIAL_ID = re.compile(r"[0-9A-Za-z_]{1,200}")


def is_trial_id(value: Any) -> bool:
    """True when `value` is safe to use as a trial id, and so as a file name."""
    return isinstance(value, str) and _TRIAL_ID.fullmatch(value) is not None


def as_trial_id(text: str) -> str:
    """`text` (a trial folder's name) made into a safe trial id: other characters become _."""
    return re.sub(r"[^0-9A-Za-z_]", "_", text)[:200] or "_"


def check_trial_id(value: Any, field_name: str = "trial_id") -> str:
    """`value` when it is a safe trial id; else one-line ConfigError naming `field_name`."""
    if not is_trial_id(value):
        raise fail(field_name, value, "trial ids are ASCII letters, digits and _")
    return value


def confined(run_dir: Path, path: Path, field_name: str) -> Path:
    """`path` when it really lies inside `run_dir`, symlinks followed; else ConfigError.

    A run folder may come from elsewhere: a symlink in it (`evaluation -> /home/you`) must
    not lead what `evaluate`, `report` or `export` write outside it.
    """
    root = Path(run_dir).resolve()
    real = Path(path).resolve()
    if real != root and root not in real.parents:
        raise fail(field_name, str(path), f"it leads outside the run folder {str(root)!r} "
                   f"(to {str(real)!r}, through a symlink); remove the link")
    return Path(path)


def output_dir(run_dir: Path, path: Path, field_name: str) -> Path:
    """Create `path` (a folder to write in) and check that it stays inside `run_dir` when it
    is meant to: a folder named outside the run folder (`--out`) is the user's choice."""
    run_dir, path = Path(run_dir), Path(path)
    inside = os.path.abspath(path).startswith(os.path.abspath(run_dir) + os.sep)
    if inside:
        confined(run_dir, path.parent, field_name)  # before mkdir creates anything outside
    path.mkdir(parents=True, exist_ok=True)
    return confined(run_dir, path, field_name) if inside else path


def write_atomic(path: Path, write: Callable[[Path], Any]) -> Path:
    """Fill `path` in one step: `write(tmp)` writes a fresh temporary file beside it, then a
    rename, so a reader never sees half a file. Whatever sits at the temporary name is
    removed first and the rename replaces a link at `path` itself, so a symlink planted in
    a run folder is never written through."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left when the write or the rename failed
    return path


def write_text(path: Path, text: str) -> Path:
    """Replace a local text file in one step (see `write_atomic`)."""
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def join_uri(base: str, *names: str) -> str:
    """`base`/`names...` for a folder or a URI. A URI's query (s3://bucket/runs?scheme=http&
    endpoint_override=HOST:PORT) configures the store, so it stays at the end."""
    head, sep, query = base.partition("?") if "://" in base else (base, "", "")
    return "/".join([head.rstrip("/"), *names]) + sep + query


PROBE_TIMEOUT_S = 60.0  # an unreachable object store retries for minutes: give up sooner


def one_line(exc: BaseException) -> str:
    """An exception as one line for an error message: its type and its text, whitespace
    folded (pyarrow and torch put details on later lines), at most 200 characters."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def within(seconds: float, work: Callable[[], Any]) -> tuple[bool, Any, BaseException | None]:
    """Run `work` in a daemon thread; (answered, value, error). An object store that does not
    answer retries for minutes inside pyarrow: the caller gives up after `seconds`."""
    box: list[tuple[Any, BaseException | None]] = []

    def target() -> None:
        try:
            box.append((work(), None))
        except BaseException as exc:  # handed to the caller, who words it
            box.append((None, exc))

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if not box:
        return False, None, None
    return True, box[0][0], box[0][1]


def check_storage(location: str, field_name: str, create: bool = True) -> None:
    """Fail in one line, before Ray starts, unless run folders can be written at `location`.

    It must be a scheme pyarrow's filesystems know (a folder, file://, s3://, gs://,
    hdfs://), and the folder must be creatable and writable: a small file is written and
    deleted there. With `create` False a missing folder is left for the caller to report.
    An object store that does not answer within PROBE_TIMEOUT_S is reported as such.
    """
    outcome: list[tuple[str, BaseException | None]] = []

    def probe() -> None:
        try:
            fs, root = pafs.FileSystem.from_uri(location)
        except OSError as exc:  # a known scheme whose store does not answer (bucket, region)
            outcome.append(("reach", exc))
            return
        except Exception as exc:  # ArrowInvalid: a scheme pyarrow has no filesystem for
            outcome.append(("scheme", exc))
            return
        try:
            kind = fs.get_file_info(root).type
            if kind == pafs.FileType.File:
                raise NotADirectoryError("it is a file, not a folder")
            if kind != pafs.FileType.NotFound or create:
                fs.create_dir(root, recursive=True)
                name = f"{root.rstrip('/')}/.wrn-search-probe-{uuid.uuid4().hex[:12]}"
                with fs.open_output_stream(name) as stream:
                    stream.write(b"wrn-search checks that it can write here\n")
                fs.delete_file(name)
            outcome.append(("ok", None))
        except Exception as exc:  # any failure here means "cannot write there"
            outcome.append(("write", exc))

    within(PROBE_TIMEOUT_S, probe)  # an unreachable store can hang
    if not outcome:
        raise fail(field_name, location, f"no answer within {PROBE_TIMEOUT_S:.0f} s (is the "
                   "bucket reachable from here, and are its credentials set?)")
    stage, exc = outcome[0]
    if stage == "scheme":
        raise fail(field_name, location, f"pyarrow has no filesystem for it ({one_line(exc)}); "
                   "use a folder, or a file://, s3://, gs:// or hdfs:// URI")
    if stage == "reach":
        raise fail(field_name, location, f"it cannot be reached from here ({one_line(exc)})")
    if exc is not None:
        raise fail(field_name, location, f"run folders cannot be written there ({one_line(exc)})")


# run.json's fields and the type each must have; RUN_REQUIRED make a whole record.
RUN_FIELDS: dict[str, type] = {
    "name": str, "created": str, "state": str, "budget_s": float, "elapsed_s": float,
    "resumes": int, "ray_version": str, "optuna_version": str, "plan": dict, "optuna": dict,
}
RUN_REQUIRED = ("name", "created", "state", "budget_s", "elapsed_s")


def finite_number(value: Any) -> float | None:
    """A finite real read from a file, else None (missing, NaN, inf, bool, text all mean 'no
    value'): a damaged or hand-edited file must not turn into a wrong number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's too
        return None
    value = float(value)
    return value if math.isfinite(value) else None


_KIND_NAMES = {float: "a number", int: "a whole number", str: "text", bool: "true or false",
               dict: "a JSON object", list: "a list"}


def typed(value: Any, kind: type) -> Any:
    """`value` as a `kind` (float and int through `finite_number`), else None."""
    if kind is float:
        return finite_number(value)
    if kind is int:
        number = finite_number(value)
        return int(number) if number is not None and number.is_integer() else None
    return value if isinstance(value, kind) else None


def typed_fields(raw: Mapping[str, Any], types: Mapping[str, type], where: str) -> dict[str, Any]:
    """`raw` with each field of `types` that has another type dropped (with a warning): read
    as missing, so a damaged or hand-edited file neither crashes a reader nor turns into a
    wrong value. Fields not in `types` are kept as they are."""
    out = dict(raw)
    for key, kind in types.items():
        if key not in out:
            continue
        value = typed(out[key], kind)
        if value is None:
            log.warning("%s: %s = %r is not %s; read as missing", where, key, out.pop(key),
                        _KIND_NAMES.get(kind, kind.__name__))
        else:
            out[key] = value
    return out


def section(raw: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    """A table inside a JSON object (spec.json's "threat_model"); {} with a warning when it is
    there but not an object."""
    value = raw.get(key)
    if value is None or isinstance(value, dict):
        return value or {}
    log.warning("%s: %s = %r is not an object; read as missing", where, key, value)
    return {}


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file; {} (with a warning) when it is missing, damaged or not an object."""
    if not path.exists():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        log.warning("%s is unreadable (%s); treating it as empty", path, err)
        return {}
    return value if isinstance(value, dict) else {}


def json_lines(path: Path) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """Every line that parses to a JSON object, and (line number, error) for the rest."""
    return parse_json_lines(path.read_text(encoding="utf-8", errors="replace"))


def parse_json_lines(text: str) -> tuple[list[dict[str, Any]], list[tuple[int, str]]]:
    """`json_lines` of text already read (a file on shared storage, read through RunFiles)."""
    good: list[dict[str, Any]] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            bad.append((number, err.msg))
            continue
        if isinstance(value, dict):
            good.append(value)
        else:
            bad.append((number, f"a JSON {type(value).__name__}, not an object"))
    return good, bad


def write_json(path: Path, value: dict[str, Any], **dumps: Any) -> None:
    """Replace a local JSON file in one step."""
    write_text(path, json.dumps(value, **dumps))


class RunFiles:
    """The driver's small text files in a run directory (local or remote), in DRIVER_DIR."""

    def __init__(self, run_dir: str, folder: str = DRIVER_DIR) -> None:
        self.run_dir = run_dir
        self.fs, root = pafs.FileSystem.from_uri(run_dir)
        self.base = f"{root.rstrip('/')}/{folder}" if folder else root

    def path(self, name: str) -> str:
        return f"{self.base.rstrip('/')}/{name}"

    def exists(self, name: str) -> bool:
        return self.fs.get_file_info(self.path(name)).type != pafs.FileType.NotFound

    def read_text(self, name: str) -> str:
        with self.fs.open_input_stream(self.path(name)) as f:
            return f.read().decode("utf-8")

    def write_text(self, name: str, text: str) -> None:
        self.fs.create_dir(self.base, recursive=True)
        tmp = self.path(name + ".tmp")
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode("utf-8"))
        self.fs.move(tmp, self.path(name))  # atomic on local and POSIX filesystems

    def append_line(self, name: str, line: str) -> None:
        """Append one line; object stores cannot append, so there the file is rewritten."""
        self.fs.create_dir(self.base, recursive=True)
        if isinstance(self.fs, pafs.LocalFileSystem):
            with open(self.path(name), "a", encoding="utf-8") as f:
                f.write(line + "\n")
            return
        old = self.read_text(name) if self.exists(name) else ""
        self.write_text(name, old + line + "\n")

    def read_json(self, name: str) -> dict[str, Any]:
        """The file's object; {} when it is missing or damaged."""
        return self.load_json(name)[0]

    def load_json(self, name: str) -> tuple[dict[str, Any], str | None]:
        """The file's object and, when it is missing or damaged, why (the object is then {})."""
        if not self.exists(name):
            return {}, "missing"
        try:
            value = json.loads(self.read_text(name))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return {}, f"damaged: {err}"
        if not isinstance(value, dict):
            return {}, f"damaged: a JSON {type(value).__name__}, not an object"
        return value, None

    def run_record(self) -> tuple[dict[str, Any], str | None]:
        """run.json with its wrong-typed fields dropped and, when that leaves less than a
        whole record (RUN_REQUIRED), why: a writer must not put such a record back."""
        raw, problem = self.load_json(RUN_FILE)
        record = typed_fields(raw, RUN_FIELDS, self.path(RUN_FILE))
        missing = [k for k in RUN_REQUIRED if k not in record]
        if problem is None and missing:
            problem = "no valid " + ", ".join(missing)
        return record, problem

    def write_json(self, name: str, obj: dict[str, Any]) -> None:
        self.write_text(name, json.dumps(obj, indent=2, sort_keys=True) + "\n")
