"""Held-out validation during training: J&F (DAVIS protocol) of the inference engine on synthetic composite
videos whose photographs and seeds are never used in training."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from xmem.config import InferenceConfig, MemoryConfig
from xmem.data import CompositeConfig, held_out_videos
from xmem.data.synthetic import VALIDATION_FIRST_SEED
from xmem.inference.segmenter import VideoSegmenter
from xmem.metrics import VideoScorer, summarize
from xmem.model.network import XMem


@dataclass(frozen=True)
class ValidationConfig:
    """Every ``every`` iterations (and at the end of a stage), segment ``videos`` held-out composite videos
    from their first-frame masks and score J&F. With ``patience``, a stage stops early after that many
    validations without a better J&F; the best weights are kept as ``<stage>-best.safetensors``."""

    every: int = 500
    videos: int = 4
    video: CompositeConfig = field(default_factory=lambda: CompositeConfig(height=192, width=256, length=50))
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    patience: int | None = None
    first_seed: int = VALIDATION_FIRST_SEED  # held-out seeds of the validation videos (not the benchmarks')

    def __post_init__(self) -> None:
        if self.every < 1 or self.videos < 1:
            raise ValueError("validation every and videos must be positive")
        if self.patience is not None and self.patience < 1:
            raise ValueError("patience must be positive")


def validate(network: XMem, config: ValidationConfig, device: str = "cpu") -> float:
    """J&F (0..1) of ``network`` on the held-out videos (the network itself is left as it is)."""
    segmenter = VideoSegmenter(
        network, InferenceConfig(memory=config.memory, size=-1, device=device)
    )  # an inference copy
    results = []
    for i, video in enumerate(held_out_videos(config.videos, config.video, first_seed=config.first_seed)):
        first = video.mask(0)
        if not first.any():
            continue
        segmenter.reset()
        scorer = VideoScorer(len(video), name=f"heldout-{i}")
        for index, pred in segmenter.propagate(video.frames(), {0: first}):
            scorer.add(video.mask(index), pred if scorer.needs_prediction(index) else None)
        results.append(scorer.result())
    jf = summarize(results).jf if results else float("nan")
    return float(jf) if not np.isnan(jf) else float("nan")
