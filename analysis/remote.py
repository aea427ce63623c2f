"""A run folder that may live on object storage, for the commands that read one.

`status`, `report`, `evaluate` and `export` are written against local files (pandas, torch
and matplotlib want paths), while a run on a Ray cluster lives at a URI (s3://, gs://,
hdfs://: whatever pyarrow's filesystems know, as for `run --storage`). Rather than teach
every reader pyarrow, a run at a URI is mirrored into a local cache folder, with only the
files the command reads (the trials' best checkpoints only for the commands that load
models), the local code runs on the mirror, and what the command wrote there is uploaded
back under the run's URI. A plain folder (or a file:// URI) is used in place.

The mirror lives in `cache_dir()` (default ~/.cache/wrn-search/runs/<hash>/<name>/) and is
refreshed on each use: files whose size and time match the store's are not fetched again,
files gone from the store are removed. First contact with the store is bounded by
run_files.PROBE_TIMEOUT_S, so an unreachable endpoint is one line, not a hang.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pyarrow.fs as pafs

from trainables import formats, run_files
from trainables.config import ConfigError, fail, not_a_run

log = logging.getLogger(__name__)

CACHE_ENV = "WRN_SEARCH_RUN_CACHE"  # where mirrors of remote runs go (default below)
_CHUNK = 1 << 20


def is_remote(location: str | Path) -> bool:
    """True for a URI that is not a local folder (file:// is local)."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def cache_dir() -> Path:
    """$WRN_SEARCH_RUN_CACHE, else the `runs` folder beside the dataset cache
    (~/.cache/wrn-search/runs, or $WRN_SEARCH_DATA/runs)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    from trainables.data_sources import default_data_dir

    return default_data_dir() / "runs"


def _bare(uri: str) -> str:
    """The URI without credentials or query: what names the cache folder (never a secret)."""
    scheme, _, rest = uri.partition("://")
    rest = rest.split("?", 1)[0]
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}".rstrip("/")


def mirror_folder(uri: str) -> Path:
    """The local mirror of the run at `uri`: a folder named as the run (readers take the
    run's name from it), inside one named by a hash of the whole URI."""
    bare = _bare(uri)
    slug = re.sub(r"[^0-9A-Za-z_.-]", "_", bare.rpartition("/")[2])[:80] or "run"
    return cache_dir() / hashlib.sha256(uri.encode()).hexdigest()[:16] / slug


def _wanted(rel: PurePosixPath, checkpoints: bool, adversarial: bool) -> bool:
    """Whether a run file (its path inside the run folder) is read by the command: the
    driver's files, the trials' results and the evaluation records always; the adversarial
    examples when asked; never Ray's resume state, TensorBoard logs or earlier outputs.
    Checkpoints are chosen apart (`_best_models`)."""
    parts = rel.parts
    if len(parts) == 1 or parts[0] in (run_files.REPORT_DIR, run_files.EXPORT_DIR):
        return False  # Ray's tuner.pkl / experiment state, and what commands wrote
    if parts[0] == run_files.DRIVER_DIR:
        return True
    if parts[0] == run_files.EVALUATION_DIR:
        return adversarial or run_files.ADV_DIR not in parts[1:-1]
    if any(p.startswith("checkpoint_") for p in parts):
        return False
    name = parts[-1]
    return not (name.startswith("events.out.tfevents") or name.endswith(".pkl"))


def _best_models(files: dict[PurePosixPath, pafs.FileInfo]) -> set[PurePosixPath]:
    """Each trial's newest checkpoint_*/best_model.pt: all `evaluate` and `export` load."""
    newest: dict[str, PurePosixPath] = {}
    for rel in files:
        if len(rel.parts) == 3 and rel.parts[1].startswith("checkpoint_") \
                and rel.name == run_files.BEST_FILE:
            trial = rel.parts[0]
            if trial not in newest or rel.parts[1] > newest[trial].parts[1]:
                newest[trial] = rel
    return set(newest.values())


@dataclass
class RunCopy:
    """A run folder as the local code sees it (`local`), and where it really is (`uri`,
    None for a local run). `show` turns local paths in a line into the run's URIs."""

    location: str
    local: Path
    uri: str | None = None
    fs: pafs.FileSystem | None = None
    root: str = ""
    fetched: dict[str, tuple[int, int]] = field(default_factory=dict)  # rel -> (size, mtime_ns)
    uploaded: list[str] = field(default_factory=list)

    def where(self, path: str | Path) -> str:
        """A path inside the mirror as the URI it stands for (other paths as they are)."""
        text = str(path)
        if self.uri is None:
            return text
        local = str(self.local)
        if text == local or text.startswith(local + os.sep):
            return self.uri.split("?", 1)[0].rstrip("/") + text[len(local):].replace(os.sep, "/")
        return text

    @property
    def display(self) -> str | None:
        """The run's URI as it may be shown (no query, secrets masked); None when local."""
        return None if self.uri is None else formats.mask_secrets(self.where(self.local))

    def show(self, line: str) -> str:
        """A printed line with mirror paths replaced by URIs, and any secret masked."""
        if self.uri is not None:
            base = self.uri.split("?", 1)[0].rstrip("/")
            line = line.replace(str(self.local), base)
        return formats.mask_secrets(line)

    def printer(self, say: Callable[[str], None]) -> Callable[[str], None]:
        return lambda line: say(self.show(line))

    def push(self) -> list[str]:
        """Upload every file the command created or changed in the mirror; their URIs."""
        if self.fs is None:
            return []
        for path in sorted(p for p in self.local.rglob("*") if p.is_file()):
            rel = path.relative_to(self.local).as_posix()
            if rel.endswith(".tmp") or self.fetched.get(rel) == _stamp(path):
                continue
            remote = f"{self.root}/{rel}"
            self.fs.create_dir(remote.rpartition("/")[0], recursive=True)
            with path.open("rb") as src, self.fs.open_output_stream(remote) as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
            self.fetched[rel] = _stamp(path)
            self.uploaded.append(self.where(path))
        return self.uploaded


def _stamp(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_size, info.st_mtime_ns


class _NoFilesystem(Exception):
    """pyarrow knows no filesystem for the URI's scheme."""


def _connect(location: str, field_name: str) -> tuple[pafs.FileSystem, str, list[pafs.FileInfo]]:
    """The store, the run's path on it and every file under it, within PROBE_TIMEOUT_S;
    each way it can fail is one ConfigError line (a URI with no run: NotARunError)."""
    shown = formats.mask_secrets(location)

    def listing() -> tuple[pafs.FileSystem, str, pafs.FileType, pafs.FileType, list[pafs.FileInfo]]:
        try:
            fs, root = pafs.FileSystem.from_uri(location)
        except OSError:  # a store that does not answer: worded by the caller
            raise
        except Exception as exc:  # ArrowInvalid: no filesystem for this scheme
            raise _NoFilesystem(run_files.one_line(exc)) from None
        root = root.rstrip("/")
        bucket = fs.get_file_info(root.split("/", 1)[0]).type \
            if fs.type_name in ("s3", "gcs") else pafs.FileType.Directory
        kind = fs.get_file_info(root).type
        files = fs.get_file_info(pafs.FileSelector(root, recursive=True)) \
            if kind == pafs.FileType.Directory else []
        return fs, root, bucket, kind, files

    answered, value, exc = run_files.within(run_files.PROBE_TIMEOUT_S, listing)
    if not answered:
        raise fail(field_name, shown, f"no answer within {run_files.PROBE_TIMEOUT_S:.0f} s (is the "
                   "store reachable from here, and are its credentials set?)")
    if isinstance(exc, _NoFilesystem):
        raise fail(field_name, shown, f"pyarrow has no filesystem for it ({exc}); use a folder, "
                   "or a file://, s3://, gs:// or hdfs:// URI")
    if exc is not None:
        raise fail(field_name, shown, f"it cannot be read from here ({run_files.one_line(exc)})")
    fs, root, bucket, kind, files = value
    if bucket == pafs.FileType.NotFound and "/" in root:
        raise fail(field_name, shown, f"no bucket {root.split('/', 1)[0]!r} there")
    if kind == pafs.FileType.NotFound:
        raise fail(field_name, shown, "no such folder")
    if kind != pafs.FileType.Directory:
        raise fail(field_name, shown, "it is a file, not a run folder")
    return fs, root, files


@contextmanager
def run_folder(location: str | Path, *, checkpoints: bool = False, adversarial: bool = False,
               field_name: str = "RUN_DIR") -> Iterator[RunCopy]:
    """The run at `location` as a local folder for the duration of the block; what the
    block writes into it is uploaded to the store afterwards (also when the block fails
    part-way, so finished work, such as an evaluated model, is kept).

    Args:
        location: a local folder, a file:// URI, or a URI of a pyarrow filesystem.
        checkpoints: fetch each trial's newest best_model.pt (evaluate, export).
        adversarial: fetch evaluation/adv/ too (evaluate's transfer matrix reads it).
    """
    text = str(location)
    if not is_remote(text):
        local = Path(text[len("file://"):]) if text.startswith("file://") else Path(text)
        yield RunCopy(text, local)
        return
    fs, root, infos = _connect(text, field_name)
    files = {PurePosixPath(i.path[len(root) + 1:]): i for i in infos
             if i.type == pafs.FileType.File and i.path.startswith(root + "/")}
    wanted = {rel for rel in files if _wanted(rel, checkpoints, adversarial)}
    if checkpoints:
        wanted |= _best_models(files)
    if not any(rel.parts[0] == run_files.DRIVER_DIR or rel.name in (run_files.RESULT_FILE,
                                                                     run_files.PARAMS_FILE)
               for rel in wanted):
        raise not_a_run(formats.mask_secrets(text), True, f"it holds no run (no "
                        f"{run_files.DRIVER_DIR}/ folder, no trial folder)")
    copy = RunCopy(text, mirror_folder(text), text, fs, root)
    try:
        _fetch(copy, {rel: files[rel] for rel in wanted})
    except OSError as exc:
        raise fail(field_name, formats.mask_secrets(text),
                   f"it could not be copied from the store ({run_files.one_line(exc)})") from None
    failed = True
    try:
        yield copy
        failed = False
    except ConfigError as exc:  # its line names the mirror: name the run's URI instead
        raise type(exc)(copy.show(str(exc))) from None
    finally:
        try:
            copy.push()
        except OSError as exc:
            if not failed:  # the block's own error says more; do not hide it
                raise fail(field_name, formats.mask_secrets(text), "what was written could not "
                           f"be uploaded ({run_files.one_line(exc)}); it is kept in "
                           f"{copy.local}") from None
            log.warning("upload to %s failed: %s", formats.mask_secrets(text), exc)


def _fetch(copy: RunCopy, files: dict[PurePosixPath, pafs.FileInfo]) -> None:
    """Make the mirror hold exactly `files`: fetch the new and changed ones, delete others
    (outputs a command wrote are fetched again only when asked for, so they go too)."""
    assert copy.fs is not None
    copy.local.mkdir(parents=True, exist_ok=True)
    keep = {rel.as_posix() for rel in files}
    for path in sorted(copy.local.rglob("*"), reverse=True):  # children before parents
        rel = path.relative_to(copy.local).as_posix()
        if path.is_file() and rel not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    for rel, info in files.items():
        target = copy.local / Path(*rel.parts)
        remote_mtime = int(info.mtime_ns) if info.mtime_ns is not None else 0
        if target.is_file() and _stamp(target) == (info.size, remote_mtime):
            copy.fetched[rel.as_posix()] = _stamp(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path, path: str = info.path) -> None:
            assert copy.fs is not None
            with copy.fs.open_input_stream(path) as src, tmp.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)

        run_files.write_atomic(target, write)
        os.utime(target, ns=(remote_mtime, remote_mtime))
        copy.fetched[rel.as_posix()] = _stamp(target)
    log.info("mirrored %d files of %s in %s", len(files), formats.mask_secrets(copy.location),
             copy.local)


def check_out(out: str | None, field_name: str = "--out") -> None:
    """`--out` names a local folder: a URI there is refused in one line (write inside the
    run, the default, to have the output uploaded with it)."""
    if out is not None and "://" in out:
        raise ConfigError(f"{field_name}: {formats.mask_secrets(out)!r} is not allowed; it must "
                          "be a local folder (leave it out to write inside the run folder, "
                          "which is uploaded when the run is on object storage)")
