"""Clip augmentations of the training recipe, applied with parameters drawn from a per-item generator.

A clip is augmented as in XMem's ``vos_dataset.py`` / ``static_dataset.py``: one crop, flip, colour
jitter and grey conversion shared by all frames of the clip; then, per frame, a small affine map
(rotation, shear, zoom), an optional thin-plate-spline warp and a small colour jitter. All geometric
steps are composed into one output → input map per frame, so each frame and its mask are resampled once,
with the same grid (bilinear for the image, nearest for the mask).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from xmem.data.geometry import (
    centred_affine,
    crop_to_output,
    random_tps_offsets,
    sampling_grid,
    warp_image,
    warp_mask,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)


@dataclass(frozen=True)
class ColorJitterRange:
    """Brightness, contrast and saturation factors drawn from [1 − x, 1 + x]; hue shift from [−h, h]
    (torchvision ColorJitter semantics), applied in a random order."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation) < 0 or not 0 <= self.hue <= 0.5:
            raise ValueError(f"invalid colour jitter range: {self}")

    def is_identity(self) -> bool:
        return self.brightness == self.contrast == self.saturation == self.hue == 0


def _jitter_params(rng: np.random.Generator, r: ColorJitterRange) -> tuple[np.ndarray, list[float]]:
    factors = [
        rng.uniform(max(0.0, 1 - r.brightness), 1 + r.brightness),
        rng.uniform(max(0.0, 1 - r.contrast), 1 + r.contrast),
        rng.uniform(max(0.0, 1 - r.saturation), 1 + r.saturation),
        rng.uniform(-r.hue, r.hue),
    ]
    return rng.permutation(4), factors


def _apply_jitter(image: torch.Tensor, order: np.ndarray, factors: list[float]) -> torch.Tensor:
    """``image``: …×3×H×W float in [0, 1]."""
    import torchvision.transforms.v2.functional as TF  # imported here: inference never loads torchvision

    for op in order.tolist():
        f = factors[op]
        if op == 0 and f != 1:
            image = TF.adjust_brightness(image, f)
        elif op == 1 and f != 1:
            image = TF.adjust_contrast(image, f)
        elif op == 2 and f != 1:
            image = TF.adjust_saturation(image, f)
        elif op == 3 and f != 0:
            image = TF.adjust_hue(image, f)
    return image


@dataclass(frozen=True)
class ResizedCrop:
    """torchvision RandomResizedCrop: a box of ``area`` × the image area and aspect ratio drawn
    log-uniformly from ``ratio``, inside the image (the whole image after 10 failed tries)."""

    area: tuple[float, float] = (0.36, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def sample(
        self, rng: np.random.Generator, in_size: tuple[int, int], out_size: tuple[int, int]
    ) -> tuple[float, float, float, float]:
        h, w = in_size
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            area = h * w * rng.uniform(*self.area)
            aspect = math.exp(rng.uniform(*log_ratio))
            bw = round(math.sqrt(area * aspect))
            bh = round(math.sqrt(area / aspect))
            if 0 < bw <= w and 0 < bh <= h:
                return float(rng.integers(0, w - bw + 1)), float(rng.integers(0, h - bh + 1)), bw, bh
        return 0.0, 0.0, float(w), float(h)


@dataclass(frozen=True)
class ZoomCrop:
    """The static-image crop of XMem's stage 0: the largest box of the output's aspect ratio that fits
    the image, shrunk by a zoom factor drawn from ``zoom`` (below 1 the box outgrows the image and the
    outside is filled), at a random position."""

    zoom: tuple[float, float] = (0.8, 1.5)

    def sample(
        self, rng: np.random.Generator, in_size: tuple[int, int], out_size: tuple[int, int]
    ) -> tuple[float, float, float, float]:
        h, w = in_size
        oh, ow = out_size
        scale = min(h / oh, w / ow) / rng.uniform(*self.zoom)
        bw, bh = ow * scale, oh * scale
        x0 = rng.uniform(min(0.0, w - bw), max(0.0, w - bw))
        y0 = rng.uniform(min(0.0, h - bh), max(0.0, h - bh))
        return x0, y0, bw, bh


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation ranges. The defaults are the video augmentations of the XMem recipe; see
    :meth:`static` for stage 0 and :meth:`finetune` for the last 10k iterations (no rotation or shear).

    Per clip: ``crop``, horizontal flip with ``flip_probability``, ``clip_color`` jitter, grey with
    ``grayscale_probability``. Per frame: rotation in ±``rotation`` degrees, shear in ±``shear``
    degrees, zoom in ``scale``; a thin-plate-spline warp with ``tps_probability`` (``tps_points``
    control points moved by ``tps_sigma``); ``frame_color`` jitter. Areas outside the input are
    filled with ``fill`` (the ImageNet mean colour) and are background in the masks.
    """

    crop: ResizedCrop | ZoomCrop = field(default_factory=ResizedCrop)
    flip_probability: float = 0.5
    clip_color: ColorJitterRange = ColorJitterRange(0.1, 0.03, 0.03, 0.0)
    grayscale_probability: float = 0.05
    rotation: float = 15.0
    shear: float = 10.0
    scale: tuple[float, float] = (1.0, 1.0)
    tps_probability: float = 0.0
    tps_points: int = 12
    tps_sigma: float = 0.02
    frame_color: ColorJitterRange = ColorJitterRange(0.01, 0.01, 0.01, 0.0)
    fill: tuple[float, float, float] = IMAGENET_MEAN

    def __post_init__(self) -> None:
        for name in ("flip_probability", "grayscale_probability", "tps_probability"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.rotation < 0 or self.shear < 0 or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"invalid affine ranges: {self}")
        if self.tps_points < 3:
            raise ValueError("a thin-plate spline needs at least 3 control points")

    @classmethod
    def video(cls) -> AugmentConfig:
        """The main-stage augmentations of annotated videos (the default)."""
        return cls()

    @classmethod
    def static(cls) -> AugmentConfig:
        """Stage 0 (static images): zoom crop, stronger per-frame affine and colour, TPS one time in 3."""
        return cls(
            crop=ZoomCrop(),
            clip_color=ColorJitterRange(0.1, 0.05, 0.05, 0.05),
            rotation=20.0,
            shear=10.0,
            scale=(0.9, 1.1),
            tps_probability=0.33,
            frame_color=ColorJitterRange(0.1, 0.05, 0.05, 0.0),
        )

    @classmethod
    def photometric(cls) -> AugmentConfig:
        """Flip and colour only (for clips rendered at the output size, e.g. synthetic composites)."""
        return cls(crop=ResizedCrop(area=(1.0, 1.0), ratio=(1.0, 1.0)), rotation=0.0, shear=0.0)

    def finetune(self) -> AugmentConfig:
        """These augmentations without rotation and shear (the recipe's last 10k iterations)."""
        return replace(self, rotation=0.0, shear=0.0)


class ClipAugmenter:
    """Applies an :class:`AugmentConfig` to a clip, producing frames of ``out_size`` (h, w)."""

    def __init__(self, config: AugmentConfig, out_size: tuple[int, int]) -> None:
        self.config = config
        self.out_size = out_size

    def __call__(
        self,
        rng: np.random.Generator,
        frames: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``frames``: T tensors 3×H×W float in [0, 1], all of one size; ``masks``: T H×W int64 index
        masks. Returns (T×3×h×w float, T×h×w int64). All draws come from ``rng``, in a fixed order."""
        cfg = self.config
        in_size = (frames[0].shape[-2], frames[0].shape[-1])
        box = cfg.crop.sample(rng, in_size, self.out_size)
        flip = bool(rng.random() < cfg.flip_probability)
        clip_order, clip_factors = _jitter_params(rng, cfg.clip_color)
        grey = bool(rng.random() < cfg.grayscale_probability)
        crop = crop_to_output(box, self.out_size, flip=flip)

        out_frames, out_masks = [], []
        for image, mask in zip(frames, masks, strict=True):
            if image.shape[-2:] != frames[0].shape[-2:] or mask.shape != image.shape[-2:]:
                raise ValueError("all frames and masks of a clip must share one size")
            angle = rng.uniform(-cfg.rotation, cfg.rotation)
            shear = rng.uniform(-cfg.shear, cfg.shear)
            zoom = rng.uniform(*cfg.scale)
            offsets = None
            if rng.random() < cfg.tps_probability:
                offsets = random_tps_offsets(
                    rng, self.out_size, num_points=cfg.tps_points, sigma=cfg.tps_sigma
                )
            matrix = crop @ np.linalg.inv(centred_affine(self.out_size, angle=angle, shear=shear, scale=zoom))
            if offsets is None and in_size == self.out_size and np.allclose(matrix, np.eye(3)):
                warped, warped_mask = image, mask  # identity: no resampling
            elif offsets is None and in_size == self.out_size and np.allclose(matrix, _mirror(in_size)):
                warped, warped_mask = image.flip(-1), mask.flip(-1)
            else:
                grid = sampling_grid(matrix, self.out_size, in_size, offsets)
                warped, warped_mask = warp_image(image, grid, cfg.fill), warp_mask(mask, grid)
            frame_order, frame_factors = _jitter_params(rng, cfg.frame_color)
            warped = _apply_jitter(
                _apply_jitter(warped, clip_order, clip_factors), frame_order, frame_factors
            )
            if grey:
                import torchvision.transforms.v2.functional as TF

                warped = TF.rgb_to_grayscale(warped, num_output_channels=3)
            out_frames.append(warped.clamp(0, 1))
            out_masks.append(warped_mask)
        return torch.stack(out_frames), torch.stack(out_masks)


def _mirror(size: tuple[int, int]) -> np.ndarray:
    return crop_to_output((0.0, 0.0, float(size[1]), float(size[0])), size, flip=True)
