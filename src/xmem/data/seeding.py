"""Per-item randomness: every random choice of a dataset item comes from its own generator, keyed by
integers such as (dataset tag, seed, epoch, index), never from global state. A resumed training that asks
for the same keys gets the same samples, in any worker process and in any order."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


def tag(name: str) -> int:
    """A stable integer for a name, used to keep the random streams of different uses apart."""
    return zlib.crc32(name.encode("utf-8"))


def rng_for(*keys: int) -> np.random.Generator:
    """A generator determined by non-negative integer ``keys`` (of any size)."""
    for k in keys:
        if int(k) < 0:
            raise ValueError(f"random keys must be non-negative integers, got {keys}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) for k in keys])))


@dataclass(frozen=True)
class ItemKey:
    """What a training sampler asks a dataset for: item ``index`` of ``epoch``, sampled with ``max_skip``
    (``None``: the dataset's own current max skip). Carrying the epoch and the skip in the key keeps
    DataLoader worker processes stateless, so the curriculum and resumption need no dataset mutation."""

    index: int
    epoch: int = 0
    max_skip: int | None = None


def resolve_key(key: int | ItemKey, *, epoch: int, max_skip: int, length: int) -> tuple[int, int, int]:
    """(index, epoch, max_skip) of a dataset lookup by plain index or by :class:`ItemKey`."""
    if isinstance(key, ItemKey):
        index, epoch = key.index, key.epoch
        max_skip = key.max_skip if key.max_skip is not None else max_skip
    else:
        index = int(key)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of {length} items")
    if max_skip < 1:
        raise ValueError(f"max_skip must be at least 1, got {max_skip}")
    return index, epoch, max_skip
