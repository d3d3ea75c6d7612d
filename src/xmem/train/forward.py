"""The training forward pass over a clip (REFERENCE.md §6): memory of the first frame and up to
``num_ref_frames - 1`` random earlier frames, full softmax (no top-k), sensory memory from zero, deep
update with probability ``deep_update_prob``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from xmem.memory.similarity import similarity
from xmem.model.network import XMem


@dataclass
class ClipOutput:
    """Per frame t = 1..T-1: aggregated logits B×(O+1)×H×W and object probabilities B×O×H×W."""

    logits: list[torch.Tensor]
    probs: list[torch.Tensor]


def read_memory_dense(
    mem_key: torch.Tensor,
    mem_shrinkage: torch.Tensor,
    mem_value: torch.Tensor,
    query_key: torch.Tensor,
    query_selection: torch.Tensor,
) -> torch.Tensor:
    """Readout with the full softmax over the memory: ``mem_key`` B×Ck×N, ``mem_shrinkage`` B×N,
    ``mem_value`` B×O×Cv×N, ``query_key`` / ``query_selection`` B×Ck×h×w -> B×O×Cv×h×w (in fp32)."""
    b, _, h, w = query_key.shape
    sim = similarity(
        mem_key.float(),
        mem_shrinkage.float(),
        query_key.flatten(2).float(),
        query_selection.flatten(2).float(),
    )  # B×M×N
    affinity = torch.softmax(sim, dim=-1)
    readout = mem_value.float().flatten(1, 2) @ affinity.transpose(1, 2)  # B×(O·Cv)×M
    return readout.view(b, mem_value.shape[1], mem_value.shape[2], h, w)


def reference_frames(t: int, num_ref_frames: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """Memory frames for frame ``t``, B×R: all earlier frames while there are at most ``num_ref_frames``,
    then frame 0 plus ``num_ref_frames - 1`` distinct random frames among 1..t-1 (per batch element)."""
    if t <= num_ref_frames:
        return torch.arange(t).expand(batch, t)
    picks = [torch.randperm(t - 1, generator=generator)[: num_ref_frames - 1] + 1 for _ in range(batch)]
    return torch.stack([torch.cat([torch.zeros(1, dtype=torch.long), p]) for p in picks])


def clip_forward(
    network: XMem,
    frames: torch.Tensor,
    first_masks: torch.Tensor,
    valid: torch.Tensor,
    *,
    num_ref_frames: int = 3,
    deep_update_prob: float = 0.2,
    generator: torch.Generator,
) -> ClipOutput:
    """Segment frames 1..T-1 of a batch of clips from the masks of frame 0.

    ``frames`` B×T×3×H×W (ImageNet-normalised, H and W multiples of 16), ``first_masks`` B×O×H×W,
    ``valid`` B×O (padding slots are zeroed before every aggregation). ``generator`` (on the CPU) draws
    the reference frames and the deep updates, so a run is reproducible from its seed.
    """
    b, t_len = frames.shape[:2]
    key, shrinkage, selection, (f16, f8, f4) = network.encode_key(frames.flatten(0, 1))
    assert shrinkage is not None and selection is not None
    key, shrinkage, selection = (x.unflatten(0, (b, t_len)) for x in (key, shrinkage, selection))
    f16, f8, f4 = (x.unflatten(0, (b, t_len)) for x in (f16, f8, f4))
    hw = key.shape[-2:]
    num_objects = first_masks.shape[1]
    hidden_dim = network.config.hidden_dim
    hidden = (
        torch.zeros(b, num_objects, hidden_dim, *hw, device=frames.device, dtype=f16.dtype)
        if hidden_dim > 0
        else None
    )
    valid_f = valid.to(first_masks.dtype)
    value, hidden = network.encode_value(
        frames[:, 0], f16[:, 0], hidden, first_masks * valid_f[:, :, None, None]
    )
    values = [value]  # per memory frame: B×O×Cv×h×w
    out = ClipOutput([], [])
    batch_index = torch.arange(b)[:, None]
    for t in range(1, t_len):
        refs = reference_frames(t, num_ref_frames, b, generator)  # B×R
        mem_key = key[batch_index, refs].permute(0, 2, 1, 3, 4).flatten(2)  # B×Ck×(R·h·w)
        mem_shrinkage = shrinkage[batch_index, refs].flatten(1)  # B×(R·h·w)
        stacked = torch.stack(values, dim=1)  # B×t×O×Cv×h×w
        mem_value = stacked[batch_index, refs].permute(0, 2, 3, 1, 4, 5).flatten(3)  # B×O×Cv×(R·h·w)
        readout = read_memory_dense(mem_key, mem_shrinkage, mem_value, key[:, t], selection[:, t])
        last = t == t_len - 1
        new_hidden, logits, prob = network.segment(
            (f16[:, t], f8[:, t], f4[:, t]),
            readout.to(f16.dtype),
            hidden,
            update_hidden=not last,
            selector=valid,
        )
        if new_hidden is not None:
            hidden = new_hidden
        out.logits.append(logits)
        out.probs.append(prob[:, 1:])
        if not last:
            deep = bool(torch.rand(1, generator=generator).item() < deep_update_prob)
            value, reinforced = network.encode_value(
                frames[:, t], f16[:, t], hidden, prob[:, 1:].to(f16.dtype), deep_update=deep
            )
            if deep and reinforced is not None:
                hidden = reinforced
            values.append(value)
    return out


@torch.no_grad()
def calibrate_batchnorm(
    modules: Sequence[torch.nn.Module],
    network: XMem,
    frames: torch.Tensor,
    first_masks: torch.Tensor,
    valid: torch.Tensor,
    *,
    generator: torch.Generator,
) -> None:
    """Set the BatchNorm statistics of ``modules`` (randomly initialised parts of ``network``, e.g. the lite
    value encoder) from one clip batch, then leave them frozen like every BatchNorm in training.

    Training keeps BatchNorm statistics fixed (as the reference does, whose BatchNorms come with ImageNet
    weights). Random-init statistics (mean 0, variance 1) make BatchNorm the identity, and through stride-2
    MBConv blocks without shortcuts the object signal then shrinks about tenfold per block, so the values
    stop depending on the masks and objects cannot be told apart. Each BatchNorm here takes the mean and
    variance of its own input over the batch, layer after layer (cumulative averages, ``momentum=None``)."""
    norms = [
        m for part in modules for m in part.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
    ]
    saved = [(m.momentum, m.training) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        clip_forward(network, frames, first_masks, valid, deep_update_prob=0.0, generator=generator)
    finally:
        for m, (momentum, training) in zip(norms, saved, strict=True):
            m.momentum = momentum
            m.train(training)
