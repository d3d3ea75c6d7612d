"""Real-scene training data (xmem.data.real_scenes), the real photographs' manifest and the cut-outs.

The scene tests use a generated library (grey gradient backgrounds, flat-coloured elliptical objects), so
that they need no package and every pixel can be traced to its layer."""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmem.configio import load_config
from xmem.data import ItemKey, Split, realphotos, sources
from xmem.data.cutouts import CutoutKind, cutouts, mask_path, photo_licence
from xmem.data.real_scenes import (
    EXCLUDED_VIDEOS,
    NOT_SCENES,
    Appearance,
    Backdrop,
    RealSceneClipConfig,
    RealSceneClipDataset,
    RealSceneConfig,
    RealSceneVideo,
    SceneLibrary,
    resolved_sources,
    scene_library,
)
from xmem.data.sources import PHOTOGRAPHS, VIDEO_SUFFIXES
from xmem.train.config import TrainConfig
from xmem.train.data import build_stage_dataset

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default-8-real-scenes.toml"
COLOURS = [(230, 20, 20), (20, 200, 30), (30, 40, 230), (240, 200, 0), (200, 0, 220), (0, 210, 220)]


def _gradient(i: int) -> np.ndarray:
    y, x = np.mgrid[0:240, 0:320]
    grey = (60 + 80 * x / 320 + 40 * y / 240 + 10 * i).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _ellipse(colour: tuple[int, int, int], h: int = 60, w: int = 36) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    inside = ((x + 0.5 - w / 2) / (w / 2)) ** 2 + ((y + 0.5 - h / 2) / (h / 2)) ** 2 <= 1
    out = np.zeros((h, w, 4), np.uint8)
    out[..., :3] = colour
    out[..., 3] = inside * 255
    return out


LIBRARY = SceneLibrary(
    backgrounds=tuple(Backdrop(f"bg{i}", functools.partial(_gradient, i)) for i in range(2)),
    cutouts=tuple(
        Appearance(f"obj{i}", "cutout:thing", functools.partial(_ellipse, c)) for i, c in enumerate(COLOURS)
    ),
)

PLAIN = RealSceneConfig(
    height=64, width=80, length=60, tracked=(2, 2), lookalike_probability=0.0, crowd=(0, 0),
    tracked_twins_probability=0.0, occluder_probability=0.0, static_camera_probability=1.0,
    motion_blur=False, light_match=(0.0, 0.0), noise=(0.0, 0.0), exit_probability=0.0,
    source_weights=(1.0, 0.0, 0.0), object_area=(0.02, 0.06),
)  # fmt: skip


def _colour_of(video: RealSceneVideo, label: int) -> np.ndarray:
    name = next(a.name for a in video._actors if a.label == label)
    return np.array(COLOURS[int(name[3:])], dtype=np.float32)


def _dilate(mask: np.ndarray, size: int = 5) -> np.ndarray:
    pooled = torch.nn.functional.max_pool2d(
        torch.from_numpy(mask.astype(np.float32))[None, None], size, stride=1, padding=size // 2
    )
    return pooled[0, 0].numpy() > 0


def test_same_key_same_clip_and_different_keys_differ() -> None:
    cfg = dataclasses.replace(
        PLAIN, occluder_probability=1.0, static_camera_probability=0.0, motion_blur=True
    )
    a, b, c = (RealSceneVideo(cfg, s, LIBRARY) for s in (5, 5, 6))
    for t in (0, 17, 59):
        assert np.array_equal(a.frame(t), b.frame(t)) and np.array_equal(a.mask(t), b.mask(t))
    assert not np.array_equal(a.frame(0), c.frame(0))
    data = RealSceneClipDataset(
        RealSceneClipConfig(video=cfg, num_frames=3, items=4), seed=2, library=LIBRARY
    )
    one, two = data[ItemKey(1, epoch=3, max_skip=4)], data[ItemKey(1, epoch=3, max_skip=4)]
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert not torch.equal(one["frames"], data[ItemKey(2, epoch=3, max_skip=4)]["frames"])


@pytest.mark.parametrize("area", [(0.005, 0.01), (0.03, 0.08)])
def test_object_sizes_follow_the_configured_range(area) -> None:
    cfg = dataclasses.replace(PLAIN, height=96, width=128, object_area=area, tracked=(1, 1))
    fractions = []
    for seed in range(12):
        video = RealSceneVideo(cfg, seed, LIBRARY)
        amodal = video.amodal_masks(0)[0]
        fractions.append(float(amodal.sum()) / (96 * 128))
    # the object lies wholly inside the frame at t = 0; rasterising costs a few edge pixels
    assert min(fractions) >= 0.8 * area[0], fractions
    assert max(fractions) <= 1.2 * area[1], fractions
    assert max(fractions) / min(fractions) > 1.2  # sizes are drawn, not fixed


def test_lookalikes_and_crowd_are_drawn_but_unlabelled() -> None:
    cfg = dataclasses.replace(
        PLAIN, lookalike_probability=1.0, lookalikes=(3, 3), crowd=(2, 2), tracked=(1, 1)
    )
    seen_lookalike = 0
    for seed in range(6):
        video = RealSceneVideo(cfg, seed, LIBRARY)
        assert video.num_objects == 1 and video.num_distractors == 5
        assert video.lookalike_labels() == [1]
        for t in (0, 20, 40):
            frame, mask = video.frame(t).astype(np.float32), video.mask(t)
            assert set(np.unique(mask).tolist()) <= {0, 1}
            same_colour = np.abs(frame - _colour_of(video, 1)).max(axis=2) < 3
            seen_lookalike += int((same_colour & (mask == 0)).sum())
    assert seen_lookalike > 100  # pixels of the tracked object's appearance that are not labelled


def test_structures_of_the_background_hide_objects() -> None:
    cfg = dataclasses.replace(PLAIN, occluder_probability=1.0, occluders=(2, 2), tracked=(1, 1))
    hidden = 0
    for seed in range(10):
        video = RealSceneVideo(cfg, seed, LIBRARY)
        for t in range(0, cfg.length, 6):
            behind = video.amodal_masks(t)[0] & video.occluder_mask(t)
            if not behind.any():
                continue
            mask, frame = video.mask(t), video.frame(t).astype(np.float32)
            assert not (mask[behind.numpy()] == 1).any()  # hidden parts are not labelled
            colour_left = np.abs(frame[behind.numpy()] - _colour_of(video, 1)).max(axis=1) < 3
            assert colour_left.mean() < 0.05  # and not visible: the photograph's structure is in front
            assert (mask == 1).any() or not (video.amodal_masks(t)[0] & ~video.occluder_mask(t)).any()
            hidden += int(behind.sum())
    assert hidden > 50


def test_tracked_object_leaves_and_comes_back_when_asked() -> None:
    cfg = dataclasses.replace(PLAIN, always_exit=True, tracked=(1, 1), length=150, keyframe_interval=(15, 25))
    for seed in range(4):
        video = RealSceneVideo(cfg, seed, LIBRARY)
        assert (video.mask(0) == 1).any()
        events = []  # the frames where it disappears and where it shows again
        for t in range(1, cfg.length):
            present = bool((video.mask(t) == 1).any())
            if present == (len(events) % 2 == 1):
                events.append(t)
                if len(events) == 2:
                    break
        assert len(events) == 2, f"seed {seed}: left and came back at {events}"
        assert not video.amodal_masks((events[0] + events[1]) // 2).any() or events[1] - events[0] < 3


def test_masks_match_the_composited_pixels() -> None:
    cfg = dataclasses.replace(PLAIN, tracked=(3, 3), static_camera_probability=0.0)
    for seed in range(4):
        video = RealSceneVideo(cfg, seed, LIBRARY)
        for t in (0, 30):
            frame, mask = video.frame(t).astype(np.float32), video.mask(t)
            background = video._background([float(t)])[:3].permute(1, 2, 0).numpy() * 255
            for label in range(1, 4):
                inner = mask == label
                inner[1:-1, 1:-1] &= (mask[:-2, 1:-1] == label) & (mask[2:, 1:-1] == label)
                inner[1:-1, 1:-1] &= (mask[1:-1, :-2] == label) & (mask[1:-1, 2:] == label)
                inner &= ~_dilate((mask > 0) & (mask != label))  # soft edges of other objects mix in
                inner[[0, -1], :] = False
                inner[:, [0, -1]] = False
                if inner.any():  # labelled pixels show the object's colour
                    assert np.abs(frame[inner] - _colour_of(video, label)).max() < 3
            outside = mask == 0
            grey = np.abs(frame - frame.mean(axis=2, keepdims=True)).max(axis=2) < 2
            far = outside & ~_dilate(mask > 0)  # unlabelled pixels away from objects: the photograph
            assert grey[far].all() and np.abs(frame[far] - background[far]).max() < 2


def test_clips_have_the_sample_format_and_blur_moving_objects() -> None:
    cfg = dataclasses.replace(
        PLAIN, static_camera_probability=0.0, motion_blur=True, speed=(0.06, 0.08), keyframe_interval=(4, 5)
    )
    data = RealSceneClipDataset(
        RealSceneClipConfig(video=cfg, num_frames=4, items=3), seed=0, library=LIBRARY
    )
    sample = data[ItemKey(0, max_skip=3)]
    assert sample["frames"].shape == (4, 3, 64, 80) and sample["masks"].shape == (4, 64, 80)
    assert sample["valid"].sum() >= 1 and sample["first_masks"][0].sum() > 0
    video = RealSceneVideo(cfg, 3, LIBRARY)
    sharp = RealSceneVideo(dataclasses.replace(cfg, motion_blur=False), 3, LIBRARY)
    blurred_mix = sum(
        int(((np.abs(video.frame(t).astype(int) - sharp.frame(t).astype(int))).max(axis=2) > 10).sum())
        for t in (10, 20, 30)
    )
    assert blurred_mix > 0  # blur changes pixels along moving edges


def test_stage8_config_reads_no_video_and_no_excluded_file(monkeypatch) -> None:
    cfg = load_config(TrainConfig, CONFIG)
    for stage in cfg.stages:
        data = stage.data
        assert data.real_scenes is not None and not data.videos
        if data.synthetic is not None:
            assert data.synthetic.config.video.background_videos == ()
        names = resolved_sources(data.real_scenes.config.video)
        assert names, "the real scenes resolve to no photograph"
        assert not set(names) & EXCLUDED_VIDEOS
        assert not [n for n in names if n.lower().endswith(VIDEO_SUFFIXES)]

    # build the stage's data for real (small clips) with every video decoder made to fail
    def refuse(*args, **kwargs):
        raise AssertionError("the real-scene config opened a video file")

    monkeypatch.setattr(sources.VideoFrames, "__init__", refuse)
    import av

    monkeypatch.setattr(av, "open", refuse)
    small_clips = [  # the stage's data for real, as small clips (the config's own overrides mechanism)
        f"stages.0.data.{source}.config.{key}={value}"
        for source in ("real_scenes", "synthetic")
        for key, value in (("num_frames", 3), ("video.height", 48), ("video.width", 48))
    ]
    small = load_config(TrainConfig, CONFIG, small_clips).stages[0]
    dataset = build_stage_dataset(small, seed=1)
    ends = [0, *dataset._ends]
    for start in ends[:-1]:  # an item of every source
        assert dataset[ItemKey(start, max_skip=4)]["frames"].shape == (3, 3, 48, 48)


def test_falls_back_to_the_wheel_photographs_without_the_packages(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(realphotos, "locate", lambda photo, cache=None: None)
    realphotos._available.cache_clear()
    scene_library.cache_clear()
    try:
        cfg = RealSceneConfig(height=48, width=48, length=20, photo_cache=tmp_path)
        library = scene_library(Split.TRAIN, tmp_path)
        assert not library.stamps
        wheel = {p.name for p in sources.photographs(Split.TRAIN)} - NOT_SCENES
        assert {b.name for b in library.backgrounds} == wheel and len(wheel) >= 5
        video = RealSceneVideo(cfg, 0)
        assert video.frame(0).shape == (48, 48, 3) and (video.mask(0) > 0).any()
    finally:
        realphotos._available.cache_clear()
        scene_library.cache_clear()


def test_held_out_side_shares_nothing_with_training() -> None:
    train = set(resolved_sources(RealSceneConfig(split=Split.TRAIN)))
    held = set(resolved_sources(RealSceneConfig(split=Split.HELD_OUT)))
    assert train and not train & held


def test_photo_manifest_is_complete() -> None:
    photos = realphotos.manifest()
    assert len(photos) >= 250
    for p in photos:
        assert p.licence and p.version and p.package and p.path.startswith("/usr/share/"), p
    assert {p.kind for p in photos} == set(realphotos.PhotoKind)
    assert all(p.category for p in photos if p.kind is realphotos.PhotoKind.STAMP)


def test_every_cutout_has_its_mask_and_a_licence() -> None:
    known = {p.name for p in PHOTOGRAPHS} | {
        p.name for p in realphotos.manifest() if p.kind is realphotos.PhotoKind.SCENE
    }
    items = cutouts()
    assert len(items) >= 30
    assert {CutoutKind.PERSON, CutoutKind.ANIMAL, CutoutKind.THING} <= {c.kind for c in items}
    masks = {p.stem for p in mask_path(items[0]).parent.glob("*.png")}
    assert masks == {c.name for c in items}, "a mask without its seeds, or seeds without their mask"
    for c in items:
        assert c.photo in known, c.name
        assert photo_licence(c.photo)
        assert c.foreground, f"{c.name}: no foreground stroke"
        with Image.open(mask_path(c)) as img:
            mask = np.array(img.convert("L")) > 127
        x0, y0, x1, y1 = c.box
        assert mask.shape == (y1 - y0, x1 - x0), c.name
        assert 0.05 < mask.mean() < 0.97, f"{c.name}: {mask.mean():.0%} of its box"
        for stroke in c.foreground:  # the sure-foreground strokes lie on the mask
            x, y = stroke[0]
            assert mask[y - y0, x - x0], f"{c.name}: stroke start {stroke[0]} outside its mask"


def test_trainer_runs_on_real_scenes_and_records_the_config(tmp_path: Path) -> None:
    """Two iterations of the trainer on real-scene clips only (generated-size clips, the installed
    photographs or the wheels' fallback); the recorded config.json builds back to the same config."""
    import json

    from trainconfigs import tiny_config
    from xmem.configio import build
    from xmem.train.config import DataConfig, RealScenesData
    from xmem.train.trainer import Trainer

    base = tiny_config(2)
    clips = RealSceneClipConfig(
        video=RealSceneConfig(height=48, width=48, length=30), num_frames=3, max_objects=2, items=20
    )
    stage = dataclasses.replace(base.stages[0], data=DataConfig(real_scenes=RealScenesData(clips, weight=2)))
    config = dataclasses.replace(base, stages=(stage,))
    Trainer(config, tmp_path / "run", show_progress=False).run()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 1  # log_every=2
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert build(TrainConfig, recorded) == config
