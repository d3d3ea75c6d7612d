"""Frame sources (video files, frame folders, globs, dataset roots), masks and palettes, overlays, atomic
writes."""

from xmem.io.dataset import DatasetVideo, find_videos
from xmem.io.errors import InputError
from xmem.io.frames import FrameFolder, FrameGlob, FrameSource, natural_key
from xmem.io.masks import DAVIS_PALETTE, ColourMap, read_index_mask, write_index_mask
from xmem.io.overlay import OverlayWriter, overlay_frame
from xmem.io.prompts import Prompts, load_prompts
from xmem.io.video import VideoFile, open_frames

__all__ = [
    "DAVIS_PALETTE",
    "ColourMap",
    "DatasetVideo",
    "FrameFolder",
    "FrameGlob",
    "FrameSource",
    "InputError",
    "OverlayWriter",
    "Prompts",
    "VideoFile",
    "find_videos",
    "load_prompts",
    "natural_key",
    "open_frames",
    "overlay_frame",
    "read_index_mask",
    "write_index_mask",
]
