"""Memory and speed over a long video: memory must stay bounded and the engine must not slow down.

    python benchmarks/long_video.py                 # 5,000 frames at 96×160, 2 objects, default memory

Random official-layout weights, a synthetic 2-object video, default memory settings (mem_every 5,
working memory 5-10 frames, 128 prototypes, at most 10,000 long-term elements: at 96×160 that limit is
reached after about 2,000 frames). Records, per frame, the time, the process RSS (current and peak) and
the working / long-term memory sizes. Results: benchmarks/results/long_video.csv and long_video.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo, current_rss_mb, peak_rss_mb  # noqa: E402
from xmem.config import InferenceConfig  # noqa: E402
from xmem.inference.segmenter import VideoSegmenter  # noqa: E402
from xmem.model.golden import golden_rule_model  # noqa: E402


def summarize(rows: list[dict], size: tuple[int, int]) -> dict:
    """Peak and current RSS after 1,000 frames and at the end; time per frame early and late."""

    def mean_ms(a: int, b: int) -> float:
        return 1000 * float(np.mean([float(r["seconds"]) for r in rows[a:b]]))

    n = len(rows)
    at_1000, end = rows[min(999, n - 1)], rows[-1]
    return {
        "frames": n,
        "size": list(size),
        "peak_rss_mb_at_1000": float(at_1000["peak_rss_mb"]),
        "peak_rss_mb_at_end": float(end["peak_rss_mb"]),
        "peak_rss_growth_1000_to_end": float(end["peak_rss_mb"]) / float(at_1000["peak_rss_mb"]) - 1,
        "rss_mb_at_1000": float(at_1000["rss_mb"]),
        "rss_mb_at_end": float(end["rss_mb"]),
        "rss_growth_1000_to_end": float(end["rss_mb"]) / float(at_1000["rss_mb"]) - 1,
        "memory_mb_at_end": float(end["memory_mb"]),
        "ms_per_frame_500_1000": mean_ms(500, 1000),
        "ms_per_frame_last_500": mean_ms(n - 500, n),
        "ms_per_frame_by_500": [round(mean_ms(a, a + 500), 1) for a in range(0, n, 500)],
        "max_long_term_elements": max(int(r["long_term_elements"]) for r in rows),
        "max_working_elements": max(int(r["working_elements"]) for r in rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=5000)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--objects", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--summarize", type=Path, help="only recompute the summary from an existing CSV")
    args = parser.parse_args()
    if args.summarize is not None:
        with open(args.summarize) as f:
            rows = list(csv.DictReader(f))
        summary = summarize(rows, (args.height, args.width))
        (args.out / "long_video.json").write_text(json.dumps(summary, indent=2))
        print(json.dumps(summary, indent=2))
        return

    torch.set_num_threads(args.threads)
    video = SyntheticVideo(args.frames, args.height, args.width, args.objects, seed=1)
    seg = VideoSegmenter(golden_rule_model(), InferenceConfig(size=-1, device="cpu"))
    rows = []
    start = time.perf_counter()
    for index, _mask in seg.propagate(video.frames(), {0: video.mask(0)}):
        now = time.perf_counter()
        mem = seg.core.memory
        rows.append(
            {
                "frame": index,
                "seconds": now - start,
                "rss_mb": current_rss_mb(),
                "peak_rss_mb": peak_rss_mb(),
                "working_elements": mem.work.size,
                "long_term_elements": mem.long.size,
                "memory_mb": mem.nbytes() / 2**20,
            }
        )
        start = now
        if index % 500 == 0:
            print(
                f"frame {index}: peak RSS {rows[-1]['peak_rss_mb']:.0f} MiB, long-term {mem.long.size}",
                flush=True,
            )

    summary = summarize(rows, (args.height, args.width))
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "long_video.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (args.out / "long_video.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
