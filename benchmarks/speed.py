"""Speed and peak memory of the engine on the CPU: fp32 and bf16, optionally against the reference code.

    python benchmarks/speed.py                      # 150 frames, 480×854, 2 objects, 2 threads
    python benchmarks/speed.py --reference-dir /path/to/XMem-checkout

Random official-layout weights (the golden rule) written to a .pth file that each implementation loads as
its command line does, a synthetic 2-object video (benchmarks/common.py).
Every configuration runs in its own process (so peak RSS is its own); frames/s excludes the first frame.
The reference (hkchengrex/XMem, patched only to run on the CPU, see benchmarks/reference_runner.py)
is optional: it is not part of this project and is never downloaded.
Results: benchmarks/results/speed.csv and speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from segment_speed import cpu_description  # noqa: E402
from xmem.io.atomic import atomic_write  # noqa: E402
from xmem.jobs.monitor import peak_rss_mib  # noqa: E402


def worker_weights(args: argparse.Namespace) -> None:
    """The golden-rule weights as a .pth file, which both implementations then load."""
    import torch

    from xmem.model.golden import golden_rule_state_dict

    torch.save(golden_rule_state_dict(), args.weights)


def worker_ours(args: argparse.Namespace) -> None:
    import torch

    from xmem.config import InferenceConfig, Precision
    from xmem.inference.segmenter import VideoSegmenter
    from xmem.jobs.allocator import retain_large_blocks
    from xmem.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    retain_large_blocks()  # as xmem segment does on the CPU
    video = SyntheticVideo(args.frames, args.height, args.width, args.objects, seed=args.seed)
    config = InferenceConfig(size=-1, device="cpu", precision=Precision(args.precision))
    seg = VideoSegmenter(load_model(args.weights), config, copy_network=False)  # as xmem segment --weights
    masks = np.zeros((args.frames, args.height, args.width), np.uint8)
    times = []
    start = time.perf_counter()
    for index, mask in seg.propagate(video.frames(), {0: video.mask(0)}):
        now = time.perf_counter()
        times.append(now - start)
        start = now
        masks[index] = mask
    np.save(args.save_masks, masks)
    fps = (len(times) - 1) / sum(times[1:])
    print(json.dumps({"fps": fps, "peak_rss_mb": peak_rss_mib(), "frame_seconds": times}))


def run_worker(cmd: list[str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--reference-dir", type=Path, help="a checkout of the reference XMem code (optional)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--worker", choices=["ours", "weights"], help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--save-masks", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "ours":
        worker_ours(args)
        return
    if args.worker == "weights":
        worker_weights(args)
        return

    common = ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
    common += ["--objects", str(args.objects), "--threads", str(args.threads), "--seed", str(args.seed)]
    rows, masks = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "golden.pth"  # both implementations load the same file, each its own way
        subprocess.run(
            [sys.executable, __file__, "--worker", "weights", "--weights", str(weights)], check=True
        )
        common += ["--weights", str(weights)]
        for precision in args.precisions:
            path = Path(tmp) / f"ours-{precision}.npy"
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "ours",
                "--precision",
                precision,
                "--save-masks",
                str(path),
            ]
            result = run_worker(cmd + common)
            masks[f"xmem-vos {precision}"] = np.load(path)
            rows.append({"implementation": "xmem-vos", "precision": precision, **result})
            print(
                f"xmem-vos {precision}: {result['fps']:.3f} frames/s, peak RSS {result['peak_rss_mb']:.0f} MiB"
            )
        if args.reference_dir is not None:
            path = Path(tmp) / "reference.npy"
            cmd = [
                sys.executable,
                str(HERE / "reference_runner.py"),
                "--reference-dir",
                str(args.reference_dir),
            ]
            result = run_worker([*cmd, "--save-masks", str(path), *common])
            masks["reference fp32"] = np.load(path)
            rows.append({"implementation": "reference", "precision": "fp32", **result})
            print(f"reference fp32: {result['fps']:.3f} frames/s, peak RSS {result['peak_rss_mb']:.0f} MiB")

    for row in rows:  # steady state: working memory full, consolidations running
        steady = row["frame_seconds"][50:]
        row["fps_from_frame_50"] = len(steady) / sum(steady) if steady else None  # None: 50 frames or fewer
    base = masks.get("xmem-vos fp32")
    for row in rows:
        name = f"{row['implementation']} {row['precision']}"
        row["agreement_with_ours_fp32"] = float((masks[name] == base).mean()) if base is not None else None
    ref = masks.get("reference fp32")
    if ref is not None:
        for row in rows:
            row["agreement_with_reference"] = float(
                (masks[f"{row['implementation']} {row['precision']}"] == ref).mean()
            )

    args.out.mkdir(parents=True, exist_ok=True)
    setup = {k: getattr(args, k) for k in ("frames", "height", "width", "objects", "threads", "seed")}
    setup["cpu"] = cpu_description()
    with atomic_write(args.out / "speed.json", "w") as f:
        json.dump({"setup": setup, "results": rows}, f, indent=2)
    fields = [
        "implementation",
        "precision",
        "fps",
        "peak_rss_mb",
        "agreement_with_ours_fp32",
        "agreement_with_reference",
    ]
    with atomic_write(args.out / "speed.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    print(f"results in {args.out / 'speed.csv'}")


if __name__ == "__main__":
    main()
