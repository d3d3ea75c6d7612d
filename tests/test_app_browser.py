"""``xmem annotate`` in a real browser: headless Chromium (Debian's package, which ``.ci/run`` installs) driven
by Playwright. Never skipped: without Chromium the test fails and says how to install it.

The scenario of a user: open a generated video, add an object by clicks, paint with the brush, propagate
forward, correct a later frame, propagate again, undo, export. The files on disk are checked against the
same edits replayed through the Python API (:class:`xmem.app.annotator.Annotator` without a server), and
the first frame's mask against the generated truth.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from appserver import H, W, annotate_command, running_server, scene_video
from xmem.app.annotator import Annotator
from xmem.config import InferenceConfig
from xmem.interactive import VideoSession
from xmem.io.masks import read_index_mask
from xmem.model.checkpoint import load_model

CHROMIUM = os.environ.get("XMEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
N = 16
SHOTS = Path(os.environ.get("XMEM_SCREENSHOTS", "")) if os.environ.get("XMEM_SCREENSHOTS") else None


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser tests need Debian's chromium (apt-get install chromium; "
            "bash .ci/run installs it), or XMEM_CHROMIUM=/path/to/chromium"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


class Page:
    """The page with helpers in frame pixels."""

    def __init__(self, page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def idle(self, timeout: float = 60_000) -> None:
        self.page.wait_for_function(
            "window.xmem && window.xmem.state.info && window.xmem.idle()", timeout=timeout
        )

    def screen(self, x: float, y: float) -> tuple[float, float]:
        box = self.page.locator("#view").bounding_box()
        s, ox, oy, dpr = self.page.evaluate(
            "[window.xmem.state.scale, window.xmem.state.ox, window.xmem.state.oy, devicePixelRatio]"
        )
        return box["x"] + (ox + x * s) / dpr, box["y"] + (oy + y * s) / dpr

    def click(self, x: float, y: float, button: str = "left") -> None:
        self.page.mouse.click(*self.screen(x, y), button=button)
        self.idle()

    def drag(self, points: list[tuple[float, float]]) -> None:
        self.page.mouse.move(*self.screen(*points[0]))
        self.page.mouse.down()
        for point in points[1:]:
            self.page.mouse.move(*self.screen(*point), steps=4)
        self.page.mouse.up()
        self.idle()

    def go(self, frame: int) -> None:
        self.page.locator("#slider").fill(str(frame))
        self.idle()
        assert self.page.evaluate("window.xmem.state.frame") == frame

    def job_done(self, job_id: int) -> dict:
        self.page.wait_for_function(
            f"window.xmem.state.job && window.xmem.state.job.id === {job_id} && "
            "window.xmem.state.job.state !== 'running'",
            timeout=120_000,
        )
        self.idle()
        return self.page.evaluate("window.xmem.state.job")

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"))


def replay(annotator: Annotator, edits: list[dict]) -> None:
    """The page's edits (as it sent them) through the Python API, in the same order."""
    for edit in edits:
        path, body = edit["path"].strip("/").split("/"), edit["body"] or {}
        if path[1] == "objects":
            annotator.add_object(body.get("name"))
            continue
        frame, what = int(path[2]), path[3]
        if what == "clicks":
            annotator.clicks(frame, body["object"], body["points"], body["labels"])
        elif what == "brush":
            annotator.brush(frame, body["object"], body["points"], body["radius"], erase=body["erase"])
        elif what == "undo":
            annotator.undo(frame)
        else:
            raise AssertionError(f"unexpected edit {edit}")


def test_annotate_a_video_in_the_browser(tmp_path, browser):
    video, truth = scene_video(tmp_path / "clip.mp4", N)
    shots = SHOTS or tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    workspace = tmp_path / "ws"
    with running_server(annotate_command(video, workspace, None)) as server:  # the default model
        page = Page(browser.new_page(viewport={"width": 1200, "height": 760}), shots)
        page.page.goto(server.url)
        page.idle()
        assert page.page.url == server.base + "/"  # the token went into a cookie
        assert page.page.locator("#video-name").inner_text().startswith(f"clip.mp4, {W}×{H}, {N} frames")
        page.shot("1-open")

        # an object by two positive clicks on the disc
        page.page.click("#add-object")
        page.idle()
        assert page.page.locator("#objects li").count() == 1
        page.click(40, 60)
        page.click(30, 66)
        first = read_index_mask(workspace / "masks" / "00000.png")
        inside = (first == 1) & (truth[0] == 1)
        assert inside.sum() / ((first == 1) | (truth[0] == 1)).sum() > 0.8  # GrabCut found the disc
        page.shot("2-clicks")

        # a second object painted with the brush over the square
        page.page.click("#add-object")
        page.idle()
        page.page.click("#tool-brush")
        page.page.locator("#brush-size").fill("6")
        page.drag([(146, 16), (160, 16), (160, 28), (146, 28)])
        painted = read_index_mask(workspace / "masks" / "00000.png")
        assert (painted == 2).sum() > 200 and ((painted == 2) & (truth[0] == 2)).sum() > 0.8 * (
            painted == 2
        ).sum()
        page.shot("3-brush")

        # propagate forward: the view follows, the timeline fills
        page.page.click("#prop-forward")
        job = page.job_done(1)
        assert job["state"] == "done" and job["done"] == N - 1
        assert sorted(p.name for p in (workspace / "masks").glob("*.png")) == [
            f"{t:05d}.png" for t in range(N)
        ]
        assert page.page.locator("#masked div").count() == 1
        page.shot("4-propagated")

        # a correction on frame 10: a negative click on the disc's right half, then propagate from there
        page.go(10)
        before = read_index_mask(workspace / "masks" / "00010.png")
        page.page.click("#tool-click")
        page.page.keyboard.press("1")  # the disc
        assert page.page.evaluate("window.xmem.state.object") == 1
        page.click(40 + 30 + 10, 60, button="right")
        corrected = read_index_mask(workspace / "masks" / "00010.png")
        assert not np.array_equal(before, corrected)
        assert page.page.locator("#keyframes div").count() == 2
        page.page.click("#prop-forward")
        assert page.job_done(2)["done"] == N - 11
        page.shot("5-corrected")

        # undo the correction on frame 10 (z): its propagated mask is back, it is no key frame any more
        assert page.page.evaluate("window.xmem.state.frame") == N - 1  # the view followed the propagation
        page.go(10)
        page.page.keyboard.press("z")
        page.idle()
        assert np.array_equal(read_index_mask(workspace / "masks" / "00010.png"), before)
        assert page.page.locator("#keyframes div").count() == 1

        # rename, export, download
        page.page.locator("#objects li .name").first.dblclick()
        page.page.keyboard.type("disc")
        page.page.keyboard.press("Enter")
        page.idle()
        page.page.click("#export")
        job = page.job_done(3)
        assert job["state"] == "done"
        with page.page.expect_download() as download:
            page.page.click("#downloads a[download='xmem-export.zip']")
        archive = tmp_path / "download.zip"
        download.value.save_as(archive)
        page.shot("6-exported")
        edits = page.page.evaluate("window.xmem.edits")
        assert not page.errors, page.errors

    export = workspace / "export"
    with zipfile.ZipFile(archive) as z:
        assert "summary.json" in z.namelist() and "overlay.mp4" in z.namelist()
        assert json.loads(z.read("summary.json"))["objects"][0]["name"] == "disc"
    # the same edits through the Python API give the same masks, frame by frame
    assert [(e["method"], e["path"].split("/")[-1]) for e in edits] == [
        ("POST", "objects"), ("POST", "clicks"), ("POST", "clicks"), ("POST", "objects"), ("POST", "brush"),
        ("POST", "clicks"), ("POST", "undo"), ("PATCH", "1"),
    ]  # fmt: skip
    session = VideoSession(video, load_model(), InferenceConfig(device="cpu"))
    expected = Annotator(session, tmp_path / "replay")
    replay(expected, edits[:5])
    list(session.propagate(0))
    replay(expected, edits[5:6])
    list(session.propagate(10))
    replay(expected, edits[6:7])
    assert session.key_frames == [0]
    for t in range(N):
        got = read_index_mask(export / "masks" / f"{t:05d}.png")
        if t == 0:  # the edits themselves: exactly
            assert np.array_equal(got, session.mask(t))
        else:  # propagated: the same up to float summation order (the server runs the engine on its thread)
            assert (got == session.mask(t)).mean() > 0.995, t
        matte = np.array(Image.open(export / "alpha" / "1-disc" / f"{t:05d}.png"))
        assert np.array_equal(matte == 255, got == 1), t
    # the disc is followed through the clip
    ious = [
        ((got := read_index_mask(export / "masks" / f"{t:05d}.png")) == 1)[truth[t] == 1].mean()
        for t in range(N)
    ]
    assert min(ious) > 0.5
