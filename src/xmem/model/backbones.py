"""ResNet trunks up to stride 16 in torchvision's layout (its parameter names, so that its ImageNet files
load; no weights are ever downloaded).

The residual blocks are defined here rather than imported from torchvision: importing torchvision costs
about 170 MB of resident memory and a second of start-up, which inference does not need to pay.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xmem.io.errors import InputError
from xmem.model.ops import conv


class _ResidualBlock(nn.Module):
    """A ResNet block: ``conv1/bn1 … convD/bnD`` with a ReLU after each, the last one after the shortcut is
    added. Subclasses build the layers; the forward pass is shared (plain, or fused once the BatchNorms
    are folded into the convolutions)."""

    depth: int  # convolutions on the main path
    expansion: int  # output channels / planes

    def layers(self) -> list[tuple[nn.Conv2d, nn.Module]]:
        return [(getattr(self, f"conv{i}"), getattr(self, f"bn{i}")) for i in range(1, self.depth + 1)]

    def forward(self, x: torch.Tensor, *, own_input: bool = False) -> torch.Tensor:
        """``own_input``: nothing else uses ``x`` (a stage's inner blocks), so the fused path may write the
        residual sum into it; a downsampling convolution's output is always written into."""
        *main, (last_conv, last_bn) = self.layers()
        if _folded(self):
            shortcut = x if self.downsample is None else conv(x, self.downsample[0])
            out = x
            for c, _ in main:
                out = conv(out, c, relu=True)
            fresh = self.downsample is not None or own_input
            return conv(out, last_conv, relu=True, add=shortcut, add_in_place=fresh)
        shortcut = x if self.downsample is None else self.downsample(x)
        out = x
        for c, bn in main:
            out = torch.relu(bn(c(out)))
        return torch.relu(last_bn(last_conv(out)) + shortcut)


class BasicBlock(_ResidualBlock):
    """ResNet-18/34 block: two 3×3 convolutions (the first strided) with BatchNorms, plus the shortcut."""

    depth, expansion = 2, 1

    def __init__(
        self, in_dim: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample


class Bottleneck(_ResidualBlock):
    """ResNet-50 block: 1×1 reduction, strided 3×3, 1×1 expansion (×4), each with a BatchNorm, plus the
    shortcut (the stride on the 3×3 convolution, as torchvision places it)."""

    depth, expansion = 3, 4

    def __init__(
        self, in_dim: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample


def _make_layer(block: type[BasicBlock | Bottleneck], in_dim: int, planes: int, blocks: int, stride: int):
    downsample = None
    out_dim = planes * block.expansion
    if stride != 1 or in_dim != out_dim:
        downsample = nn.Sequential(
            nn.Conv2d(in_dim, out_dim, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_dim)
        )
    layers = [block(in_dim, planes, stride, downsample)]
    layers += [block(out_dim, planes) for _ in range(1, blocks)]
    return ResidualStage(*layers)


class ResidualStage(nn.Sequential):
    """The blocks of one ResNet stage in sequence (``nn.Sequential``'s parameter names). Each block after
    the first receives a tensor that only it uses, which it may overwrite with its residual sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self):
            x = block(x, own_input=i > 0)
        return x


def _init_resnet(module: nn.Module) -> None:
    # torchvision's initialisation
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetTrunk(nn.Module):
    """conv1/bn1 stem and three residual stages (strides 4, 8, 16).

    ``layer1_name`` is ``"res2"`` for XMem's key encoder (the released checkpoint's name) and
    ``"layer1"`` elsewhere.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int],
        in_channels: int = 3,
        layer1_name: str = "layer1",
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._layer1_name = layer1_name
        self.add_module(layer1_name, _make_layer(block, 64, 64, layers[0], 1))
        self.layer2 = _make_layer(block, 64 * block.expansion, 128, layers[1], 2)
        self.layer3 = _make_layer(block, 128 * block.expansion, 256, layers[2], 2)
        _init_resnet(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: B×Cin×H×W -> f16, f8, f4
        if _folded(self):
            x = self.maxpool(conv(x, self.conv1, relu=True))
        else:
            x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        f4 = self._modules[self._layer1_name](x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return f16, f8, f4


def _folded(module: nn.Module) -> bool:
    """Whether the module's BatchNorms were folded into its convolutions (an inference copy)."""
    return isinstance(module.bn1, nn.Identity)


def resnet50_trunk(layer1_name: str = "res2") -> ResNetTrunk:
    return ResNetTrunk(Bottleneck, (3, 4, 6), in_channels=3, layer1_name=layer1_name)


def resnet18_trunk(in_channels: int) -> ResNetTrunk:
    return ResNetTrunk(BasicBlock, (2, 2, 2), in_channels=in_channels)


def _imagenet_state(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: ImageNet weights file not found") from None
    except Exception as exc:
        raise InputError(f"{path}: not a readable torchvision state_dict ({exc})") from None
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a torchvision state_dict")
    return state


def load_imagenet_into_value_encoder(encoder: nn.Module, path: str | Path) -> None:
    """Initialise the value encoder's ResNet-18 parts (conv1, bn1, layer1-3) from a local torchvision
    ``resnet18-*.pth``; the mask channels of conv1 start at zero. Never downloads."""
    trunk = resnet18_trunk(in_channels=encoder.conv1.weight.shape[1])
    load_imagenet_into_trunk(trunk, path)
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        getattr(encoder, name).load_state_dict(getattr(trunk, name).state_dict())


def load_imagenet_into_trunk(trunk: ResNetTrunk, path: str | Path) -> None:
    """Initialise a trunk from a local torchvision ImageNet state_dict file (``resnet50-*.pth``).

    Extra input channels of ``conv1`` (masks in the value encoder) start at zero; ``layer4``/``fc`` are
    ignored. Never downloads.
    """
    state = _imagenet_state(path)
    own = trunk.state_dict()
    renamed = {}
    for name, tensor in state.items():
        if name.startswith(("layer4.", "fc.")):
            continue
        if name.startswith("layer1."):
            name = trunk._layer1_name + name[len("layer1") :]
        renamed[name] = tensor
    conv1, own_conv1 = renamed.get("conv1.weight"), own["conv1.weight"]
    if (
        conv1 is not None
        and conv1.ndim == 4
        and conv1.shape[1] < own_conv1.shape[1]
        and conv1.shape[::2] == own_conv1.shape[::2]
    ):
        padded = torch.zeros_like(own_conv1)
        padded[:, : conv1.shape[1]] = conv1
        renamed["conv1.weight"] = padded
    try:
        missing, unexpected = trunk.load_state_dict(renamed, strict=False)
    except RuntimeError as exc:  # mis-shaped tensors
        raise InputError(
            f"{path}: not a matching ResNet ImageNet state_dict ({str(exc).splitlines()[-1].strip()})"
        ) from None
    if missing or unexpected:
        raise InputError(
            f"{path}: not a ResNet ImageNet state_dict (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
