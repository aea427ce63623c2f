"""Finding, decoding and caching datasets: trainables/data_sources.py."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TEST_PER_CLASS, data_config, image_pixels, image_png
from PIL import Image

from trainables import data_sources
from trainables.config import ConfigError, DataConfig
from trainables.data import DataNotFoundError, default_data_dir, load_dataset

pytestmark = pytest.mark.usefixtures("private_cache")


# --------------------------------------------------------------------------- locating, decoding


def test_default_data_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WRN_SEARCH_DATA", "/somewhere/else")
    assert default_data_dir() == Path("/somewhere/else")
    monkeypatch.delenv("WRN_SEARCH_DATA")
    assert default_data_dir() == Path.home() / ".cache" / "wrn-search"


@pytest.mark.parametrize("kind", ["folder", "archive"])
def test_image_folder_loads_with_shapes_dtypes_and_labels(
    kind: str, request: pytest.FixtureRequest
) -> None:
    source = request.getfixturevalue(kind)
    splits = load_dataset(data_config(source, val_size=12), with_test=True)
    assert splits.classes == ("ant", "bee", "cat")
    assert splits.test is not None
    for split, n in ((splits.train, 36), (splits.val, 12), (splits.test, 3 * TEST_PER_CLASS)):
        assert split.x.shape == (n, 3, 32, 32) and split.x.dtype == torch.uint8
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.x.is_contiguous() and split.x.device.type == "cpu"
        # the red channel was written as 50 * (index of the class in sorted order) + 7
        assert torch.equal(split.x[:, 0, 0, 0].long(), 50 * split.y + 7)
    one = splits.test.x[splits.test.x[:, 1, 0, 0] == 0][0]  # the first image written
    assert torch.equal(one, torch.from_numpy(image_pixels(2, 0)).permute(2, 0, 1))


def test_folder_and_archive_give_identical_arrays(folder: Path, archive: Path) -> None:
    a = load_dataset(data_config(folder, val_size=12), with_test=True)
    b = load_dataset(data_config(archive, val_size=12), with_test=True)
    for left, right in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert left is not None and right is not None
        assert torch.equal(left.x, right.x) and torch.equal(left.y, right.y)


def test_test_split_only_on_request(folder: Path) -> None:
    assert load_dataset(data_config(folder, val_size=12)).test is None


def test_shipped_sample_loads() -> None:
    splits = load_dataset(DataConfig(dataset="cifar10-sample", val_size=0.1), with_test=True)
    assert len(splits.classes) == 10 and splits.classes[0] == "airplane"
    assert len(splits.train) + len(splits.val) == 2000
    assert len(splits.val) == 200
    assert splits.test is not None and len(splits.test) == 500
    all_y = torch.cat([splits.train.y, splits.val.y])
    assert torch.bincount(all_y).tolist() == [200] * 10
    assert torch.bincount(splits.val.y).tolist() == [20] * 10
    assert torch.bincount(splits.test.y).tolist() == [50] * 10
    assert splits.train.x.float().std() > 20  # real photographs, not blank images



# --------------------------------------------------------------------------- cache


def _fail(*args: object) -> np.ndarray:
    raise AssertionError("decoded again instead of reading the cache")


def test_decoded_arrays_are_cached_and_reused(
    archive: Path, private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(data_config(archive, val_size=12), with_test=True)
    cached = list((private_cache / "cache").glob("*.npz"))
    assert len(cached) == 1
    assert not list((private_cache / "cache").glob("*.tmp"))

    monkeypatch.setattr(data_sources, "_decode_images", _fail)
    second = load_dataset(data_config(archive, val_size=12), with_test=True)
    assert torch.equal(first.train.x, second.train.x) and first.classes == second.classes
    assert first.test is not None and second.test is not None
    assert torch.equal(first.test.y, second.test.y)

    stat = archive.stat()  # a changed source (new mtime) must be decoded again
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(data_config(archive, val_size=12))


def test_cache_of_a_folder_notices_a_new_image(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_dataset(data_config(folder, val_size=12))
    monkeypatch.setattr(data_sources, "_decode_images", _fail)
    load_dataset(data_config(folder, val_size=12))  # unchanged: from the cache
    (folder / "train" / "bee" / "0099.png").write_bytes(image_png(1, 99))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(data_config(folder, val_size=12))


def test_unreadable_cache_is_decoded_again(archive: Path, private_cache: Path) -> None:
    load_dataset(data_config(archive, val_size=12))
    (cached,) = (private_cache / "cache").glob("*.npz")
    cached.write_bytes(b"not a zip file")
    assert len(load_dataset(data_config(archive, val_size=12)).train) == 36



# --------------------------------------------------------------------------- missing data


def test_missing_cifar10_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match=str(missing)) as info:
        load_dataset(data_config(missing))
    assert isinstance(info.value, ConfigError)
    assert "download" in str(info.value) and "\n" not in str(info.value)


def test_missing_default_folder_names_it(private_cache: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(private_cache / "cifar10")):
        load_dataset(DataConfig(dataset="cifar10"))


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_missing_torchvision_datasets_name_the_folder(tmp_path: Path, dataset: str) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_dataset(DataConfig(dataset=dataset, data_dir=str(tmp_path)))


def test_archive_without_an_image_folder_tree(tmp_path: Path) -> None:
    path = tmp_path / "flat.tar"
    with tarfile.open(path, "w") as tf:
        blob = image_png(0, 0)
        info = tarfile.TarInfo("images/0000.png")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    with pytest.raises(DataNotFoundError, match="no train/<class>/<image> files"):
        load_dataset(data_config(path))


def test_images_of_the_wrong_size_are_refused(folder: Path) -> None:
    Image.new("RGB", (64, 64)).save(folder / "train" / "ant" / "big.png")
    with pytest.raises(ConfigError, match="is 64x64; expected 32x32"):
        load_dataset(data_config(folder, val_size=12))


def test_more_classes_than_the_model_has_outputs_are_refused(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in range(11):
            (tmp_path / split / f"c{label:02d}").mkdir(parents=True)
            (tmp_path / split / f"c{label:02d}" / "0.png").write_bytes(image_png(label % 5, label))
    with pytest.raises(ConfigError, match="holds 11 classes, but cifar10 models have 10"):
        load_dataset(data_config(tmp_path))
