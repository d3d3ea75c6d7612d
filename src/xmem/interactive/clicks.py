"""From a user's clicks, box or scribbles on one frame to an object mask.

- :class:`Prompt`: what the user gave for one object on one frame (points with labels, a box, scribbles,
  the object's mask before this interaction), checked against the frame by :meth:`Prompt.validate`.
- :class:`MaskPredictor`: the one interface a segmenter implements, ``predict(image, prompt) -> mask``.
- Two classical predictors that need no weights: :class:`GrabCutPredictor` (OpenCV's GrabCut) and
  :class:`RandomWalkerPredictor` (scikit-image's random walker). Both work at a reduced resolution
  (longer side at most ``max_side``) inside a region of interest around the prompt, and return the mask
  at the frame's size.
- The standard interactive-segmentation protocol (Xu et al. 2016, as used by RITM / SimpleClick):
  :func:`next_click` simulates the user, :func:`run_protocol` runs clicks 1..20 and reports the IoU after
  each click and NoC@85 / NoC@90.

Coordinates are pixels of the frame, ``x`` along a row (the column), ``y`` down (the row); a point
``(x, y)`` lies in pixel ``(row, col) = (floor(y), floor(x))``, so the frame is ``0 <= x < width``,
``0 <= y < height``. A box ``(x0, y0, x1, y1)`` covers ``x0 <= x < x1``, ``y0 <= y < y1`` and lies in
``0 <= x0 < x1 <= width``, ``0 <= y0 < y1 <= height``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

EXTRA_HINT = "pip install 'xmem-vos[interactive]'"


def _ndi():
    """scipy.ndimage, imported when first needed (scipy comes with the ``interactive`` extra)."""
    try:
        from scipy import ndimage
    except ImportError as exc:
        raise ImportError(f"xmem.interactive needs scipy, which is not installed: {EXTRA_HINT}") from exc
    return ndimage


# --- the prompt ------------------------------------------------------------------------------------


def _empty_points() -> np.ndarray:
    return np.zeros((0, 2), dtype=np.float64)


def _empty_labels() -> np.ndarray:
    return np.zeros((0,), dtype=np.int64)


@dataclass(frozen=True, eq=False)
class Prompt:
    """The user's input on one frame for one object.

    ``points``: K×2 (x, y) pixel coordinates (may be empty); ``labels``: K ints, 1 positive, 0 negative;
    ``box``: optional (x0, y0, x1, y1); ``scribbles``: optional H×W int8, 1 foreground stroke, -1
    background stroke, 0 none; ``previous``: optional H×W bool, the object's mask before this
    interaction (a hint, not an input on its own). Arrays are converted on construction (points to float
    K×2, labels to int); :meth:`validate` checks the prompt against a frame.
    """

    points: np.ndarray = field(default_factory=_empty_points)
    labels: np.ndarray = field(default_factory=_empty_labels)
    box: tuple[float, float, float, float] | None = None
    scribbles: np.ndarray | None = None
    previous: np.ndarray | None = None

    def __post_init__(self) -> None:
        points = np.asarray(self.points, dtype=np.float64)
        if points.size == 0:
            points = _empty_points()
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"points must be a K×2 array of (x, y), got shape {points.shape}")
        labels = np.asarray(self.labels)
        if labels.size == 0:
            labels = _empty_labels()
        if labels.ndim != 1:
            raise ValueError(f"labels must be a 1-D array of K ints, got shape {labels.shape}")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "labels", labels)
        if self.box is not None:
            box = tuple(float(v) for v in self.box)
            if len(box) != 4:
                raise ValueError(f"box must be (x0, y0, x1, y1), got {self.box!r}")
            object.__setattr__(self, "box", box)
        if self.scribbles is not None:
            object.__setattr__(self, "scribbles", np.asarray(self.scribbles))
        if self.previous is not None:
            object.__setattr__(self, "previous", np.asarray(self.previous).astype(bool, copy=False))

    @classmethod
    def from_clicks(
        cls,
        clicks: Sequence[Click],
        *,
        box: tuple[float, float, float, float] | None = None,
        scribbles: np.ndarray | None = None,
        previous: np.ndarray | None = None,
    ) -> Prompt:
        """A prompt of ``clicks`` (in order) and the other inputs."""
        points = np.array([(c.x, c.y) for c in clicks], dtype=np.float64).reshape(-1, 2)
        labels = np.array([int(c.positive) for c in clicks], dtype=np.int64)
        return cls(points, labels, box=box, scribbles=scribbles, previous=previous)

    @property
    def positive_points(self) -> np.ndarray:
        return self.points[self.labels == 1]

    @property
    def negative_points(self) -> np.ndarray:
        return self.points[self.labels == 0]

    def validate(self, height: int, width: int) -> None:
        """Raise ValueError, with one message saying what is wrong, unless the prompt fits a
        ``height``×``width`` frame and holds something (points, a box or scribbles)."""
        frame = f"the {width}×{height} frame (0 <= x < {width}, 0 <= y < {height})"
        if len(self.labels) != len(self.points):
            raise ValueError(
                f"{len(self.points)} points but {len(self.labels)} labels: give one label per point"
            )
        bad = [int(v) for v in self.labels if v not in (0, 1)]
        if bad:
            raise ValueError(f"labels must be 1 (positive) or 0 (negative), got {bad[0]}")
        for i, (x, y) in enumerate(self.points):
            if not (math.isfinite(x) and math.isfinite(y) and 0 <= x < width and 0 <= y < height):
                raise ValueError(f"point {i} (x={x:g}, y={y:g}) lies outside {frame}")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not all(math.isfinite(v) for v in self.box):
                raise ValueError(f"box {self.box} has a non-finite coordinate")
            if not (x1 > x0 and y1 > y0):
                raise ValueError(
                    f"box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) is empty or inverted: "
                    "it needs x1 > x0 and y1 > y0"
                )
            if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                raise ValueError(
                    f"box (x0={x0:g}, y0={y0:g}, x1={x1:g}, y1={y1:g}) reaches outside the {width}×{height} "
                    f"frame (it must lie in 0 <= x <= {width}, 0 <= y <= {height})"
                )
        for name, arr in (("scribbles", self.scribbles), ("previous", self.previous)):
            if arr is not None and arr.shape != (height, width):
                raise ValueError(
                    f"{name} is {'×'.join(map(str, arr.shape))} but the frame is {height}×{width} (H×W)"
                )
        if self.scribbles is not None:
            values = np.unique(self.scribbles)
            if not np.isin(values, (-1, 0, 1)).all():
                raise ValueError(
                    f"scribbles must hold only 1 (foreground), -1 (background) and 0, got {values.tolist()[:5]}"
                )
        has_scribbles = self.scribbles is not None and bool(np.any(self.scribbles))
        if len(self.points) == 0 and self.box is None and not has_scribbles:
            raise ValueError("the prompt is empty: give at least one point, a box or a scribble")


@dataclass(frozen=True)
class Click:
    """One click: pixel coordinates ``(x, y)`` and whether it marks the object (positive)."""

    x: float
    y: float
    positive: bool


@runtime_checkable
class MaskPredictor(Protocol):
    """Anything that turns a prompt on one frame into an object mask."""

    def predict(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        """``image``: H×W×3 uint8 RGB; returns an H×W bool mask of the object."""
        ...


# --- shared machinery of the classical predictors ---------------------------------------------------


def _check_image(image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", None)
        raise ValueError(f"image must be an H×W×3 uint8 RGB array, got shape {shape} dtype {dtype}")
    return image.shape[0], image.shape[1]


def _resize_mask(mask: np.ndarray, size: tuple[int, int], *, thin: bool = False) -> np.ndarray:
    """``mask`` (bool) resized to ``size`` = (H, W): smooth (bilinear, threshold at half), or, with
    ``thin``, keeping every pixel that any part of a stroke touches (box filter, > 0)."""
    h, w = size
    if mask.shape == (h, w):
        return mask.copy()
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    out = np.asarray(img.resize((w, h), Image.Resampling.BOX if thin else Image.Resampling.BILINEAR))
    return out > 0 if thin else out >= 128


def _disc_mask(shape: tuple[int, int], centres: np.ndarray, radius: float) -> np.ndarray:
    """Pixels within ``radius`` of any of ``centres`` ((x, y) in pixel-centre coordinates)."""
    out = np.zeros(shape, dtype=bool)
    if len(centres) == 0:
        return out
    r = math.ceil(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = xx * xx + yy * yy <= radius * radius
    h, w = shape
    for x, y in centres:
        col, row = round(x), round(y)
        r0, r1, c0, c1 = row - r, row + r + 1, col - r, col + r + 1
        dr0, dc0 = max(0, -r0), max(0, -c0)
        dr1, dc1 = disc.shape[0] - max(0, r1 - h), disc.shape[1] - max(0, c1 - w)
        out[max(0, r0) : min(h, r1), max(0, c0) : min(w, c1)] |= disc[dr0:dr1, dc0:dc1]
    return out


@dataclass
class _Work:
    """A prompt and its image at the working resolution, cropped to a region of interest.

    ``image``: the crop (h×w×3 uint8); ``fg`` / ``bg``: definite seeds from clicks and scribbles;
    ``inside``: where the object may be (the box, or around the positive clicks and the previous mask),
    ``previous``: the previous mask (or None); ``positive``: the pixels of positive clicks / foreground
    strokes (for keeping connected parts); all crop-sized. ``crop`` = (r0, r1, c0, c1) in the working
    frame of size ``size``.
    """

    image: np.ndarray
    fg: np.ndarray
    bg: np.ndarray
    inside: np.ndarray
    previous: np.ndarray | None
    positive: np.ndarray
    crop: tuple[int, int, int, int]
    size: tuple[int, int]
    from_box: bool


def _prepare(
    image: np.ndarray, prompt: Prompt, *, max_side: int, click_radius: float, reach: float, context: float
) -> _Work:
    """Scale ``image`` and ``prompt`` so the longer side is at most ``max_side`` and crop to the region of
    interest: the box, or the positive clicks each grown by ``reach`` (× the shorter side) together with
    the previous mask; then ``context`` (× the shorter side) more around it for the background."""
    h, w = _check_image(image)
    prompt.validate(h, w)
    scale = min(1.0, max_side / max(h, w))
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    sy, sx = sh / h, sw / w
    small = (
        image
        if (sh, sw) == (h, w)
        else np.asarray(Image.fromarray(image).resize((sw, sh), Image.Resampling.BILINEAR))
    )
    # pixel-centre coordinates at the working size
    pts = np.column_stack(
        [(np.floor(prompt.points[:, 0]) + 0.5) * sx - 0.5, (np.floor(prompt.points[:, 1]) + 0.5) * sy - 0.5]
    )
    pts = np.clip(pts, 0, [sw - 1, sh - 1]) if len(pts) else pts
    pos, neg = pts[prompt.labels == 1], pts[prompt.labels == 0]
    radius = max(1.5, click_radius * max(sh, sw) / 512)
    fg = _disc_mask((sh, sw), pos, radius)
    bg = _disc_mask((sh, sw), neg, radius)
    if prompt.scribbles is not None:
        fg |= _resize_mask(prompt.scribbles > 0, (sh, sw), thin=True)
        bg |= _resize_mask(prompt.scribbles < 0, (sh, sw), thin=True)
    bg &= ~fg  # where a positive and a negative input overlap, the positive one wins
    positive = fg.copy()
    previous = None
    if prompt.previous is not None and prompt.previous.any():
        previous = _resize_mask(prompt.previous, (sh, sw)) & ~bg
    inside = np.zeros((sh, sw), dtype=bool)
    short = min(sh, sw)
    if prompt.box is not None:
        x0, y0, x1, y1 = prompt.box
        by0, bx0 = math.floor(y0 * sy), math.floor(x0 * sx)
        inside[by0 : max(by0 + 1, math.ceil(y1 * sy)), bx0 : max(bx0 + 1, math.ceil(x1 * sx))] = True
    else:
        grow = reach * short
        for x, y in pos:
            r0, r1 = max(0, int(y - grow)), min(sh, int(y + grow) + 1)
            c0, c1 = max(0, int(x - grow)), min(sw, int(x + grow) + 1)
            inside[r0:r1, c0:c1] = True
        if previous is not None:
            rows, cols = np.nonzero(previous)
            pad = int(0.03 * short) + 1
            inside[
                max(0, rows.min() - pad) : rows.max() + pad + 1,
                max(0, cols.min() - pad) : cols.max() + pad + 1,
            ] = True
        strokes = fg & ~_disc_mask((sh, sw), pos, radius)
        if strokes.any():  # foreground strokes: the same reach around their bounding box
            rows, cols = np.nonzero(strokes)
            g = int(grow)
            inside[
                max(0, rows.min() - g) : rows.max() + g + 1, max(0, cols.min() - g) : cols.max() + g + 1
            ] = True
        inside |= fg  # empty with only negative input and no previous mask: nothing can be the object
    rows, cols = np.nonzero(inside | fg)
    if len(rows) == 0:
        r0, r1, c0, c1 = 0, sh, 0, sw
    else:
        m = int(context * short) + 2
        r0, r1 = max(0, rows.min() - m), min(sh, rows.max() + m + 1)
        c0, c1 = max(0, cols.min() - m), min(sw, cols.max() + m + 1)
    win = (slice(r0, r1), slice(c0, c1))
    return _Work(
        image=np.ascontiguousarray(small[win]),
        fg=fg[win],
        bg=bg[win],
        inside=inside[win],
        previous=None if previous is None else previous[win],
        positive=positive[win],
        crop=(r0, r1, c0, c1),
        size=(sh, sw),
        from_box=prompt.box is not None,
    )


def _finish(work: _Work, crop_mask: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Keep the parts connected to a positive click / foreground stroke (all parts when there are none),
    paste the crop into the working frame and resize to the frame's size."""
    ndi = _ndi()
    mask = crop_mask & ~work.bg
    if work.positive.any():
        lab, _ = ndi.label(mask)
        keep = np.unique(lab[work.positive & mask])
        mask = np.isin(lab, keep[keep > 0]) | work.fg
    full = np.zeros(work.size, dtype=bool)
    r0, r1, c0, c1 = work.crop
    full[r0:r1, c0:c1] = mask
    return _resize_mask(full, out_size)


# --- GrabCut ---------------------------------------------------------------------------------------


def _prepare_for(
    predictor: GrabCutPredictor | RandomWalkerPredictor, image: np.ndarray, prompt: Prompt
) -> _Work:
    """:func:`_prepare` with a predictor's region and resolution settings."""
    return _prepare(
        image,
        prompt,
        max_side=predictor.max_side,
        click_radius=predictor.click_radius,
        reach=predictor.reach,
        context=predictor.context,
    )


def _import_cv2():
    try:
        import cv2
    except ImportError as exc:
        raise ImportError(
            f"GrabCutPredictor needs OpenCV (opencv-python), which is not installed: {EXTRA_HINT}"
        ) from exc
    return cv2


@dataclass(frozen=True)
class GrabCutPredictor:
    """OpenCV's GrabCut (Rother et al. 2004): colour models of object and background, a graph cut.

    Initialised from the box when there is one (outside it: background), else from a square around each
    positive click (``reach`` × the frame's shorter side to each side) and the previous mask. Clicks
    are discs of definite foreground / background (``click_radius`` px at 512 px), scribbles definite
    strokes, the previous mask probable foreground (the rest of the region probable background). Runs
    ``iterations`` rounds at a longer side of at most ``max_side``, on a crop around the region with
    ``context`` × the shorter side of background around it. Keeps the parts connected to a positive
    click."""

    iterations: int = 5
    max_side: int = 384
    click_radius: float = 5.0
    reach: float = 0.22
    context: float = 0.08

    def predict(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        cv2 = _import_cv2()
        work = _prepare_for(self, image, prompt)
        h, w = image.shape[:2]
        gc = np.full(work.inside.shape, cv2.GC_BGD, dtype=np.uint8)
        if work.previous is not None and not work.from_box:
            gc[work.inside] = cv2.GC_PR_BGD
            gc[work.previous] = cv2.GC_PR_FGD
        else:
            gc[work.inside] = cv2.GC_PR_FGD
            if work.previous is not None:
                gc[work.previous & work.inside] = cv2.GC_PR_FGD
        gc[work.bg] = cv2.GC_BGD
        gc[work.fg] = cv2.GC_FGD
        fg_like = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        if not fg_like.any():
            return np.zeros((h, w), dtype=bool)
        if fg_like.all():  # the region is the whole crop: its border must show some background
            gc[[0, -1], :] = np.where(work.fg[[0, -1], :], cv2.GC_FGD, cv2.GC_PR_BGD)
            gc[:, [0, -1]] = np.where(work.fg[:, [0, -1]], cv2.GC_FGD, cv2.GC_PR_BGD)
        if min(gc.shape) < 2 or ((gc == cv2.GC_BGD) | (gc == cv2.GC_PR_BGD)).sum() < 2:
            return _finish(work, fg_like, (h, w))
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(work.image, gc, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        crop_mask = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
        return _finish(work, crop_mask, (h, w))


# --- random walker ---------------------------------------------------------------------------------


def _import_random_walker():
    try:
        from skimage.segmentation import random_walker
    except ImportError as exc:
        raise ImportError(
            f"RandomWalkerPredictor needs scikit-image, which is not installed: {EXTRA_HINT}"
        ) from exc
    return random_walker


@dataclass(frozen=True)
class RandomWalkerPredictor:
    """scikit-image's random walker (Grady 2006): each pixel takes the seed label a random walk from it
    most likely reaches first, walks crossing colour edges being unlikely (``beta``).

    Seeds: positive / negative click discs and scribbles; background on the border of the region of
    interest (outside the box, or beyond ``reach`` × the shorter side from the positive clicks and the
    previous mask, as for :class:`GrabCutPredictor`); with a box and no positive input, a disc at the
    box's centre as the object; with only negative input, the previous mask's core away from the negative
    clicks. Otherwise the previous mask only widens the region (the walk is solved afresh from all
    clicks). Runs at a longer side of at most ``max_side``; keeps the parts connected to a positive
    click."""

    beta: float = 1000.0
    max_side: int = 320
    click_radius: float = 5.0
    reach: float = 0.22
    context: float = 0.04
    tol: float = 1e-3

    def predict(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        random_walker = _import_random_walker()
        work = _prepare_for(self, image, prompt)
        h, w = image.shape[:2]
        fg = work.fg.copy()
        if not fg.any() and work.previous is not None:
            # no positive input (say, only a negative click to trim the mask): the previous mask's core,
            # away from its edge and from the negative clicks, stands for the object
            ndi = _ndi()
            near_negative = ndi.binary_dilation(work.bg, iterations=max(2, round(0.04 * min(work.size))))
            fg = ndi.binary_erosion(work.previous, iterations=2) & ~near_negative
            work.positive = fg
        if not fg.any() and work.from_box:
            rows, cols = np.nonzero(work.inside)
            cy, cx = (rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2
            r = max(1.5, 0.12 * min(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
            fg = _disc_mask(fg.shape, np.array([[cx, cy]]), r) & ~work.bg
            work.positive = fg
        if not fg.any():
            return np.zeros((h, w), dtype=bool)
        seeds = np.zeros(fg.shape, dtype=np.int32)
        outside = ~work.inside
        border = np.zeros_like(outside)
        border[[0, -1], :] = True
        border[:, [0, -1]] = True
        seeds[outside | border | work.bg] = 2
        seeds[fg] = 1
        if not (seeds == 2).any() or min(seeds.shape) < 2:
            return _finish(work, work.inside | fg, (h, w))
        data = work.image.astype(np.float32) / 255.0
        with warnings.catch_warnings():
            # at a loose tolerance the solved probabilities may stray slightly outside [0, 1]: harmless
            warnings.filterwarnings(
                "ignore", message="The probability range is outside", category=UserWarning
            )
            labels = random_walker(data, seeds, beta=self.beta, mode="cg_j", tol=self.tol, channel_axis=-1)
        return _finish(work, labels == 1, (h, w))


# --- the click protocol ----------------------------------------------------------------------------


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two bool masks (1.0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def next_click(gt: np.ndarray, pred: np.ndarray) -> Click | None:
    """The simulated user's next click: at the interior point of the largest error region farthest
    from that region's boundary (the frame's edge counts as boundary), positive when the region is
    missed object (false negative), negative when it is wrongly marked (false positive). None when the
    prediction is exact."""
    ndi = _ndi()
    gt, pred = np.asarray(gt, dtype=bool), np.asarray(pred, dtype=bool)
    if gt.shape != pred.shape:
        raise ValueError(f"ground truth is {gt.shape} but the prediction {pred.shape}")
    best: tuple[int, bool, np.ndarray] | None = None
    for positive, err in ((True, gt & ~pred), (False, pred & ~gt)):
        if not err.any():
            continue
        lab, _ = ndi.label(err)
        sizes = np.bincount(lab.ravel())[1:]
        k = int(np.argmax(sizes))
        if best is None or sizes[k] > best[0]:
            best = (int(sizes[k]), positive, lab == k + 1)
    if best is None:
        return None
    _, positive, region = best
    dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(x=float(col), y=float(row), positive=positive)


@dataclass(frozen=True)
class ProtocolResult:
    """The outcome of :func:`run_protocol`: ``ious[k]`` after click k + 1, the clicks, the seconds each
    prediction took, and NoC at each threshold (clicks to reach it, ``max_clicks`` if never)."""

    ious: tuple[float, ...]
    clicks: tuple[Click, ...]
    seconds: tuple[float, ...]
    noc: dict[float, int]
    masks: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def noc85(self) -> int:
        return self.noc[0.85]

    @property
    def noc90(self) -> int:
        return self.noc[0.90]


def noc(ious: Sequence[float], threshold: float, max_clicks: int = 20) -> int:
    """Number of clicks to reach ``threshold`` IoU (``ious[k]`` after click k + 1), ``max_clicks`` if never."""
    for k, v in enumerate(ious[:max_clicks]):
        if v >= threshold:
            return k + 1
    return max_clicks


def run_protocol(
    predictor: MaskPredictor,
    image: np.ndarray,
    gt: np.ndarray,
    *,
    max_clicks: int = 20,
    thresholds: Sequence[float] = (0.85, 0.90),
    keep_masks: Sequence[int] = (),
) -> ProtocolResult:
    """Run the standard protocol: start from an empty mask; each click is :func:`next_click` of the
    current prediction, and each prediction uses all clicks so far with the last prediction as
    ``previous``. After an exact prediction the remaining clicks keep its IoU. ``keep_masks``: the click
    numbers (1-based) whose predictions to return in ``masks`` (by click number)."""
    gt = np.asarray(gt, dtype=bool)
    if gt.shape != image.shape[:2]:
        raise ValueError(f"ground truth is {gt.shape} but the image {image.shape[:2]}")
    if not gt.any():
        raise ValueError("the ground-truth mask is empty: nothing to click on")
    pred = np.zeros_like(gt)
    clicks: list[Click] = []
    ious: list[float] = []
    seconds: list[float] = []
    masks: dict[int, np.ndarray] = {}
    previous: np.ndarray | None = None
    for k in range(1, max_clicks + 1):
        click = next_click(gt, pred)
        if click is None:
            ious.extend([ious[-1]] * (max_clicks - len(ious)))
            break
        clicks.append(click)
        prompt = Prompt.from_clicks(clicks, previous=previous)
        start = time.perf_counter()
        pred = np.asarray(predictor.predict(image, prompt), dtype=bool)
        seconds.append(time.perf_counter() - start)
        if pred.shape != gt.shape:
            raise ValueError(f"the predictor returned a {pred.shape} mask for a {gt.shape} frame")
        previous = pred
        ious.append(iou(pred, gt))
        if k in keep_masks:
            masks[k] = pred
    return ProtocolResult(
        ious=tuple(ious),
        clicks=tuple(clicks),
        seconds=tuple(seconds),
        noc={float(t): noc(ious, t, max_clicks) for t in thresholds},
        masks=masks,
    )
