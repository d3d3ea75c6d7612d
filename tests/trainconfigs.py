"""Small training configurations shared by the training tests (test_train, test_lite, the DDP script)."""

from __future__ import annotations

from xmem.config import ModelConfig
from xmem.data import CompositeClipConfig, CompositeConfig
from xmem.train.config import DataConfig, OptimConfig, StageConfig, SyntheticData, TrainConfig, TrainPrecision

SMALL = ModelConfig(key_dim=16, value_dim=32, hidden_dim=8)


def tiny_config(
    iterations: int = 4,
    *,
    batch_size: int = 2,
    deep_update_prob: float = 0.5,
    max_objects: int = 2,
    items: int = 20,
    freeze_key_blocks: int = 0,
    optim: OptimConfig | None = None,
    **kw,
) -> TrainConfig:
    """One stage of ``iterations`` on 48×48 composite clips of 3 frames with up to ``max_objects`` objects;
    ``kw`` overrides the TrainConfig fields (model, validation, ...)."""
    clips = CompositeClipConfig(
        video=CompositeConfig(height=48, width=48, length=30, objects=(1, max_objects)),
        num_frames=3,
        max_objects=max_objects,
        items=items,
    )
    stage = StageConfig(
        name="main",
        iterations=iterations,
        data=DataConfig(synthetic=SyntheticData(clips)),
        batch_size=batch_size,
        deep_update_prob=deep_update_prob,
        freeze_key_blocks=freeze_key_blocks,
        optim=optim if optim is not None else OptimConfig(lr=1e-4, steps=(3,), grad_clip=5.0),
    )
    defaults = dict(
        stages=(stage,), model=SMALL, precision=TrainPrecision.FP32, device="cpu", seed=5, num_workers=0,
        save_every=2, log_every=2, image_every=1000,
    )  # fmt: skip
    defaults.update(kw)
    return TrainConfig(**defaults)
