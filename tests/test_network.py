"""The network's forward passes against straightforward re-implementations of REFERENCE §2.

The references below use only ``F.*`` ops on the modules' own weights (BatchNorm and the ResNet stages
excepted), computing the fusion on the explicit concatenation [x broadcast to every object, g].
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from xmem.config import ModelConfig, Precision
from xmem.model.golden import golden_rule_model
from xmem.model.modules import (
    FeatureFusionBlock,
    HiddenReinforcer,
    SplitResBlock,
    aggregate,
    aggregate_probabilities,
)
from xmem.model.network import XMem
from xmem.model.ops import canonical_strides, channel_affine

H, W = 64, 96  # image size: features at 4×6 (stride 16), 8×12, 16×24


# --------------------------------------------------------------------------------------------------
# References


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rtol: float = 1e-4, msg: str = "") -> None:
    """max |actual - expected| <= rtol · max |expected|."""
    assert actual.shape == expected.shape, msg
    err = (actual.float() - expected.float()).abs().max().item()
    scale = expected.float().abs().max().item()
    assert err <= rtol * scale, f"{msg}: max error {err:.3e} > {rtol:.0e} × {scale:.3e}"


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.float().flatten(), b.float().flatten()]))[0, 1].item()


def conv(x: torch.Tensor, layer: torch.nn.Conv2d, **kwargs) -> torch.Tensor:
    return F.conv2d(x, layer.weight, layer.bias, **kwargs)


def ref_resblock(block, g: torch.Tensor) -> torch.Tensor:
    """conv2(relu(conv1(relu(g)))) + (downsample(g) or g), 3×3 convs with bias."""
    out = conv(F.relu(conv(F.relu(g), block.conv1, padding=1)), block.conv2, padding=1)
    return out + (conv(g, block.downsample, padding=1) if block.downsample is not None else g)


def ref_cbam(att, x: torch.Tensor) -> torch.Tensor:
    """Channel gate sigmoid(mlp(avg) + mlp(max)), then spatial gate sigmoid(conv7x7([max, mean]))."""
    lin1, lin3 = att.ChannelGate.mlp[1], att.ChannelGate.mlp[3]

    def mlp(v: torch.Tensor) -> torch.Tensor:
        return F.linear(F.relu(F.linear(v, lin1.weight, lin1.bias)), lin3.weight, lin3.bias)

    x = x * torch.sigmoid(mlp(x.mean(dim=(2, 3))) + mlp(x.amax(dim=(2, 3))))[:, :, None, None]
    pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
    return x * torch.sigmoid(conv(pooled, att.SpatialGate.spatial.conv, padding=3))


def broadcast_cat(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """cat[x broadcast to every object, g] on channels, flattened to (B*N)×C×H×W."""
    b, n = g.shape[:2]
    return torch.cat([x.unsqueeze(1).expand(b, n, *x.shape[1:]), g], dim=2).flatten(0, 1)


def ref_fusion(fuser, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """block1 on the concatenation, r = CBAM, block2 on (g + r)."""
    b, n = g.shape[:2]
    out = ref_resblock(fuser.block1, broadcast_cat(x, g))
    out = ref_resblock(fuser.block2, out + ref_cbam(fuser.attention, out))
    return out.unflatten(0, (b, n))


def ref_gated(values: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Forget, update, candidate in that order: f·h·(1-u) + u·c."""
    f, u, c = values.chunk(3, dim=2)
    f, u, c = torch.sigmoid(f), torch.sigmoid(u), torch.tanh(c)
    return f * h * (1 - u) + u * c


def ref_value_encoder(ve, image, f16, masks, others, hidden=None):
    """conv1 on cat[image, mask, others] → bn1 → maxpool → relu → layer1..3 → fusion (→ deep update)."""
    b, n = masks.shape[:2]
    inp = torch.cat(
        [image.unsqueeze(1).expand(b, n, *image.shape[1:]), masks[:, :, None], others[:, :, None]], 2
    )
    y = F.conv2d(inp.flatten(0, 1), ve.conv1.weight, stride=2, padding=3)
    y = F.relu(F.max_pool2d(ve.bn1(y), kernel_size=3, stride=2, padding=1))
    y = ve.layer3(ve.layer2(ve.layer1(y)))
    value = ref_fusion(ve.fuser, f16, y.unflatten(0, (b, n)))
    if hidden is None:
        return value, None
    t = ve.hidden_reinforce.transform
    values = conv(torch.cat([value, hidden], dim=2).flatten(0, 1), t, padding=1).unflatten(0, (b, n))
    return value, ref_gated(values, hidden)


def ref_decoder(dec, f16, f8, f4, hidden, readout):
    """Decoder of REFERENCE §2: logits B×N×H×W and the hidden update."""
    b, n = readout.shape[:2]
    g16 = ref_fusion(dec.fuser, f16, torch.cat([readout, hidden], dim=2)).flatten(0, 1)

    def up(block, skip, g):
        g = F.interpolate(g, scale_factor=2.0, mode="bilinear", align_corners=False)
        g = g.unflatten(0, (b, n)) + conv(skip, block.skip_conv, padding=1).unsqueeze(1)
        return ref_resblock(block.out_conv, g.flatten(0, 1))

    g8 = up(dec.up_16_8, f8, g16)
    g4 = up(dec.up_8_4, f4, g8)
    logits = conv(F.relu(g4), dec.pred, padding=1)
    hu = dec.hidden_update
    x = (
        conv(g16, hu.g16_conv)
        + conv(F.avg_pool2d(g8, 2), hu.g8_conv)
        + conv(F.avg_pool2d(torch.cat([g4, logits], dim=1), 4), hu.g4_conv)
    )
    values = conv(torch.cat([x, hidden.flatten(0, 1)], dim=1), hu.transform, padding=1).unflatten(0, (b, n))
    logits = F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
    return ref_gated(values, hidden), logits.view(b, n, *logits.shape[-2:])


def ref_aggregate(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """bg = ∏(1-p_i); stack [bg, p]; clamp; logit; softmax over objects."""
    stacked = torch.cat([torch.prod(1 - p, dim=1, keepdim=True), p], dim=1).clamp(1e-7, 1 - 1e-7)
    logits = torch.log(stacked / (1 - stacked))
    return logits, torch.softmax(logits, dim=1)


# --------------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def model() -> XMem:
    """The official architecture with golden-rule weights (not modified by the tests)."""
    return golden_rule_model()


@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return torch.randn(1, 3, H, W, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def encoded(model: XMem, image: torch.Tensor):
    with torch.no_grad():
        return model.encode_key(image)


def _masks(n: int, seed: int = 1) -> torch.Tensor:
    """Per-object probabilities 1×N×H×W (not normalised: their sum exceeds 1 in places)."""
    return torch.rand(1, n, H, W, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
# 1. Key encoder and projection


def test_encode_key_shapes_and_ranges(model: XMem, encoded) -> None:
    """key 1×64×H/16×W/16, shrinkage >= 1, selection in (0,1), f16/f8/f4 1024/512/256 at strides 16/8/4."""
    key, shrinkage, selection, (f16, f8, f4) = encoded
    assert key.shape == (1, 64, H // 16, W // 16)
    assert shrinkage.shape == (1, 1, H // 16, W // 16)
    assert selection.shape == (1, 64, H // 16, W // 16)
    assert f16.shape == (1, 1024, H // 16, W // 16)
    assert f8.shape == (1, 512, H // 8, W // 8)
    assert f4.shape == (1, 256, H // 4, W // 4)
    assert (shrinkage >= 1).all()
    assert ((selection > 0) & (selection < 1)).all()
    assert key.std() > 0.1 and f16.std() > 0.1


def test_encode_key_formulas(model: XMem, image: torch.Tensor, encoded) -> None:
    """Stem conv1→bn1→relu→maxpool→res2; key = key_proj(f16), shrinkage = d²+1, selection = sigmoid(e)."""
    key, shrinkage, selection, (f16, f8, f4) = encoded
    ke, kp = model.key_encoder, model.key_proj
    with torch.no_grad():
        x = F.max_pool2d(F.relu(ke.bn1(F.conv2d(image, ke.conv1.weight, stride=2, padding=3))), 3, 2, 1)
        assert_close_rel(f4, ke.res2(x))
        assert_close_rel(f8, ke.layer2(f4))
        assert_close_rel(f16, ke.layer3(f8))
        assert_close_rel(key, conv(f16, kp.key_proj, padding=1))
        assert_close_rel(shrinkage, conv(f16, kp.d_proj, padding=1) ** 2 + 1)
        assert_close_rel(selection, torch.sigmoid(conv(f16, kp.e_proj, padding=1)))


def test_encode_key_optional_outputs(model: XMem, image: torch.Tensor, encoded) -> None:
    """need_shrinkage / need_selection False give None; the key is unchanged."""
    with torch.no_grad():
        key, shrinkage, selection, _ = model.encode_key(image, need_shrinkage=False, need_selection=False)
    assert shrinkage is None and selection is None
    assert torch.equal(key, encoded[0])
    with torch.no_grad():
        _, shrinkage, selection, _ = model.encode_key(image, need_shrinkage=True, need_selection=False)
    assert selection is None and torch.equal(shrinkage, encoded[1])


def test_offset_shrinkage_gives_the_offset_similarity() -> None:
    """After offset_shrinkage(c) every similarity is -(d² + c)·distance in the original weights' terms:
    elements whose shrinkage was near 1 get at least c, large shrinkages keep nearly their similarities."""
    from xmem.memory.similarity import similarity
    from xmem.model.modules import KeyProjection

    torch.manual_seed(0)
    proj = KeyProjection(24, 8)
    f16 = torch.randn(1, 24, 6, 7)
    with torch.no_grad():
        k0, s0, e0 = proj(f16, need_shrinkage=True, need_selection=True)
        proj.offset_shrinkage(30.0)
        k1, s1, e1 = proj(f16, need_shrinkage=True, need_selection=True)
    assert torch.allclose(e1, e0)
    assert torch.allclose(s1, (s0 - 1) / 30 + 1, rtol=1e-5)
    assert s0.min() < 2  # some element is near d = 0 ...
    flat = [t.flatten(2)[0] for t in (k0, s0, e0, k1, s1)]
    sim0 = similarity(flat[0], flat[1][0], flat[0], flat[2])
    sim1 = similarity(flat[3], flat[4][0], flat[3], flat[2])
    expected = sim0 * ((flat[1][0] - 1 + 30) / flat[1][0])  # -(d² + 30)·dist = S0 · (d² + 30) / (d² + 1)
    assert torch.allclose(sim1, expected, rtol=1e-4, atol=1e-4)
    assert (sim1[:, flat[1][0].argmin()] < 10 * sim0[:, flat[1][0].argmin()]).any()  # ... and is sharpened
    with pytest.raises(ValueError, match="at least 1"):
        proj.offset_shrinkage(0.5)


# --------------------------------------------------------------------------------------------------
# 2. Split fusion


@pytest.mark.parametrize(("fuser_name", "g_dim"), [("value_encoder.fuser", 256), ("decoder.fuser", 576)])
def test_split_fusion_equals_concatenation(model: XMem, fuser_name: str, g_dim: int) -> None:
    """SplitResBlock.forward_split and FeatureFusionBlock equal the computation on cat[x, g], 3 objects."""
    fuser = model.get_submodule(fuser_name)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1024, 4, 6, generator=gen)
    g = torch.randn(1, 3, g_dim, 4, 6, generator=gen)
    with torch.no_grad():
        split = fuser.block1.forward_split(x, g)
        assert split.shape == (1, 3, 512, 4, 6)
        assert_close_rel(split, ref_resblock(fuser.block1, broadcast_cat(x, g)).unflatten(0, (1, 3)))
        assert_close_rel(fuser(x, g), ref_fusion(fuser, x, g))
        # the objects are independent: object 1 alone gives the same result
        assert_close_rel(fuser(x, g[:, 1:2]), fuser(x, g)[:, 1:2])


def test_split_fusion_in_training_gradients_match() -> None:
    """Under autograd, gradients reach every parameter and equal those of the concatenation reference."""
    torch.manual_seed(3)
    block = FeatureFusionBlock(8, 4, 32, 16).train()
    reference = copy.deepcopy(block)
    x = torch.randn(2, 8, 5, 7)
    g = torch.randn(2, 3, 4, 5, 7)
    weight = torch.randn(2, 3, 16, 5, 7)
    with torch.enable_grad():
        (block(x, g) * weight).sum().backward()
        (ref_fusion(reference, x, g) * weight).sum().backward()
    for (name, p), (_, q) in zip(block.named_parameters(), reference.named_parameters(), strict=True):
        assert p.grad is not None, name
        assert_close_rel(p.grad, q.grad, msg=name)
    assert block.block1.conv1.weight.grad[:, :8].abs().sum() > 0  # the image part of the split weight
    assert block.block1.conv1.weight.grad[:, 8:].abs().sum() > 0  # the object part


def test_split_fusion_follows_an_optimizer_step() -> None:
    """Inference after a training step uses the updated weights (no stale split-weight cache)."""
    torch.manual_seed(4)
    block = SplitResBlock(6, 4, 8)
    x, g = torch.randn(1, 6, 5, 5), torch.randn(1, 2, 4, 5, 5)
    with torch.no_grad():
        before = block.forward_split(x, g)  # fills the cache
    opt = torch.optim.SGD(block.parameters(), lr=0.5)
    block.forward_split(x, g).square().sum().backward()
    opt.step()
    with torch.no_grad():
        after = block.forward_split(x, g)
        assert (after - before).abs().max() > 1e-3
        assert_close_rel(after, ref_resblock(block, broadcast_cat(x, g)).unflatten(0, (1, 2)))
        block.load_state_dict({k: torch.zeros_like(v) for k, v in block.state_dict().items()})
        assert block.forward_split(x, g).abs().max() == 0


def test_split_fusion_follows_in_place_writes_through_data() -> None:
    """Re-initialising a weight in place through .data changes the next (cached) inference result."""
    torch.manual_seed(5)
    block = SplitResBlock(6, 4, 8).eval()
    x, g = torch.randn(1, 6, 5, 5), torch.randn(1, 2, 4, 5, 5)
    with torch.no_grad():
        block.forward_split(x, g)
        torch.nn.init.zeros_(block.conv1.weight.data)
        torch.nn.init.zeros_(block.downsample.weight.data)
        assert_close_rel(
            block.forward_split(x, g), ref_resblock(block, broadcast_cat(x, g)).unflatten(0, (1, 2))
        )


# --------------------------------------------------------------------------------------------------
# 3-4. Value encoder


def test_value_encoder_split_conv1_equals_concatenated_input(
    model: XMem, image: torch.Tensor, encoded
) -> None:
    """ValueEncoder (split conv1) equals conv1 on cat[image, mask, others] → bn1 → maxpool → relu → ... → fuser."""
    f16 = encoded[3][0]
    masks = _masks(2)
    others = masks.flip(1)
    hidden = torch.tanh(torch.randn(1, 2, 64, 4, 6, generator=torch.Generator().manual_seed(6)))
    with torch.no_grad():
        value, new_hidden = model.value_encoder(image, f16, hidden, masks, others, deep_update=True)
        ref_value, ref_hidden = ref_value_encoder(model.value_encoder, image, f16, masks, others, hidden)
        assert value.shape == (1, 2, 512, 4, 6)
        assert_close_rel(value, ref_value)
        assert_close_rel(new_hidden, ref_hidden)
        value2, same_hidden = model.value_encoder(image, f16, hidden, masks, others, deep_update=False)
    assert torch.equal(value2, value)
    assert same_hidden is hidden


def _captured_others(model: XMem, image, f16, masks) -> tuple[torch.Tensor, torch.Tensor]:
    """Run encode_value and capture the ``others`` argument that reaches the value encoder."""
    seen = {}

    def hook(module, args):
        seen["others"] = args[4]

    handle = model.value_encoder.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            value, _ = model.encode_value(image, f16, None, masks)
    finally:
        handle.remove()
    return seen["others"], value


def test_encode_value_others_one_object(model: XMem, image: torch.Tensor, encoded) -> None:
    """One object: the 'others' channel is all zeros; the value equals the reference with zeros."""
    f16 = encoded[3][0]
    masks = _masks(1)
    others, value = _captured_others(model, image, f16, masks)
    assert torch.equal(others, torch.zeros(1, 1, H, W))
    with torch.no_grad():
        ref_value, _ = ref_value_encoder(model.value_encoder, image, f16, masks, torch.zeros_like(masks))
    assert_close_rel(value, ref_value)


def test_encode_value_others_three_objects(model: XMem, image: torch.Tensor, encoded) -> None:
    """Three objects: 'others' of each object is the (unclamped) sum of the other two's probabilities."""
    f16 = encoded[3][0]
    masks = _masks(3)
    others, value = _captured_others(model, image, f16, masks)
    expected = torch.stack(
        [masks[:, 1] + masks[:, 2], masks[:, 0] + masks[:, 2], masks[:, 0] + masks[:, 1]], 1
    )
    torch.testing.assert_close(others, expected)
    assert others.max() > 1  # not clamped
    with torch.no_grad():
        ref_value, _ = ref_value_encoder(model.value_encoder, image, f16, masks, expected)
    assert_close_rel(value, ref_value)
    assert value.shape == (1, 3, 512, 4, 6)


# --------------------------------------------------------------------------------------------------
# 5. Decoder and aggregation


def test_aggregate_hand_computed() -> None:
    """Soft aggregation of two objects equals hand-computed odds ratios; background first."""
    # pixel 0: p = (0.5, 0.2) -> bg 0.4, odds (2/3, 1, 1/4) -> (8, 12, 3) / 23
    # pixel 1: p = (0.9, 0.0) -> bg 0.1, odds (1/9, 9, ~1e-7) -> (1, 81, ~0) / 82
    prob = torch.tensor([[0.5, 0.9], [0.2, 0.0]]).view(1, 2, 1, 2)
    logits, out = aggregate(prob, dim=1)
    assert out.shape == (1, 3, 1, 2)
    expected = torch.tensor([[8 / 23, 1 / 82], [12 / 23, 81 / 82], [3 / 23, 0.0]]).view(1, 3, 1, 2)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits[0, :, 0, 0], torch.log(torch.tensor([2 / 3, 1.0, 1 / 4])))
    torch.testing.assert_close(logits[0, 2, 0, 1], torch.log(torch.tensor(1e-7 / (1 - 1e-7))))


def test_aggregate_saturated_probabilities_stay_finite() -> None:
    """Probabilities of exactly 0 and 1 are clamped: finite logits, a distribution over [bg, objects]."""
    prob = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 2, 1, 2)
    logits, out = aggregate(prob, dim=1)
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(out.sum(dim=1), torch.ones(1, 1, 2))


@pytest.mark.parametrize("n", [1, 2, 4])
def test_aggregate_probabilities_equal_the_softmax_of_the_logits(n: int) -> None:
    """The odds normalised to 1 are aggregate()'s softmax of the log-odds, saturated pixels included, along
    any dimension; the input is left as it was."""
    g = torch.Generator().manual_seed(11)
    prob = torch.rand(2, n, 7, 9, generator=g)
    prob[0, :, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # saturated and even pixels
    before = prob.clone()
    expected = aggregate(prob, dim=1)[1]
    out = aggregate_probabilities(prob, dim=1)
    assert out.shape == (2, n + 1, 7, 9)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(2, 7, 9))
    assert torch.equal(out.argmax(dim=1), expected.argmax(dim=1))
    assert torch.equal(prob, before)
    torch.testing.assert_close(aggregate_probabilities(prob[0], dim=0), expected[0], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n", [1, 2])
def test_segment_matches_reference(model: XMem, encoded, n: int) -> None:
    """segment: logits, background-first probabilities summing to 1, and the hidden update of REFERENCE §2."""
    features = encoded[3]
    gen = torch.Generator().manual_seed(7)
    readout = torch.randn(1, n, 512, 4, 6, generator=gen)
    hidden = torch.tanh(torch.randn(1, n, 64, 4, 6, generator=gen))
    with torch.no_grad():
        new_hidden, logits, prob = model.segment(features, readout, hidden)
        ref_hidden, obj_logits = ref_decoder(model.decoder, *features, hidden, readout)
    assert prob.shape == logits.shape == (1, n + 1, H, W)
    torch.testing.assert_close(prob.sum(dim=1), torch.ones(1, H, W))
    ref_logits, ref_prob = ref_aggregate(torch.sigmoid(obj_logits))
    torch.testing.assert_close(prob, ref_prob, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(logits, ref_logits, atol=1e-3, rtol=1e-4)
    assert new_hidden.shape == (1, n, 64, 4, 6)
    assert_close_rel(new_hidden, ref_hidden)
    assert ((new_hidden > -1) & (new_hidden < 1)).all()
    assert 0.05 < prob[:, 0].mean() < 0.95  # background is channel 0 and is not degenerate


def test_segment_probabilities_are_segments(model: XMem, encoded) -> None:
    """segment_probabilities (the engine's call) gives segment's probabilities and hidden state."""
    gen = torch.Generator().manual_seed(9)
    readout = torch.randn(1, 2, 512, 4, 6, generator=gen)
    hidden = torch.tanh(torch.randn(1, 2, 64, 4, 6, generator=gen))
    with torch.no_grad():
        new_hidden, _, prob = model.segment(encoded[3], readout, hidden)
        got_hidden, got = model.segment_probabilities(encoded[3], readout, hidden)
    torch.testing.assert_close(got, prob, atol=1e-6, rtol=1e-5)
    assert torch.equal(got_hidden, new_hidden)


def test_segment_without_hidden_update(model: XMem, encoded) -> None:
    """update_hidden=False returns None for the hidden state and the same probabilities."""
    gen = torch.Generator().manual_seed(8)
    readout = torch.randn(1, 2, 512, 4, 6, generator=gen)
    hidden = torch.zeros(1, 2, 64, 4, 6)
    with torch.no_grad():
        none_hidden, _, prob = model.segment(encoded[3], readout, hidden, update_hidden=False)
        new_hidden, _, prob_updated = model.segment(encoded[3], readout, hidden, update_hidden=True)
    assert none_hidden is None
    torch.testing.assert_close(prob, prob_updated)
    assert ((new_hidden > -1) & (new_hidden < 1)).all() and new_hidden.abs().max() > 0.1


def test_no_sensory_network_runs_without_hidden(image: torch.Tensor) -> None:
    """hidden_dim 0: encode_value and segment run with hidden None and return None."""
    net = XMem(ModelConfig(hidden_dim=0)).eval()
    with torch.no_grad():
        _, _, _, features = net.encode_key(image)
        value, hidden = net.encode_value(image, features[0], None, _masks(2))
        new_hidden, _, prob = net.segment(features, value, None)
    assert hidden is None and new_hidden is None
    assert prob.shape == (1, 3, H, W)


# --------------------------------------------------------------------------------------------------
# 6. The gated update


def test_hidden_reinforcer_gated_update_random_weights() -> None:
    """HiddenReinforcer equals f·h·(1-u) + u·c from F.conv2d on cat[g, h] split into (f, u, c)."""
    gen = torch.Generator().manual_seed(9)
    block = HiddenReinforcer(g_dim=5, hidden_dim=3)
    with torch.no_grad():
        block.transform.weight.copy_(torch.randn(9, 8, 3, 3, generator=gen))
        block.transform.bias.copy_(torch.randn(9, generator=gen))
        g = torch.randn(2, 3, 5, 4, 6, generator=gen)
        h = torch.tanh(torch.randn(2, 3, 3, 4, 6, generator=gen))
        values = F.conv2d(
            torch.cat([g, h], dim=2).flatten(0, 1), block.transform.weight, block.transform.bias, padding=1
        )
        values = values.unflatten(0, (2, 3))
        f, u, c = (
            torch.sigmoid(values[:, :, :3]),
            torch.sigmoid(values[:, :, 3:6]),
            torch.tanh(values[:, :, 6:]),
        )
        torch.testing.assert_close(block(g, h), f * h * (1 - u) + u * c)


def test_hidden_reinforcer_gate_order_hand_set() -> None:
    """With zero weights and per-chunk biases (a, b, c): new h = σ(a)·h·(1-σ(b)) + σ(b)·tanh(c)."""
    block = HiddenReinforcer(g_dim=2, hidden_dim=1)
    a, b, c = -1.0, 0.5, 2.0
    with torch.no_grad():
        block.transform.weight.zero_()
        block.transform.bias.copy_(torch.tensor([a, b, c]))
        h = torch.tensor([-0.8, 0.0, 0.6]).view(1, 3, 1, 1, 1)
        out = block(torch.randn(1, 3, 2, 1, 1), h)
    sa, sb, tc = torch.sigmoid(torch.tensor(a)), torch.sigmoid(torch.tensor(b)), torch.tanh(torch.tensor(c))
    torch.testing.assert_close(out, sa * h * (1 - sb) + sb * tc)
    # not the textbook GRU (1-u)·h + u·c, nor the gates swapped
    assert not torch.allclose(out, (1 - sb) * h + sb * tc)
    assert not torch.allclose(out, sb * h * (1 - sa) + sa * tc)


# --------------------------------------------------------------------------------------------------
# 7. Memory format and dtype


def _run_all(net: XMem, image: torch.Tensor, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(10)
    masks = _masks(2).to(dtype)
    hidden = torch.tanh(torch.randn(1, 2, 64, 4, 6, generator=gen)).to(dtype)
    with torch.no_grad():
        key, shrinkage, selection, features = net.encode_key(image.to(dtype))
        value, new_hidden = net.encode_value(image.to(dtype), features[0], hidden, masks)
        _, _, prob = net.segment(features, value, new_hidden)
    return {
        "key": key,
        "shrinkage": shrinkage,
        "selection": selection,
        "f4": features[2],
        "value": value,
        "prob": prob,
    }


@pytest.fixture(scope="module")
def fp32_outputs(model: XMem, image: torch.Tensor):
    return _run_all(model, image)


def test_channels_last_matches_contiguous(model: XMem, image: torch.Tensor, fp32_outputs) -> None:
    """The network in channels_last gives the contiguous results (to 1e-4 relative)."""
    net = copy.deepcopy(model).to(memory_format=torch.channels_last)
    assert net.value_encoder.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    out = _run_all(net, image.contiguous(memory_format=torch.channels_last))
    for name, expected in fp32_outputs.items():
        assert_close_rel(out[name], expected, msg=name)


def test_bfloat16_close_to_fp32(model: XMem, image: torch.Tensor, fp32_outputs) -> None:
    """The network in bfloat16 runs end to end, within a loose tolerance of fp32 (correlation > 0.99)."""
    net = copy.deepcopy(model).to(torch.bfloat16)
    out = _run_all(net, image, torch.bfloat16)
    assert out["key"].dtype == torch.bfloat16 and out["value"].dtype == torch.bfloat16
    for name, expected in fp32_outputs.items():
        assert torch.isfinite(out[name].float()).all(), name
        assert corr(out[name], expected) > 0.99, name
    assert (out["prob"].float().argmax(1) == fp32_outputs["prob"].argmax(1)).float().mean() > 0.9


def test_frozen_split_weights_follow_to_and_stay_out_of_the_state_dict() -> None:
    """An inference copy stores its split halves as non-persistent buffers and releases the whole weights
    (one copy in memory): same outputs, the state_dict loses only the two split weights, freezing twice
    changes nothing, and the halves follow ``Module.to``."""
    torch.manual_seed(7)
    block = SplitResBlock(6, 4, 8).eval()
    x, g = torch.randn(1, 6, 5, 5), torch.randn(1, 2, 4, 5, 5)
    keys = set(block.state_dict())
    with torch.no_grad():
        live = block.forward_split(x, g)
        block.freeze_split_weights()
        assert block.conv1.weight is None and block.downsample.weight is None
        assert block.conv1.bias is not None and block.downsample.bias is not None
        assert set(block.state_dict()) == keys - {"conv1.weight", "downsample.weight"}
        block.freeze_split_weights()
        torch.testing.assert_close(block.forward_split(x, g), live)
        block.to(torch.float64)
        assert block._conv1_first.dtype == torch.float64
        torch.testing.assert_close(
            block.forward_split(x.double(), g.double()), live.double(), atol=1e-5, rtol=1e-5
        )


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_inference_copy_fused_ops_equal_the_plain_ops(
    model: XMem, image: torch.Tensor, fmt, monkeypatch
) -> None:
    """The inference copy (BatchNorm folded) under inference_mode runs its convolutions with the ReLU /
    residual add fused (oneDNN post-ops on the CPU): the results equal the unfused ops up to float
    rounding (oneDNN may pick another kernel for a fused op), and match the training-mode network."""
    from xmem.inference.core import prepare_network
    from xmem.model import ops

    assert ops._pointwise_ops() is not None, "this PyTorch build has no fused oneDNN convolutions"
    net = prepare_network(model, torch.device("cpu"), Precision.FP32).to(memory_format=fmt)
    calls = {"fused": 0}
    fused_impl = ops._pointwise_ops()

    class Counting:
        def __call__(self, *args):
            calls["fused"] += 1
            return fused_impl(*args)

        def binary(self, *args):
            calls["fused"] += 1
            return fused_impl.binary(*args)

    with torch.inference_mode():
        fused = _run_all(net, image.contiguous(memory_format=fmt))
        monkeypatch.setattr(ops, "_fusable", lambda x, w: False)
        plain = _run_all(net, image.contiguous(memory_format=fmt))
    monkeypatch.undo()
    monkeypatch.setattr(ops, "_pointwise_ops", Counting)
    with torch.inference_mode():
        _run_all(net, image.contiguous(memory_format=fmt))
    assert calls["fused"] > 50  # the key encoder, value encoder and decoder all took the fused path
    for name, expected in plain.items():
        assert_close_rel(fused[name], expected, rtol=1e-5, msg=name)
    for name, expected in _run_all(model, image).items():  # folded BN, fused ops vs the plain network
        assert_close_rel(fused[name], expected, msg=name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["channels_last", "hwc_view", "contiguous"])
def test_channel_affine_equals_broadcasting(dtype: torch.dtype, layout: str) -> None:
    """(x - shift) / scale per channel, bit for bit the broadcast ops, in every layout; a channels-last
    input gives a channels-last output (the layout the convolutions then read without a copy)."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 9, 13, generator=g).to(dtype)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "hwc_view":  # an H×W×3 decoded frame seen as 3×H×W
        x = torch.rand(9, 13, 3, generator=g).to(dtype).permute(2, 0, 1)
    shift = torch.tensor([0.485, 0.456, 0.406]).to(dtype)
    scale = torch.tensor([0.229, 0.224, 0.225]).to(dtype)
    expected = (x - shift.view(3, 1, 1)) / scale.view(3, 1, 1)
    out = channel_affine(x, shift, scale)
    assert out.dtype == dtype and torch.equal(out, expected)
    assert torch.equal(channel_affine(x, shift), x - shift.view(3, 1, 1))
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(1, 5, 4, 6), (3, 5, 4, 6), (1, 1, 5, 4, 6), (2, 3, 5, 4, 6)])
def test_canonical_strides_of_channels_last_tensors(shape: tuple[int, ...]) -> None:
    """A channels-last tensor whose size-1 dimensions carry odd strides gets the standard strides as a view
    (same storage, same values), which torch.cat and F.interpolate keep channels-last; other layouts are
    returned as they are."""
    hwc = torch.rand(*shape[:-3], shape[-2], shape[-1], shape[-3])
    x = hwc.movedim(-1, -3)  # …×C×H×W stored …×H×W×C
    odd = x.as_strided(
        x.shape, [7 if size == 1 else st for size, st in zip(x.shape, x.stride(), strict=True)]
    )
    for t in (x, odd):
        out = canonical_strides(t)
        assert out.data_ptr() == t.data_ptr() and torch.equal(out, t)
        assert out.stride() == x.stride()
    nchw = torch.rand(shape)
    assert canonical_strides(nchw) is nchw
    flat = canonical_strides(odd.flatten(0, -4)) if odd.ndim == 5 else canonical_strides(odd)
    assert torch.cat([flat, flat], dim=1).is_contiguous(memory_format=torch.channels_last)
    up = F.interpolate(flat, scale_factor=2.0, mode="bilinear", align_corners=False)
    assert up.is_contiguous(memory_format=torch.channels_last)
