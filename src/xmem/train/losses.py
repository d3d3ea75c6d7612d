"""Training losses (REFERENCE.md §6): bootstrapped cross-entropy on the aggregated logits, with its warm-up
schedule, plus soft Dice per object."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossConfig:
    """Plain cross-entropy until ``bootstrap_start``; then only the hardest ``p`` of the pixels count, with
    ``p`` falling linearly from 1 to ``bootstrap_final`` at ``bootstrap_end`` (iterations of the stage)."""

    bootstrap_start: int = 20000
    bootstrap_end: int = 70000
    bootstrap_final: float = 0.15
    dice_weight: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.bootstrap_final <= 1:
            raise ValueError(f"bootstrap_final must be in (0, 1], got {self.bootstrap_final}")
        if self.bootstrap_end < self.bootstrap_start:
            raise ValueError("bootstrap_end must not come before bootstrap_start")


def bootstrap_fraction(config: LossConfig, iteration: int) -> float:
    """The share of pixels the cross-entropy keeps at ``iteration`` (1.0 during the warm-up)."""
    if iteration < config.bootstrap_start:
        return 1.0
    if iteration >= config.bootstrap_end or config.bootstrap_end == config.bootstrap_start:
        return config.bootstrap_final
    progress = (iteration - config.bootstrap_start) / (config.bootstrap_end - config.bootstrap_start)
    return 1.0 - (1.0 - config.bootstrap_final) * progress


def bootstrapped_cross_entropy(logits: torch.Tensor, target: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean cross-entropy over the hardest ``fraction`` of all pixels of the batch.

    ``logits`` B×(N+1)×H×W (background first), ``target`` B×H×W index masks (0..N).
    """
    raw = F.cross_entropy(logits, target, reduction="none").flatten()
    if fraction >= 1.0:
        return raw.mean()
    keep = max(1, int(raw.numel() * fraction))
    return torch.topk(raw, keep, sorted=False).values.mean()


def soft_dice_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Soft Dice per object and batch element, averaged: ``1 - (2|p·m| + 1) / (|p| + |m| + 1)``.

    ``prob`` B×N×H×W object probabilities (no background), ``target`` B×H×W index masks (object i is
    ``i + 1``). Object slots that are empty in both contribute 0.
    """
    n = prob.shape[1]
    ids = torch.arange(1, n + 1, device=target.device).view(1, n, 1, 1)
    gt = (target.unsqueeze(1) == ids).to(prob.dtype).flatten(2)  # B×N×HW
    p = prob.flatten(2)
    numerator = 2 * (p * gt).sum(-1)
    denominator = p.sum(-1) + gt.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).mean()


def frame_loss(
    logits: torch.Tensor,
    prob: torch.Tensor,
    target: torch.Tensor,
    num_objects: torch.Tensor,
    fraction: float,
    config: LossConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The loss of one frame: (total, cross-entropy, dice).

    ``logits`` B×(O+1)×H×W aggregated logits, ``prob`` B×O×H×W aggregated object probabilities, ``target``
    B×H×W, ``num_objects`` B (the real object slots come first). The cross-entropy of each batch element
    runs over its own real objects only (padded slots are not classes), then is averaged over the batch.
    """
    ce = torch.stack(
        [
            bootstrapped_cross_entropy(
                logits[b : b + 1, : int(num_objects[b]) + 1], target[b : b + 1], fraction
            )
            for b in range(logits.shape[0])
        ]
    ).mean()
    dice = soft_dice_loss(prob, target)
    return ce + config.dice_weight * dice, ce, dice
