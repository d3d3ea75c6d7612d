"""What a bench run measured, and the figures drawn from it.

A :class:`FrameRecord` per played frame (times, process and GPU memory, memory sizes, J and F when
scored), written to and read from CSV (:func:`write_csv`, :func:`read_csv`); the :class:`BenchSummary` of a
run (:func:`summarize`), its :class:`BlockFigures` over blocks of frames (:func:`block_figures`) and its
per-frame scores (:func:`per_frame_scores`).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmem.config import InferenceConfig
from xmem.eval.protocol import VideoResult
from xmem.io.atomic import atomic_write

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
