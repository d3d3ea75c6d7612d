"""The demo's quality: J and F of the masks of ``make demo`` on the hand-checked frames of cup.mp4, and the
README's figure of a few overlay frames.

    make demo                                                     # writes out/demo/masks/
    python benchmarks/demo_quality.py                             # J and F per annotated frame
    python benchmarks/demo_quality.py --figure benchmarks/results/demo_frames.png \
        --json benchmarks/results/demo_quality.json               # the committed figure and figures

The annotations (demo/cup-annotations/, made by demo/make_masks.py and checked by eye) are the cup on
frames 25-216; frame 0 is the prompt and is not scored.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from xmem.io.atomic import atomic_write
from xmem.io.masks import read_index_mask
from xmem.io.overlay import overlay_frame
from xmem.io.video import VideoFile
from xmem.metrics import region_and_boundary

ROOT = Path(__file__).resolve().parents[1]
FIGURE_FRAMES = (0, 50, 100, 150, 200, 216)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=Path, default=ROOT / "out" / "demo" / "masks")
    parser.add_argument("--video", type=Path, default=ROOT / "demo" / "cup.mp4")
    parser.add_argument("--annotations", type=Path, default=ROOT / "demo" / "cup-annotations")
    parser.add_argument("--figure", type=Path, help="write a PNG of a few overlay frames")
    parser.add_argument("--json", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.masks.is_dir():
        print(f"error: {args.masks}: no masks (run make demo first)", file=sys.stderr)
        return 2

    annotated = {int(p.stem): p for p in sorted(args.annotations.glob("*.png"))}
    rows, tiles = [], []
    for index, frame in enumerate(VideoFile(args.video)):
        if index not in annotated and index not in FIGURE_FRAMES:
            continue
        pred = read_index_mask(args.masks / f"{index:05d}.png")
        if index in annotated:
            gt = read_index_mask(annotated[index])
            j, f = region_and_boundary(gt == 1, pred == 1)
            j, f = (float(np.asarray(x).ravel()[0]) for x in (j, f))  # one frame
            rows.append({"frame": index, "j": j, "f": f})
            print(f"frame {index:3d}: J {100 * j:5.1f}  F {100 * f:5.1f}")
        if index in FIGURE_FRAMES:
            tile = Image.fromarray(overlay_frame(frame, pred)).resize((320, 240), Image.BILINEAR)
            ImageDraw.Draw(tile).text((6, 4), f"frame {index}", fill=(0, 0, 0))
            tiles.append(tile)
    mean_j = float(np.mean([r["j"] for r in rows]))
    mean_f = float(np.mean([r["f"] for r in rows]))
    print(f"mean over {len(rows)} annotated frames: J {100 * mean_j:.1f}  F {100 * mean_f:.1f}")

    if args.figure is not None:
        columns = 3
        sheet = Image.new("RGB", (320 * columns, 240 * ((len(tiles) + columns - 1) // columns)), "white")
        for k, tile in enumerate(tiles):
            sheet.paste(tile, ((k % columns) * 320, (k // columns) * 240))
        with atomic_write(args.figure) as out:
            sheet.save(out, format="PNG")
    if args.json is not None:
        with atomic_write(args.json, "w") as out:
            json.dump({"frames": rows, "mean_j": mean_j, "mean_f": mean_f}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
