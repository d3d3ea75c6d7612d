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
    image = _checked_image(image)
    if image.dtype == torch.uint8:
        return image.to(device).permute(2, 0, 1).float().div_(255)
    return image.to(device=device, dtype=torch.float32)


def image_size(image: np.ndarray | torch.Tensor) -> tuple[int, int]:
    """(H, W) of a frame that :func:`image_to_tensor` accepts."""
    image = _checked_image(image)
    return (
        (image.shape[0], image.shape[1]) if image.dtype == torch.uint8 else (image.shape[1], image.shape[2])
    )


def network_input(
    image: np.ndarray | torch.Tensor,
    hw: tuple[int, int],
    device: torch.device,
    dtype: torch.dtype,
    *,
    channels_last: bool = True,
) -> torch.Tensor:
    """A frame as the network takes it: 1×3×h×w at the processing size ``hw`` (bilinear, antialiased when
    shrinking), ImageNet-normalised, in ``dtype``, stored channels-last unless ``channels_last`` is false.

    ``normalize(resize_image(image_to_tensor(image)))`` up to float rounding, in fewer passes over the frame:
    a uint8 frame is scaled and normalised in one multiply-add that reads the bytes and writes ``dtype``.
    """
    image = _checked_image(image).to(device)
    uint8 = image.dtype == torch.uint8
    h, w = hw
    out = torch.empty(1, h, w, 3, dtype=dtype, device=device)
    mul, add = _normalising_rows(device, w, 1 / 255 if uint8 else 1.0)
    if (image.shape[:2] if uint8 else image.shape[1:]) == hw:
        rows = image if uint8 else image.movedim(0, -1)  # H×W×3
        torch.addcmul(add, rows.reshape(h, w * 3), mul, out=out.view(h, w * 3))
    else:  # the antialiased resize runs fastest on contiguous float planes
        planes = (image.movedim(-1, 0) if uint8 else image).to(
            torch.float32, memory_format=torch.contiguous_format
        )
        resized = resize_image(planes, hw)
        torch.addcmul(add[:3, None, None], resized, mul[:3, None, None], out=out[0].permute(2, 0, 1))
    out = out.permute(0, 3, 1, 2)
    return out if channels_last else out.contiguous()


@functools.cache
def _normalising_rows(device: torch.device, width: int, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    # (x·scale - mean) / std = x·mul + add per channel, tiled along a row of width·3 values
    with torch.inference_mode(False):
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
        mul = (scale / std).float().repeat(width).to(device)
        add = (-mean / std).float().repeat(width).to(device)
    return mul, add


def _checked_image(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if image.dtype == torch.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"uint8 images must be H×W×3 (RGB), got shape {tuple(image.shape)}")
    elif image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"float images must be 3×H×W in [0, 1], got shape {tuple(image.shape)}")
    return image


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
