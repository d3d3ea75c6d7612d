"""J&F on held-out synthetic composite videos: a model and the baselines, on the clips and on the same
clips played back and forth (the paper's long-video construction).

    python benchmarks/heldout_jf.py                                   # the baselines (committed results)
    python benchmarks/heldout_jf.py --weights model.safetensors       # a model and the baselines
    python benchmarks/heldout_jf.py --default-model                   # the embedded default model

Videos: ``held_out_videos`` (seeds 0..N−1 of the HELD-OUT split: photographs never used in training;
docs/DATA.md; N = 30 by default, 10 until 2026-12-03, too few: one clip's J&F moves by 10 points between
settings), N clips of 100 frames at 240×427 with 1-3 objects, each scored by the DAVIS protocol as it
is (1×) and played 5 times alternately forward and backward (5×, 500 frames; ``xmem.eval.bench.
pingpong_order``). Methods: the model of ``--weights`` (processed at the video's size unless ``--size``),
the first mask copied to every frame, and the previous mask warped along dense optical flow (OpenCV
Farneback and DIS; ``xmem.eval.baselines``). Frames are rendered once per clip before the methods run;
frames/s is the methods' own time.

Results (``--out``, default benchmarks/results): heldout_jf.csv (per method, variant and video, then an
``overall`` row per method and variant; J&F, J, F, J decay in percent), heldout_jf.json (setup and
overall figures, and the K× − 1× drop with its 95% interval by a paired bootstrap over videos) and
heldout_jf.png (J&F per played frame of the K× clips, averaged over all objects).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from xmem.data import held_out_videos
from xmem.eval.baselines import (
    CopyFirstMask,
    DisPreset,
    FlowMethod,
    FlowWarp,
    FlowWarpConfig,
    MaskPropagator,
    SegmenterPropagator,
    score_propagation,
)
from xmem.eval.bench import pingpong_order
from xmem.eval.plots import rolling_mean
from xmem.eval.protocol import VideoResult, summarize
from xmem.inference.options import add_engine_arguments, engine_config, engine_settings
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.model.checkpoint import load_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import add_clip_arguments, clip_config  # noqa: E402


def per_frame_jf(results: Sequence[VideoResult], frames: int) -> np.ndarray:
    """J&F per played frame, averaged over every scored object of ``results`` (NaN where none is)."""
    total, count = np.zeros(frames), np.zeros(frames)
    for video in results:
        for obj in video.objects:
            start = int(obj.first_frame)
            stop = start + obj.num_frames
            total[start:stop] += (obj.j_frames + obj.f_frames) / 2
            count[start:stop] += 1
    with np.errstate(invalid="ignore"):
        return total / count


def drop_interval(
    short: Sequence[VideoResult], long: Sequence[VideoResult], resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% interval of (J&F of ``long`` − J&F of ``short``) in points, by a paired bootstrap over videos
    (each video resampled with all its objects, as the overall J&F is a mean over objects)."""
    n = np.array([v.summary.objects for v in short], float)
    a = np.array([v.summary.jf * v.summary.objects for v in short])
    b = np.array([v.summary.jf * v.summary.objects for v in long])
    pick = np.random.default_rng(seed).integers(0, len(n), size=(resamples, len(n)))
    weights = n[pick].sum(1)
    diffs = 100 * (b[pick].sum(1) - a[pick].sum(1)) / weights
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return float(lo), float(hi)


def plot(
    curves: dict[str, np.ndarray], overall: dict[str, dict], passes: int, length: int, path: Path
) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for name, curve in curves.items():
        valid = np.isfinite(curve)
        x = np.flatnonzero(valid)
        label = f"{name}: J&F {overall[name]['1x']['jf']:.1f} (1×), {overall[name][f'{passes}x']['jf']:.1f} ({passes}×)"
        ax.plot(x, 100 * rolling_mean(curve[valid], 5), lw=1.3, label=label)
    for b in range(length, length * passes, length):
        ax.axvline(b, color="grey", lw=0.6, ls=":")
    ax.set_xlabel(f"played frame ({passes} passes of {length} frames, alternately forward and backward)")
    ax.set_ylabel("J&F per frame, mean over objects (%)")
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"held-out composite videos played {passes}× back and forth", fontsize=10)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", type=Path, help="a model to score (XMem.pth or .safetensors)")
    parser.add_argument(
        "--default-model", action="store_true", help="score the embedded default model (xmem.load_model())"
    )
    parser.add_argument("--name", help="the model's name in the results (default: the weights' file stem)")
    parser.add_argument("--no-baselines", action="store_true", help="score only the model")
    add_clip_arguments(
        parser,
        videos=30,
        first_seed=0,
        frames=100,
        first_seed_help="seed of the first held-out video (0: the benchmark's; 1000000: the training "
        "validation's, for tuning without looking at the benchmark)",
    )
    parser.add_argument("--pingpong", type=int, default=5)
    add_engine_arguments(parser)
    # The clips are already at the benchmark's size: process them as they are unless --size says otherwise.
    parser.set_defaults(size=-1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    if args.weights is not None and args.default_model:
        parser.error("--weights and --default-model: one model at a time")
    if args.weights is None and not args.default_model and args.no_baselines:
        parser.error("nothing to score: give --weights or --default-model, or drop --no-baselines")
    torch.set_num_threads(args.threads)

    methods: list[MaskPropagator] = []
    try:
        config = engine_config(args)
    except InputError as exc:
        parser.error(str(exc))
    if args.weights is not None or args.default_model:
        name = args.name or ("xmem-lite-default" if args.default_model else args.weights.stem)
        methods.append(SegmenterPropagator(load_model(args.weights), config, name=name))
    if not args.no_baselines:
        methods += [
            CopyFirstMask(),
            FlowWarp(FlowWarpConfig(method=FlowMethod.FARNEBACK)),
            FlowWarp(FlowWarpConfig(method=FlowMethod.DIS, dis_preset=DisPreset.MEDIUM)),
        ]
    variants = {
        "1x": pingpong_order(args.frames, 1),
        f"{args.pingpong}x": pingpong_order(args.frames, args.pingpong),
    }
    video_config = clip_config(args)

    results: dict[tuple[str, str], list[VideoResult]] = {}
    timing: dict[tuple[str, str], list[tuple[float, int]]] = {}
    rows = []
    for v, video in enumerate(held_out_videos(args.videos, video_config, first_seed=args.first_seed)):
        name = f"heldout{v:02d}"
        frames = [video.frame(t) for t in range(len(video))]
        masks = [video.mask(t) for t in range(len(video))]
        for variant, order in variants.items():
            for method in methods:
                scored = score_propagation(method, frames, masks, order, name=name)
                count = scored.frames
                results.setdefault((method.name, variant), []).append(scored.result)
                timing.setdefault((method.name, variant), []).append((scored.seconds, count))
                s = scored.result.summary
                rows.append(
                    {
                        "method": method.name,
                        "variant": variant,
                        "video": name,
                        "objects": s.objects,
                        "frames": count,
                        "jf": 100 * s.jf,
                        "j": 100 * s.j.mean,
                        "f": 100 * s.f.mean,
                        "j_decay": 100 * s.j.decay,
                        "fps": scored.fps,
                    }
                )
                print(f"{name} {variant:>3} {method.name:<24} J&F {100 * s.jf:5.1f}", flush=True)

    overall: dict[str, dict] = {}
    for (method_name, variant), videos in results.items():
        s = summarize(videos)
        seconds, count = np.array(timing[(method_name, variant)]).sum(0)
        figures = {
            "objects": s.objects,
            "jf": 100 * s.jf,
            "j": 100 * s.j.mean,
            "f": 100 * s.f.mean,
            "j_decay": 100 * s.j.decay,
            "fps": count / seconds,
        }
        overall.setdefault(method_name, {})[variant] = figures
        rows.append(
            {"method": method_name, "variant": variant, "video": "overall", "frames": int(count), **figures}
        )

    long_variant = f"{args.pingpong}x"
    for m in methods:
        by_variant = overall[m.name]
        lo, hi = drop_interval(results[(m.name, "1x")], results[(m.name, long_variant)])
        by_variant["drop"] = {
            "jf": by_variant[long_variant]["jf"] - by_variant["1x"]["jf"],
            "ci95": [lo, hi],
        }

    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "heldout_jf.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows
        )
    setup = {k: getattr(args, k) for k in ("videos", "first_seed", "frames", "height", "width", "pingpong")}
    setup.update(engine_settings(args), threads=args.threads)
    setup["weights"] = "default" if args.default_model else str(args.weights) if args.weights else None
    setup["protocol"] = "davis"
    with atomic_write(args.out / "heldout_jf.json", "w") as f:
        json.dump({"setup": setup, "overall": overall}, f, indent=2)
    curves = {
        m.name: per_frame_jf(results[(m.name, long_variant)], len(variants[long_variant])) for m in methods
    }
    plot(curves, overall, args.pingpong, args.frames, args.out / "heldout_jf.png")

    print(f"\n{'method':<24} {'variant':>7} {'J&F':>6} {'J':>6} {'F':>6} {'J decay':>8} {'frames/s':>9}")
    for method_name, by_variant in overall.items():
        for variant in ("1x", long_variant):
            o = by_variant[variant]
            print(
                f"{method_name:<24} {variant:>7} {o['jf']:6.1f} {o['j']:6.1f} {o['f']:6.1f} {o['j_decay']:8.1f} "
                f"{o['fps']:9.1f}"
            )
        d = by_variant["drop"]
        print(
            f"{method_name:<24} {'drop':>7} {d['jf']:+6.1f}  (95% over videos: {d['ci95'][0]:+.1f} to {d['ci95'][1]:+.1f})"
        )
    print(f"results in {args.out / 'heldout_jf.csv'}", file=sys.stderr)


if __name__ == "__main__":
    main()
