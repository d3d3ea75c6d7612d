"""Reading ahead and writing behind the engine (xmem.jobs.pipeline): order, errors, early stops, flushes."""

from __future__ import annotations

import threading
import time

import pytest

from xmem.jobs.pipeline import BackgroundWriter, Prefetcher


def test_prefetcher_yields_every_item_in_order_ahead_of_the_consumer():
    produced = []

    def source():
        for i in range(20):
            produced.append(i)
            yield i

    with Prefetcher(source(), depth=3) as items:
        first = next(items)
        deadline = time.monotonic() + 5
        while len(produced) < 4 and time.monotonic() < deadline:  # read ahead: depth 3 queued + 1 in hand
            time.sleep(0.01)
        assert first == 0 and len(produced) >= 4
        time.sleep(0.05)
        assert len(produced) <= 5  # but no further than that
        assert [first, *items] == list(range(20))


def test_prefetcher_raises_the_source_error_at_its_position():
    def source():
        yield 1
        yield 2
        raise ValueError("frame 2 is corrupt")

    got = []
    with pytest.raises(ValueError, match="frame 2 is corrupt"), Prefetcher(source()) as items:
        for item in items:
            got.append(item)
    assert got == [1, 2]


def test_prefetcher_closed_early_stops_its_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            yield from range(10_000)
        finally:
            closed.set()

    items = Prefetcher(source(), depth=2)
    assert next(items) == 0
    items.close()
    assert closed.wait(5)
    assert not items._thread.is_alive()
    with pytest.raises(StopIteration):
        next(items)


def test_writer_runs_every_job_and_flush_waits_for_them(tmp_path):
    def write(path, text):
        time.sleep(0.01)
        path.write_text(text)

    with BackgroundWriter(workers=2, max_pending=3) as writer:
        for i in range(12):
            writer.submit(write, tmp_path / f"{i}.txt", str(i))
        writer.flush()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.txt" for i in range(12))
        assert not writer._pending
    assert all((tmp_path / f"{i}.txt").read_text() == str(i) for i in range(12))


def test_writer_bounds_the_jobs_waiting():
    release = threading.Event()
    with BackgroundWriter(workers=1, max_pending=2) as writer:
        writer.submit(release.wait)
        writer.submit(release.wait)
        blocked = threading.Thread(target=writer.submit, args=(release.wait,))
        blocked.start()
        blocked.join(0.2)
        assert blocked.is_alive()  # a third job waits for room
        release.set()
        blocked.join(5)
        assert not blocked.is_alive()


def test_writer_error_is_raised_by_a_later_call():
    def fail():
        raise OSError("disk full")

    writer = BackgroundWriter(workers=1)
    writer.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        writer.flush()
    writer.close()


def test_writer_leaving_a_failing_block_keeps_that_error(caplog):
    def fail():
        raise OSError("disk full")

    with pytest.raises(KeyError), BackgroundWriter(workers=1) as writer:
        writer.submit(fail)
        time.sleep(0.05)
        raise KeyError("the first problem")
    assert "disk full" in caplog.text
