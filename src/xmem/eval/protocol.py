"""Which frames and objects of a video are scored (the evaluation protocol), and the scoring of one video
from its ground-truth and predicted label masks.

Three protocols, differing only in which objects count and from which frame:

- **DAVIS** (semi-supervised, ``Protocol.davis()``): the objects are those of the first annotated frame;
  each is scored on every annotated frame from the second to the second-to-last, whether or not it is
  visible there (absent in both masks: J = F = 1). Objects that first appear later are not scored (a
  warning names them). Void (255) pixels are left out. This is the davis2017-evaluation protocol, except
  that (a) its code turns void into background before looking for it (so it never leaves anything out),
  (b) it counts objects as ``1..max id`` of the first frame where this counts the ids present, and (c) it
  stores the decay bin edges as uint8, which wraps above 256 frames. On DAVIS data the numbers agree.
- **YouTube-VOS** (``Protocol.youtube_vos()``): every object of the ground truth counts, each scored from
  the annotated frame after the one where it first appears (its prompt frame) to the second-to-last.
- **vos-benchmark** (``Protocol.vos_benchmark()``): the rule of the ``vos-benchmark`` package (MIT, by
  XMem's author), to reproduce its numbers: the first and last annotated frames are not read at all; an
  object is scored from the first remaining frame on which it appears in the ground truth *or the
  prediction*, including that frame, and reported if it appears in the ground truth on some scored frame;
  255 is an ordinary object id (no void). On videos whose objects are all visible on the second annotated
  frame and that hold no 255 it gives the DAVIS numbers.

The last annotated frame is left out in all three (``score_last_frame=True`` keeps it). Only annotated
frames are scored (sparse annotations, as in YouTube-VOS, are fine). Per object: mean, recall and decay of
J and of F over its scored frames; a video's or a dataset's J, F and J&F are means over its objects (not
over videos): J&F = (mean of the per-object J means + mean of the per-object F means) / 2.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from xmem.eval.metrics import BOUNDARY_THRESHOLD, Statistics, region_and_boundary, statistics

log = logging.getLogger(__name__)


class ObjectRule(enum.Enum):
    """Which objects are scored, and from which annotated frame."""

    FIRST_FRAME = "first-frame"
    """DAVIS: the objects of the first annotated frame, each from the second frame on."""
    AFTER_FIRST_APPEARANCE = "after-first-appearance"
    """YouTube-VOS: every object, each from the frame after the one where it first appears in the GT."""
    VOS_BENCHMARK = "vos-benchmark"
    """vos-benchmark: the first frame is not read; each object from the first later frame where it appears
    in the GT or the prediction; reported if it appears in the GT on a scored frame."""


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol. Use ``Protocol.davis()``, ``Protocol.youtube_vos()`` or
    ``Protocol.vos_benchmark()``, or set the fields:

    - ``objects``: which objects count, from which frame (``ObjectRule``);
    - ``void_label``: the ground-truth label left out of both masks, or None for no void;
    - ``bound_th``: boundary tolerance as a fraction of the image diagonal (or pixels when ≥ 1);
    - ``score_last_frame``: score the last annotated frame too (DAVIS and vos-benchmark do not).
    """

    objects: ObjectRule = ObjectRule.FIRST_FRAME
    void_label: int | None = 255
    bound_th: float = BOUNDARY_THRESHOLD
    score_last_frame: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.objects, ObjectRule):
            raise ValueError(f"objects must be an ObjectRule, got {self.objects!r}")
        if self.void_label is not None and not 0 < self.void_label <= 255:
            raise ValueError(f"void_label must be in 1..255 or None, got {self.void_label}")
        if not self.bound_th > 0:
            raise ValueError(f"bound_th must be positive, got {self.bound_th}")

    @classmethod
    def davis(cls) -> Protocol:
        """The DAVIS semi-supervised protocol."""
        return cls(objects=ObjectRule.FIRST_FRAME)

    @classmethod
    def youtube_vos(cls) -> Protocol:
        """Objects appearing on later frames, each scored from the frame after its first appearance."""
        return cls(objects=ObjectRule.AFTER_FIRST_APPEARANCE)

    @classmethod
    def vos_benchmark(cls) -> Protocol:
        """The rule of the vos-benchmark package (255 is an object id there, not void)."""
        return cls(objects=ObjectRule.VOS_BENCHMARK, void_label=None)


@dataclass(frozen=True, eq=False)
class ObjectResult:
    """The scores of one object of one video: per scored frame (``j_frames``, ``f_frames``, fractions) and
    their statistics. ``first_frame`` is the name (or index) of its first scored frame."""

    video: str
    object_id: int
    first_frame: str
    j_frames: np.ndarray  # (frames scored,)
    f_frames: np.ndarray  # (frames scored,)
    j: Statistics = field(init=False)
    f: Statistics = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "j", statistics(self.j_frames))
        object.__setattr__(self, "f", statistics(self.f_frames))

    @property
    def jf(self) -> float:
        """(J mean + F mean) / 2."""
        return (self.j.mean + self.f.mean) / 2

    @property
    def num_frames(self) -> int:
        return int(self.j_frames.size)


@dataclass(frozen=True)
class Summary:
    """Means over objects of their statistics (the DAVIS global figures), as fractions; NaN for no
    objects."""

    objects: int
    j: Statistics
    f: Statistics

    @property
    def jf(self) -> float:
        return (self.j.mean + self.f.mean) / 2

    @classmethod
    def of(cls, objects: Sequence[ObjectResult]) -> Summary:
        if not objects:
            nan = Statistics(float("nan"), float("nan"), float("nan"))
            return cls(objects=0, j=nan, f=nan)

        def mean_stats(stats: list[Statistics]) -> Statistics:
            return Statistics(
                mean=float(np.mean([s.mean for s in stats])),
                recall=float(np.mean([s.recall for s in stats])),
                decay=float(np.mean([s.decay for s in stats])),
            )

        return cls(
            objects=len(objects),
            j=mean_stats([o.j for o in objects]),
            f=mean_stats([o.f for o in objects]),
        )


@dataclass(frozen=True)
class VideoResult:
    """The scored objects of one video (ordered by id) and the number of annotated frames."""

    name: str
    objects: tuple[ObjectResult, ...]
    annotated_frames: int

    @property
    def summary(self) -> Summary:
        return Summary.of(self.objects)


class VideoScorer:
    """Scores one video fed frame by frame, in order: every annotated frame's ground truth, with the
    prediction where ``needs_prediction(index)`` (the scored frames).

    ``num_frames`` is the number of annotated frames; ``frame_names`` (optional) name them in the results.
    Frames are buffered and scored in chunks of about ``chunk_pixels`` pixels, vectorised over frames.
    """

    def __init__(
        self,
        num_frames: int,
        protocol: Protocol | None = None,
        *,
        name: str = "",
        frame_names: Sequence[str] | None = None,
        chunk_pixels: int = 1 << 23,
    ) -> None:
        if num_frames < 1:
            raise ValueError("a video needs at least one annotated frame")
        if frame_names is not None and len(frame_names) != num_frames:
            raise ValueError(f"{len(frame_names)} frame names for {num_frames} frames")
        self.protocol = protocol or Protocol.davis()
        self.name = name
        self.num_frames = num_frames
        self.frame_names = list(frame_names) if frame_names is not None else None
        self.chunk_pixels = chunk_pixels
        self.first_scored = 1
        self.last_scored = num_frames - 1 if self.protocol.score_last_frame else num_frames - 2
        self._index = 0
        self._shape: tuple[int, int] | None = None
        self._start: dict[int, int] = {}  # object id -> first frame index it is scored on
        self._in_gt: set[int] = set()  # vos-benchmark: ids seen in the GT on a scored frame
        self._late: set[int] = set()  # DAVIS: ids that appear after the first frame (not scored)
        self._buffer: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._buffered_pixels = 0
        self._j: dict[int, list[np.ndarray]] = {}
        self._f: dict[int, list[np.ndarray]] = {}

    def needs_prediction(self, index: int) -> bool:
        """Whether annotated frame ``index`` is scored (and so needs its prediction)."""
        return self.first_scored <= index <= self.last_scored

    def _ids(self, labels: np.ndarray) -> set[int]:
        if labels.dtype == np.uint8:
            ids = np.flatnonzero(np.bincount(labels.reshape(-1), minlength=256))
        else:
            ids = np.unique(labels)
        return {int(i) for i in ids if i != 0 and i != self.protocol.void_label}

    def add(self, gt: np.ndarray, pred: np.ndarray | None = None) -> None:
        """Feed the next annotated frame: ``gt`` and ``pred`` are H×W integer label masks (0 =
        background); ``pred`` may be None on frames that are not scored."""
        index = self._index
        if index >= self.num_frames:
            raise ValueError(f"{self.name}: more than the announced {self.num_frames} frames")
        gt = np.asarray(gt)
        if gt.ndim != 2:
            raise ValueError(f"{self.name}: a label mask must be H×W, got shape {gt.shape}")
        if self._shape is None:
            self._shape = gt.shape
        elif gt.shape != self._shape:
            raise ValueError(f"{self.name}: frame {index} is {gt.shape}, the first frame {self._shape}")
        scored = self.needs_prediction(index)
        if scored:
            if pred is None:
                raise ValueError(f"{self.name}: frame {index} is scored and needs a prediction")
            pred = np.asarray(pred)
            if pred.shape != gt.shape:
                raise ValueError(f"{self.name}: prediction {pred.shape} and ground truth {gt.shape} differ")
        self._register(index, gt, pred if scored else None)
        self._index += 1
        if scored:
            self._buffer.append((index, gt, pred))
            self._buffered_pixels += gt.size
            if self._buffered_pixels >= self.chunk_pixels:
                self._flush()

    def _register(self, index: int, gt: np.ndarray, pred: np.ndarray | None) -> None:
        rule = self.protocol.objects
        if rule is ObjectRule.FIRST_FRAME:
            ids = self._ids(gt)
            if index == 0:
                for k in ids:
                    self._start[k] = 1
            else:
                self._late |= ids - self._start.keys()
        elif rule is ObjectRule.AFTER_FIRST_APPEARANCE:
            for k in self._ids(gt) - self._start.keys():
                self._start[k] = index + 1
        elif pred is not None:  # VOS_BENCHMARK, on a scored frame
            gt_ids = self._ids(gt)
            self._in_gt |= gt_ids
            for k in (gt_ids | self._ids(pred)) - self._start.keys():
                self._start[k] = index

    def _flush(self) -> None:
        if not self._buffer:
            return
        indices = np.array([i for i, _, _ in self._buffer])
        gt = np.stack([g for _, g, _ in self._buffer])  # T×H×W labels
        pred = np.stack([p for _, _, p in self._buffer])  # T×H×W labels
        void = None if self.protocol.void_label is None else gt == self.protocol.void_label
        if void is not None and not void.any():
            void = None
        for k, start in self._start.items():
            first = int(np.searchsorted(indices, start))  # chunk position of the first frame scored for k
            if first >= len(indices):
                continue
            j, f = region_and_boundary(
                gt[first:] == k,
                pred[first:] == k,
                void=None if void is None else void[first:],
                bound_th=self.protocol.bound_th,
            )
            self._j.setdefault(k, []).append(j)
            self._f.setdefault(k, []).append(f)
        self._buffer.clear()
        self._buffered_pixels = 0

    def result(self) -> VideoResult:
        """The scores, once every annotated frame has been added."""
        if self._index != self.num_frames:
            raise ValueError(f"{self.name}: {self._index} of {self.num_frames} frames were added")
        self._flush()
        if self._late:
            log.warning(
                "%s: object(s) %s first appear after the first annotated frame; the DAVIS protocol does "
                "not score them (the YouTube-VOS protocol does)",
                self.name,
                ", ".join(map(str, sorted(self._late))),
            )
        objects = []
        for k in sorted(self._j):
            if self.protocol.objects is ObjectRule.VOS_BENCHMARK and k not in self._in_gt:
                continue  # only in the prediction
            start = self._start[k]
            objects.append(
                ObjectResult(
                    video=self.name,
                    object_id=k,
                    first_frame=self.frame_names[start] if self.frame_names else str(start),
                    j_frames=np.concatenate(self._j[k]),
                    f_frames=np.concatenate(self._f[k]),
                )
            )
        return VideoResult(name=self.name, objects=tuple(objects), annotated_frames=self.num_frames)


def score_video(
    gt: Sequence[np.ndarray] | np.ndarray,
    pred: Sequence[np.ndarray | None] | np.ndarray,
    protocol: Protocol | None = None,
    *,
    name: str = "",
    frame_names: Sequence[str] | None = None,
) -> VideoResult:
    """Score a video held in memory: ``gt`` and ``pred`` are the annotated frames' label masks in order
    (``T×H×W`` arrays or sequences of ``H×W`` arrays; ``pred`` entries of unscored frames may be None)."""
    if len(gt) != len(pred):
        raise ValueError(f"{len(gt)} ground-truth frames but {len(pred)} predictions")
    scorer = VideoScorer(len(gt), protocol, name=name, frame_names=frame_names)
    for i, (g, p) in enumerate(zip(gt, pred, strict=True)):
        scorer.add(g, p if scorer.needs_prediction(i) else None)
    return scorer.result()


def summarize(videos: Iterable[VideoResult]) -> Summary:
    """The summary over all objects of ``videos``."""
    return Summary.of([o for v in videos for o in v.objects])
