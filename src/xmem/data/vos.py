"""Annotated videos in the DAVIS / YouTube-VOS folder layout, sampled as in the XMem recipe.

``root/JPEGImages/<video>/<frame>.jpg`` with ``root/Annotations/<video>/<frame>.png`` (palette index
masks); DAVIS's extra resolution level (``JPEGImages/480p``) is found by itself. Only frames that have
an annotation are used: YouTube-VOS annotates every 5th frame, so its frame spacing (detected from the
numeric frame names) divides the max skip, as XMem does (skip 15 → 3 annotated frames).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmem.data.augment import AugmentConfig, ClipAugmenter
from xmem.data.sampling import build_sample, maybe_reverse, sample_frame_indices, select_objects
from xmem.data.seeding import ItemKey, resolve_key, rng_for, tag
from xmem.io.errors import InputError
from xmem.io.frames import natural_key, read_rgb
from xmem.io.masks import read_index_mask

log = logging.getLogger(__name__)

_VOS_TAG = tag("xmem.data.vos.VOSDataset")


@dataclass(frozen=True)
class VOSConfig:
    """Clips of ``num_frames`` frames at ``size``×``size``, frames at most ``max_skip`` apart (the
    initial value; the trainer moves it along the curriculum), time reversed with
    ``reverse_probability``, up to ``max_objects`` objects covering ``min_object_fraction`` of frame 0.
    ``repeats`` lists every video that many times per epoch (the recipe takes DAVIS ×5)."""

    size: int = 384
    num_frames: int = 8
    max_objects: int = 3
    max_skip: int = 5
    reverse_probability: float = 0.5
    repeats: int = 1
    augment: AugmentConfig = field(default_factory=AugmentConfig.video)
    min_object_fraction: float = 0.001
    tries_per_video: int = 5

    def __post_init__(self) -> None:
        if (
            self.size < 8
            or self.num_frames < 1
            or self.max_objects < 1
            or self.max_skip < 1
            or self.repeats < 1
        ):
            raise ValueError(f"invalid video dataset settings: {self}")


@dataclass(frozen=True)
class AnnotatedVideo:
    """One video: its annotated frames (image and mask paths, in order) and the spacing of their
    numbers (1 for DAVIS, 5 for YouTube-VOS)."""

    name: str
    images: tuple[Path, ...]
    masks: tuple[Path, ...]
    stride: int


def _stride(stems: list[str]) -> int:
    if len(stems) < 2 or not all(s.isdigit() for s in stems):
        return 1
    gaps = np.diff([int(s) for s in stems])
    return max(1, int(np.median(gaps)))


def find_videos(root: str | Path, videos: Sequence[str] | None = None) -> list[AnnotatedVideo]:
    """The annotated videos under ``root`` (``JPEGImages`` and ``Annotations``, or their ``480p``
    level), restricted to ``videos`` when given, sorted by name."""
    root = Path(root)
    image_root, mask_root = root / "JPEGImages", root / "Annotations"
    for folder in (image_root, mask_root):
        if not folder.is_dir():
            raise InputError(f"{folder}: missing (expected the DAVIS / YouTube-VOS layout under {root})")
    if (image_root / "480p").is_dir() and (mask_root / "480p").is_dir():
        image_root, mask_root = image_root / "480p", mask_root / "480p"
    names = sorted(p.name for p in image_root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if videos is not None:
        missing = sorted(set(videos) - set(names))
        if missing:
            raise InputError(f"{image_root}: no folder for video(s) {', '.join(missing)}")
        names = [n for n in names if n in set(videos)]
    found = []
    for name in names:
        jpgs = {p.stem: p for p in (image_root / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg")}
        pngs = {p.stem: p for p in (mask_root / name).glob("*.png")} if (mask_root / name).is_dir() else {}
        stems = sorted(set(jpgs) & set(pngs), key=natural_key)
        if not stems:
            log.warning("%s: no frame has both an image and an annotation; skipped", image_root / name)
            continue
        found.append(
            AnnotatedVideo(name, tuple(jpgs[s] for s in stems), tuple(pngs[s] for s in stems), _stride(stems))
        )
    return found


class VOSDataset(torch.utils.data.Dataset):
    """Training clips of annotated videos, in the common sample format (see
    :func:`xmem.data.sampling.build_sample`), with the augmentations of the recipe. Item ``index`` of
    ``epoch`` is determined by (``seed``, epoch, index); videos shorter than ``num_frames`` annotated
    frames are left out."""

    def __init__(
        self,
        root: str | Path,
        config: VOSConfig | None = None,
        *,
        seed: int = 0,
        videos: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.config = config if config is not None else VOSConfig()
        if seed < 0:
            raise ValueError("seed must be non-negative")
        self.seed = seed
        self.epoch = 0
        self.max_skip = self.config.max_skip
        all_videos = find_videos(self.root, videos)
        self.videos = [v for v in all_videos if len(v.images) >= self.config.num_frames]
        if len(self.videos) < len(all_videos):
            log.info(
                "%d of %d videos in %s are shorter than %d frames; left out",
                len(all_videos) - len(self.videos),
                len(all_videos),
                self.root,
                self.config.num_frames,
            )
        if not self.videos:
            raise InputError(f"{self.root}: no annotated video with at least {self.config.num_frames} frames")
        self._augment = ClipAugmenter(self.config.augment, (self.config.size, self.config.size))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_max_skip(self, max_skip: int) -> None:
        self.max_skip = max_skip

    def __len__(self) -> int:
        return len(self.videos) * self.config.repeats

    def _load(
        self, video: AnnotatedVideo, indices: list[int]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        frames, masks = [], []
        for i in indices:
            image = read_rgb(video.images[i])
            mask = read_index_mask(video.masks[i])
            if mask.shape != image.shape[:2]:
                raise InputError(
                    f"{video.masks[i]}: mask is {mask.shape[1]}×{mask.shape[0]}, frame is "
                    f"{image.shape[1]}×{image.shape[0]}"
                )
            if frames and image.shape[:2] != tuple(frames[0].shape[-2:]):
                raise InputError(f"{video.images[i]}: frame size differs from the rest of {video.name}")
            frames.append(torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).div_(255))
            masks.append(torch.from_numpy(mask.astype(np.int64)))
        return frames, masks

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        cfg = self.config
        index, epoch, max_skip = resolve_key(key, epoch=self.epoch, max_skip=self.max_skip, length=len(self))
        rng = rng_for(_VOS_TAG, self.seed, epoch, index)
        min_pixels = max(1, round(cfg.min_object_fraction * cfg.size * cfg.size))
        video = self.videos[index % len(self.videos)]
        tried = []
        for _ in range(5):  # videos
            tried.append(video.name)
            skip = max(1, max_skip // video.stride)
            for _ in range(cfg.tries_per_video):
                indices = sample_frame_indices(rng, len(video.images), cfg.num_frames, skip)
                indices = maybe_reverse(rng, indices, cfg.reverse_probability)
                frames, masks = self._augment(rng, *self._load(video, indices))
                objects = select_objects(masks[0], rng, max_objects=cfg.max_objects, min_pixels=min_pixels)
                if objects:
                    return build_sample(frames, masks, objects, cfg.max_objects)
            video = self.videos[int(rng.integers(len(self.videos)))]  # deterministically try another video
        raise InputError(
            f"{self.root}: no clip with an object of at least {min_pixels} pixels in frame 0 "
            f"(videos tried: {', '.join(tried)})"
        )
