"""The annotation page's back end without the web: a :class:`~xmem.interactive.session.VideoSession` with
one background job at a time (a propagation or an export), its progress, cancellation, frames scaled to the
view, brush strokes, and the checks a request from a page needs.

The web layer (:mod:`xmem.app.server`) only parses requests and calls :class:`Annotator`; every method here
raises :class:`ValueError` for bad input (a 400 answer there) and :class:`Busy` while a job runs (409).
"""

from __future__ import annotations

import contextlib
import enum
import io
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from xmem.interactive.clicks import Prompt
from xmem.interactive.export import ExportOptions, ExportStopped, export_session
from xmem.interactive.session import Direction, VideoSession
from xmem.io.frames import FrameCache

log = logging.getLogger(__name__)

MAX_POINTS = 200  # clicks in one request
MAX_STROKE_POINTS = 5000  # points of one brush stroke
MAX_BRUSH_RADIUS = 500
MIN_VIEW_WIDTH = 16


class ThreadRunner:
    """Runs each job on a thread of its own (the default: the caller's thread stays free)."""

    def submit(self, work: Callable[[], None]) -> None:
        threading.Thread(target=work, name="xmem-job", daemon=True).start()


class MainThreadRunner:
    """Runs jobs on the thread that calls :meth:`run`. The server gives jobs the main thread, where PyTorch's
    CPU kernels run fastest: measured on a 2-core CPU, the engine on another thread ran 15-30% slower."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Callable[[], None]] = queue.Queue()

    def submit(self, work: Callable[[], None]) -> None:
        self._queue.put(work)

    def run(self, keep_going: Callable[[], bool]) -> None:
        """Run the jobs submitted, one at a time, while ``keep_going()``."""
        while keep_going():
            try:
                work = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            work()


class Busy(RuntimeError):
    """A job is running; the request that needs the session to itself must wait or cancel it."""


class JobKind(enum.Enum):
    PROPAGATE = "propagate"
    EXPORT = "export"

    @property
    def noun(self) -> str:
        return "propagation" if self is JobKind.PROPAGATE else "export"


class JobState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


@dataclass
class Job:
    """A propagation or an export, as the page sees it."""

    id: int
    kind: JobKind
    total: int
    start: int | None = None
    direction: Direction | None = None
    state: JobState = JobState.RUNNING
    done: int = 0
    frame: int | None = None  # the frame just finished
    frames_per_second: float = 0.0
    elapsed_s: float = 0.0
    error: str | None = None
    files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["kind"] = self.kind.value
        data["state"] = self.state.value
        data["direction"] = None if self.direction is None else self.direction.value
        data["files"] = len(self.files)
        return data


def stroke_mask(height: int, width: int, points: Sequence[Sequence[float]], radius: float) -> np.ndarray:
    """H×W bool: the pixels within ``radius`` of the polyline through ``points`` ((x, y) pixels)."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [(float(x), float(y)) for x, y in points]
    r = float(radius)
    if len(xy) > 1:
        draw.line(xy, fill=1, width=max(1, round(2 * r)), joint="curve")
    for x, y in (xy[0], xy[-1]) if len(xy) > 1 else xy:
        draw.ellipse((x - r, y - r, x + r, y + r), fill=1)
    return np.asarray(canvas, dtype=bool)


class Annotator:
    """A session behind a page. ``export_folder``: where :meth:`start_export` writes; ``runner``: where
    jobs run (default: a thread each; the server runs them on its main thread)."""

    def __init__(
        self,
        session: VideoSession,
        export_folder: str | Path,
        *,
        view_cache_frames: int = 32,
        runner: ThreadRunner | MainThreadRunner | None = None,
    ) -> None:
        self.session = session
        self.export_folder = Path(export_folder)
        self._lock = threading.Lock()  # edits and job starts
        self._view_lock = threading.Lock()
        # the view decodes with its own cache: a propagation walks the session's cache on another thread
        self._view_frames = FrameCache(session.frames.source, view_cache_frames)
        self._jpegs: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        buffer = io.BytesIO()  # the answer for every frame without a mask
        Image.new("L", (session.width, session.height), 0).save(buffer, format="PNG")
        self._empty_png = buffer.getvalue()
        self._job: Job | None = None
        self.runner = runner if runner is not None else ThreadRunner()
        self._finished = threading.Event()  # set while no job runs
        self._finished.set()
        self._cancel = threading.Event()
        self._jobs = 0
        self.version = 0  # counts changes of masks, objects and jobs, for the page to know when to reload

    def warm_up(self) -> None:
        """Run the click method once on a small image, so that the first click on the page does not wait
        for its libraries to load (OpenCV's GrabCut: about 0.2 s)."""
        image = np.zeros((64, 64, 3), np.uint8)
        image[16:48, 16:48] = 200
        try:
            self.session.predictor.predict(image, Prompt(points=[[32, 32]], labels=[1]))
        except Exception as exc:  # a predictor that cannot run here says so on the first real click
            log.debug("warm-up of the click method failed: %s", exc)

    # -- reading -------------------------------------------------------------------------------------------
    def info(self) -> dict[str, object]:
        s = self.session
        source = s.frames.source
        return {
            "name": Path(source.location).name,
            "frames": s.num_frames,
            "width": s.width,
            "height": s.height,
            "fps": source.fps,
            "objects": [
                {"id": obj_id, "name": obj["name"], "colour": obj["colour"]}
                for obj_id, obj in s.object_info.items()
            ],
            "key_frames": s.key_frames,
            "masked": _ranges(s.masked_frames),
            "undo": s.undoable_frames,
            "redo": s.redoable_frames,
            "job": None if self._job is None else self._job.to_json(),
            "version": self.version,
            "settings": {"size": s.core.config.size, "precision": s.core.config.precision.value},
            "predictor": type(s.predictor).__name__,
        }

    def status(self) -> dict[str, object]:
        """What the progress stream sends: the job and the change counter."""
        return {"job": None if self._job is None else self._job.to_json(), "version": self.version}

    def frame_jpeg(self, index: int, width: int | None = None, quality: int = 85) -> bytes:
        """Frame ``index`` as a JPEG, scaled down to ``width`` pixels across (never up)."""
        self.check_frame(index)
        full = self.session.width
        target = full if width is None else int(width)
        if target < MIN_VIEW_WIDTH:
            raise ValueError(f"width must be at least {MIN_VIEW_WIDTH} pixels, got {width}")
        target = min(target, full)
        key = (index, target)
        with self._view_lock:
            cached = self._jpegs.get(key)
            if cached is not None:
                self._jpegs.move_to_end(key)
                return cached
            frame = self._view_frames[index]
        image = Image.fromarray(frame)
        if target < full:
            height = max(1, round(self.session.height * target / full))
            image = image.resize((target, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        data = buffer.getvalue()
        with self._view_lock:
            self._jpegs[key] = data
            while len(self._jpegs) > 64:
                self._jpegs.popitem(last=False)
        return data

    def mask_png(self, index: int) -> bytes:
        """Frame ``index``'s index mask as a grey PNG (pixel value = object id; all zero without a mask)."""
        data = self.session.mask_png(index)
        return data if data is not None else self._empty_png

    # -- edits ---------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _editing(self):
        with self._lock:
            self._check_idle()
            yield
            self.version += 1

    def clicks(
        self, frame: int, obj_id: int, points: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> None:
        if not 0 < len(points) <= MAX_POINTS:
            raise ValueError(f"give 1-{MAX_POINTS} clicks, got {len(points)}")
        self._check_points(points)
        with self._editing():
            self._check_object(obj_id)
            self.session.add_clicks(frame, obj_id, points, labels)

    def box(self, frame: int, obj_id: int, box: Sequence[float]) -> None:
        with self._editing():
            self._check_object(obj_id)
            self.session.add_box(frame, obj_id, box)

    def brush(
        self, frame: int, obj_id: int, points: Sequence[Sequence[float]], radius: float, *, erase: bool
    ) -> None:
        """Paint (or with ``erase``, rub out) ``obj_id`` along a stroke on ``frame``."""
        if not 0 < len(points) <= MAX_STROKE_POINTS:
            raise ValueError(f"a stroke has 1-{MAX_STROKE_POINTS} points, got {len(points)}")
        if not 0 < radius <= MAX_BRUSH_RADIUS:
            raise ValueError(f"the brush radius must be in (0, {MAX_BRUSH_RADIUS}] pixels, got {radius}")
        self._check_points(points)
        self.check_frame(frame)
        with self._editing():
            self._check_object(obj_id)
            stroke = stroke_mask(self.session.height, self.session.width, points, radius)
            current = self.session.mask(frame) == obj_id
            self.session.add_mask(frame, obj_id, current & ~stroke if erase else current | stroke)

    def undo(self, frame: int) -> None:
        with self._editing():
            self.session.undo(frame)

    def redo(self, frame: int) -> None:
        with self._editing():
            self.session.redo(frame)

    def add_object(self, name: str | None = None) -> int:
        with self._editing():
            return self.session.add_object(name=name)

    def update_object(
        self, obj_id: int, *, name: str | None = None, colour: Sequence[int] | None = None
    ) -> None:
        with self._editing():
            self.session.set_object(obj_id, name=name, colour=colour)

    def delete_object(self, obj_id: int) -> None:
        with self._editing():
            self.session.remove_object(obj_id)

    # -- jobs ----------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._job is not None and self._job.state is JobState.RUNNING

    @property
    def job(self) -> Job | None:
        return self._job

    def start_propagation(self, start: int, direction: Direction) -> Job:
        with self._lock:
            self._check_idle()
            self.check_frame(start)
            if not self.session.mask(start).any():
                raise ValueError(f"frame {start} has no mask to propagate from: annotate it first")
            ways = [Direction.FORWARD, Direction.BACKWARD] if direction is Direction.BOTH else [direction]
            total = sum(len(self.session.span(start, way)) for way in ways)
            job = self._new_job(JobKind.PROPAGATE, total, start=start, direction=direction)
            self._launch(self._propagate, job)
            return job

    def start_export(self, options: ExportOptions | None = None) -> Job:
        options = options or ExportOptions()
        with self._lock:
            self._check_idle()
            job = self._new_job(JobKind.EXPORT, self.session.num_frames)
            self._launch(lambda j: self._export(j, options), job)
            return job

    def cancel(self) -> Job | None:
        """Ask the running job to stop after its current frame; the frames done keep their masks."""
        if self.running:
            self._cancel.set()
        return self._job

    def wait(self, timeout: float | None = None) -> Job | None:
        """Block until the job ends (for scripts and tests)."""
        self._finished.wait(timeout)
        return self._job

    def close(self) -> None:
        self.cancel()
        self.wait(30)

    def _check_idle(self) -> None:
        if self._job is not None and self._job.state is JobState.RUNNING:
            raise Busy(f"{self._job.kind.noun} in progress: cancel it or wait for it to finish")

    def _new_job(self, kind: JobKind, total: int, **kw) -> Job:
        self._jobs += 1
        self._cancel.clear()
        self._job = Job(self._jobs, kind, total, **kw)
        self.version += 1
        return self._job

    def _launch(self, target, job: Job) -> None:
        self._finished.clear()
        self.runner.submit(lambda: self._run(target, job))

    def _run(self, target, job: Job) -> None:
        began = time.perf_counter()
        try:
            target(job)
            job.state = JobState.CANCELLED if self._cancel.is_set() else JobState.DONE
        except ExportStopped:
            job.state = JobState.CANCELLED
        except Exception as exc:  # the page shows it; the server goes on
            log.exception("the %s failed", job.kind.noun)
            job.state, job.error = (
                JobState.FAILED,
                str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )
        finally:
            job.elapsed_s = round(time.perf_counter() - began, 3)
            self.version += 1
            self._finished.set()

    def _propagate(self, job: Job) -> None:
        assert job.start is not None and job.direction is not None
        began = time.perf_counter()
        frames = self.session.propagate(job.start, job.direction)
        with contextlib.closing(frames):  # closing the generator lets the engine's memory go
            for index, _ in frames:
                job.done += 1
                job.frame = index
                elapsed = time.perf_counter() - began
                job.frames_per_second = round(job.done / elapsed, 2) if elapsed > 0 else 0.0
                self.version += 1
                if self._cancel.is_set():
                    break

    def _export(self, job: Job, options: ExportOptions) -> None:
        began = time.perf_counter()

        def progress(done: int, total: int) -> None:
            job.done, job.frame = done, done - 1
            job.frames_per_second = round(done / max(time.perf_counter() - began, 1e-9), 2)
            self.version += 1

        job.files = export_session(
            self.session, self.export_folder, options, progress=progress, should_stop=self._cancel.is_set
        )

    # -- checks --------------------------------------------------------------------------------------------
    def check_frame(self, index: int) -> None:
        n = self.session.num_frames
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
            raise ValueError(f"frame {index!r} is outside the video's {n} frames (0-{n - 1})")

    def _check_object(self, obj_id: int) -> None:
        if obj_id not in self.session.object_info:
            known = sorted(self.session.object_info)
            raise ValueError(f"no object {obj_id} (objects: {known}); add it first")

    def _check_points(self, points: Sequence[Sequence[float]]) -> None:
        for point in points:
            x, y = point
            if not (0 <= x < self.session.width and 0 <= y < self.session.height):
                raise ValueError(
                    f"point ({x}, {y}) is outside the frame ({self.session.width}x{self.session.height})"
                )


def _ranges(frames: Sequence[int]) -> list[list[int]]:
    """[[first, last], ...] runs of consecutive frames."""
    out: list[list[int]] = []
    for f in frames:
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out
