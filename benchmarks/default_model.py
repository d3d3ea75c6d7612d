"""Ship a trained XMem-Lite run as the embedded default model, with its model card.

    xmem train configs/default-1-synthetic.toml --run-dir runs/default       # train (hours on 2 CPU cores)
    python benchmarks/default_model.py runs/default                          # weights + card into the package
    python benchmarks/heldout_jf.py --default-model                          # held-out J&F of the shipped model
    xmem bench --video demo/cup.mp4 --mask demo/cup-mask.png --out benchmarks/results/default_bench --no-plots
    python benchmarks/default_model.py --scores                              # the shipped card, with the scores

Takes the run's best weights (``<stage>-best.safetensors``, held-out validation J&F) of its last stage
(``--final``: its final weights, ``<stage>.safetensors``, e.g. when the best by the noisy validation fails
on real video; ``--snapshot N``: its weights of iteration N, chosen on the real benchmark's selection half),
stores them as fp16 in ``src/xmem/weights/xmem-lite-default.safetensors`` and writes the model card next to
them (``.json``): the training config, the command, the validation history, the data split and seeds, the
J&F of the fp32 and fp16 weights on the validation videos (fp16 is shipped only when it holds the quality)
and the run it was initialised from (``init.weights``, resolved like the trainer does: against the current
directory, so run this from where ``xmem train`` ran). ``--shrinkage-offset C`` (no run) changes the shipped
weights' similarity to -(d² + C)·distance (``KeyProjection.offset_shrinkage``) and re-validates them.
``--scores`` (no run) adds the committed results of
``heldout_jf.py``, ``xmem bench`` and ``demo_quality.py`` to the card of the weights already shipped: the
tensors are written back unchanged, whatever the runs directory now holds.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Mapping
from pathlib import Path

import torch

from xmem.configio import build
from xmem.data.sources import PHOTOGRAPHS, Split
from xmem.data.synthetic import VALIDATION_FIRST_SEED
from xmem.model.checkpoint import load_model, read_safetensors_info, save_weights
from xmem.model.network import XMem
from xmem.train.config import TrainConfig
from xmem.train.validation import ValidationConfig, validate
from xmem.weights import default_weights_path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SCORES = {  # the committed results that --scores adds to the card
    "heldout_jf": RESULTS / "default_model" / "heldout_jf.json",
    "speed_480p_cup": RESULTS / "default_bench" / "bench.json",
    "demo": RESULTS / "demo_quality.json",
    "real_benchmark": RESULTS / "real" / "stage8-size240.json",  # benchmarks/real_jf.py --split all
    "vtest_check": RESULTS / "real" / "vtest" / "stage8.json",  # benchmarks/real/vtest_check.py
}
MAX_FP16_LOSS = 0.005  # J&F (0..1) that fp16 storage may cost on the validation videos


def _parent(config: TrainConfig) -> dict | None:
    """Where a run that continued from earlier weights (``init.weights``) started: those weights' own record
    (their run's config, stage, iteration and validation J&F), so that the card describes the whole chain."""
    path = config.init.weights
    if path is None:
        return None
    path = path.resolve()  # as the trainer opened it: relative to the current directory
    record: dict = {"weights": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)}
    if path.suffix == ".safetensors" and path.is_file():
        card = path.with_suffix(".json")  # the card as maintained (configs renamed since are named there)
        if card.is_file() and "info" in (loaded := json.loads(card.read_text())):
            info = loaded["info"]
        else:
            _, info = read_safetensors_info(path)
        # weights shipped by this script name themselves in their card (training.shipped_weights)
        record.update(_record(info.get("training", {}).get("shipped_weights") or info))
        record["config"] = info.get("training")
    if (path.parent / "log.jsonl").is_file():
        record["validation_history"] = _validation_history(_read_log(path.parent))
    return record


def _record(info: dict) -> dict:
    """Which weights these are: their stage, iteration and validation J&F."""
    return {k: info.get(k) for k in ("stage", "iteration", "heldout_jf")}


def _read_log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _validation_history(log: list[dict]) -> list[dict]:
    return [{"iteration": r["iteration"], "heldout_jf": r["heldout_jf"]} for r in log if "heldout_jf" in r]


def benchmark_videos(setup: dict | None) -> str:
    """The card's line on the benchmark's videos (their seeds, from heldout_jf.json's setup once run)."""
    seeds = (
        "from 0" if setup is None else f"{setup['first_seed']}-{setup['first_seed'] + setup['videos'] - 1}"
    )
    return f"held-out seeds {seeds} (benchmarks/heldout_jf.py), never used for validation"


def add_scores(target: Path) -> int:
    """The committed benchmark results of the shipped weights into their card (and metadata)."""
    if not target.is_file():
        print(f"error: {target}: no shipped weights to add scores to", file=sys.stderr)
        return 2
    model = load_model(target)
    _, info = read_safetensors_info(target)  # the metadata alone: load_model read the tensors
    for name, path in SCORES.items():
        if path.is_file():
            info[name] = json.loads(path.read_text())
            print(f"{name}: {path.relative_to(ROOT)}")
    if "heldout_jf" in info and "data" in info:
        info["data"]["benchmark_videos"] = benchmark_videos(info["heldout_jf"]["setup"])
    save_weights(model, target, info, dtype=torch.float16 if info.get("stored_as") == "fp16" else None)
    return 0


def validate_fp32_and_fp16(model: XMem, validation: ValidationConfig) -> dict[str, float]:
    """Validation J&F of ``model`` and of the same weights as fp16 storage gives them back (rounded, in
    fp32): the card's ``validation_jf_fp32`` and ``validation_jf_fp16``."""
    fp16 = copy.deepcopy(model)
    with torch.no_grad():
        for t in fp16.state_dict().values():  # parameters and BatchNorm statistics alike
            if t.is_floating_point():
                t.copy_(t.half())
    return {
        "validation_jf_fp32": validate(model, validation),
        "validation_jf_fp16": validate(fp16, validation),
    }


def fp16_holds(quality: Mapping[str, float]) -> bool:
    """Whether fp16 storage keeps the validation J&F (within :data:`MAX_FP16_LOSS`)."""
    return quality.get("validation_jf_fp32", 0) - quality.get("validation_jf_fp16", 0) <= MAX_FP16_LOSS


def offset_shipped(target: Path, offset: float) -> int:
    """Give the shipped weights a shrinkage offset (``KeyProjection.offset_shrinkage``: every similarity
    becomes -(d² + offset)·distance), re-validate them as their run did (fp32 and fp16) and record the offset
    in the card. The benchmark scores of the card are dropped: they were the weights' before the change
    (rerun the benchmarks, then ``--scores``)."""
    if not target.is_file():
        print(f"error: {target}: no shipped weights to change", file=sys.stderr)
        return 2
    model = load_model(target)
    _, info = read_safetensors_info(target)
    try:
        model.key_proj.offset_shrinkage(offset)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    total = info.get("shrinkage_offset", 1.0) * offset  # two offsets compose by their product
    info["shrinkage_offset"] = total
    for name in SCORES:
        info.pop(name, None)
    config = build(TrainConfig, info["training"]["config"])
    if config.validation is not None:
        before = info.get("validation_jf_fp32")
        info.update(validate_fp32_and_fp16(model, config.validation))
        print(f"validation J&F (the run's validation videos): fp32 {100 * info['validation_jf_fp32']:.2f} "
              f"(before: {100 * before:.2f}), fp16 {100 * info['validation_jf_fp16']:.2f}")  # fmt: skip
        info["stored_as"] = "fp16" if fp16_holds(info) else "fp32"
    save_weights(model, target, info, dtype=torch.float16 if info.get("stored_as") == "fp16" else None)
    print(f"{target}: shrinkage offset {total:g} ({info['stored_as']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dir", type=Path, nargs="?", help="the training run (holds config.json and the weights)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=ROOT / "configs" / "default-1-synthetic.toml",
        help="the config the run was trained with, named in the card's command (configs/default-N-*.toml)",
    )
    parser.add_argument(
        "--scores",
        action="store_true",
        help="add the committed benchmark results to the shipped card (no run)",
    )
    parser.add_argument(
        "--final",
        action="store_true",
        help="ship the run's final weights instead of its best by validation",
    )
    parser.add_argument(
        "--snapshot",
        type=int,
        metavar="N",
        help="ship the run's weights of iteration N (<stage>-N.safetensors, written with snapshot_every), "
        "e.g. the ones chosen on the real benchmark's selection half",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--inference-size",
        type=int,
        default=None,
        help="processing size recorded with the weights (default: the run's inference_size, else 240)",
    )
    parser.add_argument(
        "--mem-every",
        type=int,
        default=None,
        help="memory frame interval recorded with the weights (tune it on the validation seeds: "
        "heldout_jf.py --first-seed 1000000); default: none recorded, the engine's 5",
    )
    parser.add_argument(
        "--shrinkage-offset",
        type=float,
        default=None,
        help="give the shipped weights this shrinkage offset (no run; KeyProjection.offset_shrinkage; choose "
        "it on the validation seeds: research/inference_sweep.py)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.shrinkage_offset is not None:
        if args.run_dir is not None or args.scores:
            parser.error("--shrinkage-offset changes the shipped weights; give no run and no --scores")
        return offset_shipped(default_weights_path(), args.shrinkage_offset)
    if args.scores:
        if args.run_dir is not None:
            parser.error("--scores updates the shipped card; give no run")
        return add_scores(default_weights_path())
    if args.run_dir is None:
        parser.error("give the training run to ship (or --scores)")
    if args.final and args.snapshot is not None:
        parser.error("--final and --snapshot choose different weights; give one")

    config = build(TrainConfig, json.loads((args.run_dir / "config.json").read_text()))
    inference_size = args.inference_size or config.inference_size or 240
    stage = config.stages[-1].name
    if args.snapshot is not None:
        chosen = args.run_dir / f"{stage}-{args.snapshot}.safetensors"
        what = f"weights of iteration {args.snapshot} (was snapshot_every set?)"
    elif args.final:
        chosen = args.run_dir / f"{stage}.safetensors"
        what = "final weights (did the stage finish?)"
    else:
        chosen = args.run_dir / f"{stage}-best.safetensors"
        what = "best weights (is validation configured?)"
    if not chosen.is_file():
        print(f"error: {chosen}: no {what} in this run", file=sys.stderr)
        return 2
    log = _read_log(args.run_dir)
    history = _validation_history(log)
    trained = max((r["iteration"] for r in log if r.get("stage") == stage), default=0)
    best_path = args.run_dir / f"{stage}-best.safetensors"
    best = _record(read_safetensors_info(best_path)[1]) if best_path.is_file() else None
    if args.final or args.snapshot is not None:  # the run's validation at that iteration, if it validated
        at = trained if args.final else args.snapshot
        scored = [r["heldout_jf"] for r in history if r["iteration"] == at]
        shipped = {"stage": stage, "iteration": at, "heldout_jf": scored[0] if scored else None}
        which = "final" if args.final else f"iteration {args.snapshot}"
    else:
        shipped, which = best, "best"

    target = default_weights_path()
    fp32 = load_model(chosen)
    quality = {} if config.validation is None else validate_fp32_and_fp16(fp32, config.validation)
    if quality:
        print(f"validation J&F: fp32 {100 * quality['validation_jf_fp32']:.2f}, "
              f"fp16 {100 * quality['validation_jf_fp16']:.2f}")  # fmt: skip
    stored_fp16 = fp16_holds(quality)

    info = {
        "name": "XMem-Lite default",
        "description": (
            "XMem-Lite (EfficientNet-Lite0 key encoder from its ImageNet weights, light value encoder, narrow "
            "decoder) trained by this project on synthetic composite videos of the TRAIN-side photographs"
            + (
                " and on real-scene clips (objects cut from real photographs over real photographs, "
                "xmem.data.real_scenes)"
                if any(st.data.real_scenes is not None for st in config.stages)
                else ""
            )
            + ", on a 2-core CPU"
        ),
        "stored_as": "fp16" if stored_fp16 else "fp32",
        "inference_size": inference_size,  # the engine's size when InferenceConfig.size is unset
        **({} if args.mem_every is None else {"inference_mem_every": args.mem_every}),  # likewise mem_every
        "training": {
            "command": f"xmem train {args.config.resolve().relative_to(ROOT)} --run-dir {args.run_dir}",
            "config": json.loads((args.run_dir / "config.json").read_text()),
            "iterations_run": trained,
            "shipped": which,
            "shipped_weights": shipped,  # stage, iteration and validation J&F of the weights shipped
            "best": best,  # the run's best by validation (the shipped ones unless --final)
            "validation_history": history,
            "seed": config.seed,
            "initialised_from": _parent(config),
        },
        "data": {
            "train_photographs": sorted(p.name for p in PHOTOGRAPHS if p.split is Split.TRAIN),
            "held_out_photographs": sorted(p.name for p in PHOTOGRAPHS if p.split is Split.HELD_OUT),
            "validation_videos": f"held-out seeds {VALIDATION_FIRST_SEED}.. (validation.first_seed)",
            "benchmark_videos": benchmark_videos(None),
        },
        **quality,
    }
    save_weights(fp32, target, info, dtype=torch.float16 if stored_fp16 else None)
    print(f"{target} ({target.stat().st_size / 1e6:.1f} MB, {info['stored_as']}) and its card "
          f"{target.with_suffix('.json').name}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
