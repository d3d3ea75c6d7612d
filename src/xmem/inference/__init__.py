"""The per-frame engine and the video-level segmenter."""

from xmem.inference.core import InferenceCore
from xmem.inference.segmenter import VideoSegmenter

__all__ = ["InferenceCore", "VideoSegmenter"]
