"""How far reduced precision moves the masks: fp32 against bf16 (and fp16 where supported) with trained
weights, on held-out synthetic composite videos.

    python benchmarks/precision_agreement.py --weights runs/synthetic-small/synthetic-best.safetensors
    python benchmarks/precision_agreement.py --default-model    # the embedded default model, at its size

For each precision: the share of pixels whose label equals fp32's, and J&F against the ground truth.
(With random weights the argmax is ill-conditioned, see README; trained weights are what users run.)
Results: benchmarks/results/precision_agreement.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xmem.config import InferenceConfig, Precision
from xmem.data import CompositeConfig, held_out_videos
from xmem.data.synthetic import CompositeVideo
from xmem.eval.baselines import SegmenterPropagator, score_propagation
from xmem.io.atomic import atomic_write
from xmem.metrics import summarize
from xmem.model.checkpoint import load_model
from xmem.model.network import XMem

HERE = Path(__file__).resolve().parent


def run(
    model: XMem, precision: Precision, videos: Sequence[CompositeVideo], size: int | None
) -> tuple[list[np.ndarray], float, float]:
    """Segments ``videos`` at ``precision``: their predicted masks, J&F and frames/s."""
    method = SegmenterPropagator(model, InferenceConfig(size=size, device="cpu", precision=precision))
    masks, results, seconds, frames = [], [], 0.0, 0
    for i, video in enumerate(videos):
        truth = [video.mask(t) for t in range(len(video))]
        scored = score_propagation(
            method,
            [video.frame(t) for t in range(len(video))],
            truth,
            name=f"heldout-{i}",
            keep_predictions=True,
        )
        assert scored.predictions is not None
        masks.append(np.stack(scored.predictions))
        results.append(scored.result)
        seconds += scored.seconds
        frames += scored.frames
    return masks, summarize(results).jf, frames / seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", type=Path, help="a model to measure (XMem.pth or .safetensors)")
    which.add_argument("--default-model", action="store_true", help="the embedded default model")
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="processing size (shorter side; -1: the video's; default: the size the weights were made for)",
    )
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "precision_agreement.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(None if args.default_model else args.weights)
    videos = held_out_videos(
        args.videos, CompositeConfig(height=args.height, width=args.width, length=args.frames, objects=(1, 3))
    )
    base, base_jf, base_fps = run(model, Precision.FP32, videos, args.size)
    rows = [{"precision": "fp32", "agreement_with_fp32": 1.0, "jf": base_jf, "fps": base_fps}]
    print(f"fp32: J&F {100 * base_jf:.1f}, {base_fps:.2f} frames/s")
    for precision in (Precision.BF16,):
        masks, jf, fps = run(model, precision, videos, args.size)
        agree = float(np.mean([(a == b).mean() for a, b in zip(masks, base, strict=True)]))
        rows.append({"precision": precision.value, "agreement_with_fp32": agree, "jf": jf, "fps": fps})
        print(
            f"{precision.value}: {100 * agree:.2f}% of pixels equal fp32's, J&F {100 * jf:.1f}, {fps:.2f} frames/s"
        )
    setup = {k: getattr(args, k) for k in ("videos", "frames", "height", "width", "size", "threads")}
    setup["weights"] = "default" if args.default_model else str(args.weights)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump({"setup": setup, "results": rows}, f, indent=2)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
