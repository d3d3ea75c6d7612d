"""``xmem eval PRED_ROOT GT_ROOT``: J&F per video and overall, printed and written as CSV."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from xmem.eval.dataset import DatasetResult, evaluate_dataset, read_video_list, write_csv
from xmem.eval.protocol import Protocol

log = logging.getLogger("xmem")

PROTOCOLS = {
    "davis": Protocol.davis,
    "youtube-vos": Protocol.youtube_vos,
    "vos-benchmark": Protocol.vos_benchmark,
}
CSV_NAME = "scores.csv"


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``eval`` subcommand."""
    p = sub.add_parser(
        "eval",
        help="score predicted masks against ground truth (J&F, DAVIS protocol)",
        description="Score the predicted masks in PRED_ROOT against the ground truth in GT_ROOT (a DAVIS or "
        "YouTube-VOS root, a folder of video folders, or one video's folder of PNG masks): J (region IoU), "
        "F (boundary F-measure) and J&F per video and overall; writes a CSV with per-object rows too.",
    )
    p.add_argument(
        "pred_root", type=Path, help="predicted masks: PRED_ROOT/<video>/<frame>.png, or a video's PNGs"
    )
    p.add_argument(
        "gt_root", type=Path, help="ground truth: DAVIS/YouTube-VOS root, video folders, or one video"
    )
    p.add_argument(
        "--protocol",
        choices=["auto", *PROTOCOLS],
        default="auto",
        help="which objects and frames are scored; auto: youtube-vos for a YouTube-VOS root, davis otherwise",
    )
    p.add_argument(
        "--videos",
        type=Path,
        help="text file naming the videos to score, one per line (e.g. ImageSets/2017/val.txt)",
    )
    p.add_argument("--csv", type=Path, help=f"where to write the scores (default: PRED_ROOT/{CSV_NAME})")
    p.add_argument("--no-csv", action="store_true", help="write no CSV")
    p.add_argument("--workers", type=int, default=1, help="processes scoring videos in parallel (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run_eval)


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.1f}"


def protocol_name(protocol: Protocol) -> str:
    """The ``--protocol`` name of a preset, or "custom"."""
    return next((name for name, make in PROTOCOLS.items() if make() == protocol), "custom")


def format_table(result: DatasetResult) -> str:
    """The per-video table and the overall lines, in percent."""
    width = max([len("overall"), len("video"), *(len(v.name) for v in result.videos)])
    lines = [f"{'video':<{width}}  {'J&F':>6}  {'J-Mean':>6}  {'F-Mean':>6}  {'objects':>7}"]
    for video in result.videos:
        s = video.summary
        lines.append(
            f"{video.name:<{width}}  {_pct(s.jf):>6}  {_pct(s.j.mean):>6}  {_pct(s.f.mean):>6}  {s.objects:>7}"
        )
    total = result.summary
    lines.append("-" * len(lines[0]))
    lines.append(
        f"{'overall':<{width}}  {_pct(total.jf):>6}  {_pct(total.j.mean):>6}  {_pct(total.f.mean):>6}  {total.objects:>7}"
    )
    lines.append(
        f"J-Recall {_pct(total.j.recall)}  J-Decay {_pct(total.j.decay)}  "
        f"F-Recall {_pct(total.f.recall)}  F-Decay {_pct(total.f.decay)}  "
        f"({total.objects} objects in {len(result.videos)} videos; {protocol_name(result.protocol)} protocol)"
    )
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    csv_path = None if args.no_csv else (args.csv or args.pred_root / CSV_NAME)
    videos = read_video_list(args.videos) if args.videos is not None else None
    protocol = None if args.protocol == "auto" else PROTOCOLS[args.protocol]()
    result = evaluate_dataset(
        args.pred_root,
        args.gt_root,
        protocol=protocol,
        videos=videos,
        workers=args.workers,
        progress=not args.quiet,
    )
    print(format_table(result))
    if csv_path is not None:
        write_csv(result, csv_path)
        log.info("scores written to %s", csv_path)
    return 0
