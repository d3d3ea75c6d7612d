"""bf16 against fp32 on the real-video benchmark: the share of pixels whose label bf16 leaves as fp32 gives it,
and J&F of both (the check behind precision ``auto``, which picks bf16 on CPUs and GPUs with native bf16).

    python benchmarks/real/fetch_clips.py                  # once: the videos
    python benchmarks/real_precision.py                    # the embedded default model, its settings
    python benchmarks/real_precision.py --weights XMem.pth --size 480 --name official-480

Every frame of every clip is compared (not only the annotated ones); J&F is the DAVIS protocol's on the
annotated frames (``real_jf.py``). Results: ``benchmarks/results/real/precision/<name>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from xmem.config import InferenceConfig, Precision
from xmem.eval.baselines import SegmenterPropagator
from xmem.inference.precision import cpu_bf16_units
from xmem.io.atomic import atomic_write
from xmem.io.masks import read_index_mask
from xmem.model.checkpoint import load_model

BENCHMARKS = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCHMARKS), str(BENCHMARKS / "real")]
from realclips import DEFAULT_CACHE, ClipError, annotation_path, clip_frames, load_manifest  # noqa: E402

from real_jf import HERE, overall, score_clip  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="XMem.pth or .safetensors (default: the embedded model)")
    parser.add_argument("--size", type=int, default=None, help="processing size (default: the weights')")
    parser.add_argument("--name", default="default", help="the results' file name")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "real" / "precision")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        _, clips = load_manifest()
        model = load_model(args.weights)
    except (ClipError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = InferenceConfig(size=args.size, device="cpu", precision=Precision.FP32)
    variants = {
        name: SegmenterPropagator(model, dataclasses.replace(base, precision=Precision(name)))
        for name in ("fp32", "bf16")
    }
    rows, scores = [], {name: [] for name in variants}
    equal_total = pixels_total = 0
    seconds = dict.fromkeys(variants, 0.0)
    frames_total = 0
    for clip in clips:
        frames = list(clip_frames(clip, args.cache))
        annotations = {t: read_index_mask(annotation_path(clip, t)) for t in clip.annotated}
        kept = {}
        for name, method in variants.items():
            start = time.perf_counter()
            score, kept[name] = score_clip(
                method, frames, annotations, name=clip.name, keep=range(len(frames))
            )
            seconds[name] += time.perf_counter() - start
            scores[name].append(score)
        equal = sum(int(np.count_nonzero(kept["fp32"][t] == kept["bf16"][t])) for t in kept["fp32"])
        pixels = sum(m.size for m in kept["fp32"].values())
        equal_total, pixels_total, frames_total = (
            equal_total + equal,
            pixels_total + pixels,
            frames_total + len(frames),
        )
        row = {
            "clip": clip.name,
            "split": clip.split,
            "agreement": equal / pixels,
            **{f"jf_{name}": scores[name][-1].result.summary.jf for name in variants},
        }
        rows.append(row)
        print(f"{clip.name:17s} bf16 = fp32 on {100 * row['agreement']:6.2f}% of pixels   J&F fp32 "
              f"{100 * row['jf_fp32']:5.1f}  bf16 {100 * row['jf_bf16']:5.1f}", flush=True)  # fmt: skip
    totals = {name: overall(scores[name]) for name in variants}
    result = {
        "name": args.name,
        "weights": str(args.weights) if args.weights else "embedded default model",
        "size": args.size,
        "cpu_bf16_units": list(cpu_bf16_units()),
        "threads": args.threads,
        "agreement": equal_total / pixels_total,
        "jf": {name: t["jf"] for name, t in totals.items()},
        "jf_drop": totals["fp32"]["jf"] - totals["bf16"]["jf"],
        "frames_per_second": {name: frames_total / seconds[name] for name in variants},
        "clips": rows,
    }
    print(f"all clips: bf16 = fp32 on {100 * result['agreement']:.2f}% of pixels; J&F fp32 "
          f"{100 * result['jf']['fp32']:.1f}, bf16 {100 * result['jf']['bf16']:.1f} (drop "
          f"{100 * result['jf_drop']:+.1f}); frames/s (with scoring) fp32 "
          f"{result['frames_per_second']['fp32']:.1f}, bf16 {result['frames_per_second']['bf16']:.1f}")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / f"{args.name}.json", "w") as out:
        json.dump(result, out, indent=1)
    print(f"wrote {args.out / args.name}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
