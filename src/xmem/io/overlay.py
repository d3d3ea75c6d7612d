"""Overlay videos: frames with each object's mask blended in its palette colour and outlined, encoded with
PyAV (H.264 where the FFmpeg build has it, MPEG-4 part 2 otherwise), written atomically."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from xmem.io.errors import InputError
from xmem.io.masks import DAVIS_PALETTE

log = logging.getLogger(__name__)

# container format for each file suffix the overlay may have
OVERLAY_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}


def check_overlay_path(path: Path) -> None:
    """Raise :class:`InputError` for an overlay path of an unknown video format or naming a folder."""
    if path.suffix.lower() not in OVERLAY_FORMATS:
        raise InputError(f"{path}: unsupported overlay format (use {', '.join(OVERLAY_FORMATS)})")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the overlay video's file name")


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """H×W bool: pixels of an object that touch a pixel of another id (or the background), thickened to
    ``width`` pixels into the object."""
    edge = np.zeros(mask.shape, dtype=bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:-1] |= mask[:-1] != mask[1:]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge[:, :-1] |= mask[:, :-1] != mask[:, 1:]
    for _ in range(width - 1):
        grown = edge.copy()
        grown[1:] |= edge[:-1]
        grown[:-1] |= edge[1:]
        grown[:, 1:] |= edge[:, :-1]
        grown[:, :-1] |= edge[:, 1:]
        edge = grown
    return edge & (mask > 0)


def overlay_frame(
    frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5, palette: np.ndarray | None = None
) -> np.ndarray:
    """H×W×3 uint8: ``frame`` with each object of the H×W index ``mask`` blended in its colour (weight
    ``alpha``) and outlined in that colour. Colours come from ``palette`` (256×3 uint8, by id), by default
    the DAVIS palette."""
    colours = (DAVIS_PALETTE if palette is None else palette)[mask]  # H×W×3
    inside = (mask > 0)[..., None]
    blended = np.where(inside, frame * (1 - alpha) + colours * alpha, frame)
    width = max(1, round(min(mask.shape) / 240))
    edge = outline(mask, width)[..., None]
    return np.where(edge, colours, np.rint(blended)).astype(np.uint8)


class OverlayWriter:
    """Writes overlay frames to a video file. The file is written under a temporary name next to ``path``
    and renamed into place by :meth:`close`, so ``path`` never holds a half-written video.

    >>> with OverlayWriter(Path("overlay.mp4"), fps=24) as writer:
    ...     writer.write(frame, mask)
    """

    def __init__(self, path: Path, fps: float) -> None:
        check_overlay_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(
                f"{path.parent}: cannot create the folder for the overlay ({exc.strerror})"
            ) from None
        self.path = path
        self.frames = 0
        self._format = OVERLAY_FORMATS[path.suffix.lower()]
        codec = "mpeg4" if self._format == "avi" or "libx264" not in av.codecs_available else "libx264"
        fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            self._container = av.open(self._tmp, mode="w", format=self._format)
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(24)
            self._stream = self._container.add_stream(codec, rate=rate)
            self._stream.pix_fmt = "yuv420p"
            if codec == "libx264":
                self._stream.options = {"crf": "18"}
            else:
                self._stream.bit_rate = 8_000_000
        except BaseException:
            self._discard()
            raise
        self._size: tuple[int, int] | None = None

    def write(self, frame: np.ndarray, mask: np.ndarray, palette: np.ndarray | None = None) -> None:
        """Add ``frame`` (H×W×3 uint8) with ``mask`` (H×W object ids) drawn on it (colours: ``palette``,
        as for :func:`overlay_frame`)."""
        image = overlay_frame(frame, mask, palette=palette)
        h, w = image.shape[:2]
        if self._size is None:
            self._size = (h, w)
            # 4:2:0 chroma needs even sides: the last row / column is repeated where they are odd
            self._stream.height, self._stream.width = h + h % 2, w + w % 2
        if h % 2 or w % 2:
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        video_frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        video_frame.pts = self.frames
        for packet in self._stream.encode(video_frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and move the video into place (an overlay without frames is not kept)."""
        if self._container is None:
            return
        if not self.frames:
            self._discard()
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
            os.replace(self._tmp, self.path)
            log.debug("wrote %s (%d frames)", self.path, self.frames)
        except BaseException:
            self._discard()
            raise

    def _discard(self) -> None:
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, *exc) -> None:
        # on an error or an interruption too: the frames written so far make a valid, shorter video
        self.close()
