"""Objects cut out of real photographs: people, animals, vehicles, faces and things.

Each cut-out is a box and a few foreground / background strokes placed by hand on a photograph of the
manifest (``real/photos.tsv``) or of the scikit-image / scikit-learn wheels (:data:`xmem.data.sources.PHOTOGRAPHS`);
OpenCV's GrabCut turned them into a mask (``benchmarks/make_cutouts.py``), which was checked by eye on an
overlay and fixed by more strokes where wrong. The seeds are in ``real/cutouts.json`` and the masks in
``real/cutouts/<name>.png`` (the box's size, 1-bit); the photograph's pixels come from the installed package
at run time, never from this project.

Coordinates are pixels of the photograph as :func:`load_source` returns it (the reduced copy, longer side at
most 1024); ``size`` records that (width, height), and a photograph read at another size is rescaled.
"""

from __future__ import annotations

import enum
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from xmem.data.realphotos import PhotoKind, load_package_photo, locate, photo_by_name
from xmem.data.sources import PHOTOGRAPHS, Split, load_photograph
from xmem.io.errors import InputError

SEEDS = "cutouts.json"
MASK_FOLDER = "cutouts"


class CutoutKind(enum.Enum):
    PERSON = "person"
    FACE = "face"
    HAND = "hand"
    ANIMAL = "animal"
    VEHICLE = "vehicle"
    THING = "thing"  # household objects, fruit, toys, balls


Stroke = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Cutout:
    """One hand-seeded cut-out: ``box`` (x0, y0, x1, y1, exclusive ends) on ``photo`` (read at ``size`` =
    (width, height)), strokes of sure foreground / background (polylines, ``stroke_width`` wide)."""

    name: str
    kind: CutoutKind
    photo: str
    size: tuple[int, int]
    box: tuple[int, int, int, int]
    foreground: tuple[Stroke, ...]
    background: tuple[Stroke, ...] = ()
    stroke_width: int = 5
    note: str = ""


def _strokes(value) -> tuple[Stroke, ...]:
    return tuple(tuple((int(x), int(y)) for x, y in stroke) for stroke in value)


def parse_cutouts(text: str, origin: str) -> tuple[Cutout, ...]:
    try:
        entries = json.loads(text)
        cutouts = tuple(
            Cutout(
                name=e["name"],
                kind=CutoutKind(e["kind"]),
                photo=e["photo"],
                size=(int(e["size"][0]), int(e["size"][1])),
                box=tuple(int(v) for v in e["box"]),  # type: ignore[arg-type]
                foreground=_strokes(e["foreground"]),
                background=_strokes(e.get("background", [])),
                stroke_width=int(e.get("stroke_width", 5)),
                note=e.get("note", ""),
            )
            for e in entries
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{origin}: not a valid cut-out seed list ({exc})") from None
    for c in cutouts:
        x0, y0, x1, y1 = c.box
        if not (0 <= x0 < x1 <= c.size[0] and 0 <= y0 < y1 <= c.size[1]):
            raise InputError(f"{origin}: {c.name}: box {c.box} outside the {c.size} photograph")
    names = [c.name for c in cutouts]
    if len(set(names)) != len(names):
        raise InputError(f"{origin}: cut-out names repeat")
    return cutouts


@functools.cache
def cutouts() -> tuple[Cutout, ...]:
    """Every cut-out of ``real/cutouts.json``."""
    text = resources.files("xmem.data").joinpath("real", SEEDS).read_text(encoding="utf-8")
    return parse_cutouts(text, f"xmem/data/real/{SEEDS}")


def mask_path(cutout: Cutout) -> Path:
    return Path(str(resources.files("xmem.data").joinpath("real", MASK_FOLDER, f"{cutout.name}.png")))


def photo_licence(name: str) -> str:
    """The licence of a cut-out's source photograph."""
    for p in PHOTOGRAPHS:
        if p.name == name:
            return p.licence
    return photo_by_name(name).licence


def photo_split(name: str) -> Split:
    for p in PHOTOGRAPHS:
        if p.name == name:
            return p.split
    return photo_by_name(name).split


def source_available(name: str, cache: Path | None = None) -> bool:
    for p in PHOTOGRAPHS:
        if p.name == name:
            try:
                load_photograph(p)
            except ImportError:
                return False
            return True
    return locate(photo_by_name(name), cache) is not None


def load_source(name: str, cache: Path | None = None) -> np.ndarray:
    """The cut-out source photograph ``name`` as H×W×3 uint8 RGB (reduced copy for manifest photos)."""
    for p in PHOTOGRAPHS:
        if p.name == name:
            return load_photograph(p)
    photo = photo_by_name(name)
    if photo.kind is not PhotoKind.SCENE:
        raise InputError(f"cut-outs come from scene photographs; {name} is a {photo.kind.value}")
    return load_package_photo(photo, cache)


@functools.lru_cache(maxsize=128)
def load_cutout(cutout: Cutout, cache: Path | None = None) -> np.ndarray:
    """The cut-out as an h×w×4 uint8 RGBA array: the box's pixels of the photograph, alpha = its mask
    (0 / 255), read once per process."""
    with Image.open(mask_path(cutout)) as img:
        mask = np.array(img.convert("L")) > 127
    x0, y0, x1, y1 = cutout.box
    if mask.shape != (y1 - y0, x1 - x0):
        raise InputError(f"{mask_path(cutout)}: the mask is {mask.shape[::-1]}, its box {cutout.box}")
    photo = load_source(cutout.photo, cache)
    h, w = photo.shape[:2]
    if (w, h) != cutout.size:  # another reduction: rescale the box
        sx, sy = w / cutout.size[0], h / cutout.size[1]
        bx0, by0 = round(x0 * sx), round(y0 * sy)
        bx1, by1 = max(bx0 + 1, round(x1 * sx)), max(by0 + 1, round(y1 * sy))
        rgb = np.array(Image.fromarray(photo[by0:by1, bx0:bx1]).resize((x1 - x0, y1 - y0), Image.BILINEAR))
    else:
        rgb = photo[y0:y1, x0:x1]
    out = np.concatenate([rgb, (mask * 255).astype(np.uint8)[..., None]], axis=2)
    out.setflags(write=False)
    return out


def available_cutouts(split: Split, cache: Path | None = None) -> tuple[Cutout, ...]:
    """The cut-outs of one side of the split whose photograph is present."""
    return tuple(c for c in cutouts() if photo_split(c.photo) is split and source_available(c.photo, cache))
