"""Helpers for the tests of ``xmem annotate``: a generated video with known objects, and the real command
started as a server process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from conftest import GOLDEN_FLAGS, write_video

H, W = 120, 200  # frame size of the generated video


def scene(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` frames of a red disc moving right and a blue square moving down over a textured background,
    and their true index masks (1: disc, 2: square)."""
    rng = np.random.default_rng(3)
    texture = (rng.integers(90, 150, (H // 4, W // 4, 3))).astype(np.uint8)
    background = np.kron(texture, np.ones((4, 4, 1), np.uint8))
    yy, xx = np.mgrid[:H, :W]
    frames, masks = [], []
    for t in range(n):
        frame = background.copy()
        mask = np.zeros((H, W), np.uint8)
        disc = (yy - 60) ** 2 + (xx - (40 + 3 * t)) ** 2 <= 18**2
        frame[disc] = (220, 40, 40)
        mask[disc] = 1
        top = 10 + 2 * t
        frame[top : top + 24, 140:166] = (40, 60, 220)
        mask[top : top + 24, 140:166] = 2
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def scene_video(path: Path, n: int) -> tuple[Path, list[np.ndarray]]:
    frames, masks = scene(n)
    return write_video(path, frames, fps=10), masks


@dataclass
class Server:
    url: str  # the page's URL with the token
    base: str  # http://127.0.0.1:PORT
    token: str
    process: subprocess.Popen

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("X-XMem-Token", self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")

    def wait_job(self, timeout: float = 120) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            _, info = self.request("GET", "/api/session")
            if info["job"] is not None and info["job"]["state"] != "running":
                return info
            time.sleep(0.1)
        raise TimeoutError("the job did not finish")


def annotate_command(video: Path, workspace: Path, weights: Path | None, *extra: str) -> list[str]:
    """``xmem annotate`` on any free port: on ``weights`` with the golden run's settings at the input size,
    or (None) on the embedded default model at its own settings."""
    flags = ["--device", "cpu", "--precision", "fp32"]
    if weights is not None:
        flags = ["--weights", str(weights), *GOLDEN_FLAGS[:-1]]
    return [
        sys.executable, "-m", "xmem", "annotate", str(video), "--workspace", str(workspace), "--port", "0",
        *flags, *extra,
    ]  # fmt: skip


@contextlib.contextmanager
def running_server(command: list[str], timeout: float = 120) -> Iterator[Server]:
    """Start the command, wait for the URL it prints, stop it at the end (a killed one stays killed)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        lines = []
        end = time.monotonic() + timeout
        url = None
        assert process.stdout is not None
        while time.monotonic() < end:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            found = re.search(r"open (http://\S+)", line)
            if found:
                url = found.group(1)
                break
        if url is None:
            process.kill()
            raise RuntimeError(
                "xmem annotate did not start:\n" + "".join(lines) + (process.stdout.read() or "")
            )
        base, token = url.split("/?token=")
        server = Server(url, base, token, process)
        end = time.monotonic() + timeout
        while True:  # the URL is printed just before uvicorn listens
            try:
                server.request("GET", "/api/session")
                break
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > end:
                    raise
                time.sleep(0.05)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
