"""Real images the synthetic data is made of, with a fixed TRAIN / HELD-OUT split.

Photographs: the real photographs bundled in the scikit-image and scikit-learn wheels (read straight from
the installed package folders: nothing is downloaded). Background videos: any folder of video files, e.g.
the clips of Debian's ``opencv-doc`` package, decoded with PyAV when it is installed. Licences and the
split are listed in docs/DATA.md. The held-out photographs and videos never appear in training data.
"""

from __future__ import annotations

import enum
import functools
import importlib.util
import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xmem.io.errors import InputError

log = logging.getLogger(__name__)

TRAIN_EXTRA = "pip install 'xmem-vos[train]'"


class Split(enum.Enum):
    """Which side of the data split: TRAIN for training, HELD_OUT for evaluation only."""

    TRAIN = "train"
    HELD_OUT = "held-out"

    @property
    def code(self) -> int:
        """An integer mixed into every random key of this split (so seeds never coincide across it)."""
        return 1 if self is Split.TRAIN else 2


class MissingExtraError(ImportError):
    """A package of the optional ``train`` extra is not installed."""


@dataclass(frozen=True)
class Photograph:
    """One bundled photograph: ``path`` inside the folder of the installed ``package``."""

    name: str
    package: str
    path: str
    licence: str
    split: Split


_SK = "skimage"
_SKL = "sklearn"
PHOTOGRAPHS: tuple[Photograph, ...] = (
    # training photographs
    Photograph("astronaut", _SK, "data/astronaut.png", "public domain (NASA)", Split.TRAIN),
    Photograph("rocket", _SK, "data/rocket.jpg", "public domain (SpaceX)", Split.TRAIN),
    Photograph("hubble_deep_field", _SK, "data/hubble_deep_field.jpg", "public domain (NASA)", Split.TRAIN),
    Photograph("immunohistochemistry", _SK, "data/ihc.png", "no known copyright restrictions", Split.TRAIN),
    Photograph("camera", _SK, "data/camera.png", "CC0 (Lav Varshney)", Split.TRAIN),
    Photograph("brick", _SK, "data/brick.png", "CC0 (CC0Textures)", Split.TRAIN),
    Photograph("grass", _SK, "data/grass.png", "CC0 (linolafett, DeviantArt)", Split.TRAIN),
    Photograph(
        "coins", _SK, "data/coins.png", "no known copyright restrictions (Brooklyn Museum)", Split.TRAIN
    ),
    Photograph("china", _SKL, "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr)", Split.TRAIN),
    # held-out photographs: evaluation only
    Photograph("chelsea", _SK, "data/chelsea.png", "CC0 (Stefan van der Walt)", Split.HELD_OUT),
    Photograph("coffee", _SK, "data/coffee.png", "CC0 (Rachel Michetti)", Split.HELD_OUT),
    Photograph("gravel", _SK, "data/gravel.png", "CC0 (CC0Textures)", Split.HELD_OUT),
    Photograph("clock", _SK, "data/clock_motion.png", "public domain (Stefan van der Walt)", Split.HELD_OUT),
    Photograph("flower", _SKL, "datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr)", Split.HELD_OUT),
)


def photographs(split: Split) -> tuple[Photograph, ...]:
    """The photographs of one side of the split."""
    return tuple(p for p in PHOTOGRAPHS if p.split is split)


def _package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        dist = {"skimage": "scikit-image", "sklearn": "scikit-learn"}.get(package, package)
        raise MissingExtraError(
            f"the training photographs come from the {dist} package, which is not installed: {TRAIN_EXTRA}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def load_photograph(photo: Photograph) -> np.ndarray:
    """The photograph as an H×W×3 uint8 RGB array (grey photographs repeated over 3 channels); read once
    per process."""
    path = _package_folder(photo.package) / photo.path
    try:
        with Image.open(path) as img:
            array = np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise MissingExtraError(
            f"{path}: bundled photograph {photo.name!r} is missing from the installed {photo.package} "
            f"(a version that ships it: {TRAIN_EXTRA})"
        ) from None
    array.setflags(write=False)
    return array


# --- background videos ----------------------------------------------------------------------------

OPENCV_DOC_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v")
RESERVED_VIDEOS = frozenset({"cup.mp4"})  # the demo clip: never training data
_KNOWN_VIDEO_SPLIT = {
    "vtest.avi": Split.TRAIN,
    "tree.avi": Split.TRAIN,
    "Megamind.avi": Split.HELD_OUT,
    "Megamind_bugy.avi": Split.HELD_OUT,  # the same clip as Megamind.avi, re-encoded
}


def video_split(name: str) -> Split | None:
    """The split of a background video file name: fixed for the opencv-doc clips, otherwise one name in
    four is held out (by a stable hash of the name). None for reserved files (the demo clip)."""
    if name in RESERVED_VIDEOS:
        return None
    if name in _KNOWN_VIDEO_SPLIT:
        return _KNOWN_VIDEO_SPLIT[name]
    return Split.HELD_OUT if zlib.crc32(name.encode("utf-8")) % 4 == 0 else Split.TRAIN


def has_video_decoder() -> bool:
    """Whether PyAV is installed (background videos need it)."""
    return importlib.util.find_spec("av") is not None


def background_videos(split: Split, folder: str | Path = OPENCV_DOC_DATA) -> tuple[Path, ...]:
    """The video files of ``folder`` on the ``split`` side, sorted by name; empty (with a log message) when
    the folder does not exist or PyAV is not installed, so that training goes on with photographs."""
    folder = Path(folder)
    if not folder.is_dir():
        log.info("no background video folder at %s; using photographs only", folder)
        return ()
    if not has_video_decoder():
        log.warning("PyAV is not installed: background videos in %s are skipped (%s)", folder, TRAIN_EXTRA)
        return ()
    return tuple(
        sorted(
            p
            for p in folder.iterdir()
            if p.suffix.lower() in VIDEO_SUFFIXES
            and video_split(p.name) is split
            and not p.name.startswith(".")
        )
    )


@dataclass(frozen=True)
class VideoIndex:
    """What one decoding pass learns about a video: its frame count and the keyframes (decode order
    index and presentation timestamp), for seeking."""

    num_frames: int
    height: int
    width: int
    keyframes: tuple[tuple[int, int], ...]


@functools.lru_cache(maxsize=32)
def _index_video(path: Path, mtime_ns: int) -> VideoIndex:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            keyframes, count, height, width = [], 0, 0, 0
            for frame in container.decode(stream):
                if frame.key_frame and frame.pts is not None:
                    keyframes.append((count, int(frame.pts)))
                height, width = frame.height, frame.width
                count += 1
    except (av.error.FFmpegError, IndexError) as exc:
        raise InputError(f"{path}: not a readable video ({exc})") from None
    if count == 0:
        raise InputError(f"{path}: the video has no frames")
    return VideoIndex(count, height, width, tuple(keyframes))


class VideoFrames:
    """Random access to the frames of a video file (decode order), decoding forward from the nearest
    keyframe; sequential reads cost one decoded frame each. Frames are H×W×3 uint8 RGB arrays."""

    def __init__(self, path: str | Path) -> None:
        if not has_video_decoder():
            raise MissingExtraError(f"decoding background videos needs PyAV: {TRAIN_EXTRA}")
        self.path = Path(path)
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            raise InputError(f"{self.path}: video file not found") from None
        self.index = _index_video(self.path, mtime)
        self._container = None
        self._frames = None
        self._next = 0  # decode-order index of the frame the open decoder yields next
        self._pending = None  # a frame decoded while checking a seek, not yet consumed
        self._last: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.index.num_frames

    def _restart(self, target: int) -> None:
        import av

        if self._container is not None:
            self._container.close()
        self._container = av.open(str(self.path))
        stream = self._container.streams.video[0]
        start, pts = max(((i, p) for i, p in self.index.keyframes if i <= target), default=(0, None))
        if start > 0 and pts is not None:
            self._container.seek(pts, stream=stream, backward=True, any_frame=False)
            self._frames = self._container.decode(stream)
            first = next(self._frames, None)
            if first is not None and first.pts == pts:
                self._next = start
                self._pending = first
                return
            self._container.close()  # seeking did not land on the keyframe: decode from the start
            self._container = av.open(str(self.path))
            stream = self._container.streams.video[0]
        self._frames = self._container.decode(stream)
        self._next = 0
        self._pending = None

    def __getitem__(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} of a {len(self)}-frame video")
        if self._last is not None and self._last[0] == i:
            return self._last[1]
        if self._frames is None or i < self._next or self._keyframe_between(self._next, i):
            self._restart(i)
        while True:
            frame = self._pending if self._pending is not None else next(self._frames, None)
            self._pending = None
            if frame is None:
                raise InputError(f"{self.path}: frame {i} could not be decoded")
            index = self._next
            self._next += 1
            if index == i:
                array = frame.to_ndarray(format="rgb24")
                self._last = (i, array)
                return array

    def _keyframe_between(self, current: int, target: int) -> bool:
        # Seeking pays off when a keyframe lies after the decoder's position and at or before the target.
        return any(current < k <= target for k, _ in self.index.keyframes)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
            self._frames = None

    def __del__(self) -> None:
        self.close()
