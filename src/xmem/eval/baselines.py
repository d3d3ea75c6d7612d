"""Baselines that propagate a first-frame mask without learning, to put J&F numbers in context.

- :class:`CopyFirstMask`: the first mask on every frame (what a method scores by doing nothing);
- :class:`FlowWarp`: the previous frame's mask carried to the next frame along dense optical flow
  (OpenCV's DIS or Farneback, the optional extra ``baselines``: ``pip install 'xmem-vos[baselines]'``).

Both, and XMem through :class:`SegmenterPropagator`, offer one interface (:class:`MaskPropagator`):
``propagate(frames, first_mask)`` yields an H×W index mask per frame, the first frame included.
:func:`score_propagation` plays a clip through any of them and scores it by the DAVIS protocol.
"""

from __future__ import annotations

import enum
import importlib
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from xmem.config import InferenceConfig
from xmem.data.sources import MissingExtraError
from xmem.eval.protocol import Protocol as ScoringProtocol
from xmem.eval.protocol import VideoResult, VideoScorer
from xmem.inference.segmenter import VideoSegmenter
from xmem.model.network import XMem

BASELINES_EXTRA = "pip install 'xmem-vos[baselines]'"


@runtime_checkable
class MaskPropagator(Protocol):
    """Semi-supervised VOS as a function: a first-frame index mask in, an index mask per frame out."""

    @property
    def name(self) -> str: ...

    def propagate(self, frames: Iterable[np.ndarray], first_mask: np.ndarray) -> Iterator[np.ndarray]:
        """One H×W index mask per frame of ``frames`` (H×W×3 uint8 RGB), the first frame's included."""
        ...


def _object_ids(mask: np.ndarray) -> list[int]:
    return [int(i) for i in np.unique(mask) if i != 0]


class CopyFirstMask:
    """The first frame's mask, unchanged, on every frame."""

    name = "copy-first-mask"

    def propagate(self, frames: Iterable[np.ndarray], first_mask: np.ndarray) -> Iterator[np.ndarray]:
        first = np.asarray(first_mask)
        for _ in frames:
            yield first.copy()


class FlowMethod(enum.Enum):
    """Dense optical flow algorithm (OpenCV)."""

    DIS = "dis"
    """Dense Inverse Search (Kroeger et al., ECCV 2016)."""
    FARNEBACK = "farneback"
    """Polynomial expansion (Farnebäck, SCIA 2003)."""


class DisPreset(enum.Enum):
    """DIS speed / quality presets (OpenCV's ``DISOPTICAL_FLOW_PRESET_*``)."""

    ULTRAFAST = 0
    FAST = 1
    MEDIUM = 2


@dataclass(frozen=True)
class FlowWarpConfig:
    """How :class:`FlowWarp` estimates flow: ``method``; for DIS its ``dis_preset``. Farneback is the
    default: on the held-out composite videos it carried masks further than DIS (whose coarse-to-fine
    search underestimates the motion of small objects over a static background)."""

    method: FlowMethod = FlowMethod.FARNEBACK
    dis_preset: DisPreset = DisPreset.MEDIUM


def _cv2():
    try:
        return importlib.import_module("cv2")
    except ImportError:
        raise MissingExtraError(f"the optical-flow baseline needs OpenCV: {BASELINES_EXTRA}") from None


class FlowWarp:
    """Carries each frame's mask to the next frame along dense optical flow.

    For frame t the flow is computed from frame t to frame t−1 (for each pixel of frame t, where it was in
    frame t−1), and the previous mask is sampled there: each object's indicator (and the background's) is
    interpolated bilinearly, and every pixel takes the label of the largest. Pixels that come from outside
    the frame become background. Errors accumulate: nothing brings a lost object back.
    """

    def __init__(self, config: FlowWarpConfig | None = None) -> None:
        self.config = config or FlowWarpConfig()
        self._cv = _cv2()
        if self.config.method is FlowMethod.DIS:
            self._dis = self._cv.DISOpticalFlow_create(self.config.dis_preset.value)
        self._grid: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def name(self) -> str:
        if self.config.method is FlowMethod.DIS:
            return f"flow-warp-dis-{self.config.dis_preset.name.lower()}"
        return "flow-warp-farneback"

    def _grey(self, frame: np.ndarray) -> np.ndarray:
        return self._cv.cvtColor(np.ascontiguousarray(frame), self._cv.COLOR_RGB2GRAY)

    def flow(self, frame_grey: np.ndarray, previous_grey: np.ndarray) -> np.ndarray:
        """H×W×2 float32 (dx, dy): pixel (x, y) of ``frame_grey`` was at (x + dx, y + dy) in
        ``previous_grey`` (both H×W uint8)."""
        if self.config.method is FlowMethod.DIS:
            return self._dis.calc(frame_grey, previous_grey, None)
        return self._cv.calcOpticalFlowFarneback(
            frame_grey,
            previous_grey,
            None,
            pyr_scale=0.5,
            levels=4,
            winsize=15,
            iterations=3,
            poly_n=5,
            poly_sigma=1.2,
            flags=0,
        )

    def warp(self, mask: np.ndarray, flow: np.ndarray, ids: list[int]) -> np.ndarray:
        """The H×W index mask ``mask`` (object ids ``ids``) carried along ``flow`` (see :meth:`flow`)."""
        cv = self._cv
        h, w = mask.shape
        if self._grid is None or self._grid[0].shape != (h, w):
            ys, xs = np.mgrid[:h, :w].astype(np.float32)
            self._grid = (xs, ys)
        map_x = self._grid[0] + flow[..., 0]
        map_y = self._grid[1] + flow[..., 1]
        best = cv.remap(
            (mask == 0).astype(np.float32),
            map_x,
            map_y,
            cv.INTER_LINEAR,
            borderMode=cv.BORDER_CONSTANT,
            borderValue=1.0,
        )
        out = np.zeros((h, w), dtype=mask.dtype)
        for k in ids:
            score = cv.remap(
                (mask == k).astype(np.float32),
                map_x,
                map_y,
                cv.INTER_LINEAR,
                borderMode=cv.BORDER_CONSTANT,
                borderValue=0.0,
            )
            better = score > best
            out[better] = k
            np.maximum(best, score, out=best)
        return out

    def propagate(self, frames: Iterable[np.ndarray], first_mask: np.ndarray) -> Iterator[np.ndarray]:
        mask = np.asarray(first_mask).copy()
        ids = _object_ids(mask)
        previous = None
        for frame in frames:
            grey = self._grey(frame)
            if previous is not None:
                mask = self.warp(mask, self.flow(grey, previous), ids)
            previous = grey
            yield mask.copy()


class SegmenterPropagator:
    """XMem as a :class:`MaskPropagator`: a :class:`~xmem.VideoSegmenter` prompted on the first frame,
    reset for every video."""

    def __init__(self, model: XMem, config: InferenceConfig | None = None, *, name: str = "xmem") -> None:
        self.segmenter = VideoSegmenter(model, config)
        self.name = name

    def propagate(self, frames: Iterable[np.ndarray], first_mask: np.ndarray) -> Iterator[np.ndarray]:
        self.segmenter.reset()
        for _, mask in self.segmenter.propagate(frames, {0: first_mask}):
            yield mask


@dataclass(frozen=True)
class PropagationScore:
    """What :func:`score_propagation` measured: the DAVIS-protocol result, the method's own seconds (frame
    preparation and scoring excluded), the played frame count and, when kept, the predicted masks."""

    result: VideoResult
    seconds: float
    frames: int
    predictions: list[np.ndarray] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def score_propagation(
    method: MaskPropagator,
    frames: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    order: Sequence[int] | None = None,
    *,
    name: str = "",
    keep_predictions: bool = False,
) -> PropagationScore:
    """Plays ``frames`` in ``order`` (default: as they are; e.g. :func:`xmem.eval.bench.pingpong_order`)
    through ``method``, prompted with the first played frame's ground truth ``masks[order[0]]``, and scores
    every played frame against ``masks`` by the DAVIS protocol."""
    order = list(range(len(frames))) if order is None else list(order)
    scorer = VideoScorer(len(order), ScoringProtocol.davis(), name=name, chunk_pixels=1 << 21)
    predictions = method.propagate((frames[t] for t in order), masks[order[0]])
    kept: list[np.ndarray] | None = [] if keep_predictions else None
    seconds = 0.0
    for i, t in enumerate(order):
        start = time.perf_counter()
        pred = next(predictions)
        seconds += time.perf_counter() - start
        scorer.add(masks[t], pred if scorer.needs_prediction(i) else None)
        if kept is not None:
            kept.append(pred)
    return PropagationScore(scorer.result(), seconds, len(order), kept)
