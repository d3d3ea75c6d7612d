"""The allocator policy of inference processes: large blocks freed on one frame are reused on the next
instead of being mapped and faulted in again. Each case runs in a process of its own (the policy is
process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, resource, sys
import torch
from xmem.jobs.allocator import retain_large_blocks
applied = retain_large_blocks() if sys.argv[1] == "on" else None
faults = []
for _ in range(6):  # a 40 MB activation, allocated and freed as on every frame
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = torch.ones(40 << 20, dtype=torch.uint8)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "faults": faults}))
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")


def probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_blocks_are_reused_instead_of_faulted_in_again():
    pages = (40 << 20) // os.sysconf("SC_PAGE_SIZE")
    default = probe("off")
    assert all(f > pages // 2 for f in default["faults"])  # glibc's default: fresh pages every time
    tuned = probe("on")
    assert tuned["applied"] is True
    assert all(f < pages // 100 for f in tuned["faults"][2:])  # the freed block is served again


def test_thresholds_set_in_the_environment_are_left_alone():
    result = probe("on", MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert result["applied"] is False
    assert all(f > 1000 for f in result["faults"])  # the user's 1 MiB threshold holds
