"""Image data for one trial: the splits it trains and selects on.

Selection happens on a validation split carved from the training split (stratified,
seeded); the test split is only loaded on request (`with_test=True`), for `evaluate`. Where
the images come from is `trainables.data_sources`; batching them is `trainables.loader`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from trainables.config import ConfigError, DataConfig, fail
from trainables.data_sources import (  # noqa: F401  (re-exported)
    ENV_DATA_DIR,
    DataNotFoundError,
    cached,
    default_data_dir,
    locate,
)

MIN_TRAIN_IMAGES = 10  # a split smaller than this cannot train anything

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Split:
    x: torch.Tensor  # uint8, (N, 3, 32, 32), CPU, contiguous
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class DatasetSplits:
    """The splits of one dataset; each is ordered so that any prefix is close to stratified."""

    train: Split  # the training split minus validation (after data.train_subset)
    val: Split  # stratified, seeded, carved from the training split
    test: Split | None  # only when loaded with with_test=True
    classes: tuple[str, ...]


def load_dataset(cfg: DataConfig, *, with_test: bool = False) -> DatasetSplits:
    """Locate, decode (or read from cache) and split the dataset `cfg` names."""
    source = locate(cfg)
    raw = cached(cfg.dataset, source)
    if len(raw.classes) > cfg.num_classes:
        raise ConfigError(f"data.data_dir: {source.description} holds {len(raw.classes)} "
                          f"classes, but {cfg.dataset} models have {cfg.num_classes} outputs")
    if len(raw.classes) < cfg.num_classes:
        log.warning("%s has %d classes; the model still gets %d outputs",
                    source.description, len(raw.classes), cfg.num_classes)
    train_idx, val_idx = _split_indices(raw.train_y, cfg)
    test = None
    if with_test:  # a fixed order, the same for every seed, so test prefixes are comparable
        test_idx = _interleaved(np.arange(len(raw.test_y)), raw.test_y, np.random.default_rng(0))
        test = _to_split(raw.test_x[test_idx], raw.test_y[test_idx])
    return DatasetSplits(
        train=_to_split(raw.train_x[train_idx], raw.train_y[train_idx]),
        val=_to_split(raw.train_x[val_idx], raw.train_y[val_idx]),
        test=test,
        classes=raw.classes,
    )


def _split_indices(y: np.ndarray, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices into the training split: subset first, then validation.

    One numpy Generator(cfg.seed) draws both, so the split depends only on the labels
    and the seed. Both picks are stratified: each class keeps its share. Both come back
    interleaved (see `_interleaved`), so a prefix such as `val[:max_examples]` is a
    fair sample too.
    """
    rng = np.random.default_rng(cfg.seed)
    pool = np.arange(len(y))
    if cfg.train_subset is not None:
        if cfg.train_subset > len(y):
            raise fail("data.train_subset", cfg.train_subset,
                       f"must be at most the {len(y)} images of the {cfg.dataset} training split")
        pool = pool[_stratified_pick(y, cfg.train_subset, rng)]
    n_val = _val_count(cfg.val_size, len(pool))
    picked = _stratified_pick(y[pool], n_val, rng)
    keep = np.ones(len(pool), dtype=bool)
    keep[picked] = False
    return _interleaved(pool[keep], y, rng), _interleaved(pool[picked], y, rng)


def _interleaved(idx: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`idx` shuffled, then ordered so that every prefix is close to stratified.

    Sources are stored class by class; without this, the first 500 validation images
    would all be airplanes. Each example is keyed on its (rank + 0.5) / count within its
    class, so classes interleave in proportion to their size.
    """
    idx = rng.permutation(idx)
    labels = y[idx]
    key = np.empty(len(idx))
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        key[where] = (np.arange(len(where)) + 0.5) / len(where)
    return idx[np.lexsort((labels, key))]


def _val_count(val_size: int | float, n: int) -> int:
    count = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if count < 1:
        raise fail("data.val_size", val_size, f"gives no validation images out of {n}; "
                   "use a larger fraction or a count")
    if n - count < MIN_TRAIN_IMAGES:
        raise fail("data.val_size", val_size, f"leaves {max(n - count, 0)} of {n} training "
                   f"images; at least {MIN_TRAIN_IMAGES} must remain")
    return count


def _stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of `n` labels in `y`, each class in proportion to its count.

    Quotas use largest remainders in integer arithmetic, so they sum to exactly `n`
    and never exceed a class's count.
    """
    classes, counts = np.unique(y, return_counts=True)
    quota, remainder = np.divmod(counts * n, len(y))
    short = n - int(quota.sum())
    quota[np.argsort(-remainder, kind="stable")[:short]] += 1
    picked = [rng.permutation(np.flatnonzero(y == c))[:q]
              for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked)) if picked else np.empty(0, dtype=np.int64)


def _to_split(x: np.ndarray, y: np.ndarray) -> Split:
    return Split(x=torch.from_numpy(np.ascontiguousarray(x)),
                 y=torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))
