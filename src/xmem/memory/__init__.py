"""Memory reading and the working / long-term / sensory memory stores."""

from xmem.memory.manager import MemoryManager
from xmem.memory.store import MemoryStore

__all__ = ["MemoryManager", "MemoryStore"]
