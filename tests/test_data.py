"""The splits a trial trains and selects on: trainables/data.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TRAIN_PER_CLASS, data_config, image_ids

from trainables import data
from trainables.config import ConfigError, DataConfig
from trainables.data import load_dataset

pytestmark = pytest.mark.usefixtures("private_cache")
SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


# --------------------------------------------------------------------------- splits


def test_splits_are_stratified_seeded_and_disjoint(folder: Path) -> None:
    first = load_dataset(data_config(folder, val_size=12, seed=3))
    again = load_dataset(data_config(folder, val_size=12, seed=3))
    other = load_dataset(data_config(folder, val_size=12, seed=4))
    train_ids, val_ids = image_ids(first.train), image_ids(first.val)
    assert len(train_ids) == 36 and len(val_ids) == 12
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(3 * TRAIN_PER_CLASS))
    assert torch.bincount(first.val.y).tolist() == [4, 4, 4]
    assert torch.equal(first.val.x, again.val.x) and torch.equal(first.train.y, again.train.y)
    assert image_ids(other.val) != val_ids


def test_every_prefix_of_a_split_is_close_to_stratified() -> None:
    splits = load_dataset(DataConfig(dataset="cifar10-sample", val_size=0.1), with_test=True)
    assert splits.test is not None
    for split in (splits.train, splits.val, splits.test):
        assert sorted(split.y[:10].tolist()) == list(range(10))
        assert torch.bincount(split.y[:50], minlength=10).tolist() == [5] * 10


def test_val_size_as_a_fraction(folder: Path) -> None:
    splits = load_dataset(data_config(folder, val_size=0.25))
    assert len(splits.val) == 12 and len(splits.train) == 36
    assert torch.bincount(splits.val.y).tolist() == [4, 4, 4]


def test_train_subset_is_stratified_and_val_comes_out_of_it(folder: Path) -> None:
    splits = load_dataset(data_config(folder, train_subset=30, val_size=0.2))
    assert len(splits.train) == 24 and len(splits.val) == 6
    assert torch.bincount(torch.cat([splits.train.y, splits.val.y])).tolist() == [10, 10, 10]
    assert torch.bincount(splits.val.y).tolist() == [2, 2, 2]
    assert not image_ids(splits.train) & image_ids(splits.val)


def test_stratified_pick_handles_unbalanced_classes() -> None:
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    rng = np.random.default_rng(0)
    for n in (1, 7, 33, 99, 100):
        picked = data._stratified_pick(y, n, rng)
        assert len(picked) == len(set(picked.tolist())) == n
        counts = np.bincount(y[picked], minlength=3)
        assert np.all(np.abs(counts - n * np.array([0.5, 0.3, 0.2])) < 1)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"train_subset": 49}, "data.train_subset"),  # more than the 48 training images
        ({"val_size": 39}, "data.val_size"),  # leaves 9 < 10 for training
        ({"val_size": 48}, "data.val_size"),  # the whole split
        ({"val_size": 0.01}, "data.val_size"),  # rounds to no validation image at all
        ({"train_subset": 20, "val_size": 0.6}, "data.val_size"),  # leaves 8 of 20
    ],
)
def test_bad_sizes_raise_config_error(folder: Path, kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load_dataset(data_config(folder, **kwargs))



# --------------------------------------------------------------------------- the real thing


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
def test_full_cifar10_archive() -> None:
    splits = load_dataset(data_config(SHARED_ARCHIVE, val_size=5000), with_test=True)
    assert len(splits.train) == 45000 and len(splits.val) == 5000
    assert splits.test is not None and len(splits.test) == 10000
    assert torch.bincount(splits.val.y).tolist() == [500] * 10
    assert splits.classes[:3] == ("airplane", "automobile", "bird")
