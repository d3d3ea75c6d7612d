"""Scoring folders of predicted masks against ground-truth folders: DAVIS or YouTube-VOS layouts, a root
of video folders, or a single video.

Ground truth (``GT_ROOT``), recognised in this order:

- a folder of PNG masks: one video (the predictions ``PRED_ROOT`` are then a folder of PNGs too);
- ``GT_ROOT/Annotations/480p/<video>/``: DAVIS;
- ``GT_ROOT/Annotations/<video>/`` with ``GT_ROOT/meta.json``: YouTube-VOS (other ``Annotations``
  folders are read like DAVIS);
- otherwise ``GT_ROOT/<video>/``: a root of video folders.

Predictions: ``PRED_ROOT/<video>/<frame>.png`` (what ``xmem segment`` writes), or under
``PRED_ROOT/Annotations/`` (a YouTube-VOS submission). Every ground-truth frame of a scored video needs
its prediction, named after it; predictions of frames without ground truth are ignored (sparse
annotations). Frames are ordered naturally (``2`` before ``10``; for zero-padded names, as DAVIS).

Masks are palette or grey index PNGs (0 = background, 255 = void in the ground truth). A grey PNG that
holds only 0 and 255 is a binary mask of one object (id 1), as in DAVIS 2016; for the ground truth this is
decided on a video's first frame, so that void on later frames is still void.
"""

from __future__ import annotations

import csv
import enum
import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from xmem.eval.protocol import Protocol, Summary, VideoResult, VideoScorer, summarize
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.io.frames import natural_key

log = logging.getLogger(__name__)


class Layout(enum.Enum):
    """How a ground-truth root is organised."""

    DAVIS = "davis"
    YOUTUBE_VOS = "youtube-vos"
    VIDEO_FOLDERS = "video-folders"
    SINGLE_VIDEO = "single-video"

    def default_protocol(self) -> Protocol:
        """YouTube-VOS scores objects that appear late; the others follow DAVIS."""
        return Protocol.youtube_vos() if self is Layout.YOUTUBE_VOS else Protocol.davis()


@dataclass(frozen=True)
class VideoPair:
    """One video to score: its ground-truth folder and its prediction folder."""

    name: str
    gt_dir: Path
    pred_dir: Path


@dataclass(frozen=True)
class DatasetResult:
    """The results of every scored video (in name order), the protocol and the ground truth's layout."""

    videos: tuple[VideoResult, ...]
    protocol: Protocol
    layout: Layout

    @property
    def summary(self) -> Summary:
        """Means over all objects of all videos (the DAVIS global J, F and J&F)."""
        return summarize(self.videos)


def _pngs(folder: Path) -> list[Path]:
    return sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() == ".png" and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: natural_key(p.name),
    )


def _has_pngs(folder: Path) -> bool:
    return any(p.suffix.lower() == ".png" and not p.name.startswith(".") for p in folder.iterdir())


def _video_dirs(root: Path, known: Sequence[str] = ()) -> dict[str, Path]:
    """Subfolders holding PNGs, and those named in ``known`` even when empty."""
    return {
        p.name: p
        for p in root.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p.name in known or _has_pngs(p))
    }


def _check_folder(path: Path, what: str) -> None:
    if not path.exists():
        raise InputError(f"{path}: no such folder ({what})")
    if not path.is_dir():
        raise InputError(f"{path}: not a folder ({what})")


def detect_layout(gt_root: str | Path) -> tuple[Layout, Path]:
    """The layout of a ground-truth root and the folder holding its video folders (or the video itself)."""
    root = Path(gt_root)
    _check_folder(root, "ground truth")
    if _has_pngs(root):
        return Layout.SINGLE_VIDEO, root
    annotations = root / "Annotations"
    if (annotations / "480p").is_dir():
        return Layout.DAVIS, annotations / "480p"
    if annotations.is_dir():
        layout = Layout.YOUTUBE_VOS if (root / "meta.json").is_file() else Layout.DAVIS
        return layout, annotations
    return Layout.VIDEO_FOLDERS, root


def _prediction_base(pred_root: Path, gt_videos: Sequence[str]) -> Path:
    if any((pred_root / v).is_dir() for v in gt_videos):
        return pred_root
    for base in (pred_root / "Annotations" / "480p", pred_root / "Annotations"):
        if base.is_dir():
            return base
    return pred_root


def read_video_list(path: str | Path) -> list[str]:
    """Video names from a text file, one per line (e.g. DAVIS ``ImageSets/2017/val.txt``)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise InputError(f"{path}: video list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the video list ({exc})") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise InputError(f"{path}: the video list is empty")
    return names


def find_videos(
    pred_root: str | Path, gt_root: str | Path, videos: Sequence[str] | None = None
) -> tuple[Layout, list[VideoPair]]:
    """Pair prediction and ground-truth video folders.

    Without ``videos``, every predicted video is scored and must have ground truth; ground-truth videos
    without predictions are skipped with a warning. With ``videos``, exactly those are scored and each needs
    both.
    """
    pred_root = Path(pred_root)
    layout, gt_base = detect_layout(gt_root)
    _check_folder(pred_root, "predictions")
    if layout is Layout.SINGLE_VIDEO:
        if not _has_pngs(pred_root):
            raise InputError(
                f"{pred_root}: no PNG masks (the ground truth {gt_base} is a single video, so the predictions "
                "must be a folder of PNG masks too)"
            )
        return layout, [VideoPair(gt_base.name, gt_base, pred_root)]

    gt_videos = _video_dirs(gt_base)
    if not gt_videos:
        raise InputError(f"{gt_base}: no video folders of PNG masks")
    pred_base = _prediction_base(pred_root, list(gt_videos))
    pred_videos = _video_dirs(pred_base, known=list(gt_videos))  # an empty folder of a video: frames missing
    if videos is not None:
        names = list(dict.fromkeys(videos))
        for v in names:
            if v not in gt_videos:
                raise InputError(f"{gt_base / v}: no ground truth for video {v!r}")
            if v not in pred_videos:
                raise InputError(f"{pred_base / v}: no predictions for video {v!r}")
    else:
        if not pred_videos:
            if _has_pngs(pred_base):
                raise InputError(
                    f"{pred_base}: holds PNG masks, but the ground truth {gt_base} holds video folders "
                    "(give a video's ground-truth folder, or a folder of predicted video folders)"
                )
            raise InputError(f"{pred_base}: no video folders of PNG masks")
        for v in sorted(pred_videos, key=natural_key):
            if v not in gt_videos:
                raise InputError(f"{pred_videos[v]}: a predicted video without ground truth in {gt_base}")
        names = sorted(pred_videos, key=natural_key)
        missing = sorted(set(gt_videos) - set(pred_videos), key=natural_key)
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            log.warning(
                "%d ground-truth video(s) have no predictions and are not scored: %s", len(missing), shown
            )
    return layout, [VideoPair(v, gt_videos[v], pred_videos[v]) for v in names]


def _read_png(path: Path) -> tuple[np.ndarray, bool]:
    """An H×W uint8 label mask and whether it is a grey (not palette) image."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                return np.array(img), False
            if mode in ("L", "1", "I", "I;16"):
                arr = np.array(img)
                if arr.size and int(arr.max()) > 255:
                    raise InputError(f"{path}: mask ids above 255 are not supported")
                return arr.astype(np.uint8), True
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{path}: not a readable PNG mask ({exc})") from None
    raise InputError(f"{path}: unsupported mask mode {mode!r} (use a palette PNG or a grey index PNG)")


def _is_binary(arr: np.ndarray) -> bool:
    counts = np.bincount(arr.reshape(-1), minlength=256)
    return bool(counts[255]) and not counts[1:255].any()


def evaluate_video(pair: VideoPair, protocol: Protocol | None = None) -> VideoResult:
    """Score one video's prediction folder against its ground-truth folder."""
    protocol = protocol or Protocol.davis()
    gt_paths = _pngs(pair.gt_dir)
    if not gt_paths:
        raise InputError(f"{pair.gt_dir}: no PNG masks")
    scorer = VideoScorer(len(gt_paths), protocol, name=pair.name, frame_names=[p.stem for p in gt_paths])
    binary_gt = False
    first_shape: tuple[int, int] | None = None
    for i, gt_path in enumerate(gt_paths):
        pred_path = pair.pred_dir / f"{gt_path.stem}.png"
        gt, grey = _read_png(gt_path)
        if i == 0:
            binary_gt = grey and _is_binary(gt)
            first_shape = gt.shape
        elif gt.shape != first_shape:
            raise InputError(
                f"{gt_path}: mask size {gt.shape[1]}x{gt.shape[0]} differs from the video's first mask "
                f"{first_shape[1]}x{first_shape[0]}"
            )
        if binary_gt:
            gt = (gt == 255).astype(np.uint8)
        pred = None
        if scorer.needs_prediction(i):
            if not pred_path.is_file():
                raise InputError(f"{pred_path}: missing prediction for the ground-truth mask {gt_path}")
            pred, grey = _read_png(pred_path)
            if pred.shape != gt.shape:
                raise InputError(
                    f"{pred_path}: prediction size {pred.shape[1]}x{pred.shape[0]} differs from the "
                    f"ground truth's {gt.shape[1]}x{gt.shape[0]} ({gt_path})"
                )
            if grey and _is_binary(pred):
                pred = (pred == 255).astype(np.uint8)
        scorer.add(gt, pred)
    return scorer.result()


def _evaluate_job(job: tuple[VideoPair, Protocol]) -> VideoResult:
    return evaluate_video(*job)


def _worker_context() -> multiprocessing.context.BaseContext:
    # Never fork the caller (it may hold threads, e.g. PyTorch's); a fork server that has imported this
    # module once starts the workers quickly, spawn where there is none (Windows).
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def evaluate_dataset(
    pred_root: str | Path,
    gt_root: str | Path,
    *,
    protocol: Protocol | None = None,
    videos: Sequence[str] | None = None,
    workers: int = 1,
    progress: bool = False,
) -> DatasetResult:
    """Score predicted masks against ground truth (layouts: see the module docstring).

    ``protocol``: None picks it from the layout (YouTube-VOS for a YouTube-VOS root, DAVIS otherwise);
    ``videos``: the names to score (default: every predicted video); ``workers``: processes scoring videos
    in parallel; ``progress``: a progress bar over videos (stderr). Bad input raises ``InputError``.
    """
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    layout, pairs = find_videos(pred_root, gt_root, videos)
    protocol = protocol or layout.default_protocol()
    log.info("scoring %d video(s) (%s layout, objects: %s)", len(pairs), layout.value, protocol.objects.value)
    results: dict[str, VideoResult] = {}
    bar = tqdm(total=len(pairs), unit="video", disable=not progress, dynamic_ncols=True)
    try:
        if workers == 1 or len(pairs) == 1:
            for pair in pairs:
                results[pair.name] = evaluate_video(pair, protocol)
                bar.update(1)
        else:
            context = _worker_context()
            with ProcessPoolExecutor(max_workers=min(workers, len(pairs)), mp_context=context) as pool:
                futures = {pool.submit(_evaluate_job, (pair, protocol)): pair.name for pair in pairs}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
    finally:
        bar.close()
    ordered = tuple(results[p.name] for p in pairs)
    for video in ordered:
        if not video.objects:
            log.warning("%s: no object was scored (too few annotated frames, or no object)", video.name)
    if not any(v.objects for v in ordered):
        raise InputError(f"{gt_root}: nothing to score (no object on any scored frame)")
    return DatasetResult(videos=ordered, protocol=protocol, layout=layout)


CSV_COLUMNS = (
    "level",
    "video",
    "object",
    "objects",
    "frames",
    "J&F",
    "J-Mean",
    "J-Recall",
    "J-Decay",
    "F-Mean",
    "F-Recall",
    "F-Decay",
)


def _percent(x: float) -> str:
    return "nan" if np.isnan(x) else f"{100 * x:.4f}"


def csv_rows(result: DatasetResult) -> list[list[str]]:
    """The rows of the scores CSV (header first): one ``overall`` row, then per video a ``video`` row and
    its ``object`` rows. Scores in percent. ``frames``: annotated frames (overall and video rows), scored
    frames (object rows)."""

    def row(level: str, video: str, obj: str, objects: int, frames: int, s: Summary) -> list[str]:
        return [
            level,
            video,
            obj,
            str(objects),
            str(frames),
            _percent(s.jf),
            _percent(s.j.mean),
            _percent(s.j.recall),
            _percent(s.j.decay),
            _percent(s.f.mean),
            _percent(s.f.recall),
            _percent(s.f.decay),
        ]

    rows = [list(CSV_COLUMNS)]
    total = result.summary
    annotated = sum(v.annotated_frames for v in result.videos)
    rows.append(row("overall", "", "", total.objects, annotated, total))
    for video in result.videos:
        rows.append(row("video", video.name, "", len(video.objects), video.annotated_frames, video.summary))
        for o in video.objects:
            rows.append(row("object", video.name, str(o.object_id), 1, o.num_frames, Summary.of([o])))
    return rows


def write_csv(result: DatasetResult, path: str | Path) -> None:
    """Write the scores CSV (see ``csv_rows``) atomically."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path}: the folder {path.parent} does not exist")
    try:
        with atomic_write(path, "w") as f:
            csv.writer(f, lineterminator="\n").writerows(csv_rows(result))
    except PermissionError as exc:
        raise InputError(f"{path}: cannot write the scores ({exc})") from None
