"""Per-object trace of a model on one held-out benchmark video: what it predicts for each object, frame by
frame, and a figure of a few frames (ground truth beside prediction). For finding out *how* a video fails
(an object lost, two objects' labels swapped, a spurious region kept), which J&F alone does not say.

    python benchmarks/research/trace_objects.py --default-model --video 21 --figure-frames 0,10,30,95 \
        --out benchmarks/results/trace_heldout21

The video is ``held_out_videos`` seed ``--first-seed + --video`` (the same clip as heldout_jf.py's
``heldout<NN>``), 100 frames at 240×427, played ``--pingpong`` times back and forth. Results (``--out``):
trace.csv (per played frame and object: ground-truth and predicted pixels, IoU, and the object whose
ground truth most of the predicted pixels cover: ``same`` when right, another id when the label sits on
another object, ``bg`` on the background), trace.png (rows: frame, ground truth, prediction; DAVIS
palette), and a per-object summary on stdout.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xmem.data import held_out_videos
from xmem.eval.baselines import SegmenterPropagator, score_propagation
from xmem.eval.bench import pingpong_order
from xmem.eval.metrics import region_similarity
from xmem.inference.options import add_engine_arguments, engine_config
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.io.overlay import overlay_frame
from xmem.model.checkpoint import load_model

BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/, which holds common.py and results/
sys.path.insert(0, str(BENCHMARKS))

from common import add_clip_arguments, clip_config  # noqa: E402


def where_it_lies(gt: np.ndarray, pred_region: np.ndarray, obj: int) -> str:
    """Which ground-truth label covers most of ``pred_region``: ``same`` (``obj``), another id, ``bg``, or
    ``-`` when nothing is predicted."""
    if not pred_region.any():
        return "-"
    counts = np.bincount(gt[pred_region], minlength=int(gt.max()) + 1)
    top = int(counts.argmax())
    return "same" if top == obj else "bg" if top == 0 else str(top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, help="a model (XMem.pth or .safetensors)")
    parser.add_argument("--default-model", action="store_true", help="the embedded default model")
    parser.add_argument("--video", type=int, required=True, help="index of the benchmark video (heldout<NN>)")
    add_clip_arguments(parser, first_seed=0, frames=100)
    parser.add_argument("--pingpong", type=int, default=1)
    parser.add_argument(
        "--figure-frames", default="0,10,30,60", help="played frames shown in trace.png (comma-separated)"
    )
    add_engine_arguments(parser)
    parser.set_defaults(size=-1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "trace")
    args = parser.parse_args()
    if (args.weights is None) == (not args.default_model):
        parser.error("give exactly one of --weights and --default-model")
    try:
        config = engine_config(args)
        shown = [int(t) for t in args.figure_frames.split(",")]
    except (InputError, ValueError) as exc:
        parser.error(str(exc))
    order = pingpong_order(args.frames, args.pingpong)
    if not all(0 <= t < len(order) for t in shown):
        parser.error(f"--figure-frames: played frames are 0..{len(order) - 1}")
    torch.set_num_threads(args.threads)

    video_config = clip_config(args)
    (video,) = held_out_videos(1, video_config, first_seed=args.first_seed + args.video)
    frames = [video.frame(t) for t in range(len(video))]
    masks = [video.mask(t) for t in range(len(video))]
    propagator = SegmenterPropagator(load_model(args.weights), config)
    scored = score_propagation(propagator, frames, masks, order, keep_predictions=True)
    assert scored.predictions is not None
    objects = [int(o) for o in np.unique(masks[order[0]]) if o]

    rows = []
    for i, t in enumerate(order):
        gt, pred = masks[t], scored.predictions[i]
        for obj in objects:
            g, p = gt == obj, pred == obj
            rows.append(
                {
                    "played": i,
                    "frame": t,
                    "object": obj,
                    "gt_pixels": int(g.sum()),
                    "pred_pixels": int(p.sum()),
                    "iou": round(float(region_similarity(g, p)[0]), 4),
                    "lies_on": where_it_lies(gt, p, obj),
                }
            )
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "trace.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    tiles = [
        np.concatenate(
            [
                frames[order[i]],
                overlay_frame(frames[order[i]], masks[order[i]]),
                overlay_frame(frames[order[i]], scored.predictions[i]),
            ],
            axis=1,
        )
        for i in shown
    ]
    with atomic_write(args.out / "trace.png") as f:
        Image.fromarray(np.concatenate(tiles, axis=0)).save(f, format="PNG")

    s = scored.result.summary
    print(
        f"heldout{args.video:02d} ({len(objects)} objects, {len(order)} played frames): J&F {100 * s.jf:.1f}"
    )
    for obj in objects:
        mine = [r for r in rows if r["object"] == obj and r["played"] > 0]
        swapped = [r for r in mine if r["lies_on"] not in ("same", "-", "bg")]
        first = swapped[0]["played"] if swapped else None
        print(
            f"  object {obj}: mean IoU {np.mean([r['iou'] for r in mine]):.2f}; its label on another object "
            f"in {len(swapped)} of {len(mine)} frames"
            + (f", first at played frame {first}" if swapped else "")
        )
    print(f"results in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
