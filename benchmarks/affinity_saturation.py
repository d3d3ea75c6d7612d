"""How saturated a model's memory affinities are: does a query read one memory element or several?

    python benchmarks/affinity_saturation.py --default-model
    python benchmarks/affinity_saturation.py --weights a.safetensors b.safetensors --scale 0.01

For each model (``--scale`` first multiplies its similarities, as ``init.similarity_scale`` does in
training: ``KeyProjection.scale_similarity``), every frame t ≥ 1 of ``--videos`` validation composite
videos (seeds from 1,000,000; processed at their size) reads frame 0 as its memory: the anisotropic L2
similarity of the engine, then the top-k softmax (k = 30). Reported, as medians over all query
positions: the gap between the best and the second-best similarity, and the weight of the best element.
``saturated`` is the share of positions whose best element takes more than 0.99 of the weight: there the
softmax is one-hot, and training passes no gradient to the keys.
Results: benchmarks/results/affinity_saturation.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from xmem.data import CompositeConfig, held_out_videos
from xmem.data.synthetic import VALIDATION_FIRST_SEED
from xmem.inference.preprocess import image_to_tensor, normalize, pad_to_multiple
from xmem.io.atomic import atomic_write
from xmem.memory.similarity import similarity, topk_softmax
from xmem.model.checkpoint import load_model
from xmem.model.network import XMem

HERE = Path(__file__).resolve().parent
TOP_K = 30


@torch.no_grad()
def saturation(model: XMem, frames: list[list]) -> dict[str, float]:
    """Median top-1/top-2 similarity gap, median top-1 weight and the share above 0.99, over ``frames``
    (per video: frame 0 is the memory, the others query it)."""
    gaps, tops = [], []
    for video in frames:
        keys = []
        for frame in video:
            image, _ = pad_to_multiple(normalize(image_to_tensor(frame, torch.device("cpu"))))
            key, shrinkage, selection, _ = model.encode_key(image[None])
            keys.append((key[0].flatten(1), shrinkage[0, 0].flatten(), selection[0].flatten(1)))
        mem_key, mem_shrinkage, _ = keys[0]
        for query, _, query_selection in keys[1:]:
            sim = similarity(mem_key, mem_shrinkage, query, query_selection)  # M×N
            best2 = sim.topk(2, dim=1).values
            gaps.append(best2[:, 0] - best2[:, 1])
            tops.append(topk_softmax(sim, TOP_K)[0].max(dim=1).values)
    gap, top = torch.cat(gaps), torch.cat(tops)
    return {
        "median_gap": gap.median().item(),
        "median_top1_weight": top.median().item(),
        "saturated": (top > 0.99).float().mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", type=Path, nargs="+", help="models to measure")
    which.add_argument("--default-model", action="store_true", help="the embedded default model")
    parser.add_argument("--scale", type=float, default=1.0, help="similarity scale applied first")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=427)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "affinity_saturation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = CompositeConfig(height=args.height, width=args.width, length=args.frames)
    videos = held_out_videos(args.videos, config, first_seed=VALIDATION_FIRST_SEED)
    frames = [[video.frame(t) for t in range(len(video))] for video in videos]
    rows = []
    for path in args.weights or [None]:
        model = load_model(path).float().eval()
        if args.scale != 1.0:
            model.key_proj.scale_similarity(args.scale)
        row = {"weights": "default" if path is None else str(path), "scale": args.scale}
        row.update(saturation(model, frames))
        rows.append(row)
        print(
            f"{row['weights']} (scale {args.scale:g}): median gap {row['median_gap']:.2f}, median top-1 "
            f"weight {row['median_top1_weight']:.3f}, saturated {100 * row['saturated']:.1f}%",
            flush=True,
        )
    setup = {k: getattr(args, k) for k in ("videos", "frames", "height", "width")}
    setup["first_seed"], setup["top_k"] = VALIDATION_FIRST_SEED, TOP_K
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump({"setup": setup, "results": rows}, f, indent=2)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
