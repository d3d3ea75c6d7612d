"""An interactive session on the demo's real clip, as a user would run it: two clicks on a middle frame,
propagation both ways, a negative click on a later frame, propagation again. Scores J on the 8
hand-checked frames after each step and draws a few overlay frames.

    python benchmarks/session_demo.py              # benchmarks/results/session_demo/{session.json,session.png}

The clicks are the ones the standard click simulator (xmem.interactive.next_click) places against the
annotations of frames 100 and 175; the default model runs at its own settings on 2 threads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from xmem.interactive import Direction, VideoSession
from xmem.io.atomic import atomic_write
from xmem.io.masks import read_index_mask
from xmem.io.overlay import overlay_frame

ROOT = Path(__file__).resolve().parents[1]
CLICKS = {100: ([[266, 285], [354, 151]], [1, 1]), 175: ([[400, 255]], [0])}
FIGURE_FRAMES = (0, 100, 175, 216)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=ROOT / "demo" / "cup.mp4")
    parser.add_argument("--annotations", type=Path, default=ROOT / "demo" / "cup-annotations")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "session_demo")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    truth = {int(p.stem): read_index_mask(p) == 1 for p in sorted(args.annotations.glob("*.png"))}
    session = VideoSession(args.video)

    def scores() -> dict[str, float]:
        out = {}
        for t, gt in truth.items():
            pred = session.mask(t) == 1
            out[str(t)] = round(float((pred & gt).sum() / max(1, (pred | gt).sum())), 4)
        return out

    steps = []
    start = 100
    points, labels = CLICKS[start]
    session.add_clicks(start, 1, points, labels)
    began = time.perf_counter()
    frames = sum(1 for _ in session.propagate(start, Direction.BOTH))
    seconds = time.perf_counter() - began
    j = scores()
    steps.append({"step": f"clicks {points} on frame {start}, propagate both ways", "frames": frames,
                  "frames_per_second": round(frames / seconds, 2), "j": j, "mean_j": round(float(np.mean(list(j.values()))), 4)})  # fmt: skip
    before = [session.mask(t) for t in range(175)]
    points, labels = CLICKS[175]
    session.add_clicks(175, 1, points, labels)
    frames = sum(1 for _ in session.propagate(175))
    j = scores()
    unchanged = all((session.mask(t) == before[t]).all() for t in range(175))
    steps.append({"step": f"negative click {points} on frame 175, propagate forward", "frames": frames,
                  "masks_before_175_unchanged": unchanged, "j": j, "mean_j": round(float(np.mean(list(j.values()))), 4)})  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "session.json", "w") as f:
        json.dump({"video": str(args.video.relative_to(ROOT)), "steps": steps}, f, indent=1)
    tiles = []
    for t in FIGURE_FRAMES:
        tile = Image.fromarray(overlay_frame(session.frames[t], session.mask(t))).resize((320, 240))
        ImageDraw.Draw(tile).text((6, 4), f"frame {t}", fill=(0, 0, 0))
        tiles.append(tile)
    sheet = Image.new("RGB", (640, 480), "white")
    for k, tile in enumerate(tiles):
        sheet.paste(tile, ((k % 2) * 320, (k // 2) * 240))
    with atomic_write(args.out / "session.png") as f:
        sheet.save(f, format="PNG")
    for step in steps:
        print(
            step["step"], "mean J", step["mean_j"], {k: v for k, v in step.items() if k not in ("step", "j")}
        )


if __name__ == "__main__":
    main()
