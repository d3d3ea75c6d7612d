"""Generated ground truth and predictions for the evaluation tests: moving ellipses with several objects,
empty frames, objects that appear late, imperfect predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xmem.io.masks import write_index_mask


def ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def ground_truth(
    rng: np.random.Generator,
    frames: int,
    h: int,
    w: int,
    appear: dict[int, int],
    absent: dict[int, list[int]] | None = None,
) -> np.ndarray:
    """T×H×W labels: object k (key of ``appear``) is a moving ellipse from frame ``appear[k]`` on, except on
    the frames ``absent[k]``."""
    absent = absent or {}
    labels = np.zeros((frames, h, w), dtype=np.uint8)
    for k, first in appear.items():
        cy, cx = rng.uniform(0.2, 0.8) * h, rng.uniform(0.2, 0.8) * w
        vy, vx = rng.uniform(-1.5, 1.5, size=2)
        ry, rx = rng.uniform(0.1, 0.3) * h + 1, rng.uniform(0.1, 0.3) * w + 1
        for t in range(first, frames):
            if t in absent.get(k, []):
                continue
            labels[t][ellipse(h, w, cy + vy * t, cx + vx * t, ry, rx)] = k
    return labels


def predict(
    rng: np.random.Generator, gt: np.ndarray, *, miss: float = 0.1, noise: float = 0.02
) -> np.ndarray:
    """An imperfect prediction: each frame shifted by up to 3 pixels, objects dropped on some frames (share
    ``miss``), labels flipped on a share ``noise`` of the pixels near the objects, and a stray blob of an
    existing id now and then. Never holds 255."""
    t, h, w = gt.shape
    pred = np.zeros_like(gt)
    ids = [int(i) for i in np.unique(gt) if i not in (0, 255)]
    for i in range(t):
        dy, dx = rng.integers(-3, 4, size=2)
        frame = np.roll(gt[i], (dy, dx), axis=(0, 1))
        frame[frame == 255] = 0
        for k in ids:
            if rng.random() < miss:
                frame[frame == k] = 0
        flip = (rng.random((h, w)) < noise) & (frame > 0)
        frame[flip] = 0
        if ids and rng.random() < 0.3:
            k = ids[rng.integers(len(ids))]
            blob = ellipse(h, w, rng.uniform(0, h), rng.uniform(0, w), 2 + h / 10, 2 + w / 10)
            frame[blob] = k
        pred[i] = frame
    return pred


def write_video(folder: Path, labels: np.ndarray, names: list[str] | None = None) -> None:
    """One palette PNG per frame, named ``00000.png``, ... (or ``names``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(labels):
        name = names[i] if names else f"{i:05d}"
        write_index_mask(folder / f"{name}.png", frame)
