"""The ``xmem`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from xmem.config import InferenceConfig, MemoryConfig, Precision, resolve_device
from xmem.eval.bench_cli import add_bench_parser
from xmem.eval.cli import add_eval_parser
from xmem.inference.segmenter import VideoSegmenter
from xmem.io.errors import InputError
from xmem.io.frames import FrameFolder
from xmem.io.masks import read_index_mask, write_index_mask
from xmem.model.checkpoint import CheckpointError, load_model
from xmem.train.cli import add_export_parser, add_train_parser

log = logging.getLogger("xmem")


def _add_segment_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "segment",
        help="propagate a first-frame mask through a folder of frames",
        description="Segment every frame of FRAMES (a folder of jpg/png frames, natural order) from the "
        "index mask of its first frame; writes one palette PNG per frame, named after the frame.",
    )
    p.add_argument("frames", type=Path, help="folder of frames")
    p.add_argument(
        "--mask", type=Path, required=True, help="index mask of the first frame (palette/grey PNG)"
    )
    p.add_argument("--out", type=Path, required=True, help="output folder for the masks")
    p.add_argument("--weights", type=Path, help="XMem checkpoint (e.g. XMem.pth)")
    p.add_argument(
        "--size", type=int, default=480, help="shorter side used for processing; -1 keeps the input size"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    p.add_argument("--precision", choices=[x.value for x in Precision], default="fp32")
    p.add_argument("--overwrite", action="store_true", help="allow an output folder that holds other files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    d = MemoryConfig()
    p.add_argument("--mem-every", type=int, default=d.mem_every)
    p.add_argument("--top-k", type=int, default=d.top_k)
    p.add_argument("--min-working-frames", type=int, default=d.min_working_frames)
    p.add_argument("--max-working-frames", type=int, default=d.max_working_frames)
    p.add_argument("--num-prototypes", type=int, default=d.num_prototypes)
    p.add_argument("--max-long-term-elements", type=int, default=d.max_long_term_elements)
    p.set_defaults(run=run_segment)


def _config_from_args(args: argparse.Namespace) -> InferenceConfig:
    try:
        memory = MemoryConfig(
            mem_every=args.mem_every,
            top_k=args.top_k,
            min_working_frames=args.min_working_frames,
            max_working_frames=args.max_working_frames,
            num_prototypes=args.num_prototypes,
            max_long_term_elements=args.max_long_term_elements,
        )
        return InferenceConfig(
            memory=memory, size=args.size, precision=Precision(args.precision), device=args.device
        )
    except ValueError as exc:
        raise InputError(f"invalid settings: {exc}") from None


def _check_output_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    others = [p.name for p in out.iterdir()]
    if others and not overwrite:
        raise InputError(
            f"{out}: output folder is not empty ({len(others)} entries); use --overwrite to write into it"
        )


def run_segment(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    frames = FrameFolder(args.frames)
    mask = read_index_mask(args.mask)
    h, w = frames.first_size()
    if mask.shape != (h, w):
        raise InputError(
            f"{args.mask}: mask size {mask.shape[1]}x{mask.shape[0]} differs from the frames' {w}x{h}"
        )
    if not mask.any():
        raise InputError(f"{args.mask}: the mask holds no object (all pixels are 0)")
    try:
        resolve_device(config.device)
    except ValueError as exc:
        raise InputError(f"--device: {exc}") from None
    if args.weights is None:
        raise InputError(
            "--weights: no checkpoint given (the embedded default model is not part of this release)"
        )
    model = load_model(args.weights)
    _check_output_folder(args.out, args.overwrite)

    segmenter = VideoSegmenter(model, config)
    names = frames.names
    log.info(
        "segmenting %d frames of %s on %s (%s)",
        len(frames),
        args.frames,
        segmenter.core.device,
        args.precision,
    )
    start = time.perf_counter()
    bar = tqdm(total=len(frames), unit="frame", disable=args.quiet, dynamic_ncols=True)
    try:
        for index, out_mask in segmenter.propagate(frames, {0: mask}):
            write_index_mask(args.out / f"{names[index]}.png", out_mask.astype(np.uint8))
            bar.update(1)
            memory = segmenter.core.memory
            bar.set_postfix(work=memory.work.size, long=memory.long.size, refresh=False)
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    log.info("wrote %d masks to %s (%.2f frames/s)", len(frames), args.out, len(frames) / max(elapsed, 1e-9))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xmem", description="Long-video object segmentation with XMem.")
    parser.add_argument("-v", "--verbose", action="store_true", help="more logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment_parser(sub)
    add_eval_parser(sub)
    add_train_parser(sub)
    add_export_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return args.run(args)
    except (InputError, CheckpointError) as exc:
        print(f"xmem: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xmem: interrupted; masks written so far are complete", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
