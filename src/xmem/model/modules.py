"""Building blocks of the XMem network.

Shapes use B (batch), N (objects), C (channels), H×W (spatial). Per-object tensors ("groups") are
B×N×C×H×W; image features shared by all objects are B×C×H×W and are computed once per frame.
The parameter names follow the released checkpoint (REFERENCE.md §1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from xmem.model.ops import canonical_strides, cat_channels, conv, conv2d


def _conv3x3(in_dim: int, out_dim: int) -> nn.Conv2d:
    return nn.Conv2d(in_dim, out_dim, kernel_size=3, padding=1)


class SplitConv:
    """The input-channel halves ``weight[:, :c]`` / ``weight[:, c:]`` of a convolution.

    Taken on the fly (so gradients reach the full parameter) until :meth:`freeze` stores them as
    non-persistent buffers of the owning module, as an inference copy does once its weights are final
    (they then follow ``Module.to`` but are not part of the state_dict). Freezing releases the whole
    weight (the convolution's ``weight`` becomes None; its bias stays): only the halves are used from then
    on, and the fusion blocks' convolutions are the largest of the official network.
    """

    def __init__(self, owner: nn.Module, conv_name: str, split: int) -> None:
        self.conv_name, self.split = conv_name, split
        self._buffers = (f"_{conv_name}_first", f"_{conv_name}_second")
        for name in self._buffers:
            owner.register_buffer(name, None, persistent=False)

    def parts(self, owner: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = (getattr(owner, name) for name in self._buffers)
        if first is not None:
            return first, second
        w = getattr(owner, self.conv_name).weight
        return w[:, : self.split], w[:, self.split :]

    def freeze(self, owner: nn.Module) -> None:
        if getattr(owner, self._buffers[0]) is not None:  # frozen already
            return
        conv = getattr(owner, self.conv_name)
        w = conv.weight.detach()
        fmt = (
            torch.channels_last
            if w.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        for name, part in zip(self._buffers, (w[:, : self.split], w[:, self.split :]), strict=True):
            setattr(owner, name, part.clone(memory_format=fmt).contiguous(memory_format=fmt))
        del w
        conv.weight = None  # one copy of these weights in memory, not two


class ResBlock(nn.Module):
    """Pre-activation residual block: ``conv2(relu(conv1(relu(g)))) + downsample(g)``; 3×3 convs with bias."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_dim, out_dim)
        self.conv2 = _conv3x3(out_dim, out_dim)
        self.downsample = _conv3x3(in_dim, out_dim) if in_dim != out_dim else None

    def forward(self, g: torch.Tensor, *, own_input: bool = False) -> torch.Tensor:
        # g: (B*N)×C×H×W. The ReLU after conv1 and the residual add are fused into the convs; the sum is
        # written into the shortcut when nothing else needs it (a downsampling conv's output, or g itself
        # when the caller passes a tensor it no longer needs: own_input).
        out = conv(F.relu(g), self.conv1, relu=True)
        if self.downsample is not None:
            return conv(out, self.conv2, add=conv(g, self.downsample), add_in_place=True)
        return conv(out, self.conv2, add=g, add_in_place=own_input)


class SplitResBlock(ResBlock):
    """A :class:`ResBlock` whose input is ``cat[x broadcast to every object, g]``.

    A convolution over the concatenation equals the convolution of the image part plus that of the object
    part, and ReLU splits the same way, so the image part is computed once per frame and only the object
    part is computed per object. The parameters are the concatenated ones of the checkpoint.
    """

    def __init__(self, x_dim: int, g_dim: int, out_dim: int) -> None:
        super().__init__(x_dim + g_dim, out_dim)
        self.x_dim = x_dim
        self._split1 = SplitConv(self, "conv1", x_dim)
        self._split_ds = SplitConv(self, "downsample", x_dim)

    def freeze_split_weights(self) -> None:
        self._split1.freeze(self)
        self._split_ds.freeze(self)

    def forward_split(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # x: B×Cx×H×W, g: B×N×Cg×H×W -> B×N×Cout×H×W
        b, n = g.shape[:2]
        g_flat = g.flatten(0, 1)
        w1x, w1g = self._split1.parts(self)
        x1 = conv2d(F.relu(x), w1x, self.conv1.bias, padding=1)  # B×Cout×H×W
        g1 = conv2d(F.relu(g_flat), w1g, None, padding=1)
        out = g1.unflatten(0, (b, n)).add_(x1.unsqueeze(1)).flatten(0, 1)
        assert self.downsample is not None
        wdx, wdg = self._split_ds.parts(self)
        xd = conv2d(x, wdx, self.downsample.bias, padding=1)
        gd = conv2d(g_flat, wdg, None, padding=1)
        out = conv(F.relu(out, inplace=True), self.conv2, add=gd, add_in_place=True)
        out.unflatten(0, (b, n)).add_(xd.unsqueeze(1))
        return out.unflatten(0, (b, n))


class ChannelGate(nn.Module):
    """CBAM channel attention: ``x * sigmoid(mlp(avgpool x) + mlp(maxpool x))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(channels, channels // reduction),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.mlp(x.mean(dim=(2, 3)))
        mx = self.mlp(x.amax(dim=(2, 3)))
        return x * torch.sigmoid(avg + mx)[:, :, None, None]


class _BasicConv(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size, padding=(kernel_size - 1) // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv(x, self.conv)


class SpatialGate(nn.Module):
    """CBAM spatial attention: ``x * sigmoid(conv7x7([channel max, channel mean]))``."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial = _BasicConv(2, 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ChannelGate = ChannelGate(channels)
        self.SpatialGate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.SpatialGate(self.ChannelGate(x))


class FeatureFusionBlock(nn.Module):
    """Fuses image features x (shared) with per-object features g.

    ``block1`` on ``cat[x, g]`` (computed split, see :class:`SplitResBlock`), CBAM attention r on the
    result, then ``block2`` on ``g + r``.
    """

    def __init__(self, x_dim: int, g_dim: int, mid_dim: int, out_dim: int) -> None:
        super().__init__()
        self.block1 = SplitResBlock(x_dim, g_dim, mid_dim)
        self.attention = CBAM(mid_dim)
        self.block2 = ResBlock(mid_dim, out_dim)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        # x: B×Cx×H×W, g: B×N×Cg×H×W -> B×N×Cout×H×W
        b, n = g.shape[:2]
        g = self.block1.forward_split(x, g).flatten(0, 1)
        g = self.block2(self.attention(g).add_(g), own_input=True)
        return g.unflatten(0, (b, n))


def _gated_update(values: torch.Tensor, h: torch.Tensor, hidden_dim: int) -> torch.Tensor:
    # values: B×N×3C×H×W split into forget gate, update gate, candidate (in that order).
    forget_gate = torch.sigmoid(values[:, :, :hidden_dim])
    update_gate = torch.sigmoid(values[:, :, hidden_dim : 2 * hidden_dim])
    candidate = torch.tanh(values[:, :, 2 * hidden_dim :])
    # As trained for the released weights (not the textbook GRU).
    return forget_gate * h * (1 - update_gate) + update_gate * candidate


class HiddenReinforcer(nn.Module):
    """Deep update of the sensory memory from the value encoder's output."""

    def __init__(self, g_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.transform = _conv3x3(g_dim + hidden_dim, hidden_dim * 3)

    def forward(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        # g: B×N×Cv×H×W, h: B×N×Ch×H×W -> new h
        b, n = g.shape[:2]
        values = conv(cat_channels(g.flatten(0, 1), h.flatten(0, 1)), self.transform).unflatten(0, (b, n))
        return _gated_update(values, h, self.hidden_dim)


def area_downsample(g: torch.Tensor, factor: int) -> torch.Tensor:
    # g: (B*N)×C×H×W
    return F.interpolate(g, scale_factor=1 / factor, mode="area")


class HiddenUpdater(nn.Module):
    """Per-frame update of the sensory memory from the decoder's multi-scale features."""

    def __init__(self, g_dims: tuple[int, int, int], mid_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.g16_conv = nn.Conv2d(g_dims[0], mid_dim, kernel_size=1)
        self.g8_conv = nn.Conv2d(g_dims[1], mid_dim, kernel_size=1)
        self.g4_conv = nn.Conv2d(g_dims[2], mid_dim, kernel_size=1)
        self.transform = _conv3x3(mid_dim + hidden_dim, hidden_dim * 3)

    def forward(
        self, g16: torch.Tensor, g8: torch.Tensor, g4_16: torch.Tensor, h: torch.Tensor
    ) -> torch.Tensor:
        # g16, g8: (B*N)×C×H×W at strides 16 / 8; g4_16: cat[g4, logit] area-downsampled from stride 4 to
        # 16 (the decoder downsamples before its in-place ReLU of g4); h: B×N×Ch×H16×W16
        b, n = h.shape[:2]
        x = conv(area_downsample(g8, 2), self.g8_conv, add=conv(g16, self.g16_conv))
        x = conv(g4_16, self.g4_conv, add=x)
        values = conv(cat_channels(x, h.flatten(0, 1)), self.transform).unflatten(0, (b, n))
        return _gated_update(values, h, self.hidden_dim)


class UpsampleBlock(nn.Module):
    """×2 bilinear upsampling of object features plus a skip connection from the image features."""

    def __init__(self, skip_dim: int, up_dim: int, out_dim: int) -> None:
        super().__init__()
        self.skip_conv = _conv3x3(skip_dim, up_dim)
        self.out_conv = ResBlock(up_dim, out_dim)

    def forward(self, skip: torch.Tensor, g: torch.Tensor, num_objects: int) -> torch.Tensor:
        # skip: B×Cs×2H×2W (image), g: (B*N)×Cu×H×W -> (B*N)×Cout×2H×2W
        skip = conv(skip, self.skip_conv)
        g = F.interpolate(canonical_strides(g), scale_factor=2.0, mode="bilinear", align_corners=False)
        g.unflatten(0, (-1, num_objects)).add_(skip.unsqueeze(1))
        return self.out_conv(g, own_input=True)


class KeyProjection(nn.Module):
    """Key (query), shrinkage ``d² + 1`` and selection ``sigmoid(e)`` from the stride-16 features."""

    def __init__(self, in_dim: int, key_dim: int) -> None:
        super().__init__()
        self.key_proj = _conv3x3(in_dim, key_dim)
        self.d_proj = _conv3x3(in_dim, 1)
        self.e_proj = _conv3x3(in_dim, key_dim)
        nn.init.orthogonal_(self.key_proj.weight.data)
        nn.init.zeros_(self.key_proj.bias.data)

    def forward(
        self, f16: torch.Tensor, *, need_shrinkage: bool, need_selection: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        shrinkage = conv(f16, self.d_proj) ** 2 + 1 if need_shrinkage else None
        selection = torch.sigmoid(conv(f16, self.e_proj)) if need_selection else None
        return conv(f16, self.key_proj), shrinkage, selection

    @torch.no_grad()
    def scale_similarity(self, factor: float) -> None:
        """Multiply every similarity these keys give by ``factor`` > 0 (a softmax temperature of 1/factor).

        The keys scale by √factor, so the squared distances between them scale by ``factor``; shrinkage
        and selection do not change. Used to start training again from weights whose affinities have
        saturated (a top-1 weight of 1 leaves no gradient to the keys).
        """
        if not factor > 0:
            raise ValueError(f"similarity scale must be positive, got {factor}")
        root = math.sqrt(factor)
        self.key_proj.weight.mul_(root)
        self.key_proj.bias.mul_(root)

    @torch.no_grad()
    def offset_shrinkage(self, offset: float) -> None:
        """Make every similarity these weights give ``-(d² + offset) · distance`` instead of the paper's
        ``-(d² + 1) · distance``, within the paper's architecture: ``d`` is divided by √offset and the keys
        multiplied by it, so the shrinkage becomes ``d²/offset + 1`` and the squared distances grow by
        ``offset``. Elements with a large shrinkage keep nearly their similarities; the few where ``d``
        crosses zero (shrinkage near 1, whose similarity is near 0 whatever the query: they draw every
        query's attention) get at least ``offset``. ``offset`` ≥ 1; 1 changes nothing.
        """
        if not offset >= 1:
            raise ValueError(f"shrinkage offset must be at least 1, got {offset}")
        root = math.sqrt(offset)
        self.d_proj.weight.div_(root)
        self.d_proj.bias.div_(root)
        self.key_proj.weight.mul_(root)
        self.key_proj.bias.mul_(root)


def aggregate(prob: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft aggregation of per-object probabilities (paper, from STM).

    ``prob``: per-object probabilities along ``dim`` (no background). Returns ``(logits, probs)`` with the
    background first along ``dim``: background = ∏(1 - p_i), clamp to [1e-7, 1 - 1e-7], logit, softmax.
    """
    new_prob = _with_background(prob, dim)
    logits = torch.log(new_prob / (1 - new_prob))
    return logits, torch.softmax(logits, dim=dim)


def aggregate_probabilities(prob: torch.Tensor, dim: int) -> torch.Tensor:
    """The probabilities of :func:`aggregate` alone, for inference: the softmax of the log-odds is the odds
    normalised to sum to 1, which needs neither the logarithm nor the exponential (nor the softmax's
    reduction across the strided object dimension). Equal to ``aggregate(prob, dim)[1]`` up to float
    rounding (a few units in the last place)."""
    odds = _with_background(prob, dim)
    odds = odds.div_(1 - odds)
    return odds.div_(odds.sum(dim=dim, keepdim=True))


def _with_background(prob: torch.Tensor, dim: int) -> torch.Tensor:
    """``cat[∏(1 - p_i), p]`` along ``dim``, clamped to [1e-7, 1 - 1e-7] (a fresh tensor)."""
    bg = torch.prod(1 - prob, dim=dim, keepdim=True)
    return torch.cat([bg, prob], dim=dim).clamp(1e-7, 1 - 1e-7)
