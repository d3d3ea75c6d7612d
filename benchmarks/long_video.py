"""Memory and speed over a long video: memory must stay bounded and the engine must not slow down.

    python benchmarks/long_video.py                 # 5,000 frames at 96×160, 2 objects, default memory
    python benchmarks/long_video.py --summarize benchmarks/results/long_video.csv   # summary and plots only

Random official-layout weights, a synthetic 2-object video (benchmarks/common.py), default memory settings
(mem_every 5, working memory 5-10 frames, 128 prototypes, at most 10,000 long-term elements: at 96×160
that limit is reached after about 2,000 frames). A thin wrapper over the ``xmem bench`` machinery
(``xmem.eval.bench.BenchRun``), which records per frame the engine time (the frame's generation is timed
apart and left out), the process RSS (current and peak) and the working / long-term memory sizes.
Results: benchmarks/results/long_video.csv (per frame), long_video.json and the plots
long_video_time.png and long_video_memory.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.config import InferenceConfig  # noqa: E402
from xmem.eval.bench import BenchRun, FrameRecord  # noqa: E402
from xmem.eval.plots import plot_memory, plot_time  # noqa: E402
from xmem.model.golden import golden_rule_model  # noqa: E402

# The columns of long_video.csv (as before the bench machinery; memory_mb is the memory stores' size).
COLUMNS = ("frame", "seconds", "rss_mb", "peak_rss_mb", "working_elements", "long_term_elements", "memory_mb")


class SyntheticSource:
    """benchmarks/common.py's synthetic video as an ``xmem.eval.bench.VideoSource``."""

    def __init__(self, video: SyntheticVideo) -> None:
        self.video = video
        self.name = f"synthetic-{video.height}x{video.width}"
        self.has_ground_truth = True

    def __len__(self) -> int:
        return len(self.video)

    def frame(self, t: int) -> np.ndarray:
        return self.video.frame_and_mask(t)[0]

    def ground_truth(self, t: int) -> np.ndarray:
        return self.video.mask(t)

    def prompt(self) -> np.ndarray:
        return self.video.mask(0)


def to_row(r: FrameRecord) -> dict:
    return {
        "frame": r.index,
        "seconds": r.seconds,
        "rss_mb": r.rss_mb,
        "peak_rss_mb": r.peak_rss_mb,
        "working_elements": r.working_elements,
        "long_term_elements": r.long_term_elements,
        "memory_mb": r.memory_store_mb,
    }


def to_record(row: dict) -> FrameRecord:
    return FrameRecord(
        index=int(row["frame"]),
        source_index=int(row["frame"]),
        seconds=float(row["seconds"]),
        read_seconds=float("nan"),
        rss_mb=float(row["rss_mb"]),
        peak_rss_mb=float(row["peak_rss_mb"]),
        gpu_allocated_mb=None,
        gpu_peak_allocated_mb=None,
        working_elements=int(row["working_elements"]),
        long_term_elements=int(row["long_term_elements"]),
        memory_store_mb=float(row["memory_mb"]),
    )


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


def write_outputs(rows: list[dict], size: tuple[int, int], out: Path) -> dict:
    """long_video.json (the summary) and the two plots, from the per-frame rows."""
    summary = summarize(rows, size)
    out.mkdir(parents=True, exist_ok=True)
    (out / "long_video.json").write_text(json.dumps(summary, indent=2))
    records = [to_record(r) for r in rows]
    title = (
        f"benchmarks/long_video.py: {len(rows)} frames of {size[0]}×{size[1]}, default memory settings, CPU"
    )
    plot_time(records, out / "long_video_time.png", title=title)
    plot_memory(records, out / "long_video_memory.png", title=title)
    return summary


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
    parser.add_argument(
        "--summarize", type=Path, help="only recompute the summary and plots from an existing CSV"
    )
    args = parser.parse_args()
    size = (args.height, args.width)
    if args.summarize is not None:
        with open(args.summarize) as f:
            rows = list(csv.DictReader(f))
        print(json.dumps(write_outputs(rows, size, args.out), indent=2))
        return

    torch.set_num_threads(args.threads)
    video = SyntheticSource(SyntheticVideo(args.frames, args.height, args.width, args.objects, seed=1))
    run = BenchRun(golden_rule_model(), InferenceConfig(size=-1, device="cpu"), video, score=False)
    for record in run:
        if record.index % 500 == 0:
            print(
                f"frame {record.index}: peak RSS {record.peak_rss_mb:.0f} MiB, long-term "
                f"{record.long_term_elements}",
                flush=True,
            )
    rows = [to_row(r) for r in run.result().records]
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "long_video.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    print(json.dumps(write_outputs(rows, size, args.out), indent=2))


if __name__ == "__main__":
    main()
