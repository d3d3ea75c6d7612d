"""Training data: static-image sequences, annotated videos (DAVIS / YouTube-VOS), synthetic composite
videos and real-scene videos (real cut-outs moving through real photographs), all yielding one sample
format (see :func:`xmem.data.sampling.build_sample`):

- ``frames``: float32 T×3×H×W, RGB in [0, 1] (not normalised),
- ``masks``: int64 T×H×W index masks, objects 1..n, 0 background,
- ``first_masks``: float32 O×H×W, the object masks of frame 0 (O = max objects, zero-padded),
- ``valid``: bool O, which object slots are real (the first n).

Randomness is per item, from (seed, epoch, index): use :class:`ClipSampler` (or ``set_epoch`` /
``set_max_skip``) to drive the epoch and the max-skip curriculum.
"""

from xmem.data.augment import AugmentConfig, ColorJitterRange, ResizedCrop, ZoomCrop
from xmem.data.curriculum import SkipCurriculum
from xmem.data.real_scenes import RealSceneClipConfig, RealSceneClipDataset, RealSceneConfig, RealSceneVideo
from xmem.data.sampler import ClipSampler, ConcatClips
from xmem.data.sampling import build_sample
from xmem.data.seeding import ItemKey
from xmem.data.sources import MissingExtraError, Split, background_videos, photographs
from xmem.data.static import (
    ImageMaskFolder,
    PhotoComposites,
    StaticConfig,
    StaticImageDataset,
    photo_static_dataset,
)
from xmem.data.synthetic import (
    CompositeClipConfig,
    CompositeClipDataset,
    CompositeConfig,
    CompositeVideo,
    held_out_videos,
    write_davis_folder,
)
from xmem.data.vos import VOSConfig, VOSDataset

__all__ = [
    "AugmentConfig",
    "ClipSampler",
    "ColorJitterRange",
    "CompositeClipConfig",
    "CompositeClipDataset",
    "CompositeConfig",
    "CompositeVideo",
    "ConcatClips",
    "ImageMaskFolder",
    "ItemKey",
    "MissingExtraError",
    "PhotoComposites",
    "RealSceneClipConfig",
    "RealSceneClipDataset",
    "RealSceneConfig",
    "RealSceneVideo",
    "ResizedCrop",
    "SkipCurriculum",
    "Split",
    "StaticConfig",
    "StaticImageDataset",
    "VOSConfig",
    "VOSDataset",
    "ZoomCrop",
    "background_videos",
    "build_sample",
    "held_out_videos",
    "photo_static_dataset",
    "photographs",
    "set_data_state",
    "write_davis_folder",
]


def set_data_state(dataset, *, epoch: int | None = None, max_skip: int | None = None) -> None:
    """Set the epoch and / or max skip of ``dataset`` and of every dataset inside it (ConcatClips,
    ConcatDataset, Subset), for lookups by plain index. (Lookups by :class:`ItemKey` carry their own.)
    DataLoader worker processes hold copies of the dataset made when an iterator starts: set the state
    before starting one, or use :class:`ClipSampler`, whose keys carry it."""
    inner = getattr(dataset, "datasets", None)
    if inner is not None:
        for d in inner:
            set_data_state(d, epoch=epoch, max_skip=max_skip)
        return
    if hasattr(dataset, "dataset"):
        set_data_state(dataset.dataset, epoch=epoch, max_skip=max_skip)
        return
    if epoch is not None:
        dataset.set_epoch(epoch)
    if max_skip is not None:
        dataset.set_max_skip(max_skip)
