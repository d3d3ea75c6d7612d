"""Index masks: palette PNGs (DAVIS palette), grey index PNGs, binary 0/255 masks and RGB colour masks;
per-object probability maps."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError


def _davis_palette() -> np.ndarray:
    # The PASCAL VOC / DAVIS colour map: bits of the index spread over the high bits of R, G, B.
    palette = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


DAVIS_PALETTE = _davis_palette()
_PNG_PALETTE = DAVIS_PALETTE.flatten().tolist()  # as PIL's putpalette takes it, built once


class ColourMap:
    """Object ids for the colours of RGB masks, kept across files so one colour is one object everywhere.

    Black is the background. A colour of the DAVIS palette gets that palette index as its id (so a palette
    mask saved as RGB keeps its ids), unless that id is taken; other colours get the smallest free id.
    """

    def __init__(self) -> None:
        self.ids: dict[tuple[int, int, int], int] = {}
        self._palette = {tuple(int(c) for c in DAVIS_PALETTE[i]): i for i in range(1, 256)}

    def assign(self, colours: np.ndarray, source: str = "mask") -> list[int]:
        """Ids of ``colours`` (K×3 uint8), assigning new ones as needed (black -> 0)."""
        keys = [tuple(int(c) for c in colour) for colour in colours]
        new = [k for k in keys if k not in self.ids and k != (0, 0, 0)]
        # palette colours first, so that they get their own index when it is free
        for k in sorted(new, key=lambda k: (k not in self._palette, self._palette.get(k, 0), k)):
            taken = set(self.ids.values())
            wanted = self._palette.get(k)
            if wanted is None or wanted in taken:
                free = [i for i in range(1, 256) if i not in taken]
                if not free:
                    raise InputError(
                        f"{source}: more than 255 objects ({len(self.ids) + len(new)} colours; "
                        "a JPEG mask? masks must be lossless PNGs)"
                    )
                wanted = free[0]
            self.ids[k] = wanted
        return [0 if k == (0, 0, 0) else self.ids[k] for k in keys]

    def describe(self) -> str:
        """``"(128, 0, 0) -> 1, (0, 128, 0) -> 2"``, in id order."""
        return ", ".join(f"{c} -> {i}" for c, i in sorted(self.ids.items(), key=lambda item: item[1]))


def _grey_ids(arr: np.ndarray, path: Path) -> np.ndarray:
    arr = arr.astype(np.int64)
    values = np.unique(arr)
    if set(values.tolist()) <= {0, 255} and 255 in values:
        return (arr == 255).astype(np.uint8)  # binary mask: one object
    if values.max(initial=0) > 255:
        raise InputError(
            f"{path}: more than 255 objects (ids up to {int(values.max())}; ids must be 1-255, 0 = background)"
        )
    return arr.astype(np.uint8)


def read_index_mask(path: str | Path, colours: ColourMap | None = None) -> np.ndarray:
    """Read an H×W index mask (uint8 object ids, 0 = background) from a palette PNG, a grey index PNG, a
    binary 0/255 image (read as one object, id 1) or an RGB colour mask (each colour one object, ids from
    ``colours``, which keeps them consistent across files; a grey image saved as RGB reads as grey)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                arr = np.array(img)
            elif mode in ("L", "I", "I;16", "1", "LA"):
                arr = _grey_ids(np.array(img.convert("I") if mode != "L" else img), path)
            elif mode in ("RGB", "RGBA"):
                rgb = np.array(img.convert("RGB"))
                if (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all():
                    arr = _grey_ids(rgb[..., 0], path)
                else:
                    found, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)
                    if len(found) > 256:
                        raise InputError(
                            f"{path}: more than 255 objects ({len(found)} colours; a JPEG mask? masks must "
                            "be lossless PNGs)"
                        )
                    ids = (colours or ColourMap()).assign(found, str(path))
                    arr = np.asarray(ids, dtype=np.uint8)[inverse.reshape(-1)].reshape(rgb.shape[:2])
            else:
                raise InputError(
                    f"{path}: unsupported mask mode {mode!r} (use a palette PNG, a grey index PNG, a binary "
                    "mask or an RGB colour mask)"
                )
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: a folder, not a mask file") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    return arr


def write_index_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write an H×W uint8 index mask as a palette PNG (DAVIS palette), atomically.

    Compressed with zlib's run-length strategy: masks are long runs of one index, which it encodes in half
    the time of the default strategy, in files of about the same size (measured on the real clips' masks)."""
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > 255 or mask.min(initial=0) < 0:
            raise ValueError("palette PNGs hold object ids 0..255")
        mask = mask.astype(np.uint8)
    img = Image.fromarray(mask, mode="P")
    img.putpalette(_PNG_PALETTE)
    with atomic_write(path) as f:
        img.save(f, format="PNG", compress_type=zlib.Z_RLE)


def write_probability_map(path: str | Path, prob: np.ndarray) -> None:
    """Write an H×W uint8 map (probability × 255, rounded) as a grey PNG, atomically."""
    if prob.dtype != np.uint8:
        raise ValueError("probability maps are written as uint8 (probability × 255)")
    with atomic_write(path) as f:
        Image.fromarray(prob, mode="L").save(f, format="PNG")
