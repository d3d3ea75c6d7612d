"""Real photographs from Debian packages (wallpapers, OpenCV's sample photos, KDE's puzzle photos, Tux
Paint's photographed stamps), listed with package, version, path and licence in ``real/photos.tsv``.

The pixels are never part of this project: they are read where the package installs them (``/usr/share/...``)
or from a cache folder into which ``benchmarks/install_real_photos.py`` extracts the packages
(``<cache>/<package>/usr/share/...``) and writes reduced copies (``<cache>/reduced/<name>.png``, at most
:data:`REDUCED_SIDE` pixels on the longer side; these load fastest). A photograph found nowhere is simply
absent: :func:`available_photos` lists only what is there, and the real-scene data falls back to the
photographs of the scikit-image / scikit-learn wheels (:mod:`xmem.data.sources`).

Two kinds: ``scene`` photographs (whole pictures: backgrounds, textures, and the sources of the hand-seeded
cut-outs of :mod:`xmem.data.cutouts`) and ``stamp`` photographs (one object photographed and cut out by the
package author, with an alpha channel: ready-made objects).
"""

from __future__ import annotations

import csv
import enum
import functools
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from xmem.data.sources import Split
from xmem.io.errors import InputError

MANIFEST = "photos.tsv"
REDUCED_SIDE = 1024
CACHE_ENV = "XMEM_PHOTO_CACHE"


class PhotoKind(enum.Enum):
    SCENE = "scene"  # a whole photograph
    STAMP = "stamp"  # one photographed object with an alpha channel


@dataclass(frozen=True)
class PackagePhoto:
    """One photograph of the manifest: ``path`` is where the Debian ``package`` (``version``) installs it."""

    name: str
    kind: PhotoKind
    package: str
    version: str
    path: str
    licence: str
    split: Split
    category: str = ""


def default_cache() -> Path:
    """``$XMEM_PHOTO_CACHE``, else ``~/.cache/xmem/photos``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "xmem" / "photos"


def _read_manifest_text(text: str, origin: str) -> tuple[PackagePhoto, ...]:
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    photos = []
    for i, row in enumerate(rows):
        try:
            photos.append(
                PackagePhoto(
                    name=row["name"],
                    kind=PhotoKind(row["kind"]),
                    package=row["package"],
                    version=row["version"],
                    path=row["path"],
                    licence=row["licence"],
                    split=Split(row["split"]),
                    category=row.get("category") or "",
                )
            )
        except (KeyError, ValueError) as exc:
            raise InputError(f"{origin}: row {i + 1} is not a valid photograph entry ({exc})") from None
        if not photos[-1].licence or not photos[-1].path.startswith("/"):
            raise InputError(f"{origin}: row {i + 1} ({row['name']}) needs a licence and an absolute path")
    names = [p.name for p in photos]
    if len(set(names)) != len(names):
        raise InputError(f"{origin}: photograph names repeat")
    return tuple(photos)


@functools.cache
def manifest() -> tuple[PackagePhoto, ...]:
    """Every photograph of ``real/photos.tsv``, in file order."""
    text = resources.files("xmem.data").joinpath("real", MANIFEST).read_text(encoding="utf-8")
    return _read_manifest_text(text, f"xmem/data/real/{MANIFEST}")


def photo_by_name(name: str) -> PackagePhoto:
    for p in manifest():
        if p.name == name:
            return p
    raise KeyError(f"no photograph {name!r} in the manifest")


def locate(photo: PackagePhoto, cache: Path | None = None) -> Path | None:
    """The file to read for ``photo``: the reduced copy in the cache, the package's extraction in the
    cache, or the installed file; None when none exists."""
    cache = default_cache() if cache is None else Path(cache)
    for candidate in (
        cache / "reduced" / f"{photo.name}.png",
        cache / photo.package / photo.path.lstrip("/"),
        Path(photo.path),
    ):
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=8)
def _available(cache: Path, split: Split, kind: PhotoKind) -> tuple[PackagePhoto, ...]:
    return tuple(
        p for p in manifest() if p.split is split and p.kind is kind and locate(p, cache) is not None
    )


def available_photos(split: Split, kind: PhotoKind, cache: Path | None = None) -> tuple[PackagePhoto, ...]:
    """The photographs of one side of the split and one kind that are present on this machine (looked up
    once per process and cache folder)."""
    return _available(default_cache() if cache is None else Path(cache), split, kind)


def reduce_image(image: Image.Image, max_side: int = REDUCED_SIDE) -> Image.Image:
    """RGBA (an image with transparency) or RGB copy of ``image``, its longer side at most ``max_side``."""
    alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if image.format == "JPEG":
        image.draft("RGB", (max_side, max_side))  # decodes at a reduced scale: much faster
    out = image.convert("RGBA" if alpha else "RGB")
    if max(out.size) > max_side:
        out.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return out


@functools.lru_cache(maxsize=96)
def load_package_photo(photo: PackagePhoto, cache: Path | None = None) -> np.ndarray:
    """The photograph as a read-only uint8 array, reduced to at most :data:`REDUCED_SIDE` pixels on the
    longer side: H×W×3 RGB for scenes, H×W×4 RGBA for stamps (read once per process and cache)."""
    path = locate(photo, cache)
    if path is None:
        raise InputError(
            f"{photo.path}: photograph {photo.name!r} of {photo.package} is not installed "
            "(python benchmarks/install_real_photos.py)"
        )
    try:
        with Image.open(path) as img:
            reduced = reduce_image(img)
            array = np.array(reduced.convert("RGBA" if photo.kind is PhotoKind.STAMP else "RGB"))
    except OSError as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    array.setflags(write=False)
    return array
