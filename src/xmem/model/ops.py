"""Convolutions with their ReLU / ReLU6 / residual add fused in, for inference on the CPU.

``conv2d(x, weight, bias, ..., relu=..., add=...)`` computes ``relu?(conv(x) + add)`` (``relu6=True``:
``clamp(conv(x), 0, 6)``, the activation of the MobileNet / EfficientNet-Lite blocks). On the CPU without
autograd (the inference copy runs under ``torch.inference_mode``), in fp32 or bf16, it runs as one oneDNN
convolution with the add and the activation as post-ops (ReLU6 as oneDNN's ``hardtanh`` with bounds 0 and
6, which gives the same numbers as ``F.relu6``), which saves one or two passes over the output; the numbers
are those of the unfused ops up to float rounding. Everywhere else it is the plain sequence. The weights of
a small network can be kept in oneDNN's own order for these calls (:func:`pack_convolution_weights`).

Also the layout helpers the inference path needs to stay channels-last from op to op
(:func:`channel_affine`, :func:`canonical_strides`).
"""

from __future__ import annotations

import functools
import itertools
import weakref
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

_FUSED_DTYPES = (torch.float32, torch.bfloat16)


@functools.cache
def _pointwise_ops():
    """The oneDNN fused-convolution ops of this PyTorch build, or None."""
    if not torch.backends.mkldnn.is_available():
        return None
    ops = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)
    if ops is None or not hasattr(ops, "binary"):
        return None
    return ops


@functools.cache
def _pointwise_inplace_ops():
    """oneDNN's fused convolution that writes ``conv(x) + other`` into ``other``, or None."""
    if _pointwise_ops() is None:
        return None
    ops = getattr(torch.ops.mkldnn, "_convolution_pointwise_", None)
    return ops if ops is not None and hasattr(ops, "binary") else None


@functools.cache
def _onednn_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions on this CPU (AVX-512 BW/VL/DQ or AVX-NE-CONVERT; on AVX2 alone
    it refuses, and the plain PyTorch path is taken)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype in _FUSED_DTYPES
        and (x.dtype != torch.bfloat16 or _onednn_bf16())
        and weight.dtype == x.dtype
        and x.ndim == 4
        and not torch.is_grad_enabled()
        and _pointwise_ops() is not None
    )


def _pair(v: int | tuple[int, ...]) -> list[int]:
    return [v, v] if isinstance(v, int) else list(v)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    relu: bool = False,
    relu6: bool = False,
    add: torch.Tensor | None = None,
    add_in_place: bool = False,
) -> torch.Tensor:
    """``act(conv2d(x, weight, bias) + add)`` (``add``: a tensor of the output's shape; ``act``: ReLU with
    ``relu``, ReLU6 with ``relu6`` (not with ``add``), else none).

    ``add_in_place=True`` says that nothing else uses ``add`` or shares its storage (views included: under
    ``inference_mode`` they cannot be told apart): on the fused path the result is then written into it
    (one output-sized allocation fewer, the same numbers); elsewhere it is ignored.
    """
    if relu6 and (relu or add is not None):
        raise ValueError("relu6 is fused without relu and without add")
    if _fusable(x, weight) and (add is None or (add.shape[0] == x.shape[0] and add.dtype == x.dtype)):
        ops = _pointwise_ops()
        args = (_pair(padding), _pair(stride), [1, 1], groups)
        weight = _packed(weight, x, args)
        if add is None:
            if relu6:
                return ops(x, weight, bias, *args, "hardtanh", [0.0, 6.0], "")
            return ops(x, weight, bias, *args, "relu" if relu else "none", [None], "")
        fmt = (
            torch.channels_last
            if x.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        post = ("add", None, "relu" if relu else None, [], None)
        in_place = _pointwise_inplace_ops() if add_in_place else None
        if in_place is not None and add.is_contiguous(memory_format=fmt):
            return in_place.binary(add, x, weight, bias, *args, *post)
        if fmt is torch.channels_last:
            add = add.contiguous(memory_format=torch.channels_last)
        return ops.binary(x, add, weight, bias, *args, *post)
    out = F.conv2d(x, weight, bias, stride=stride, padding=padding, groups=groups)
    if add is not None:
        out.add_(add)  # in place on a fresh output: safe under autograd too
    if relu6:
        return F.relu6(out, inplace=True)
    return F.relu(out, inplace=True) if relu else out


def conv(
    x: torch.Tensor,
    layer: nn.Conv2d,
    *,
    relu: bool = False,
    relu6: bool = False,
    add: torch.Tensor | None = None,
    add_in_place: bool = False,
) -> torch.Tensor:
    """:func:`conv2d` with the weights and geometry of ``layer`` (dilation 1)."""
    return conv2d(
        x,
        layer.weight,
        layer.bias,
        stride=layer.stride,
        padding=layer.padding,
        groups=layer.groups,
        relu=relu,
        relu6=relu6,
        add=add,
        add_in_place=add_in_place,
    )


def channel_affine(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``(x - shift) / scale`` per channel of x (…×C×H×W; ``shift``, ``scale``: C values of x's dtype).

    Images and feature maps here are stored channels-last (C varies fastest). Broadcasting a C×1×1 tensor
    over such a tensor makes C (3 for an image) the innermost loop, which runs element by element; here the
    per-channel values are tiled along a row of W·C elements instead, so that both operands run along whole
    rows with vector instructions. Same operations per element, same numbers; other layouts broadcast as
    usual.
    """
    c, w = x.shape[-3], x.shape[-1]
    hwc = x.movedim(-3, -1)  # …×H×W×C, a view
    if not hwc.is_contiguous():
        out = x - shift.view(c, 1, 1)
        return out / scale.view(c, 1, 1) if scale is not None else out
    rows = hwc.reshape(-1, w * c) - shift.repeat(w)
    if scale is not None:
        rows = rows.div_(scale.repeat(w))
    return rows.view(hwc.shape).movedim(-1, -3)


def canonical_strides(x: torch.Tensor) -> torch.Tensor:
    """``x`` (…×C×H×W) as a view with the standard channels-last strides when its memory is laid out
    channels-last already (…×H×W×C, C fastest), else ``x`` itself; never a copy.

    A channels-last tensor with a dimension of size 1 (one object, a batch of one) may carry any stride
    there, and ops that choose their output's layout from the strides (``torch.cat``, ``F.interpolate``)
    then fall back to NCHW: the next convolution reorders its input back, a copy per call. The view has
    the same elements at the same addresses.
    """
    if x.ndim < 4:
        return x
    hwc = x.movedim(-3, -1)
    if not hwc.is_contiguous():
        return x
    return hwc.reshape(-1).view(hwc.shape).movedim(-1, -3)


def cat_channels(*tensors: torch.Tensor) -> torch.Tensor:
    """``torch.cat(tensors, dim=1)`` of B×C×H×W tensors, channels-last when they all are (see
    :func:`canonical_strides`)."""
    return torch.cat([canonical_strides(t) for t in tensors], dim=1)


# -- weights in oneDNN's order ---------------------------------------------------------------------------------
PACK_LIMIT_BYTES = 64 << 20  # networks whose convolution weights take more stay unpacked (memory)
PACKED_SHAPES = 4  # packed copies kept per weight (one per input shape; the oldest goes)


@dataclass
class _Packed:
    # the weight's storage, dtype and version counter when packed: a change of any (``.data`` replaced by
    # ``Module.to``, an in-place write) invalidates the copies
    state: tuple[int, torch.dtype, int]
    by_input: dict[tuple, torch.Tensor] = field(default_factory=dict)


def _state(weight: torch.Tensor) -> tuple[int, torch.dtype, int]:
    # tensors made under inference_mode have no version counter (nor can they change outside it)
    return weight.data_ptr(), weight.dtype, -1 if weight.is_inference() else weight._version


_PACKED: dict[int, _Packed] = {}  # by id() of the weight, removed when the weight is freed


@functools.cache
def _reorder_op():
    ops = _pointwise_ops()
    return getattr(torch.ops.mkldnn, "_reorder_convolution_weight", None) if ops is not None else None


def pack_convolution_weights(module: nn.Module) -> bool:
    """Let the fused convolutions of ``module`` run on copies of its weights in oneDNN's own blocked order.

    Otherwise oneDNN reorders every weight on every call: 60 reorders, about 2 ms, of each 480-row frame of
    the default model, and the calls themselves are 20-30% slower on its small feature maps. The order
    depends on the input's shape, so a copy is made on the first call with each shape (up to
    :data:`PACKED_SHAPES` per weight) and dropped when the weight changes in place. Only for a network whose
    convolution weights take at most :data:`PACK_LIMIT_BYTES` (the copies double them; the official
    network's 240 MB in fp32 are left alone, as their reorders are a small part of its far larger
    convolutions). The results are bit-identical. Returns whether the weights will be packed.
    """
    reorder = _reorder_op()
    weights = [
        t
        for t in itertools.chain(module.parameters(), module.buffers())
        if t.ndim == 4 and t.is_floating_point() and t.device.type == "cpu"
    ]
    if (
        reorder is None
        or not weights
        or sum(t.numel() * t.element_size() for t in weights) > PACK_LIMIT_BYTES
    ):
        return False
    for w in weights:
        if id(w) not in _PACKED:
            _PACKED[id(w)] = _Packed(_state(w))
            weakref.finalize(w, _PACKED.pop, id(w), None)
    return True


def _packed(weight: torch.Tensor, x: torch.Tensor, args: tuple) -> torch.Tensor:
    """The packed copy of ``weight`` for this input shape and geometry, or ``weight`` itself when it is not
    one of :func:`pack_convolution_weights`' weights."""
    entry = _PACKED.get(id(weight))
    if entry is None:
        return weight
    if entry.state != _state(weight):
        entry.state, entry.by_input = _state(weight), {}
    padding, stride, dilation, groups = args
    key = (*x.shape, *padding, *stride, *dilation, groups)  # what the packed order is chosen from
    packed = entry.by_input.get(key)
    if packed is None:
        packed = _reorder_op()(weight, padding, stride, dilation, groups, list(x.shape))
        if len(entry.by_input) >= PACKED_SHAPES:
            entry.by_input.pop(next(iter(entry.by_input)))
        entry.by_input[key] = packed
    return packed
