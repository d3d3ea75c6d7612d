"""ResNet trunks: torchvision's layout, and ImageNet initialisation from a local file only."""

from __future__ import annotations

import torch
from torchvision.models import resnet18, resnet50

from xmem.model.backbones import load_imagenet_into_trunk, resnet18_trunk, resnet50_trunk


def test_resnet50_trunk_loads_a_torchvision_state_dict_and_matches_its_features(tmp_path):
    """A torchvision ResNet-50 file (layer4/fc ignored, layer1 renamed res2) gives the same stride-16
    features as torchvision's own layers."""
    torch.manual_seed(0)
    reference = resnet50(weights=None).eval()
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(reference.state_dict(), path)
    trunk = resnet50_trunk()
    load_imagenet_into_trunk(trunk, path)
    trunk.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        f16, f8, f4 = trunk(x)
        r = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        r4 = reference.layer1(r)
        r8 = reference.layer2(r4)
        r16 = reference.layer3(r8)
    torch.testing.assert_close(f4, r4)
    torch.testing.assert_close(f8, r8)
    torch.testing.assert_close(f16, r16)
    assert not any(k.startswith(("layer4", "fc", "layer1.")) for k in trunk.state_dict())


def test_resnet18_trunk_matches_torchvision_features(tmp_path):
    """The ResNet-18 trunk's own blocks (torchvision is not imported for inference) give the features of
    torchvision's layers from the same state_dict, strided and shortcut blocks included."""
    torch.manual_seed(1)
    reference = resnet18(weights=None).eval()
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    trunk = resnet18_trunk(in_channels=3)
    load_imagenet_into_trunk(trunk, path)
    trunk.eval()
    x = torch.randn(2, 3, 64, 80)
    with torch.no_grad():
        f16, f8, f4 = trunk(x)
        r4 = reference.layer1(reference.maxpool(reference.relu(reference.bn1(reference.conv1(x)))))
        r8 = reference.layer2(r4)
        r16 = reference.layer3(r8)
    for ours, theirs in ((f4, r4), (f8, r8), (f16, r16)):
        torch.testing.assert_close(ours, theirs)


def test_the_official_network_is_built_without_torchvision():
    """Building the official architecture (ResNet-50 and ResNet-18 trunks) does not import torchvision
    (170 MB of resident memory and a second of start-up)."""
    import subprocess
    import sys

    code = (
        "import sys; from xmem.model.network import XMem; from xmem.config import ModelConfig; "
        "XMem(ModelConfig()); sys.exit('torchvision' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_extra_input_channels_start_at_zero(tmp_path):
    """The value encoder's mask channels are not in an ImageNet file: they start at zero."""
    torch.manual_seed(0)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    trunk = resnet18_trunk(in_channels=5)
    load_imagenet_into_trunk(trunk, path)
    torch.testing.assert_close(trunk.conv1.weight[:, :3], reference.conv1.weight)
    assert trunk.conv1.weight[:, 3:].abs().max() == 0


def test_value_encoder_initialised_from_a_resnet18_file(tmp_path):
    """init.value_backbone: the value encoder's conv1 (image channels), bn1 and layer1-3 come from the
    file, the mask channels start at zero, the fusion block is untouched."""
    from xmem.model.backbones import load_imagenet_into_value_encoder
    from xmem.model.network import XMem

    torch.manual_seed(0)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(reference.state_dict(), path)
    net = XMem()
    fuser_before = net.value_encoder.fuser.block1.conv1.weight.clone()
    load_imagenet_into_value_encoder(net.value_encoder, path)
    ve = net.value_encoder
    torch.testing.assert_close(ve.conv1.weight[:, :3], reference.conv1.weight)
    assert ve.conv1.weight[:, 3:].abs().max() == 0
    torch.testing.assert_close(ve.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)
    torch.testing.assert_close(ve.bn1.running_var, reference.bn1.running_var)
    assert torch.equal(ve.fuser.block1.conv1.weight, fuser_before)


def test_a_missing_or_wrong_imagenet_file_is_named(tmp_path):
    import pytest

    from xmem.io.errors import InputError

    with pytest.raises(InputError, match="not found"):
        load_imagenet_into_trunk(resnet50_trunk(), tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, bad)
    with pytest.raises(InputError, match=r"bad\.pth"):
        load_imagenet_into_trunk(resnet50_trunk(), bad)
