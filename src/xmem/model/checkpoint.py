"""Loading the released XMem checkpoints (``XMem.pth`` and its variants) strictly and safely."""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

from xmem.config import Architecture, ModelConfig
from xmem.configio import ConfigError, build, to_dict
from xmem.io.atomic import atomic_write
from xmem.model.network import XMem
from xmem.weights import default_weights_path

SAFETENSORS_CONFIG_KEY = "xmem_model_config"
SAFETENSORS_INFO_KEY = "xmem_info"

KEY_DIM_KEY = "key_proj.key_proj.weight"
VALUE_DIM_KEY = "value_encoder.fuser.block2.conv2.weight"
HIDDEN_KEY = "decoder.hidden_update.transform.weight"
VALUE_CONV1_KEY = "value_encoder.conv1.weight"
LITE_STEM_KEY = "key_encoder._conv_stem.weight"  # only the lite architecture has it
LITE_DECODER_KEYS = (
    "decoder.fuser.block2.conv2.weight",
    "decoder.up_16_8.out_conv.conv2.weight",
    "decoder.up_8_4.out_conv.conv2.weight",
)
LITE_VALUE_ENCODER_KEYS = (
    VALUE_CONV1_KEY,
    "value_encoder.blocks.0._project_conv.weight",
    "value_encoder.blocks.1._project_conv.weight",
    "value_encoder.blocks.2._project_conv.weight",
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be loaded into the XMem architecture."""


def _summarise(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state_dict from a ``.pth`` file without executing code (``weights_only=True``, on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" in str(exc).lower():
            raise CheckpointError(
                f"{path}: refused to load: unpickling it would run code or build objects other than plain "
                "tensors (only weights are accepted)"
            ) from exc
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (corrupt or not a .pth file)"
        ) from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({str(exc).splitlines()[0]})"
        ) from exc
    if isinstance(state, Mapping) and "network" in state and isinstance(state["network"], Mapping):
        state = state["network"]  # training checkpoints of the reference code wrap the weights
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state_dict (expected a mapping of names to tensors)")
    return dict(state)


def config_from_state_dict(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> ModelConfig:
    """Read the architecture and its dims from the checkpoint's tensors (never assumed): the official
    architecture's released checkpoints, or a lite network's state_dict (recognised by its EfficientNet
    stem)."""
    lite = LITE_STEM_KEY in state
    needed = (KEY_DIM_KEY, VALUE_DIM_KEY) + ((*LITE_DECODER_KEYS, *LITE_VALUE_ENCODER_KEYS) if lite else ())
    for key in needed:
        if key not in state:
            raise CheckpointError(f"{source}: not an XMem checkpoint: missing key {key!r}")
    hidden = state.get(HIDDEN_KEY)
    dims = dict(
        key_dim=state[KEY_DIM_KEY].shape[0],
        value_dim=state[VALUE_DIM_KEY].shape[0],
        hidden_dim=0 if hidden is None else hidden.shape[0] // 3,
    )
    if not lite:
        return ModelConfig(**dims)
    return ModelConfig(
        architecture=Architecture.LITE,
        decoder_dims=tuple(state[k].shape[0] for k in LITE_DECODER_KEYS),  # type: ignore[arg-type]
        value_encoder_dims=tuple(state[k].shape[0] for k in LITE_VALUE_ENCODER_KEYS),  # type: ignore[arg-type]
        **dims,
    )


def load_state_dict_strict(
    model: XMem, state: Mapping[str, torch.Tensor], source: str = "checkpoint", *, assign: bool = False
) -> None:
    """Load ``state`` into ``model``, accepting a stage-0 (4-channel) value encoder; any other mismatch
    raises :class:`CheckpointError` naming the missing, unexpected and mis-shaped keys.

    ``assign=True`` makes the state's tensors the model's (converted to the model's dtypes where they
    differ) instead of copying them: for a model built on the meta device, which then never holds a
    second set of weights."""
    state = dict(state)
    conv1 = state.get(VALUE_CONV1_KEY)
    expected = model.state_dict()
    if (
        conv1 is not None
        and conv1.ndim == 4
        and conv1.shape[1] == 4
        and expected[VALUE_CONV1_KEY].shape[1] == 5
    ):
        # stage-0 (single-object) checkpoint: no "other objects" channel; append a zero channel
        state[VALUE_CONV1_KEY] = torch.cat([conv1, torch.zeros_like(conv1[:, :1])], dim=1)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    problems = []
    if missing:
        problems.append(f"missing keys: {_summarise(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_summarise(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys: {_summarise(misshaped)}")
    if problems:
        raise CheckpointError(f"{source}: does not match the XMem architecture: " + "; ".join(problems))
    if assign:
        state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=assign)


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """Weights, model config and provenance (``info``) of an xmem ``.safetensors`` file."""
    state, config, info = _read_safetensors(path, tensors=True)
    assert state is not None
    return state, config, info


def read_safetensors_info(path: str | Path) -> tuple[ModelConfig, dict]:
    """Model config and provenance (``info``) of an xmem ``.safetensors`` file, without reading its tensors."""
    _, config, info = _read_safetensors(path, tensors=False)
    return config, info


def _read_safetensors(
    path: str | Path, *, tensors: bool
) -> tuple[dict[str, torch.Tensor] | None, ModelConfig, dict]:
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()} if tensors else None  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc})") from None
    if SAFETENSORS_CONFIG_KEY not in metadata:
        raise CheckpointError(f"{path}: no xmem model config in the file's metadata (not written by xmem?)")
    try:
        config = build(ModelConfig, json.loads(metadata[SAFETENSORS_CONFIG_KEY]))  # enums by value
        info = json.loads(metadata.get(SAFETENSORS_INFO_KEY, "{}"))
    except (ConfigError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable model config in the metadata ({exc})") from None
    return state, config, info


def save_weights(
    model: XMem, path: str | Path, info: Mapping | None = None, *, dtype: torch.dtype | None = None
) -> None:
    """Write the network's weights as ``.safetensors`` (model config and ``info`` in its metadata), and the
    same config and info as a JSON file next to it; both atomically. ``dtype`` (e.g. ``torch.float16``)
    converts the floating-point tensors; integer buffers keep theirs."""
    from safetensors.torch import save

    path = Path(path)
    config = json.dumps(to_dict(model.config))  # the architecture by its value
    info_json = json.dumps(dict(info or {}), default=str)
    tensors = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    blob = save(tensors, metadata={SAFETENSORS_CONFIG_KEY: config, SAFETENSORS_INFO_KEY: info_json})
    with atomic_write(path) as f:
        f.write(blob)
    sidecar = {"model": to_dict(model.config), "info": json.loads(info_json)}
    with atomic_write(path.with_suffix(".json"), "w") as f:
        json.dump(sidecar, f, indent=2)


def export_released_format(model: XMem, path: str | Path) -> None:
    """Write the weights as a plain ``state_dict`` ``.pth`` in the layout of the released checkpoints."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_write(path) as f:
        torch.save(state, f)


def _read_any(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """Weights, model config and provenance (``info``; empty for a ``.pth``) of either kind of file."""
    if Path(path).suffix == ".safetensors":
        return read_safetensors(path)
    state = read_state_dict(path)
    return state, config_from_state_dict(state, source=str(path)), {}


def recorded_inference_settings(info: Mapping) -> tuple[int | None, int | None]:
    """The processing size and memory frame interval a weights file records for itself (``info`` of
    :func:`read_safetensors`), each None where absent or invalid."""
    size, mem_every = info.get("inference_size"), info.get("inference_mem_every")
    valid_size = isinstance(size, int) and (size == -1 or size >= 16)
    valid_mem_every = isinstance(mem_every, int) and mem_every >= 1
    return (size if valid_size else None), (mem_every if valid_mem_every else None)


def load_weights_into(model: XMem, path: str | Path) -> None:
    """Load weights from a ``.safetensors`` or ``.pth`` file into an existing network, strictly."""
    state, _, _ = _read_any(path)
    load_state_dict_strict(model, state, source=str(path))


class _SkipMetaInitialisation(TorchFunctionMode):
    """Skips the in-place operations on meta tensors (the initialisers: ``normal_``, ``uniform_``,
    ``fill_``, ``zero_``...) while a network is built on the meta device. They would compute nothing, yet
    their meta kernels import torch's decomposition machinery: about 900 modules, 150 MB and a second."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        in_place = name.endswith("_") and not name.endswith("__")
        if in_place and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


def _network_without_weights(config: ModelConfig) -> XMem:
    """An XMem whose parameters are shapes only (meta device), for :func:`load_state_dict_strict` with
    ``assign=True``: no memory, no random initialisation, no second copy of the weights."""
    with torch.device("meta"), _SkipMetaInitialisation():
        return XMem(config)


def load_model(path: str | Path | None = None, *, device: str | torch.device = "cpu") -> XMem:
    """Load an XMem network from a released checkpoint (e.g. ``XMem.pth``) or an xmem ``.safetensors``
    file, in eval mode; without ``path``, the embedded default model (XMem-Lite trained by this project,
    :mod:`xmem.weights`). Weights stored in fp16 are loaded into fp32 parameters.

    Dimensions are read from the file; stage-0 and no-sensory checkpoints are accepted. A corrupt or
    mismatched file raises :class:`CheckpointError` with one clear message; a pickle that would need code
    execution is refused.
    """
    if path is None:
        path = default_weights_path()
        if not path.is_file():
            raise CheckpointError(
                f"the embedded default model is missing from this installation ({path}); reinstall xmem-vos "
                "or pass the path of a checkpoint (e.g. XMem.pth)"
            )
    state, config, info = _read_any(path)
    model = _network_without_weights(config)
    load_state_dict_strict(model, state, source=str(path), assign=True)  # the file's tensors are the weights
    del state
    unset = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if unset:  # a constant computed in __init__ without an explicit device would be left without values
        raise RuntimeError(f"load_model: tensors left on the meta device: {', '.join(unset)}")
    model.inference_size, model.inference_mem_every = recorded_inference_settings(info)
    return model.eval().to(device)
