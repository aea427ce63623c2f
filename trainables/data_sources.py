"""Where a dataset comes from: finding it, decoding it once, and caching the result.

Decoding the source (60k JPEGs, or torchvision's pickles) is paid once; the uint8 arrays are
cached in an .npz keyed on the source's path, size and mtime, so every later trial on the
machine starts in well under a second. Sources: the bundled CIFAR-10 sample, a CIFAR-10
ImageFolder tree or its .tar.gz, and torchvision copies (downloaded on request).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from trainables.config import ConfigError, DataConfig

log = logging.getLogger(__name__)

ENV_DATA_DIR = "WRN_SEARCH_DATA"
SAMPLE_ARCHIVE = "cifar10-sample.tar.gz"  # in trainables/_sample/, built by scripts/build_sample.py
IMAGE_SIZE = 32

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
_SPLITS = ("train", "test")
_CACHE_VERSION = 1  # bump when the cached arrays change meaning, so old caches are ignored


def default_data_dir() -> Path:
    """Where datasets and the decode cache live: $WRN_SEARCH_DATA, else ~/.cache/wrn-search."""
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "wrn-search"


class DataNotFoundError(ConfigError):
    """The dataset is not where the config says; the message says where to get it."""


class Raw(NamedTuple):
    """A decoded dataset as it is cached: NCHW uint8 images and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """A located dataset: the files it lives in (for the cache key) and how to decode it."""

    description: str
    paths: tuple[Path, ...]
    read: Callable[[], Raw]


# --------------------------------------------------------------------------- locating


def locate(cfg: DataConfig) -> Source:
    if cfg.dataset == "cifar10-sample":
        return _sample_source()
    root = Path(cfg.data_dir).expanduser() if cfg.data_dir else default_data_dir() / cfg.dataset
    if cfg.dataset == "cifar10":
        return _locate_cifar10(root, cfg.download)
    return _locate_torchvision(cfg.dataset, root, cfg.download)


def _sample_source() -> Source:
    path = Path(str(resources.files("trainables") / "_sample" / SAMPLE_ARCHIVE))
    if not path.is_file():
        raise DataNotFoundError(f"data.dataset: the bundled sample {path} is missing; "
                                "rebuild it with scripts/build_sample.py or reinstall the package")
    return Source(f"bundled sample {path}", (path,), lambda: _read_tar(path))


def _locate_cifar10(root: Path, download: bool) -> Source:
    if root.is_file():
        if not root.name.endswith(_TAR_SUFFIXES) or not tarfile.is_tarfile(root):
            raise DataNotFoundError(f"data.data_dir: {root} is a file but not a "
                                    f"{'/'.join(_TAR_SUFFIXES)} archive of train/ and test/")
        return Source(f"archive {root}", (root,), lambda: _read_tar(root))
    if all((root / split).is_dir() for split in _SPLITS):
        dirs = tuple(root / split for split in _SPLITS)
        return Source(f"folders {root}/{{train,test}}", dirs, lambda: _read_folders(root))
    if (root / "cifar-10-batches-py").is_dir():
        return _torchvision_source("cifar10", root)
    if download:
        _download("cifar10", root)
        return _torchvision_source("cifar10", root)
    raise DataNotFoundError(
        f"data.data_dir: CIFAR-10 not found at {root} (looked for a .tar/.tar.gz/.tgz "
        "ImageFolder archive, train/ and test/ folders, or cifar-10-batches-py); "
        "set data.download = true or point data.data_dir at a copy")


_TORCHVISION_FILES: dict[str, tuple[str, ...]] = {
    "cifar10": ("cifar-10-batches-py",),
    "cifar100": ("cifar-100-python",),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
}


def _locate_torchvision(name: str, root: Path, download: bool) -> Source:
    if not all((root / f).exists() for f in _TORCHVISION_FILES[name]):
        if not download:
            raise DataNotFoundError(
                f"data.data_dir: {name} not found at {root} (looked for "
                f"{', '.join(_TORCHVISION_FILES[name])}); set data.download = true or point "
                "data.data_dir at a torchvision copy")
        _download(name, root)
    return _torchvision_source(name, root)


def _torchvision_source(name: str, root: Path) -> Source:
    paths = tuple(root / f for f in _TORCHVISION_FILES[name])
    return Source(f"torchvision {name} at {root}", paths, lambda: _read_torchvision(name, root))


def _download(name: str, root: Path) -> None:
    log.info("downloading %s into %s", name, root)
    root.mkdir(parents=True, exist_ok=True)
    try:
        for train in (True, False):
            _torchvision_dataset(name, root, train=train, download=True)
    except (OSError, RuntimeError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataNotFoundError(f"data.download: downloading {name} into {root} failed "
                                f"({message}); point data.data_dir at a copy instead") from None


# --------------------------------------------------------------------------- reading


def _read_tar(path: Path) -> Raw:
    """Read an ImageFolder tree (train/<class>/*, test/<class>/*) straight out of a tar.

    Stream mode reads the members in order, so a .tar.gz is inflated once, front to back.
    The tree may sit under one top-level folder.
    """
    items: list[tuple[tuple[str, ...], str, str, str, bytes]] = []
    with tarfile.open(path, "r|*") as tf:
        for member in tf:
            place = _image_place(PurePosixPath(member.name).parts) if member.isfile() else None
            if place is None:
                continue
            handle = tf.extractfile(member)
            if handle is not None:
                items.append((*place, handle.read()))
    prefixes = {item[0] for item in items}
    if len(prefixes) > 1:
        trees = ", ".join(sorted("/".join(p) or "." for p in prefixes))
        raise ConfigError(f"data.data_dir: {path} holds several train/test trees ({trees}); "
                          "keep one")
    return _assemble([item[1:] for item in items], f"{path} (tar)")


def _image_place(parts: tuple[str, ...]) -> tuple[tuple[str, ...], str, str, str] | None:
    """(prefix, split, class, file name) for `prefix/split/class/file.jpg`, else None."""
    if len(parts) < 3 or parts[-1].startswith(".") or parts[-3] not in _SPLITS:
        return None
    if not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
        return None
    return parts[:-3], parts[-3], parts[-2], parts[-1]


def _read_folders(root: Path) -> Raw:
    items: list[tuple[str, str, str, bytes]] = []
    for split in _SPLITS:
        for class_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            for file in sorted(class_dir.iterdir()):
                place = _image_place((split, class_dir.name, file.name))
                if place is not None and file.is_file():
                    items.append((split, class_dir.name, file.name, file.read_bytes()))
    return _assemble(items, str(root))


def _assemble(items: Sequence[tuple[str, str, str, bytes]], where: str) -> Raw:
    """Order (split, class, name, bytes) records, label them, decode them."""
    by_split = {s: sorted((c, n, b) for split, c, n, b in items if split == s) for s in _SPLITS}
    for split in _SPLITS:
        if not by_split[split]:
            raise DataNotFoundError(f"data.data_dir: no {split}/<class>/<image> files in {where} "
                                    f"(looked for {', '.join(_IMAGE_SUFFIXES)} images)")
    classes = tuple(sorted({c for c, _, _ in by_split["train"]}))
    label = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c, _, _ in by_split["test"]} - set(classes))
    if unknown:
        raise ConfigError(f"data.data_dir: test classes {unknown} in {where} have no "
                          "training images")
    arrays = []
    for split in _SPLITS:
        records = by_split[split]
        x = _decode_images([f"{split}/{c}/{n}" for c, n, _ in records],
                           [b for _, _, b in records], where)
        arrays += [x, np.array([label[c] for c, _, _ in records], dtype=np.int64)]
    return Raw(*arrays, classes=classes)


def _decode_images(names: Sequence[str], blobs: Sequence[bytes], where: str) -> np.ndarray:
    """Decode encoded 32x32 images (JPEG, PNG) into one (N, 3, 32, 32) uint8 array."""
    out = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, (name, blob) in enumerate(zip(names, blobs, strict=True)):
        try:
            with Image.open(io.BytesIO(blob)) as image:
                if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                    raise ConfigError(f"data.data_dir: {name} in {where} is "
                                      f"{image.size[0]}x{image.size[1]}; expected "
                                      f"{IMAGE_SIZE}x{IMAGE_SIZE} images")
                out[i] = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise ConfigError(f"data.data_dir: {name} in {where} is not a readable image "
                              f"({exc})") from None
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _torchvision_dataset(name: str, root: Path, *, train: bool, download: bool) -> object:
    from torchvision import datasets

    if name == "svhn":
        try:
            import scipy.io  # noqa: F401  # torchvision reads SVHN's .mat files with it
        except ImportError:
            raise ConfigError("data.dataset: 'svhn' needs scipy to read its .mat files; "
                              "pip install scipy") from None
        return datasets.SVHN(str(root), split="train" if train else "test", download=download)
    factory = {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]
    return factory(str(root), train=train, download=download)


def _read_torchvision(name: str, root: Path) -> Raw:
    try:
        train, test = (_torchvision_dataset(name, root, train=t, download=False)
                       for t in (True, False))
    except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
        raise DataNotFoundError(f"data.data_dir: {name} at {root} is incomplete or corrupt "
                                f"({exc}); delete it and set data.download = true") from None
    arrays: list[np.ndarray] = []
    for ds in (train, test):
        if name == "svhn":  # already NCHW; torchvision maps the digit 0 from label 10 to 0
            x, y = ds.data, ds.labels  # type: ignore[attr-defined]
        else:  # NHWC with a list of targets
            x, y = ds.data.transpose(0, 3, 1, 2), ds.targets  # type: ignore[attr-defined]
        arrays += [np.ascontiguousarray(x, dtype=np.uint8), np.asarray(y, dtype=np.int64)]
    classes = tuple(getattr(train, "classes", None) or (str(d) for d in range(10)))
    return Raw(*arrays, classes=classes)


# --------------------------------------------------------------------------- caching


def cached(dataset: str, source: Source) -> Raw:
    """The decoded source, from the .npz cache when it matches, else decoded and cached."""
    path = default_data_dir() / "cache" / f"{dataset}-{_fingerprint(source.paths)}.npz"
    if path.is_file():
        try:
            return _read_cache(path)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("ignoring unreadable cache %s (%s); decoding again", path, exc)
    start = time.perf_counter()
    raw = source.read()
    log.info("decoded %d images from %s in %.1f s", len(raw.train_y) + len(raw.test_y),
             source.description, time.perf_counter() - start)
    _write_cache(path, raw)
    return raw


def _fingerprint(paths: Sequence[Path]) -> str:
    """Hash of absolute path, size and mtime of every file in `paths` (folders walked)."""
    digest = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    for top in paths:
        top = top.resolve()
        files = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for file in files:
            stat = file.stat()
            digest.update(f"\0{file}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def _read_cache(path: Path) -> Raw:
    with np.load(path, allow_pickle=False) as npz:
        arrays = [npz[key] for key in ("train_x", "train_y", "test_x", "test_y")]
        classes = tuple(str(c) for c in npz["classes"])
    return Raw(*arrays, classes=classes)


def _write_cache(path: Path, raw: Raw) -> None:
    """Write atomically (temp file, then rename), so concurrent trials never read half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(handle, train_x=raw.train_x, train_y=raw.train_y, test_x=raw.test_x,
                         test_y=raw.test_y, classes=np.array(raw.classes, dtype=str))
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is shared like the data
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        log.warning("could not cache decoded data at %s (%s); next load decodes again", path, exc)
