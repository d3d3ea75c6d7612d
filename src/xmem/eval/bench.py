"""Speed and memory of the engine frame by frame over a video of any length (``xmem bench``).

A :class:`BenchRun` plays a :class:`VideoSource` through a :class:`~xmem.VideoSegmenter`, optionally
back and forth (:func:`pingpong_index`, the paper's n× long-video construction), and records for every
frame the engine time, the time spent reading or rendering the frame, the process memory (current and
peak RSS; allocated memory on CUDA) and the sizes of the working and long-term memory. When the video
has ground truth, the run is also scored by the DAVIS protocol (J, F, J&F per frame and overall).

>>> video = GeneratedVideo(CompositeConfig(height=480, width=854, length=2000, objects=(2, 2)), seed=0)
>>> run = BenchRun(model, InferenceConfig(device="cpu"), video, passes=5)   # 10,000 frames
>>> for record in run:           # FrameRecord per frame, as it is processed
...     pass
>>> result = run.result()        # records, BenchSummary, J&F
>>> write_csv(result.records, "bench.csv")

Videos: :class:`GeneratedVideo` (a synthetic composite video, rendered on demand: 10,000 frames cost no
more memory than 10) and :class:`StreamedVideo` (any forward-only frame source with a first-frame mask and
optional ground truth; :func:`open_video` makes one from a path).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from xmem.config import InferenceConfig
from xmem.data.synthetic import CompositeConfig, CompositeVideo
from xmem.eval.protocol import Protocol as ScoringProtocol
from xmem.eval.protocol import VideoResult, VideoScorer
from xmem.inference.segmenter import VideoSegmenter
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.io.frames import natural_key
from xmem.io.masks import read_index_mask
from xmem.io.video import open_frames as open_video_frames
from xmem.model.network import XMem

log = logging.getLogger(__name__)

MIB = float(2**20)


# --- process memory ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; NaN where it is not available)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize() / MIB
    except OSError:
        return math.nan


# --- videos --------------------------------------------------------------------------------------


@runtime_checkable
class VideoSource(Protocol):
    """What a bench plays: ``len(video)`` frames read by index (in order, except that a back-and-forth
    run reads them backwards on every other pass), the index mask given on frame 0, and the ground truth
    of every frame when it is known."""

    @property
    def name(self) -> str: ...

    @property
    def has_ground_truth(self) -> bool: ...

    def __len__(self) -> int: ...

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t``: H×W×3 uint8 RGB."""
        ...

    def ground_truth(self, t: int) -> np.ndarray | None:
        """The H×W index mask of frame ``t`` (0 = background, 255 = void), or None when unknown."""
        ...

    def prompt(self) -> np.ndarray:
        """The H×W index mask given to the segmenter on frame 0."""
        ...


class GeneratedVideo:
    """A synthetic composite video (:class:`~xmem.data.CompositeVideo`), rendered on demand, with its
    ground truth. Needs the photographs of the ``train`` extra (scikit-image, scikit-learn)."""

    def __init__(self, config: CompositeConfig, seed: int = 0) -> None:
        self.composite = CompositeVideo(config, seed)
        self.config = config
        self.seed = seed

    @property
    def name(self) -> str:
        c = self.config
        return f"composite-{c.split.value}-seed{self.seed}-{c.height}x{c.width}"

    @property
    def has_ground_truth(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.composite)

    def frame(self, t: int) -> np.ndarray:
        return self.composite.frame(t)

    def ground_truth(self, t: int) -> np.ndarray:
        return self.composite.mask(t)

    def prompt(self) -> np.ndarray:
        return self.composite.mask(0)


class StreamedVideo:
    """A video from a forward-only frame source (an iterable of H×W×3 uint8 frames that can be iterated
    again, e.g. :class:`~xmem.io.frames.FrameFolder`), read one frame at a time.

    Frames are decoded in order as they are asked for (asking for an earlier frame starts decoding
    again from the first). With ``replay=True`` (for back-and-forth runs)
    each decoded frame is also kept on disk, uncompressed, in a temporary folder (H×W×3 bytes per frame),
    so that the later passes read it back from there; :meth:`close` removes the folder. ``ground_truth``
    is a sequence of mask files, one per frame, or None.
    """

    def __init__(
        self,
        source: Iterable[np.ndarray],
        prompt: np.ndarray,
        *,
        name: str,
        length: int | None = None,
        ground_truth: Sequence[Path] | None = None,
        replay: bool = False,
    ) -> None:
        self.source = source
        self._name = name
        self._prompt = prompt
        if length is None:
            length = _frame_count(source)
        if length < 1:
            raise InputError(f"{name}: the video has no frames")
        self._length = length
        self._gt = list(ground_truth) if ground_truth is not None else None
        if self._gt is not None and len(self._gt) != length:
            raise InputError(f"{name}: {len(self._gt)} ground-truth masks for {length} frames")
        self._iterator: Iterator[np.ndarray] | None = None
        self._next = 0  # index of the frame the iterator yields next
        self._last: np.ndarray | None = None  # frame _next - 1
        self._spill = tempfile.TemporaryDirectory(prefix="xmem-bench-") if replay else None
        self._spilled = 0  # frames 0.._spilled-1 are on disk

    @property
    def name(self) -> str:
        return self._name

    @property
    def has_ground_truth(self) -> bool:
        return self._gt is not None

    def __len__(self) -> int:
        return self._length

    def _spill_path(self, t: int) -> Path:
        assert self._spill is not None
        return Path(self._spill.name) / f"{t:07d}.npy"

    def frame(self, t: int) -> np.ndarray:
        if not 0 <= t < self._length:
            raise IndexError(f"frame {t} of a {self._length}-frame video")
        if t < self._spilled:
            return np.load(self._spill_path(t))
        if self._last is not None and t == self._next - 1:
            return self._last
        if self._iterator is None or t < self._next:  # (re)start decoding at the first frame
            self._iterator, self._next = iter(self.source), 0
        while self._next <= t:
            try:
                self._last = next(self._iterator)
            except StopIteration:
                raise InputError(
                    f"{self._name}: the video ended after {self._next} of {self._length} frames"
                ) from None
            if self._spill is not None:
                np.save(self._spill_path(self._next), self._last)
                self._spilled = self._next + 1
            self._next += 1
        assert self._last is not None
        return self._last

    def ground_truth(self, t: int) -> np.ndarray | None:
        return None if self._gt is None else read_index_mask(self._gt[t])

    def prompt(self) -> np.ndarray:
        return self._prompt

    def close(self) -> None:
        if self._spill is not None:
            self._spill.cleanup()


def _frame_count(source: Iterable[np.ndarray]) -> int:
    """The number of frames of ``source``: its ``length`` when it declares one (video files), its
    ``len``, or else counted by decoding it once."""
    declared = getattr(source, "length", None)
    if declared is not None:
        return int(declared)
    if hasattr(source, "__len__"):
        return len(source)  # type: ignore[arg-type]
    return sum(1 for _ in source)


def _mask_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of ground-truth masks")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError(f"{folder}: no PNG masks in the folder")
    return files


def open_frames(path: Path) -> Iterable[np.ndarray]:
    """The frames a user means by ``path``: a folder of frames, a video file or a glob (as for
    ``xmem segment``). This is the one place that turns a ``--video`` path into frames."""
    return open_video_frames(path)


def open_video(
    path: Path, *, mask: Path | None = None, ground_truth: Path | None = None, replay: bool = False
) -> StreamedVideo:
    """A :class:`StreamedVideo` of the frames at ``path`` (see :func:`open_frames`), prompted with the
    index mask ``mask`` (by default the first mask of ``ground_truth``), scored against the masks of the
    folder ``ground_truth`` (PNG, natural order, one per frame) when given."""
    frames = open_frames(path)
    gt = _mask_files(ground_truth) if ground_truth is not None else None
    if mask is None and gt is None:
        raise InputError("--video needs --mask (the first frame's index mask) or --gt (a folder of masks)")
    prompt_path = mask if mask is not None else gt[0]  # type: ignore[index]
    prompt = read_index_mask(prompt_path)
    if not prompt.any():
        raise InputError(f"{prompt_path}: the mask holds no object (all pixels are 0)")
    first = next(iter(frames))
    if prompt.shape != first.shape[:2]:
        raise InputError(
            f"{prompt_path}: mask size {prompt.shape[1]}x{prompt.shape[0]} differs from the frames' "
            f"{first.shape[1]}x{first.shape[0]}"
        )
    return StreamedVideo(frames, prompt, name=Path(path).name, ground_truth=gt, replay=replay)


# --- back and forth ------------------------------------------------------------------------------


def pingpong_index(i: int, length: int) -> int:
    """The source frame played at position ``i`` when a ``length``-frame video is played alternately
    forward and backward: passes 0, 2, 4, ... run 0 → length−1, passes 1, 3, ... run length−1 → 0
    (each pass plays every frame, so K passes are K × length frames: the paper's "K×" videos)."""
    if length < 1 or i < 0:
        raise ValueError(f"invalid position {i} in a {length}-frame video")
    p, r = divmod(i, length)
    return r if p % 2 == 0 else length - 1 - r


def pingpong_order(length: int, passes: int) -> list[int]:
    """The source frames of a ``passes``-pass back-and-forth run, in play order."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    return [pingpong_index(i, length) for i in range(length * passes)]


# --- records -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameRecord:
    """What was measured on one played frame. Times in seconds, memory in MiB; GPU fields are None
    off CUDA; ``j`` and ``f`` (means over the scored objects) are None on frames that are not scored
    (the first and last, by the DAVIS protocol) and without ground truth."""

    index: int  # position in the played sequence
    source_index: int  # frame of the video (differs from index in back-and-forth runs)
    seconds: float  # engine: step and index mask, device synchronised
    read_seconds: float  # reading / decoding / rendering the frame (and its ground truth)
    rss_mb: float
    peak_rss_mb: float
    gpu_allocated_mb: float | None
    gpu_peak_allocated_mb: float | None
    working_elements: int
    long_term_elements: int
    memory_store_mb: float
    j: float | None = None
    f: float | None = None


CSV_COLUMNS = tuple(f.name for f in dataclasses.fields(FrameRecord))
_GPU_COLUMNS = ("gpu_allocated_mb", "gpu_peak_allocated_mb")
_SCORE_COLUMNS = ("j", "f")


def csv_columns(records: Sequence[FrameRecord]) -> list[str]:
    """The CSV columns of ``records``: GPU columns only when measured, J and F only when scored."""
    gpu = any(r.gpu_allocated_mb is not None for r in records)
    scored = any(r.j is not None for r in records)
    return [c for c in CSV_COLUMNS if (gpu or c not in _GPU_COLUMNS) and (scored or c not in _SCORE_COLUMNS)]


def write_csv(records: Sequence[FrameRecord], path: str | Path) -> None:
    """One row per record (atomically); empty cells for values not measured on a frame."""
    columns = csv_columns(records)
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for r in records:
            writer.writerow(["" if getattr(r, c) is None else getattr(r, c) for c in columns])


def read_csv(path: str | Path) -> list[FrameRecord]:
    """Records from a CSV written by :func:`write_csv` (missing columns read as None)."""
    ints = {"index", "source_index", "working_elements", "long_term_elements"}
    records = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            values: dict[str, object] = {}
            for name in CSV_COLUMNS:
                cell = row.get(name, "")
                if cell in ("", None):
                    values[name] = None
                else:
                    values[name] = int(cell) if name in ints else float(cell)
            records.append(FrameRecord(**values))  # type: ignore[arg-type]
    return records


# --- summary -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSummary:
    """The figures of a run. ``steady_from``: the first frame of the steady state (once the working
    memory has filled and consolidated for the first time); time per frame ``early`` and ``late`` are
    means over ``window`` frames from ``steady_from`` and at the end; ``median_ms_per_frame_steady`` is
    the median from ``steady_from`` on (robust to frames slowed by other jobs sharing the CPU). RSS is
    compared after ``rss_reference_frames`` frames (1,000, or half the run when shorter than 2,000) and
    at the end."""

    frames: int
    seconds: float
    frames_per_second: float
    steady_from: int
    steady_frames_per_second: float
    window: int
    ms_per_frame_early: float
    ms_per_frame_late: float
    median_ms_per_frame_steady: float
    read_ms_per_frame: float
    peak_rss_mb: float
    rss_reference_frames: int
    rss_mb_at_reference: float
    rss_mb_at_end: float
    peak_gpu_allocated_mb: float | None
    gpu_allocated_mb_at_end: float | None
    max_working_elements: int
    max_long_term_elements: int
    memory_store_mb_at_end: float
    max_memory_store_mb: float
    objects: int | None = None
    jf: float | None = None
    j: float | None = None
    f: float | None = None
    j_decay: float | None = None


def steady_state_start(config: InferenceConfig) -> int:
    """The frame of the first consolidation (mem_every × max_working_frames): from there on the
    working memory cycles between its bounds."""
    m = config.memory
    return m.mem_every * m.max_working_frames


def summarize(
    records: Sequence[FrameRecord], *, steady_from: int = 50, scores: VideoResult | None = None
) -> BenchSummary:
    """The summary of ``records`` (in play order); ``steady_from`` is clipped to half the run."""
    n = len(records)
    if n == 0:
        raise ValueError("no frames to summarise")
    seconds = np.array([r.seconds for r in records])
    steady = min(steady_from, n // 2)
    window = max(1, min(500, (n - steady) // 2))
    reference = min(1000, max(1, n // 2))
    gpu = [r.gpu_allocated_mb for r in records if r.gpu_allocated_mb is not None]
    gpu_peak = [r.gpu_peak_allocated_mb for r in records if r.gpu_peak_allocated_mb is not None]
    total = float(seconds.sum())
    summary = BenchSummary(
        frames=n,
        seconds=total,
        frames_per_second=n / total if total > 0 else math.inf,
        steady_from=steady,
        steady_frames_per_second=(n - steady) / float(seconds[steady:].sum()),
        window=window,
        ms_per_frame_early=1000 * float(seconds[steady : steady + window].mean()),
        ms_per_frame_late=1000 * float(seconds[n - window :].mean()),
        median_ms_per_frame_steady=1000 * float(np.median(seconds[steady:])),
        read_ms_per_frame=1000 * float(np.mean([r.read_seconds for r in records])),
        peak_rss_mb=max(r.peak_rss_mb for r in records),
        rss_reference_frames=reference,
        rss_mb_at_reference=records[reference - 1].rss_mb,
        rss_mb_at_end=records[-1].rss_mb,
        peak_gpu_allocated_mb=max(gpu_peak) if gpu_peak else None,
        gpu_allocated_mb_at_end=gpu[-1] if gpu else None,
        max_working_elements=max(r.working_elements for r in records),
        max_long_term_elements=max(r.long_term_elements for r in records),
        memory_store_mb_at_end=records[-1].memory_store_mb,
        max_memory_store_mb=max(r.memory_store_mb for r in records),
    )
    if scores is not None:
        s = scores.summary
        summary = dataclasses.replace(
            summary, objects=s.objects, jf=s.jf, j=s.j.mean, f=s.f.mean, j_decay=s.j.decay
        )
    return summary


@dataclass(frozen=True)
class BlockFigures:
    """The figures of one block of consecutive played frames ``start`` .. ``stop − 1``: the median engine
    time per frame (robust to frames slowed by other jobs sharing the CPU), and the RSS and long-term
    memory size on the block's last frame."""

    start: int
    stop: int
    median_ms_per_frame: float
    rss_mb_at_end: float
    long_term_elements_at_end: int


def block_figures(records: Sequence[FrameRecord], size: int) -> list[BlockFigures]:
    """``records`` (in play order) cut into blocks of ``size`` frames (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"block size must be positive, got {size}")
    blocks = []
    for start in range(0, len(records), size):
        block = records[start : start + size]
        blocks.append(
            BlockFigures(
                start=start,
                stop=start + len(block),
                median_ms_per_frame=1000 * float(np.median([r.seconds for r in block])),
                rss_mb_at_end=block[-1].rss_mb,
                long_term_elements_at_end=block[-1].long_term_elements,
            )
        )
    return blocks


def per_frame_scores(scores: VideoResult, frames: int) -> tuple[list[float | None], list[float | None]]:
    """Per played frame, the mean J and mean F over the objects scored on it (None where none is)."""
    j_sum, f_sum, count = np.zeros(frames), np.zeros(frames), np.zeros(frames, dtype=np.int64)
    for obj in scores.objects:
        start = int(obj.first_frame)
        stop = start + obj.num_frames
        j_sum[start:stop] += obj.j_frames
        f_sum[start:stop] += obj.f_frames
        count[start:stop] += 1
    j = [float(j_sum[i] / count[i]) if count[i] else None for i in range(frames)]
    f = [float(f_sum[i] / count[i]) if count[i] else None for i in range(frames)]
    return j, f


# --- the run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchResult:
    """A run's records (with per-frame J and F when scored), its summary, its scores (DAVIS protocol,
    None without ground truth or when the run stopped early) and whether it played every frame."""

    records: tuple[FrameRecord, ...]
    summary: BenchSummary
    scores: VideoResult | None
    complete: bool


class BenchRun:
    """Plays ``video`` ``passes`` times back and forth through a :class:`~xmem.VideoSegmenter` with
    ``config``, measuring every frame. Iterate it once to run it (one :class:`FrameRecord` per frame, as
    the frame is done), then call :meth:`result` (also after an interruption: the frames done so far).

    The prompt (``video.prompt()``) is given on the first played frame. Engine time covers the step and
    the index mask (the copy to the host synchronises the device); reading the frame is timed apart. With
    ``score`` and ground truth, every frame is scored as it comes (DAVIS protocol, one frame at a time so
    that scoring adds no memory).
    """

    def __init__(
        self,
        model: XMem,
        config: InferenceConfig,
        video: VideoSource,
        *,
        passes: int = 1,
        score: bool = True,
    ) -> None:
        if passes < 1:
            raise ValueError(f"passes must be at least 1, got {passes}")
        self.video = video
        self.passes = passes
        self.total = len(video) * passes
        self.segmenter = VideoSegmenter(model, config)
        self.config = self.segmenter.core.config  # the size resolved for the weights
        self.records: list[FrameRecord] = []
        self._scorer = (
            VideoScorer(self.total, ScoringProtocol.davis(), name=video.name, chunk_pixels=1)
            if score and video.has_ground_truth
            else None
        )
        self._started = False

    @property
    def device(self) -> torch.device:
        return self.segmenter.core.device

    def __iter__(self) -> Iterator[FrameRecord]:
        if self._started:
            raise RuntimeError("a BenchRun runs once")
        self._started = True
        core = self.segmenter.core
        cuda = core.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(core.device)
        prompt = self.video.prompt()
        length = len(self.video)
        scorer = self._scorer
        for i in range(self.total):
            t = pingpong_index(i, length)
            start = time.perf_counter()
            frame = self.video.frame(t)
            gt = self.video.ground_truth(t) if scorer is not None else None
            read = time.perf_counter() - start

            start = time.perf_counter()
            prob = self.segmenter.step(frame, prompt if i == 0 else None, end=i == self.total - 1)
            mask = self.segmenter.to_index_mask(prob)
            if cuda:
                torch.cuda.synchronize(core.device)
            seconds = time.perf_counter() - start

            memory = core.memory
            record = FrameRecord(
                index=i,
                source_index=t,
                seconds=seconds,
                read_seconds=read,
                rss_mb=current_rss_mb(),
                peak_rss_mb=peak_rss_mb(),
                gpu_allocated_mb=torch.cuda.memory_allocated(core.device) / MIB if cuda else None,
                gpu_peak_allocated_mb=torch.cuda.max_memory_allocated(core.device) / MIB if cuda else None,
                working_elements=memory.work.size,
                long_term_elements=memory.long.size,
                memory_store_mb=memory.nbytes() / MIB,
            )
            if scorer is not None:
                scorer.add(gt, mask if scorer.needs_prediction(i) else None)
            self.records.append(record)
            yield record

    def run(self, on_frame: Callable[[FrameRecord], None] | None = None) -> BenchResult:
        """Play the whole video (calling ``on_frame`` after each frame) and return the result."""
        for record in self:
            if on_frame is not None:
                on_frame(record)
        return self.result()

    def result(self) -> BenchResult:
        """The records so far and their summary; scores only once every frame was played."""
        if not self.records:
            raise ValueError("the run has not processed any frame")
        complete = len(self.records) == self.total
        records = list(self.records)
        scores = None
        if complete and self._scorer is not None:
            scores = self._scorer.result()
            j, f = per_frame_scores(scores, len(records))
            records = [dataclasses.replace(r, j=j[r.index], f=f[r.index]) for r in records]
        summary = summarize(records, steady_from=steady_state_start(self.config), scores=scores)
        return BenchResult(records=tuple(records), summary=summary, scores=scores, complete=complete)
