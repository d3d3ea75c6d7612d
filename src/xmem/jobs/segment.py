"""One video through the engine to files: a palette PNG per frame, optional overlay video and probability
maps, a ``summary.json``; resume states every N frames, and a resume that continues bit for bit.

>>> core = InferenceCore(load_model("XMem.pth"), InferenceConfig())
>>> source = open_frames("clip.mp4")
>>> prompts = load_prompts(source, mask=Path("first.png"))
>>> prepare_output_folder(Path("out"), overwrite=False, resume=False)
>>> SegmentJob(core, source, prompts, OutputOptions(Path("out"), checkpoint_every=100)).run()
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import xmem
from xmem.inference.core import InferenceCore
from xmem.inference.preprocess import processing_size
from xmem.inference.segmenter import index_mask_from_probabilities, propagate_from
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError
from xmem.io.frames import FrameSource, frames_in_order, read_range
from xmem.io.masks import read_index_mask, write_index_mask, write_probability_map
from xmem.io.overlay import OverlayWriter, check_overlay_path
from xmem.io.prompts import Prompts
from xmem.jobs.monitor import current_rss_mib, peak_device_mib, peak_rss_mib
from xmem.jobs.pipeline import BackgroundWriter, Prefetcher
from xmem.jobs.state import (
    RESUME_FILE,
    ResumeState,
    check_fingerprint,
    load_resume_state,
    save_resume_state,
)

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
PROBABILITIES_FOLDER = "probabilities"
REFRESH_INTERVAL_S = 0.5  # the bar is drawn (and its memory figures read) at most this often (tqdm: 0.1 s)


class JobStopped(KeyboardInterrupt):
    """The job stopped at a frame boundary on request (Ctrl-C) after saving its resume state."""


@dataclass(frozen=True)
class OutputOptions:
    """What a job writes, and how often it saves its resume state.

    ``folder``: the masks (one palette PNG per frame, named after it), ``summary.json``, the resume state
    and, with ``save_probabilities``, ``probabilities/<object id>/<frame>.png`` (probability × 255).
    ``overlay``: a video of the frames with the masks drawn on them, at the source's frame rate or
    ``overlay_fps``. ``checkpoint_every``: save the resume state every N frames (0: only when stopped by
    Ctrl-C).
    """

    folder: Path
    overlay: Path | None = None
    save_probabilities: bool = False
    checkpoint_every: int = 0
    overlay_fps: float = 24.0

    def __post_init__(self) -> None:
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.overlay_fps <= 0:
            raise ValueError(f"overlay_fps must be positive, got {self.overlay_fps}")


@dataclass
class JobSummary:
    """What a job did; written as ``summary.json``."""

    status: str  # "complete", "interrupted" or "failed"
    input: str
    frames: int
    frame_size: list[int]  # H, W
    processing_size: list[int]  # h, w the network saw
    objects: list[int]
    prompts: dict[str, list[int]]  # frame name -> object ids its mask defines
    video_fps: float | None
    frames_per_second: float  # processing speed of this run
    elapsed_s: float
    peak_memory_mib: dict[str, float | None]
    settings: dict[str, object]
    weights: dict[str, object]
    fingerprint: dict[str, str]
    resumed_from: int | None = None
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    version: str = xmem.__version__

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"


def prepare_output_folder(folder: Path, *, overwrite: bool, resume: bool, create: bool = True) -> None:
    """Create ``folder`` (with ``create``); refuse one that holds other files unless ``overwrite`` or
    ``resume``."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if folder.is_dir() and not (overwrite or resume):
        entries = [p.name for p in folder.iterdir()]
        if entries:
            raise InputError(
                f"{folder}: output folder is not empty ({len(entries)} entries); use --overwrite to write "
                "into it or --resume to continue a job"
            )
    if not create:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{folder}: cannot create the output folder ({exc.strerror})") from None


def _with_last_flag(frames: Iterator[np.ndarray], start: int) -> Iterator[tuple[int, np.ndarray, bool]]:
    """(index, frame, is_last), reading one frame ahead. When reading a frame fails, the frame before it
    is still yielded (not as the last one) before the error is raised."""
    try:
        current = next(frames)
    except StopIteration:
        return
    index = start
    while True:
        try:
            upcoming = next(frames)
        except StopIteration:
            yield index, current, True
            return
        except InputError:
            yield index, current, False
            raise
        yield index, current, False
        current, index = upcoming, index + 1


def _settings(core: InferenceCore) -> dict[str, object]:
    config = core.config
    dims = core.network.config
    return {
        "size": config.size,
        "precision": config.precision.value,
        **dataclasses.asdict(config.memory),
        "key_dim": dims.key_dim,
        "value_dim": dims.value_dim,
        "hidden_dim": dims.hidden_dim,
    }


class SegmentJob:
    """Segments ``source`` from ``prompts`` with ``core`` (reset first) into ``options.folder``.

    ``weights`` identifies the network for the summary and for resume checks (e.g. ``{"path": ...,
    "sha256": ...}``). With ``resume``, a saved resume state in the folder is checked against this job
    (input, masks, weights, settings) and continued; without one, the job starts at the first frame.
    ``progress`` shows a tqdm bar. :meth:`request_stop` (from a signal handler) makes the job stop after
    the current frame, save its resume state and raise :class:`JobStopped`.
    """

    def __init__(
        self,
        core: InferenceCore,
        source: FrameSource,
        prompts: Prompts,
        options: OutputOptions,
        *,
        weights: dict[str, object] | None = None,
        resume: bool = False,
        progress: bool = True,
        both_directions: bool = False,
    ) -> None:
        self.core = core
        self.source = source
        self.prompts = prompts
        self.options = options
        self.weights = dict(weights or {})
        self.resume = resume
        self.progress = progress
        self.both_directions = both_directions
        self.stop_requested = False
        if options.overlay is not None:
            check_overlay_path(options.overlay)
        self.fingerprint = {
            "input": source.fingerprint(),
            "masks": prompts.fingerprint(),
            "weights": str(self.weights.get("sha256", self.weights.get("path", "unknown"))),
            "settings": json.dumps(
                {
                    **_settings(core),
                    "save_probabilities": options.save_probabilities,
                    **({"direction": "both"} if both_directions else {}),
                },
                sort_keys=True,
            ),
        }

    def request_stop(self) -> None:
        self.stop_requested = True

    # -- paths ---------------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.options.folder / RESUME_FILE

    @property
    def summary_path(self) -> Path:
        return self.options.folder / SUMMARY_FILE

    def mask_path(self, index: int) -> Path:
        return self.options.folder / f"{self.source.name(index)}.png"

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> JobSummary:
        """Process the video; returns the summary (also written as ``summary.json``). Raises
        :class:`InputError` for bad input met on the way (frames written before it are kept)."""
        self.core.reset()
        start = self._restore()
        if start is None:
            return self._completed_summary()
        h, w = self.source.first_size()
        self._summary = JobSummary(
            status="interrupted",
            input=self.source.location,
            frames=start,
            frame_size=[h, w],
            processing_size=list(processing_size(h, w, self.core.config.size)),
            objects=[],
            prompts={self.source.name(i): list(self.prompts.masks[i].objects) for i in self.prompts.indices},
            video_fps=self.source.fps,
            frames_per_second=0.0,
            elapsed_s=0.0,
            peak_memory_mib={},
            settings={
                **_settings(self.core),
                "precision_reason": self.core.precision_reason,
                "device": str(self.core.device),
                "compile": self.core.config.compile,
            },
            weights=self.weights,
            fingerprint=self.fingerprint,
            resumed_from=start or None,
            outputs=self._outputs(),
        )
        if self.prompts.colours.ids:
            log.info("mask colours -> object ids: %s", self.prompts.colours.describe())
        t0 = time.perf_counter()
        self._processed = 0
        self._in_flight: deque[tuple[int, list[Future]]] = deque()  # (frames done, their writes)
        try:
            self._loop(start)
            if self.both_directions:
                self._backward_passes()
                if self.options.overlay is not None:
                    self._draw_overlay()
            self._summary.status = "complete"
        except InputError as exc:
            self._summary.status, self._summary.error = "failed", str(exc)
            raise
        finally:
            self._count_written()  # the writer threads have finished: every write is done or failed
            elapsed = time.perf_counter() - t0
            self._summary.elapsed_s = round(elapsed, 3)
            self._summary.frames_per_second = round(self._processed / elapsed, 3) if elapsed > 0 else 0.0
            self._summary.objects = list(self.core.objects)
            self._summary.peak_memory_mib = {
                "process_rss": _round(peak_rss_mib()),
                "device_allocated": _round(peak_device_mib(self.core.device)),
            }
            self._write_summary(self._summary)
        if self.state_path.exists():
            self.state_path.unlink()  # the job is complete: nothing to resume
        unused = [i for i in self.prompts.indices if i >= self._summary.frames]
        if unused:
            log.warning(
                "%s: masks for frames past the end of the video were not used: %s",
                self.source.location,
                ", ".join(str(self.prompts.masks[i].path) for i in unused),
            )
        return self._summary

    def _loop(self, start: int) -> None:
        opts = self.options
        core = self.core
        # a resumed overlay is drawn again from the masks; with both directions it is drawn at the end
        draw = opts.overlay is not None and not self.both_directions
        redraw = draw and start > 0
        first = 0 if redraw else start
        overlay = (
            OverlayWriter(opts.overlay, self.source.fps or opts.overlay_fps)
            if draw
            else contextlib.nullcontext()
        )
        total = self.source.length
        bar = tqdm(
            total=total,
            initial=start,
            unit="frame",
            disable=not self.progress,
            dynamic_ncols=True,
            leave=False,
            mininterval=REFRESH_INTERVAL_S,
        )
        try:
            with (
                overlay as writer,
                Prefetcher(self.source.frames(first)) as frames,
                BackgroundWriter() as self._files,
            ):
                for index, frame, last in _with_last_flag(frames, first):
                    if index < start:
                        writer.write(frame, read_index_mask(self.mask_path(index)))
                        continue
                    prob = core.step(frame, self.prompts.mask(index), end=last)  # (N+1)×H×W
                    mask = index_mask_from_probabilities(prob, core.objects)
                    done = index + 1
                    self._in_flight.append((done, self._write_frame(index, prob, mask)))
                    self._count_written()
                    if writer is not None:
                        writer.write(frame, mask)
                    self._processed += 1
                    if bar.update(1):  # the bar was drawn: the memory figures for its next drawing
                        bar.set_postfix_str(self._postfix(), refresh=False)
                    if last:
                        break
                    every = opts.checkpoint_every
                    if self.stop_requested or (every and done % every == 0):
                        self._save_state(done)
                    if self.stop_requested:
                        raise JobStopped(
                            f"stopped after frame {index}; resume state saved in {self.state_path}"
                        )
        finally:
            bar.close()

    # -- both directions -----------------------------------------------------------------------------------
    def _backward_passes(self) -> None:
        """Trace the objects each prompt introduces back over the frames before it, down to the previous
        prompted frame (or the start), drawing them where the forward pass left background."""
        known: set[int] = set()
        previous = -1
        for k in self.prompts.indices:
            prompt = self.prompts.mask(k)
            assert prompt is not None
            new = [o for o in self.prompts.masks[k].objects if o not in known]
            known.update(self.prompts.masks[k].objects)
            span = range(k - 1, previous, -1)
            previous = k
            if not new or len(span) == 0:
                continue
            first = np.where(np.isin(prompt, new), prompt, 0).astype(prompt.dtype)
            start = read_range(self.source, k, k + 1)[0]
            with Prefetcher(frames_in_order(self.source, span)) as ahead:
                traced_masks = propagate_from(self.core, start, first, new, ahead)
                for index, traced in zip(span, traced_masks, strict=True):
                    path = self.mask_path(index)
                    mask = read_index_mask(path)
                    fill = (mask == 0) & (traced != 0)
                    if fill.any():
                        mask[fill] = traced[fill]
                        write_index_mask(path, mask)
        self.core.reset()

    def _draw_overlay(self) -> None:
        opts = self.options
        assert opts.overlay is not None
        with OverlayWriter(opts.overlay, self.source.fps or opts.overlay_fps) as writer:
            for index, frame in enumerate(self.source.frames()):
                writer.write(frame, read_index_mask(self.mask_path(index)))

    # -- pieces --------------------------------------------------------------------------------------------
    def _write_frame(self, index: int, prob: torch.Tensor, mask: np.ndarray) -> list[Future]:
        """Queue the frame's files for the writer threads (``_save_state`` waits for them); returns the
        writes' futures."""
        writes = [self._files.submit(write_index_mask, self.mask_path(index), mask)]
        if self.options.save_probabilities:
            maps = (prob[1:].clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()  # N×H×W
            name = self.source.name(index)
            for obj, pmap in zip(self.core.objects, maps, strict=True):
                folder = self.options.folder / PROBABILITIES_FOLDER / str(obj)
                folder.mkdir(parents=True, exist_ok=True)
                writes.append(self._files.submit(write_probability_map, folder / f"{name}.png", pmap))
        return writes

    def _count_written(self) -> None:
        """Advance the summary's frame count over the frames whose files are all written, in order. The
        engine runs ahead of the writer threads; counting this way, the count after a failed write or an
        interruption is the frames whose files are on disk."""
        while self._in_flight and all(f.done() for f in self._in_flight[0][1]):
            done, writes = self._in_flight.popleft()
            if any(f.cancelled() or f.exception() is not None for f in writes):
                self._in_flight.clear()  # the frames after a failed one do not count
                return
            self._summary.frames = done

    def _postfix(self) -> str:
        memory = self.core.memory
        rss = current_rss_mib()
        text = f"work={memory.work.size} long={memory.long.size}"
        return text if rss is None else f"{text} rss={rss:.0f}MiB"

    def _save_state(self, done: int) -> None:
        self._files.flush()  # the state says that the masks of frames < done are on disk
        save_resume_state(self.state_path, ResumeState(self.fingerprint, done, self.core.state_dict()))
        log.debug("saved the resume state after %d frames", done)

    def _restore(self) -> int | None:
        """The frame to start at (0, or where the saved state stopped); None when the job is complete."""
        if not self.resume:
            if self.state_path.exists():
                self.state_path.unlink()  # a stale state from another run must not be resumed later
            return 0
        if self.state_path.exists():
            state = load_resume_state(self.state_path, self.core.device)
            check_fingerprint(state.fingerprint, self.fingerprint, self.state_path)
            try:
                self.core.load_state_dict(state.engine)
            except ValueError as exc:
                raise InputError(f"{self.state_path}: does not fit this network ({exc})") from None
            log.info("%s: resuming after frame %d", self.source.location, state.frames_done - 1)
            return state.frames_done
        previous = self._read_summary()
        if previous is not None and previous.get("status") == "complete":
            check_fingerprint(previous.get("fingerprint", {}), self.fingerprint, self.summary_path)
            log.info("%s: already complete in %s", self.source.location, self.options.folder)
            return None
        log.info(
            "%s: no resume state in %s: starting at the first frame",
            self.source.location,
            self.options.folder,
        )
        return 0

    def _read_summary(self) -> dict | None:
        try:
            data = json.loads(self.summary_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{self.summary_path}: not a readable job summary ({exc})") from None
        return data if isinstance(data, dict) else None

    def _completed_summary(self) -> JobSummary:
        data = self._read_summary() or {}
        names = {f.name for f in dataclasses.fields(JobSummary)}
        return JobSummary(**{k: v for k, v in data.items() if k in names})

    def _write_summary(self, summary: JobSummary) -> None:
        with atomic_write(self.summary_path, "w") as f:
            f.write(summary.to_json())

    def _outputs(self) -> dict[str, str]:
        out = {"masks": str(self.options.folder)}
        if self.options.overlay is not None:
            out["overlay"] = str(self.options.overlay)
        if self.options.save_probabilities:
            out["probabilities"] = str(self.options.folder / PROBABILITIES_FOLDER)
        return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
