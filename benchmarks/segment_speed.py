"""Frames/s and peak memory of whole ``xmem segment`` processes on a real 480p video (issue 25's targets).

    python benchmarks/segment_speed.py                    # demo/cup.mp4, the default model, 2 threads
    python benchmarks/segment_speed.py --runs auto-default fp32-480 --repeats 3

Each run is one ``xmem segment`` process, timed from its start to its exit (imports, loading the weights,
decoding, the engine, writing every PNG and summary.json), with the peak RSS of that process alone (its
``VmHWM``, which summary.json records). Frames/s = frames of the video / wall seconds. Runs of one call are
interleaved (all runs once, then again for each repeat) so that a slow spell of the machine falls on every
run alike; the table gives each run's best and median. The CPU's model name and its matrix-unit flags are recorded with
the results (these figures vary between CPUs: compare within one call).

``--baseline SRC`` times another version in the same call, each of its runs right beside this version's
(alternating which goes first), so that the machine's drift from hour to hour falls on both alike:

    git worktree add /tmp/previous <commit>
    python benchmarks/segment_speed.py --baseline /tmp/previous/src --runs auto-480 --repeats 4

Results: benchmarks/results/segment_speed/ (speed.csv, speed.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from xmem.inference.precision import linux_cpu_flags  # noqa: E402
from xmem.io.atomic import atomic_write  # noqa: E402

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
# settings that change what runs, recorded with the results when set (the ISA caps emulate an older CPU:
# ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 is an AVX2-only machine)
RECORDED_ENV = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "PYTHONPATH")


@dataclass(frozen=True)
class Run:
    """One ``xmem segment`` configuration: its name and the options it adds."""

    name: str
    args: tuple[str, ...]


RUNS = {
    run.name: run
    for run in (
        Run("auto-default", ()),
        Run("fp32-default", ("--precision", "fp32")),
        Run("auto-480", ("--size", "480")),
        Run("fp32-480", ("--size", "480", "--precision", "fp32")),
    )
}


def cpu_description() -> dict:
    """The CPU's model name, core count and the matrix-unit flags that decide precision auto."""
    name = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                name = value.strip()
                break
    except OSError:
        pass
    flags = linux_cpu_flags() or set()
    return {"model": name, "cores": os.cpu_count(), "flags": [f for f in CPU_FLAGS if f in flags]}


def count_frames(video: Path) -> int:
    import av

    with av.open(str(video)) as container:
        return sum(1 for _ in container.decode(video=0))


def run_once(
    run: Run, video: Path, mask: Path, extra: list[str], threads: int, source: Path | None = None
) -> dict:
    """One whole process: wall seconds, peak RSS (MiB) and what summary.json says ran. ``source``: the
    ``src`` folder of another version of xmem to run instead of the installed one."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "masks"
        cmd = [sys.executable, "-m", "xmem", "segment", str(video), "--mask", str(mask), "--out", str(out)]
        cmd += [*run.args, *extra, "--quiet"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        if source is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(source), *filter(None, [os.environ.get("PYTHONPATH")])])
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            raise SystemExit(f"{run.name} failed: {' '.join(cmd)}\n{stderr[-3000:]}")
        summary = json.loads((out / "summary.json").read_text())
    settings = summary.get("settings", {})
    return {
        "seconds": seconds,
        # the process's own high-water mark (VmHWM, in summary.json): a child's rusage would count this
        # script's memory at the fork
        "peak_rss_mb": summary["peak_memory_mib"]["process_rss"],
        "precision": settings.get("precision"),
        "size": settings.get("size"),
    }


def source_revision(source: Path) -> str:
    """The git commit of the checkout that holds ``source`` (a ``src`` folder), or "unknown"."""
    proc = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=ROOT / "demo" / "cup.mp4")
    parser.add_argument("--mask", type=Path, default=ROOT / "demo" / "cup-mask.png")
    parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=list(RUNS))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, help="weights instead of the embedded default model")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "segment_speed")
    parser.add_argument("--note", default="", help="what this run is, recorded with the results")
    parser.add_argument(
        "--baseline", type=Path, help="the src folder of another xmem version, timed beside this one"
    )
    args = parser.parse_args()
    if args.baseline is not None and not (args.baseline / "xmem" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: not a src folder of xmem (no xmem/__init__.py in it)")

    extra = ["--weights", str(args.weights)] if args.weights else []
    frames = count_frames(args.video)
    print(f"{args.video.name}: {frames} frames; {args.threads} threads")
    versions: list[tuple[str, Path | None]] = [("this", None)]
    if args.baseline is not None:
        versions.append(("baseline", args.baseline.resolve()))
    samples: dict[str, dict[str, list[dict]]] = {v: {name: [] for name in args.runs} for v, _ in versions}
    for repeat in range(args.repeats):
        for name in args.runs:
            for version, source in versions if repeat % 2 == 0 else versions[::-1]:
                result = run_once(RUNS[name], args.video, args.mask, extra, args.threads, source)
                samples[version][name].append(result)
                print(
                    f"[{repeat + 1}/{args.repeats}] {name} ({version}): {frames / result['seconds']:.1f} "
                    f"frames/s ({result['seconds']:.1f} s, {result['precision']}, size {result['size']}), "
                    f"peak RSS {result['peak_rss_mb']:.0f} MiB"
                )

    rows = []
    for version, by_run in samples.items():
        for name, runs in by_run.items():
            fps = [frames / r["seconds"] for r in runs]
            rows.append(
                {
                    "version": version,
                    "run": name,
                    "options": " ".join(RUNS[name].args),
                    "precision": runs[0]["precision"],
                    "size": runs[0]["size"],
                    "fps_best": max(fps),
                    "fps_median": statistics.median(fps),
                    "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                }
            )
    setup = {
        "video": args.video.name,
        "frames": frames,
        "threads": args.threads,
        "repeats": args.repeats,
        "weights": str(args.weights) if args.weights else "embedded default model",
        "cpu": cpu_description(),
        "env": {k: os.environ[k] for k in RECORDED_ENV if k in os.environ},
        "note": args.note,
        "baseline": (
            {"src": str(args.baseline), "commit": source_revision(args.baseline)} if args.baseline else None
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / "speed.json", "w") as f:
        json.dump({"setup": setup, "results": rows, "samples": samples}, f, indent=2)
    with atomic_write(args.out / "speed.csv", "w") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(
            f"{row['run']:>13} ({row['version']}): best {row['fps_best']:.1f}, median {row['fps_median']:.1f} "
            f"frames/s, peak RSS {row['peak_rss_mb']:.0f} MiB"
        )
    print(f"results in {args.out}")


if __name__ == "__main__":
    main()
