"""Batches of a split that lives on the device, airbench style.

A trial holds its whole dataset in memory as one uint8 tensor (on the GPU when there is
one): 50k CIFAR images are 150 MB, and batching them with `torch.randperm` plus a vectorised
crop/flip is far cheaper than a DataLoader with per-sample PIL work.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from trainables.data import Split


class BatchLoader:
    """Batches of one split that lives on `device` as uint8 (moved there once).

    Each epoch draws a `torch.randperm` (with `generator`, when shuffling) and yields
    `(x, y)`: x float32 in [0, 1], y int64, both on `device`. With `augment`, the batch
    gets a random 4-pixel translation (zero fill) and a random horizontal flip, done on
    the whole batch on the device. `generator` may live on any device: random numbers
    are drawn there and moved to `device`.
    """

    def __init__(self, split: Split, batch_size: int, *, device: torch.device | str = "cpu",
                 shuffle: bool = False, augment: bool = False, drop_last: bool = False,
                 generator: torch.Generator | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, but got {batch_size!r}")
        self.device = torch.device(device)
        self.x = split.x.to(self.device)
        self.y = split.y.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.augment = augment
        self.drop_last = drop_last
        self.generator = generator

    @property
    def num_examples(self) -> int:
        return int(self.y.shape[0])

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_examples // self.batch_size
        return math.ceil(self.num_examples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = None
        if self.shuffle:
            draw_on = self.generator.device if self.generator is not None else self.device
            order = torch.randperm(self.num_examples, generator=self.generator,
                                   device=draw_on).to(self.device)
        for i in range(len(self)):
            window = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = order[window] if order is not None else window
            x, y = self.x[index], self.y[index]
            if self.augment:
                x = random_crop_flip(x, generator=self.generator)
            yield x.float().div_(255), y


def random_crop_flip(x: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None,
                     *, flip: bool = True) -> torch.Tensor:
    """Per-example random translation in [-pad, pad]^2 (zero fill) and coin-flip h-flip.

    Equivalent to a random `pad`-padded crop followed by a random horizontal flip, done
    as one gather over the batch (no Python loop over examples). Works on any dtype,
    keeps it, and returns a new tensor. Random numbers are drawn on the generator's
    device (x's device without one) and moved to x's device.

    Args:
        x: images, (N, C, H, W).
        pad: the largest shift in pixels; 0 turns translation off.
        generator: source of randomness, for reproducible batches.
        flip: False turns the horizontal flip off.
    """
    if x.ndim != 4:
        raise ValueError(f"x must be a (N, C, H, W) batch, but got shape {tuple(x.shape)}")
    if isinstance(pad, bool) or not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad must be a non-negative integer, but got {pad!r}")
    n, c, h, w = x.shape
    draw_on = generator.device if generator is not None else x.device
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=draw_on)
    shifts = shifts.to(x.device)
    rows = torch.arange(h, device=x.device) + shifts[0, :, None]  # (N, H) into the padded image
    cols = torch.arange(w, device=x.device).expand(n, w)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=draw_on).to(x.device)
        cols = torch.where(flips[:, None].bool(), cols.flip(1), cols)
    cols = cols + shifts[1, :, None]
    padded = x.new_zeros(n, c, h + 2 * pad, w + 2 * pad)  # F.pad is ~20x slower on CPU uint8
    padded[:, :, pad:pad + h, pad:pad + w] = x
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]
