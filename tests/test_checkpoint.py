"""Loading released checkpoints: the official key layout, dims read from the file, stage-0 and
no-sensory variants, wrapped training checkpoints, and one clear error for every bad file."""

from __future__ import annotations

import os
import pickle
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import xmem
from xmem.config import ModelConfig
from xmem.model.golden import golden_rule_state_dict
from xmem.model.network import XMem

# REFERENCE.md §1, default dims 64 / 512 / 64.
OFFICIAL_SHAPES = {
    "key_encoder.conv1.weight": (64, 3, 7, 7),
    "key_encoder.res2.0.downsample.0.weight": (256, 64, 1, 1),
    "key_encoder.res2.0.downsample.1.running_var": (256,),
    "key_encoder.layer2.3.conv3.weight": (512, 128, 1, 1),
    "key_encoder.layer3.5.bn3.weight": (1024,),
    "key_proj.key_proj.weight": (64, 1024, 3, 3),
    "key_proj.key_proj.bias": (64,),
    "key_proj.d_proj.weight": (1, 1024, 3, 3),
    "key_proj.e_proj.weight": (64, 1024, 3, 3),
    "value_encoder.conv1.weight": (64, 5, 7, 7),
    "value_encoder.layer2.0.downsample.0.weight": (128, 64, 1, 1),
    "value_encoder.layer3.0.downsample.0.weight": (256, 128, 1, 1),
    "value_encoder.layer3.1.conv2.weight": (256, 256, 3, 3),
    "value_encoder.fuser.block1.conv1.weight": (512, 1280, 3, 3),
    "value_encoder.fuser.block1.conv1.bias": (512,),
    "value_encoder.fuser.block1.conv2.weight": (512, 512, 3, 3),
    "value_encoder.fuser.block1.downsample.weight": (512, 1280, 3, 3),
    "value_encoder.fuser.block1.downsample.bias": (512,),
    "value_encoder.fuser.attention.ChannelGate.mlp.1.weight": (32, 512),
    "value_encoder.fuser.attention.ChannelGate.mlp.1.bias": (32,),
    "value_encoder.fuser.attention.ChannelGate.mlp.3.weight": (512, 32),
    "value_encoder.fuser.attention.SpatialGate.spatial.conv.weight": (1, 2, 7, 7),
    "value_encoder.fuser.attention.SpatialGate.spatial.conv.bias": (1,),
    "value_encoder.fuser.block2.conv1.weight": (512, 512, 3, 3),
    "value_encoder.fuser.block2.conv2.weight": (512, 512, 3, 3),
    "value_encoder.hidden_reinforce.transform.weight": (192, 576, 3, 3),
    "value_encoder.hidden_reinforce.transform.bias": (192,),
    "decoder.fuser.block1.conv1.weight": (512, 1600, 3, 3),
    "decoder.fuser.block1.downsample.weight": (512, 1600, 3, 3),
    "decoder.fuser.attention.ChannelGate.mlp.1.weight": (32, 512),
    "decoder.hidden_update.g16_conv.weight": (256, 512, 1, 1),
    "decoder.hidden_update.g8_conv.weight": (256, 256, 1, 1),
    "decoder.hidden_update.g4_conv.weight": (256, 257, 1, 1),
    "decoder.hidden_update.g4_conv.bias": (256,),
    "decoder.hidden_update.transform.weight": (192, 320, 3, 3),
    "decoder.up_16_8.skip_conv.weight": (512, 512, 3, 3),
    "decoder.up_16_8.out_conv.conv1.weight": (256, 512, 3, 3),
    "decoder.up_16_8.out_conv.downsample.weight": (256, 512, 3, 3),
    "decoder.up_8_4.skip_conv.weight": (256, 256, 3, 3),
    "decoder.up_8_4.out_conv.conv1.weight": (256, 256, 3, 3),
    "decoder.up_8_4.out_conv.conv2.weight": (256, 256, 3, 3),
    "decoder.pred.weight": (1, 256, 3, 3),
    "decoder.pred.bias": (1,),
}

SUBMODULE_MILLIONS = {"key_encoder": 8.54, "value_encoder": 22.69, "key_proj": 1.19, "decoder": 29.76}


@pytest.fixture(scope="module")
def official_model() -> XMem:
    return XMem()


@pytest.fixture(scope="module")
def official_state(official_model: XMem) -> dict[str, torch.Tensor]:
    return official_model.state_dict()


@pytest.fixture(scope="module")
def golden_state() -> dict[str, torch.Tensor]:
    """The golden-rule state dict (default dims); tests copy it before changing it."""
    return golden_rule_state_dict()


@pytest.fixture(scope="module")
def golden_path(
    tmp_path_factory: pytest.TempPathFactory, golden_state: dict[str, torch.Tensor]
) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("ckpt") / "XMem.pth"
    torch.save(golden_state, path)
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(autouse=True)
def _remove_checkpoints(tmp_path: Path) -> Iterator[None]:
    """Full-size checkpoints are 250 MB each: do not leave them in pytest's retained temp dirs."""
    yield
    for path in tmp_path.glob("*.pth"):
        path.unlink()


def _save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def _load_error(path: Path) -> str:
    """Load ``path``, expect a CheckpointError naming the file, return its message."""
    with pytest.raises(xmem.CheckpointError) as info:
        xmem.load_model(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


def _shape_text(shape: tuple[int, ...]) -> str:
    return ", ".join(str(s) for s in shape)


# --------------------------------------------------------------------------------------------------
# 1. The official layout


def test_official_layout_key_and_parameter_counts(official_model: XMem, official_state: dict) -> None:
    """412 keys (58 num_batches_tracked), 62,185,224 parameters, no layer4/fc keys."""
    keys = list(official_state)
    assert len(keys) == 412
    assert sum(k.endswith("num_batches_tracked") for k in keys) == 58
    assert sum(p.numel() for _, p in official_model.named_parameters()) == 62_185_224
    assert not [k for k in keys if "layer4" in k or "fc." in k]
    assert {k.split(".")[0] for k in keys} == set(SUBMODULE_MILLIONS)


@pytest.mark.parametrize(("name", "millions"), SUBMODULE_MILLIONS.items())
def test_official_layout_submodule_parameter_counts(official_model: XMem, name: str, millions: float) -> None:
    """Each of the four submodules has the published parameter count (to 0.01M)."""
    count = sum(p.numel() for p in getattr(official_model, name).parameters())
    assert count / 1e6 == pytest.approx(millions, abs=0.005)


@pytest.mark.parametrize(("key", "shape"), OFFICIAL_SHAPES.items())
def test_official_layout_shapes(official_state: dict, key: str, shape: tuple[int, ...]) -> None:
    """Spot-checked keys of REFERENCE §1 exist with the published shapes."""
    assert key in official_state
    assert tuple(official_state[key].shape) == shape


def test_official_layout_structure(official_state: dict) -> None:
    """Stage names (res2 in the key encoder), which residual blocks have a downsample, biases in fusion."""
    keys = set(official_state)
    assert not any(k.startswith("key_encoder.layer1.") for k in keys)
    assert {k.split(".")[2] for k in keys if k.startswith("key_encoder.layer3.")} == {
        str(i) for i in range(6)
    }
    assert {k.split(".")[2] for k in keys if k.startswith("key_encoder.layer2.")} == {
        str(i) for i in range(4)
    }
    assert {k.split(".")[2] for k in keys if k.startswith("value_encoder.layer1.")} == {"0", "1"}
    assert not any(k.startswith("value_encoder.layer1.0.downsample") for k in keys)
    assert not any(k.startswith("decoder.up_8_4.out_conv.downsample") for k in keys)
    assert not any(".block2.downsample" in k for k in keys)
    assert "value_encoder.conv1.bias" not in keys and "key_encoder.conv1.bias" not in keys
    for fuser in ("value_encoder.fuser", "decoder.fuser"):
        for conv in ("block1.conv1", "block1.conv2", "block1.downsample", "block2.conv1", "block2.conv2"):
            assert f"{fuser}.{conv}.bias" in keys


# --------------------------------------------------------------------------------------------------
# 2-4, 6. Loading


def test_load_golden_checkpoint(golden_path: Path, golden_state: dict) -> None:
    """load_model returns an XMem in eval mode holding exactly the file's tensors, dims 64/512/64."""
    model = xmem.load_model(golden_path)
    assert isinstance(model, xmem.XMem)
    assert not any(m.training for m in model.modules())
    assert model.config == ModelConfig(key_dim=64, value_dim=512, hidden_dim=64)
    loaded = model.state_dict()
    assert set(loaded) == set(golden_state)
    for key, tensor in golden_state.items():
        assert loaded[key].dtype == tensor.dtype, key
        assert torch.equal(loaded[key], tensor), key


def test_dims_are_read_from_the_checkpoint(tmp_path: Path) -> None:
    """A 32/256/16 checkpoint loads as a 32/256/16 network with the file's weights."""
    state = XMem(ModelConfig(key_dim=32, value_dim=256, hidden_dim=16)).state_dict()
    model = xmem.load_model(_save(state, tmp_path / "small.pth"))
    assert model.config == ModelConfig(key_dim=32, value_dim=256, hidden_dim=16)
    assert tuple(model.state_dict()["decoder.hidden_update.transform.weight"].shape) == (48, 256 + 16, 3, 3)
    for key in ("key_proj.key_proj.weight", "value_encoder.fuser.block2.conv2.weight", "decoder.pred.weight"):
        assert torch.equal(model.state_dict()[key], state[key])


def test_no_sensory_checkpoint(tmp_path: Path) -> None:
    """hidden_dim 0: no hidden_update/hidden_reinforce keys, a 1536-channel decoder fuser; loads as hidden 0."""
    state = XMem(ModelConfig(hidden_dim=0)).state_dict()
    assert not [k for k in state if "hidden_update" in k or "hidden_reinforce" in k]
    assert state["decoder.fuser.block1.conv1.weight"].shape[1] == 1536
    assert state["decoder.fuser.block1.downsample.weight"].shape[1] == 1536
    model = xmem.load_model(_save(state, tmp_path / "XMem-no-sensory.pth"))
    assert model.config == ModelConfig(key_dim=64, value_dim=512, hidden_dim=0)
    assert model.decoder.hidden_update is None
    assert model.value_encoder.hidden_reinforce is None


def test_stage0_checkpoint_gets_a_zero_channel(tmp_path: Path, golden_state: dict) -> None:
    """A [64,4,7,7] value conv1 loads as [64,5,7,7]: the file's 4 channels, then zeros."""
    state = dict(golden_state)
    conv1 = torch.randn(64, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    state["value_encoder.conv1.weight"] = conv1
    model = xmem.load_model(_save(state, tmp_path / "stage0.pth"))
    loaded = model.value_encoder.conv1.weight
    assert tuple(loaded.shape) == (64, 5, 7, 7)
    assert torch.equal(loaded[:, :4], conv1)
    assert torch.equal(loaded[:, 4], torch.zeros(64, 7, 7))


def test_wrapped_training_checkpoint(tmp_path: Path, golden_state: dict) -> None:
    """A training checkpoint {'it', 'network', 'optimizer'} loads its 'network' weights."""
    wrapped = {
        "it": 1000,
        "network": golden_state,
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
    }
    model = xmem.load_model(_save(wrapped, tmp_path / "train.pth"))
    loaded = model.state_dict()
    assert set(loaded) == set(golden_state)
    for key in ("key_encoder.conv1.weight", "decoder.pred.bias", "value_encoder.bn1.running_var"):
        assert torch.equal(loaded[key], golden_state[key])


def test_load_without_a_path_is_the_embedded_model_not_a_random_network() -> None:
    """No path: the weights shipped in the package (tests/test_default_model.py), never a silently random
    network."""
    from xmem.model.checkpoint import read_safetensors
    from xmem.weights import default_weights_path

    shipped, _, _ = read_safetensors(default_weights_path())
    loaded = xmem.load_model(None).state_dict()
    assert set(loaded) == set(shipped)
    assert all(torch.equal(loaded[k], shipped[k].to(loaded[k].dtype)) for k in shipped)


def test_weights_become_the_files_tensors_in_fp32_and_trainable(tmp_path: Path, golden_state: dict) -> None:
    """The network is built without weights (meta device) and takes the file's tensors: fp16 files give
    fp32 parameters of the same values, every parameter is trainable, and the constants the network computes
    itself (the Lite encoder's input shift, non-persistent) equal those of a network built normally."""
    half = {k: v.half() if v.is_floating_point() else v for k, v in golden_state.items()}
    model = xmem.load_model(_save(half, tmp_path / "half.pth"))
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32 and p.requires_grad and p.device.type == "cpu", name
        assert torch.equal(p, half[name].float()), name
    lite = xmem.load_model(None)
    built = XMem(lite.config)
    constants = [name for name, _ in built.named_buffers() if name not in built.state_dict()]
    assert any(name.endswith("input_shift") for name in constants)
    loaded, fresh = dict(lite.named_buffers()), dict(built.named_buffers())
    assert all(torch.equal(loaded[name], fresh[name]) for name in constants)


# --------------------------------------------------------------------------------------------------
# 5. Errors


def test_checkpoint_error_is_a_value_error() -> None:
    """CheckpointError subclasses ValueError and is exported from xmem and xmem.model."""
    assert issubclass(xmem.CheckpointError, ValueError)
    assert xmem.model.CheckpointError is xmem.CheckpointError


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist (or a directory) is reported as not found."""
    assert "not found" in _load_error(tmp_path / "nope" / "XMem.pth")
    assert "not found" in _load_error(tmp_path)


def test_random_bytes(tmp_path: Path) -> None:
    """A file of random bytes raises a CheckpointError naming the file (no crash, no other exception)."""
    path = tmp_path / "random.pth"
    path.write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(1)).byte().numpy().tobytes()
    )
    _load_error(path)


@pytest.mark.parametrize(
    "content",
    [b"<!DOCTYPE html><html><body>Quota exceeded</body></html>\n", bytes(range(256)) * 16],
    ids=["html-page", "byte-ramp"],
)
def test_corrupt_file_is_not_reported_as_code_execution(tmp_path: Path, content: bytes) -> None:
    """A corrupt file is reported as unreadable, not misdiagnosed as a pickle needing code execution."""
    path = tmp_path / "XMem.pth"
    path.write_bytes(content)
    message = _load_error(path)
    assert "needs code execution" not in message
    assert re.search(r"not a readable|corrupt|unreadable|invalid", message), message


@pytest.mark.parametrize("keep", ["head", "all-but-tail"])
def test_truncated_checkpoint(tmp_path: Path, golden_path: Path, keep: str) -> None:
    """A real checkpoint cut short (a partial download) is reported as unreadable."""
    path = tmp_path / "XMem.pth"
    shutil.copyfile(golden_path, path)
    size = path.stat().st_size
    os.truncate(path, 1 << 20 if keep == "head" else size - 1024)
    assert "not a readable" in _load_error(path)


@pytest.mark.parametrize(
    "obj",
    [[torch.zeros(3)], torch.zeros(3), {"a": 1}, {"network": [torch.zeros(1)]}],
    ids=["list", "tensor", "dict-of-int", "network-list"],
)
def test_not_a_state_dict(tmp_path: Path, obj: object) -> None:
    """A readable file that is not a mapping of names to tensors is reported as not a state_dict."""
    assert "not a state_dict" in _load_error(_save(obj, tmp_path / "x.pth"))


@pytest.mark.parametrize(
    "key", ["decoder.pred.bias", "value_encoder.layer3.1.bn2.running_mean", "key_proj.key_proj.weight"]
)
def test_missing_key(tmp_path: Path, golden_state: dict, key: str) -> None:
    """A checkpoint without one key is refused; the message names that key."""
    state = {k: v for k, v in golden_state.items() if k != key}
    message = _load_error(_save(state, tmp_path / "missing.pth"))
    assert "missing" in message
    assert key in message


def test_unexpected_key(tmp_path: Path, golden_state: dict) -> None:
    """A checkpoint with an extra key is refused; the message names it."""
    state = dict(golden_state)
    state["key_encoder.layer4.0.conv1.weight"] = torch.zeros(512, 1024, 1, 1)
    message = _load_error(_save(state, tmp_path / "extra.pth"))
    assert "unexpected" in message
    assert "key_encoder.layer4.0.conv1.weight" in message


def test_misshaped_key(tmp_path: Path, golden_state: dict) -> None:
    """A key of the wrong shape is refused; the message names it with both shapes."""
    state = dict(golden_state)
    state["decoder.pred.weight"] = torch.zeros(1, 256, 5, 5)
    message = _load_error(_save(state, tmp_path / "shape.pth"))
    assert "decoder.pred.weight" in message
    assert _shape_text((1, 256, 5, 5)) in message
    assert _shape_text((1, 256, 3, 3)) in message


def test_misshaped_value_conv1_that_is_not_stage0(tmp_path: Path, golden_state: dict) -> None:
    """A value conv1 with 6 input channels is not mistaken for a stage-0 checkpoint."""
    state = dict(golden_state)
    state["value_encoder.conv1.weight"] = torch.zeros(64, 6, 7, 7)
    message = _load_error(_save(state, tmp_path / "conv1.pth"))
    assert "value_encoder.conv1.weight" in message
    assert _shape_text((64, 6, 7, 7)) in message


class _CustomObject:
    """A class only this test module defines: unpickling it needs code from outside torch."""

    def __init__(self) -> None:
        self.weights = torch.zeros(2)


class _Payload:
    """Unpickling runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_custom_class_pickle_is_refused(tmp_path: Path) -> None:
    """A checkpoint holding an object of a custom class is refused as needing code execution."""
    path = _save({"network": {"w": torch.zeros(1)}, "extra": _CustomObject()}, tmp_path / "custom.pth")
    message = _load_error(path)
    assert re.search(r"code execution|refused", message), message


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_code_execution_pickle_is_refused_and_not_run(tmp_path: Path, writer: str) -> None:
    """A pickle whose __reduce__ calls os.system is refused and the command never runs."""
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is live: plain unpickling runs it
    assert control.exists()

    marker = tmp_path / "marker"
    path = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save({"key_proj.key_proj.weight": torch.zeros(1), "evil": _Payload(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    message = _load_error(path)
    assert re.search(r"code execution|refused", message), message
    assert not marker.exists()
