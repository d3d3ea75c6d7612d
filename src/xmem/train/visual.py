"""Pictures of training clips for TensorBoard: ground truth above, predictions below."""

from __future__ import annotations

import numpy as np
import torch

from xmem.io.masks import DAVIS_PALETTE


def blend(frame: torch.Tensor, mask: torch.Tensor, alpha: float = 0.5) -> np.ndarray:
    """``frame`` 3×H×W in [0, 1], ``mask`` H×W index mask -> H×W×3 uint8 with coloured objects."""
    rgb = (frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.float32)
    m = mask.numpy().astype(np.int64)
    colour = DAVIS_PALETTE[m].astype(np.float32)
    out = np.where((m > 0)[..., None], (1 - alpha) * rgb + alpha * colour, rgb)
    return out.astype(np.uint8)


def clip_panel(frames: torch.Tensor, masks: torch.Tensor, probs: list[torch.Tensor]) -> np.ndarray:
    """``frames`` T×3×H×W, ``masks`` T×H×W, ``probs`` (T-1)×[O×H×W] object probabilities of frames 1..T-1
    -> (2H)×(T·W)×3 uint8: ground truth on top, the predicted argmax below (frame 0: its given mask)."""
    top = [blend(f, m) for f, m in zip(frames, masks, strict=True)]
    bottom = [top[0]]
    for f, p in zip(frames[1:], probs, strict=True):
        background = 1 - p.sum(dim=0)  # aggregated probabilities: the background takes the rest
        index = torch.cat([background[None], p]).argmax(dim=0)
        bottom.append(blend(f, index))
    return np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
