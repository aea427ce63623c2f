"""Device batches and crop/flip augmentation: trainables/loader.py."""

from __future__ import annotations

import pytest
import torch

from trainables.data import Split
from trainables.loader import BatchLoader, random_crop_flip

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
