"""Scenes like real footage: real objects moving through a real photograph seen by a camera.

A :class:`RealSceneVideo` films a still photograph (a wallpaper, a street, a room) with a camera that
stands still or pans and zooms slowly, and moves objects through it: objects cut out of real photographs
(:mod:`xmem.data.cutouts`), photographed stamps (:mod:`xmem.data.realphotos`) or, where neither is
installed, random shapes textured from the photographs; a third of them are people where the library has
people. What makes it look like the clips the default model fails on:

- object sizes from ``object_area[0]`` to ``object_area[1]`` of the frame (0.5 % to 50 %), log-uniform;
- look-alikes: unlabelled copies of a tracked object's appearance (a crowd of similar people), and a crowd
  of other unlabelled objects; sometimes two tracked objects share one appearance;
- walking trajectories with momentum, in world coordinates, so that a panning camera moves everything;
  objects leave the frame and come back; nearer objects (lower in the frame) pass in front, and in half
  the videos grow as they walk down the frame (perspective);
- foreground structures cut from the background photograph itself (a pillar, a railing, a block) that stay
  in front of every object: the objects pass behind parts of the real scene;
- motion blur of fast objects (sub-frame renders averaged) and of a fast camera (the background smeared
  along its motion), soft edges, brightness matched partly to the scene, sensor noise.

No video file is ever read (the real benchmark's clips and OpenCV's ``vtest.avi`` stay out of training):
:func:`resolved_sources` lists every photograph, cut-out and stamp a config can read, and the tests check it.
Frame t is rendered on demand and deterministically from (split, seed).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xmem.data.cutouts import available_cutouts, load_cutout
from xmem.data.geometry import sampling_grid
from xmem.data.realphotos import PhotoKind, available_photos, load_package_photo
from xmem.data.seeding import rng_for, tag
from xmem.data.shapes import random_shape
from xmem.data.sources import Split, load_photograph, photographs
from xmem.data.synthetic import CompositeClipConfig, CompositeClipDataset, RenderedVideo

_VIDEO_TAG = tag("xmem.data.real_scenes.RealSceneVideo")
_CLIP_TAG = tag("xmem.data.real_scenes.RealSceneClipDataset")

# Never read by the real-scene data: the real benchmark's clips and the independent check (vtest.avi).
EXCLUDED_VIDEOS = frozenset(
    {"bikes.mp4", "carphone_pristine.mp4", "bigbuckbunny.mp4", "cup.mp4", "tree.avi", "Megamind.avi",
     "Megamind_bugy.avi", "vtest.avi"}
)  # fmt: skip


@dataclass(frozen=True)
class RealSceneConfig:
    """How real-scene videos look. Areas are fractions of the frame; speeds are fractions of the frame's
    diagonal per frame; ``photo_cache``: where ``benchmarks/install_real_photos.py`` put the photographs
    (None: ``$XMEM_PHOTO_CACHE`` or ``~/.cache/xmem/photos``)."""

    height: int = 384
    width: int = 384
    length: int = 300
    split: Split = Split.TRAIN
    tracked: tuple[int, int] = (1, 3)
    object_area: tuple[float, float] = (0.005, 0.5)
    # look-alikes: unlabelled copies of one tracked object's appearance, in this share of the videos
    lookalike_probability: float = 0.6
    lookalikes: tuple[int, int] = (1, 4)
    tracked_twins_probability: float = 0.2  # two tracked objects with one appearance
    crowd: tuple[int, int] = (0, 5)  # other unlabelled objects
    distractor_scale: tuple[float, float] = (0.6, 1.4)  # their size relative to a tracked object's
    speed: tuple[float, float] = (0.002, 0.015)
    keyframe_interval: tuple[int, int] = (15, 45)
    exit_probability: float = 0.35  # a tracked object leaves the frame and comes back (per object)
    always_exit: bool = False  # tracked object 1 always leaves and comes back (for tests and inspection)
    static_camera_probability: float = 0.4
    camera_interval: tuple[int, int] = (40, 120)
    camera_zoom: tuple[float, float] = (1.0, 1.8)
    occluder_probability: float = 0.6
    occluders: tuple[int, int] = (1, 2)
    perspective_probability: float = 0.5  # objects grow as they walk down the frame (nearer)
    motion_blur: bool = True
    blur_samples: int = 3
    exposure: tuple[float, float] = (0.3, 1.0)  # shutter open, fraction of the frame interval
    light_match: tuple[float, float] = (0.0, 0.5)  # how far an object's brightness moves to the scene's
    noise: tuple[float, float] = (0.0, 0.02)
    min_visible: float = 0.5  # every tracked object shows this share of itself in frame 0
    # Where the objects come from (falls back to the next when a kind is not installed): the weights of
    # cut-outs, stamps and random textured shapes.
    source_weights: tuple[float, float, float] = (0.45, 0.5, 0.05)
    # a person (a cut-out or a photographed stamp of one) for a tracked object or a crowd member, when the
    # library has people: scenes like a street camera's
    person_probability: float = 0.35
    max_distractor_area: float = 0.25  # look-alikes and crowd members are at most this share of the frame
    photo_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16 or self.length < 2:
            raise ValueError(f"invalid real-scene video size: {self.height}×{self.width}×{self.length}")
        for name in ("tracked", "lookalikes", "crowd", "occluders", "keyframe_interval", "camera_interval"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be a range 0 ≤ low ≤ high: {(lo, hi)}")
        if self.tracked[0] < 1 or self.keyframe_interval[0] < 1 or self.camera_interval[0] < 1:
            raise ValueError("tracked, keyframe_interval and camera_interval ranges start at 1 or more")
        if not 0 < self.object_area[0] <= self.object_area[1] <= 1:
            raise ValueError(f"object_area must be fractions 0 < low ≤ high ≤ 1: {self.object_area}")
        if not 1 <= self.camera_zoom[0] <= self.camera_zoom[1]:
            raise ValueError("camera_zoom must be a range of factors ≥ 1")
        for name in (
            "lookalike_probability", "tracked_twins_probability", "exit_probability",
            "static_camera_probability", "occluder_probability", "min_visible", "person_probability",
            "perspective_probability",
        ):  # fmt: skip
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.blur_samples < 1 or min(self.source_weights) < 0 or sum(self.source_weights) <= 0:
            raise ValueError("blur_samples must be ≥ 1 and source_weights non-negative, not all zero")


# --- what scenes are made of ----------------------------------------------------------------------


@dataclass(frozen=True)
class Appearance:
    """An object's look: ``load()`` gives h×w×4 uint8 RGBA (alpha 0 / 255 = its shape)."""

    name: str
    kind: str  # "cutout:<kind>", "stamp:<category>" or "shape"
    load: Callable[[], np.ndarray] = field(compare=False, repr=False)

    @property
    def person(self) -> bool:
        return self.kind == "cutout:person" or (
            self.kind.startswith("stamp:") and any(w in self.name for w in _PERSON_STAMPS)
        )


_PERSON_STAMPS = ("fireman", "paratrooper", "final-roll-call", "spacewalk")


@dataclass(frozen=True)
class Backdrop:
    """A background photograph: ``load()`` gives H×W×3 uint8 RGB."""

    name: str
    load: Callable[[], np.ndarray] = field(compare=False, repr=False)


@dataclass(frozen=True)
class SceneLibrary:
    """The backgrounds and object appearances of one side of the split. ``cutouts`` and ``stamps`` may be
    empty; random shapes are textured from ``backgrounds``."""

    backgrounds: tuple[Backdrop, ...]
    cutouts: tuple[Appearance, ...] = ()
    stamps: tuple[Appearance, ...] = ()

    def __post_init__(self) -> None:
        if not self.backgrounds:
            raise ValueError("a scene library needs at least one background photograph")


# wheel photographs that show no scene (a microscope slide, the deep sky, coins on black): no backgrounds
NOT_SCENES = frozenset({"immunohistochemistry", "hubble_deep_field", "coins"})


@functools.lru_cache(maxsize=4)
def scene_library(split: Split, cache: Path | None = None) -> SceneLibrary:
    """Everything installed for ``split``: the scene photographs of the manifest and the wheels'
    photographs as backgrounds, the cut-outs whose photograph is present, the stamps."""
    backgrounds = [
        Backdrop(p.name, functools.partial(load_photograph, p))
        for p in photographs(split)
        if p.name not in NOT_SCENES
    ]
    backgrounds += [
        Backdrop(p.name, functools.partial(load_package_photo, p, cache))
        for p in available_photos(split, PhotoKind.SCENE, cache)
    ]
    cutouts = tuple(
        Appearance(c.name, f"cutout:{c.kind.value}", functools.partial(load_cutout, c, cache))
        for c in available_cutouts(split, cache)
    )
    stamps = tuple(
        Appearance(p.name, f"stamp:{p.category}", functools.partial(load_package_photo, p, cache))
        for p in available_photos(split, PhotoKind.STAMP, cache)
    )
    return SceneLibrary(tuple(backgrounds), cutouts, stamps)


def resolved_sources(config: RealSceneConfig, library: SceneLibrary | None = None) -> tuple[str, ...]:
    """The names of every photograph, cut-out and stamp that videos of ``config`` can read (the
    library's content; no video file is among them)."""
    lib = library if library is not None else scene_library(config.split, config.photo_cache)
    return tuple(b.name for b in lib.backgrounds) + tuple(a.name for a in lib.cutouts + lib.stamps)


# --- helpers ----------------------------------------------------------------------------------------


def _catmull_rom(p: np.ndarray, f: float) -> np.ndarray:
    p0, p1, p2, p3 = p
    return 0.5 * (
        2 * p1 + (p2 - p0) * f + (2 * p0 - 5 * p1 + 4 * p2 - p3) * f**2 + (3 * p1 - p0 - 3 * p2 + p3) * f**3
    )


def _spline(keys: np.ndarray, interval: int, t: float) -> np.ndarray:
    """The Catmull-Rom curve through ``keys`` (K×D, one every ``interval`` frames) at time ``t``."""
    u = t / interval
    k = min(max(math.floor(u), 0), len(keys) - 2)
    idx = [min(max(j, 0), len(keys) - 1) for j in range(k - 1, k + 3)]
    return _catmull_rom(keys[idx], u - k)


def _shifted(image: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """``image`` (C×H×W) moved by (dx, dy) whole pixels, the edges repeated."""
    if dx == 0 and dy == 0:
        return image
    h, w = image.shape[-2:]
    px, py = min(abs(dx), w - 1), min(abs(dy), h - 1)
    padded = F.pad(image[None], (px, px, py, py), mode="replicate")[0]
    x0, y0 = px - int(np.clip(dx, -px, px)), py - int(np.clip(dy, -py, py))
    return padded[:, y0 : y0 + h, x0 : x0 + w]


def _rgba_tensor(rgba: np.ndarray, max_side: int) -> tuple[torch.Tensor, float]:
    """h×w×4 uint8 → 4×h'×w' float premultiplied RGBA in [0, 1], cropped to the shape's bounding box
    plus a 2-pixel margin, reduced so that its longer side is at most ``max_side``; and the appearance pixels per sprite pixel."""
    alpha = rgba[..., 3] > 127
    ys, xs = np.nonzero(alpha)
    if len(ys) == 0:
        raise ValueError("an object appearance with an empty shape")
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    crop = rgba[y0:y1, x0:x1].copy()
    t = torch.from_numpy(crop).permute(2, 0, 1).float().div_(255)
    t[3] = (t[3] > 0.5).float()
    t = F.pad(t, (2, 2, 2, 2))
    side = max(t.shape[-2:])
    full = side
    if side > max_side:
        s = max_side / side
        size = (max(4, round(t.shape[-2] * s)), max(4, round(t.shape[-1] * s)))
        t = F.interpolate(t[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    t[:3] *= t[3:4]
    return t, full / max(t.shape[-2:])


def _shape_appearance(rng: np.random.Generator, backdrop: Backdrop, size: int) -> np.ndarray:
    """A random smooth shape textured with a region of ``backdrop`` (RGBA, size×size)."""
    photo = backdrop.load()
    h, w = photo.shape[:2]
    side = int(rng.uniform(0.3, 0.7) * min(h, w))
    x0, y0 = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    crop = torch.from_numpy(np.ascontiguousarray(photo[y0 : y0 + side, x0 : x0 + side])).permute(2, 0, 1)
    crop = F.interpolate(crop[None].float(), size=(size, size), mode="bilinear", antialias=True)[0]
    shape = torch.from_numpy(random_shape(rng, size)).float() * 255
    return torch.cat([crop, shape[None]]).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()


@dataclass
class _Actor:
    """One object in the scene: appearance (premultiplied RGBA), label (0 = unlabelled), world-space
    keyframes of (x, y, log scale) every ``interval`` frames, mirror flag, brightness gain."""

    sprite: torch.Tensor
    label: int
    keys: np.ndarray
    interval: int
    scale: float  # world pixels per sprite pixel at log scale 0
    flip: bool
    gain: float
    name: str
    exits: bool = False  # leaves the frame and comes back


class RealSceneVideo(RenderedVideo):
    """A real-scene video of ``config.length`` frames, rendered on demand; deterministic from ``seed``
    (with the split of ``config``). Tracked objects are 1..``num_objects``; look-alikes, crowd and
    occluders are unlabelled (background in the masks). ``library``: the photographs and objects to use
    (default: everything installed for the split)."""

    def __init__(self, config: RealSceneConfig, seed: int, library: SceneLibrary | None = None) -> None:
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.config = cfg = config
        self.seed = seed
        self.library = lib = library if library is not None else scene_library(cfg.split, cfg.photo_cache)
        self._key = (_VIDEO_TAG, cfg.split.code, seed)
        rng = rng_for(*self._key)
        H, W = cfg.height, cfg.width

        self._people = tuple(a for a in lib.cutouts + lib.stamps if a.person)

        # Background and camera.
        backdrop = lib.backgrounds[int(rng.integers(len(lib.backgrounds)))]
        image = backdrop.load()
        if rng.random() < 0.5:
            image = image[:, ::-1]
        self._world = torch.from_numpy(image.copy()).permute(2, 0, 1).float().div_(255)
        self._world_size = image.shape[:2]
        self._camera_keys, self._camera_interval = self._draw_camera(rng)
        self._views: dict[float, tuple[float, float, float]] = {}
        self._occluder = self._draw_occluders(rng)  # world-size 1×h×w mask or None
        if self._occluder is not None:
            self._world = torch.cat([self._world, self._occluder])
        self.exposure = float(rng.uniform(*cfg.exposure))
        self.noise = float(rng.uniform(*cfg.noise))
        self._perspective = bool(rng.random() < cfg.perspective_probability)

        # Appearances: tracked objects first, then look-alikes and the crowd.
        n = int(rng.integers(cfg.tracked[0], cfg.tracked[1] + 1))
        looks = [self._pick_appearance(rng, backdrop) for _ in range(n)]
        if n >= 2 and rng.random() < cfg.tracked_twins_probability:
            looks[1] = looks[0]
        lookalikes = 0
        if rng.random() < cfg.lookalike_probability:
            lookalikes = int(rng.integers(cfg.lookalikes[0], cfg.lookalikes[1] + 1))
        crowd = int(rng.integers(cfg.crowd[0], cfg.crowd[1] + 1))
        template = int(rng.integers(n))
        areas = np.exp(rng.uniform(math.log(cfg.object_area[0]), math.log(cfg.object_area[1]), n))
        plan = [(looks[i], i + 1, float(areas[i])) for i in range(n)]
        cap = max(cfg.max_distractor_area, cfg.object_area[0])
        for _ in range(lookalikes):
            area = float(areas[template] * rng.uniform(*cfg.distractor_scale) ** 2)
            plan.append((looks[template], 0, min(area, cap)))
        for _ in range(crowd):
            area = float(areas[int(rng.integers(n))] * rng.uniform(*cfg.distractor_scale) ** 2)
            plan.append((self._pick_appearance(rng, backdrop), 0, min(area, cap)))

        pixel0 = self._camera(0.0)[0]
        self._actors: list[_Actor] = []
        loaded: dict[str, np.ndarray] = {}
        for i, (look, label, area) in enumerate(plan):
            if look.name not in loaded:
                loaded[look.name] = look.load()
            rgba = loaded[look.name]
            shape_px = float((rgba[..., 3] > 127).sum())
            out_scale = math.sqrt(area * H * W / max(shape_px, 1.0))  # output px per appearance px
            longest = max(rgba.shape[:2]) * out_scale * cfg.camera_zoom[1] * 1.3
            sprite, sprite_scale = _rgba_tensor(rgba, max_side=int(min(max(longest, 8), 1024)))
            actor_rng = rng_for(*self._key, 1, i)
            exits = (label == 1 and cfg.always_exit) or (
                label > 0 and actor_rng.random() < cfg.exit_probability
            )
            self._actors.append(
                _Actor(
                    sprite=sprite,
                    label=label,
                    keys=np.zeros((1, 3)),
                    interval=int(actor_rng.integers(cfg.keyframe_interval[0], cfg.keyframe_interval[1] + 1)),
                    scale=out_scale * sprite_scale * pixel0,
                    flip=bool(actor_rng.random() < 0.5),
                    gain=1.0,
                    name=look.name,
                    exits=exits,
                )
            )
        self._place(rng)
        self._light_match(rng)
        self.sources: tuple[str, ...] = (backdrop.name, *dict.fromkeys(a.name for a in self._actors))

    # --- drawing the scene ----------------------------------------------------------------------------

    def _pick_appearance(self, rng: np.random.Generator, backdrop: Backdrop) -> Appearance:
        lib, cfg = self.library, self.config
        people = self._people
        if people and rng.random() < cfg.person_probability:
            return people[int(rng.integers(len(people)))]
        weights = np.array(cfg.source_weights, dtype=np.float64)
        weights[0] *= bool(lib.cutouts)
        weights[1] *= bool(lib.stamps)
        if weights.sum() == 0:
            weights = np.array([0.0, 0.0, 1.0])
        kind = int(rng.choice(3, p=weights / weights.sum()))
        if kind == 0:
            return lib.cutouts[int(rng.integers(len(lib.cutouts)))]
        if kind == 1:
            return lib.stamps[int(rng.integers(len(lib.stamps)))]
        others = [b for b in lib.backgrounds if b.name != backdrop.name] or list(lib.backgrounds)
        source = others[int(rng.integers(len(others)))]
        shape_seed = int(rng.integers(2**62))
        return Appearance(
            f"shape:{source.name}:{shape_seed}",
            "shape",
            functools.partial(_shape_appearance, rng_for(shape_seed), source, 256),
        )

    def _draw_camera(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """Keyframes of (centre x fraction, centre y fraction, log zoom); a static camera has one."""
        cfg = self.config
        interval = int(rng.integers(cfg.camera_interval[0], cfg.camera_interval[1] + 1))
        count = cfg.length // interval + 3
        start = [rng.uniform(0, 1), rng.uniform(0, 1), math.log(rng.uniform(*cfg.camera_zoom))]
        if rng.random() < cfg.static_camera_probability:
            return np.array([start] * count), interval
        keys = [start]
        for _ in range(count - 1):
            x, y, z = keys[-1]
            keys.append(
                [
                    float(np.clip(x + rng.normal(0, 0.35), 0, 1)),
                    float(np.clip(y + rng.normal(0, 0.15), 0, 1)),
                    float(np.clip(z + rng.normal(0, 0.15), 0, math.log(cfg.camera_zoom[1]))),
                ]
            )
        return np.array(keys), interval

    def _camera(self, t: float) -> tuple[float, float, float]:
        """(world px per output px, world x, world y of the output's top-left corner) at time t."""
        view = self._views.get(t)
        if view is None:
            if len(self._views) > 4096:
                self._views.clear()
            view = self._views[t] = self._camera_at(t)
        return view

    def _camera_at(self, t: float) -> tuple[float, float, float]:
        cfg = self.config
        cx, cy, log_zoom = _spline(self._camera_keys, self._camera_interval, t)
        sh, sw = self._world_size
        pixel = min(sh / cfg.height, sw / cfg.width) / math.exp(max(0.0, log_zoom))
        bw, bh = cfg.width * pixel, cfg.height * pixel
        return pixel, float(np.clip(cx, 0, 1)) * (sw - bw), float(np.clip(cy, 0, 1)) * (sh - bh)

    def _to_world(self, t: float, x: float, y: float) -> tuple[float, float]:
        pixel, x0, y0 = self._camera(t)
        return x0 + x * pixel, y0 + y * pixel

    def _draw_occluders(self, rng: np.random.Generator) -> torch.Tensor | None:
        """Regions of the background photograph that stay in front of the objects: vertical bars
        (pillars, poles, trees), a band along the bottom (a railing, a hedge) or blocks."""
        cfg = self.config
        if rng.random() >= cfg.occluder_probability:
            return None
        sh, sw = self._world_size
        pixel, vx0, vy0 = self._camera(0.0)
        vw, vh = cfg.width * pixel, cfg.height * pixel
        mask = torch.zeros(1, sh, sw)
        for _ in range(int(rng.integers(cfg.occluders[0], cfg.occluders[1] + 1))):
            kind = int(rng.integers(3))
            if kind == 0:  # vertical bar, from the bottom to a random height
                bw = rng.uniform(0.04, 0.14) * vw
                x = vx0 + rng.uniform(0.1, 0.9) * vw
                top = vy0 + rng.uniform(-0.2, 0.5) * vh
                box = (x - bw / 2, top, x + bw / 2, sh)
            elif kind == 1:  # band along the bottom
                top = vy0 + rng.uniform(0.65, 0.88) * vh
                box = (0, top, sw, sh)
            else:  # a block
                bw, bh = rng.uniform(0.12, 0.35) * vw, rng.uniform(0.12, 0.35) * vh
                x, y = vx0 + rng.uniform(0.05, 0.95) * vw, vy0 + rng.uniform(0.4, 1.0) * vh
                box = (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)
            x0, y0, x1, y1 = (max(0, round(v)) for v in box)
            mask[:, y0 : min(sh, y1), x0 : min(sw, x1)] = 1.0
        return mask

    def _place(self, rng: np.random.Generator) -> None:
        """Walking trajectories (keyframes in world space); frame-0 positions redrawn until every tracked
        object shows ``min_visible`` of itself (10 tries, then the best)."""
        cfg = self.config
        best, best_score = None, -1.0
        for attempt in range(10):
            layout = [self._walk(a, rng_for(*self._key, 2, attempt, i)) for i, a in enumerate(self._actors)]
            for actor, keys in zip(self._actors, layout, strict=True):
                actor.keys = keys
            score = self._visible_share(0)
            if score > best_score:
                best, best_score = layout, score
            if score >= cfg.min_visible:
                break
        for actor, keys in zip(self._actors, best, strict=True):  # type: ignore[arg-type]
            actor.keys = keys

    def _walk(self, actor: _Actor, rng: np.random.Generator) -> np.ndarray:
        """Keyframes (world x, y, log scale): a heading with momentum, mostly sideways, bouncing off the
        frame's edges; an exiting object walks out past an edge and turns back."""
        cfg = self.config
        H, W = cfg.height, cfg.width
        diag = math.hypot(H, W)
        count = cfg.length // actor.interval + 3
        tracked = actor.label > 0
        lo, hi = (0.2, 0.8) if tracked else (-0.1, 1.1)
        x, y = rng.uniform(lo, hi) * W, rng.uniform(0.25 if tracked else 0.1, 0.85) * H
        heading = rng.choice([0.0, math.pi]) + rng.normal(0, 0.4)
        speed = rng.uniform(*cfg.speed) * diag * actor.interval
        if rng.random() < 0.15:
            speed *= 0.1  # standing about
        half = 0.75 * max(actor.sprite.shape[-2:]) * actor.scale / self._camera(0.0)[0]
        exits: set[int] = set()
        if actor.exits:  # the first exit early, later ones now and then (never two keyframes running)
            exits.add(int(rng.integers(1, max(2, min(count - 2, 4)))))
            for k in range(min(exits) + 2, count - 1):
                if k - 1 not in exits and rng.random() < 0.25:
                    exits.add(k)
        y0 = y

        def depth(y: float) -> float:  # with perspective, objects lower in the frame are nearer: larger
            return math.log((y / H + 0.25) / (y0 / H + 0.25)) if self._perspective else 0.0

        keys, log_scale = [], 0.0
        for k in range(count):
            if k in exits:  # walk out past the nearest side edge, come back at the next keyframe
                side = -1.0 if x < W / 2 else 1.0
                wx, wy = self._to_world(k * actor.interval, W / 2 + side * (W / 2 + half + 4), y)
                keys.append([wx, wy, log_scale + depth(y)])
                heading = math.pi if side > 0 else 0.0
                continue
            wx, wy = self._to_world(k * actor.interval, x, y)
            keys.append([wx, wy, log_scale + depth(y)])
            heading += rng.normal(0, 0.5)
            x += math.cos(heading) * speed
            y += 0.4 * math.sin(heading) * speed
            if not 0.05 * W <= x <= 0.95 * W:
                heading = math.pi - heading
                x = float(np.clip(x, 0.05 * W, 0.95 * W))
            y = float(np.clip(y, 0.15 * H, 0.9 * H))
            log_scale = float(np.clip(log_scale + rng.normal(0, 0.08), -0.3, 0.3))
        return np.array(keys)

    def _light_match(self, rng: np.random.Generator) -> None:
        mean = float(self._world[:3].mean())
        for a in self._actors:
            alpha = a.sprite[3]
            own = float((a.sprite[:3].sum(0) / 3).sum() / alpha.sum().clamp_min(1))
            w = rng.uniform(*self.config.light_match)
            a.gain = float(np.clip((1 - w) + w * mean / max(own, 1e-3), 0.6, 1.6))

    # --- rendering ------------------------------------------------------------------------------------

    def _actor_state(self, a: _Actor, t: float) -> tuple[float, float, float]:
        """Output (x, y, side scale: output px per sprite px) of an actor at time t."""
        wx, wy, log_scale = _spline(a.keys, a.interval, t)
        pixel, x0, y0 = self._camera(t)
        return (wx - x0) / pixel, (wy - y0) / pixel, a.scale * math.exp(log_scale) / pixel

    def _window(
        self, a: _Actor, times: list[float], alpha_only: bool = False
    ) -> tuple[torch.Tensor, int, int] | None:
        """The actor averaged over ``times`` (motion blur) on its bounding box: (4×h×w premultiplied
        RGBA, or 1×h×w alpha when ``alpha_only``, x0, y0), None when off-frame."""
        cfg = self.config
        sh, sw = a.sprite.shape[-2:]
        sprite = a.sprite[3:4] if alpha_only else a.sprite
        states = [self._actor_state(a, t) for t in times]
        xs0 = min(x - sw * s / 2 for x, _, s in states)
        xs1 = max(x + sw * s / 2 for x, _, s in states)
        ys0 = min(y - sh * s / 2 for _, y, s in states)
        ys1 = max(y + sh * s / 2 for _, y, s in states)
        x0, x1 = max(0, math.floor(xs0)), min(cfg.width, math.ceil(xs1))
        y0, y1 = max(0, math.floor(ys0)), min(cfg.height, math.ceil(ys1))
        if x0 >= x1 or y0 >= y1:
            return None
        acc = None
        for x, y, s in states:
            sx = -1.0 / s if a.flip else 1.0 / s
            to_sprite = np.array(
                [[sx, 0.0, sw / 2 - sx * (x - x0)], [0.0, 1.0 / s, sh / 2 - (y - y0) / s], [0.0, 0.0, 1.0]]
            )
            grid = sampling_grid(to_sprite, (y1 - y0, x1 - x0), (sh, sw))
            win = F.grid_sample(
                sprite[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )[0]
            acc = win if acc is None else acc + win
        return acc / len(states), x0, y0

    def _times(self, t: int) -> list[float]:
        cfg = self.config
        if not cfg.motion_blur or cfg.blur_samples == 1:
            return [float(t)]
        k = cfg.blur_samples
        return [t + self.exposure * ((i + 0.5) / k - 0.5) for i in range(k)]

    def _exposure(self, a: _Actor, t: int, times: list[float]) -> list[float]:
        """The times actor ``a`` is drawn at for frame t: the exposure's sub-frame ``times`` when it moves
        more than a pixel during them (motion blur), else t alone."""
        x_a, y_a, _ = self._actor_state(a, times[0])
        x_b, y_b, _ = self._actor_state(a, times[-1])
        return times if math.hypot(x_b - x_a, y_b - y_a) > 1.0 else [float(t)]

    def _background(self, times: list[float], channels: slice = slice(None)) -> torch.Tensor:
        """The world seen by the camera in the middle of ``times``, smeared along the camera's motion
        over ``times`` (C×H×W; channel 3 = occluder mask)."""
        cfg = self.config
        t = 0.5 * (times[0] + times[-1])
        pixel, x0, y0 = self._camera(t)
        matrix = np.array([[pixel, 0.0, x0], [0.0, pixel, y0], [0.0, 0.0, 1.0]])
        grid = sampling_grid(matrix, (cfg.height, cfg.width), self._world_size)
        image = F.grid_sample(
            self._world[None, channels], grid, mode="bilinear", padding_mode="border", align_corners=False
        )[0]
        _, xa, ya = self._camera(times[0])
        _, xb, yb = self._camera(times[-1])
        dx, dy = (xb - xa) / pixel, (yb - ya) / pixel
        if len(times) == 1 or math.hypot(dx, dy) <= 1.0:
            return image
        acc = torch.zeros_like(image)
        for i in range(len(times)):
            f = i / (len(times) - 1) - 0.5
            acc += _shifted(image, round(f * dx), round(f * dy))
        return acc / len(times)

    def _layers(self, t: int) -> tuple[torch.Tensor, list[tuple[_Actor, torch.Tensor, int, int]]]:
        times = self._times(t)
        background = self._background(times)
        placed = []
        for a in self._actors:
            window = self._window(a, self._exposure(a, t, times))
            if window is not None:
                placed.append((a, *window))
        # nearer objects (feet lower in the frame) in front
        placed.sort(key=lambda p: self._actor_state(p[0], float(t))[1] + p[1].shape[-2] / 2)
        return background, placed

    def _draw(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        # ids: 0 background (look-alikes, crowd and occluders included), 1..n tracked
        cfg = self.config
        background, placed = self._layers(t)
        frame = background[:3].clone()
        mask = torch.zeros(cfg.height, cfg.width, dtype=torch.int64)
        for a, win, x0, y0 in placed:
            h, w = win.shape[-2:]
            alpha = win[3:4]
            region = frame[:, y0 : y0 + h, x0 : x0 + w]
            region.mul_(1 - alpha).add_(win[:3] * a.gain)
            mask[y0 : y0 + h, x0 : x0 + w][alpha[0] > 0.5] = a.label
        if background.shape[0] == 4:  # foreground structures of the photograph in front
            cover = background[3:4]
            frame = frame * (1 - cover) + background[:3] * cover
            mask[cover[0] > 0.5] = 0
        if self.noise > 0:
            noise_rng = torch.Generator().manual_seed(int(rng_for(*self._key, 3, t).integers(2**62)))
            frame = frame + self.noise * torch.randn(frame.shape, generator=noise_rng)
        return frame.clamp_(0, 1), mask

    def _visible_share(self, t: int) -> float:
        """The smallest share of its own area that a tracked object shows at frame t (0 if one is
        absent), from the shapes alone (no colour, no blur)."""
        cfg = self.config
        mask = torch.zeros(cfg.height, cfg.width, dtype=torch.int64)
        areas = [0] * (self.num_objects + 1)
        placed = []
        for a in self._actors:
            window = self._window(a, [float(t)], alpha_only=True)
            if window is not None:
                placed.append((a, *window))
                if a.label:
                    areas[a.label] = int((window[0][0] > 0.5).sum())
        placed.sort(key=lambda p: self._actor_state(p[0], float(t))[1] + p[1].shape[-2] / 2)
        for a, win, x0, y0 in placed:
            h, w = win.shape[-2:]
            mask[y0 : y0 + h, x0 : x0 + w][win[0] > 0.5] = a.label
        if self._occluder is not None:
            mask[self._background([float(t)], slice(3, 4))[0] > 0.5] = 0
        shares = [float((mask == i).sum()) / areas[i] if areas[i] else 0.0 for i in range(1, len(areas))]
        return min(shares) if shares else 0.0

    def amodal_masks(self, t: int) -> torch.Tensor:
        """n×H×W bool: the whole extent of each tracked object at frame t (hidden parts included, parts
        outside the frame excluded)."""
        cfg = self.config
        out = torch.zeros(self.num_objects, cfg.height, cfg.width, dtype=torch.bool)
        times = self._times(t)
        for a in self._actors:
            if a.label == 0:
                continue
            window = self._window(a, self._exposure(a, t, times))
            if window is not None:
                win, x0, y0 = window
                h, w = win.shape[-2:]
                out[a.label - 1, y0 : y0 + h, x0 : x0 + w] = win[3] > 0.5
        return out

    def occluder_mask(self, t: int) -> torch.Tensor:
        """H×W bool: where structures of the background photograph cover the objects at frame t."""
        if self._occluder is None:
            return torch.zeros(self.config.height, self.config.width, dtype=torch.bool)
        return self._background(self._times(t), slice(3, 4))[0] > 0.5

    @property
    def num_objects(self) -> int:
        return sum(1 for a in self._actors if a.label > 0)

    @property
    def num_distractors(self) -> int:
        return sum(1 for a in self._actors if a.label == 0)

    def lookalike_labels(self) -> list[int]:
        """Tracked objects that share their appearance with an unlabelled object or another tracked one."""
        names = [a.name for a in self._actors]
        return sorted({a.label for a in self._actors if a.label > 0 and names.count(a.name) > 1})


# --- the training dataset ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RealSceneClipConfig(CompositeClipConfig):
    """Training clips of real-scene videos, in the common sample format: the settings of
    :class:`~xmem.data.synthetic.CompositeClipConfig`, with real-scene videos (300 frames) and objects down
    to 0.1% of the frame in frame 0."""

    video: RealSceneConfig = field(default_factory=lambda: RealSceneConfig(length=300))  # type: ignore[assignment]
    min_object_fraction: float = 0.001


class RealSceneClipDataset(CompositeClipDataset):
    """Training clips cut from fresh real-scene videos. Item ``index`` of ``epoch`` is determined by
    (split, ``seed``, epoch, index); look items up by :class:`~xmem.data.seeding.ItemKey` or by plain
    index after :meth:`set_epoch` / :meth:`set_max_skip`."""

    _kind = "real-scene"
    _tag = _CLIP_TAG

    def __init__(
        self, config: RealSceneClipConfig | None = None, *, seed: int = 0, library: SceneLibrary | None = None
    ) -> None:
        super().__init__(config if config is not None else RealSceneClipConfig(), seed=seed)
        self.library = library

    def _video(self, seed: int) -> RealSceneVideo:
        return RealSceneVideo(self.config.video, seed, self.library)  # type: ignore[arg-type]
