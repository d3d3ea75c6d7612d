"""Typed settings: the model's dimensions, the memory, and inference.

All configs are frozen dataclasses: they are data, never mutated by the code that receives them.
Use :func:`dataclasses.replace` to derive a variant.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch


class Precision(enum.Enum):
    """Numeric precision of the networks at inference (memory reading always runs in fp32).

    ``AUTO`` (the default) is ``BF16`` where the device has native bf16 matrix units (CPUs with AMX-BF16
    or AVX-512 BF16, CUDA GPUs from Ampere on) and ``FP32`` elsewhere
    (:func:`xmem.inference.precision.choose_precision`); the engine resolves it when it starts.
    ``FP32`` is IEEE fp32 on every device (on CUDA the engine turns off the TF32 convolutions that
    PyTorch uses by default there); ``TF32`` keeps fp32 tensors but lets CUDA GPUs from Ampere on use
    their TF32 matrix units for the networks' convolutions and products (elsewhere it is ``FP32``);
    ``BF16`` and ``FP16`` run the networks in those types.
    """

    AUTO = "auto"
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"
    FP16 = "fp16"

    @property
    def dtype(self) -> torch.dtype:
        if self is Precision.AUTO:
            raise ValueError("precision auto has no dtype until it is resolved for a device")
        return {
            Precision.FP32: torch.float32,
            Precision.TF32: torch.float32,
            Precision.BF16: torch.bfloat16,
            Precision.FP16: torch.float16,
        }[self]


class Architecture(enum.Enum):
    """The network around the memory engine.

    ``XMEM``: the official network (ResNet-50 key encoder, ResNet-18 value encoder, decoder widths 512 /
    256 / 256); loads the released checkpoints. ``LITE``: an EfficientNet-Lite0 key encoder up to stride 16,
    a light MobileNet-like value encoder and a narrower decoder, for the CPU (docs/LITE.md). Both have the
    same interface, memory and decoder design.
    """

    XMEM = "xmem"
    LITE = "lite"


# Defaults of the lite architecture (chosen for speed on a 2-core CPU at 480p: docs/LITE.md).
LITE_KEY_DIM = 32
LITE_VALUE_DIM = 128
LITE_HIDDEN_DIM = 32
LITE_DECODER_DIMS = (64, 32, 32)
LITE_VALUE_ENCODER_DIMS = (16, 32, 64, 128)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and dimensions of the network (read from a checkpoint by :func:`xmem.load_model`).

    ``key_dim`` / ``value_dim`` / ``hidden_dim`` left at ``None`` take the architecture's default (64 / 512 /
    64 for ``XMEM``, the lite defaults above for ``LITE``); ``hidden_dim=0`` is a network without sensory
    memory.
    ``decoder_dims`` (decoder widths at strides 16 / 8 / 4) and ``value_encoder_dims`` (value encoder widths
    at strides 2 / 4 / 8 / 16) exist for ``LITE`` only: the official network's widths are fixed, and they
    stay ``None`` for ``XMEM``.

    ``single_object`` models (stage-0 checkpoints) take 4 input channels in the value encoder; they are
    loaded into the 5-channel multi-object layout with a zero channel appended, so a constructed network
    is always multi-object.
    """

    architecture: Architecture = Architecture.XMEM
    key_dim: int | None = None
    value_dim: int | None = None
    hidden_dim: int | None = None
    decoder_dims: tuple[int, int, int] | None = None
    value_encoder_dims: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, Architecture):
            raise TypeError(f"architecture must be an Architecture, got {self.architecture!r}")
        lite = self.architecture is Architecture.LITE
        if self.key_dim is None:
            object.__setattr__(self, "key_dim", LITE_KEY_DIM if lite else 64)
        if self.value_dim is None:
            object.__setattr__(self, "value_dim", LITE_VALUE_DIM if lite else 512)
        if self.hidden_dim is None:
            object.__setattr__(self, "hidden_dim", LITE_HIDDEN_DIM if lite else 64)
        for name, default, size in (
            ("decoder_dims", LITE_DECODER_DIMS, 3),
            ("value_encoder_dims", LITE_VALUE_ENCODER_DIMS, 4),
        ):
            value = getattr(self, name)
            if not lite:
                if value is not None:
                    raise ValueError(
                        f"{name} is for the lite architecture only (the official widths are fixed)"
                    )
                continue
            value = default if value is None else tuple(int(v) for v in value)
            if len(value) != size or any(v <= 0 for v in value):
                raise ValueError(f"{name} must be {size} positive widths, got {value}")
            object.__setattr__(self, name, value)
        assert self.key_dim is not None and self.value_dim is not None and self.hidden_dim is not None
        if self.key_dim <= 0 or self.value_dim <= 0 or self.hidden_dim < 0:
            raise ValueError(f"invalid model dimensions: {self}")


DEFAULT_MEM_EVERY = 5  # the paper's memory frame interval


@dataclass(frozen=True)
class MemoryConfig:
    """The memory design of the paper, with its defaults (Section 4 and REFERENCE.md §4).

    ``mem_every`` (a memory frame every N frames) left ``None`` takes the value the network's weights were
    made for (:attr:`XMem.inference_mem_every`, e.g. 2 for the embedded default model), else the paper's
    :data:`DEFAULT_MEM_EVERY`. ``long_term=False`` keeps every memory frame in working memory (no
    consolidation: memory grows with the video, as in STCN; for ablations). ``deep_update`` refreshes the
    sensory memory with the value encoder on every memory frame.
    """

    mem_every: int | None = None
    top_k: int = 30
    min_working_frames: int = 5
    max_working_frames: int = 10
    num_prototypes: int = 128
    max_long_term_elements: int = 10000
    long_term: bool = True
    deep_update: bool = True

    def __post_init__(self) -> None:
        if self.mem_every is not None and self.mem_every < 1:
            raise ValueError(f"mem_every must be >= 1, got {self.mem_every}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if not 1 <= self.min_working_frames < self.max_working_frames:
            raise ValueError(
                "need 1 <= min_working_frames < max_working_frames, got "
                f"{self.min_working_frames} and {self.max_working_frames}"
            )
        if self.num_prototypes < 1:
            raise ValueError(f"num_prototypes must be >= 1, got {self.num_prototypes}")
        if self.max_long_term_elements < self.num_prototypes:
            raise ValueError(
                f"max_long_term_elements ({self.max_long_term_elements}) must be at least "
                f"num_prototypes ({self.num_prototypes})"
            )


DEFAULT_SIZE = 480  # the paper's processing size (shorter side)


@dataclass(frozen=True)
class InferenceConfig:
    """How a video is processed.

    ``size`` is the length of the shorter side frames are resized to before processing (-1 keeps the
    input size; ``None``: the size the network's weights were made for, :attr:`XMem.inference_size`, e.g.
    240 for the embedded default model, else :data:`DEFAULT_SIZE`, the paper's 480); outputs are always
    returned at the input size. ``device`` is ``"cpu"``, ``"cuda"``,
    ``"cuda:N"``, ``"mps"`` or ``"auto"`` (CUDA, then MPS, then CPU).

    ``compile`` runs the networks through :func:`torch.compile` (TorchInductor; for CUDA GPUs: the first
    frames of a video, and the first frames after the number of objects changes, wait for a compilation
    of tens of seconds; the masks are those of the eager networks up to float rounding).
    """

    memory: MemoryConfig = field(default_factory=MemoryConfig)
    size: int | None = None
    precision: Precision = Precision.AUTO
    device: str = "auto"
    compile: bool = False

    def __post_init__(self) -> None:
        if self.size is not None and self.size != -1 and self.size < 16:
            raise ValueError(f"size must be -1 or at least 16, got {self.size}")
        if not isinstance(self.precision, Precision):
            raise TypeError(f"precision must be a Precision, got {self.precision!r}")


def resolve_device(name: str) -> torch.device:
    """Turn ``"auto"`` / ``"cpu"`` / ``"cuda[:N]"`` / ``"mps"`` into an available :class:`torch.device`.

    Raises ``ValueError`` with a clear message when the device is not available here.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r} (use cpu, cuda, cuda:N, mps or auto)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} is not available: no CUDA GPU visible to torch")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} is not available: {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"device {name!r} is not available: MPS is not supported on this machine")
    elif device.type != "cpu":
        raise ValueError(f"unsupported device {name!r} (use cpu, cuda, cuda:N, mps or auto)")
    return device
