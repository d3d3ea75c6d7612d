"""xmem: long-video object segmentation with XMem (Cheng & Schwing, ECCV 2022).

The names below are imported on first use, so that ``import xmem`` (and the ``xmem`` command's launcher,
:mod:`xmem.launch`) does not load PyTorch before it is needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Architecture": "xmem.config",
    "InferenceConfig": "xmem.config",
    "MemoryConfig": "xmem.config",
    "ModelConfig": "xmem.config",
    "Precision": "xmem.config",
    "InferenceCore": "xmem.inference.core",
    "VideoSegmenter": "xmem.inference.segmenter",
    "CheckpointError": "xmem.model.checkpoint",
    "load_model": "xmem.model.checkpoint",
    "XMem": "xmem.model.network",
}

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

if TYPE_CHECKING:
    from xmem.config import Architecture, InferenceConfig, MemoryConfig, ModelConfig, Precision
    from xmem.inference.core import InferenceCore
    from xmem.inference.segmenter import VideoSegmenter
    from xmem.model.checkpoint import CheckpointError, load_model
    from xmem.model.network import XMem


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xmem' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
