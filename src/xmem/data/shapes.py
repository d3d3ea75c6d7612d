"""Random smooth object shapes (hard masks): blobs, polygons and unions of blobs."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def _blob_outline(rng: np.random.Generator, points: int = 96) -> np.ndarray:
    """A star-shaped smooth outline, points×2 in [-1, 1]: radius 1 + a few random low harmonics."""
    theta = np.linspace(0.0, 2 * math.pi, points, endpoint=False)
    radius = np.ones_like(theta)
    for k in range(2, 6):
        radius += rng.uniform(0.0, 0.35) / k**0.7 * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
    radius = np.clip(radius, 0.25, None)
    radius /= radius.max()
    aspect = rng.uniform(0.6, 1.0)
    return np.stack([radius * np.cos(theta), aspect * radius * np.sin(theta)], axis=1)


def _polygon_outline(rng: np.random.Generator) -> np.ndarray:
    """A star-shaped polygon of 3-9 vertices, n×2 in [-1, 1]."""
    n = int(rng.integers(3, 10))
    theta = np.sort(rng.uniform(0.0, 2 * math.pi, n))
    if n == 3 or np.diff(np.append(theta, theta[0] + 2 * math.pi)).max() > 0.8 * math.pi:
        theta = (
            np.linspace(0.0, 2 * math.pi, n, endpoint=False) + rng.uniform(-0.25, 0.25, n) * 2 * math.pi / n
        )
    radius = rng.uniform(0.55, 1.0, n)
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)


def _rotate(outline: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return outline @ np.array([[c, s], [-s, c]])


def random_shape(rng: np.random.Generator, size: int) -> np.ndarray:
    """A size×size boolean mask of a random smooth shape centred in the square: a blob, a polygon or a
    union of two or three blobs, filling a good part of the square and touching none of its borders."""
    kind = int(rng.integers(3))
    if kind == 0:
        outlines = [_blob_outline(rng)]
    elif kind == 1:
        outlines = [_polygon_outline(rng)]
    else:
        outlines = []
        for _ in range(int(rng.integers(2, 4))):
            centre = rng.uniform(-0.35, 0.35, 2)
            outlines.append(centre + rng.uniform(0.45, 0.65) * _blob_outline(rng))
    angle = rng.uniform(0, 2 * math.pi)
    outlines = [_rotate(o, angle) for o in outlines]
    extent = max(np.abs(o).max() for o in outlines)
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    half = (size - 2) / 2
    for o in outlines:
        xy = (o / extent * half * 0.98 + size / 2).ravel().tolist()
        draw.polygon(xy, fill=255)
    return np.asarray(canvas) > 127
