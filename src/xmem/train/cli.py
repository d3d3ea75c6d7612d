"""``xmem train CONFIG [key=value ...]``: run the stages of a training config (under torchrun for DDP)."""

from __future__ import annotations

import argparse
from pathlib import Path

from xmem.configio import ConfigError, load_config
from xmem.io.errors import InputError
from xmem.model.checkpoint import CheckpointError


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` subcommand."""
    p = sub.add_parser(
        "train",
        help="train a model from a TOML config (stages, data, schedule)",
        description="Train the stages of CONFIG (a TOML file, see configs/) with optional key=value "
        "overrides (e.g. stages.0.iterations=500 seed=1). Checkpoints, logs, TensorBoard events and the "
        "exported weights of every stage go to --run-dir. Launch with torchrun for several processes.",
    )
    p.add_argument("config", type=Path, help="training config (TOML)")
    p.add_argument("overrides", nargs="*", help="key=value settings that replace the config's (TOML values)")
    p.add_argument("--run-dir", type=Path, help="output folder (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> int:
    from xmem.train.config import TrainConfig
    from xmem.train.trainer import Trainer, TrainingError

    try:
        config = load_config(TrainConfig, args.config, args.overrides)
    except ConfigError as exc:
        raise InputError(str(exc)) from None
    run_dir = args.run_dir or Path("runs") / args.config.stem
    checkpoint = run_dir / "checkpoint.pt"
    if not args.resume and checkpoint.exists():
        raise InputError(f"{run_dir}: holds a training run already; use --resume or another --run-dir")
    try:
        Trainer(config, run_dir, resume=args.resume, show_progress=not args.quiet).run()
    except (TrainingError, CheckpointError) as exc:
        raise InputError(str(exc)) from None
    return 0


def add_export_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``export`` subcommand."""
    p = sub.add_parser(
        "export",
        help="convert weights: .safetensors (xmem) <-> .pth (the released checkpoints' layout)",
        description="Write the weights of SOURCE (an xmem .safetensors file or a released-layout .pth) as "
        "TARGET: .pth gives a plain state_dict in the layout of the released XMem checkpoints, .safetensors "
        "an xmem weights file with its model config in the metadata.",
    )
    p.add_argument("source", type=Path)
    p.add_argument("target", type=Path)
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from xmem.model.checkpoint import export_released_format, load_model, save_weights

    if args.target.suffix not in (".pth", ".safetensors"):
        raise InputError(f"{args.target}: the target must end in .pth or .safetensors")
    model = load_model(args.source)
    if args.target.suffix == ".pth":
        export_released_format(model, args.target)
    else:
        save_weights(model, args.target, {"converted_from": str(args.source)})
    print(f"wrote {args.target}")
    return 0
