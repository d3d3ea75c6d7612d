"""The XMem network: key encoder, key projection, value encoder and decoder.

Pure ``nn.Module``s without any state between frames: the per-video state (the three memory stores)
lives in :mod:`xmem.memory` and is driven by :mod:`xmem.inference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xmem.config import ModelConfig
from xmem.model.backbones import resnet18_trunk, resnet50_trunk
from xmem.model.modules import (
    FeatureFusionBlock,
    HiddenReinforcer,
    HiddenUpdater,
    KeyProjection,
    SplitConv,
    SplitResBlock,
    UpsampleBlock,
    aggregate,
    area_downsample,
)

F16_DIM, F8_DIM, F4_DIM = 1024, 512, 256  # ResNet-50 widths at strides 16 / 8 / 4


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
        x = F.conv2d(image, w_img, self.conv1.bias, stride=2, padding=3)  # B×64×H2×W2 (bias: folded BN)
        g = torch.stack([masks, others], dim=2).flatten(0, 1).to(w_obj.dtype)  # (B*N)×2×H×W
        if w_obj.is_contiguous(memory_format=torch.channels_last):
            g = g.contiguous(memory_format=torch.channels_last)
        g = F.conv2d(g, w_obj, None, stride=2, padding=3)
        g = (g.unflatten(0, (b, n)) + x.unsqueeze(1)).flatten(0, 1)
        g = F.relu(self.maxpool(self.bn1(g)))
        g = self.layer3(self.layer2(self.layer1(g)))  # (B*N)×256×H16×W16
        value = self.fuser(f16, g.unflatten(0, (b, n)))  # B×N×Cv×H16×W16
        if deep_update and self.hidden_reinforce is not None and hidden is not None:
            hidden = self.hidden_reinforce(value, hidden)
        return value, hidden


class Decoder(nn.Module):
    """Memory readout + sensory memory + skip connections -> per-object logits at full resolution."""

    def __init__(self, value_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.fuser = FeatureFusionBlock(F16_DIM, value_dim + hidden_dim, 512, 512)
        self.hidden_update = HiddenUpdater((512, 256, 256 + 1), 256, hidden_dim) if hidden_dim > 0 else None
        self.up_16_8 = UpsampleBlock(F8_DIM, 512, 256)
        self.up_8_4 = UpsampleBlock(F4_DIM, 256, 256)
        self.pred = nn.Conv2d(256, 1, kernel_size=3, padding=1)

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
        # readout B×N×Cv×H16×W16, hidden B×N×Ch×H16×W16 -> (new hidden or None, logits B×N×H×W)
        b, n = readout.shape[:2]
        g = torch.cat([readout, hidden], dim=2) if self.hidden_update is not None else readout
        g16 = self.fuser(f16, g).flatten(0, 1)  # (B*N)×512×H16×W16
        g8 = self.up_16_8(f8, g16, n)  # (B*N)×256×H8×W8
        g4 = self.up_8_4(f4, g8, n)  # (B*N)×256×H4×W4
        want_hidden = update_hidden and self.hidden_update is not None and hidden is not None
        g4_16 = area_downsample(g4, 4) if want_hidden else None  # before g4 is overwritten by its ReLU
        logits = self.pred(F.relu(g4, inplace=not torch.is_grad_enabled()))  # (B*N)×1×H4×W4
        new_hidden = None
        if want_hidden:
            assert self.hidden_update is not None and g4_16 is not None and hidden is not None
            g4_16 = torch.cat([g4_16, area_downsample(logits, 4)], dim=1)  # area pooling is per channel
            new_hidden = self.hidden_update(g16, g8, g4_16, hidden)
        logits = F.interpolate(logits, scale_factor=4.0, mode="bilinear", align_corners=False)
        return new_hidden, logits.view(b, n, *logits.shape[-2:])


class XMem(nn.Module):
    """The XMem network. Build it with a :class:`ModelConfig`, or load one with :func:`xmem.load_model`."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        self.key_encoder = resnet50_trunk(layer1_name="res2")  # f16, f8, f4; ResNet-50 up to layer3
        self.value_encoder = ValueEncoder(self.config.value_dim, self.config.hidden_dim)
        self.key_proj = KeyProjection(F16_DIM, self.config.key_dim)
        self.decoder = Decoder(self.config.value_dim, self.config.hidden_dim)

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
        f16, f8, f4 = features
        new_hidden, logits = self.decoder(f16, f8, f4, hidden, readout, update_hidden=update_hidden)
        prob = torch.sigmoid(logits.float())
        if selector is not None:
            prob = prob * selector[:, :, None, None].to(prob.dtype)
        logits, prob = aggregate(prob, dim=1)
        return new_hidden, logits, prob

    def freeze_split_weights(self) -> None:
        """Store the halves of every split convolution (for an inference copy whose weights are final)."""
        for module in self.modules():
            if isinstance(module, (SplitResBlock, ValueEncoder)):
                module.freeze_split_weights()
