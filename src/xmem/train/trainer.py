"""The trainer: stages of AdamW training on clips, DDP through torchrun, atomic checkpoints that resume
bit for bit, TensorBoard logs and a progress bar.

This module holds the training loop (stages, steps, held-out validation, logs, exported weights); the
process's place in a torchrun launch and its autocast dtype are in :mod:`xmem.train.context`, the initial
weights and the training checkpoint in :mod:`xmem.train.checkpoint`. ``TrainingError``,
``DistributedContext`` and ``CHECKPOINT_NAME`` are importable from here too.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from xmem.config import Architecture
from xmem.configio import to_dict
from xmem.data import ClipSampler, ItemKey
from xmem.inference.preprocess import IMAGENET_MEAN, IMAGENET_STD
from xmem.model.checkpoint import save_weights
from xmem.model.efficientnet import EfficientNetLite0
from xmem.model.network import XMem
from xmem.train.checkpoint import CHECKPOINT_NAME, initial_network, load_checkpoint, save_checkpoint
from xmem.train.config import StageConfig, TrainConfig
from xmem.train.context import DistributedContext, TrainingError, autocast_dtype
from xmem.train.forward import ClipOutput, calibrate_batchnorm, clip_forward
from xmem.train.losses import bootstrap_fraction, frame_loss
from xmem.train.validation import validate

__all__ = [
    "CALIBRATION_ITEMS",
    "CHECKPOINT_NAME",
    "ClipModel",
    "DatasetFactory",
    "DistributedContext",
    "Trainer",
    "TrainingError",
    "normalize_clip",
]

log = logging.getLogger("xmem.train")

CALIBRATION_ITEMS = 16  # clips whose statistics set the BatchNorms of randomly initialised encoders

DatasetFactory = Callable[[StageConfig, int], Dataset]


class ClipModel(nn.Module):
    """The network with the clip-level training forward as its ``forward`` (what DDP wraps)."""

    def __init__(self, network: XMem) -> None:
        super().__init__()
        self.network = network

    def forward(self, frames, first_masks, valid, num_ref_frames: int, deep_update_prob: float, generator):
        return clip_forward(
            self.network,
            frames,
            first_masks,
            valid,
            num_ref_frames=num_ref_frames,
            deep_update_prob=deep_update_prob,
            generator=generator,
        )


def _step_seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0] >> 1)


def normalize_clip(frames: torch.Tensor) -> torch.Tensor:
    """B×T×3×H×W RGB in [0, 1] -> ImageNet-normalised."""
    mean = torch.tensor(IMAGENET_MEAN, device=frames.device).view(1, 1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=frames.device).view(1, 1, 3, 1, 1)
    return (frames - mean) / std


class Trainer:
    """Runs the stages of ``config`` in ``run_dir`` (checkpoint, logs, exported weights).

    ``dataset_factory(stage, seed)`` builds a stage's dataset, indexed by :class:`xmem.data.ItemKey` (the
    default builds it from the stage's data config).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        resume: bool = False,
        dataset_factory: DatasetFactory | None = None,
        show_progress: bool = True,
    ) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self._owns_process_group = not dist.is_initialized()
        self.ctx = DistributedContext.from_env(config.device)
        self._owns_process_group = self._owns_process_group and dist.is_initialized()
        self.show_progress = show_progress and self.ctx.is_main
        if dataset_factory is None:
            from xmem.train.data import build_stage_dataset

            dataset_factory = build_stage_dataset
        self.dataset_factory = dataset_factory
        self.dtype = autocast_dtype(config.precision, self.ctx.device)
        self.network = XMem(config.model)
        self.start_stage, self.start_iteration = 0, 0
        self.best_jf, self.stale = float("-inf"), 0  # held-out validation of the current stage
        self._resume_state: dict | None = None
        if resume:
            self._resume_state = self._load_checkpoint()
        else:
            self.network = initial_network(config)
        self.network.to(self.ctx.device).eval()  # BatchNorm statistics stay frozen (as in the reference)
        self.writer = None

    # -- setup ---------------------------------------------------------------------------------------------
    def _load_checkpoint(self) -> dict:
        path = self.run_dir / CHECKPOINT_NAME
        state = load_checkpoint(path, self.config)
        self.network.load_state_dict(state["model"])
        self.start_stage, self.start_iteration = int(state["stage"]), int(state["iteration"])
        self.best_jf, self.stale = float(state["best_jf"]), int(state["stale"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming stage %d at iteration %d from %s", self.start_stage, self.start_iteration, path)
        return state

    # -- the run -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train every stage; returns the exported weights of the last stage."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.ctx.is_main:
            (self.run_dir / "config.json").write_text(json.dumps(to_dict(self.config), indent=2))
            self.writer = _tensorboard_writer(self.run_dir / "tensorboard")
        exported = self.run_dir / f"{self.config.stages[-1].name}.safetensors"
        try:
            for index in range(self.start_stage, len(self.config.stages)):
                exported = self._run_stage(index)
        finally:
            if self.writer is not None:
                self.writer.close()
            if self._owns_process_group and dist.is_initialized():
                dist.destroy_process_group()
        return exported

    def _run_stage(self, index: int) -> Path:
        stage = self.config.stages[index]
        ctx = self.ctx

        dataset = self.dataset_factory(stage, self.config.seed + index)
        start = self.start_iteration if index == self.start_stage else 0
        if index != self.start_stage or start == 0:
            self.best_jf, self.stale = float("-inf"), 0
        sampler = ClipSampler(
            len(dataset),
            batch_size=stage.batch_size,
            total_iterations=stage.iterations,
            seed=_step_seed(self.config.seed, index),
            curriculum=stage.data.curriculum,
            start_iteration=start,
            rank=ctx.rank,
            world_size=ctx.world_size,
        )
        loader = DataLoader(
            dataset,
            batch_size=stage.batch_size // ctx.world_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            pin_memory=ctx.device.type == "cuda",
        )
        self._freeze_key_blocks(stage)
        if index == 0 and start == 0 and self._resume_state is None:
            self._calibrate_random_batchnorms(dataset)
        model: nn.Module = ClipModel(self.network)
        if ctx.world_size > 1:
            model = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                broadcast_buffers=False,
                # with 2-frame clips the only segmented frame is the last: no hidden update
                find_unused_parameters=stage.data.num_frames < 3,
            )
        params = [p for p in self.network.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=stage.optim.lr, weight_decay=stage.optim.weight_decay)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, list(stage.optim.steps), stage.optim.gamma
        )
        scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None
        if self._resume_state is not None and index == self.start_stage and start > 0:
            optimizer.load_state_dict(self._resume_state["optimizer"])
            scheduler.load_state_dict(self._resume_state["scheduler"])
            if scaler is not None and self._resume_state.get("scaler") is not None:
                scaler.load_state_dict(self._resume_state["scaler"])

        bar = tqdm(
            total=stage.iterations, initial=start, desc=stage.name, unit="it", disable=not self.show_progress,
            dynamic_ncols=True,
        )  # fmt: skip
        iteration = start
        tick, window = time.perf_counter(), []
        for batch in loader:
            stats = self._train_step(model, stage, index, iteration, batch, optimizer, scheduler, scaler)
            iteration += 1
            window.append(stats)
            bar.update(1)
            bar.set_postfix(
                loss=f"{stats['loss']:.4f}", lr=f"{scheduler.get_last_lr()[0]:.1e}", refresh=False
            )
            if iteration % self.config.log_every == 0 or iteration == stage.iterations:
                elapsed = time.perf_counter() - tick
                self._log(stage, iteration, window, len(window) / max(elapsed, 1e-9), scheduler)
                tick, window = time.perf_counter(), []
            if self.writer is not None and iteration % self.config.image_every == 0:
                self._log_images(stage, iteration, batch, stats.pop("output", None))
            stats.pop("output", None)
            stop = self._maybe_validate(stage, iteration)
            if stop:
                log.info(
                    "stage %s: no better held-out J&F in %d validations, stopping", stage.name, self.stale
                )
                iteration = stage.iterations  # the stage is done
            snapshot = self.config.snapshot_every
            if snapshot is not None and iteration % snapshot == 0 and iteration < stage.iterations:
                self._export(stage, index, iteration)
            if iteration % self.config.save_every == 0 or iteration == stage.iterations:
                self._save_checkpoint(index, iteration, optimizer, scheduler, scaler)
            if stop:
                break
        bar.close()
        if iteration < stage.iterations:
            raise TrainingError(f"stage {stage.name!r}: the data ran out at iteration {iteration}")
        return self._export(stage, index)

    def _calibrate_random_batchnorms(self, dataset) -> None:
        """The parts that start from random weights (the lite value encoder; an official key or value encoder
        without its ImageNet file) get BatchNorm statistics from the first ``CALIBRATION_ITEMS`` items of the
        data (the same on every rank), see :func:`calibrate_batchnorm`."""
        cfg = self.config
        if cfg.init.weights is not None:
            return
        lite = cfg.model.architecture is Architecture.LITE
        untrained = []
        if lite or cfg.init.value_backbone is None:
            untrained.append(self.network.value_encoder)
        if not lite and cfg.init.key_backbone is None:
            untrained.append(self.network.key_encoder)
        items = [dataset[ItemKey(i)] for i in range(min(CALIBRATION_ITEMS, len(dataset)))]
        batch = {k: torch.stack([item[k] for item in items]).to(self.ctx.device) for k in items[0]}
        calibrate_batchnorm(
            untrained,
            self.network,
            normalize_clip(batch["frames"]),
            batch["first_masks"],
            batch["valid"],
            generator=torch.Generator().manual_seed(_step_seed(cfg.seed, 0, 2**32 - 1)),
        )
        log.info("BatchNorm statistics of the randomly initialised encoders set from %d clips", len(items))

    def _freeze_key_blocks(self, stage: StageConfig) -> None:
        encoder = self.network.key_encoder
        if isinstance(encoder, EfficientNetLite0):
            encoder.freeze(stage.freeze_key_blocks)
        elif stage.freeze_key_blocks:
            raise TrainingError(
                f"stage {stage.name!r}: freeze_key_blocks applies to the lite architecture's key encoder only"
            )

    def _maybe_validate(self, stage: StageConfig, iteration: int) -> bool:
        """Held-out J&F every ``validation.every`` iterations and at the stage's end; keeps the best weights.
        Returns whether the stage should stop (patience exhausted), the same on every rank."""
        cfg = self.config.validation
        if cfg is None or (iteration % cfg.every != 0 and iteration != stage.iterations):
            return False
        jf = float("nan")
        if self.ctx.is_main:
            jf = validate(self.network, cfg, device=str(self.ctx.device))
            self.network.eval()
        if self.ctx.world_size > 1:
            value = torch.tensor([jf], dtype=torch.float64, device=self.ctx.device)
            dist.broadcast(value, src=0)
            jf = float(value.item())
        if jf > self.best_jf:
            self.best_jf, self.stale = jf, 0
            if self.ctx.is_main:
                info = {
                    "stage": stage.name,
                    "iteration": iteration,
                    "heldout_jf": jf,
                    "training": to_dict(self.config),
                    **self._size_info(),
                }
                save_weights(self.network, self.run_dir / f"{stage.name}-best.safetensors", info)
        else:
            self.stale += 1
        if self.ctx.is_main:
            log.info(
                "%s %d: held-out J&F %.2f (best %.2f)", stage.name, iteration, 100 * jf, 100 * self.best_jf
            )
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(json.dumps({"stage": stage.name, "iteration": iteration, "heldout_jf": jf}) + "\n")
            if self.writer is not None:
                self.writer.add_scalar(f"{stage.name}/heldout_jf", jf, iteration)
        return cfg.patience is not None and self.stale >= cfg.patience and iteration < stage.iterations

    def _train_step(self, model, stage, index, iteration, batch, optimizer, scheduler, scaler) -> dict:
        device = self.ctx.device
        frames = normalize_clip(batch["frames"].to(device, non_blocking=True))
        masks = batch["masks"].to(device, non_blocking=True)
        first_masks = batch["first_masks"].to(device, non_blocking=True)
        valid = batch["valid"].to(device, non_blocking=True)
        num_objects = valid.sum(1)
        generator = torch.Generator().manual_seed(
            _step_seed(self.config.seed, index, iteration, self.ctx.rank)
        )
        fraction = bootstrap_fraction(stage.loss, iteration)
        autocast = (
            torch.autocast(device_type=device.type, dtype=self.dtype)
            if self.dtype is not None
            else nullcontext()
        )
        with autocast:
            out: ClipOutput = model(
                frames, first_masks, valid, stage.num_ref_frames, stage.deep_update_prob, generator
            )
        total = torch.zeros((), device=device)
        ce_sum = dice_sum = 0.0
        for t, (logits, prob) in enumerate(zip(out.logits, out.probs, strict=True), start=1):
            loss, ce, dice = frame_loss(
                logits.float(), prob.float(), masks[:, t], num_objects, fraction, stage.loss
            )
            total = total + loss
            ce_sum += float(ce.detach())
            dice_sum += float(dice.detach())
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.unscale_(optimizer)
        else:
            total.backward()
        grad_norm = float("nan")
        if stage.optim.grad_clip is not None:
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(self.network.parameters(), stage.optim.grad_clip)
            )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        scheduler.step()
        frames_scored = max(1, len(out.logits))
        return {
            "loss": float(total.detach()),
            "ce": ce_sum / frames_scored,
            "dice": dice_sum / frames_scored,
            "p": fraction,
            "grad_norm": grad_norm,
            "output": out,
        }

    # -- logging -------------------------------------------------------------------------------------------
    def _log(self, stage, iteration, window, its, scheduler) -> None:
        means = {k: float(np.mean([w[k] for w in window])) for k in ("loss", "ce", "dice", "p", "grad_norm")}
        if self.ctx.is_main:
            log.info(
                "%s %d/%d: loss %.4f (ce %.4f, dice %.4f, p %.2f), lr %.2e, %.2f it/s",
                stage.name, iteration, stage.iterations, means["loss"], means["ce"], means["dice"], means["p"],
                scheduler.get_last_lr()[0], its,
            )  # fmt: skip
            with open(self.run_dir / "log.jsonl", "a") as f:
                f.write(
                    json.dumps({"stage": stage.name, "iteration": iteration, "it_per_s": its, **means}) + "\n"
                )
        if self.writer is not None:
            for k, v in means.items():
                if not math.isnan(v):
                    self.writer.add_scalar(f"{stage.name}/{k}", v, iteration)
            self.writer.add_scalar(f"{stage.name}/lr", scheduler.get_last_lr()[0], iteration)
            self.writer.add_scalar(f"{stage.name}/it_per_s", its, iteration)

    def _log_images(self, stage, iteration, batch, out: ClipOutput | None) -> None:
        if out is None:
            return
        from xmem.train.visual import clip_panel

        panel = clip_panel(batch["frames"][0], batch["masks"][0], [p[0].detach().cpu() for p in out.probs])
        self.writer.add_image(f"{stage.name}/predictions", panel, iteration, dataformats="HWC")

    # -- checkpoints ---------------------------------------------------------------------------------------
    def _save_checkpoint(self, index, iteration, optimizer, scheduler, scaler) -> None:
        if not self.ctx.is_main:
            return
        stage_index, next_iteration = index, iteration
        if iteration == self.config.stages[index].iterations:  # a finished stage resumes at the next one
            stage_index, next_iteration = index + 1, 0
        save_checkpoint(
            self.run_dir / CHECKPOINT_NAME,
            network=self.network,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=scaler,
            stage=stage_index,
            iteration=next_iteration,
            config=self.config,
            best_jf=self.best_jf if stage_index == index else float("-inf"),
            stale=self.stale if stage_index == index else 0,
        )

    def _size_info(self) -> dict[str, int]:
        size = self.config.inference_size
        return {} if size is None else {"inference_size": size}

    def _export(self, stage: StageConfig, index: int, iteration: int | None = None) -> Path:
        """The stage's weights: its final ones (``<stage>.safetensors``), or a snapshot at ``iteration``
        (``<stage>-<iteration>.safetensors``)."""
        name = stage.name if iteration is None else f"{stage.name}-{iteration}"
        path = self.run_dir / f"{name}.safetensors"
        if self.ctx.is_main:
            info = {
                "stage": stage.name,
                "iterations": stage.iterations if iteration is None else iteration,
                "training": to_dict(self.config),
                **self._size_info(),
            }
            save_weights(self.network, path, info)
            if iteration is None:
                log.info("stage %s done: weights in %s", stage.name, path)
            else:
                log.info("stage %s, iteration %d: weights in %s", stage.name, iteration, path)
        if self.ctx.world_size > 1:
            dist.barrier()
        return path


def _tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("tensorboard is not installed (pip install 'xmem-vos[train]'): no TensorBoard logs")
        return None
    return SummaryWriter(str(folder))
