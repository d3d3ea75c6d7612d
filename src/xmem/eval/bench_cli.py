"""``xmem bench``: frames/s and memory against frame index, on a generated or a given video."""

from __future__ import annotations

import argparse
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from xmem.config import Precision, resolve_device
from xmem.data.sources import MissingExtraError, Split
from xmem.data.synthetic import CompositeConfig
from xmem.eval.bench import (
    BenchResult,
    BenchRun,
    BenchSummary,
    FrameRecord,
    GeneratedVideo,
    StreamedVideo,
    VideoSource,
    open_video,
    write_csv,
)
from xmem.inference.options import add_engine_arguments, engine_config
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.model.checkpoint import load_model

log = logging.getLogger("xmem")

CSV_NAME, JSON_NAME = "bench.csv", "bench.json"
PLOT_NAMES = {"time": "bench_time.png", "memory": "bench_memory.png", "quality": "bench_quality.png"}
DEFAULT_FRAMES = 1000


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``bench`` subcommand."""
    p = sub.add_parser(
        "bench",
        help="measure frames/s and memory over a video of any length",
        description="Run the engine over a video and record, per frame, the time, the process memory (RSS; "
        "allocated memory on CUDA) and the working / long-term memory sizes. The video is generated (a "
        "synthetic composite with ground truth, rendered on demand: --frames N) or given (--video). "
        "--pingpong K plays it K times alternately forward and backward (K × its frames). Prints a "
        "summary (with J&F when there is ground truth); --out writes bench.csv, bench.json and PNG plots.",
    )
    video = p.add_argument_group("video (generated unless --video)")
    video.add_argument("--frames", type=int, help=f"length of the generated video (default {DEFAULT_FRAMES})")
    video.add_argument("--height", type=int, default=480, help="generated video height (default 480)")
    video.add_argument("--width", type=int, default=854, help="generated video width (default 854)")
    video.add_argument("--objects", type=int, default=2, help="objects in the generated video (default 2)")
    video.add_argument(
        "--seed", type=int, default=0, help="generated video: held-out composite seed (default 0)"
    )
    video.add_argument("--video", type=Path, help="a folder of frames instead of a generated video")
    video.add_argument("--mask", type=Path, help="with --video: index mask of the first frame")
    video.add_argument(
        "--gt", type=Path, help="with --video: folder of ground-truth masks, one PNG per frame (for J&F)"
    )
    video.add_argument(
        "--pingpong",
        type=int,
        default=1,
        metavar="K",
        help="play the video K times, alternately forward and backward (the paper's K× videos; default 1)",
    )

    engine = p.add_argument_group("engine (as in xmem segment)")
    engine.add_argument(
        "--weights", type=Path, help="XMem checkpoint (e.g. XMem.pth; default: the embedded XMem-Lite model)"
    )
    add_engine_arguments(engine)
    engine.add_argument("--threads", type=int, help="CPU threads for torch (default: torch's)")

    output = p.add_argument_group("output")
    output.add_argument("--out", type=Path, help=f"folder for {CSV_NAME}, {JSON_NAME} and the PNG plots")
    output.add_argument("--no-plots", action="store_true", help="write no PNG plots (no matplotlib needed)")
    output.add_argument("--overwrite", action="store_true", help="replace bench files already in --out")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_bench)


def _output_files(args: argparse.Namespace) -> list[Path]:
    names = [CSV_NAME, JSON_NAME] + ([] if args.no_plots else list(PLOT_NAMES.values()))
    return [args.out / name for name in names]


def _check_arguments(args: argparse.Namespace) -> None:
    if args.pingpong < 1:
        raise InputError(f"--pingpong: must be at least 1, got {args.pingpong}")
    if args.video is not None:
        if args.frames is not None:
            raise InputError("--frames sets the length of a generated video; it cannot go with --video")
    else:
        for name in ("mask", "gt"):
            if getattr(args, name) is not None:
                raise InputError(f"--{name} goes with --video (a generated video has its own masks)")
        if args.frames is not None and args.frames < 2:
            raise InputError(f"--frames: a video of at least 2 frames is needed, got {args.frames}")
        if args.objects < 1:
            raise InputError(f"--objects: must be at least 1, got {args.objects}")
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads: must be at least 1, got {args.threads}")
    if args.out is not None:
        if args.out.exists() and not args.out.is_dir():
            raise InputError(f"{args.out}: exists and is not a folder")
        existing = [p.name for p in _output_files(args) if p.exists()]
        if existing and not args.overwrite:
            raise InputError(f"{args.out}: already holds {', '.join(existing)}; use --overwrite to replace")
        if not args.no_plots:
            from xmem.eval.plots import require_matplotlib

            require_matplotlib()  # before the run, not after it


def make_video(args: argparse.Namespace) -> VideoSource:
    """The video of the arguments: given (--video) or generated (held-out composite)."""
    if args.video is not None:
        return open_video(args.video, mask=args.mask, ground_truth=args.gt, replay=args.pingpong > 1)
    try:
        config = CompositeConfig(
            height=args.height,
            width=args.width,
            length=args.frames if args.frames is not None else DEFAULT_FRAMES,
            objects=(args.objects, args.objects),
            split=Split.HELD_OUT,
        )
    except ValueError as exc:
        raise InputError(f"invalid generated video: {exc}") from None
    if args.seed < 0:
        raise InputError(f"--seed: must be non-negative, got {args.seed}")
    return GeneratedVideo(config, args.seed)


def describe(video: VideoSource, passes: int) -> str:
    if isinstance(video, GeneratedVideo):
        c = video.config
        what = f"generated composite {c.height}×{c.width}, {video.composite.num_objects} objects, seed {video.seed}"
    else:
        what = f"{video.name}"
    n = len(video)
    if passes == 1:
        return f"{n} frames ({what})"
    return f"{n * passes} frames ({what}: {n} frames played {passes}× back and forth)"


def _mb(x: float | None) -> str:
    return "-" if x is None or math.isnan(x) else f"{x:.0f} MiB"


def format_summary(s: BenchSummary) -> str:
    """The summary as printed by ``xmem bench``."""
    lines = [
        f"frames/s: {s.frames_per_second:.3f} overall, {s.steady_frames_per_second:.3f} from frame "
        f"{s.steady_from} ({s.frames} frames in {s.seconds:.1f} s of engine time; reading "
        f"{s.read_ms_per_frame:.1f} ms per frame apart)",
        f"time per frame: {s.ms_per_frame_early:.1f} ms (frames {s.steady_from}-"
        f"{s.steady_from + s.window - 1}), {s.ms_per_frame_late:.1f} ms (last {s.window}); median "
        f"{s.median_ms_per_frame_steady:.1f} ms from frame {s.steady_from}",
    ]
    growth = (
        f" ({100 * (s.rss_mb_at_end / s.rss_mb_at_reference - 1):+.1f}%)"
        if s.rss_mb_at_reference and not math.isnan(s.rss_mb_at_reference)
        else ""
    )
    lines.append(
        f"RSS: peak {_mb(s.peak_rss_mb)}; {_mb(s.rss_mb_at_reference)} after {s.rss_reference_frames} frames, "
        f"{_mb(s.rss_mb_at_end)} at the end{growth}"
    )
    if s.peak_gpu_allocated_mb is not None:
        lines.append(
            f"GPU allocated: peak {_mb(s.peak_gpu_allocated_mb)}, {_mb(s.gpu_allocated_mb_at_end)} at the end"
        )
    lines.append(
        f"memory: working ≤ {s.max_working_elements} elements, long-term ≤ {s.max_long_term_elements} "
        f"elements; stores {s.memory_store_mb_at_end:.1f} MiB at the end (max {s.max_memory_store_mb:.1f})"
    )
    if s.jf is not None:
        lines.append(
            f"J&F {100 * s.jf:.1f} (J {100 * s.j:.1f}, F {100 * s.f:.1f}, J decay {100 * s.j_decay:.1f}) "
            f"over {s.objects} objects, DAVIS protocol"
        )
    return "\n".join(lines)


def write_results(
    result: BenchResult, out: Path, setup: dict, *, plots: bool, title: str, pass_length: int | None
) -> list[Path]:
    """bench.csv, bench.json and (with ``plots``) the PNGs, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    written = [out / CSV_NAME, out / JSON_NAME]
    write_csv(result.records, written[0])
    with atomic_write(written[1], "w") as f:
        json.dump(
            {"setup": setup, "complete": result.complete, "summary": asdict(result.summary)}, f, indent=2
        )
    if plots:
        from xmem.eval.plots import plot_memory, plot_quality, plot_time

        kwargs = {"title": title, "pass_length": pass_length}
        plot_time(result.records, out / PLOT_NAMES["time"], **kwargs)
        plot_memory(result.records, out / PLOT_NAMES["memory"], **kwargs)
        written += [out / PLOT_NAMES["time"], out / PLOT_NAMES["memory"]]
        if result.scores is not None:
            plot_quality(result.records, out / PLOT_NAMES["quality"], **kwargs)
            written.append(out / PLOT_NAMES["quality"])
    return written


def run_bench(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except MissingExtraError as exc:
        raise InputError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    _check_arguments(args)
    config = engine_config(args)
    try:
        device = resolve_device(config.device)
    except ValueError as exc:
        raise InputError(f"--device: {exc}") from None
    model = load_model(args.weights)  # without --weights: the embedded default model
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    video = make_video(args)
    try:
        run = BenchRun(model, config, video, passes=args.pingpong)
        config = run.config
        what = describe(video, args.pingpong)
        settings = (
            f"{device}, {config.precision.value}, size {config.size}, {torch.get_num_threads()} threads"
        )
        print(f"xmem bench: {what} on {settings}", flush=True)
        setup = {
            "video": what,
            "source": video.name,
            "source_frames": len(video),
            "passes": args.pingpong,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "weights": str(args.weights) if args.weights is not None else "default",
            "config": _jsonable(asdict(config)),
        }
        bar = tqdm(total=run.total, unit="frame", disable=args.quiet, dynamic_ncols=True)

        def progress(record: FrameRecord) -> None:
            bar.update(1)
            bar.set_postfix(
                work=record.working_elements,
                long=record.long_term_elements,
                rss=f"{record.rss_mb:.0f}M",
                refresh=False,
            )

        try:
            result = run.run(progress)
        except KeyboardInterrupt:
            bar.close()
            if run.records and args.out is not None:
                partial = run.result()
                write_results(partial, args.out, setup, plots=False, title=what, pass_length=None)
                print(
                    f"xmem bench: interrupted after {len(partial.records)} frames; their records are in "
                    f"{args.out / CSV_NAME}"
                )
            raise
        finally:
            bar.close()
    finally:
        if isinstance(video, StreamedVideo):
            video.close()

    print(format_summary(result.summary))
    if args.out is not None:
        written = write_results(
            result,
            args.out,
            setup,
            plots=not args.no_plots,
            title=f"xmem bench: {what}\n{settings}",
            pass_length=len(video) if args.pingpong > 1 else None,
        )
        print("results: " + ", ".join(str(p) for p in written))
    return 0


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Precision):
        return value.value
    return value
