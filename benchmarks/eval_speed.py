"""Speed of scoring (``xmem eval``) against vos-benchmark, on the same generated DAVIS-sized dataset.

    python benchmarks/eval_speed.py                 # 6 videos × 60 frames at 854×480, 3 objects each

Ground truth: the masks of the synthetic benchmark video (``common.SyntheticVideo``: moving, rotating,
occluding shapes). Predictions: the ground truth shifted by a few pixels, with an object missed now and
then, written as palette PNGs in a temporary folder. Both tools run in one process (``workers=1``,
``num_processes=1``), PNG decoding included; best of ``--repeat`` runs. Also checks that the two give the
same J&F. Results: benchmarks/results/eval_speed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.eval import Protocol, evaluate_dataset  # noqa: E402
from xmem.io.masks import write_index_mask  # noqa: E402


def make_dataset(root: Path, videos: int, frames: int, height: int, width: int, objects: int) -> None:
    rng = np.random.default_rng(0)
    for v in range(videos):
        clip = SyntheticVideo(frames, height, width, objects=objects, seed=v)
        (root / "gt" / f"video{v}").mkdir(parents=True)
        (root / "pred" / f"video{v}").mkdir(parents=True)
        for t in range(frames):
            gt = clip.mask(t)
            dy, dx = rng.integers(-4, 5, size=2)
            pred = np.roll(gt, (dy, dx), axis=(0, 1))
            if rng.random() < 0.05:
                pred[pred == rng.integers(1, objects + 1)] = 0
            write_index_mask(root / "gt" / f"video{v}" / f"{t:05d}.png", gt)
            write_index_mask(root / "pred" / f"video{v}" / f"{t:05d}.png", pred)


def best_of(repeat: int, run) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "eval_speed.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_dataset(root, args.videos, args.frames, args.height, args.width, args.objects)
        ours_s, ours = best_of(
            args.repeat, lambda: evaluate_dataset(root / "pred", root / "gt", protocol=Protocol.davis())
        )
        summary = ours.summary
        record = {
            "videos": args.videos,
            "frames": args.frames,
            "size": [args.height, args.width],
            "objects": args.objects,
            "scored_object_frames": sum(o.num_frames for v in ours.videos for o in v.objects),
            "xmem_seconds": round(ours_s, 3),
            "xmem_jf": round(100 * summary.jf, 4),
        }
        try:
            from vos_benchmark.benchmark import benchmark
        except ImportError:
            print("vos-benchmark is not installed: timing xmem only", file=sys.stderr)
        else:
            theirs_s, theirs = best_of(
                args.repeat,
                lambda: benchmark([str(root / "gt")], [str(root / "pred")], num_processes=1, verbose=False),
            )
            record.update(
                vos_benchmark_seconds=round(theirs_s, 3),
                vos_benchmark_jf=round(float(theirs[0][0]), 4),
                speedup=round(theirs_s / ours_s, 2),
            )
    print(json.dumps(record, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
