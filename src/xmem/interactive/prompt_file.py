"""Prompts of ``xmem segment --prompts FILE.json``: clicks, boxes or masks per frame and object.

    {"40": {"1": {"points": [[320, 200], [300, 260]], "labels": [1, 0]},
            "2": {"box": [10, 20, 110, 220]},
            "3": {"mask": "masks/00040.png"}}}

Frames are named by index (``"40"``) or by name (``"frame0040"`` in a folder of frames); coordinates are
pixels of the input frames, (x, y); ``labels`` are 1 (positive) and 0 (negative) clicks; a ``box`` is
(x0, y0, x1, y1) and may come with points; a ``mask`` file (relative to the JSON file) is a binary mask or
an index mask whose pixels equal to the object id are the object. Each frame's objects become one index
mask, made with the click predictor (GrabCut) and written to ``OUT/prompts/<frame>.png``, so that the job
reads it like any other mask (and the user can look at it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from xmem.interactive.clicks import GrabCutPredictor, MaskPredictor, Prompt
from xmem.io.errors import InputError
from xmem.io.frames import FrameSource
from xmem.io.masks import ColourMap, read_index_mask, write_index_mask
from xmem.io.prompts import PromptMask, Prompts

PROMPTS_FOLDER = "prompts"
KEYS = {"points", "labels", "box", "mask"}


class FilePrompts(Prompts):
    """Prompts made from a JSON file; identified by the file and the mask files it names (the masks made
    from clicks are made again, identically, on a resume)."""

    def __init__(self, masks: list[PromptMask], colours: ColourMap, identity: str) -> None:
        super().__init__(masks, colours)
        self._identity = identity

    def fingerprint(self) -> str:
        return f"{len(self.masks)} prompted frames, {self._identity}"


def _frame_index(source: FrameSource, key: str, path: Path) -> int:
    index = int(key) if key.isdigit() else source.index_of(key)
    if index is None:
        raise InputError(f"{path}: frame {key!r} names no frame of {source.location}")
    if source.length is not None and index >= source.length:
        raise InputError(f"{path}: frame {index}, but the video has {source.length} frames")
    return index


def _object_mask(
    entry: object, obj_id: int, frame: np.ndarray, where: str, base: Path, predictor
) -> np.ndarray:
    if not isinstance(entry, dict) or not entry or not set(entry) <= KEYS:
        raise InputError(
            f"{where}: an object is given by points with labels, a box, or a mask (keys {sorted(KEYS)})"
        )
    h, w = frame.shape[:2]
    if "mask" in entry:
        if set(entry) != {"mask"}:
            raise InputError(f"{where}: a mask comes alone, without points or a box")
        mask_path = base / str(entry["mask"])
        ids = read_index_mask(mask_path)
        if ids.shape != (h, w):
            raise InputError(
                f"{mask_path}: mask size {ids.shape[1]}x{ids.shape[0]} differs from the frames' {w}x{h}"
            )
        values = set(np.unique(ids).tolist()) - {0}
        mask = ids == (1 if values == {1} else obj_id)
        if not mask.any():
            raise InputError(f"{mask_path}: holds no pixel of object {obj_id}")
        return mask
    if ("points" in entry) != ("labels" in entry):
        raise InputError(f"{where}: points need labels (1 positive, 0 negative), one per point")
    try:
        prompt = Prompt(points=entry.get("points", []), labels=entry.get("labels", []), box=entry.get("box"))
        prompt.validate(h, w)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: {exc}") from None
    mask = predictor.predict(frame, prompt)
    if not mask.any():
        raise InputError(f"{where}: the clicks gave an empty mask; add a positive click inside the object")
    return mask


def load_prompt_file(
    source: FrameSource, path: Path, out: Path, predictor: MaskPredictor | None = None
) -> FilePrompts:
    """Read ``path``, make each prompted frame's index mask (``out/prompts/<frame name>.png``) and return
    them as the job's prompts. Raises :class:`InputError` naming the file and the entry at fault."""
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError:
        raise InputError(f"{path}: no such prompts file") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not data:
        raise InputError(f'{path}: expected {{"frame": {{"object id": {{...}}}}}} with at least one frame')
    predictor = predictor if predictor is not None else GrabCutPredictor()
    identity = hashlib.sha256(raw)
    frames: dict[int, dict[int, object]] = {}
    for key, objects in data.items():
        index = _frame_index(source, str(key), path)
        if index in frames:
            raise InputError(f"{path}: frame {index} is given twice")
        if not isinstance(objects, dict) or not objects:
            raise InputError(f"{path}: frame {key}: expected object ids with their prompts")
        parsed = {}
        for obj_key, entry in objects.items():
            if not str(obj_key).isdigit() or not 1 <= int(obj_key) <= 255:
                raise InputError(f"{path}: frame {key}: object ids are 1-255, got {obj_key!r}")
            parsed[int(obj_key)] = entry
            if isinstance(entry, dict) and "mask" in entry:
                mask_file = path.parent / str(entry["mask"])
                if not mask_file.is_file():
                    raise InputError(f"{path}: frame {key}, object {obj_key}: no mask file {mask_file}")
                identity.update(mask_file.read_bytes())
        frames[index] = parsed
    made = []  # every mask is made (and checked) before any file is written
    wanted = sorted(frames)
    reader = source.frames(wanted[0])  # one pass over the video for all prompted frames
    try:
        for offset, frame in enumerate(reader):
            index = wanted[0] + offset
            if index not in frames:
                continue
            combined = np.zeros(frame.shape[:2], np.uint8)
            for obj_id in sorted(frames[index]):
                where = f"{path}: frame {index}, object {obj_id}"
                entry = frames[index][obj_id]
                combined[_object_mask(entry, obj_id, frame, where, path.parent, predictor)] = obj_id
            made.append((index, combined))
            if index == wanted[-1]:
                break
    finally:
        reader.close()  # type: ignore[attr-defined]
    if len(made) < len(wanted):
        missing = wanted[len(made)]
        raise InputError(f"{path}: frame {missing} could not be read from {source.location}")
    folder = out / PROMPTS_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for index, combined in made:
        objects = tuple(int(i) for i in np.unique(combined) if i != 0)
        mask_path = folder / f"{source.name(index)}.png"
        write_index_mask(mask_path, combined)
        found.append(PromptMask(index, mask_path, objects))
    return FilePrompts(found, ColourMap(), identity.hexdigest()[:16])
