"""An iteration-driven sampler: which items (with which epoch and max skip) make each training batch."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import torch

from xmem.data.curriculum import SkipCurriculum
from xmem.data.seeding import ItemKey, rng_for, tag

_SAMPLER_TAG = tag("xmem.data.sampler.ClipSampler")


class ClipSampler(torch.utils.data.Sampler[ItemKey]):
    """Yields the :class:`ItemKey` s of iterations ``start_iteration`` .. ``total_iterations − 1``,
    ``batch_size // world_size`` keys per iteration for process ``rank``.

    The items form an endless stream of epochs, each a permutation of the dataset drawn from (``seed``,
    epoch); iteration i takes stream positions [i·B, (i+1)·B) of the global batch B. The max skip of
    iteration i is ``curriculum.at_iteration(i, total_iterations)``. Everything is a function of the
    iteration number, so a training resumed at iteration i (``start_iteration=i``) sees exactly the
    batches it would have seen, and DataLoader workers need no shared state. Use it with
    ``DataLoader(dataset, batch_size=batch_size // world_size, sampler=...)``.
    """

    def __init__(
        self,
        num_items: int,
        *,
        batch_size: int,
        total_iterations: int,
        seed: int = 0,
        curriculum: SkipCurriculum | None = None,
        start_iteration: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_items < 1 or total_iterations < 1:
            raise ValueError("the sampler needs at least one item and one iteration")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(
                f"batch size {batch_size} must be a positive multiple of world size {world_size}"
            )
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.total_iterations = total_iterations
        self.seed = seed
        self.curriculum = curriculum if curriculum is not None else SkipCurriculum()
        self.start_iteration = start_iteration
        self.rank = rank
        self.local_batch = batch_size // world_size
        self._permutation: tuple[int, list[int]] | None = None

    def _epoch_order(self, epoch: int) -> list[int]:
        if self._permutation is None or self._permutation[0] != epoch:
            order = rng_for(_SAMPLER_TAG, self.seed, epoch).permutation(self.num_items).tolist()
            self._permutation = (epoch, order)
        return self._permutation[1]

    def keys(self, iteration: int) -> list[ItemKey]:
        """The keys of this process's share of the batch of ``iteration``."""
        skip = self.curriculum.at_iteration(iteration, self.total_iterations)
        start = iteration * self.batch_size + self.rank * self.local_batch
        keys = []
        for position in range(start, start + self.local_batch):
            epoch, offset = divmod(position, self.num_items)
            keys.append(ItemKey(self._epoch_order(epoch)[offset], epoch, skip))
        return keys

    def __iter__(self) -> Iterator[ItemKey]:
        for iteration in range(self.start_iteration, self.total_iterations):
            yield from self.keys(iteration)

    def __len__(self) -> int:
        return max(0, self.total_iterations - self.start_iteration) * self.local_batch


class ConcatClips(torch.utils.data.Dataset):
    """Several datasets as one (e.g. DAVIS ×5 + YouTube-VOS), indexable by plain index or by
    :class:`ItemKey` (which ``torch.utils.data.ConcatDataset`` cannot forward): global index i goes to
    the dataset holding it, with the key's epoch and max skip. Give the parts different seeds."""

    def __init__(self, datasets: list[torch.utils.data.Dataset]) -> None:
        if not datasets:
            raise ValueError("ConcatClips needs at least one dataset")
        self.datasets = list(datasets)
        self.offsets = [0]
        for d in self.datasets:
            self.offsets.append(self.offsets[-1] + len(d))

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        index = key.index if isinstance(key, ItemKey) else int(key)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        part = bisect.bisect_right(self.offsets, index) - 1
        local = index - self.offsets[part]
        inner = ItemKey(local, key.epoch, key.max_skip) if isinstance(key, ItemKey) else local
        return self.datasets[part][inner]

    def set_epoch(self, epoch: int) -> None:
        for d in self.datasets:
            d.set_epoch(epoch)

    def set_max_skip(self, max_skip: int) -> None:
        for d in self.datasets:
            d.set_max_skip(max_skip)
