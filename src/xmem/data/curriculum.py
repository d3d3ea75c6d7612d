"""The max-skip curriculum of the training recipe: frames of a clip are sampled at most ``max_skip``
apart, with ``max_skip`` following 5 → 10 → 15 → 5, switching at 10 %, 30 % and 90 % of the iterations
(REFERENCE.md §6)."""

from __future__ import annotations

import bisect
from dataclasses import dataclass


@dataclass(frozen=True)
class SkipCurriculum:
    """Max skip as a step function of the training progress: ``values[i]`` from ``boundaries[i-1]``
    (inclusive) to ``boundaries[i]`` (exclusive), progress being the fraction of iterations done."""

    values: tuple[int, ...] = (5, 10, 15, 5)
    boundaries: tuple[float, ...] = (0.1, 0.3, 0.9)

    def __post_init__(self) -> None:
        if len(self.values) != len(self.boundaries) + 1:
            raise ValueError("a skip curriculum needs one more value than boundaries")
        if any(v < 1 for v in self.values):
            raise ValueError(f"max skip values must be at least 1: {self.values}")
        if list(self.boundaries) != sorted(self.boundaries) or any(
            not 0.0 <= b <= 1.0 for b in self.boundaries
        ):
            raise ValueError(f"boundaries must be increasing fractions in [0, 1]: {self.boundaries}")

    def max_skip(self, progress: float) -> int:
        """The max skip at ``progress`` ∈ [0, 1] (fraction of the training done)."""
        return self.values[bisect.bisect_right(self.boundaries, progress)]

    def at_iteration(self, iteration: int, total_iterations: int) -> int:
        """The max skip at ``iteration`` (0-based) of ``total_iterations``."""
        if total_iterations <= 0:
            raise ValueError("total_iterations must be positive")
        return self.max_skip(iteration / total_iterations)
