"""Masks given on some frames of a video (prompts), matched to the frames by name and checked up front."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xmem.io.errors import InputError
from xmem.io.frames import FrameSource, natural_key
from xmem.io.masks import ColourMap, read_index_mask

MASK_SUFFIXES = (".png", ".bmp")  # lossless only: a JPEG mask has stray colours at every edge


@dataclass(frozen=True)
class PromptMask:
    """The mask file given for frame ``index`` and the object ids it defines."""

    index: int
    path: Path
    objects: tuple[int, ...]


class Prompts:
    """The masks of a video, by frame index. Each is read again when its frame comes (no video-length
    buffer); RGB masks keep the colour-to-id mapping found when they were checked."""

    def __init__(self, masks: Sequence[PromptMask], colours: ColourMap) -> None:
        self.masks = {m.index: m for m in masks}
        self.colours = colours

    @property
    def indices(self) -> list[int]:
        return sorted(self.masks)

    @property
    def objects(self) -> list[int]:
        return sorted({o for m in self.masks.values() for o in m.objects})

    def mask(self, index: int) -> np.ndarray | None:
        """The H×W index mask given for frame ``index``, or None."""
        prompt = self.masks.get(index)
        return None if prompt is None else read_index_mask(prompt.path, self.colours)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for index in self.indices:
            h.update(f"{index}:".encode())
            h.update(self.masks[index].path.read_bytes())
        return f"{len(self.masks)} masks, {h.hexdigest()[:16]}"


def _check(path: Path, mask: np.ndarray, size: tuple[int, int]) -> tuple[int, ...]:
    if mask.shape != size:
        raise InputError(
            f"{path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from the frames' {size[1]}x{size[0]}"
        )
    objects = tuple(int(i) for i in np.unique(mask) if i != 0)
    if not objects:
        raise InputError(f"{path}: the mask holds no object (all pixels are 0)")
    return objects


def mask_files(folder: Path) -> list[Path]:
    """The mask files of a folder, in natural order."""
    if not folder.exists():
        raise InputError(f"{folder}: no such folder of masks")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of masks")
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES and not p.name.startswith(".")),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise InputError(f"{folder}: no masks (png) in the folder")
    return files


def load_prompts(
    source: FrameSource,
    *,
    mask: Path | None = None,
    masks: Path | None = None,
    first_only: bool = False,
) -> Prompts:
    """Check and index the masks a user gave: ``mask`` for the first frame, or the folder ``masks`` of
    masks named after their frames (with ``first_only``, only the first of them is used).

    Raises :class:`InputError` for a mask that is missing, unreadable, of another size than the frames,
    without any object, with more than 255 objects, or named after no frame.
    """
    if (mask is None) == (masks is None):
        raise ValueError("give exactly one of mask and masks")
    size = source.first_size()
    colours = ColourMap()
    found: list[PromptMask] = []
    if mask is not None:
        found.append(PromptMask(0, mask, _check(mask, read_index_mask(mask, colours), size)))
    else:
        assert masks is not None
        files = mask_files(masks)
        indexed = []
        for path in files:
            index = source.index_of(path.stem)
            if index is None:
                raise InputError(f"{path}: names no frame of {source.location}")
            if source.length is not None and index >= source.length:
                raise InputError(f"{path}: names frame {index}, but the video has {source.length} frames")
            indexed.append((index, path))
        indexed.sort(key=lambda item: item[0])
        seen: dict[int, Path] = {}
        for index, path in indexed:
            if index in seen:
                raise InputError(f"{path}: a second mask for frame {index} (the first is {seen[index].name})")
            seen[index] = path
        if first_only:
            indexed = indexed[:1]
        for index, path in indexed:
            found.append(PromptMask(index, path, _check(path, read_index_mask(path, colours), size)))
    return Prompts(found, colours)
