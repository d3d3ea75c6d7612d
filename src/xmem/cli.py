"""The ``xmem`` command line: ``xmem segment`` (videos, frame folders, datasets) and ``xmem info``.

Each subcommand is one ``_add_*_parser(subparsers)`` function registered in :data:`COMMANDS`; its
``run(args)`` returns the exit status. Bad input raises :class:`InputError` (or
:class:`CheckpointError`), which :func:`main` prints as one ``xmem: error: ...`` line, exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from xmem.config import InferenceConfig, resolve_device
from xmem.eval.bench_cli import add_bench_parser
from xmem.eval.cli import CSV_NAME as SCORES_CSV
from xmem.eval.cli import add_eval_parser, format_table
from xmem.eval.dataset import evaluate_dataset, write_csv
from xmem.inference.core import InferenceCore
from xmem.inference.options import add_engine_arguments, engine_config
from xmem.inference.precision import choose_precision
from xmem.io.dataset import find_videos, read_video_list
from xmem.io.errors import InputError
from xmem.io.frames import FrameFolder, FrameSource
from xmem.io.overlay import check_overlay_path
from xmem.io.prompts import Prompts, load_prompts
from xmem.io.video import open_frames
from xmem.jobs.allocator import retain_large_blocks
from xmem.jobs.distributed import Rank, barrier, process_group, rank_from_env, shard
from xmem.jobs.segment import JobStopped, OutputOptions, SegmentJob, prepare_output_folder
from xmem.model.checkpoint import CheckpointError, load_model
from xmem.model.info import describe_checkpoint, file_sha256
from xmem.model.network import XMem
from xmem.train.cli import add_export_parser, add_train_parser
from xmem.weights import default_weights_path

log = logging.getLogger("xmem")


def _add_weights_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", type=Path, help="XMem checkpoint (e.g. XMem.pth; default: the embedded XMem-Lite model)"
    )


# -- xmem segment ------------------------------------------------------------------------------------------
def _add_segment_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="propagate masks through a video, a folder of frames or a dataset",
        description="Segment every frame of INPUT from masks given on some of its frames. Writes one palette "
        "PNG per frame (named after the frame; 00000.png, 00001.png, ... for video files) at the input "
        "resolution, and summary.json, into --out.",
    )
    p.add_argument(
        "input",
        help="a video file (mp4, avi, mov, mkv), a folder of frames (jpg/png, natural order), a quoted glob "
        "pattern such as 'shots/*.jpg', or with --dataset a DAVIS / YouTube-VOS root",
    )
    given = p.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--mask", type=Path, help="index mask of the first frame (palette/grey/binary/RGB PNG)"
    )
    given.add_argument(
        "--masks",
        type=Path,
        help="folder of masks named after their frames (00000.png ...); a later mask adds objects or "
        "corrects the ones it holds",
    )
    given.add_argument(
        "--prompts",
        type=Path,
        help="JSON file of clicks, boxes or masks per frame and object, e.g. "
        '{"40": {"1": {"points": [[320, 200]], "labels": [1]}, "2": {"box": [10, 20, 110, 220]}}} '
        "(pixels of the input frames; the masks made from them go to --out/prompts/)",
    )
    p.add_argument(
        "--click-weights",
        type=Path,
        help="with --prompts: a SAM or SAM 2 checkpoint (e.g. sam2.1_hiera_tiny.pt; needs xmem-vos[sam]) to "
        "turn clicks and boxes into masks instead of the built-in GrabCut",
    )
    given.add_argument(
        "--dataset",
        choices=["davis", "youtube"],
        help="INPUT is a dataset root (JPEGImages/<video>/, Annotations/<video>/): davis uses each video's "
        "first mask, youtube every mask of Annotations/<video>/ on its frame",
    )
    p.add_argument(
        "--videos", type=Path, help="with --dataset: file naming the videos to process, one a line"
    )
    p.add_argument(
        "--eval",
        action="store_true",
        help="with --dataset: score the masks against the dataset's annotations afterwards (J&F table, "
        "--out/scores.csv; as xmem eval)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder (with --dataset: one folder per video in it)"
    )
    _add_weights_argument(p)
    p.add_argument(
        "--overlay",
        type=Path,
        help="also write the frames with the masks drawn on them to this video (.mp4/.mkv/.mov/.avi); with "
        "--dataset a folder that gets <video>.mp4",
    )
    p.add_argument(
        "--fps", type=float, default=24.0, help="overlay frame rate for frame folders (default 24)"
    )
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write probabilities/<object id>/<frame>.png (probability x 255)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        metavar="N",
        help="save the resume state every N frames (Ctrl-C always saves it)",
    )
    p.add_argument(
        "--direction",
        choices=["forward", "both"],
        default="forward",
        help="both: the objects a mask introduces are also traced back over the frames before it, down to "
        "the previous mask or the start (default: forward only)",
    )
    p.add_argument("--resume", action="store_true", help="continue the job saved in --out")
    p.add_argument("--overwrite", action="store_true", help="allow an output folder that holds other files")
    add_engine_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_segment)


def _config_from_args(args: argparse.Namespace) -> InferenceConfig:
    config = engine_config(args)
    if args.checkpoint_every < 0:
        raise InputError(f"--checkpoint-every: must be 0 (off) or positive, got {args.checkpoint_every}")
    if args.fps <= 0:
        raise InputError(f"--fps: must be positive, got {args.fps}")
    return config


def _device(config: InferenceConfig, rank: Rank | None = None) -> str:
    """The device to run on; under torchrun each process takes the GPU of its local rank."""
    name = config.device
    try:
        device = resolve_device(name)
    except ValueError as exc:
        raise InputError(f"--device: {exc}") from None
    if rank is not None and rank.world_size > 1 and device.type == "cuda" and device.index is None:
        return str(resolve_device(f"cuda:{rank.local_rank}"))
    return str(device)


def _prepare_process(device: str) -> None:
    """Process-wide settings of an inference run: on the CPU, large freed blocks stay with the process."""
    if device == "cpu":
        retain_large_blocks()


def _load_weights(path: Path | None) -> tuple[XMem, dict[str, object]]:
    """The network and its provenance. Without a path: the embedded default model."""
    model = load_model(path)
    if path is None:
        log.info(
            "weights: the embedded default model (XMem-Lite, a CPU model; loses small people in crowds, see "
            "docs/default-model.md); --weights XMem.pth (the released weights) for the best accuracy"
        )
    name = "default" if path is None else str(path)
    path = default_weights_path() if path is None else path
    return model, {"path": name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


@contextlib.contextmanager
def _stop_on_ctrl_c(job: SegmentJob) -> Iterator[None]:
    """First Ctrl-C: the job stops after the current frame and saves its resume state; second: at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame) -> None:
        if job.stop_requested:
            raise KeyboardInterrupt
        job.request_stop()
        log.warning("xmem: stopping after this frame (press Ctrl-C again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _click_predictor(checkpoint: Path | None, device: str):
    """The SAM / SAM 2 predictor of ``--click-weights``, or None for the built-in one."""
    if checkpoint is None:
        return None
    from xmem.interactive.sam import predictor_for_checkpoint

    try:
        return predictor_for_checkpoint(checkpoint, device=device)
    except (OSError, ValueError, ImportError, RuntimeError) as exc:
        raise InputError(f"{checkpoint}: {str(exc).splitlines()[0]}") from None


def _segment_job(
    args: argparse.Namespace,
    core: InferenceCore,
    source: FrameSource,
    prompts: Prompts,
    weights: dict[str, object],
    folder: Path,
    overlay: Path | None,
    *,
    progress: bool,
) -> SegmentJob:
    """One video's job with the output options and direction of the command line."""
    options = OutputOptions(
        folder,
        overlay=overlay,
        save_probabilities=args.save_probabilities,
        checkpoint_every=args.checkpoint_every,
        overlay_fps=args.fps,
    )
    return SegmentJob(
        core,
        source,
        prompts,
        options,
        weights=weights,
        resume=args.resume,
        progress=progress,
        both_directions=args.direction == "both",
    )


def run_segment(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    if args.dataset is not None:
        if args.direction != "forward":
            raise InputError("--direction both: not with --dataset (datasets are propagated forward)")
        return _run_dataset(args, config)
    if args.videos is not None or args.eval:
        raise InputError(f"{'--videos' if args.videos is not None else '--eval'}: only with --dataset")
    if args.click_weights is not None and args.prompts is None:
        raise InputError("--click-weights: only with --prompts")
    source = open_frames(args.input)
    if args.prompts is None:
        prompts = load_prompts(source, mask=args.mask, masks=args.masks)
    device = _device(config)
    if args.overlay is not None:
        check_overlay_path(args.overlay)
    prepare_output_folder(args.out, overwrite=args.overwrite, resume=args.resume, create=False)
    predictor = _click_predictor(args.click_weights, device)
    _prepare_process(device)
    model, weights = _load_weights(args.weights)
    prepare_output_folder(args.out, overwrite=args.overwrite, resume=args.resume)
    if args.prompts is not None:
        from xmem.interactive.prompt_file import load_prompt_file

        prompts = load_prompt_file(source, args.prompts, args.out, predictor)
    core = InferenceCore(model, dataclasses.replace(config, device=device), copy_network=False)
    job = _segment_job(args, core, source, prompts, weights, args.out, args.overlay, progress=not args.quiet)
    log.info(
        "segmenting %s (%s frames) on %s (%s: %s), objects %s",
        source.location,
        source.length if source.length is not None else "?",
        core.device,
        core.config.precision.value,
        core.precision_reason,
        prompts.objects,
    )
    with _stop_on_ctrl_c(job):
        summary = job.run()
    log.info(
        "wrote %d masks to %s (%.2f frames/s, peak RSS %s MiB)",
        summary.frames,
        args.out,
        summary.frames_per_second,
        summary.peak_memory_mib.get("process_rss"),
    )
    return 0


def _run_dataset(args: argparse.Namespace, config: InferenceConfig) -> int:
    """Every video of a dataset root, each into ``--out/<video>/``; under torchrun, video i goes to rank
    i % world_size."""
    if args.overlay is not None and args.overlay.suffix:
        raise InputError(f"--overlay {args.overlay}: with --dataset, give a folder (it gets <video>.mp4)")
    names = read_video_list(args.videos) if args.videos is not None else None
    videos = find_videos(args.input, names)
    rank = rank_from_env() or Rank(0, 1, 0)
    device = _device(config, rank)
    mine = shard(videos, rank.rank, rank.world_size)
    known = {v.name for v in videos} | {SCORES_CSV}
    if args.out.is_dir() and not (args.overwrite or args.resume):
        others = sorted(p.name for p in args.out.iterdir() if p.name not in known)
        if others:
            raise InputError(
                f"{args.out}: holds files that are not outputs of this dataset ({', '.join(others[:3])}); "
                "use --overwrite to write into it"
            )
    for video in mine:  # before any work: a refused folder must not stop the job hours later
        folder = args.out / video.name
        if folder.is_dir() and any(folder.iterdir()) and not (args.overwrite or args.resume):
            raise InputError(
                f"{folder}: output folder is not empty; use --overwrite to write into it or --resume to "
                "continue"
            )
    _prepare_process(device)
    model, weights = _load_weights(args.weights)
    core = InferenceCore(model, dataclasses.replace(config, device=device), copy_network=False)
    log.info(
        "%d videos of %s%s on %s",
        len(mine),
        args.input,
        f" (rank {rank.rank} of {rank.world_size}, {len(videos)} in all)" if rank.world_size > 1 else "",
        core.device,
    )
    failed: list[str] = []
    with process_group(rank, core.device):
        for i, video in enumerate(mine, start=1):
            log.info("[%d/%d] %s", i, len(mine), video.name)
            try:
                source = FrameFolder(video.frames)
                prompts = load_prompts(source, masks=video.annotations, first_only=args.dataset == "davis")
                folder = args.out / video.name
                prepare_output_folder(folder, overwrite=True, resume=args.resume)
                overlay = None if args.overlay is None else args.overlay / f"{video.name}.mp4"
                progress = not args.quiet and rank.rank == 0
                job = _segment_job(args, core, source, prompts, weights, folder, overlay, progress=progress)
                with _stop_on_ctrl_c(job):
                    job.run()
            except InputError as exc:
                log.error("xmem: error: %s", exc)
                failed.append(video.name)
        barrier()
    if failed:
        raise InputError(
            f"{len(failed)} of {len(mine)} videos failed: {', '.join(failed)} (their errors are above)"
        )
    if args.eval and rank.rank == 0:  # after the barrier: every rank's masks are written
        result = evaluate_dataset(
            args.out, args.input, videos=[v.name for v in videos], progress=not args.quiet
        )
        print(format_table(result))
        write_csv(result, args.out / SCORES_CSV)
        log.info("scores written to %s", args.out / SCORES_CSV)
    return 0


# -- xmem annotate ----------------------------------------------------------------------------------------
def _add_annotate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "annotate",
        help="open a web page to segment and correct objects through a video",
        description="Start a local web server for a page that segments objects through INPUT: clicks, "
        "boxes and a brush on any frame, propagation forward and backward, corrections, undo, export. "
        "Everything is saved in --workspace as it changes; opening the same workspace again goes on where "
        "it stopped. Prints the URL to open (with its access token). Needs xmem-vos[app].",
    )
    p.add_argument("input", help="a video file, a folder of frames or a quoted glob pattern")
    p.add_argument(
        "--workspace", type=Path, required=True, help="folder of the session (masks, history, exports)"
    )
    _add_weights_argument(p)
    p.add_argument(
        "--click-weights",
        type=Path,
        help="a SAM or SAM 2 checkpoint to turn clicks and boxes into masks (needs xmem-vos[sam]); default: "
        "the built-in GrabCut",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another name the page may be opened by (the Host header; e.g. the server's name when "
        "listening on 0.0.0.0); repeatable",
    )
    p.add_argument("--token", help="the access token (default: a new random one)")
    add_engine_arguments(p.add_argument_group("engine"))
    p.set_defaults(run=run_annotate)


def run_annotate(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise InputError(
            f"xmem annotate needs the app extra ({exc.name} is missing): pip install 'xmem-vos[app]'"
        ) from None
    from xmem.app.server import WorkspaceInUse, bind, hold_workspace

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port: must be 0-65535, got {args.port}")
    if args.token is not None and len(args.token) < 8:
        raise InputError("--token: use at least 8 characters")
    config = engine_config(args)
    device = _device(config)
    source = open_frames(args.input)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        raise InputError(
            f"--host {args.host} --port {args.port}: cannot listen there ({exc.strerror or exc}); another "
            "server may use the port: --port 0 takes any free one"
        ) from None
    if args.workspace.exists() and not args.workspace.is_dir():
        raise InputError(f"{args.workspace}: exists and is not a folder")
    try:
        with hold_workspace(args.workspace):
            return _serve_session(args, source, sock, device, config)
    except WorkspaceInUse as exc:
        raise InputError(str(exc)) from None


def _serve_session(
    args: argparse.Namespace, source: FrameSource, sock, device: str, config: InferenceConfig
) -> int:
    from xmem.app.annotator import Annotator
    from xmem.app.server import ServerConfig, allowed_hosts_for, page_url, serve
    from xmem.interactive.session import VideoSession

    predictor = _click_predictor(args.click_weights, device)
    model, _ = _load_weights(args.weights)
    try:
        session = VideoSession(
            source,
            model,
            dataclasses.replace(config, device=device),
            predictor=predictor,
            workspace=args.workspace,
            copy_model=False,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    annotator = Annotator(session, args.workspace / "export")
    annotator.warm_up()
    server = ServerConfig(allowed_hosts=allowed_hosts_for(args.host, args.allow_host))
    if args.token is not None:
        server = dataclasses.replace(server, token=args.token)
    port = int(sock.getsockname()[1])
    if args.host in ("0.0.0.0", "::"):
        log.warning("xmem: listening on every network interface; anyone who has the token can use the page")
    print(f"xmem annotate: {source.location} ({session.num_frames} frames), workspace {args.workspace}")
    print(f"open {page_url(args.host, port, server.token)}  (Ctrl-C stops the server)", flush=True)
    serve(annotator, sock, server)
    return 0


# -- xmem info ---------------------------------------------------------------------------------------------
def _add_info_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe a checkpoint: variant, dims, parameters, provenance",
        description="Check that WEIGHTS loads into the XMem architecture and describe it.",
    )
    p.add_argument(
        "weights", type=Path, nargs="?", help="XMem checkpoint (e.g. XMem.pth; default: the embedded model)"
    )
    p.set_defaults(run=run_info)


def run_info(args: argparse.Namespace) -> int:
    info = describe_checkpoint(args.weights if args.weights is not None else default_weights_path())
    print("\n".join(info.lines()))
    device = resolve_device("auto")
    choice = choose_precision(device)
    reason = choice.reason.removeprefix("auto: ")
    print(
        f"precision:   auto runs {choice.precision.value} on {device} here ({reason}; --precision overrides)"
    )
    return 0


# -- entry point -------------------------------------------------------------------------------------------
# one line per subcommand
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_segment_parser,
    _add_annotate_parser,
    _add_info_parser,
    add_eval_parser,
    add_bench_parser,
    add_train_parser,
    add_export_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmem", description="Long-video object segmentation with XMem.")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    rank = rank_from_env()
    prefix = f"[rank {rank.rank}] " if rank is not None and rank.world_size > 1 else ""
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format=f"{prefix}%(message)s")
    try:
        return args.run(args)
    except (InputError, CheckpointError) as exc:
        print(f"xmem: error: {exc}", file=sys.stderr)
        return 2
    except JobStopped as exc:
        print(f"xmem: {exc}; run the same command with --resume to continue", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("xmem: interrupted; the files written so far are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
