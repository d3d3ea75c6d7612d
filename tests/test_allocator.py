"""The allocator policy of inference processes: large blocks freed on one frame are reused on the next
instead of being mapped and faulted in again. Each case runs in a process of its own (the policy is
process-wide).

Which iteration first reuses a freed block depends on what else sits on the heap: a block freed below
another allocation goes to a bin, and the next aligned request of the same size may not fit it, so the heap
grows once or twice more before the blocks alternate. The tests therefore judge the steady state, and
check directly (mallinfo2) that the block comes from the heap rather than from a fresh mapping."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, json, resource, sys
import torch
from xmem.jobs.allocator import retain_large_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
mapped = None
if hasattr(libc, "mallinfo2"):  # glibc 2.33 and newer
    libc.mallinfo2.restype = MallInfo2
    mapped = lambda: libc.mallinfo2().hblkhd  # bytes in blocks served by their own mapping
applied = retain_large_blocks() if sys.argv[1] == "on" else None
faults, mapped_while_held = [], []
for _ in range(int(sys.argv[2])):  # a 40 MB activation, allocated and freed as on every frame
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(40 << 20, dtype=torch.uint8)
    mapped_while_held.append(mapped() if mapped else None)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults, "mapped": mapped_while_held}))
"""

ITERATIONS, STEADY = 12, 6  # the last STEADY iterations are judged
BLOCK = 40 << 20
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


def probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    command = [sys.executable, "-c", PROBE, mode, str(ITERATIONS)]
    out = subprocess.run(command, env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_blocks_are_reused_instead_of_faulted_in_again():
    pages = BLOCK // os.sysconf("SC_PAGE_SIZE")
    default = probe("off")
    assert all(f > pages // 2 for f in default["faults"]), default  # glibc's default: fresh pages every time
    tuned = probe("on")
    assert tuned["applied"] is True
    assert all(f < pages // 100 for f in tuned["faults"][-STEADY:]), tuned  # freed blocks are served again
    if default["mapped"][0] is not None:  # mallinfo2 is there: a mapping of its own, or the heap
        assert all(m >= BLOCK for m in default["mapped"])
        assert all(m < BLOCK for m in tuned["mapped"])


def test_thresholds_set_in_the_environment_are_left_alone():
    result = probe("on", MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert result["applied"] is False
    assert all(f > 1000 for f in result["faults"])  # the user's 1 MiB threshold holds
