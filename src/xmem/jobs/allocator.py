"""How the C library's allocator treats large blocks in an inference process on the CPU.

glibc's ``malloc`` serves a block above its mmap threshold (128 KiB at first, raised as large blocks are
freed, at most 32 MiB) with freshly mapped pages, and hands freed memory at the top of the heap back to the
kernel beyond its trim threshold. A network at 480p allocates and frees activations of 25-53 MB on every
frame; each one then comes back as new pages that the kernel zeroes and faults in one by one (about 40,000
page faults a frame for the official network in fp32). :func:`retain_large_blocks` raises both thresholds,
so that these blocks are served from the heap and reused from frame to frame. The process keeps up to
``TRIM_THRESHOLD`` of freed memory in return.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

MIB = 1 << 20
MMAP_THRESHOLD = 64 * MIB  # blocks up to this size come from the heap
TRIM_THRESHOLD = 128 * MIB  # freed memory kept at the top of the heap before it is given back
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
# thresholds the user sets in the environment are left alone (a preloaded allocator, e.g. jemalloc, does
# not use glibc's parameters: setting them is harmless there)
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def retain_large_blocks() -> bool:
    """Set glibc's mmap and trim thresholds for this process (see the module's text). Returns whether they
    were set: not on other C libraries and systems, nor where the environment sets them."""
    if not sys.platform.startswith("linux") or any(os.environ.get(name) for name in USER_SETTINGS):
        return False
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False  # musl and others: other allocators, other parameters
    done = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    log.debug("allocator: mmap threshold %d MiB, trim threshold %d MiB: %s", MMAP_THRESHOLD // MIB,
              TRIM_THRESHOLD // MIB, "set" if done else "refused")  # fmt: skip
    return done
