"""The videos ``xmem bench`` plays, and the order it plays them in.

A :class:`VideoSource` is ``len(video)`` frames read by index, the index mask given on frame 0 and, when
known, the ground truth of every frame. :class:`GeneratedVideo` is a synthetic composite video rendered on
demand (10,000 frames cost no more memory than 10); :class:`StreamedVideo` is any forward-only frame
source with a first-frame mask and optional ground truth (:func:`open_video` makes one from a path).
:func:`pingpong_index` and :func:`pingpong_order` play a video alternately forward and backward (the
paper's n× long-video construction).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from xmem.data.synthetic import CompositeConfig, CompositeVideo
from xmem.io.errors import InputError
from xmem.io.frames import natural_key
from xmem.io.masks import read_index_mask
from xmem.io.video import open_frames as open_video_frames

# --- videos --------------------------------------------------------------------------------------


@runtime_checkable
class VideoSource(Protocol):
    """What a bench plays: ``len(video)`` frames read by index (in order, except that a back-and-forth
    run reads them backwards on every other pass), the index mask given on frame 0, and the ground truth
    of every frame when it is known."""

    @property
    def name(self) -> str: ...

    @property
    def has_ground_truth(self) -> bool: ...

    def __len__(self) -> int: ...

    def frame(self, t: int) -> np.ndarray:
        """Frame ``t``: H×W×3 uint8 RGB."""
        ...

    def ground_truth(self, t: int) -> np.ndarray | None:
        """The H×W index mask of frame ``t`` (0 = background, 255 = void), or None when unknown."""
        ...

    def prompt(self) -> np.ndarray:
        """The H×W index mask given to the segmenter on frame 0."""
        ...


class GeneratedVideo:
    """A synthetic composite video (:class:`~xmem.data.CompositeVideo`), rendered on demand, with its
    ground truth. Needs the photographs of the ``train`` extra (scikit-image, scikit-learn)."""

    def __init__(self, config: CompositeConfig, seed: int = 0) -> None:
        self.composite = CompositeVideo(config, seed)
        self.config = config
        self.seed = seed

    @property
    def name(self) -> str:
        c = self.config
        return f"composite-{c.split.value}-seed{self.seed}-{c.height}x{c.width}"

    @property
    def has_ground_truth(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.composite)

    def frame(self, t: int) -> np.ndarray:
        return self.composite.frame(t)

    def ground_truth(self, t: int) -> np.ndarray:
        return self.composite.mask(t)

    def prompt(self) -> np.ndarray:
        return self.composite.mask(0)


class StreamedVideo:
    """A video from a forward-only frame source (an iterable of H×W×3 uint8 frames that can be iterated
    again, e.g. :class:`~xmem.io.frames.FrameFolder`), read one frame at a time.

    Frames are decoded in order as they are asked for (asking for an earlier frame starts decoding
    again from the first). With ``replay=True`` (for back-and-forth runs)
    each decoded frame is also kept on disk, uncompressed, in a temporary folder (H×W×3 bytes per frame),
    so that the later passes read it back from there; :meth:`close` removes the folder. ``ground_truth``
    is a sequence of mask files, one per frame, or None.
    """

    def __init__(
        self,
        source: Iterable[np.ndarray],
        prompt: np.ndarray,
        *,
        name: str,
        length: int | None = None,
        ground_truth: Sequence[Path] | None = None,
        replay: bool = False,
    ) -> None:
        self.source = source
        self._name = name
        self._prompt = prompt
        if length is None:
            length = _frame_count(source)
        if length < 1:
            raise InputError(f"{name}: the video has no frames")
        self._length = length
        self._gt = list(ground_truth) if ground_truth is not None else None
        if self._gt is not None and len(self._gt) != length:
            raise InputError(f"{name}: {len(self._gt)} ground-truth masks for {length} frames")
        self._iterator: Iterator[np.ndarray] | None = None
        self._next = 0  # index of the frame the iterator yields next
        self._last: np.ndarray | None = None  # frame _next - 1
        self._spill = tempfile.TemporaryDirectory(prefix="xmem-bench-") if replay else None
        self._spilled = 0  # frames 0.._spilled-1 are on disk

    @property
    def name(self) -> str:
        return self._name

    @property
    def has_ground_truth(self) -> bool:
        return self._gt is not None

    def __len__(self) -> int:
        return self._length

    def _spill_path(self, t: int) -> Path:
        assert self._spill is not None
        return Path(self._spill.name) / f"{t:07d}.npy"

    def frame(self, t: int) -> np.ndarray:
        if not 0 <= t < self._length:
            raise IndexError(f"frame {t} of a {self._length}-frame video")
        if t < self._spilled:
            return np.load(self._spill_path(t))
        if self._last is not None and t == self._next - 1:
            return self._last
        if self._iterator is None or t < self._next:  # (re)start decoding at the first frame
            self._iterator, self._next = iter(self.source), 0
        while self._next <= t:
            try:
                self._last = next(self._iterator)
            except StopIteration:
                raise InputError(
                    f"{self._name}: the video ended after {self._next} of {self._length} frames"
                ) from None
            if self._spill is not None:
                np.save(self._spill_path(self._next), self._last)
                self._spilled = self._next + 1
            self._next += 1
        assert self._last is not None
        return self._last

    def ground_truth(self, t: int) -> np.ndarray | None:
        return None if self._gt is None else read_index_mask(self._gt[t])

    def prompt(self) -> np.ndarray:
        return self._prompt

    def close(self) -> None:
        if self._spill is not None:
            self._spill.cleanup()


def _frame_count(source: Iterable[np.ndarray]) -> int:
    """The number of frames of ``source``: its ``length`` when it declares one (video files), its
    ``len``, or else counted by decoding it once."""
    declared = getattr(source, "length", None)
    if declared is not None:
        return int(declared)
    if hasattr(source, "__len__"):
        return len(source)  # type: ignore[arg-type]
    return sum(1 for _ in source)


def _mask_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder of ground-truth masks")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError(f"{folder}: no PNG masks in the folder")
    return files


def open_frames(path: Path) -> Iterable[np.ndarray]:
    """The frames a user means by ``path``: a folder of frames, a video file or a glob (as for
    ``xmem segment``). This is the one place that turns a ``--video`` path into frames."""
    return open_video_frames(path)


def open_video(
    path: Path, *, mask: Path | None = None, ground_truth: Path | None = None, replay: bool = False
) -> StreamedVideo:
    """A :class:`StreamedVideo` of the frames at ``path`` (see :func:`open_frames`), prompted with the
    index mask ``mask`` (by default the first mask of ``ground_truth``), scored against the masks of the
    folder ``ground_truth`` (PNG, natural order, one per frame) when given."""
    frames = open_frames(path)
    gt = _mask_files(ground_truth) if ground_truth is not None else None
    if mask is None and gt is None:
        raise InputError("--video needs --mask (the first frame's index mask) or --gt (a folder of masks)")
    prompt_path = mask if mask is not None else gt[0]  # type: ignore[index]
    prompt = read_index_mask(prompt_path)
    if not prompt.any():
        raise InputError(f"{prompt_path}: the mask holds no object (all pixels are 0)")
    first = next(iter(frames))
    if prompt.shape != first.shape[:2]:
        raise InputError(
            f"{prompt_path}: mask size {prompt.shape[1]}x{prompt.shape[0]} differs from the frames' "
            f"{first.shape[1]}x{first.shape[0]}"
        )
    return StreamedVideo(frames, prompt, name=Path(path).name, ground_truth=gt, replay=replay)


# --- back and forth ------------------------------------------------------------------------------


def pingpong_index(i: int, length: int) -> int:
    """The source frame played at position ``i`` when a ``length``-frame video is played alternately
    forward and backward: passes 0, 2, 4, ... run 0 → length−1, passes 1, 3, ... run length−1 → 0
    (each pass plays every frame, so K passes are K × length frames: the paper's "K×" videos)."""
    if length < 1 or i < 0:
        raise ValueError(f"invalid position {i} in a {length}-frame video")
    p, r = divmod(i, length)
    return r if p % 2 == 0 else length - 1 - r


def pingpong_order(length: int, passes: int) -> list[int]:
    """The source frames of a ``passes``-pass back-and-forth run, in play order."""
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    return [pingpong_index(i, length) for i in range(length * passes)]
