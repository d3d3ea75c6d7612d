"""Click-to-mask quality and speed of the built-in interactive predictors, by the standard protocol.

    python benchmarks/click_noc.py                     # writes benchmarks/results/click_noc/
    python benchmarks/click_noc.py --objects 6 --out /tmp/noc   # a quick run

The protocol (Xu et al. 2016, as RITM / SimpleClick evaluate it): from an empty mask, the simulated user
clicks at the interior point farthest from the boundary of the largest error region (positive on missed
object, negative on wrongly marked background); each prediction uses all clicks so far and the last
prediction; 20 clicks at most. Reported per predictor and data set: NoC@85 and NoC@90 (clicks to reach
that IoU, 20 if never), mean IoU after 1, 3 and 5 clicks, and the median / 90th-percentile time of one
click -> mask (480-row frames, this machine's CPU).

Data: (a) synthetic: frame 0 of held-out composite videos at 480×854, one object at a time (objects of
at least --min-area of the frame); (b) real: the 8 hand-checked annotated frames of demo/cup.mp4 (480×640,
object 1). Writes click_noc.json (summary and per-object rows), click_noc.csv (one row per object and
predictor, with the IoU after every click) and example.png (a cup frame with the clicks and the masks
after 1 and 3 clicks), all atomically.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from xmem.data import CompositeConfig, held_out_videos
from xmem.interactive import (
    GrabCutPredictor,
    MaskPredictor,
    ProtocolResult,
    RandomWalkerPredictor,
    run_protocol,
)
from xmem.io.atomic import atomic_write
from xmem.io.masks import read_index_mask
from xmem.io.video import VideoFile

ROOT = Path(__file__).resolve().parents[1]
CUP_FRAMES = (25, 50, 75, 100, 125, 175, 200, 216)
FIGURE_FRAME = 100
SHOWN_CLICKS = (1, 3)


def synthetic_items(videos: int, objects: int, min_area: float) -> list[tuple[str, np.ndarray, np.ndarray]]:
    items = []
    for seed, video in enumerate(held_out_videos(videos, CompositeConfig(height=480, width=854, length=1))):
        frame, mask = video.frame(0), video.mask(0)
        for obj in range(1, video.num_objects + 1):
            gt = mask == obj
            if gt.mean() >= min_area and len(items) < objects:
                items.append((f"heldout{seed:02d}-obj{obj}", frame, gt))
    return items


def cup_items(video: Path, annotations: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    items = []
    for index, frame in enumerate(VideoFile(video)):
        if index in CUP_FRAMES:
            gt = read_index_mask(annotations / f"{index:05d}.png") == 1
            items.append((f"cup-{index:05d}", frame, gt))
        if index >= max(CUP_FRAMES):
            break
    return items


def summarise(results: list[ProtocolResult]) -> dict:
    seconds = np.concatenate([r.seconds for r in results])
    return {
        "objects": len(results),
        "noc85": float(np.mean([r.noc85 for r in results])),
        "noc90": float(np.mean([r.noc90 for r in results])),
        "iou_after_1": float(np.mean([r.ious[0] for r in results])),
        "iou_after_3": float(np.mean([r.ious[2] for r in results])),
        "iou_after_5": float(np.mean([r.ious[4] for r in results])),
        "never_90": int(sum(max(r.ious) < 0.9 for r in results)),  # NoC@90 = max clicks: never reached
        "clicks_timed": len(seconds),
        "ms_median": float(1e3 * np.median(seconds)),
        "ms_p90": float(1e3 * np.percentile(seconds, 90)),
    }


def figure(path: Path, frame: np.ndarray, gt: np.ndarray, runs: dict[str, ProtocolResult]) -> None:
    """One row per predictor, one column per entry of SHOWN_CLICKS: the frame, the clicks so far (green
    +: positive, red ×: negative; numbered), the predicted outline (yellow) and the ground truth (cyan)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = len(runs), len(SHOWN_CLICKS)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for r, (name, result) in enumerate(runs.items()):
        for c, k in enumerate(SHOWN_CLICKS):
            ax = axes[r][c]
            ax.imshow(frame)
            ax.contour(gt, levels=[0.5], colors="cyan", linewidths=1.0, linestyles="dashed")
            mask = result.masks.get(k)
            if mask is not None and mask.any():
                ax.contour(mask, levels=[0.5], colors="yellow", linewidths=1.6)
            for i, click in enumerate(result.clicks[:k]):
                marker, colour = ("+", "lime") if click.positive else ("x", "red")
                ax.plot(click.x, click.y, marker=marker, color=colour, markersize=12, mew=2.5)
                ax.annotate(str(i + 1), (click.x + 6, click.y - 6), color=colour, fontsize=10, weight="bold")
            ax.set_title(f"{name}: {k} click{'s' if k > 1 else ''}, IoU {result.ious[k - 1]:.3f}", fontsize=9)
            ax.axis("off")
    fig.suptitle(
        f"demo/cup.mp4 frame {FIGURE_FRAME}: predicted (yellow) vs annotated (cyan dashed) outline",
        fontsize=10,
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "click_noc")
    parser.add_argument("--videos", type=int, default=10, help="held-out composite videos (default 10)")
    parser.add_argument("--objects", type=int, default=20, help="synthetic objects at most (default 20)")
    parser.add_argument("--min-area", type=float, default=0.002, help="smallest object, fraction of frame")
    parser.add_argument("--max-clicks", type=int, default=20)
    parser.add_argument("--video", type=Path, default=ROOT / "demo" / "cup.mp4")
    parser.add_argument("--annotations", type=Path, default=ROOT / "demo" / "cup-annotations")
    parser.add_argument("--no-figure", action="store_true", help="skip example.png")
    args = parser.parse_args(argv)
    if args.max_clicks < 5:
        parser.error("--max-clicks must be at least 5 (IoU after 5 clicks is reported)")
    args.out.mkdir(parents=True, exist_ok=True)

    datasets = {
        "synthetic": synthetic_items(args.videos, args.objects, args.min_area),
        "cup": cup_items(args.video, args.annotations),
    }
    predictors: dict[str, MaskPredictor] = {
        "grabcut": GrabCutPredictor(),
        "random_walker": RandomWalkerPredictor(),
    }
    summary: dict[str, dict[str, dict]] = {}
    rows: list[dict] = []
    shown: dict[str, ProtocolResult] = {}
    started = time.perf_counter()
    for pname, predictor in predictors.items():
        summary[pname] = {}
        for dname, items in datasets.items():
            results = []
            for name, frame, gt in items:
                result = run_protocol(
                    predictor, frame, gt, max_clicks=args.max_clicks, keep_masks=SHOWN_CLICKS
                )
                results.append(result)
                if name == f"cup-{FIGURE_FRAME:05d}":
                    shown[pname] = result
                rows.append(
                    {
                        "predictor": pname,
                        "dataset": dname,
                        "object": name,
                        "frame_size": f"{frame.shape[1]}x{frame.shape[0]}",
                        "area": float(gt.mean()),
                        "noc85": result.noc85,
                        "noc90": result.noc90,
                        "clicks_made": len(result.clicks),
                        "ms_median": float(1e3 * np.median(result.seconds)),
                        "ious": [round(v, 4) for v in result.ious],
                    }
                )
            summary[pname][dname] = summarise(results)
            s = summary[pname][dname]
            print(
                f"  {pname:<14} {dname:<10} NoC@85 {s['noc85']:5.2f}  NoC@90 {s['noc90']:5.2f}  "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )

    config = {
        "max_clicks": args.max_clicks,
        "synthetic": f"frame 0 of held_out_videos({args.videos}, CompositeConfig(height=480, width=854, length=1)), "
        f"objects of at least {args.min_area} of the frame, at most {args.objects}",
        "cup": f"{args.video.name} frames {list(CUP_FRAMES)}, annotations {args.annotations.name}, object 1",
        "predictors": {name: repr(p) for name, p in predictors.items()},
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
    }
    with atomic_write(args.out / "click_noc.json", "w") as f:
        json.dump({"config": config, "summary": summary, "objects": rows}, f, indent=1)
    buf = io.StringIO()
    fields = [k for k in rows[0] if k != "ious"] + [f"iou_{k}" for k in range(1, args.max_clicks + 1)]
    writer = csv.writer(buf)
    writer.writerow(fields)
    for row in rows:
        writer.writerow([row[k] for k in fields if not k.startswith("iou_")] + row["ious"])
    with atomic_write(args.out / "click_noc.csv", "w") as f:
        f.write(buf.getvalue())
    if not args.no_figure and shown:
        frame, gt = next((f, g) for n, f, g in datasets["cup"] if n == f"cup-{FIGURE_FRAME:05d}")
        figure(args.out / "example.png", frame, gt, shown)

    print()
    header = (
        f"{'predictor':<14} {'data':<10} {'n':>3} {'NoC@85':>7} {'NoC@90':>7} {'IoU@1':>6} {'IoU@3':>6} "
        f"{'IoU@5':>6} {'>20@90':>6} {'ms med':>7} {'ms p90':>7}"
    )
    print(header)
    print("-" * len(header))
    for pname, by_data in summary.items():
        for dname, s in by_data.items():
            print(
                f"{pname:<14} {dname:<10} {s['objects']:>3} {s['noc85']:>7.2f} {s['noc90']:>7.2f} "
                f"{s['iou_after_1']:>6.3f} {s['iou_after_3']:>6.3f} {s['iou_after_5']:>6.3f} "
                f"{s['never_90']:>6d} {s['ms_median']:>7.1f} {s['ms_p90']:>7.1f}"
            )
    print(f"\nwrote {args.out}/click_noc.json, click_noc.csv" + ("" if args.no_figure else ", example.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
