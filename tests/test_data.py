"""Tests for trainables.data: locating, decoding, caching, splitting and batching images."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainables import data, data_sources
from trainables.config import ConfigError, DataConfig
from trainables.data import DataNotFoundError, Split, default_data_dir, load_dataset
from trainables.loader import BatchLoader, random_crop_flip

CLASSES = ("ant", "bee", "cat")  # written in another order below; labels follow sorted names
TRAIN_PER_CLASS = 16
TEST_PER_CLASS = 4
SHARED_ARCHIVE = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-jpeg.tar.gz"


def _pixels(label: int, ident: int) -> np.ndarray:
    """A 32x32 RGB image whose red channel names its class and green channel its id."""
    rng = np.random.default_rng(ident)
    image = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    image[..., 0] = 50 * label + 7
    image[..., 1] = ident
    return image


def _png(label: int, ident: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(_pixels(label, ident)).save(buffer, format="PNG")
    return buffer.getvalue()


def _tree() -> dict[str, bytes]:
    """{relative path: PNG bytes} of a tiny ImageFolder tree; ids are unique within a split."""
    files = {}
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        ident = 0
        for label, cls in sorted(enumerate(CLASSES), key=lambda item: item[1], reverse=True):
            for i in range(per_class):
                files[f"{split}/{cls}/{i:04d}.png"] = _png(label, ident)
                ident += 1
    return files


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache_home = tmp_path / "home"
    monkeypatch.setenv("WRN_SEARCH_DATA", str(cache_home))
    return cache_home


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "tiny"
    for rel, blob in _tree().items():
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
        for rel, blob in sorted(_tree().items(), reverse=True):
            info = tarfile.TarInfo(f"tiny/{rel}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def _cfg(source: Path, **kwargs: object) -> DataConfig:
    return DataConfig(dataset="cifar10", data_dir=str(source), **kwargs)  # type: ignore[arg-type]


def _ids(split: Split) -> set[int]:
    return set(split.x[:, 1, 0, 0].tolist())


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
    splits = load_dataset(_cfg(source, val_size=12), with_test=True)
    assert splits.classes == ("ant", "bee", "cat")
    assert splits.test is not None
    for split, n in ((splits.train, 36), (splits.val, 12), (splits.test, 3 * TEST_PER_CLASS)):
        assert split.x.shape == (n, 3, 32, 32) and split.x.dtype == torch.uint8
        assert split.y.shape == (n,) and split.y.dtype == torch.int64
        assert split.x.is_contiguous() and split.x.device.type == "cpu"
        # the red channel was written as 50 * (index of the class in sorted order) + 7
        assert torch.equal(split.x[:, 0, 0, 0].long(), 50 * split.y + 7)
    one = splits.test.x[splits.test.x[:, 1, 0, 0] == 0][0]  # the first image written
    assert torch.equal(one, torch.from_numpy(_pixels(2, 0)).permute(2, 0, 1))


def test_folder_and_archive_give_identical_arrays(folder: Path, archive: Path) -> None:
    a = load_dataset(_cfg(folder, val_size=12), with_test=True)
    b = load_dataset(_cfg(archive, val_size=12), with_test=True)
    for left, right in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert left is not None and right is not None
        assert torch.equal(left.x, right.x) and torch.equal(left.y, right.y)


def test_test_split_only_on_request(folder: Path) -> None:
    assert load_dataset(_cfg(folder, val_size=12)).test is None


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


# --------------------------------------------------------------------------- splits


def test_splits_are_stratified_seeded_and_disjoint(folder: Path) -> None:
    first = load_dataset(_cfg(folder, val_size=12, seed=3))
    again = load_dataset(_cfg(folder, val_size=12, seed=3))
    other = load_dataset(_cfg(folder, val_size=12, seed=4))
    train_ids, val_ids = _ids(first.train), _ids(first.val)
    assert len(train_ids) == 36 and len(val_ids) == 12
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(3 * TRAIN_PER_CLASS))
    assert torch.bincount(first.val.y).tolist() == [4, 4, 4]
    assert torch.equal(first.val.x, again.val.x) and torch.equal(first.train.y, again.train.y)
    assert _ids(other.val) != val_ids


def test_every_prefix_of_a_split_is_close_to_stratified() -> None:
    splits = load_dataset(DataConfig(dataset="cifar10-sample", val_size=0.1), with_test=True)
    assert splits.test is not None
    for split in (splits.train, splits.val, splits.test):
        assert sorted(split.y[:10].tolist()) == list(range(10))
        assert torch.bincount(split.y[:50], minlength=10).tolist() == [5] * 10


def test_val_size_as_a_fraction(folder: Path) -> None:
    splits = load_dataset(_cfg(folder, val_size=0.25))
    assert len(splits.val) == 12 and len(splits.train) == 36
    assert torch.bincount(splits.val.y).tolist() == [4, 4, 4]


def test_train_subset_is_stratified_and_val_comes_out_of_it(folder: Path) -> None:
    splits = load_dataset(_cfg(folder, train_subset=30, val_size=0.2))
    assert len(splits.train) == 24 and len(splits.val) == 6
    assert torch.bincount(torch.cat([splits.train.y, splits.val.y])).tolist() == [10, 10, 10]
    assert torch.bincount(splits.val.y).tolist() == [2, 2, 2]
    assert not _ids(splits.train) & _ids(splits.val)


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
        load_dataset(_cfg(folder, **kwargs))


# --------------------------------------------------------------------------- cache


def _fail(*args: object) -> np.ndarray:
    raise AssertionError("decoded again instead of reading the cache")


def test_decoded_arrays_are_cached_and_reused(
    archive: Path, _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load_dataset(_cfg(archive, val_size=12), with_test=True)
    cached = list((_private_cache / "cache").glob("*.npz"))
    assert len(cached) == 1
    assert not list((_private_cache / "cache").glob("*.tmp"))

    monkeypatch.setattr(data_sources, "_decode_images", _fail)
    second = load_dataset(_cfg(archive, val_size=12), with_test=True)
    assert torch.equal(first.train.x, second.train.x) and first.classes == second.classes
    assert first.test is not None and second.test is not None
    assert torch.equal(first.test.y, second.test.y)

    stat = archive.stat()  # a changed source (new mtime) must be decoded again
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(_cfg(archive, val_size=12))


def test_cache_of_a_folder_notices_a_new_image(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_dataset(_cfg(folder, val_size=12))
    monkeypatch.setattr(data_sources, "_decode_images", _fail)
    load_dataset(_cfg(folder, val_size=12))  # unchanged: from the cache
    (folder / "train" / "bee" / "0099.png").write_bytes(_png(1, 99))
    with pytest.raises(AssertionError, match="decoded again"):
        load_dataset(_cfg(folder, val_size=12))


def test_unreadable_cache_is_decoded_again(archive: Path, _private_cache: Path) -> None:
    load_dataset(_cfg(archive, val_size=12))
    (cached,) = (_private_cache / "cache").glob("*.npz")
    cached.write_bytes(b"not a zip file")
    assert len(load_dataset(_cfg(archive, val_size=12)).train) == 36


# --------------------------------------------------------------------------- missing data


def test_missing_cifar10_names_the_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataNotFoundError, match=str(missing)) as info:
        load_dataset(_cfg(missing))
    assert isinstance(info.value, ConfigError)
    assert "download" in str(info.value) and "\n" not in str(info.value)


def test_missing_default_folder_names_it(_private_cache: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(_private_cache / "cifar10")):
        load_dataset(DataConfig(dataset="cifar10"))


@pytest.mark.parametrize("dataset", ["cifar100", "svhn"])
def test_missing_torchvision_datasets_name_the_folder(tmp_path: Path, dataset: str) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path)):
        load_dataset(DataConfig(dataset=dataset, data_dir=str(tmp_path)))


def test_archive_without_an_image_folder_tree(tmp_path: Path) -> None:
    path = tmp_path / "flat.tar"
    with tarfile.open(path, "w") as tf:
        blob = _png(0, 0)
        info = tarfile.TarInfo("images/0000.png")
        info.size = len(blob)
        tf.addfile(info, io.BytesIO(blob))
    with pytest.raises(DataNotFoundError, match="no train/<class>/<image> files"):
        load_dataset(_cfg(path))


def test_images_of_the_wrong_size_are_refused(folder: Path) -> None:
    Image.new("RGB", (64, 64)).save(folder / "train" / "ant" / "big.png")
    with pytest.raises(ConfigError, match="is 64x64; expected 32x32"):
        load_dataset(_cfg(folder, val_size=12))


def test_more_classes_than_the_model_has_outputs_are_refused(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in range(11):
            (tmp_path / split / f"c{label:02d}").mkdir(parents=True)
            (tmp_path / split / f"c{label:02d}" / "0.png").write_bytes(_png(label % 5, label))
    with pytest.raises(ConfigError, match="holds 11 classes, but cifar10 models have 10"):
        load_dataset(_cfg(tmp_path))


# --------------------------------------------------------------------------- batching


def _numbered(n: int) -> Split:
    """n images whose every pixel holds the image's index (n <= 256)."""
    x = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 32, 32).contiguous()
    return Split(x=x, y=torch.arange(n, dtype=torch.int64))


def _epoch(loader: BatchLoader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_batch_loader_yields_every_example_once_per_epoch() -> None:
    loader = BatchLoader(_numbered(37), 8, shuffle=True, generator=torch.Generator().manual_seed(0))
    assert len(loader) == 5 and loader.num_examples == 37
    batches = _epoch(loader)
    assert [len(y) for _, y in batches] == [8, 8, 8, 8, 5]
    for x, y in batches:
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), 3, 32, 32)
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert torch.allclose(x[:, :, 5, 7] * 255, y[:, None].float().expand(-1, 3))
    seen = torch.cat([y for _, y in batches])
    assert sorted(seen.tolist()) == list(range(37))
    second = torch.cat([y for _, y in _epoch(loader)])
    assert sorted(second.tolist()) == list(range(37))
    assert not torch.equal(seen, second)  # a fresh permutation each epoch


def test_batch_loader_is_deterministic_with_a_seeded_generator() -> None:
    def run(seed: int) -> list[torch.Tensor]:
        loader = BatchLoader(_numbered(40), 16, shuffle=True, augment=True,
                             generator=torch.Generator().manual_seed(seed))
        return [t for _ in range(2) for batch in loader for t in batch]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(s, t) for s, t in zip(a, b, strict=True))
    assert not all(torch.equal(s, t) for s, t in zip(a, c, strict=True))


def test_batch_loader_in_order_and_drop_last() -> None:
    loader = BatchLoader(_numbered(37), 8, drop_last=True)
    assert len(loader) == 4
    ys = [y for _, y in loader]
    assert all(len(y) == 8 for y in ys)
    assert torch.equal(torch.cat(ys), torch.arange(32))


def test_batch_loader_augments_within_range() -> None:
    sample = Split(x=torch.full((20, 3, 32, 32), 255, dtype=torch.uint8),
                   y=torch.zeros(20, dtype=torch.int64))
    loader = BatchLoader(sample, 20, augment=True, generator=torch.Generator().manual_seed(0))
    (x, _), = list(loader)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert (x == 0).any()  # some examples were shifted, bringing in zero padding


def test_batch_loader_rejects_a_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        BatchLoader(_numbered(4), 0)


# --------------------------------------------------------------------------- augmentation


def _distinct_images(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images with no zero pixel and no symmetry, so every shift and flip is recognisable."""
    return (torch.randperm(n * 3 * 32 * 32, generator=torch.Generator().manual_seed(0))
            .view(n, 3, 32, 32) % 250 + 1).to(dtype)


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Reference: translate by (dy, dx), filling with zeros (output[i, j] = image[i+dy, j+dx])."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[:, max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)] = \
        image[:, max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)]
    return out


def test_crop_flip_keeps_shape_and_dtype() -> None:
    for dtype in (torch.uint8, torch.float32):
        x = _distinct_images(6, dtype)
        out = random_crop_flip(x, generator=torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == dtype


def test_crop_flip_with_no_pad_and_no_flip_is_the_identity() -> None:
    x = _distinct_images(8)
    assert torch.equal(random_crop_flip(x, pad=0, flip=False), x)


def test_flip_on_a_known_image() -> None:
    row = torch.arange(1, 33, dtype=torch.float32)
    x = row.expand(64, 3, 32, 32).contiguous()
    out = random_crop_flip(x, pad=0, generator=torch.Generator().manual_seed(0))
    flipped = out[:, 0, 0, 0] == 32  # a flipped image starts with the last column
    assert flipped.any() and (~flipped).any()
    reversed_row = torch.arange(32, 0, -1, dtype=torch.float32).expand(3, 32, 32)
    assert all(torch.equal(image, reversed_row) for image in out[flipped])
    assert torch.equal(out[~flipped], x[~flipped])


def test_translated_content_comes_from_the_image_or_zeros() -> None:
    pad = 2
    x = _distinct_images(32)
    out = random_crop_flip(x, pad=pad, generator=torch.Generator().manual_seed(1))
    shifts = set()
    for image, result in zip(x, out, strict=True):
        matches = [
            (dy, dx, flip)
            for flip in (False, True)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.equal(result, _shifted(image.flip(-1) if flip else image, dy, dx))
        ]
        assert len(matches) == 1, "each output must be exactly one shift (and flip) of its input"
        shifts.add(matches[0])
    assert len(shifts) > 5  # the shifts really vary across the batch


def test_crop_flip_is_reproducible_with_a_generator() -> None:
    x = _distinct_images(16, torch.uint8)
    a = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    b = random_crop_flip(x, generator=torch.Generator().manual_seed(5))
    c = random_crop_flip(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


# --------------------------------------------------------------------------- the real thing


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ARCHIVE.is_file(), reason="needs ../shared/data/cifar10-jpeg.tar.gz")
def test_full_cifar10_archive() -> None:
    splits = load_dataset(_cfg(SHARED_ARCHIVE, val_size=5000), with_test=True)
    assert len(splits.train) == 45000 and len(splits.val) == 5000
    assert splits.test is not None and len(splits.test) == 10000
    assert torch.bincount(splits.val.y).tolist() == [500] * 10
    assert splits.classes[:3] == ("airplane", "automobile", "bird")
