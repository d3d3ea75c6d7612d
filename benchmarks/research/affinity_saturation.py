"""How saturated a model's memory affinities are: does a query read one memory element or several?

    python benchmarks/research/affinity_saturation.py --default-model
    python benchmarks/research/affinity_saturation.py --weights a.safetensors b.safetensors --scale 0.01

For each model (``--scale`` first multiplies its similarities, as ``init.similarity_scale`` does in
training: ``KeyProjection.scale_similarity``), every frame t ≥ 1 of ``--videos`` validation composite
videos (seeds from 1,000,000; processed at their size) reads frame 0 as its memory: the anisotropic L2
similarity of the engine, then the top-k softmax (k = 30). Reported, as medians over all query
positions: the gap between the best and the second-best similarity, and the weight of the best element.
``saturated`` is the share of positions whose best element takes more than 0.99 of the weight: there the
softmax is one-hot, and training passes no gradient to the keys. ``sink_share``: the share of all read
weight that goes to the 5% of memory elements with the lowest shrinkage (5% if shrinkage did not matter;
elements with a shrinkage near 1 have a similarity near 0 whatever the query, and draw the reads).
``object_reads``: for query positions inside an object (stride-16 cells at least 60% covered by it), the
share of their read weight on memory cells of the same object (ground truth of frame 0, majority per
cell): what the memory tells the decoder about which object is there. ``--offset`` first gives the
weights a shrinkage offset (``KeyProjection.offset_shrinkage``).
Results: benchmarks/results/affinity_saturation.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from xmem.data import held_out_videos
from xmem.data.synthetic import VALIDATION_FIRST_SEED
from xmem.inference.preprocess import image_to_tensor, normalize, pad_to_multiple
from xmem.io.atomic import atomic_write
from xmem.memory.similarity import similarity, topk_softmax
from xmem.model.checkpoint import load_model
from xmem.model.network import XMem

BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/, which holds common.py and results/
sys.path.insert(0, str(BENCHMARKS))

from common import add_clip_arguments, clip_config  # noqa: E402

TOP_K = 30


def cell_labels(mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per stride-16 cell of the padded frame: the majority label and the share of the cell it covers."""
    labels, _ = pad_to_multiple(torch.from_numpy(mask.astype(np.int64))[None].float())
    onehot = F.one_hot(labels[0].long(), int(mask.max()) + 1).permute(2, 0, 1).float()[None]
    share = F.avg_pool2d(onehot, 16)[0].flatten(1)  # L×cells
    return share.argmax(0), share.max(0).values


@torch.no_grad()
def saturation(model: XMem, frames: list[list], masks: list[np.ndarray]) -> dict[str, float]:
    """Median top-1/top-2 similarity gap, median top-1 weight and the share above 0.99, the sink share and
    the object reads, over ``frames`` (per video: frame 0 is the memory, the others query it; ``masks``:
    frame 0's and the queries' ground truth, per video)."""
    gaps, tops, sinks, reads = [], [], [], []
    for video, video_masks in zip(frames, masks, strict=True):
        keys = []
        for frame in video:
            image, _ = pad_to_multiple(normalize(image_to_tensor(frame, torch.device("cpu"))))
            key, shrinkage, selection, _ = model.encode_key(image[None])
            keys.append((key[0].flatten(1), shrinkage[0, 0].flatten(), selection[0].flatten(1)))
        mem_key, mem_shrinkage, _ = keys[0]
        mem_label, _ = cell_labels(video_masks[0])
        lowest = mem_shrinkage <= mem_shrinkage.quantile(0.05)
        for (query, _, query_selection), mask in zip(keys[1:], video_masks[1:], strict=True):
            sim = similarity(mem_key, mem_shrinkage, query, query_selection)  # M×N
            best2 = sim.topk(2, dim=1).values
            gaps.append(best2[:, 0] - best2[:, 1])
            weights, indices = topk_softmax(sim, TOP_K)
            tops.append(weights.max(dim=1).values)
            sinks.append((weights * lowest[indices]).sum(1))
            label, share = cell_labels(mask)
            inside = (label > 0) & (share >= 0.6)
            same = mem_label[indices[inside]] == label[inside, None]
            reads.append((weights[inside] * same).sum(1))
    gap, top = torch.cat(gaps), torch.cat(tops)
    return {
        "median_gap": gap.median().item(),
        "median_top1_weight": top.median().item(),
        "saturated": (top > 0.99).float().mean().item(),
        "sink_share": torch.cat(sinks).mean().item(),
        "object_reads": torch.cat(reads).mean().item(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--weights", type=Path, nargs="+", help="models to measure")
    which.add_argument("--default-model", action="store_true", help="the embedded default model")
    parser.add_argument("--scale", type=float, default=1.0, help="similarity scale applied first")
    parser.add_argument("--offset", type=float, default=1.0, help="shrinkage offset applied first")
    add_clip_arguments(parser, videos=4, first_seed=VALIDATION_FIRST_SEED, frames=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "affinity_saturation.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    videos = held_out_videos(args.videos, clip_config(args), first_seed=args.first_seed)
    frames = [[video.frame(t) for t in range(len(video))] for video in videos]
    masks = [[video.mask(t) for t in range(len(video))] for video in videos]
    rows = []
    for path in args.weights or [None]:
        model = load_model(path).float().eval()
        if args.scale != 1.0:
            model.key_proj.scale_similarity(args.scale)
        if args.offset != 1.0:
            model.key_proj.offset_shrinkage(args.offset)
        row = {
            "weights": "default" if path is None else str(path),
            "scale": args.scale,
            "offset": args.offset,
        }
        row.update(saturation(model, frames, masks))
        rows.append(row)
        print(
            f"{row['weights']} (scale {args.scale:g}): median gap {row['median_gap']:.2f}, median top-1 "
            f"weight {row['median_top1_weight']:.3f}, saturated {100 * row['saturated']:.1f}%, sink share "
            f"{100 * row['sink_share']:.1f}%, object reads {100 * row['object_reads']:.1f}%",
            flush=True,
        )
    setup = {k: getattr(args, k) for k in ("videos", "frames", "height", "width")}
    setup["first_seed"], setup["top_k"] = args.first_seed, TOP_K
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump({"setup": setup, "results": rows}, f, indent=2)
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
