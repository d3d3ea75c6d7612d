"""Reading frames and masks, writing palette masks (DAVIS conventions), atomically."""

from xmem.io.frames import FrameFolder, natural_key
from xmem.io.masks import DAVIS_PALETTE, read_index_mask, write_index_mask

__all__ = ["DAVIS_PALETTE", "FrameFolder", "natural_key", "read_index_mask", "write_index_mask"]
