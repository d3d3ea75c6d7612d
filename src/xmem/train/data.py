"""A stage's training data: its sources (synthetic composites, static images, annotated videos) mixed
into one dataset that :class:`xmem.data.ClipSampler` indexes by :class:`xmem.data.ItemKey`."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from xmem.data import (
    CompositeClipDataset,
    ImageMaskFolder,
    ItemKey,
    StaticImageDataset,
    VOSDataset,
    photo_static_dataset,
)
from xmem.data.real_scenes import RealSceneClipDataset
from xmem.data.seeding import tag
from xmem.train.config import StageConfig


class MixtureDataset(Dataset):
    """Concatenation of datasets, each repeated ``weight`` times. Item keys keep their epoch and max skip;
    the r-th copy of a source sees epoch ``epoch · weight + r``, so copies give different samples."""

    def __init__(self, datasets: Sequence[Dataset], weights: Sequence[int]) -> None:
        if not datasets or len(datasets) != len(weights):
            raise ValueError("a mixture needs datasets and one weight each")
        self.datasets, self.weights = list(datasets), list(weights)
        self._ends: list[int] = []
        total = 0
        for d, w in zip(self.datasets, self.weights, strict=True):
            total += len(d) * w
            self._ends.append(total)

    def __len__(self) -> int:
        return self._ends[-1]

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        key = key if isinstance(key, ItemKey) else ItemKey(int(key))
        if not 0 <= key.index < len(self):
            raise IndexError(f"index {key.index} out of range for a mixture of {len(self)} items")
        source = bisect.bisect_right(self._ends, key.index)
        local = key.index - (self._ends[source - 1] if source else 0)
        dataset = self.datasets[source]
        copy, index = divmod(local, len(dataset))
        epoch = key.epoch * self.weights[source] + copy
        return dataset[ItemKey(index, epoch, key.max_skip)]


def build_stage_dataset(stage: StageConfig, seed: int) -> MixtureDataset:
    """The stage's sources as one dataset; ``seed`` (with a tag per source) fixes every sample."""
    data = stage.data
    datasets, weights = [], []
    if data.synthetic is not None:
        datasets.append(CompositeClipDataset(data.synthetic.config, seed=_source_seed(seed, "synthetic")))
        weights.append(data.synthetic.weight)
    if data.real_scenes is not None:
        datasets.append(RealSceneClipDataset(data.real_scenes.config, seed=_source_seed(seed, "real_scenes")))
        weights.append(data.real_scenes.weight)
    if data.static is not None:
        s = data.static
        static_seed = _source_seed(seed, "static")
        if s.root is None:
            datasets.append(photo_static_dataset(s.items, s.config, seed=static_seed))
        else:
            datasets.append(StaticImageDataset(ImageMaskFolder(s.root), s.config, seed=static_seed))
        weights.append(s.weight)
    for i, v in enumerate(data.videos):
        datasets.append(VOSDataset(v.root, v.config, seed=_source_seed(seed, f"videos.{i}")))
        weights.append(v.weight)
    return MixtureDataset(datasets, weights)


def _source_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + tag(name)) % (2**63)
