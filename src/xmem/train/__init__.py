"""Training: losses, the clip-level forward pass, the trainer and its configuration."""

from xmem.train.config import (
    DataConfig,
    InitConfig,
    OptimConfig,
    StageConfig,
    StaticData,
    SyntheticData,
    TrainConfig,
    TrainPrecision,
    VideoData,
)
from xmem.train.losses import LossConfig

__all__ = [
    "DataConfig",
    "InitConfig",
    "LossConfig",
    "OptimConfig",
    "StageConfig",
    "StaticData",
    "SyntheticData",
    "TrainConfig",
    "TrainPrecision",
    "VideoData",
]
