"""What a checkpoint file holds: architecture variant, dimensions, parameter counts and provenance."""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from xmem.config import Architecture, ModelConfig
from xmem.model.checkpoint import (
    VALUE_CONV1_KEY,
    config_from_state_dict,
    load_state_dict_strict,
    read_safetensors,
    read_state_dict,
    recorded_inference_settings,
)
from xmem.model.network import XMem

COMPONENTS = ("key_encoder", "key_proj", "value_encoder", "decoder")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content, read in 1 MiB blocks (a checkpoint's provenance)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class CheckpointInfo:
    """A description of an XMem checkpoint file (see :func:`describe_checkpoint`)."""

    path: Path
    variant: str
    config: ModelConfig
    parameters: int
    component_parameters: dict[str, int]
    tensors: int
    dtypes: tuple[str, ...]
    file_bytes: int
    sha256: str
    modified: str  # ISO 8601, UTC
    container: str  # "state_dict", "training checkpoint (...)" or "safetensors"
    processing: str | None = None  # the size and memory interval recorded with the weights, if any

    def lines(self) -> list[str]:
        """Human-readable ``name: value`` lines."""
        c = self.config
        parts = ", ".join(f"{name} {n:,}" for name, n in self.component_parameters.items())
        return [
            f"file:        {self.path}",
            f"variant:     {self.variant}",
            f"dims:        key {c.key_dim}, value {c.value_dim}, hidden {c.hidden_dim}",
            f"parameters:  {self.parameters:,} ({parts})",
            f"tensors:     {self.tensors} ({', '.join(self.dtypes)})",
            f"format:      {self.container}",
            f"size:        {self.file_bytes:,} bytes",
            f"sha256:      {self.sha256}",
            f"modified:    {self.modified}",
            *([f"processing:  {self.processing}"] if self.processing else []),
        ]


def _variant(state: dict[str, torch.Tensor], config: ModelConfig) -> str:
    conv1 = state.get(VALUE_CONV1_KEY)
    stage0 = conv1 is not None and conv1.ndim == 4 and conv1.shape[1] == 4
    if config.architecture is Architecture.LITE:
        parts = ["XMem-Lite (EfficientNet-Lite0 key encoder, light value encoder)"]
    else:
        parts = ["XMem (ResNet-50 key encoder, ResNet-18 value encoder)"]
    if stage0:
        parts.append("single-object value encoder (stage-0 static-image pretraining)")
    else:
        parts.append("multi-object")
    parts.append("with sensory memory" if config.hidden_dim > 0 else "without sensory memory (no-sensory)")
    return ", ".join(parts)


def _processing(info: dict) -> str | None:
    """The engine settings a weights file records for itself (what ``load_model`` applies by default)."""
    size, mem_every = recorded_inference_settings(info)
    parts = []
    if size is not None:
        parts.append("input size" if size == -1 else f"shorter side {size}")
    if mem_every is not None:
        parts.append(f"memory every {mem_every} frames")
    return ", ".join(parts) + " (recorded with the weights)" if parts else None


def _pth_container(path: Path) -> str:
    """What a ``.pth`` holds around its weights: a plain state_dict or a training checkpoint."""
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
        raw = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(raw, dict) and "network" in raw:
        extra = sorted(k for k in raw if k != "network")
        it = raw.get("it")
        detail = f"iteration {it}" if isinstance(it, int) else "weights under 'network'"
        return f"training checkpoint ({detail}; also holds {', '.join(extra) or 'nothing else'})"
    return "state_dict"


def describe_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read ``path`` safely (``weights_only``), check that it loads into the XMem architecture, and
    describe it. Raises :class:`~xmem.model.checkpoint.CheckpointError` when it does not."""
    path = Path(path)
    processing = None
    if path.suffix == ".safetensors":  # one read: tensors and the recorded info
        state, _, info = read_safetensors(path)
        container, processing = "safetensors", _processing(info)
    else:
        state = read_state_dict(path)
        container = _pth_container(path)
    config = config_from_state_dict(state, source=str(path))
    model = XMem(config)
    load_state_dict_strict(model, state, source=str(path))
    components = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in COMPONENTS}
    stat = path.stat()
    modified = datetime.datetime.fromtimestamp(stat.st_mtime, tz=datetime.timezone.utc)
    return CheckpointInfo(
        path=path,
        variant=_variant(state, config),
        config=config,
        parameters=sum(p.numel() for p in model.parameters()),
        component_parameters=components,
        tensors=len(state),
        dtypes=tuple(sorted({str(t.dtype).removeprefix("torch.") for t in state.values()})),
        file_bytes=stat.st_size,
        sha256=file_sha256(path),
        modified=modified.isoformat(timespec="seconds"),
        container=container,
        processing=processing,
    )
