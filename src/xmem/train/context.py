"""Where a training process runs: its place in a torchrun launch (rank, world size, device; the process
group started for DDP), the autocast dtype its precision setting resolves to on that device, and the error
a run that cannot start or resume raises."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from xmem.config import resolve_device
from xmem.train.config import TrainPrecision


class TrainingError(RuntimeError):
    """A training run that cannot start or resume (the message says why)."""


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a torchrun launch (world size 1 without torchrun)."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, device_name: str) -> DistributedContext:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        device = resolve_device(device_name)
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        if world > 1 and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, device)


def autocast_dtype(precision: TrainPrecision, device: torch.device) -> torch.dtype | None:
    """The dtype the forward pass autocasts to with ``precision`` on ``device`` (None: float32 throughout).
    ``auto`` is bfloat16 on CUDA GPUs that support it, float16 on the others and float32 off CUDA."""
    if precision is TrainPrecision.AUTO:
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision is TrainPrecision.FP16 and device.type != "cuda":
        raise TrainingError("fp16 training needs a CUDA GPU (use bf16 or fp32 on this device)")
    return {
        TrainPrecision.FP32: None,
        TrainPrecision.BF16: torch.bfloat16,
        TrainPrecision.FP16: torch.float16,
    }[precision]
