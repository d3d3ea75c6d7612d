"""Exports of a :class:`~xmem.interactive.session.VideoSession` for other tools.

Layout of an export folder::

    masks/00000.png            index masks, DAVIS palette, one per frame, named after the frame
    alpha/1-cup/00000.png      per-object alpha mattes (0 or 255), for compositing in an editor
    overlay.mp4                the video with every object blended in its colour and outlined
    summary.json               frames, objects (name, colour, frames where present), key frames, settings
    xmem-export.zip            all of the above in one file, for a download

A frame without a mask is exported empty (all background). The folder is made under a temporary name and
renamed into place at the end, so an export stopped half-way leaves the previous export as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

import xmem
from xmem.interactive.workspace import settings_summary
from xmem.io.atomic import atomic_write
from xmem.io.masks import DAVIS_PALETTE, write_index_mask
from xmem.io.overlay import OverlayWriter

if TYPE_CHECKING:
    from xmem.interactive.session import VideoSession

ZIP_NAME = "xmem-export.zip"
SUMMARY_NAME = "summary.json"
OVERLAY_NAME = "overlay.mp4"


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """What to export besides the index masks and ``summary.json``."""

    alpha: bool = True
    overlay: bool = True
    archive: bool = True


class ExportStopped(Exception):
    """Raised when ``should_stop`` asked an export to stop; the previous export is left in place."""


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return slug[:60] or "object"


def session_palette(session: VideoSession) -> np.ndarray:
    """256×3 uint8: the DAVIS palette with each object's own colour in its id's row."""
    palette = DAVIS_PALETTE.copy()
    for obj_id, info in session.object_info.items():
        palette[obj_id] = np.asarray(info["colour"], np.uint8)
    return palette


def export_session(
    session: VideoSession,
    folder: str | Path,
    options: ExportOptions = ExportOptions(),
    *,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Write ``session``'s masks (and the extras in ``options``) into ``folder`` (replaced as a whole).
    ``progress(done, total)`` is called after each frame; ``should_stop()`` is asked before each frame.
    Returns the files written, relative to ``folder``."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f".{folder.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "masks").mkdir(parents=True)
    try:
        written = _write(session, partial, options, progress, should_stop)
        old = folder.with_name(f".{folder.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if folder.exists():
            folder.rename(old)
        partial.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return written


def _write(
    session: VideoSession,
    out: Path,
    options: ExportOptions,
    progress: Callable[[int, int], None] | None,
    should_stop: Callable[[], bool] | None,
) -> list[str]:
    info = session.object_info
    source = session.frames.source
    total = session.num_frames
    alpha_dirs: dict[int, Path] = {}
    if options.alpha:
        for obj_id, obj in info.items():
            alpha_dirs[obj_id] = out / "alpha" / f"{obj_id}-{_slug(str(obj['name']))}"
            alpha_dirs[obj_id].mkdir(parents=True)
    present: dict[int, list[int]] = {obj_id: [] for obj_id in info}
    palette = session_palette(session)
    written: list[str] = []
    overlay = OverlayWriter(out / OVERLAY_NAME, source.fps or 24.0) if options.overlay else None
    try:
        with contextlib.ExitStack() as stack:
            if overlay is not None:
                stack.enter_context(overlay)
            frames = source.frames() if overlay is not None else None
            for index in range(total):
                if should_stop is not None and should_stop():
                    raise ExportStopped(f"export stopped at frame {index} of {total}")
                mask = session.mask(index)
                name = source.name(index)
                write_index_mask(out / "masks" / f"{name}.png", mask)
                written.append(f"masks/{name}.png")
                for obj_id in np.unique(mask):
                    if int(obj_id) in present:
                        present[int(obj_id)].append(index)
                for obj_id, path in alpha_dirs.items():
                    with atomic_write(path / f"{name}.png") as f:
                        Image.fromarray(np.where(mask == obj_id, 255, 0).astype(np.uint8), "L").save(f, "PNG")
                    written.append(f"{path.relative_to(out).as_posix()}/{name}.png")
                if overlay is not None and frames is not None:
                    overlay.write(next(frames), mask, palette)
                if progress is not None:
                    progress(index + 1, total)
        if overlay is not None:
            written.append(OVERLAY_NAME)
    except BaseException:
        if overlay is not None:
            overlay._discard()
        raise
    summary = {
        "input": source.location,
        "frames": total,
        "frame_size": [session.height, session.width],
        "fps": source.fps,
        "objects": [
            {
                "id": obj_id,
                "name": obj["name"],
                "colour": obj["colour"],
                "frames": len(present[obj_id]),
                "first_frame": present[obj_id][0] if present[obj_id] else None,
                "last_frame": present[obj_id][-1] if present[obj_id] else None,
                "alpha": f"alpha/{alpha_dirs[obj_id].name}" if obj_id in alpha_dirs else None,
            }
            for obj_id, obj in info.items()
        ],
        "key_frames": session.key_frames,
        "frames_with_masks": len(session.masked_frames),
        "settings": settings_summary(session.core.config),
        "model": session.identity["model"],
        "version": xmem.__version__,
    }
    with atomic_write(out / SUMMARY_NAME, "w") as f:
        json.dump(summary, f, indent=2)
    written.append(SUMMARY_NAME)
    if options.archive:
        with atomic_write(out / ZIP_NAME) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            for name in written:
                archive.write(out / name, arcname=name)
        written.append(ZIP_NAME)
    return written
