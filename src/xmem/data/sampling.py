"""Choosing which frames of a video make a training clip, and which objects it follows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def sample_frame_indices(rng: np.random.Generator, length: int, num_frames: int, max_skip: int) -> list[int]:
    """``num_frames`` distinct frame indices in ``[0, length)``, sorted, grown one at a time: the first
    uniformly, each next one uniformly among the frames within ``max_skip`` of a frame already chosen
    (the sampling of the XMem recipe; consecutive chosen frames are thus at most ``max_skip`` apart)."""
    if length < num_frames:
        raise ValueError(f"cannot sample {num_frames} frames from a video of {length}")
    skip = max(1, min(length, max_skip))
    chosen = [int(rng.integers(length))]
    allowed: set[int] = set()
    while len(chosen) < num_frames:
        last = chosen[-1]
        allowed.update(range(max(0, last - skip), min(length, last + skip + 1)))
        allowed.difference_update(chosen)
        pool = sorted(allowed)
        chosen.append(pool[int(rng.integers(len(pool)))])
    return sorted(chosen)


def maybe_reverse(rng: np.random.Generator, indices: list[int], probability: float) -> list[int]:
    """``indices`` reversed with ``probability`` (time reversal of the recipe). One draw either way."""
    return indices[::-1] if rng.random() < probability else indices


def select_objects(
    first_mask: torch.Tensor, rng: np.random.Generator, *, max_objects: int, min_pixels: int
) -> list[int]:
    """Object ids of ``first_mask`` (H×W ids; 0 background, 255 void) covering at least ``min_pixels``,
    at most ``max_objects`` of them chosen at random, in random order. Empty if none qualifies."""
    ids, counts = torch.unique(first_mask, return_counts=True)
    candidates = [
        i for i, c in zip(ids.tolist(), counts.tolist(), strict=True) if i not in (0, 255) and c >= min_pixels
    ]
    if not candidates:
        return []
    order = rng.permutation(len(candidates))[:max_objects]
    return [int(candidates[i]) for i in order]


def build_sample(
    frames: torch.Tensor, masks: torch.Tensor, object_ids: Sequence[int], max_objects: int
) -> dict[str, torch.Tensor]:
    """The training sample format shared by all datasets.

    ``frames``: T×3×H×W float in [0, 1]; ``masks``: T×H×W integer ids; ``object_ids``: the ids to keep,
    in order (renumbered 1..n; every other id becomes background). Returns

    - ``frames``: float32 T×3×H×W, RGB in [0, 1] (not normalised),
    - ``masks``: int64 T×H×W, objects 1..n, 0 background,
    - ``first_masks``: float32 O×H×W, the object masks of frame 0, zero for padded slots (O = max_objects),
    - ``valid``: bool O, True for the n real slots (the first n).
    """
    n = len(object_ids)
    if not 1 <= n <= max_objects:
        raise ValueError(f"a sample needs 1..{max_objects} objects, got {n}")
    masks = masks.long()
    lut = torch.zeros(max(int(masks.max()), max(object_ids)) + 1, dtype=torch.int64)
    for slot, obj in enumerate(object_ids):
        lut[obj] = slot + 1
    renumbered = lut[masks]  # T×H×W
    slots = torch.arange(1, max_objects + 1).view(-1, 1, 1)
    first_masks = (renumbered[0].unsqueeze(0) == slots).float()  # O×H×W, slots above n stay zero
    valid = torch.arange(max_objects) < n
    return {
        "frames": frames.float().clamp_(0, 1).contiguous(),
        "masks": renumbered.contiguous(),
        "first_masks": first_masks.contiguous(),
        "valid": valid,
    }
