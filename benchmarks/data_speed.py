"""Time to make one training sample on one CPU core, for each dataset, and the frame rate of a composite
evaluation video.

    python benchmarks/data_speed.py              # 30 samples each (after 3 warm-up samples)
    python benchmarks/data_speed.py --real-scenes --count 60   # the real-scene clips only

- composite clips: CompositeClipDataset, 8 frames at 384×384, up to 3 objects, max skip 15, with
  photograph backgrounds, and with video backgrounds when Debian's opencv-doc clips and PyAV are present;
- static: the stage-0 sequences of the bundled photographs, 3 frames at 384×384;
- DAVIS layout: VOSDataset over a generated folder of 854×480 JPEG frames (as DAVIS 480p), 8 frames
  at 384×384 (JPEG decoding included);
- evaluation video: CompositeVideo at 480×854, frames/s of sequential rendering.

With ``--real-scenes``: RealSceneClipDataset (xmem.data.real_scenes; photographs from
benchmarks/install_real_photos.py, cut-outs, stamps), 8 frames at 384×384 and at 192×192 (the size of
configs/default-8-real-scenes.toml), max skip 15, and a real-scene video's frame rate at 480×854.
Photographs are decoded once per process (as in a DataLoader worker), so the first samples are slower.

Results: benchmarks/results/data_speed.json and data_speed.csv (real scenes: data_speed_real_scenes.*).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xmem.data import (
    CompositeClipConfig,
    CompositeClipDataset,
    CompositeConfig,
    CompositeVideo,
    Split,
    StaticConfig,
    VOSConfig,
    VOSDataset,
    background_videos,
    photo_static_dataset,
)
from xmem.data.real_scenes import (
    RealSceneClipConfig,
    RealSceneClipDataset,
    RealSceneConfig,
    RealSceneVideo,
    scene_library,
)
from xmem.io.masks import write_index_mask

RESULTS = Path(__file__).resolve().parent / "results"


def time_items(dataset, count: int, warmup: int = 3) -> dict[str, float]:
    for i in range(warmup):
        dataset[i]
    times = []
    for i in range(warmup, warmup + count):
        start = time.perf_counter()
        dataset[i % len(dataset)]
        times.append(time.perf_counter() - start)
    return {"mean_s": statistics.fmean(times), "median_s": statistics.median(times), "max_s": max(times)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def davis_like_folder(root: Path, videos: int = 3, frames: int = 40) -> Path:
    rng = np.random.default_rng(0)
    for v in range(videos):
        (root / "JPEGImages" / f"v{v}").mkdir(parents=True)
        (root / "Annotations" / f"v{v}").mkdir(parents=True)
        base = rng.integers(0, 255, (60, 107, 3), dtype=np.uint8)
        for t in range(frames):
            image = Image.fromarray(base).resize((854, 480), Image.Resampling.BICUBIC)
            mask = np.zeros((480, 854), np.uint8)
            mask[100 + t : 300 + t, 200 + 2 * t : 420 + 2 * t] = 1
            mask[250:420, 500 - t : 700 - t] = 2
            image.save(root / "JPEGImages" / f"v{v}" / f"{t:05d}.jpg", quality=90)
            write_index_mask(root / "Annotations" / f"v{v}" / f"{t:05d}.png", mask)
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--real-scenes", action="store_true", help="time the real-scene clips only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.real_scenes:
        return real_scenes(args.count, args.out)
    rows = []

    clip = CompositeClipConfig(video=CompositeConfig(length=1000), num_frames=8, max_objects=3, max_skip=15)
    rows.append(
        ("composite clip, photo background", "8×384×384", time_items(CompositeClipDataset(clip), args.count))
    )
    videos = background_videos(Split.TRAIN)
    if videos:
        with_video = replace(clip, video=replace(clip.video, background_videos=videos, video_probability=1.0))
        rows.append(
            (
                "composite clip, video background",
                "8×384×384",
                time_items(CompositeClipDataset(with_video), args.count),
            )
        )
    static = photo_static_dataset(1000, StaticConfig(size=384, num_frames=3))
    rows.append(("static photo sequence (stage 0)", "3×384×384", time_items(static, args.count)))
    with tempfile.TemporaryDirectory() as tmp:
        vos = VOSDataset(davis_like_folder(Path(tmp)), VOSConfig(size=384, num_frames=8, max_skip=15))
        rows.append(("DAVIS-layout clip (854×480 JPEGs)", "8×384×384", time_items(vos, args.count)))

    video = CompositeVideo(
        CompositeConfig(height=480, width=854, length=100, objects=(3, 3), split=Split.HELD_OUT), 0
    )
    start = time.perf_counter()
    for t in range(100):
        video.frame(t)
        video.mask(t)
    fps = 100 / (time.perf_counter() - start)

    machine = {"cpu": cpu_name(), "threads": 1, "torch": torch.__version__}
    report = {
        "machine": machine,
        "samples": [{"dataset": name, "shape": shape, **stats} for name, shape, stats in rows],
        "composite_video_480x854_3_objects_fps": fps,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "data_speed.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    with open(args.out / "data_speed.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "shape", "mean_s", "median_s", "max_s"])
        for name, shape, stats in rows:
            writer.writerow(
                [name, shape, f"{stats['mean_s']:.3f}", f"{stats['median_s']:.3f}", f"{stats['max_s']:.3f}"]
            )
    for name, shape, stats in rows:
        print(
            f"{name:40s} {shape:10s} mean {stats['mean_s'] * 1000:6.0f} ms  max {stats['max_s'] * 1000:6.0f} ms"
        )
    print(f"composite evaluation video 480×854, 3 objects: {fps:.1f} frames/s")
    return 0


def real_scenes(count: int, out: Path) -> int:
    library = scene_library(Split.TRAIN)
    rows = []
    for size in (384, 192):
        video = RealSceneConfig(height=size, width=size, length=300)
        clips = RealSceneClipDataset(
            RealSceneClipConfig(video=video, num_frames=8, max_skip=15, items=10_000)
        )
        rows.append((f"real-scene clip {size}×{size}", f"8×{size}×{size}", time_items(clips, count)))
    contents = clip_statistics(clips, count)
    video = RealSceneVideo(RealSceneConfig(height=480, width=854, length=100, tracked=(3, 3)), 0)
    start = time.perf_counter()
    for t in range(100):
        video.frame(t)
        video.mask(t)
    fps = 100 / (time.perf_counter() - start)
    report = {
        "machine": {"cpu": cpu_name(), "threads": 1, "torch": torch.__version__, "load_average": os.getloadavg()},
        "library": {
            "backgrounds": len(library.backgrounds), "cutouts": len(library.cutouts), "stamps": len(library.stamps)
        },
        "samples": [{"dataset": name, "shape": shape, **stats} for name, shape, stats in rows],
        "real_scene_video_480x854_3_tracked_fps": fps,
        "clip_statistics_192": contents,
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "data_speed_real_scenes.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    with open(out / "data_speed_real_scenes.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "shape", "mean_s", "median_s", "max_s", "clips_per_s"])
        for name, shape, stats in rows:
            writer.writerow(
                [name, shape, f"{stats['mean_s']:.3f}", f"{stats['median_s']:.3f}", f"{stats['max_s']:.3f}",
                 f"{1 / stats['mean_s']:.1f}"]
            )  # fmt: skip
    print(f"library: {report['library']}")
    for name, shape, stats in rows:
        print(f"{name:28s} {shape:10s} mean {stats['mean_s'] * 1000:6.0f} ms  ({1 / stats['mean_s']:.1f} clips/s)"
              f"  max {stats['max_s'] * 1000:6.0f} ms")  # fmt: skip
    print(f"real-scene video 480×854, 3 tracked objects: {fps:.1f} frames/s")
    print(f"clips at 192×192: {json.dumps(contents)}")
    return 0


def clip_statistics(clips, count: int) -> dict:
    """What the clips contain: tracked objects per clip, their frame-0 area (share of the frame), and the
    share of objects that vanish in a later frame (left the frame or hidden) and of those that come back."""
    areas, per_clip, vanish, back = [], [], 0, 0
    for i in range(count):
        masks = clips[i]["masks"]
        ids = [int(j) for j in masks[0].unique() if j > 0]
        per_clip.append(len(ids))
        for j in ids:
            present = (masks == j).flatten(1).any(1).tolist()
            areas.append(float((masks[0] == j).float().mean()))
            if not all(present):
                vanish += 1
                gone = present.index(False)
                back += any(present[gone:])
    quantiles = np.quantile(areas, [0.0, 0.1, 0.5, 0.9, 1.0]).round(4).tolist()
    return {
        "clips": count, "objects_per_clip": statistics.fmean(per_clip),
        "frame0_area_min_p10_median_p90_max": quantiles,
        "objects_vanishing": vanish / len(areas), "vanished_objects_returning": back / max(vanish, 1),
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
