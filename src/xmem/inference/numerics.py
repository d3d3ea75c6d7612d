"""How the engine's arithmetic runs on its device: TF32 only when asked for.

PyTorch runs fp32 convolutions on CUDA in TF32 by default (10-bit mantissa). The engine makes
:attr:`Precision.FP32 <xmem.config.Precision.FP32>` mean IEEE fp32 there, so that CUDA and CPU masks
agree, and offers TF32 as its own precision (:attr:`Precision.TF32 <xmem.config.Precision.TF32>`).
cuDNN's autotuner (``torch.backends.cudnn.benchmark``) is turned on for fp32 and tf32 only. Measured on
an H200 (benchmarks/results/gpu/): with it the official network ran at 47 (fp32) and 119 (tf32) frames/s
at 480p; without it the same fp32 and tf32 runs (1,280 frames) did not end within four minutes, under 6
frames/s. In bf16 it slowed the network down (108 against 129 frames/s) and cost 2.5 s at the start of a
video, so half precisions run with the caller's setting (PyTorch's default: off).
The flags are set for the duration of each engine call and restored afterwards, so other code in the
process keeps its own settings.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from xmem.config import Precision


@functools.cache
def _has_fp32_precision_api() -> bool:
    """PyTorch >= 2.9 sets TF32 per backend with ``fp32_precision``; mixing it with the legacy
    ``allow_tf32`` flags is an error there, so only one of the two APIs is ever used."""
    cudnn_conv = getattr(torch.backends.cudnn, "conv", None)
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(cudnn_conv, "fp32_precision")


def _read_flags() -> tuple[object, object]:
    if _has_fp32_precision_api():
        return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


def _write_flags(matmul: object, conv: object) -> None:
    if _has_fp32_precision_api():
        torch.backends.cuda.matmul.fp32_precision = matmul
        torch.backends.cudnn.conv.fp32_precision = conv
    else:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = conv


def tf32_flags(enabled: bool) -> tuple[object, object]:
    """The (matmul, convolution) flag values that turn TF32 on or off in this PyTorch."""
    if _has_fp32_precision_api():
        return ("tf32", "tf32") if enabled else ("ieee", "ieee")
    return enabled, enabled


def autotunes(precision: Precision) -> bool:
    """Whether the engine turns cuDNN's autotuner on for this precision (on CUDA)."""
    return precision in (Precision.FP32, Precision.TF32)


@contextlib.contextmanager
def numerics(device: torch.device, precision: Precision) -> Iterator[None]:
    """Within the block, on CUDA: TF32 matrix units for ``Precision.TF32`` only (IEEE fp32 otherwise), and
    cuDNN's autotuner for fp32 and tf32. Nothing changes on other devices."""
    if device.type != "cuda":
        yield
        return
    saved_flags, saved_benchmark = _read_flags(), torch.backends.cudnn.benchmark
    _write_flags(*tf32_flags(precision is Precision.TF32))
    if autotunes(precision):
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        _write_flags(*saved_flags)
        torch.backends.cudnn.benchmark = saved_benchmark
