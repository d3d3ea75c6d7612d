"""Frame sources made of image files: a folder of frames or a glob pattern (natural sort), read lazily.

Every frame source (these and :class:`xmem.io.video.VideoFile`) offers the :class:`FrameSource`
interface: ``frames(start)`` yields H×W×3 uint8 RGB frames one at a time, ``name(index)`` is the name
of the frame's outputs, ``first_size()`` its size, ``length`` the number of frames when known.
:class:`FrameCache` gives any of them random access with a bounded number of decoded frames.
"""

from __future__ import annotations

import glob
import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image, UnidentifiedImageError

from xmem.io.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: frame file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None


@runtime_checkable
class FrameSource(Protocol):
    """A video as a sequence of RGB frames, decoded one at a time (memory does not grow with length)."""

    @property
    def location(self) -> str:
        """The path or pattern the frames come from (for messages)."""
        ...

    @property
    def length(self) -> int | None:
        """Number of frames, or None when not known before decoding (some video containers)."""
        ...

    @property
    def fps(self) -> float | None:
        """Frame rate when the source has one (video files)."""
        ...

    def name(self, index: int) -> str:
        """Name of frame ``index`` (without suffix): the outputs of that frame are named after it."""
        ...

    def index_of(self, stem: str) -> int | None:
        """The index of the frame a mask file named ``stem`` belongs to, or None."""
        ...

    def first_size(self) -> tuple[int, int]:
        """(H, W) of the first frame."""
        ...

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        """H×W×3 uint8 RGB frames from index ``start`` on. Raises :class:`InputError` at a frame that
        cannot be read or whose size differs from the first frame's (the frames before it were yielded)."""
        ...

    def fingerprint(self) -> str:
        """A short string that changes when the frames change (names, sizes of the files)."""
        ...


class ImageSequence:
    """Image files in a given order, decoded one at a time. All frames must share one size, and no two may
    share a name (their outputs would collide)."""

    def __init__(self, paths: Sequence[Path], location: str) -> None:
        self.paths = list(paths)
        self._location = location
        seen: dict[str, Path] = {}
        for p in self.paths:
            if p.stem in seen:
                raise InputError(f"{p}: two frames named {p.stem!r} ({seen[p.stem].name} and {p.name})")
            seen[p.stem] = p
        self._index = {p.stem: i for i, p in enumerate(self.paths)}
        numbers = [int(p.stem) for p in self.paths if p.stem.isdigit()]
        self._numbered = (
            {int(p.stem): i for i, p in enumerate(self.paths)}
            if len(numbers) == len(self.paths) and len(set(numbers)) == len(numbers)
            else {}
        )

    @property
    def location(self) -> str:
        return self._location

    @property
    def length(self) -> int:
        return len(self.paths)

    @property
    def fps(self) -> float | None:
        return None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.paths]

    def name(self, index: int) -> str:
        return self.paths[index].stem

    def index_of(self, stem: str) -> int | None:
        """Exact name match, or for numbered frames the same number (``0.png`` for ``00000.jpg``)."""
        if stem in self._index:
            return self._index[stem]
        if stem.isdigit():
            return self._numbered.get(int(stem))
        return None

    def first_size(self) -> tuple[int, int]:
        path = self.paths[0]
        try:
            with Image.open(path) as img:
                return img.height, img.width
        except FileNotFoundError:
            raise InputError(f"{path}: frame file not found") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path}: not a readable image ({exc})") from None

    def frames(self, start: int = 0) -> Iterator[np.ndarray]:
        size = self.first_size()
        for path in self.paths[start:]:
            frame = read_rgb(path)
            if frame.shape[:2] != size:
                raise InputError(
                    f"{path}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                    f"{size[1]}x{size[0]}"
                )
            yield frame

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in self.paths:
            try:
                size = p.stat().st_size
            except OSError:
                size = -1
            h.update(f"{p.name}:{size}\n".encode())
        return f"{len(self.paths)} frames, {h.hexdigest()[:16]}"


def _images(paths) -> list[Path]:
    return sorted(
        (
            Path(p)
            for p in paths
            if Path(p).suffix.lower() in IMAGE_SUFFIXES
            and not Path(p).name.startswith(".")
            and Path(p).is_file()
        ),
        key=lambda p: natural_key(str(p)),
    )


class FrameFolder(ImageSequence):
    """The images of a folder (jpg, png, bmp, webp), in natural order: ``2.jpg`` before ``10.jpg``."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.exists():
            raise InputError(f"{self.folder}: no such folder")
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: not a folder of frames")
        paths = _images(self.folder.iterdir())
        if not paths:
            raise InputError(f"{self.folder}: no frames (jpg/png) in the folder")
        super().__init__(paths, str(self.folder))


class FrameGlob(ImageSequence):
    """The images matching a glob pattern (``"clip/*.jpg"``, ``"shots/**/*.png"``), in natural order of
    their paths."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        paths = _images(glob.glob(pattern, recursive=True))
        if not paths:
            raise InputError(f"{pattern}: no frames (jpg/png) match the pattern")
        super().__init__(paths, pattern)


class FrameCache:
    """Random access to a frame source, holding at most ``capacity`` decoded frames.

    A jump starts a reader at the frame asked for (a video file seeks to the key frame before it) and a
    step forward goes on with the same reader, so that walking forward decodes each frame once and a jump
    decodes no frame after the one asked for. Walking backward reads a window of ``capacity // 2`` frames
    that ends at the frame asked for. Not thread-safe: one caller at a time.
    """

    def __init__(self, source: FrameSource, capacity: int = 64) -> None:
        if capacity < 2:
            raise ValueError(f"the frame cache needs a capacity of at least 2, got {capacity}")
        self.source = source
        self.capacity = capacity
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._reader: Iterator[np.ndarray] | None = None
        self._next = -1  # the index the reader gives next
        length = source.length
        self.length = length if length is not None else sum(1 for _ in source.frames())
        if self.length == 0:
            raise ValueError(f"{source.location}: no frames")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> np.ndarray:
        if not 0 <= index < self.length:
            raise IndexError(f"frame {index} is outside the video's {self.length} frames")
        if index not in self._frames:
            if index + 1 in self._frames:  # walking backward: a window that ends at the frame asked for
                first = max(0, index - self.capacity // 2 + 1)
                for i, frame in enumerate(read_range(self.source, first, index + 1), start=first):
                    self._frames[i] = frame
                    self._frames.move_to_end(i)
            else:  # a jump, or a step forward: the open reader goes on
                if self._reader is None or self._next != index:
                    if self._reader is not None:
                        _close(self._reader)
                    self._reader, self._next = self.source.frames(index), index
                frame = next(self._reader, None)
                if frame is None:
                    raise IndexError(f"{self.source.location}: frame {index} could not be read")
                self._frames[index] = frame
                self._next = index + 1
        self._frames.move_to_end(index)
        frame = self._frames[index]
        while len(self._frames) > self.capacity:
            self._frames.popitem(last=False)
        return frame


def read_range(source: FrameSource, first: int, stop: int) -> list[np.ndarray]:
    """Frames ``first`` .. ``stop - 1`` of ``source``, in one pass of its reader (closed afterwards)."""
    frames = source.frames(first)
    try:
        return [frame for _, frame in zip(range(first, stop), frames, strict=False)]
    finally:
        _close(frames)


def _close(frames: Iterator[np.ndarray]) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()


def frames_in_order(source: FrameSource, indices: range, chunk: int = 32) -> Iterator[np.ndarray]:
    """The frames ``indices`` (a range with step 1 or -1) of ``source``, one at a time: forward by one pass
    of the decoder, backward by windows of ``chunk`` frames read forward and given in reverse."""
    if len(indices) == 0:
        return
    if indices.step == 1:
        frames = source.frames(indices.start)
        try:
            for _, frame in zip(indices, frames, strict=False):
                yield frame
        finally:
            _close(frames)
        return
    if indices.step != -1:
        raise ValueError(f"frames_in_order takes ranges with step 1 or -1, got {indices.step}")
    end = indices.start  # the first frame given, the highest index
    low = indices[-1]
    while end >= low:
        first = max(low, end - chunk + 1)
        yield from reversed(read_range(source, first, end + 1))
        end = first - 1
