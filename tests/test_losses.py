"""Training losses on hand-computed cases (REFERENCE.md §6)."""

from __future__ import annotations

import math

import pytest
import torch

from xmem.train.losses import (
    LossConfig,
    bootstrap_fraction,
    bootstrapped_cross_entropy,
    frame_loss,
    soft_dice_loss,
)


def test_bootstrap_schedule_warm_up_then_linear_then_final() -> None:
    cfg = LossConfig(bootstrap_start=20000, bootstrap_end=70000, bootstrap_final=0.15)
    assert bootstrap_fraction(cfg, 0) == 1.0
    assert bootstrap_fraction(cfg, 19999) == 1.0
    assert bootstrap_fraction(cfg, 20000) == pytest.approx(1.0)
    assert bootstrap_fraction(cfg, 45000) == pytest.approx((1.0 + 0.15) / 2)
    assert bootstrap_fraction(cfg, 70000) == pytest.approx(0.15)
    assert bootstrap_fraction(cfg, 110000) == pytest.approx(0.15)


def test_cross_entropy_plain_and_hardest_half() -> None:
    # two classes, four pixels: logits (0, a) with target 0 -> CE = log(1 + e^a)
    a = torch.tensor([0.0, 1.0, 2.0, 3.0])
    logits = torch.stack([torch.zeros(4), a]).view(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    per_pixel = [math.log(1 + math.exp(v)) for v in a.tolist()]
    assert bootstrapped_cross_entropy(logits, target, 1.0).item() == pytest.approx(
        sum(per_pixel) / 4, rel=1e-6
    )
    hardest_two = (per_pixel[2] + per_pixel[3]) / 2
    assert bootstrapped_cross_entropy(logits, target, 0.5).item() == pytest.approx(hardest_two, rel=1e-6)
    # at least one pixel is kept
    assert bootstrapped_cross_entropy(logits, target, 0.01).item() == pytest.approx(per_pixel[3], rel=1e-6)


def test_soft_dice_hand_computed() -> None:
    prob = torch.full((1, 2, 2, 2), 0.5)
    prob[:, 1] = 0.0  # second slot: nothing predicted
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    target[0, 0, 0] = 1  # object 1 on one pixel, object 2 absent
    # object 1: numerator 2·0.5 = 1, denominator 2 + 1 = 3 -> 1 - 2/4 = 0.5; object 2: 1 - 1/1 = 0
    assert soft_dice_loss(prob, target).item() == pytest.approx((0.5 + 0.0) / 2)
    perfect = torch.zeros(1, 1, 2, 2)
    perfect[0, 0, 0, 0] = 1
    assert soft_dice_loss(perfect, target).item() == pytest.approx(0.0)


def test_frame_loss_ignores_padding_slots_in_the_cross_entropy() -> None:
    torch.manual_seed(0)
    target = torch.randint(0, 2, (2, 4, 4))  # objects 1 only; slot 2 is padding
    logits = torch.randn(2, 3, 4, 4)
    prob = torch.softmax(logits, dim=1)[:, 1:]
    n = torch.tensor([1, 1])
    cfg = LossConfig()
    total, ce, dice = frame_loss(logits, prob, target, n, 1.0, cfg)
    changed = logits.clone()
    changed[:, 2] = 100.0  # the padding slot's logits do not enter the cross-entropy
    _, ce_changed, _ = frame_loss(changed, prob, target, n, 1.0, cfg)
    assert ce_changed.item() == pytest.approx(ce.item())
    expected_ce = torch.stack(
        [torch.nn.functional.cross_entropy(logits[b : b + 1, :2], target[b : b + 1]) for b in range(2)]
    ).mean()
    assert ce.item() == pytest.approx(expected_ce.item(), rel=1e-6)
    assert total.item() == pytest.approx(ce.item() + dice.item(), rel=1e-6)
