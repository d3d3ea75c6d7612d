"""Deterministic weights from the golden rule of ``shared/fixtures/xmem-golden`` (used by tests and
benchmarks to stand in for released checkpoints of the official layout)."""

from __future__ import annotations

import math
import zlib

import torch

from xmem.config import ModelConfig
from xmem.model.network import XMem


def golden_rule_state_dict(config: ModelConfig | None = None) -> dict[str, torch.Tensor]:
    """Every entry drawn from a generator seeded with ``crc32(name)``, by the rule of the golden run."""
    template = XMem(config).state_dict()
    state = {}
    for name, ref in template.items():
        g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
        shape = tuple(ref.shape)
        if name.endswith("num_batches_tracked"):
            t = torch.zeros(shape, dtype=torch.int64)
        elif name.endswith("running_var"):
            t = 0.5 + torch.rand(shape, generator=g)
        elif len(shape) >= 2:
            t = torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))
        elif name.endswith("weight"):
            t = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            t = 0.1 * torch.randn(shape, generator=g)
        state[name] = t
    return state


def golden_rule_model(config: ModelConfig | None = None) -> XMem:
    model = XMem(config)
    model.load_state_dict(golden_rule_state_dict(config))
    return model.eval()
