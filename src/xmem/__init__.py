"""xmem: long-video object segmentation with XMem (Cheng & Schwing, ECCV 2022)."""

from xmem.config import Architecture, InferenceConfig, MemoryConfig, ModelConfig, Precision
from xmem.inference.core import InferenceCore
from xmem.inference.segmenter import VideoSegmenter
from xmem.model.checkpoint import CheckpointError, load_model
from xmem.model.network import XMem

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "CheckpointError",
    "InferenceConfig",
    "InferenceCore",
    "MemoryConfig",
    "ModelConfig",
    "Precision",
    "VideoSegmenter",
    "XMem",
    "__version__",
    "load_model",
]
