"""Speed and peak memory of the lite network in the engine on the CPU, for a few width settings.

    python benchmarks/lite_speed.py                          # all variants, 1 and 2 objects, fp32 and bf16
    python benchmarks/lite_speed.py --variants default --objects 1 --precisions fp32 --repeats 1
    python benchmarks/lite_speed.py --threads 1 --append     # add single-thread rows to the results

``InferenceCore`` with random weights (the golden rule, so BatchNorm statistics are not trivial) on a
synthetic video (benchmarks/common.py) at 480×854, default memory settings, 2 threads (``--threads``).
Every run is its own process (peak RSS is its own); frames/s leaves out the first frame (the mask frame)
and includes turning the probabilities into an index mask, as ``VideoSegmenter`` does.

The machine is shared: other processes only ever make a run slower, so each setting runs ``--repeats``
times and the best run is kept (``fps``); as every run does the same work frame by frame,
``fps_fastest_frames`` counts each frame at its fastest over the runs. ``--wait-idle SECONDS`` waits before
each run until the other processes leave the cores free (from /proc/stat; ``busy_cores_before`` records
what was found) and ``load_average`` records the load around the run. ``cpu_ms_per_frame`` and the
per-part columns (key encoder, memory reading, decoder, value encoder: the value encoder runs on memory
frames only) are CPU times per frame, all threads together: other processes disturb them much less than
wall time. ``--glibc-keep`` runs with glibc keeping freed memory (README, CPU tips).
Results: benchmarks/results/lite_speed.csv and lite_speed.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import SyntheticVideo  # noqa: E402
from xmem.jobs.monitor import peak_rss_mib  # noqa: E402

# width settings (ModelConfig fields of the lite architecture; "default" is ModelConfig's default)
VARIANTS = {
    "default": dict(),
    "default-key64": dict(key_dim=64),
    "small": dict(
        key_dim=64,
        value_dim=64,
        hidden_dim=16,
        decoder_dims=(32, 16, 16),
        value_encoder_dims=(16, 24, 32, 64),
    ),
    "wide": dict(key_dim=64, decoder_dims=(128, 64, 32)),
}


def _timed(owner: object, name: str, totals: dict[str, float], label: str) -> None:
    """Wrap ``owner.name`` to add its CPU time (both threads) to ``totals[label]``."""
    fn = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.process_time()
        out = fn(*args, **kwargs)
        totals[label] = totals.get(label, 0.0) + time.process_time() - start
        return out

    setattr(owner, name, wrapper)


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from xmem.config import Architecture, InferenceConfig, ModelConfig, Precision
    from xmem.inference.core import InferenceCore
    from xmem.inference.segmenter import index_mask_from_probabilities
    from xmem.model.golden import golden_rule_model

    torch.set_num_threads(args.threads)
    video = SyntheticVideo(args.frames, args.height, args.width, args.objects, seed=args.seed)
    model_config = ModelConfig(architecture=Architecture.LITE, **VARIANTS[args.variant])
    model = golden_rule_model(model_config)
    params = sum(p.numel() for p in model.parameters())
    core = InferenceCore(model, InferenceConfig(size=-1, device="cpu", precision=Precision(args.precision)))
    del model
    parts: dict[str, float] = {}
    _timed(core.network, "encode_key", parts, "key_encoder_cpu_ms")
    _timed(core.network, "segment", parts, "decoder_cpu_ms")
    _timed(core.network, "encode_value", parts, "value_encoder_cpu_ms")
    _timed(core.memory, "read", parts, "memory_read_cpu_ms")
    times, cpu_times = [], []
    for t in range(args.frames):  # frames made on the fly: the video is not part of the peak RSS
        frame, mask = video.frame_and_mask(t)
        start, cpu_start = time.perf_counter(), time.process_time()
        prob = core.step(frame, mask=mask if t == 0 else None, end=t == args.frames - 1)
        index_mask_from_probabilities(prob, core.objects)  # what VideoSegmenter yields
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    steady = times[1:]
    result = {
        "fps": len(steady) / sum(steady),
        "median_frame_ms": 1000 * float(np.median(steady)),
        "cpu_ms_per_frame": 1000 * sum(cpu_times[1:]) / len(steady),  # both threads: ~2× wall when alone
        "peak_rss_mb": peak_rss_mib(),
        "params_m": params / 1e6,
        "fp16_weights_mb": params * 2 / 1e6,
        **{k: round(1000 * v / len(steady), 1) for k, v in parts.items()},
        "frame_seconds": steady,
    }
    print(json.dumps(result))


def busy_cores(seconds: float = 2.0) -> float:
    """How many cores the machine's processes kept busy over the last ``seconds`` (from /proc/stat)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values[:8]), idle

    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    cores = os.cpu_count() or 1
    return cores * (1 - (idle1 - idle0) / max(1, total1 - total0))


def wait_until_idle(max_busy: float, timeout: float) -> float:
    """Wait (up to ``timeout`` s) until other processes keep fewer than ``max_busy`` cores busy; returns the
    last measurement."""
    deadline = time.monotonic() + timeout
    busy = busy_cores()
    while busy > max_busy and time.monotonic() < deadline:
        busy = busy_cores()
    return busy


# glibc: keep freed memory instead of returning it to the system after every frame (README, CPU tips)
GLIBC_KEEP = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "4000000000"}


def run_worker(cmd: list[str], wait_idle: float | None = None, glibc_keep: bool = False) -> dict:
    busy = wait_until_idle(0.3, wait_idle) if wait_idle else None
    load_before = os.getloadavg()[0]
    env = {**os.environ, **GLIBC_KEEP} if glibc_keep else None
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"worker failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the machine's 1-minute load average around the run (other processes compete for the 2 cores)
    result["load_average"] = round((load_before + os.getloadavg()[0]) / 2, 2)
    result["busy_cores_before"] = None if busy is None else round(busy, 2)
    return result


def write_results(out: Path, setup: dict, rows: list[dict]) -> None:
    """lite_speed.json (everything) and lite_speed.csv (the table) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "lite_speed.json").write_text(json.dumps({"setup": setup, "results": rows}, indent=2))
    fields = [
        "variant",
        "widths",
        "threads",
        "glibc_keep",
        "objects",
        "precision",
        "fps",
        "fps_runs",
        "fps_fastest_frames",
        "median_frame_ms",
        "cpu_ms_per_frame",
        "load_average",
        "busy_cores_before",
        "peak_rss_mb",
        "params_m",
        "fp16_weights_mb",
        "key_encoder_cpu_ms",
        "memory_read_cpu_ms",
        "decoder_cpu_ms",
        "value_encoder_cpu_ms",
    ]
    with open(out / "lite_speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "fps_runs": " ".join(str(v) for v in row["fps_runs"])})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--append", action="store_true", help="add the rows to the existing results")
    parser.add_argument("--glibc-keep", action="store_true", help="run with " + " ".join(GLIBC_KEEP))
    parser.add_argument(
        "--wait-idle",
        type=float,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the other processes to leave the cores free",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="default", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.objects = args.objects[0]
        worker(args)
        return

    from xmem.config import Architecture, ModelConfig
    from xmem.configio import to_dict

    common = ["--frames", str(args.frames), "--height", str(args.height), "--width", str(args.width)]
    common += ["--threads", str(args.threads), "--seed", str(args.seed)]
    rows = []
    if args.append and (args.out / "lite_speed.json").is_file():
        rows = json.loads((args.out / "lite_speed.json").read_text())["results"]
    for variant in args.variants:
        for objects in args.objects:
            for precision in args.precisions:
                cmd = [sys.executable, __file__, "--worker", "--variant", variant, "--precision", precision]
                cmd += ["--objects", str(objects), *common]
                runs = [run_worker(cmd, args.wait_idle, args.glibc_keep) for _ in range(args.repeats)]
                best = max(runs, key=lambda r: r["fps"])
                # every run does the same work frame by frame: the fastest time of each frame over the runs
                # leaves out most of what other processes took
                fastest = [min(times) for times in zip(*(r["frame_seconds"] for r in runs), strict=True)]
                row = {
                    "variant": variant,
                    "threads": args.threads,
                    "glibc_keep": args.glibc_keep,
                    "objects": objects,
                    "precision": precision,
                    **{k: v for k, v in best.items() if k != "frame_seconds"},
                    "fps_fastest_frames": len(fastest) / sum(fastest),
                    "fps_runs": [round(r["fps"], 2) for r in runs],
                    "config": to_dict(ModelConfig(architecture=Architecture.LITE, **VARIANTS[variant])),
                }
                c = row["config"]
                row["widths"] = (
                    f"key {c['key_dim']} value {c['value_dim']} hidden {c['hidden_dim']} decoder "
                    f"{'/'.join(map(str, c['decoder_dims']))} value-encoder {'/'.join(map(str, c['value_encoder_dims']))}"
                )
                rows.append(row)
                print(
                    f"{variant} {objects} object(s) {precision}: {best['fps']:.2f} frames/s "
                    f"(runs {row['fps_runs']}, fastest frames {row['fps_fastest_frames']:.2f}), "
                    f"peak RSS {best['peak_rss_mb']:.0f} MiB, "
                    f"{best['params_m']:.2f} M parameters",
                    flush=True,
                )

    setup = {k: getattr(args, k) for k in ("frames", "height", "width", "seed", "repeats", "wait_idle")}
    write_results(args.out, setup, rows)
    print(f"results in {args.out / 'lite_speed.csv'}")


if __name__ == "__main__":
    main()
