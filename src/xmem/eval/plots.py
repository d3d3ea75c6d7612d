"""PNG plots of a bench run over frame index: time per frame, memory, and J&F when scored.

Drawn with matplotlib's object API (no pyplot state, no display needed); matplotlib is the optional extra
``bench`` (``pip install 'xmem-vos[bench]'``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from xmem.data.sources import MissingExtraError
from xmem.eval.bench import FrameRecord
from xmem.io.atomic import atomic_write

BENCH_EXTRA = "pip install 'xmem-vos[bench]'"
_WORKING_COLOUR, _LONG_COLOUR = "tab:green", "tab:purple"


def require_matplotlib() -> None:
    """Raise :class:`MissingExtraError` naming the extra when matplotlib is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise MissingExtraError(f"plots need matplotlib, which is not installed: {BENCH_EXTRA}")


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value with the ``window − 1`` values before it (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values
    window = max(1, min(window, values.size))
    sums = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, values.size + 1), window)
    starts = np.arange(1, values.size + 1) - counts
    return (sums[1:] - sums[starts]) / counts


def _figure(title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("frame (played order)")
    ax.grid(True, alpha=0.3)
    return fig, ax


def _memory_sizes(ax, index: np.ndarray, records: Sequence[FrameRecord]):
    """Working and long-term memory elements on a second y axis."""
    ax2 = ax.twinx()
    ax2.step(
        index,
        [r.working_elements for r in records],
        where="post",
        color=_WORKING_COLOUR,
        lw=0.8,
        alpha=0.6,
        label="working memory (elements)",
    )
    ax2.step(
        index,
        [r.long_term_elements for r in records],
        where="post",
        color=_LONG_COLOUR,
        lw=1.2,
        alpha=0.8,
        label="long-term memory (elements)",
    )
    ax2.set_ylabel("memory elements")
    ax2.set_ylim(bottom=0)
    return ax2


def _passes(ax, pass_length: int | None, frames: int) -> None:
    if pass_length and pass_length < frames:
        for x in range(pass_length, frames, pass_length):
            ax.axvline(x, color="grey", lw=0.6, ls=":", alpha=0.7)


def _legend(ax, ax2=None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    # outside the axes, right of the second y axis: dense curves leave no free corner
    ax.legend(
        handles,
        labels,
        loc="upper left",
        bbox_to_anchor=(1.1 if ax2 is not None else 1.01, 1.0),
        fontsize=8,
        framealpha=0.85,
        borderaxespad=0.0,
    )


def _save(fig, path: Path) -> None:
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=110)


def plot_time(
    records: Sequence[FrameRecord], path: str | Path, *, title: str = "", pass_length: int | None = None
) -> None:
    """Engine milliseconds per frame (each frame, and a 50-frame rolling mean) with the working and
    long-term memory sizes; dotted lines mark the passes of a back-and-forth run."""
    require_matplotlib()
    index = np.array([r.index for r in records])
    ms = 1000 * np.array([r.seconds for r in records])
    fig, ax = _figure(title or "time per frame")
    ax.plot(index, ms, lw=0.5, color="tab:blue", alpha=0.35, label="ms per frame")
    ax.plot(index, rolling_mean(ms, 50), lw=1.5, color="tab:blue", label="ms per frame, mean of 50")
    ax.set_ylabel("engine time per frame (ms)")
    top = float(np.percentile(ms, 99.5)) * 1.15 if ms.size else 1.0
    ax.set_ylim(0, max(top, 1e-3))
    _passes(ax, pass_length, len(records))
    _legend(ax, _memory_sizes(ax, index, records))
    _save(fig, Path(path))


def plot_memory(
    records: Sequence[FrameRecord], path: str | Path, *, title: str = "", pass_length: int | None = None
) -> None:
    """Two panels over frame index: the process (RSS current and peak, allocated GPU memory where
    measured) in MiB; below, the memory stores in MiB with the working and long-term memory sizes in
    elements."""
    require_matplotlib()
    from matplotlib.figure import Figure

    index = np.array([r.index for r in records])
    fig = Figure(figsize=(12, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    fig.suptitle(title or "memory", fontsize=10)
    rss = np.array([r.rss_mb for r in records], dtype=np.float64)
    if np.isfinite(rss).any():
        top.plot(index, rss, lw=1.2, color="tab:blue", label="RSS")
    top.plot(index, [r.peak_rss_mb for r in records], lw=1.2, color="tab:blue", ls="--", label="peak RSS")
    if any(r.gpu_allocated_mb is not None for r in records):
        top.plot(index, [r.gpu_allocated_mb for r in records], lw=1.2, color="tab:red", label="GPU allocated")
        top.plot(
            index,
            [r.gpu_peak_allocated_mb for r in records],
            lw=1.0,
            color="tab:red",
            ls="--",
            label="GPU peak allocated",
        )
    top.set_ylabel("process memory (MiB)")
    top.set_ylim(0, 1.08 * max(r.peak_rss_mb for r in records) if records else None)
    bottom.plot(
        index, [r.memory_store_mb for r in records], lw=1.2, color="tab:orange", label="memory stores (MiB)"
    )
    bottom.set_ylabel("memory stores (MiB)")
    bottom.set_ylim(bottom=0)
    bottom.set_xlabel("frame (played order)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        _passes(ax, pass_length, len(records))
    _legend(top)
    _legend(bottom, _memory_sizes(bottom, index, records))
    _save(fig, Path(path))


def plot_quality(
    records: Sequence[FrameRecord], path: str | Path, *, title: str = "", pass_length: int | None = None
) -> None:
    """J, F and J&F per scored frame (means over objects), with a 50-frame rolling mean of J&F."""
    require_matplotlib()
    scored = [r for r in records if r.j is not None and r.f is not None]
    if not scored:
        raise ValueError("no scored frames to plot")
    index = np.array([r.index for r in scored])
    j = 100 * np.array([r.j for r in scored])
    f = 100 * np.array([r.f for r in scored])
    fig, ax = _figure(title or "J&F per frame")
    ax.plot(index, j, lw=0.5, color="tab:blue", alpha=0.35, label="J")
    ax.plot(index, f, lw=0.5, color="tab:orange", alpha=0.35, label="F")
    ax.plot(index, rolling_mean((j + f) / 2, 50), lw=1.5, color="black", label="J&F, mean of 50")
    ax.set_ylabel("%")
    ax.set_ylim(0, 101)
    _passes(ax, pass_length, len(records))
    _legend(ax)
    _save(fig, Path(path))
