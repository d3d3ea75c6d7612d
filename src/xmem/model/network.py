"""The XMem network: key encoder, key projection, value encoder and decoder.

Pure ``nn.Module``s without any state between frames: the per-video state (the three memory stores)
lives in :mod:`xmem.memory` and is driven by :mod:`xmem.inference`.

Two architectures (:class:`xmem.config.Architecture`) share the key projection, the decoder design and the
interface: the official one (ResNet-50 key encoder, ResNet-18 value encoder) and the lite one
(EfficientNet-Lite0 key encoder, :class:`LiteValueEncoder`, narrower widths; docs/LITE.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmem.config import Architecture, ModelConfig
from xmem.model.backbones import resnet18_trunk, resnet50_trunk
from xmem.model.efficientnet import FEATURE_DIMS as LITE_FEATURE_DIMS
from xmem.model.efficientnet import EfficientNetLite0, MBConvBlock
from xmem.model.modules import (
    FeatureFusionBlock,
    HiddenReinforcer,
    HiddenUpdater,
    KeyProjection,
    SplitConv,
    SplitResBlock,
    UpsampleBlock,
    aggregate,
    aggregate_probabilities,
    area_downsample,
)
from xmem.model.ops import cat_channels, conv, conv2d

F16_DIM, F8_DIM, F4_DIM = 1024, 512, 256  # ResNet-50 widths at strides 16 / 8 / 4
DECODER_DIMS = (512, 256, 256)  # the official decoder's widths at strides 16 / 8 / 4


class ValueEncoder(nn.Module):
    """ResNet-18 up to layer3 on [image, object mask, other objects], fused with f16; deep update.

    ``conv1`` takes 5 channels (RGB, this object's probability, the sum of the other objects'); its
    image part is computed once per frame.
    """

    def __init__(self, value_dim: int, hidden_dim: int) -> None:
        super().__init__()
        trunk = resnet18_trunk(in_channels=5)
        self.conv1, self.bn1, self.maxpool = trunk.conv1, trunk.bn1, trunk.maxpool
        self.layer1, self.layer2, self.layer3 = trunk.layer1, trunk.layer2, trunk.layer3
        self.fuser = FeatureFusionBlock(F16_DIM, 256, value_dim, value_dim)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim) if hidden_dim > 0 else None
        self._split_conv1 = SplitConv(self, "conv1", 3)

    def freeze_split_weights(self) -> None:
        self._split_conv1.freeze(self)

    def forward(
        self,
        image: torch.Tensor,
        f16: torch.Tensor,
        hidden: torch.Tensor | None,
        masks: torch.Tensor,
        others: torch.Tensor,
        *,
        deep_update: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # image B×3×H×W, f16 B×1024×H16×W16, hidden B×N×Ch×H16×W16, masks/others B×N×H×W
        b, n = masks.shape[:2]
        w_img, w_obj = self._split_conv1.parts(self)
        x = conv2d(image, w_img, self.conv1.bias, stride=2, padding=3)  # B×64×H2×W2 (bias: folded BN)
        g = torch.stack([masks, others], dim=2).flatten(0, 1).to(w_obj.dtype)  # (B*N)×2×H×W
        if w_obj.is_contiguous(memory_format=torch.channels_last):
            g = g.contiguous(memory_format=torch.channels_last)
        g = conv2d(g, w_obj, None, stride=2, padding=3)
        g = g.unflatten(0, (b, n)).add_(x.unsqueeze(1)).flatten(0, 1)  # g: a fresh conv output
        g = F.relu(self.maxpool(self.bn1(g)), inplace=not torch.is_grad_enabled())
        g = self.layer3(self.layer2(self.layer1(g)))  # (B*N)×256×H16×W16
        value = self.fuser(f16, g.unflatten(0, (b, n)))  # B×N×Cv×H16×W16
        if deep_update and self.hidden_reinforce is not None and hidden is not None:
            hidden = self.hidden_reinforce(value, hidden)
        return value, hidden


class LiteValueEncoder(nn.Module):
    """A light value encoder: a stride-2 3×3 convolution on [image, object mask, other objects] and three
    stride-2 MBConv blocks (expansion 4) down to stride 16, fused with the key encoder's f16 like the
    official one (:class:`FeatureFusionBlock`), with the same deep update of the sensory memory.

    ``dims``: widths at strides 2 / 4 / 8 / 16. The image part of ``conv1`` is computed once per frame.
    """

    def __init__(
        self, f16_dim: int, value_dim: int, hidden_dim: int, dims: tuple[int, int, int, int]
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(5, dims[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(dims[0])
        self.blocks = nn.Sequential(*(MBConvBlock(dims[i], dims[i + 1], 3, 2, 4) for i in range(3)))
        self.fuser = FeatureFusionBlock(f16_dim, dims[3], value_dim, value_dim)
        self.hidden_reinforce = HiddenReinforcer(value_dim, hidden_dim) if hidden_dim > 0 else None
        self._split_conv1 = SplitConv(self, "conv1", 3)
        for m in (self.conv1, *self.blocks.modules()):
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def freeze_split_weights(self) -> None:
        self._split_conv1.freeze(self)

    def forward(
        self,
        image: torch.Tensor,
        f16: torch.Tensor,
        hidden: torch.Tensor | None,
        masks: torch.Tensor,
        others: torch.Tensor,
        *,
        deep_update: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        # image B×3×H×W, f16 B×Cf×H16×W16, hidden B×N×Ch×H16×W16, masks/others B×N×H×W
        b, n = masks.shape[:2]
        w_img, w_obj = self._split_conv1.parts(self)
        x = conv2d(image, w_img, self.conv1.bias, stride=2, padding=1)  # B×C×H2×W2 (bias: folded BN)
        g = torch.stack([masks, others], dim=2).flatten(0, 1).to(w_obj.dtype)  # (B*N)×2×H×W
        if w_obj.is_contiguous(memory_format=torch.channels_last):
            g = g.contiguous(memory_format=torch.channels_last)
        g = conv2d(g, w_obj, None, stride=2, padding=1)
        g = g.unflatten(0, (b, n)).add_(x.unsqueeze(1)).flatten(0, 1)
        g = F.relu6(self.bn1(g), inplace=True)
        g = self.blocks(g)  # (B*N)×C16×H16×W16
        value = self.fuser(f16, g.unflatten(0, (b, n)))  # B×N×Cv×H16×W16
        if deep_update and self.hidden_reinforce is not None and hidden is not None:
            hidden = self.hidden_reinforce(value, hidden)
        return value, hidden


class Decoder(nn.Module):
    """Memory readout + sensory memory + skip connections -> per-object logits at full resolution.

    ``feature_dims``: channels of the image features f16 / f8 / f4; ``dims``: the decoder's widths at
    strides 16 / 8 / 4 (the official network: 1024 / 512 / 256 and 512 / 256 / 256).
    """

    def __init__(
        self,
        value_dim: int,
        hidden_dim: int,
        feature_dims: tuple[int, int, int] = (F16_DIM, F8_DIM, F4_DIM),
        dims: tuple[int, int, int] = DECODER_DIMS,
    ) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        d16, d8, d4 = dims
        self.fuser = FeatureFusionBlock(feature_dims[0], value_dim + hidden_dim, d16, d16)
        self.hidden_update = HiddenUpdater((d16, d8, d4 + 1), d8, hidden_dim) if hidden_dim > 0 else None
        self.up_16_8 = UpsampleBlock(feature_dims[1], d16, d8)
        self.up_8_4 = UpsampleBlock(feature_dims[2], d8, d4)
        self.pred = nn.Conv2d(d4, 1, kernel_size=3, padding=1)

    def forward(
        self,
        f16: torch.Tensor,
        f8: torch.Tensor,
        f4: torch.Tensor,
        hidden: torch.Tensor | None,
        readout: torch.Tensor,
        *,
        update_hidden: bool,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        # readout B×N×Cv×H16×W16, hidden B×N×Ch×H16×W16 -> (new hidden or None, fp32 logits B×N×H×W)
        b, n = readout.shape[:2]
        g = readout
        if self.hidden_update is not None:
            g = cat_channels(readout.flatten(0, 1), hidden.flatten(0, 1)).unflatten(0, (b, n))
        g16 = self.fuser(f16, g).flatten(0, 1)  # (B*N)×D16×H16×W16
        g8 = self.up_16_8(f8, g16, n)  # (B*N)×D8×H8×W8
        g4 = self.up_8_4(f4, g8, n)  # (B*N)×D4×H4×W4
        want_hidden = update_hidden and self.hidden_update is not None and hidden is not None
        g4_16 = area_downsample(g4, 4) if want_hidden else None  # before g4 is overwritten by its ReLU
        logits = conv(F.relu(g4, inplace=not torch.is_grad_enabled()), self.pred)  # (B*N)×1×H4×W4
        new_hidden = None
        if want_hidden:
            assert self.hidden_update is not None and g4_16 is not None and hidden is not None
            g4_16 = torch.cat([g4_16, area_downsample(logits, 4)], dim=1)  # area pooling is per channel
            new_hidden = self.hidden_update(g16, g8, g4_16, hidden)
        # upsampled in fp32 whatever the network's dtype: the full-resolution logits feed the aggregation
        logits = F.interpolate(logits.float(), scale_factor=4.0, mode="bilinear", align_corners=False)
        return new_hidden, logits.view(b, n, *logits.shape[-2:])


class XMem(nn.Module):
    """The XMem network. Build it with a :class:`ModelConfig`, or load one with :func:`xmem.load_model`.

    ``config.architecture`` picks the official network or the lite one; both have this interface.
    ``inference_size``: the processing size (shorter side) the weights were made for, read from their file
    by :func:`xmem.load_model` when it records one (the embedded default model does); the engine uses it
    when :class:`InferenceConfig` leaves ``size`` unset. ``inference_mem_every`` likewise: the memory frame
    interval the weights were tuned for, used when :class:`MemoryConfig` leaves ``mem_every`` unset.
    """

    key_encoder: nn.Module
    value_encoder: ValueEncoder | LiteValueEncoder
    inference_size: int | None = None
    inference_mem_every: int | None = None

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        value_dim, hidden_dim = self.config.value_dim, self.config.hidden_dim
        assert self.config.key_dim is not None and value_dim is not None and hidden_dim is not None
        if self.config.architecture is Architecture.LITE:
            assert self.config.decoder_dims is not None and self.config.value_encoder_dims is not None
            feature_dims, decoder_dims = LITE_FEATURE_DIMS, self.config.decoder_dims
            self.key_encoder = EfficientNetLite0()  # f16, f8, f4: EfficientNet-Lite0 up to stride 16
            self.value_encoder = LiteValueEncoder(
                feature_dims[0], value_dim, hidden_dim, self.config.value_encoder_dims
            )
        else:
            feature_dims, decoder_dims = (F16_DIM, F8_DIM, F4_DIM), DECODER_DIMS
            self.key_encoder = resnet50_trunk(layer1_name="res2")  # f16, f8, f4; ResNet-50 up to layer3
            self.value_encoder = ValueEncoder(value_dim, hidden_dim)
        self.key_proj = KeyProjection(feature_dims[0], self.config.key_dim)
        self.decoder = Decoder(value_dim, hidden_dim, feature_dims, decoder_dims)

    def encode_key(
        self, image: torch.Tensor, *, need_shrinkage: bool = True, need_selection: bool = True
    ) -> tuple[
        torch.Tensor,
        torch.Tensor | None,
        torch.Tensor | None,
        tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ]:
        """Normalised image B×3×H×W (H, W multiples of 16) -> key B×Ck×H16×W16, shrinkage B×1×..,
        selection B×Ck×.., and the image features (f16, f8, f4)."""
        f16, f8, f4 = self.key_encoder(image)
        key, shrinkage, selection = self.key_proj(
            f16, need_shrinkage=need_shrinkage, need_selection=need_selection
        )
        return key, shrinkage, selection, (f16, f8, f4)

    def encode_value(
        self,
        image: torch.Tensor,
        f16: torch.Tensor,
        hidden: torch.Tensor | None,
        masks: torch.Tensor,
        *,
        deep_update: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-object value B×N×Cv×H16×W16 from the image and the objects' probabilities ``masks`` B×N×H×W;
        with ``deep_update`` also the refreshed sensory memory."""
        others = masks.sum(dim=1, keepdim=True) - masks  # the other objects' probabilities, not clamped
        return self.value_encoder(image, f16, hidden, masks, others, deep_update=deep_update)

    def segment(
        self,
        features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        readout: torch.Tensor,
        hidden: torch.Tensor | None,
        *,
        update_hidden: bool = True,
        selector: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Decode a memory readout. Returns (new hidden or None, aggregated logits B×(N+1)×H×W,
        probabilities B×(N+1)×H×W), background first. ``selector`` (B×N, training batches padded to a fixed
        number of objects) zeroes the probabilities of the padding slots before the aggregation."""
        new_hidden, prob = self._object_probabilities(features, readout, hidden, update_hidden, selector)
        logits, prob = aggregate(prob, dim=1)
        return new_hidden, logits, prob

    def segment_probabilities(
        self,
        features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        readout: torch.Tensor,
        hidden: torch.Tensor | None,
        *,
        update_hidden: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """:meth:`segment` without the aggregated logits, for inference: (new hidden or None, probabilities
        B×(N+1)×H×W, background first), equal to :meth:`segment`'s up to float rounding and cheaper at full
        resolution (:func:`xmem.model.modules.aggregate_probabilities`)."""
        new_hidden, prob = self._object_probabilities(features, readout, hidden, update_hidden, None)
        return new_hidden, aggregate_probabilities(prob, dim=1)

    def _object_probabilities(
        self,
        features: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        readout: torch.Tensor,
        hidden: torch.Tensor | None,
        update_hidden: bool,
        selector: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        # the decoder's logits as per-object probabilities B×N×H×W, before the aggregation
        f16, f8, f4 = features
        new_hidden, logits = self.decoder(f16, f8, f4, hidden, readout, update_hidden=update_hidden)
        prob = torch.sigmoid(logits)
        if selector is not None:
            prob = prob * selector[:, :, None, None].to(prob.dtype)
        return new_hidden, prob

    def freeze_split_weights(self) -> None:
        """Store the halves of every split convolution (for an inference copy whose weights are final)."""
        for module in self.modules():
            if isinstance(module, (SplitResBlock, ValueEncoder, LiteValueEncoder)):
                module.freeze_split_weights()
