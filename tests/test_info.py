"""`xmem info WEIGHTS`: variant, dims, parameter count and provenance of a checkpoint."""

from __future__ import annotations

import hashlib

import torch

from conftest import check_error
from xmem.cli import main
from xmem.config import ModelConfig
from xmem.model.golden import golden_rule_state_dict
from xmem.model.network import XMem


def info(capsys, path) -> str:
    assert main(["info", str(path)]) == 0
    return capsys.readouterr().out


def test_info_describes_a_released_layout_checkpoint(capsys, weights):
    out = info(capsys, weights)
    params = sum(p.numel() for p in XMem().parameters())
    assert "multi-object, with sensory memory" in out
    assert "key 64, value 512, hidden 64" in out
    assert f"parameters:  {params:,} (key_encoder " in out
    assert f"sha256:      {hashlib.sha256(weights.read_bytes()).hexdigest()}" in out
    assert f"size:        {weights.stat().st_size:,} bytes" in out
    assert "format:      state_dict" in out


def test_info_tells_the_variants_apart(capsys, tmp_path):
    config = ModelConfig(key_dim=16, value_dim=32, hidden_dim=0)
    state = golden_rule_state_dict(config)
    torch.save(state, tmp_path / "no-sensory.pth")
    out = info(capsys, tmp_path / "no-sensory.pth")
    assert "without sensory memory" in out and "key 16, value 32, hidden 0" in out
    assert f"{sum(p.numel() for p in XMem(config).parameters()):,}" in out

    stage0 = dict(state)
    stage0["value_encoder.conv1.weight"] = stage0["value_encoder.conv1.weight"][:, :4].clone()
    torch.save(
        {"it": 150000, "network": stage0, "optimizer": {"lr": torch.tensor(1e-5)}}, tmp_path / "s0.pth"
    )
    out = info(capsys, tmp_path / "s0.pth")
    assert "single-object value encoder" in out
    assert "training checkpoint (iteration 150000; also holds it, optimizer)" in out


def test_info_on_a_bad_file(capsys, tmp_path):
    (tmp_path / "bad.pth").write_bytes(b"nope")
    check_error(capsys, main(["info", str(tmp_path / "bad.pth")]), "bad.pth", "not a readable")
    check_error(capsys, main(["info", str(tmp_path / "none.pth")]), "none.pth", "not found")
