"""Reading and writing beside the engine: frames decoded ahead on a thread, output files written on others.

On a GPU the engine takes a few milliseconds a frame, about what decoding a 480p frame and writing its PNG
(compressed, then synced to disk) take on the CPU; run one after the other, they would halve the
throughput. Both release the GIL (FFmpeg, zlib, ``fsync``), so threads overlap them with the engine.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_ITEM, _ERROR, _END = 0, 1, 2


class Prefetcher(Generic[T]):
    """Iterates ``source`` on a background thread, up to ``depth`` items ahead of the consumer.

    Items come out in order; an exception raised by ``source`` is raised by the consumer at the same
    position, after the items before it. Stopping early (:meth:`close`, or leaving a ``with`` block) stops
    the thread and closes ``source`` (a generator's ``close``, e.g. a video container's clean-up).
    """

    def __init__(self, source: Iterator[T], depth: int = 4) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self._source = source
        self._queue: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="xmem-prefetch", daemon=True)
        self._thread.start()

    def _put(self, entry: tuple[int, object]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put((_ITEM, item)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_ERROR, exc))
        finally:
            close = getattr(self._source, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def __iter__(self) -> Prefetcher[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        kind, payload = self._queue.get()
        if kind == _ITEM:
            return payload  # type: ignore[return-value]
        self._done = True
        self._thread.join()
        if kind == _ERROR:
            assert isinstance(payload, BaseException)
            raise payload
        raise StopIteration

    def close(self) -> None:
        """Stop reading ahead and wait for the thread (which closes the source)."""
        self._done = True
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a thread waiting to put
                self._queue.get_nowait()
        self._thread.join()

    def __enter__(self) -> Prefetcher[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BackgroundWriter:
    """Runs write jobs (``fn(*args)``) on ``workers`` threads, with at most ``max_pending`` waiting.

    A failed write is raised by the next :meth:`submit` or :meth:`flush`. :meth:`flush` returns once
    every write submitted so far is on disk (call it before recording that they are, e.g. in a resume
    state). Leaving the ``with`` block flushes; if the block is already raising, a write error is logged
    instead of replacing that exception.
    """

    def __init__(self, workers: int = 2, max_pending: int = 8) -> None:
        if workers < 1 or max_pending < 1:
            raise ValueError("workers and max_pending must be >= 1")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="xmem-writer")
        self._pending: deque[Future] = deque()
        self._max_pending = max_pending

    def submit(self, fn: Callable[..., object], *args: object) -> Future:
        """Queue ``fn(*args)``; returns its future (done once the write has finished or failed)."""
        self._reap(block=len(self._pending) >= self._max_pending)
        future = self._pool.submit(fn, *args)
        self._pending.append(future)
        return future

    def _reap(self, *, block: bool) -> None:
        """Collect finished writes (waiting for the oldest one when ``block``); raise the first error."""
        while self._pending and (block or self._pending[0].done()):
            self._pending.popleft().result()
            block = False

    def flush(self) -> None:
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
            return
        try:
            self.close()
        except Exception as error:  # the exception already raising is the one to report
            log.error("a file could not be written: %s", error)
