"""Process memory, for progress bars and job summaries (no dependency beyond the standard library)."""

from __future__ import annotations

import os
import sys

import torch

MIB = 1 << 20


def current_rss_mib() -> float | None:
    """Resident memory of this process now (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / MIB


def peak_rss_mib() -> float | None:
    """The highest resident memory of this process so far, or None where it cannot be read.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: ``getrusage``'s ``ru_maxrss`` survives ``exec``,
    so in a process started from a larger one (a Python script running ``xmem segment``) it reports the
    parent's memory at the fork instead of this program's.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def peak_device_mib(device: torch.device) -> float | None:
    """Peak memory allocated by PyTorch on a CUDA device, None on other devices."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / MIB
