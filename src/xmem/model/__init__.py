"""The XMem network and checkpoint loading."""

from xmem.model.checkpoint import CheckpointError, load_model
from xmem.model.network import XMem

__all__ = ["CheckpointError", "XMem", "load_model"]
