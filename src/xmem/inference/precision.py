"""What :attr:`Precision.AUTO <xmem.config.Precision.AUTO>` runs in: bf16 where the device has native bf16
matrix units, fp32 elsewhere.

On a CPU, bf16 is chosen when the processor reports AMX-BF16 or AVX-512 BF16 (the ``amx_bf16`` and
``avx512_bf16`` flags: read from ``/proc/cpuinfo`` on Linux, else from PyTorch's own CPU detection) and
oneDNN runs bf16 there; without them PyTorch emulates bf16 more slowly than fp32. On a CUDA GPU, bf16 is
chosen when the GPU computes in bf16 natively (Ampere and later); on Apple's MPS, fp32. The choice comes
with its reason, which ``xmem segment`` prints and writes into ``summary.json``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch

from xmem.config import Precision

# the CPU flags of native bf16 matrix units, as Linux names them
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision the engine runs in, and why."""

    precision: Precision
    reason: str


def linux_cpu_flags(path: Path = CPUINFO) -> set[str] | None:
    """The flags of the first processor in ``path`` (None where there is no such file)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return None


@functools.cache
def cpu_bf16_units() -> tuple[str, ...]:
    """The native bf16 matrix units this CPU has, by flag name (``amx_bf16``, ``avx512_bf16``); empty when
    it has none or they cannot be detected."""
    flags = linux_cpu_flags()
    if flags is not None:
        return tuple(f for f in BF16_CPU_FLAGS if f in flags)
    cpu = getattr(torch, "cpu", None)
    found = []
    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    for flag, probe in probes.items():
        check = getattr(cpu, probe, None)
        if check is not None and check():
            found.append(flag)
    return tuple(found)


def _onednn_bf16() -> bool:
    """Whether oneDNN (PyTorch's CPU convolutions) runs bf16 on this CPU."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())


def choose_precision(device: torch.device) -> PrecisionChoice:
    """The precision ``auto`` means on ``device``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return PrecisionChoice(Precision.BF16, f"auto: the GPU ({name}) computes in bf16 natively")
        return PrecisionChoice(Precision.FP32, f"auto: the GPU ({name}) has no native bf16")
    if device.type == "cpu":
        units = cpu_bf16_units()
        if units and _onednn_bf16():
            return PrecisionChoice(
                Precision.BF16, f"auto: this CPU has native bf16 matrix units ({', '.join(units)})"
            )
        if units:  # e.g. ONEDNN_MAX_CPU_ISA caps oneDNN below them
            return PrecisionChoice(
                Precision.FP32, f"auto: oneDNN does not run bf16 here although the CPU has {', '.join(units)}"
            )
        return PrecisionChoice(
            Precision.FP32, "auto: this CPU has no native bf16 matrix units (no amx_bf16 or avx512_bf16)"
        )
    return PrecisionChoice(Precision.FP32, f"auto: fp32 on {device.type}")


def resolve_precision(precision: Precision, device: torch.device) -> PrecisionChoice:
    """``precision`` itself when it is set, what ``auto`` means on ``device`` otherwise."""
    if precision is Precision.AUTO:
        return choose_precision(device)
    return PrecisionChoice(precision, "asked for")
