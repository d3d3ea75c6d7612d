"""The README's and docs/annotate.md's pictures of `xmem annotate`, taken in headless Chromium on the demo's
real clip (OpenCV's cup.mp4) with the default model: two clicks on the cup, propagation forward (caught
half-way), a correction on a later frame, and the result.

    python benchmarks/annotate_screenshots.py     # docs/annotate-*.png; needs Debian's chromium

Also prints J of the propagated masks on the clip's hand-checked frames (demo/cup-annotations/), so that
the pictures come with what they show.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xmem.interactive import next_click
from xmem.io.masks import read_index_mask

ROOT = Path(__file__).resolve().parents[1]
FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def clicks_on(mask_path: Path) -> list[tuple[int, int]]:
    """Two clicks where a user puts them: the middle of the object and halfway up to its top (from the
    demo's first-frame mask)."""
    ys, xs = np.nonzero(read_index_mask(mask_path) == 1)
    cx, cy = int(np.median(xs)), int(np.median(ys))
    column = ys[xs == cx]
    return [(cx, cy), (cx, int((cy + column.min()) / 2))]


def score(annotations: Path, workspace: Path) -> dict[str, object]:
    """J of the workspace's masks on the hand-checked frames."""
    scores = {}
    for path in sorted(annotations.glob("*.png")):
        truth = read_index_mask(path) == 1
        pred = read_index_mask(workspace / "masks" / f"{int(path.stem):05d}.png") == 1
        scores[int(path.stem)] = round(float((truth & pred).sum() / max(1, (truth | pred).sum())), 3)
    return {"J": scores, "mean_J": round(float(np.mean(list(scores.values()))), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", type=Path, default=ROOT / "demo" / "cup.mp4")
    parser.add_argument("--annotations", type=Path, default=ROOT / "demo" / "cup-annotations")
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    workspace = Path(tempfile.mkdtemp(prefix="xmem-shots-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "xmem", "annotate", str(args.video), "--workspace", str(workspace), "--port", "0",
         "--device", "cpu"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        url = next(m.group(1) for line in server.stdout if (m := re.search(r"open (http://\S+)", line)))
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=FLAGS)
            page = browser.new_page(viewport={"width": 1180, "height": 720})
            for _ in range(100):
                try:
                    page.goto(url)
                    break
                except Exception:
                    time.sleep(0.1)
            idle = "window.xmem && window.xmem.state.info && window.xmem.idle()"
            page.wait_for_function(idle)

            def at(x: float, y: float) -> tuple[float, float]:
                box = page.locator("#view").bounding_box()
                s, ox, oy, dpr = page.evaluate(
                    "[window.xmem.state.scale, window.xmem.state.ox, window.xmem.state.oy, devicePixelRatio]"
                )
                return box["x"] + (ox + x * s) / dpr, box["y"] + (oy + y * s) / dpr

            page.click("#add-object")
            page.wait_for_function(idle)
            page.locator("#objects li .name").first.dblclick()
            page.keyboard.type("cup")
            page.keyboard.press("Enter")
            page.wait_for_function(idle)
            for x, y in clicks_on(ROOT / "demo" / "cup-mask.png"):
                page.mouse.click(*at(x, y))
                page.wait_for_function(idle)
            page.screenshot(path=str(args.out / "annotate-clicks.png"))
            page.click("#prop-forward")
            page.wait_for_function(
                "window.xmem.state.job && window.xmem.state.job.done >= 90", timeout=120_000
            )
            page.screenshot(path=str(args.out / "annotate-propagating.png"))
            page.wait_for_function("window.xmem.state.job.state === 'done'", timeout=300_000)
            page.wait_for_function(idle)
            # frame 175 takes in part of the hand: one click where the simulated user puts it (the middle of
            # the largest error against the hand-checked mask), then propagation forward again
            page.locator("#slider").fill("175")
            page.wait_for_function(idle)
            before = score(args.annotations, workspace)
            truth = read_index_mask(args.annotations / "00175.png") == 1
            click = next_click(truth, read_index_mask(workspace / "masks" / "00175.png") == 1)
            assert click is not None
            page.mouse.click(*at(click.x, click.y), button="left" if click.positive else "right")
            page.wait_for_function(idle)
            page.click("#prop-forward")
            page.wait_for_function("window.xmem.state.job.id === 2 && window.xmem.state.job.state === 'done'")
            page.wait_for_function(idle)
            page.locator("#slider").fill("175")
            page.wait_for_function(idle)
            page.screenshot(path=str(args.out / "annotate-result.png"))
            browser.close()
        print(
            json.dumps({"before_correction": before, "after_correction": score(args.annotations, workspace)})
        )
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
