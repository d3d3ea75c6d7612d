"""Inference-only rewrites of a network that leave its outputs unchanged (up to rounding)."""

from __future__ import annotations

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_PAIRS = (
    ("conv1", "bn1"),
    ("conv2", "bn2"),
    ("conv3", "bn3"),
    # EfficientNet-Lite (lukemelas-style names): the stem and the MBConv blocks
    ("_conv_stem", "_bn0"),
    ("_expand_conv", "_bn0"),
    ("_depthwise_conv", "_bn1"),
    ("_project_conv", "_bn2"),
)


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that follows a convolution into that convolution, in place.

    Covers the ResNet stems and blocks (``convN`` → ``bnN``) and their ``downsample`` (conv, bn) pairs,
    and the EfficientNet-Lite stem and MBConv blocks (depthwise convolutions included).
    """
    for child in module.children():
        fold_batchnorm(child)
    for conv_name, bn_name in _PAIRS:
        conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, conv_name, fuse_conv_bn_eval(conv.eval(), bn.eval()))
            setattr(module, bn_name, nn.Identity())
    if (
        isinstance(module, nn.Sequential)
        and len(module) == 2
        and isinstance(module[0], nn.Conv2d)
        and isinstance(module[1], nn.BatchNorm2d)
    ):
        module[0] = fuse_conv_bn_eval(module[0].eval(), module[1].eval())
        module[1] = nn.Identity()
    return module
