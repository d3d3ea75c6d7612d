"""Inference settings of a model, tuned on validation videos: J&F for each setting of a sweep.

    python benchmarks/research/inference_sweep.py --default-model --set mem_every=1,2,5
    python benchmarks/research/inference_sweep.py --default-model --set size=240,288 --set top_k=15,30
    python benchmarks/research/inference_sweep.py --default-model --set max_working_frames=10,20
    python benchmarks/research/inference_sweep.py --default-model --shrinkage-offsets 1,30,100

Videos: ``held_out_videos`` from ``--first-seed`` (default 1,000,000: the seeds the trainer validates on,
never the benchmark's 0-9), rendered once and scored by the DAVIS protocol for every combination of the
``--set`` values (``NAME=V1,V2,...``; NAME is ``size``, ``precision`` or a :class:`MemoryConfig` field),
played once and, with ``--pingpong K``, K times back and forth. ``--shrinkage-offsets`` repeats the sweep
for the model given each shrinkage offset (``KeyProjection.offset_shrinkage``, a change of the weights).
Choose settings here, then measure them once on the benchmark (``heldout_jf.py``); tuning on the benchmark's own seeds would overstate it.

Results (``--out``, default benchmarks/results/inference_sweep): sweep.csv (per setting, variant and
video) and sweep.json (setup and the overall figures per setting).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
import sys
import time
from pathlib import Path

import torch

from xmem.config import InferenceConfig, MemoryConfig, Precision
from xmem.data import held_out_videos
from xmem.data.synthetic import VALIDATION_FIRST_SEED
from xmem.eval.baselines import SegmenterPropagator, score_propagation
from xmem.eval.bench import pingpong_order
from xmem.eval.protocol import VideoResult, summarize
from xmem.io.atomic import atomic_write
from xmem.model.checkpoint import load_model

BENCHMARKS = Path(__file__).resolve().parents[1]  # benchmarks/, which holds common.py and results/
sys.path.insert(0, str(BENCHMARKS))

from common import add_clip_arguments, clip_config  # noqa: E402

MEMORY_FIELDS = {f.name: f.type for f in dataclasses.fields(MemoryConfig)}


def parse_value(name: str, text: str) -> object:
    if name == "precision":
        return Precision(text)
    if name == "size":
        return None if text == "none" else int(text)
    kind = MEMORY_FIELDS[name]
    if "bool" in str(kind):
        if text not in ("true", "false"):
            raise ValueError(f"{name} takes true or false, not {text!r}")
        return text == "true"
    if text == "none":
        if "None" not in str(kind):
            raise ValueError(f"{name} cannot be none")
        return None
    return int(text)


def parse_sets(items: list[str]) -> dict[str, list[object]]:
    grid: dict[str, list[object]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"--set {item!r}: expected NAME=V1,V2,...")
        if name not in MEMORY_FIELDS and name not in ("size", "precision"):
            raise ValueError(f"--set {item!r}: unknown setting {name!r}")
        grid[name] = [parse_value(name, v) for v in values.split(",")]
    return grid


def make_config(base: InferenceConfig, setting: dict[str, object]) -> InferenceConfig:
    memory = {k: v for k, v in setting.items() if k in MEMORY_FIELDS}
    top = {k: v for k, v in setting.items() if k not in MEMORY_FIELDS}
    return dataclasses.replace(base, memory=dataclasses.replace(base.memory, **memory), **top)


def label(setting: dict[str, object]) -> str:
    parts = [f"{k}={v.value if isinstance(v, Precision) else v}" for k, v in setting.items()]
    return " ".join(parts) or "defaults"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, help="a model (XMem.pth or .safetensors)")
    parser.add_argument("--default-model", action="store_true", help="the embedded default model")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=V1,V2", help="a swept setting")
    parser.add_argument(
        "--shrinkage-offsets",
        default="1",
        help="comma-separated shrinkage offsets given to the weights, each swept (default: 1, unchanged)",
    )
    add_clip_arguments(parser, videos=10, first_seed=VALIDATION_FIRST_SEED, frames=100)
    parser.add_argument("--pingpong", type=int, default=1, help="also score K× back and forth (1: only 1×)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=BENCHMARKS / "results" / "inference_sweep")
    args = parser.parse_args()
    if (args.weights is None) == (not args.default_model):
        parser.error("give exactly one of --weights and --default-model")
    try:
        grid = parse_sets(args.set)
        offsets = [float(x) for x in args.shrinkage_offsets.split(",")]
        if not all(x >= 1 for x in offsets):
            raise ValueError(f"--shrinkage-offsets must be at least 1, got {args.shrinkage_offsets}")
    except (ValueError, KeyError) as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)

    base = InferenceConfig(device=args.device)
    settings = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    variants = {"1x": pingpong_order(args.frames, 1)}
    if args.pingpong > 1:
        variants[f"{args.pingpong}x"] = pingpong_order(args.frames, args.pingpong)

    video_config = clip_config(args)
    clips = []
    for video in held_out_videos(args.videos, video_config, first_seed=args.first_seed):
        clips.append(
            ([video.frame(t) for t in range(len(video))], [video.mask(t) for t in range(len(video))])
        )

    rows = []
    overall: dict[str, dict] = {}
    model, model_offset = None, None
    for offset, setting in itertools.product(offsets, settings):  # offset-major: each offset loaded once
        if offset != model_offset:  # only the current offset's weights are held
            model, model_offset = load_model(args.weights), offset
            model.key_proj.offset_shrinkage(offset)  # 1: unchanged
        name = label(setting)
        if offset != 1:
            name = f"shrinkage_offset={offset:g} {name}" if setting else f"shrinkage_offset={offset:g}"
        propagator = SegmenterPropagator(model, make_config(base, setting), name=name)
        for variant, order in variants.items():
            results: list[VideoResult] = []
            start = time.perf_counter()
            for v, (frames, masks) in enumerate(clips):
                scored = score_propagation(propagator, frames, masks, order, name=f"val{v:02d}")
                results.append(scored.result)
                s = scored.result.summary
                rows.append({"setting": name, "variant": variant, "video": v, "jf": round(100 * s.jf, 4)})
            s = summarize(results)
            per_video = [round(100 * r.summary.jf, 1) for r in results]
            overall.setdefault(name, {})[variant] = {
                "jf": 100 * s.jf,
                "j": 100 * s.j.mean,
                "f": 100 * s.f.mean,
                "per_video": per_video,
                "seconds": time.perf_counter() - start,
            }
            print(f"{name:<40} {variant:>3} J&F {100 * s.jf:5.1f}  {per_video}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "sweep.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    setup = {
        "weights": "default" if args.default_model else str(args.weights),
        "videos": args.videos,
        "first_seed": args.first_seed,
        "frames": args.frames,
        "height": args.height,
        "width": args.width,
        "pingpong": args.pingpong,
        "threads": args.threads,
        "sets": args.set,
        "shrinkage_offsets": offsets,
    }
    with atomic_write(args.out / "sweep.json", "w") as f:
        json.dump({"setup": setup, "overall": overall}, f, indent=2)
    print(f"results in {args.out / 'sweep.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
