"""Shared test setup: GPU tests skip without CUDA; tiny real data for everyone."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

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
