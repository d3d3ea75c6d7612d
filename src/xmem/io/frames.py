"""Frame sources: a folder of images (natural sort), read lazily."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

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


class FrameFolder:
    """The images of a folder, in natural order, decoded one at a time. All frames must share one size."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not self.folder.exists():
            raise InputError(f"{self.folder}: no such folder")
        if not self.folder.is_dir():
            raise InputError(f"{self.folder}: not a folder of frames")
        self.paths = sorted(
            (
                p
                for p in self.folder.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
            ),
            key=lambda p: natural_key(p.name),
        )
        if not self.paths:
            raise InputError(f"{self.folder}: no frames (jpg/png) in the folder")
        self._size: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.stem for p in self.paths]

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            frame = read_rgb(path)
            if self._size is None:
                self._size = frame.shape[:2]
            elif frame.shape[:2] != self._size:
                raise InputError(
                    f"{path}: frame size {frame.shape[1]}x{frame.shape[0]} differs from the first frame's "
                    f"{self._size[1]}x{self._size[0]}"
                )
            yield frame

    def first_size(self) -> tuple[int, int]:
        """(H, W) of the first frame."""
        with Image.open(self.paths[0]) as img:
            return img.height, img.width
