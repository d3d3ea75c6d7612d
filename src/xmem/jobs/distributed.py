"""Sharing the videos of a dataset among the processes of a ``torchrun`` launch (torch.distributed)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """This process's place in a launch: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int
    world_size: int
    local_rank: int

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"invalid rank {self.rank} of {self.world_size}")


def rank_from_env(env: Mapping[str, str] | None = None) -> Rank | None:
    """The rank torchrun gives this process (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), None outside torchrun."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
    return Rank(rank, world, int(env.get("LOCAL_RANK", rank)))


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items of ``rank``: every ``world_size``-th from position ``rank`` (item i goes to rank i % world)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"invalid rank {rank} of {world_size}")
    return list(items[rank::world_size])


@contextlib.contextmanager
def process_group(rank: Rank, device: torch.device) -> Iterator[None]:
    """Join the launch's process group (NCCL on CUDA, Gloo on the CPU) for the duration; leave it at the end.
    Outside a launch (one process), nothing is initialised."""
    if rank.world_size == 1 or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=rank.rank, world_size=rank.world_size)
    log.debug("rank %d of %d joined the %s process group", rank.rank, rank.world_size, backend)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process of the launch (no-op in a single process)."""
    if dist.is_initialized():
        dist.barrier()
