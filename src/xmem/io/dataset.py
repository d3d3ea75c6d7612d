"""DAVIS / YouTube-VOS style dataset roots: ``JPEGImages/<video>/`` frames and ``Annotations/<video>/``
index masks (DAVIS also nests them in a resolution folder, ``JPEGImages/480p/<video>/``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xmem.io.errors import InputError
from xmem.io.frames import natural_key

RESOLUTION_FOLDERS = ("480p", "Full-Resolution")  # DAVIS; the first present is used


@dataclass(frozen=True)
class DatasetVideo:
    """One video of a dataset root: its frame folder and its annotation folder."""

    name: str
    frames: Path
    annotations: Path


def read_video_list(path: str | Path) -> list[str]:
    """Video names, one a line (DAVIS ``ImageSets/2017/val.txt``); blank lines are skipped."""
    path = Path(path)
    try:
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise InputError(f"{path}: video list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable video list ({exc})") from None
    if not names:
        raise InputError(f"{path}: the video list is empty")
    return names


def find_videos(root: str | Path, names: Sequence[str] | None = None) -> list[DatasetVideo]:
    """The videos of a dataset root in natural order (or those of ``names``, in that order)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such dataset folder")
    images, annotations = root / "JPEGImages", root / "Annotations"
    for folder in (images, annotations):
        if not folder.is_dir():
            raise InputError(
                f"{folder}: missing (a dataset root holds JPEGImages/<video>/ and Annotations/<video>/)"
            )
    for resolution in RESOLUTION_FOLDERS:
        if (images / resolution).is_dir() and (annotations / resolution).is_dir():
            images, annotations = images / resolution, annotations / resolution
            break
    found = sorted(
        (p.name for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key
    )
    if names is not None:
        unknown = [n for n in names if n not in found]
        if unknown:
            raise InputError(f"{images}: no video named {', '.join(unknown[:5])}")
        found = list(dict.fromkeys(names))
    if not found:
        raise InputError(f"{images}: no video folders")
    videos = []
    for name in found:
        if not (annotations / name).is_dir():
            raise InputError(f"{annotations / name}: missing: video {name!r} has no annotation folder")
        videos.append(DatasetVideo(name, images / name, annotations / name))
    return videos
