"""Region similarity J and boundary F-measure per frame, and the per-object statistics of the DAVIS
benchmark (Perazzi et al., CVPR 2016; Pont-Tuset et al., 2017).

Definitions (those of the DAVIS evaluation code, which vos-benchmark shares):

- **J** is the intersection over union of the predicted and the ground-truth mask; when both are empty
  (outside void pixels), J = 1.
- **F** compares boundary maps. A pixel is on the boundary of a mask when it differs from its right, lower
  or lower-right neighbour (BSDS ``seg2bmap``; the boundary sits half a pixel towards the origin). In the
  last row only the right neighbour counts, in the last column only the lower one, and the bottom-right
  pixel is never on the boundary, so the image border itself is no boundary. A boundary pixel is matched
  when the other mask has a boundary pixel within a disk of radius ``ceil(0.008 × image diagonal)``
  (``dx² + dy² ≤ r²``). Precision = matched predicted / predicted boundary pixels, recall = matched
  ground-truth / ground-truth boundary pixels, F = 2PR / (P + R) (0 when P + R = 0). With no predicted
  boundary P = 1, with no ground-truth boundary R = 1 (both empty: F = 1; one empty: F = 0).
- **Void** pixels (the ground truth's label 255) are removed from both masks before either measure.
- Per object, over its scored frames: **mean**, **recall** (share of frames scoring above 0.5) and
  **decay** (mean of the first quarter minus mean of the last quarter of the frames, the quarters being
  those of the DAVIS code: bin edges ``round(linspace(1, n, 5)) - 1``, each bin including its right edge).

All functions work on a single ``H×W`` mask or on ``T×H×W`` stacks, vectorised over frames. F never builds
the dilated boundary maps: for every boundary pixel it looks up, in row-wise cumulative sums of the other
boundary map, whether any pixel lies within the disk (``2r + 1`` lookups per boundary pixel), on the
bounding box of the two masks only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BOUNDARY_THRESHOLD = 0.008
"""The DAVIS boundary tolerance, as a fraction of the image diagonal."""

RECALL_THRESHOLD = 0.5
"""A frame counts towards recall when its score is above this."""


@dataclass(frozen=True)
class Statistics:
    """Mean, recall and decay of one measure (J or F) over frames, as fractions in [0, 1] (decay may be
    negative)."""

    mean: float
    recall: float
    decay: float


def statistics(values: np.ndarray) -> Statistics:
    """The DAVIS statistics of per-frame scores ``values`` (1-D, at least one frame)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.size
    if n == 0:
        raise ValueError("statistics of no frames")
    # Bin edges round(linspace(1, n, 5)) - 1 with halves rounded up: (i (n - 1) + 2) // 4, exactly.
    # (The DAVIS code stores them as uint8, which wraps above 256 frames; here they do not wrap.)
    edges = [(i * (n - 1) + 2) // 4 for i in range(5)]
    first = v[edges[0] : edges[1] + 1]
    last = v[edges[3] : edges[4] + 1]
    return Statistics(
        mean=float(v.mean()),
        recall=float((v > RECALL_THRESHOLD).mean()),
        decay=float(first.mean() - last.mean()),
    )


def boundary_tolerance(height: int, width: int, bound_th: float = BOUNDARY_THRESHOLD) -> int:
    """Radius in pixels of the disk within which boundary pixels match: ``ceil(bound_th × diagonal)``, or
    ``bound_th`` itself when it is 1 or more (a radius in pixels, as in the DAVIS code)."""
    if bound_th <= 0:
        raise ValueError(f"bound_th must be positive, got {bound_th}")
    if bound_th >= 1:
        return int(bound_th)
    return math.ceil(bound_th * math.sqrt(height * height + width * width))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a binary mask (``...×H×W``, any dtype; nonzero = inside), as bool.

    A pixel is on the boundary when it differs from its right, lower or lower-right neighbour; in the last
    row only the right neighbour is compared, in the last column only the lower one, and the bottom-right
    pixel is never on the boundary.
    """
    m = np.asarray(mask).astype(bool, copy=False)
    if m.ndim < 2:
        raise ValueError(f"boundary_map needs an ...×H×W mask, got shape {m.shape}")
    b = np.zeros(m.shape, dtype=bool)
    c = m[..., :-1, :-1]
    b[..., :-1, :-1] = (c != m[..., :-1, 1:]) | (c != m[..., 1:, :-1]) | (c != m[..., 1:, 1:])
    b[..., -1, :-1] = m[..., -1, :-1] != m[..., -1, 1:]
    b[..., :-1, -1] = m[..., :-1, -1] != m[..., 1:, -1]
    return b


def _disk_half_widths(radius: int) -> list[int]:
    # Row dy of the disk dx² + dy² ≤ r² spans dx in [-w, w] with w = floor(sqrt(r² - dy²)).
    return [math.isqrt(radius * radius - dy * dy) for dy in range(radius + 1)]


def _matched_per_frame(source: np.ndarray, target: np.ndarray, radius: int) -> np.ndarray:
    """For T×h×w bool boundary maps: per frame, how many ``source`` pixels have a ``target`` pixel within
    the disk of ``radius`` (that is, lie in the target's dilation by the disk)."""
    frames, h, w = target.shape
    flat_source = np.flatnonzero(source)  # faster than np.nonzero's three index arrays
    if flat_source.size == 0:
        return np.zeros(frames, dtype=np.int64)
    t, rest = np.divmod(flat_source, h * w)
    y, x = np.divmod(rest, w)
    # Row-wise cumulative counts with a leading zero column: pixels of a row in [x0, x1] = cs[x1+1] - cs[x0].
    cs = np.zeros((frames, h, w + 1), dtype=np.int32)
    np.cumsum(target, axis=2, dtype=np.int32, out=cs[..., 1:])
    flat = cs.reshape(-1)
    half = _disk_half_widths(radius)
    matched = np.zeros(t.size, dtype=bool)
    todo = np.arange(t.size)  # source pixels not matched yet
    for dy in sorted(range(-radius, radius + 1), key=abs):  # near rows first: most pixels match early
        if todo.size == 0:
            break
        yy = y[todo] + dy
        inside = (yy >= 0) & (yy < h)
        idx = todo[inside]
        if idx.size == 0:
            continue
        row = (t[idx] * h + (y[idx] + dy)) * (w + 1)
        xs = x[idx]
        hw = half[abs(dy)]
        lo = row + np.maximum(xs - hw, 0)
        hi = row + np.minimum(xs + hw, w - 1) + 1
        hit = flat[hi] > flat[lo]
        matched[idx[hit]] = True
        todo = todo[~matched[todo]]
    return np.bincount(t[matched], minlength=frames)


def _as_stack(mask: np.ndarray, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ValueError(f"{name}: expected an H×W or T×H×W mask, got shape {m.shape}")
    return m.astype(bool, copy=False)


def _crop_box(present: np.ndarray) -> tuple[slice, slice] | None:
    """Rows and columns holding any pixel of a T×H×W mask, grown by one pixel (the boundary extends one
    pixel up and left of a mask, and the crop's own border must lie outside both masks)."""
    rows = np.flatnonzero(present.any(axis=(0, 2)))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(present.any(axis=(0, 1)))
    h, w = present.shape[1:]
    return (
        slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)),
        slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w)),
    )


def region_and_boundary(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """J and F of one object on each frame.

    ``gt``, ``pred``: binary masks of the object, ``H×W`` or ``T×H×W`` (nonzero = object); ``void``: pixels
    to leave out (same shape), or None. The tolerance radius comes from the frame size (``H``, ``W``).
    Returns ``(j, f)``, float64 arrays of shape ``(T,)`` (``(1,)`` for a single frame).
    """
    g = _as_stack(gt, "gt")
    p = _as_stack(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"gt {g.shape} and pred {p.shape} differ in shape")
    if void is not None:
        v = _as_stack(void, "void")
        if v.shape != g.shape:
            raise ValueError(f"void {v.shape} and gt {g.shape} differ in shape")
        keep = ~v
        g = g & keep
        p = p & keep
    frames, h, w = g.shape
    radius = boundary_tolerance(h, w, bound_th)
    box = _crop_box(g | p)
    if box is None:  # the object is on no frame, in neither mask
        return np.ones(frames), np.ones(frames)
    g = g[:, box[0], box[1]]  # T×h×w, h and w of the crop
    p = p[:, box[0], box[1]]

    inter = np.count_nonzero(g & p, axis=(1, 2))
    union = np.count_nonzero(g | p, axis=(1, 2))
    j = np.where(union == 0, 1.0, inter / np.maximum(union, 1))

    gb = boundary_map(g)
    pb = boundary_map(p)
    n_gt = np.count_nonzero(gb, axis=(1, 2))
    n_pred = np.count_nonzero(pb, axis=(1, 2))
    gt_matched = _matched_per_frame(gb, pb, radius)
    pred_matched = _matched_per_frame(pb, gb, radius)
    precision = np.where(n_pred == 0, 1.0, pred_matched / np.maximum(n_pred, 1))
    recall = np.where(n_gt == 0, 1.0, gt_matched / np.maximum(n_gt, 1))
    # One boundary empty and the other not: precision or recall is 0 and F = 0 (the DAVIS special cases).
    precision = np.where((n_pred > 0) & (n_gt == 0), 0.0, precision)
    recall = np.where((n_pred == 0) & (n_gt > 0), 0.0, recall)
    total = precision + recall
    f = np.where(total == 0, 0.0, 2 * precision * recall / np.where(total == 0, 1.0, total))
    return j, f


def region_similarity(gt: np.ndarray, pred: np.ndarray, *, void: np.ndarray | None = None) -> np.ndarray:
    """J (intersection over union) per frame of binary masks ``H×W`` or ``T×H×W``; 1 where both are empty.
    Returns shape ``(T,)``."""
    g = _as_stack(gt, "gt")
    p = _as_stack(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"gt {g.shape} and pred {p.shape} differ in shape")
    keep = None if void is None else ~_as_stack(void, "void")
    both = g & p
    either = g | p
    if keep is not None:
        both &= keep
        either &= keep
    inter = np.count_nonzero(both, axis=(1, 2))
    union = np.count_nonzero(either, axis=(1, 2))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def boundary_f_measure(
    gt: np.ndarray,
    pred: np.ndarray,
    *,
    void: np.ndarray | None = None,
    bound_th: float = BOUNDARY_THRESHOLD,
) -> np.ndarray:
    """F (boundary F-measure) per frame of binary masks ``H×W`` or ``T×H×W``. Returns shape ``(T,)``."""
    return region_and_boundary(gt, pred, void=void, bound_th=bound_th)[1]
