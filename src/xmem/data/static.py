"""Stage 0 of the recipe: static images with object masks turned into short "videos" by random warps.

Each frame of a sequence is the same image seen through a shared crop and flip and its own affine map
and (one time in three) thin-plate-spline warp; the mask goes through exactly the same warp. Images come
from a folder of image/mask pairs (the layout of the saliency and few-shot segmentation datasets XMem
uses), or, with nothing downloaded, from :class:`PhotoComposites`: objects of random shape cut from the
bundled photographs and pasted onto other photographs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from xmem.data.augment import AugmentConfig, ClipAugmenter
from xmem.data.sampling import build_sample, select_objects
from xmem.data.seeding import ItemKey, resolve_key, rng_for, tag
from xmem.data.sources import Split
from xmem.data.synthetic import CompositeConfig, CompositeVideo
from xmem.io.errors import InputError
from xmem.io.frames import natural_key, read_rgb

log = logging.getLogger(__name__)

_STATIC_TAG = tag("xmem.data.static.StaticImageDataset")
IMAGE_SUFFIXES = (".jpg", ".jpeg")


class ImageMaskSource(Protocol):
    """Images with index masks: ``load(i)`` gives (H×W×3 uint8 RGB, H×W uint8 ids, 0 = background)."""

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]: ...


def read_object_mask(path: Path) -> np.ndarray:
    """A static-image mask: a palette PNG is read as object ids; any other PNG as one object where its
    grey level is ≥ 128 (the soft-edged 0-255 masks of saliency datasets)."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode == "P":
                return np.array(img)
            return (np.array(img.convert("L")) >= 128).astype(np.uint8)
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable mask ({exc})") from None


class ImageMaskFolder:
    """All ``X.jpg`` (or ``.jpeg``) images under ``root`` (searched recursively) that have a mask
    ``X.png`` beside them, in natural order."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"{self.root}: no such folder of images and masks")
        self.pairs: list[tuple[Path, Path]] = []
        for image in sorted(self.root.rglob("*"), key=lambda p: natural_key(str(p.relative_to(self.root)))):
            if image.suffix.lower() in IMAGE_SUFFIXES and not image.name.startswith("."):
                mask = image.with_suffix(".png")
                if mask.is_file():
                    self.pairs.append((image, mask))
        if not self.pairs:
            raise InputError(f"{self.root}: no image/mask pairs (X.jpg with X.png beside it)")

    def __len__(self) -> int:
        return len(self.pairs)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        image_path, mask_path = self.pairs[index]
        image, mask = read_rgb(image_path), read_object_mask(mask_path)
        if image.shape[:2] != mask.shape:
            raise InputError(
                f"{mask_path}: mask is {mask.shape[1]}×{mask.shape[0]}, image is "
                f"{image.shape[1]}×{image.shape[0]}"
            )
        return image, mask


class PhotoComposites:
    """``items`` still images made of the bundled photographs: frame 0 of composite videos with one
    object (``objects`` for more) over a photograph background, ``size``×``size``; objects are larger
    and more central than in the videos, as in the saliency datasets of stage 0."""

    def __init__(
        self,
        items: int = 10_000,
        *,
        size: int = 384,
        split: Split = Split.TRAIN,
        objects: tuple[int, int] = (1, 1),
    ) -> None:
        self.items = items
        self.config = CompositeConfig(
            height=size,
            width=size,
            length=1,
            objects=objects,
            split=split,
            object_size=(0.4, 0.7),
            scale_change=1.2,
            first_position=(0.3, 0.7),
        )

    def __len__(self) -> int:
        return self.items

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        video = CompositeVideo(self.config, index)
        return video.frame(0), video.mask(0)


@dataclass(frozen=True)
class StaticConfig:
    """Static-image sequences: ``num_frames`` frames of ``size``×``size``, one object (the recipe's stage
    0) or up to ``max_objects`` pasted from other images; objects must cover ``min_object_fraction``
    of frame 0."""

    size: int = 384
    num_frames: int = 3
    max_objects: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig.static)
    min_object_fraction: float = 0.002

    def __post_init__(self) -> None:
        if self.size < 8 or self.num_frames < 1 or self.max_objects < 1:
            raise ValueError(f"invalid static dataset settings: {self}")


class StaticImageDataset(torch.utils.data.Dataset):
    """Sequences made by warping images of ``source``, in the common sample format. Item ``index`` of
    ``epoch`` is determined by (``seed``, epoch, index); it starts from image ``index`` and, for
    several objects, pastes warped objects of other images over it (as XMem's stage 0)."""

    def __init__(self, source: ImageMaskSource, config: StaticConfig | None = None, *, seed: int = 0) -> None:
        self.source = source
        self.config = config if config is not None else StaticConfig()
        if seed < 0:
            raise ValueError("seed must be non-negative")
        self.seed = seed
        self.epoch = 0
        self._augment = ClipAugmenter(self.config.augment, (self.config.size, self.config.size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_max_skip(self, max_skip: int) -> None:
        """Accepted for a uniform interface; static sequences have no frame skip."""

    def __len__(self) -> int:
        return len(self.source)

    def _sequence(self, rng: np.random.Generator, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.source.load(index)
        frame = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255)
        ids = torch.from_numpy(np.array(mask, dtype=np.int64))
        t = self.config.num_frames
        return self._augment(rng, [frame] * t, [ids] * t)

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        cfg = self.config
        index, epoch, _ = resolve_key(key, epoch=self.epoch, max_skip=1, length=len(self))
        rng = rng_for(_STATIC_TAG, self.seed, epoch, index)
        min_pixels = max(1, round(cfg.min_object_fraction * cfg.size * cfg.size))
        first = index
        for _ in range(20):
            extra = int(rng.integers(cfg.max_objects))
            frames, masks = self._sequence(rng, first)
            for _ in range(extra):
                other_frames, other_masks = self._sequence(rng, int(rng.integers(len(self))))
                inside = other_masks > 0  # T×H×W
                frames = torch.where(inside.unsqueeze(1), other_frames, frames)
                masks = torch.where(inside, other_masks + int(masks.max()), masks)
            objects = select_objects(masks[0], rng, max_objects=cfg.max_objects, min_pixels=min_pixels)
            if objects:
                return build_sample(frames, masks, objects, cfg.max_objects)
            first = int(rng.integers(len(self)))  # no usable object: deterministically try another image
        raise InputError(
            f"no image with a visible object found after 20 tries (item {index} of {self.source})"
        )


def photo_static_dataset(
    items: int = 10_000, config: StaticConfig | None = None, *, seed: int = 0, split: Split = Split.TRAIN
) -> StaticImageDataset:
    """A stage-0 dataset that needs no download: the bundled photographs as :class:`PhotoComposites`
    (rendered at 1.25 × the crop size, so the zoom crop has room)."""
    config = config if config is not None else StaticConfig()
    source = PhotoComposites(items, size=round(config.size * 1.25), split=split)
    return StaticImageDataset(source, config, seed=seed)
