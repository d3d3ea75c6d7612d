"""Render training samples and evaluation frames to one PNG, for a person to look at.

    python benchmarks/show_data.py                         # writes docs/data_samples.png
    python benchmarks/show_data.py --davis /data/DAVIS     # adds rows of DAVIS training clips
    python benchmarks/show_data.py --videos /usr/share/doc/opencv-doc/examples/data
    python benchmarks/show_data.py --real-scenes 8 --out docs/real_scenes_samples.png   # real scenes only

Rows, top to bottom: synthetic training clips (CompositeClipDataset), stage-0 sequences of the bundled
photographs (StaticImageDataset over PhotoComposites), frames of held-out evaluation videos
(every 10th frame), then optionally DAVIS-layout clips. Object masks are drawn over the frames as
coloured tints with outlines (DAVIS palette colours).

With ``--real-scenes N``: N real-scene videos (xmem.data.real_scenes, photographs from
benchmarks/install_real_photos.py) instead, one per row, every ``--every``-th frame at ``--real-size``;
tracked objects are outlined, look-alikes, crowds and occluding structures are not (they are background).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xmem.data import (
    CompositeClipConfig,
    CompositeClipDataset,
    CompositeConfig,
    Split,
    StaticConfig,
    VOSConfig,
    VOSDataset,
    background_videos,
    held_out_videos,
    photo_static_dataset,
)
from xmem.data.real_scenes import RealSceneConfig, RealSceneVideo
from xmem.io.atomic import atomic_write
from xmem.io.masks import DAVIS_PALETTE

ROOT = Path(__file__).resolve().parent.parent


def overlay(frame: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """H×W×3 uint8 frame with the objects of an H×W id mask lightly tinted and outlined in their
    palette colours (the outline is drawn on the object's side of the boundary)."""
    out = frame.astype(np.float32)
    colours = DAVIS_PALETTE[mask].astype(np.float32)
    objects = mask > 0
    out[objects] = 0.8 * out[objects] + 0.2 * colours[objects]
    edge = np.zeros_like(objects)
    for shift in (1, 2):
        edge[shift:, :] |= mask[shift:, :] != mask[:-shift, :]
        edge[:-shift, :] |= mask[:-shift, :] != mask[shift:, :]
        edge[:, shift:] |= mask[:, shift:] != mask[:, :-shift]
        edge[:, :-shift] |= mask[:, :-shift] != mask[:, shift:]
    edge &= objects
    out[edge] = colours[edge]
    return out.clip(0, 255).astype(np.uint8)


def sample_row(sample: dict[str, torch.Tensor], columns: int) -> list[np.ndarray]:
    frames = (sample["frames"] * 255 + 0.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    masks = sample["masks"].numpy()
    return [overlay(f, m) for f, m in zip(frames[:columns], masks[:columns], strict=True)]


def grid(rows: list[list[np.ndarray]], tile: int, gap: int = 2, aspect: float = 1.0) -> np.ndarray:
    """Rows of images as tiles ``tile`` high and ``tile · aspect`` wide."""
    columns = max(len(r) for r in rows)
    tw = round(tile * aspect)
    canvas = np.full((len(rows) * (tile + gap) - gap, columns * (tw + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            thumb = np.asarray(Image.fromarray(image).resize((tw, tile), Image.Resampling.BILINEAR))
            canvas[i * (tile + gap) : i * (tile + gap) + tile, j * (tw + gap) : j * (tw + gap) + tw] = thumb
    return canvas


def real_scene_rows(
    count: int, size: tuple[int, int], every: int, columns: int, seed: int
) -> list[list[np.ndarray]]:
    config = RealSceneConfig(height=size[0], width=size[1], length=every * columns)
    rows = []
    for s in range(seed, seed + count):
        video = RealSceneVideo(config, s)
        rows.append([overlay(video.frame(t), video.mask(t)) for t in range(0, every * columns, every)])
        print(f"row {len(rows)}: {', '.join(video.sources)}; {video.num_objects} tracked, "
              f"{video.num_distractors} unlabelled")  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "data_samples.png")
    parser.add_argument("--size", type=int, default=192, help="rendered sample size (pixels)")
    parser.add_argument("--tile", type=int, default=112, help="size of a tile in the PNG")
    parser.add_argument("--rows", type=int, default=3, help="rows per kind of data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--davis", type=Path, help="a DAVIS / YouTube-VOS layout folder to add rows of")
    parser.add_argument("--videos", type=Path, help="a folder of background videos (needs PyAV)")
    parser.add_argument("--real-scenes", type=int, default=0, help="show this many real-scene videos only")
    parser.add_argument("--real-size", type=int, nargs=2, default=(216, 384), metavar=("H", "W"))
    parser.add_argument("--every", type=int, default=8, help="real scenes: frames between columns")
    parser.add_argument("--columns", type=int, default=6, help="real scenes: frames per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.real_scenes:
        rows = real_scene_rows(args.real_scenes, tuple(args.real_size), args.every, args.columns, args.seed)
        return _save(grid(rows, args.tile, aspect=args.real_size[1] / args.real_size[0]), args.out, len(rows))

    train_videos = background_videos(Split.TRAIN, args.videos) if args.videos else ()
    held_out = background_videos(Split.HELD_OUT, args.videos) if args.videos else ()
    video = CompositeConfig(height=args.size, width=args.size, length=1000, background_videos=train_videos)
    clips = CompositeClipDataset(CompositeClipConfig(video=video, max_skip=10), seed=args.seed)
    static = photo_static_dataset(100, StaticConfig(size=args.size, num_frames=3), seed=args.seed)
    rows = [sample_row(clips[i], 8) for i in range(args.rows)]
    rows += [sample_row(static[i], 3) for i in range(args.rows)]
    eval_config = CompositeConfig(height=args.size, width=args.size, length=80, background_videos=held_out)
    for v in held_out_videos(args.rows, eval_config):
        rows.append([overlay(v.frame(t), v.mask(t)) for t in range(0, 80, 10)])
    if args.davis:
        davis = VOSDataset(args.davis, replace(VOSConfig(), size=args.size), seed=args.seed)
        rows += [sample_row(davis[i], 8) for i in range(min(args.rows, len(davis)))]

    return _save(grid(rows, args.tile), args.out, len(rows))


def _save(canvas: np.ndarray, out: Path, rows: int) -> int:
    image = Image.fromarray(canvas).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=0)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as f:
        image.save(f, format="PNG", optimize=True)
    print(f"{out}: {rows} rows, {out.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
