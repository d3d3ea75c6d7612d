"""Synthetic composite videos made from real photographs, of any length, deterministic from a seed.

A :class:`CompositeVideo` pastes 1-3 (or more) objects, each a random smooth shape cut from a real
photograph, over a background (another photograph seen through a slowly panning and zooming window, or a
real video clip). Each object moves along a smooth random trajectory: translation, rotation and scale
change, passing in front of or behind the others, leaving the frame and coming back. Frame t is computed
on demand from the trajectories (Catmull-Rom splines through random keyframes, each keyframe drawn from
its own generator), so a 10,000-frame video costs no more memory than a 10-frame one.

:class:`CompositeClipDataset` samples short training clips from such videos in the common sample format.
Photographs and background videos come from one side of a fixed split (:mod:`xmem.data.sources`), and
every random key carries the split, so held-out videos share neither images nor randomness with training.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from xmem.data.augment import AugmentConfig, ClipAugmenter
from xmem.data.geometry import sampling_grid, translation
from xmem.data.sampling import build_sample, maybe_reverse, sample_frame_indices, select_objects
from xmem.data.seeding import ItemKey, resolve_key, rng_for, tag
from xmem.data.shapes import random_shape
from xmem.data.sources import Photograph, Split, VideoFrames, load_photograph, photographs
from xmem.io.atomic import atomic_write
from xmem.io.masks import write_index_mask

_VIDEO_TAG = tag("xmem.data.synthetic.CompositeVideo")
_CLIP_TAG = tag("xmem.data.synthetic.CompositeClipDataset")
_MAX_SPRITE = 512


@dataclass(frozen=True)
class CompositeConfig:
    """How composite videos look. Sizes in pixels; ``object_size`` is the side of an object's square
    (its shape fills part of it) at scale 1, as a fraction of the frame's shorter side.

    Trajectories pass through random keyframes every ``keyframe_interval`` frames (a range; one value
    per object): position anywhere in the inner 80 % of the frame, or, with ``exit_probability``, fully
    outside the frame (the object leaves and later comes back); rotation within ±``rotation`` degrees;
    scale within [1/``scale_change``, ``scale_change``]. At frame 0 object centres lie within
    ``first_position`` (fractions of the frame size) and every object shows at least ``min_visible`` of
    its area. The background is a photograph, or with ``video_probability`` one of
    ``background_videos`` (needs PyAV), seen through a window zooming within ``background_zoom`` and
    panning through keyframes every ``background_interval`` frames.
    """

    height: int = 384
    width: int = 384
    length: int = 200
    objects: tuple[int, int] = (1, 3)
    split: Split = Split.TRAIN
    object_size: tuple[float, float] = (0.3, 0.55)
    scale_change: float = 1.5
    rotation: float = 60.0
    keyframe_interval: tuple[int, int] = (25, 75)
    exit_probability: float = 0.15
    background_zoom: tuple[float, float] = (1.0, 1.5)
    background_interval: tuple[int, int] = (60, 180)
    background_videos: tuple[Path, ...] = ()
    video_probability: float = 0.5
    min_visible: float = 0.4
    first_position: tuple[float, float] = (0.1, 0.9)

    def __post_init__(self) -> None:
        if self.height < 8 or self.width < 8 or self.length < 1:
            raise ValueError(f"invalid composite video size: {self.height}×{self.width}×{self.length}")
        if not 1 <= self.objects[0] <= self.objects[1]:
            raise ValueError(f"objects must be a range 1 ≤ low ≤ high: {self.objects}")
        if not 0 < self.object_size[0] <= self.object_size[1] or self.scale_change < 1:
            raise ValueError("invalid object size range")
        if not 1 <= self.keyframe_interval[0] <= self.keyframe_interval[1]:
            raise ValueError("invalid keyframe interval range")
        if not 1 <= self.background_interval[0] <= self.background_interval[1]:
            raise ValueError("invalid background interval range")
        if not 1 <= self.background_zoom[0] <= self.background_zoom[1]:
            raise ValueError("background zoom must be a range of factors ≥ 1")
        if not 0.0 <= self.first_position[0] <= self.first_position[1] <= 1.0:
            raise ValueError("first_position must be a range of fractions of the frame size")
        for name in ("exit_probability", "video_probability", "min_visible"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")


def _catmull_rom(p: np.ndarray, f: float) -> np.ndarray:
    """The Catmull-Rom spline through p[1] (f = 0) and p[2] (f = 1); ``p``: 4×D keyframe values."""
    p0, p1, p2, p3 = p
    return 0.5 * (
        2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2 + (3 * p1 - p0 - 3 * p2 + p3) * f**3
    )


def _to_float(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 → 3×H×W float in [0, 1]."""
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255)


def _textured_crop(rng: np.random.Generator, photo: np.ndarray, size: int) -> torch.Tensor:
    """A square region of ``photo`` resampled to 3×size×size: of 4 random candidates, the one with the
    most texture (mean absolute gradient), so objects rarely are flat sky."""
    h, w = photo.shape[:2]
    best, best_energy = None, -1.0
    for _ in range(4):
        side = int(rng.uniform(0.3, 0.75) * min(h, w))
        x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
        crop = photo[y0 : y0 + side, x0 : x0 + side]
        grey = crop[::4, ::4].astype(np.float32).mean(axis=2)
        energy = float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())
        if energy > best_energy:
            best, best_energy = crop, energy
    texture = _to_float(best)
    return F.interpolate(
        texture[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0]


@dataclass
class _Object:
    """One moving object: its sprite (texture and shape) and the key of its trajectory keyframes."""

    sprite: torch.Tensor  # 4×S×S: RGB in [0, 1], then the shape mask (0/1)
    side: float  # rendered side of the sprite at scale 1, output pixels
    interval: int  # frames between keyframes
    key: tuple[int, ...]
    source: str
    attempt: int = 0


class RenderedVideo:
    """A video whose frames are drawn on demand, frame t by ``_draw(t)``, the last one kept. Subclasses
    set ``config`` (with ``length``, ``height``, ``width``) and define ``_draw`` and ``num_objects``.

    ``frame(t)`` (H×W×3 uint8) and ``mask(t)`` (H×W uint8 ids) suit the inference API; ``render(t)``
    gives float tensors for training; iteration yields (frame, mask) pairs.
    """

    _cache: tuple[int, torch.Tensor, torch.Tensor] | None = None  # (t, frame, mask) of the last frame drawn

    def _draw(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame t as (3×H×W float RGB in [0, 1], H×W int64 ids), new tensors."""
        raise NotImplementedError

    @property
    def num_objects(self) -> int:
        raise NotImplementedError

    def render(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame t as (3×H×W float RGB in [0, 1], H×W int64 object ids), fresh tensors."""
        frame, mask = self._render(t)
        return frame.clone(), mask.clone()

    def _render(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Draws frame t, or returns the cached last one (not to be modified).
        if not 0 <= t < len(self):
            raise IndexError(f"frame {t} of a {len(self)}-frame video")
        if self._cache is None or self._cache[0] != t:
            self._cache = (t, *self._draw(t))
        return self._cache[1], self._cache[2]

    def frame(self, t: int) -> np.ndarray:
        """Frame t as an H×W×3 uint8 RGB array."""
        image = self._render(t)[0]
        return (image * 255 + 0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()

    def mask(self, t: int) -> np.ndarray:
        """The index mask of frame t, H×W uint8 (0 background, object ids 1..n)."""
        return self._render(t)[1].to(torch.uint8).numpy()

    def __len__(self) -> int:
        return self.config.length

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for t in range(len(self)):
            yield self.frame(t), self.mask(t)

    def frames(self) -> Iterator[np.ndarray]:
        """The frames in order (H×W×3 uint8), e.g. for :meth:`xmem.VideoSegmenter.propagate`."""
        for t in range(len(self)):
            yield self.frame(t)


class CompositeVideo(RenderedVideo):
    """A synthetic video of ``config.length`` frames, frame t rendered on demand; deterministic from
    ``seed`` (and the split of ``config``). Object ids are 1..``num_objects`` (0 = background); every
    object is visible in frame 0.

    ``frame(t)`` (H×W×3 uint8) and ``mask(t)`` (H×W uint8 ids) suit the inference API; ``render(t)``
    gives float tensors for training; iteration yields (frame, mask) pairs.
    """

    def __init__(self, config: CompositeConfig, seed: int) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.config = config
        self.seed = seed
        cfg = config
        self._key = (_VIDEO_TAG, cfg.split.code, seed)
        rng = rng_for(*self._key)
        pool = photographs(cfg.split)
        n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
        use_video = bool(cfg.background_videos) and rng.random() < cfg.video_probability
        short = min(cfg.height, cfg.width)

        # Background: a photograph or a video, behind a panning / zooming window.
        background_photo: Photograph | None = None
        if use_video:
            path = cfg.background_videos[int(rng.integers(len(cfg.background_videos)))]
            self._video: VideoFrames | None = VideoFrames(path)
            self._video_start = int(rng.integers(len(self._video)))
            self._background: torch.Tensor | None = None
            background_name = Path(path).name
            source_size = (self._video.index.height, self._video.index.width)
        else:
            background_photo = pool[int(rng.integers(len(pool)))]
            image = load_photograph(background_photo)
            self._video, self._video_start = None, 0
            self._background = _to_float(image[:, ::-1] if rng.random() < 0.5 else image)
            background_name = background_photo.name
            source_size = image.shape[:2]
        self._source_size = source_size
        self._background_interval = int(
            rng.integers(cfg.background_interval[0], cfg.background_interval[1] + 1)
        )

        # Objects: photographs other than the background's, one random shape each.
        others = [p for p in pool if p is not background_photo]
        picks = rng.choice(len(others), size=n, replace=n > len(others))
        self._objects: list[_Object] = []
        for i, pick in enumerate(picks.tolist()):
            photo = others[pick]
            side = rng.uniform(*cfg.object_size) * short
            size = int(min(_MAX_SPRITE, max(16, math.ceil(side * cfg.scale_change))))
            texture = _textured_crop(rng, load_photograph(photo), size)
            shape = torch.from_numpy(random_shape(rng, size)).float()[None]
            interval = int(rng.integers(cfg.keyframe_interval[0], cfg.keyframe_interval[1] + 1))
            self._objects.append(
                _Object(torch.cat([texture, shape]), side, interval, (*self._key, i + 1), photo.name)
            )
        self._depth = rng.permutation(n).tolist()  # back to front
        self.sources: tuple[str, ...] = (background_name, *(o.source for o in self._objects))
        self._place_first_frame()

    # --- trajectories -----------------------------------------------------------------------------

    def _keyframe(self, obj: _Object, k: int) -> np.ndarray:
        """(x, y, angle, log scale) of keyframe ``k`` ≥ −1 of ``obj``."""
        cfg = self.config
        rng = rng_for(*obj.key, k + 1, obj.attempt if k == 0 else 0)
        log_scale = rng.uniform(-math.log(cfg.scale_change), math.log(cfg.scale_change))
        angle = rng.uniform(-cfg.rotation, cfg.rotation)
        leaves = rng.random() < cfg.exit_probability and k != 0
        side_of_frame, along = int(rng.integers(4)), rng.uniform(0.0, 1.0)
        low, high = cfg.first_position if k == 0 else (0.1, 0.9)
        x, y = rng.uniform(low, high) * cfg.width, rng.uniform(low, high) * cfg.height
        if leaves:
            # Beyond the half-diagonal of the rotated square: the whole object is outside.
            r = obj.side * math.exp(log_scale) * math.sqrt(0.5) + 2.0
            if side_of_frame == 0:
                x, y = -r, along * cfg.height
            elif side_of_frame == 1:
                x, y = cfg.width + r, along * cfg.height
            elif side_of_frame == 2:
                x, y = along * cfg.width, -r
            else:
                x, y = along * cfg.width, cfg.height + r
        return np.array([x, y, angle, log_scale])

    def _object_state(self, obj: _Object, t: int) -> np.ndarray:
        u = t / obj.interval
        k = math.floor(u)
        points = np.stack([self._keyframe(obj, j) for j in range(k - 1, k + 3)])
        return _catmull_rom(points, u - k)

    def _background_view(self, t: int) -> np.ndarray:
        """3×3 map from output pixels to background-source pixels at frame t."""
        cfg = self.config
        u = t / self._background_interval
        k = math.floor(u)
        keys = []
        for j in range(k - 1, k + 3):
            rng = rng_for(*self._key, 0, j + 1)
            keys.append([rng.uniform(0, 1), rng.uniform(0, 1), math.log(rng.uniform(*cfg.background_zoom))])
        cx_frac, cy_frac, log_zoom = _catmull_rom(np.array(keys), u - k)
        sh, sw = self._source_size
        pixel = min(sh / cfg.height, sw / cfg.width) / math.exp(max(0.0, log_zoom))  # source px per output px
        bw, bh = cfg.width * pixel, cfg.height * pixel
        x0 = float(np.clip(cx_frac, 0, 1)) * (sw - bw)
        y0 = float(np.clip(cy_frac, 0, 1)) * (sh - bh)
        return np.array([[pixel, 0.0, x0], [0.0, pixel, y0], [0.0, 0.0, 1.0]])

    def _place_first_frame(self) -> None:
        """Redraw the frame-0 keyframes until every object shows ``min_visible`` of its area (20 tries;
        then the best layout, once every object shows some of its area)."""
        best_attempt, best_score = 0, -1.0
        for attempt in range(200):
            if attempt >= 20 and best_score > 0:
                break
            for obj in self._objects:
                obj.attempt = attempt
            amodal = self.amodal_masks(0)
            areas = amodal.flatten(1).sum(1).float()
            visible = torch.zeros_like(areas)
            taken = torch.zeros_like(amodal[0])
            for i in reversed(self._depth):  # front to back
                visible[i] = (amodal[i] & ~taken).sum()
                taken |= amodal[i]
            score = float((visible / areas.clamp_min(1)).min()) if bool((areas > 0).all()) else 0.0
            if score > best_score:
                best_attempt, best_score = attempt, score
            if score >= self.config.min_visible:
                break
        for obj in self._objects:
            obj.attempt = best_attempt

    # --- rendering --------------------------------------------------------------------------------

    def _sprite_window(self, obj: _Object, t: int) -> tuple[torch.Tensor, int, int] | None:
        """The sprite resampled over its bounding box at frame t: (4×h×w, x0, y0), None if off-frame."""
        cfg = self.config
        x, y, angle, log_scale = self._object_state(obj, t)
        side = obj.side * math.exp(log_scale)
        r = side * math.sqrt(0.5) + 1
        x0, x1 = max(0, math.floor(x - r)), min(cfg.width, math.ceil(x + r))
        y0, y1 = max(0, math.floor(y - r)), min(cfg.height, math.ceil(y + r))
        if x0 >= x1 or y0 >= y1:
            return None
        size = obj.sprite.shape[-1]
        a = math.radians(angle)
        c, s = math.cos(a), math.sin(a)
        k = size / side
        # output pixel p → sprite pixel: rotate by −angle about the object centre, rescale, recentre
        to_sprite = (
            translation(size / 2, size / 2)
            @ np.array([[k * c, k * s, 0.0], [-k * s, k * c, 0.0], [0.0, 0.0, 1.0]])
            @ translation(-x, -y)
        )
        grid = sampling_grid(to_sprite @ translation(x0, y0), (y1 - y0, x1 - x0), (size, size))
        window = F.grid_sample(
            obj.sprite[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )[0]
        return window, x0, y0

    def _background_frame(self, t: int) -> torch.Tensor:
        cfg = self.config
        if self._video is not None:
            source = _to_float(self._video[(self._video_start + t) % len(self._video)])
        else:
            source = self._background
        grid = sampling_grid(self._background_view(t), (cfg.height, cfg.width), self._source_size)
        return F.grid_sample(source[None], grid, mode="bilinear", padding_mode="border", align_corners=False)[
            0
        ]

    def _draw(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        frame = self._background_frame(t)
        mask = torch.zeros(self.config.height, self.config.width, dtype=torch.int64)
        for i in self._depth:  # back to front
            placed = self._sprite_window(self._objects[i], t)
            if placed is None:
                continue
            window, x0, y0 = placed
            h, w = window.shape[-2:]
            inside = window[3] > 0.5  # h×w
            region = frame[:, y0 : y0 + h, x0 : x0 + w]
            region.copy_(torch.where(inside, window[:3], region))
            mask[y0 : y0 + h, x0 : x0 + w][inside] = i + 1
        return frame, mask

    def amodal_masks(self, t: int) -> torch.Tensor:
        """n×H×W bool: the whole extent of each object at frame t, occluded parts included (empty when
        the object is outside the frame)."""
        cfg = self.config
        out = torch.zeros(len(self._objects), cfg.height, cfg.width, dtype=torch.bool)
        for i, obj in enumerate(self._objects):
            placed = self._sprite_window(obj, t)
            if placed is not None:
                window, x0, y0 = placed
                h, w = window.shape[-2:]
                out[i, y0 : y0 + h, x0 : x0 + w] = window[3] > 0.5
        return out

    @property
    def num_objects(self) -> int:
        return len(self._objects)


VALIDATION_FIRST_SEED = 1_000_000  # validation videos during training: held-out seeds from here on


def held_out_videos(
    count: int, config: CompositeConfig | None = None, *, first_seed: int = 0
) -> list[CompositeVideo]:
    """The evaluation videos: seeds ``first_seed`` .. ``first_seed + count − 1`` of the HELD_OUT split
    (``config``'s other settings, its split forced to HELD_OUT). Their photographs, background videos and
    random streams are never used in training. The benchmarks use seeds from 0; validation during
    training uses seeds from :data:`VALIDATION_FIRST_SEED`, so that choosing the best weights never looks
    at the benchmark's videos."""
    base = config if config is not None else CompositeConfig()
    if base.split is not Split.HELD_OUT:
        base = replace(base, split=Split.HELD_OUT)
    return [CompositeVideo(base, seed) for seed in range(first_seed, first_seed + count)]


def write_davis_folder(video: CompositeVideo, root: str | Path, name: str, *, quality: int = 95) -> Path:
    """Write ``video`` in the DAVIS layout: ``root/JPEGImages/<name>/00000.jpg`` … and
    ``root/Annotations/<name>/00000.png`` … (palette index masks), every file atomically. Returns the
    root."""
    root = Path(root)
    images, annotations = root / "JPEGImages" / name, root / "Annotations" / name
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    for t, (frame, mask) in enumerate(video):
        with atomic_write(images / f"{t:05d}.jpg") as f:
            Image.fromarray(frame).save(f, format="JPEG", quality=quality)
        write_index_mask(annotations / f"{t:05d}.png", mask)
    return root


# --- the training dataset -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompositeClipConfig:
    """Training clips from composite videos: ``num_frames`` frames at most ``max_skip`` apart (the
    dataset's initial value; see :class:`~xmem.data.curriculum.SkipCurriculum`), time reversed with
    ``reverse_probability``, up to ``max_objects`` objects with at least ``min_object_fraction`` of the
    frame in frame 0. ``video`` sets the frame size (the crop size) and the look of the videos;
    ``items`` is the length of an epoch."""

    video: CompositeConfig = field(default_factory=lambda: CompositeConfig(length=1000))
    num_frames: int = 8
    max_objects: int = 3
    max_skip: int = 5
    reverse_probability: float = 0.5
    augment: AugmentConfig | None = field(default_factory=AugmentConfig.photometric)
    min_object_fraction: float = 0.002
    items: int = 10_000

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.max_objects < 1 or self.max_skip < 1 or self.items < 1:
            raise ValueError(f"invalid clip settings: {self}")
        if self.video.length < self.num_frames:
            raise ValueError(f"the videos must be at least num_frames ({self.num_frames}) long")


class CompositeClipDataset(torch.utils.data.Dataset):
    """Training clips cut from fresh composite videos, in the common sample format (see
    :func:`xmem.data.sampling.build_sample`). Item ``index`` of ``epoch`` is determined by
    (split, ``seed``, epoch, index): look items up by :class:`~xmem.data.seeding.ItemKey`, or by plain
    index after :meth:`set_epoch` / :meth:`set_max_skip`."""

    def __init__(self, config: CompositeClipConfig | None = None, *, seed: int = 0) -> None:
        self.config = config if config is not None else CompositeClipConfig()
        if seed < 0:
            raise ValueError("seed must be non-negative")
        self.seed = seed
        self.epoch = 0
        self.max_skip = self.config.max_skip
        video = self.config.video
        self._augment = (
            ClipAugmenter(self.config.augment, (video.height, video.width)) if self.config.augment else None
        )

    _kind = "composite"
    _tag = _CLIP_TAG

    def _video(self, seed: int):
        """The video a clip is cut from (subclasses make other kinds)."""
        return CompositeVideo(self.config.video, seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_max_skip(self, max_skip: int) -> None:
        self.max_skip = max_skip

    def __len__(self) -> int:
        return self.config.items

    def __getitem__(self, key: int | ItemKey) -> dict[str, torch.Tensor]:
        cfg = self.config
        index, epoch, max_skip = resolve_key(key, epoch=self.epoch, max_skip=self.max_skip, length=len(self))
        rng = rng_for(self._tag, cfg.video.split.code, self.seed, epoch, index)
        min_pixels = max(1, round(cfg.min_object_fraction * cfg.video.height * cfg.video.width))
        for _ in range(50):
            video = self._video(int(rng.integers(2**62)))
            times = sample_frame_indices(rng, len(video), cfg.num_frames, max_skip)
            times = maybe_reverse(rng, times, cfg.reverse_probability)
            rendered = {t: video.render(t) for t in sorted(times)}  # in time order: sequential decoding
            frames = [rendered[t][0] for t in times]
            masks = [rendered[t][1] for t in times]
            if self._augment is not None:
                frames_t, masks_t = self._augment(rng, frames, masks)
            else:
                frames_t, masks_t = torch.stack(frames), torch.stack(masks)
            objects = select_objects(masks_t[0], rng, max_objects=cfg.max_objects, min_pixels=min_pixels)
            if objects:
                break
        else:  # pragma: no cover - frame-0 placement makes this practically impossible
            raise RuntimeError(f"no {self._kind} clip with a visible object in 50 tries")
        return build_sample(frames_t, masks_t, objects, cfg.max_objects)
