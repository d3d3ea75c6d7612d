"""The engine's command-line options (shared by ``xmem segment`` and ``xmem bench``)."""

from __future__ import annotations

import argparse

from xmem.config import DEFAULT_MEM_EVERY, InferenceConfig, MemoryConfig, Precision
from xmem.io.errors import InputError


def add_engine_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--size --device --precision`` and the memory settings, with the paper's defaults."""
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="shorter side used for processing; -1 keeps the input size (default: the size the weights were "
        "made for, 240 for the embedded model; else 480)",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, mps or auto (default)")
    parser.add_argument(
        "--precision",
        choices=[x.value for x in Precision],
        default="auto",
        help="auto (default: bf16 where the CPU or GPU has native bf16 matrix units, else fp32), fp32, tf32 "
        "(fp32 with TF32 matrix units on CUDA GPUs), bf16 or fp16",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the networks through torch.compile (for GPUs; the first frames wait for the compilation)",
    )
    d = MemoryConfig()
    parser.add_argument(
        "--mem-every",
        type=int,
        default=None,
        help="a memory frame every N frames (default: what the weights were tuned for, 2 for the embedded "
        f"model; else {DEFAULT_MEM_EVERY})",
    )
    parser.add_argument("--top-k", type=int, default=d.top_k)
    parser.add_argument("--min-working-frames", type=int, default=d.min_working_frames)
    parser.add_argument("--max-working-frames", type=int, default=d.max_working_frames)
    parser.add_argument("--num-prototypes", type=int, default=d.num_prototypes)
    parser.add_argument("--max-long-term-elements", type=int, default=d.max_long_term_elements)


def engine_config(args: argparse.Namespace) -> InferenceConfig:
    """The :class:`InferenceConfig` of parsed engine options; bad values raise :class:`InputError`."""
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
            memory=memory,
            size=args.size,
            precision=Precision(args.precision),
            device=args.device,
            compile=args.compile,
        )
    except ValueError as exc:
        raise InputError(f"invalid settings: {exc}") from None


def engine_settings(args: argparse.Namespace) -> dict[str, object]:
    """The parsed values of the options :func:`add_engine_arguments` declares, by destination name (for the
    setup that a benchmark records next to its results; unset defaults stay ``None``)."""
    probe = argparse.ArgumentParser(add_help=False)
    add_engine_arguments(probe)
    return {action.dest: getattr(args, action.dest) for action in probe._actions}
