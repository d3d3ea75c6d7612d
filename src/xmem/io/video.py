"""Video files as frame sources (decoded lazily with PyAV), and :func:`open_frames`, which turns what a
user typed (a video file, a folder of frames or a glob) into a :class:`~xmem.io.frames.FrameSource`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import av
import av.error
import numpy as np

from xmem.io.errors import InputError
from xmem.io.frames import IMAGE_SUFFIXES, FrameFolder, FrameGlob, FrameSource

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class VideoFile:
    """The frames of a video file (mp4, avi, mov, mkv, ...), decoded one at a time with PyAV (FFmpeg).

    Frames are turned upright when the file says how to display them (a rotation in its display matrix,
    as phones write), so masks are drawn and written in the orientation a player shows. Frames are named
    by their index, zero-padded (``00000``, ``00001``, ...). A frame the decoder rejects, or marks as
    corrupt, raises :class:`InputError` naming its index after the frames before it were yielded.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise InputError(f"{self.path}: no such file")
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise InputError(f"{self.path}: no video stream in the file")
                stream = container.streams.video[0]
                self._length = int(stream.frames) if stream.frames else None
                rate = stream.average_rate or stream.guessed_rate
                self._fps = float(rate) if rate else None
                self.codec = stream.codec_context.name
        except InputError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable video ({_first_line(exc)})") from None
        digits = len(str(self._length - 1)) if self._length else 0
        self._width = max(5, digits)
        self._size: tuple[int, int] | None = None
        self._packets: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def length(self) -> int | None:
        """The frame count the container declares (None when it declares none, as mkv/webm often do)."""
        return self._length

    @property
    def fps(self) -> float | None:
        return self._fps

    def name(self, index: int) -> str:
        return f"{index:0{self._width}d}"

    def index_of(self, stem: str) -> int | None:
        return int(stem) if stem.isdigit() else None

    def first_size(self) -> tuple[int, int]:
        if self._size is None:
            decoder = self._decode(0, check_size=False)
            try:
                frame = next(decoder, None)
            finally:
                decoder.close()
            if frame is None:
                raise InputError(f"{self.path}: no decodable frames in the video")
            self._size = (frame.shape[0], frame.shape[1])
        return self._size

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """Frames ``start``, ``start + 1``, ... . A later start seeks to the key frame before it (when the
        file's packets give every frame a timestamp) instead of decoding from the first frame."""
        return self._decode(start, check_size=True)

    def _seek_point(self, start: int) -> tuple[int, int] | None:
        """Where to seek for frame ``start``: (timestamp of the last key frame at or before it, that key
        frame's index), or None to decode from the beginning. The packet index is read once, without
        decoding: frame i is the packet with the i-th smallest timestamp."""
        if start == 0:
            return None
        if self._packets is None:
            self._packets = _packet_index(self.path)
        pts, keys = self._packets
        if start >= len(pts):
            return None
        key = int(np.searchsorted(keys, pts[start], side="right")) - 1
        if key < 0:
            return None
        index = int(np.searchsorted(pts, keys[key]))
        return (int(keys[key]), index) if index > 0 else None

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def fingerprint(self) -> str:
        return f"{self.path.name}, {self.path.stat().st_size} bytes, {self._length} frames declared"

    def _decode(self, start: int, *, check_size: bool) -> Iterator[np.ndarray]:
        size = self.first_size() if check_size else None
        seek = self._seek_point(start)
        index = 0
        restart = False
        try:
            container = av.open(str(self.path))
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            raise InputError(f"{self.path}: not a readable video ({_first_line(exc)})") from None
        try:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"  # no frame threading: an error must surface at its own frame
            if seek is not None:
                container.seek(seek[0], stream=stream, backward=True, any_frame=False)
                index = seek[1]
            for frame in container.decode(stream):
                if seek is not None:
                    # the first frame after a seek must be the key frame asked for; otherwise start over
                    if frame.pts != seek[0]:
                        restart = True
                        break
                    seek = None
                if index >= start:
                    if frame.is_corrupt:
                        raise InputError(f"{self.path}: frame {index} is corrupt")
                    rgb = frame.to_ndarray(format="rgb24")
                    rotation = int(getattr(frame, "rotation", 0) or 0)
                    if rotation % 360:
                        # the display matrix rotates counterclockwise; np.rot90 turns the same way
                        rgb = np.ascontiguousarray(np.rot90(rgb, k=round(rotation / 90) % 4))
                    if size is not None and rgb.shape[:2] != size:
                        raise InputError(
                            f"{self.path}: frame {index} is {rgb.shape[1]}x{rgb.shape[0]}, the first frame "
                            f"{size[1]}x{size[0]}"
                        )
                    yield rgb
                index += 1
            if not restart and self._length is not None and index < self._length:
                # a decoder may drop a damaged frame without an error; the frames after it then come early
                log.warning(
                    "%s: the file declares %d frames but %d could be decoded (a damaged frame may have been "
                    "dropped, or the file is cut short)",
                    self.path,
                    self._length,
                    index,
                )
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(
                f"{self.path}: frame {index} is corrupt or cannot be decoded ({_first_line(exc)})"
            ) from None
        finally:
            container.close()
        if restart:  # an open GOP or a stream that does not seek exactly: decode from the start from now on
            self._packets = (np.zeros(0, np.int64), np.zeros(0, np.int64))
            yield from self._decode(start, check_size=check_size)


def _packet_index(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The sorted timestamps of the video stream's packets and those of its key frames; empty arrays when
    a packet has no timestamp or two share one (then frames are found by decoding from the start)."""
    pts: list[int] = []
    keys: list[int] = []
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0:  # the flushing packet at the end
                    continue
                if packet.pts is None:
                    return empty
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keys.append(packet.pts)
    except (av.error.FFmpegError, OSError, ValueError):
        return empty
    sorted_pts = np.sort(np.asarray(pts, np.int64))
    if len(sorted_pts) and (np.diff(sorted_pts) == 0).any():
        return empty
    return sorted_pts, np.sort(np.asarray(keys, np.int64))


def open_frames(spec: str | Path) -> FrameSource:
    """The frame source a user means by ``spec``: a folder of frames, a video file, or a glob pattern of
    image files (``"clip/*.jpg"``)."""
    path = Path(spec)
    if path.is_dir():
        return FrameFolder(path)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise InputError(
                f"{path}: a single image, not a video; give the folder of frames or a pattern like "
                f"'{path.parent / ('*' + path.suffix)}'"
            )
        return VideoFile(path)
    if any(c in str(spec) for c in "*?["):
        return FrameGlob(str(spec))
    raise InputError(f"{spec}: no such file or folder")
