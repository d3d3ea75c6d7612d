"""Shared helpers of the benchmark scripts: a deterministic synthetic video, the options that choose the
held-out composite clips, and process measurements."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from xmem.data import CompositeConfig


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency colour texture in [0, 255], h×w×3."""
    coarse = torch.from_numpy(rng.random((1, 3, cells, max(2, cells * w // h)), dtype=np.float32))
    fine = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    return (fine.clamp(0, 1) * 255).permute(1, 2, 0).numpy()


class SyntheticVideo:
    """A textured background panning slowly, with ``objects`` textured shapes moving, rotating and
    occluding each other. Frame t is computed on demand (memory does not grow with length); object ids
    are 1..objects; ``mask(t)`` is the ground-truth index mask."""

    def __init__(self, length: int, height: int, width: int, objects: int = 2, seed: int = 0) -> None:
        self.length, self.height, self.width, self.objects = length, height, width, objects
        rng = np.random.default_rng(seed)
        pad = max(height, width) // 4
        self._bg = _smooth_noise(rng, height + 2 * pad, width + 2 * pad, 12)
        self._pad = pad
        self._tex = [_smooth_noise(rng, height, width, 6) * 0.5 + rng.random(3) * 127 for _ in range(objects)]
        self._params = [
            dict(
                cy=rng.uniform(0.3, 0.7), cx=rng.uniform(0.2, 0.8), ry=rng.uniform(0.12, 0.22),
                rx=rng.uniform(0.08, 0.18), fy=rng.uniform(0.5, 1.5), fx=rng.uniform(0.5, 1.5),
                phase=rng.uniform(0, 2 * np.pi), spin=rng.uniform(-1, 1), square=bool(i % 2),
            )
            for i in range(objects)
        ]  # fmt: skip
        yy, xx = np.mgrid[:height, :width].astype(np.float32)
        self._yy, self._xx = yy / height, xx / width

    def __len__(self) -> int:
        return self.length

    def _shape(self, i: int, t: int) -> np.ndarray:
        p = self._params[i]
        s = 2 * np.pi * t / 200.0
        cy = p["cy"] + 0.2 * np.sin(p["fy"] * s + p["phase"])
        cx = p["cx"] + 0.25 * np.sin(p["fx"] * s + 2 * p["phase"])
        a = p["spin"] * s
        dy, dx = self._yy - cy, (self._xx - cx) * self.width / self.height
        u = (np.cos(a) * dx + np.sin(a) * dy) / p["rx"]
        v = (-np.sin(a) * dx + np.cos(a) * dy) / p["ry"]
        return np.maximum(abs(u), abs(v)) < 1 if p["square"] else u * u + v * v < 1

    def frame_and_mask(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        oy = int(self._pad * (1 + np.sin(2 * np.pi * t / 300.0)))
        ox = int(self._pad * (1 + np.cos(2 * np.pi * t / 400.0)))
        frame = self._bg[oy : oy + self.height, ox : ox + self.width].copy()
        mask = np.zeros((self.height, self.width), np.uint8)
        for i in range(self.objects):  # later objects are in front
            m = self._shape(i, t)
            frame[m] = self._tex[i][m]
            mask[m] = i + 1
        return frame.astype(np.uint8), mask

    def frames(self) -> Iterator[np.ndarray]:
        for t in range(self.length):
            yield self.frame_and_mask(t)[0]

    def mask(self, t: int) -> np.ndarray:
        return self.frame_and_mask(t)[1]


def add_clip_arguments(
    parser: argparse.ArgumentParser,
    *,
    first_seed: int,
    frames: int,
    videos: int | None = None,
    first_seed_help: str | None = None,
) -> None:
    """The options that choose held-out composite clips (``held_out_videos``): ``--first-seed``,
    ``--frames``, ``--height``, ``--width`` (240×427, the benchmark's) and, given ``videos``,
    ``--videos``. Each script passes its own defaults; :func:`clip_config` reads them back."""
    if videos is not None:
        parser.add_argument("--videos", type=int, default=videos, help=f"number of clips (default {videos})")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=first_seed,
        help=first_seed_help or f"seed of the first clip (default {first_seed})",
    )
    parser.add_argument("--frames", type=int, default=frames, help=f"frames per clip (default {frames})")
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--width", type=int, default=427)


def clip_config(args: argparse.Namespace) -> CompositeConfig:
    """The composite-video config of the clips chosen by :func:`add_clip_arguments`' options."""
    return CompositeConfig(height=args.height, width=args.width, length=args.frames)
