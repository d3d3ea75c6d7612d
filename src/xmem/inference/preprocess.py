"""Frame and mask preparation: to tensors, resizing to the processing size, normalisation, padding."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from xmem.model.ops import channel_affine

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_to_tensor(image: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    """An RGB frame as a 3×H×W float tensor in [0, 1] on ``device``.

    Accepts H×W×3 uint8 arrays/tensors (as decoded from files) and 3×H×W float tensors in [0, 1].
    """
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.dtype == torch.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"uint8 images must be H×W×3 (RGB), got shape {tuple(image.shape)}")
        return image.to(device).permute(2, 0, 1).float().div_(255)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"float images must be 3×H×W in [0, 1], got shape {tuple(image.shape)}")
    return image.to(device=device, dtype=torch.float32)


def processing_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the shorter side at ``size`` (-1: unchanged), aspect ratio kept."""
    if size == -1:
        return height, width
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a C×H×W image (antialiased when shrinking, like PIL)."""
    if tuple(image.shape[-2:]) == hw:
        return image
    return F.interpolate(image[None], size=hw, mode="bilinear", align_corners=False, antialias=True)[0]


@functools.cache
def _mean_std(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    # made once per device: on a GPU each new constant would be a host-to-device copy that waits;
    # made outside inference mode, so that they serve autograd code too
    with torch.inference_mode(False):
        mean = torch.tensor(IMAGENET_MEAN, dtype=dtype)[:, None, None].to(device)
        std = torch.tensor(IMAGENET_STD, dtype=dtype)[:, None, None].to(device)
    return mean, std


def normalize(image: torch.Tensor) -> torch.Tensor:
    """ImageNet normalisation of a 3×H×W (or …×3×H×W) image."""
    mean, std = _mean_std(image.device, image.dtype)
    return channel_affine(image, mean.view(3), std.view(3))


def pad_to_multiple(x: torch.Tensor, d: int = 16) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Zero-pad the last two dims to multiples of ``d``; the smaller half goes top/left.
    Returns the padded tensor and (left, right, top, bottom)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % d, (-w) % d
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == 0 and pw == 0:
        return x, pad
    return F.pad(x, pad), pad


def unpad(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]


def resize_index_mask(mask: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an H×W index mask."""
    if tuple(mask.shape[-2:]) == hw:
        return mask
    return F.interpolate(mask[None, None].float(), size=hw, mode="nearest-exact")[0, 0].to(mask.dtype)


def resize_probabilities(prob: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N+1)×H×W probabilities back to the input size."""
    if tuple(prob.shape[-2:]) == hw:
        return prob
    return F.interpolate(prob[None], size=hw, mode="bilinear", align_corners=False)[0]
