"""Memory of `xmem segment` over a long video file: decoding, mask / overlay / probability writing and
resume states must not make the process grow with the video's length.

    python benchmarks/cli_long_video.py                    # 1,000 frames of 48×80, 2 objects

Writes a synthetic 2-object mp4 (PyAV), then runs `xmem segment` on it in a child process with every
output on (masks, overlay, probability maps, a resume state every 500 frames) and samples the child's
resident memory twice a second, with the number of masks written so far. Long-term memory is capped
at 1,000 elements so that the engine's own memory is full after about a third of the video (75
prototypes per consolidation at 48×80; the engine's growth up to the default 10,000 elements is
measured by long_video.py): what still grows after that would be the command's. Small frames keep the
run to minutes on two CPU cores; the files and frames handled per frame do not depend on their size.
Random official-layout weights (the golden rule). Results: benchmarks/results/cli_long_video.csv
(samples) and cli_long_video.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.io.masks import write_index_mask  # noqa: E402
from xmem.model.golden import golden_rule_state_dict  # noqa: E402


def rss_mib(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def write_video(path: Path, video: SyntheticVideo, fps: int = 25) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        for frame in video.frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=80)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = SyntheticVideo(args.frames, args.height, args.width, objects=2)
        write_video(tmp / "long.mp4", video)
        write_index_mask(tmp / "mask.png", video.mask(0))
        torch.save(golden_rule_state_dict(), tmp / "weights.pth")
        out = tmp / "out"
        cmd = [sys.executable, "-m", "xmem", "segment", str(tmp / "long.mp4"), "--mask", str(tmp / "mask.png"),
               "--out", str(out), "--weights", str(tmp / "weights.pth"), "--size", "-1", "--device", "cpu",
               "--max-long-term-elements", "1000", "--overlay", str(tmp / "overlay.mp4"),
               "--save-probabilities", "--checkpoint-every", "500", "--quiet"]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "2"}
        start = time.perf_counter()
        child = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
        samples = []
        while child.poll() is None:
            rss = rss_mib(child.pid)
            done = sum(1 for _ in out.glob("*.png")) if out.is_dir() else 0
            if rss is not None:
                samples.append(
                    {"seconds": round(time.perf_counter() - start, 1), "frames": done, "rss_mib": rss}
                )
            time.sleep(0.5)
        stderr = child.stderr.read() if child.stderr else ""
        if child.returncode != 0:
            raise SystemExit(f"xmem segment failed ({child.returncode}):\n{stderr}")
        summary = json.loads((out / "summary.json").read_text())

    def rss_at(frames: int) -> float:
        return float(np.median([s["rss_mib"] for s in samples if abs(s["frames"] - frames) <= 25]))

    n = args.frames
    settled = min(500, int(0.4 * n))  # the engine's memory is full by then
    result = {
        "frames": n,
        "size": [args.height, args.width],
        "frames_per_second": summary["frames_per_second"],
        "peak_rss_mib": summary["peak_memory_mib"]["process_rss"],
        "settled_at_frame": settled,
        "rss_mib_settled": rss_at(settled),
        "rss_mib_at_half": rss_at(n // 2),
        "rss_mib_at_end": rss_at(n - 25),
        "rss_growth_settled_to_end": rss_at(n - 25) / rss_at(settled) - 1,
        "max_rss_mib_after_settled": max(s["rss_mib"] for s in samples if s["frames"] >= settled),
    }
    args.results.mkdir(parents=True, exist_ok=True)
    with open(args.results / "cli_long_video.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["seconds", "frames", "rss_mib"])
        writer.writeheader()
        writer.writerows(samples)
    (args.results / "cli_long_video.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
