"""Precision ``auto``: bf16 where the device has native bf16 matrix units, fp32 elsewhere; the engine resolves
it when it starts (``xmem segment`` and ``xmem info`` saying what runs and why: tests/test_default_model.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import GOLDEN_CONFIG
from xmem.config import InferenceConfig, Precision
from xmem.inference import precision
from xmem.inference.core import InferenceCore

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_vnni
bogomips\t: 4800.00

processor\t: 1
flags\t\t: fpu vme sse sse2 avx avx2 avx512f avx512_bf16 avx512_vnni
"""


def test_cpu_flags_are_read_from_cpuinfo(tmp_path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    flags = precision.linux_cpu_flags(path)
    assert flags is not None and {"avx2", "avx512_bf16"} <= flags and "amx_bf16" not in flags
    path.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert "avx512_bf16" not in precision.linux_cpu_flags(path)
    assert precision.linux_cpu_flags(tmp_path / "none") is None


@pytest.mark.parametrize(
    ("units", "onednn", "expected"),
    [
        (("avx512_bf16",), True, Precision.BF16),
        (("amx_bf16", "avx512_bf16"), True, Precision.BF16),
        ((), True, Precision.FP32),  # an AVX2-only CPU: bf16 would be emulated, slower than fp32
        (("avx512_bf16",), False, Precision.FP32),  # oneDNN without bf16 kernels here
    ],
)
def test_auto_on_the_cpu_follows_the_detected_units(monkeypatch, units, onednn, expected) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: units)
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: onednn)
    choice = precision.choose_precision(torch.device("cpu"))
    assert choice.precision is expected
    if expected is Precision.BF16:
        assert all(u in choice.reason for u in units)
    elif units:  # the units are there, oneDNN does not use them (e.g. ONEDNN_MAX_CPU_ISA=AVX2)
        assert "oneDNN does not run bf16" in choice.reason and units[0] in choice.reason
    else:
        assert "no native bf16" in choice.reason


@pytest.mark.parametrize(("native", "expected"), [(True, Precision.BF16), (False, Precision.FP32)])
def test_auto_on_a_gpu_asks_for_native_bf16(monkeypatch, native, expected) -> None:
    asked = {}

    def is_bf16_supported(including_emulation: bool = True) -> bool:
        asked["emulation"] = including_emulation
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Some GPU")
    choice = precision.choose_precision(torch.device("cuda"))
    assert choice.precision is expected and "Some GPU" in choice.reason
    assert asked["emulation"] is False  # emulated bf16 does not count


def test_a_set_precision_is_kept_and_auto_has_no_dtype() -> None:
    for p in (Precision.FP32, Precision.BF16, Precision.FP16, Precision.TF32):
        assert precision.resolve_precision(p, torch.device("cpu")) == precision.PrecisionChoice(
            p, "asked for"
        )
    with pytest.raises(ValueError, match="resolved"):
        _ = Precision.AUTO.dtype
    assert InferenceConfig().precision is Precision.AUTO


def test_the_engine_resolves_auto_when_it_starts(monkeypatch, golden_model) -> None:
    auto = InferenceConfig(memory=GOLDEN_CONFIG.memory, size=-1, device="cpu")
    core = InferenceCore(golden_model, auto)  # the tests' detection: no bf16 units
    assert core.config.precision is Precision.FP32 and "no native bf16" in core.precision_reason
    assert core.network.decoder.pred.weight.dtype == torch.float32
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: ("amx_bf16",))
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: True)
    core = InferenceCore(golden_model, auto)
    assert core.config.precision is Precision.BF16 and "amx_bf16" in core.precision_reason
    assert core.network.decoder.pred.weight.dtype == torch.bfloat16
    frame = np.zeros((32, 48, 3), np.uint8)
    mask = np.zeros((32, 48), np.uint8)
    mask[8:20, 10:30] = 1
    assert core.step(frame, mask).dtype == torch.float32  # probabilities come back in fp32
    explicit = InferenceCore(golden_model, GOLDEN_CONFIG)
    assert explicit.config.precision is Precision.FP32 and explicit.precision_reason == "asked for"
