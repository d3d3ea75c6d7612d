"""Latency and memory of `xmem annotate` as the page uses it, on real footage at 480p with the default model.

The video is OpenCV's cup.mp4 (640×480, 217 frames) played forward and backward until it has --frames
frames (2,000 by default), encoded once into --cache. The real command runs as a server process; this
script talks to it over HTTP as the page does and measures, from request to answer:

- showing another frame: the JPEG at the view's width plus its mask PNG (random jumps, and steps to the
  next frame as ← / → and playback do);
- a click -> mask (GrabCut on the frame), a brush stroke committed (20 points, radius 10);
- propagation frames/s over the whole video, against `xmem segment` on the same video and first mask;
- the server's resident memory (RSS) after the first propagation and after several more (a correction in
  the middle, both ways, backward from the end, forward again).

    python benchmarks/annotate_latency.py        # benchmarks/results/annotate_latency.json

Targets (issue "xmem annotate"): frame < 100 ms, click < 300 ms, brush < 100 ms, propagation within 10% of
`xmem segment`, RSS at the end within 10% of after the first propagation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import av
import numpy as np

from xmem.io.atomic import atomic_write
from xmem.io.masks import read_index_mask

ROOT = Path(__file__).resolve().parents[1]
CUP = ROOT / "demo" / "cup.mp4"
MASK = ROOT / "demo" / "cup-mask.png"


def long_video(path: Path, frames: int) -> Path:
    """cup.mp4 forward, backward, forward ... to ``frames`` frames (H.264, crf 18, key frame every 250)."""
    if path.exists():
        return path
    with av.open(str(CUP)) as container:
        clip = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    bounce = clip + clip[-2:0:-1]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = clip[0].shape[1], clip[0].shape[0], "yuv420p"
        stream.options = {"crf": "18"}
        for t in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(bounce[t % len(bounce)], format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[float, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("X-XMem-Token", self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=600) as response:
            payload = response.read()
        return (time.perf_counter() - began) * 1000, payload

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        return json.loads(self.call(method, path, body)[1])

    def wait(self) -> dict:
        while True:
            job = self.json("GET", "/api/session")["job"]
            if job["state"] != "running":
                return job
            time.sleep(0.2)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "max_ms": round(ordered[-1], 1),
        "n": len(ordered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "xmem-annotate-bench")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "annotate_latency.json")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    video = long_video(args.cache / f"cup-bounce-{args.frames}.mp4", args.frames)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    workspace = Path(tempfile.mkdtemp(prefix="ws-", dir=args.cache))
    results: dict[str, object] = {
        "video": f"demo/cup.mp4 bounced to {args.frames} frames, 640x480",
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "model": "embedded default model, default settings, fp32",
    }

    # xmem segment on the same video and first mask: the speed to match
    out = args.cache / "segment-out"
    subprocess.run(
        [sys.executable, "-m", "xmem", "segment", str(video), "--mask", str(MASK), "--out", str(out),
         "--overwrite", "--quiet", "--device", "cpu"],
        check=True, env=env,
    )  # fmt: skip
    segment = json.loads((out / "summary.json").read_text())
    results["segment_frames_per_second"] = segment["frames_per_second"]

    server = subprocess.Popen(
        [sys.executable, "-m", "xmem", "annotate", str(video), "--workspace", str(workspace), "--port", "0",
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        url = None
        assert server.stdout is not None
        began = time.perf_counter()
        for line in server.stdout:
            found = re.search(r"open (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        assert url is not None, "the server did not start"
        base, token = url.split("/?token=")
        client = Client(base, token)
        while True:
            try:
                client.call("GET", "/api/session")
                break
            except OSError:
                time.sleep(0.05)
        results["start_s"] = round(time.perf_counter() - began, 2)
        rss = {"started": rss_mib(server.pid)}

        # clicks on the cup (inside the demo's first mask), each a new mask from one click and the previous
        # mask; the last one is the first frame's mask for the propagations
        client.json("POST", "/api/objects", {"name": "cup"})
        ys, xs = np.nonzero(read_index_mask(MASK) == 1)
        clicks = []
        rng = random.Random(0)
        for _ in range(12):
            i = rng.randrange(len(xs))
            ms, _ = client.call(
                "POST",
                "/api/frames/0/clicks",
                {"object": 1, "points": [[int(xs[i]), int(ys[i])]], "labels": [1]},
            )
            clicks.append(ms)
        results["click"] = {**summary(clicks[1:]), "first_ms": round(clicks[0], 1)}
        strokes = []
        for k in range(20):
            points = [[200 + 5 * j, 100 + 3 * k] for j in range(20)]
            ms, _ = client.call("POST", "/api/frames/5/brush", {"object": 1, "points": points, "radius": 10})
            strokes.append(ms)
        results["brush"] = summary(strokes)
        for _ in range(20):  # take the strokes back: frame 5 becomes an ordinary frame again
            client.call("POST", "/api/frames/5/undo")

        for _ in range(40):  # the page has been looked through: the view's frame cache is in use
            client.call("GET", f"/api/frames/{rng.randrange(args.frames)}.jpg?width=640")
        client.json("POST", "/api/propagate", {"frame": 0, "direction": "forward"})
        job = client.wait()
        results["propagation"] = {k: job[k] for k in ("done", "frames_per_second", "elapsed_s")}
        rss["after_first_propagation"] = rss_mib(server.pid)

        # showing frames: random jumps and steps, each the JPEG at the view's width and the mask
        jumps, steps = [], []
        for _ in range(40):
            i = rng.randrange(args.frames)
            a, _ = client.call("GET", f"/api/frames/{i}.jpg?width=640")
            b, _ = client.call("GET", f"/api/masks/{i}.png")
            jumps.append(a + b)
        start = rng.randrange(args.frames - 60)
        for i in range(start, start + 60):
            a, _ = client.call("GET", f"/api/frames/{i}.jpg?width=640")
            b, _ = client.call("GET", f"/api/masks/{i}.png")
            steps.append(a + b)
        results["frame_random"] = summary(jumps)
        results["frame_step"] = summary(steps)

        # several more propagations: a correction in the middle both ways, backward from the end, forward
        middle = args.frames // 2
        client.call(
            "POST", f"/api/frames/{middle}/brush", {"object": 1, "points": [[300, 200]], "radius": 12}
        )
        client.json("POST", "/api/propagate", {"frame": middle, "direction": "both"})
        client.wait()
        last = args.frames - 1
        client.call("POST", f"/api/frames/{last}/brush", {"object": 1, "points": [[320, 240]], "radius": 12})
        client.json("POST", "/api/propagate", {"frame": last, "direction": "backward"})
        client.wait()
        client.json("POST", "/api/propagate", {"frame": 0, "direction": "forward"})
        client.wait()
        rss["end"] = rss_mib(server.pid)
        results["rss_mib"] = {k: round(v, 1) for k, v in rss.items()}
        results["rss_end_over_first"] = round(rss["end"] / rss["after_first_propagation"], 3)
        results["propagation_over_segment"] = round(
            job["frames_per_second"] / segment["frames_per_second"], 3
        )
    finally:
        server.terminate()
        server.wait(30)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
