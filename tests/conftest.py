"""Shared test setup: GPU tests skip without CUDA; tiny real data for everyone; tiny image
folders and archives for the data tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.config import DataConfig, TrialConfig
from trainables.data import Split
from trainables.trainer import Trainer

# Keep Ray and torch polite on a 2-core machine.
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
torch.set_num_threads(1)  # 2 threads on 2 shared cores thrash (measured ~20x slower under load)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config: pytest.Config) -> None:
    """Decoded-data caches go to a throwaway folder, never the user's ~/.cache."""
    import tempfile

    os.environ.setdefault("WRN_SEARCH_DATA", tempfile.mkdtemp(prefix="wrn-search-test-data-"))


ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`wrn-search ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


def tiny_trial(**sections: dict) -> dict:
    """A TrialConfig dict for seconds-long real training on the bundled CIFAR-10 sample."""
    base = {
        "data": {"dataset": "cifar10-sample", "train_subset": 200, "val_size": 50},
        "model": {"depth": 10, "width": 1},
        "training": {"method": "pgd", "steps": 1, "epochs": 2, "batch_size": 50, "lr": 0.05},
        "threat_model": {"steps": 2, "batch_size": 50},
        "threads": 1,
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values} if isinstance(values, dict) else values
    return base


def trained(epochs: int, **sections: Any) -> tuple[Trainer, list[dict[str, Any]]]:
    """A Trainer on the sample after `epochs` real epochs, and its metrics rows."""
    trainer = Trainer(TrialConfig.from_dict(tiny_trial(**sections)))
    return trainer, [trainer.run_epoch() for _ in range(epochs)]


@pytest.fixture(scope="session")
def robust_trial() -> tuple[Trainer, list[dict[str, Any]]]:
    """WRN-10-1, PGD-1 adversarial training at 4/255: clean ~30%, robust ~20% at 4/255."""
    return trained(
        4, data={"train_subset": 1000, "val_size": 100},
        training={"method": "pgd", "steps": 1, "epochs": 4, "batch_size": 50, "lr": 0.1,
                  "eps": "4/255"},
        threat_model={"epsilons": ["4/255", "2/255"], "steps": 2, "batch_size": 100})


def tf32_state() -> tuple[object, ...]:
    """What decides whether float32 convolutions and matmuls may run in TF32."""
    b = torch.backends
    if hasattr(b, "fp32_precision"):  # the API of torch >= 2.9
        return (b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision)
    return (b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32)


@contextmanager
def tf32_allowed() -> Iterator[tuple[object, ...]]:
    """The caller's setting: TF32 on for both (cuDNN's default), put back afterwards."""
    b = torch.backends
    before = tf32_state()
    if hasattr(b, "fp32_precision"):
        b.cudnn.conv.fp32_precision = b.cuda.matmul.fp32_precision = "tf32"
    else:
        b.cudnn.allow_tf32 = b.cuda.matmul.allow_tf32 = True
    try:
        yield tf32_state()
    finally:
        if hasattr(b, "fp32_precision"):
            b.cudnn.conv.fp32_precision, b.cuda.matmul.fp32_precision = before
        else:
            b.cudnn.allow_tf32, b.cuda.matmul.allow_tf32 = before


# tf32_state() inside evaluation and attack code: float32 as IEEE float32, no TF32.
EXACT_FLOAT32 = ("ieee", "ieee") if hasattr(torch.backends, "fp32_precision") else (False, False)


# --------------------------------------------------------------------------- tiny image folders

IMAGE_CLASSES = ("ant", "bee", "cat")  # written in another order below; labels follow sorted names
TRAIN_PER_CLASS = 16
TEST_PER_CLASS = 4


def image_pixels(label: int, ident: int) -> np.ndarray:
    """A 32x32 RGB image whose red channel names its class and green channel its id."""
    rng = np.random.default_rng(ident)
    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    image[..., 0] = 50 * label + 7
    image[..., 1] = ident
    return image


def image_png(label: int, ident: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image_pixels(label, ident)).save(buffer, format="PNG")
    return buffer.getvalue()


def image_tree() -> dict[str, bytes]:
    """{relative path: PNG bytes} of a tiny ImageFolder tree; ids are unique within a split."""
    files = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        ident = 0
        for label, cls in sorted(enumerate(IMAGE_CLASSES), key=lambda item: item[1], reverse=True):
            for i in range(per_class):
                files[f"{split}/{cls}/{i:04d}.png"] = image_png(label, ident)
                ident += 1
    return files


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache_home = tmp_path / "home"
    monkeypatch.setenv("WRN_SEARCH_DATA", str(cache_home))
    return cache_home


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    for rel, blob in image_tree().items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(blob)
    (root / "train" / "ant" / ".DS_Store").write_bytes(b"junk")  # ignored: not an image
    return root


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """The same tree as a .tar.gz, under one top-level folder, with directory entries."""
    path = tmp_path / "tiny.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for directory in ("tiny", "tiny/train", "tiny/test"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for rel, blob in sorted(image_tree().items(), reverse=True):
            info = tarfile.TarInfo(f"tiny/{rel}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def data_config(source: Path, **kwargs: object) -> DataConfig:
    return DataConfig(dataset="cifar10", data_dir=str(source), **kwargs)  # type: ignore[arg-type]


def image_ids(split: Split) -> set[int]:
    return set(split.x[:, 1, 0, 0].tolist())
