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

This module holds the run and its process-memory probes; the videos (:class:`GeneratedVideo`,
:class:`StreamedVideo`, :func:`open_video`, back-and-forth order) are in :mod:`xmem.eval.bench_videos`,
the records, their CSV and the summary figures in :mod:`xmem.eval.bench_records`. Every name of those
two modules that a user of the bench needs is also importable from here.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from xmem.config import InferenceConfig
from xmem.eval.bench_records import (
    CSV_COLUMNS,
    BenchSummary,
    BlockFigures,
    FrameRecord,
    block_figures,
    csv_columns,
    per_frame_scores,
    read_csv,
    steady_state_start,
    summarize,
    write_csv,
)
from xmem.eval.bench_videos import (
    GeneratedVideo,
    StreamedVideo,
    VideoSource,
    open_frames,
    open_video,
    pingpong_index,
    pingpong_order,
)
from xmem.eval.protocol import Protocol as ScoringProtocol
from xmem.eval.protocol import VideoResult, VideoScorer
from xmem.inference.segmenter import VideoSegmenter
from xmem.jobs.monitor import current_rss_mib, peak_rss_mib
from xmem.model.network import XMem

__all__ = [
    "CSV_COLUMNS",
    "MIB",
    "BenchResult",
    "BenchRun",
    "BenchSummary",
    "BlockFigures",
    "FrameRecord",
    "GeneratedVideo",
    "StreamedVideo",
    "VideoSource",
    "block_figures",
    "csv_columns",
    "current_rss_mb",
    "open_frames",
    "open_video",
    "peak_rss_mb",
    "per_frame_scores",
    "pingpong_index",
    "pingpong_order",
    "read_csv",
    "steady_state_start",
    "summarize",
    "write_csv",
]

log = logging.getLogger(__name__)

MIB = float(2**20)


# --- process memory ------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (:func:`xmem.jobs.monitor.peak_rss_mib`;
    NaN where it is not available)."""
    peak = peak_rss_mib()
    return math.nan if peak is None else peak


def current_rss_mb() -> float:
    """Current resident set size of this process in MiB (Linux ``/proc``; NaN where it is not available)."""
    current = current_rss_mib()
    return math.nan if current is None else current


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
