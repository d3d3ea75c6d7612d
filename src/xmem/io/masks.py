"""Index masks: palette PNGs (DAVIS palette), grey index PNGs and binary 0/255 masks."""

from __future__ import annotations

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


def read_index_mask(path: str | Path) -> np.ndarray:
    """Read an H×W index mask (uint8 object ids, 0 = background) from a palette PNG, a grey index PNG or
    a binary 0/255 image (read as one object, id 1)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode == "P":
                arr = np.array(img)
            elif mode in ("L", "I", "I;16", "1"):
                arr = np.array(img.convert("I") if mode != "L" else img).astype(np.int64)
                values = np.unique(arr)
                if set(values.tolist()) <= {0, 255} and 255 in values:
                    arr = (arr == 255).astype(np.uint8)  # binary mask: one object
                if arr.max(initial=0) > 255:
                    raise InputError(f"{path}: mask ids above 255 are not supported")
                arr = arr.astype(np.uint8)
            else:
                raise InputError(
                    f"{path}: unsupported mask mode {mode!r} (use a palette PNG, a grey index PNG or a binary mask)"
                )
    except FileNotFoundError:
        raise InputError(f"{path}: mask file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from None
    return arr


def write_index_mask(path: str | Path, mask: np.ndarray) -> None:
    """Write an H×W uint8 index mask as a palette PNG (DAVIS palette), atomically."""
    if mask.dtype != np.uint8:
        if mask.max(initial=0) > 255 or mask.min(initial=0) < 0:
            raise ValueError("palette PNGs hold object ids 0..255")
        mask = mask.astype(np.uint8)
    img = Image.fromarray(mask, mode="P")
    img.putpalette(DAVIS_PALETTE.flatten().tolist())
    with atomic_write(path) as f:
        img.save(f, format="PNG")
