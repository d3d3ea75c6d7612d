"""The per-frame engine: decides what to memorise, segment and update on each frame (REFERENCE.md §3b)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from typing import TypedDict

import numpy as np
import torch

from xmem.config import DEFAULT_MEM_EVERY, DEFAULT_SIZE, InferenceConfig, Precision, resolve_device
from xmem.inference.numerics import numerics
from xmem.inference.precision import resolve_precision
from xmem.inference.preprocess import (
    image_size,
    network_input,
    pad_to_multiple,
    processing_size,
    resize_index_mask,
    resize_probabilities,
    unpad,
)
from xmem.memory.manager import MemoryManager, MemoryState
from xmem.model.fuse import fold_batchnorm
from xmem.model.modules import aggregate_probabilities
from xmem.model.network import XMem
from xmem.model.ops import pack_convolution_weights

MaskLike = np.ndarray | torch.Tensor


def prepare_network(
    network: XMem, device: torch.device, precision: Precision, *, copy_network: bool = True
) -> XMem:
    """``network`` made ready for inference: eval mode, BatchNorm folded into the convolutions, on
    ``device`` in the precision's dtype, channels-last where it helps, with its convolution weights packed
    for oneDNN on the CPU (:func:`xmem.model.ops.pack_convolution_weights`). A copy is prepared, leaving the given
    network untouched, unless ``copy_network`` is false: the given network is then converted in place
    (no second set of weights in memory) and must not be trained or saved afterwards."""
    network = (copy.deepcopy(network) if copy_network else network).eval()
    fold_batchnorm(network)
    network = network.to(device=device, dtype=precision.dtype)
    if device.type != "mps":
        network = network.to(memory_format=torch.channels_last)
    network.freeze_split_weights()
    if device.type == "cpu":
        pack_convolution_weights(network)
    return network


def network_calls(network: XMem, compiled: bool) -> tuple[Callable, Callable, Callable]:
    """The three network calls of a step (``encode_key``, ``segment_probabilities``, ``encode_value``), each through
    :func:`torch.compile` when ``compiled`` (static shapes: a video's shapes repeat on every frame)."""
    calls = (network.encode_key, network.segment_probabilities, network.encode_value)
    if not compiled:
        return calls
    return tuple(torch.compile(call, dynamic=False) for call in calls)  # type: ignore[return-value]


def with_recorded_settings(config: InferenceConfig, network: XMem) -> InferenceConfig:
    """``config`` with its unset settings (``None``) filled: the processing size and the memory frame
    interval that the network's weights record (:attr:`XMem.inference_size`, :attr:`XMem.inference_mem_every`),
    else the paper's (480, 5)."""
    size = config.size if config.size is not None else network.inference_size or DEFAULT_SIZE
    mem_every = config.memory.mem_every
    if mem_every is None:
        mem_every = network.inference_mem_every or DEFAULT_MEM_EVERY
    return dataclasses.replace(
        config, size=size, memory=dataclasses.replace(config.memory, mem_every=mem_every)
    )


class InferenceCore:
    """Segments one video frame by frame with XMem's three memory stores.

    >>> core = InferenceCore(network, InferenceConfig(size=-1, device="cpu"))
    >>> prob = core.step(frame0, mask=index_mask)      # (N+1)×H×W, background first
    >>> prob = core.step(frame1)                        # propagated
    >>> core.objects                                    # object ids, in the order of prob[1:]

    ``step`` takes an RGB frame (H×W×3 uint8 or 3×H×W float in [0, 1]) and optionally a mask that
    defines some objects on this frame: an H×W index mask (object ids; ``objects`` says which ids it
    defines, by default those present), or a K×H×W float tensor of probabilities for the K ids in
    ``objects``. New ids are added; given objects override the prediction in their area; objects the mask
    does not define keep their prediction. ``end=True`` marks the last frame (never memorised).

    The engine prepares a copy of ``network`` (see :func:`prepare_network`); ``copy_network=False``
    converts the given network in place instead, saving one set of weights where the caller has no
    further use for it (the command line does this).
    """

    def __init__(
        self, network: XMem, config: InferenceConfig | None = None, *, copy_network: bool = True
    ) -> None:
        config = config or InferenceConfig()
        config = with_recorded_settings(config, network)
        self.device = resolve_device(config.device)
        choice = resolve_precision(config.precision, self.device)
        self.config = dataclasses.replace(config, precision=choice.precision)
        self.precision_reason = choice.reason  # why this precision runs ("asked for", or auto's reason)
        self.network = prepare_network(network, self.device, self.config.precision, copy_network=copy_network)
        self.dtype = self.config.precision.dtype
        self._encode_key, self._segment, self._encode_value = network_calls(self.network, self.config.compile)
        self.reset()

    # -- state ---------------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the video: memory, objects and frame count."""
        self.memory = MemoryManager(self.config.memory, self.network.config.hidden_dim)
        self.objects: list[int] = []
        self.frame_index = -1  # index of the last frame processed (0 = the first frame with a mask)
        self.last_memory_index = 0

    def remove_object(self, obj_id: int) -> None:
        """Stop tracking an object: its memory (all stores) and its id are dropped."""
        self.remove_objects([obj_id])

    def remove_objects(self, obj_ids: Sequence[int]) -> None:
        gone = [o for o in obj_ids if o in self.objects]
        if not gone:
            return
        self.memory.remove_objects(gone)
        self.objects = [o for o in self.objects if o not in gone]

    # -- the step ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def step(
        self,
        image: np.ndarray | torch.Tensor,
        mask: MaskLike | None = None,
        objects: Sequence[int] | None = None,
        *,
        end: bool = False,
    ) -> torch.Tensor:
        """Process one frame; returns probabilities (N+1)×H×W (background, then ``self.objects``) at the
        input size, on the engine's device."""
        with numerics(self.device, self.config.precision):
            return self._step(image, mask, objects, end)

    def _step(
        self,
        image: np.ndarray | torch.Tensor,
        mask: MaskLike | None,
        objects: Sequence[int] | None,
        end: bool,
    ) -> torch.Tensor:
        in_hw = image_size(image)
        proc_hw = processing_size(*in_hw, self.config.size)
        given, given_ids = self._given_masks(mask, objects, in_hw, proc_hw)
        if not self.objects and given is None:
            # nothing to track yet: all background, the video has not started for the engine
            return torch.ones(1, *in_hw, device=self.device)

        self.frame_index += 1
        t = self.frame_index
        mem_cfg = self.config.memory
        new_ids = sorted(i for i in given_ids if i not in self.objects)
        all_ids = self.objects + new_ids
        is_memory = (t - self.last_memory_index >= mem_cfg.mem_every or given is not None) and not end
        need_segment = t > 0 and self.memory.engaged and len(given_ids) != len(all_ids)
        deep_update = is_memory and mem_cfg.deep_update
        hidden_update = need_segment and not deep_update and not end

        channels_last = self.device.type != "mps"
        frame = network_input(image, proc_hw, self.device, self.dtype, channels_last=channels_last)
        frame, pad = pad_to_multiple(frame, 16)
        if channels_last:
            frame = frame.contiguous(memory_format=torch.channels_last)
        key, shrinkage, selection, features = self._encode_key(
            frame, need_shrinkage=is_memory, need_selection=mem_cfg.long_term or need_segment
        )

        prob_no_bg = None  # N_known×H×W
        if need_segment:
            assert selection is not None
            readout = self.memory.read(key[0], selection[0]).to(self.dtype)
            hidden = self._hidden(len(self.objects), key)
            new_hidden, prob = self._segment(features, readout, hidden, update_hidden=hidden_update)
            if hidden_update and new_hidden is not None:
                self.memory.set_hidden(new_hidden)
            prob_no_bg = prob[0, 1:]

        if given is not None:
            given, _ = pad_to_multiple(given, 16)
            per_object = []
            covered = given.sum(0) > 0.5 if prob_no_bg is not None else None
            for obj in all_ids:
                if obj in given_ids:
                    per_object.append(given[given_ids.index(obj)])
                else:
                    assert prob_no_bg is not None
                    pred = prob_no_bg[self.objects.index(obj)]
                    per_object.append(pred.masked_fill(covered, 0))  # type: ignore[arg-type]
            prob = aggregate_probabilities(torch.stack(per_object), dim=0)  # (N+1)×H×W
            self.objects = all_ids
            self.memory.ensure_hidden(len(all_ids), key[0])
        elif prob_no_bg is not None:
            prob = prob[0]
        else:  # objects are known but nothing was memorised: the video was ended with end=True
            raise RuntimeError(
                "no memory to segment from: the video was ended (end=True); call reset() first"
            )

        if is_memory:
            hidden = self._hidden(len(self.objects), key)
            value, new_hidden = self._encode_value(
                frame, features[0], hidden, prob[None, 1:].to(self.dtype), deep_update=deep_update
            )
            self.memory.add_memory(key[0], shrinkage[0], selection[0] if selection is not None else None,
                                   value[0], self.objects)  # fmt: skip
            self.last_memory_index = t
            if deep_update and new_hidden is not None:
                self.memory.set_hidden(new_hidden)

        return resize_probabilities(unpad(prob.float(), pad), in_hw)

    # -- helpers -------------------------------------------------------------------------------------------
    def _hidden(self, num_objects: int, key: torch.Tensor) -> torch.Tensor | None:
        if self.network.config.hidden_dim == 0:
            return None
        self.memory.ensure_hidden(num_objects, key[0])
        assert self.memory.hidden is not None
        return self.memory.hidden.to(self.dtype)

    def _given_masks(
        self,
        mask: MaskLike | None,
        objects: Sequence[int] | None,
        in_hw: tuple[int, int],
        proc_hw: tuple[int, int],
    ) -> tuple[torch.Tensor | None, list[int]]:
        """The mask as K×h×w float probabilities at the processing size, and the K ids it defines."""
        if mask is None:
            if objects:
                raise ValueError("objects were given without a mask")
            return None, []
        m = torch.from_numpy(np.ascontiguousarray(mask)) if isinstance(mask, np.ndarray) else mask
        m = m.to(self.device)
        if tuple(m.shape[-2:]) != in_hw:
            raise ValueError(f"mask size {tuple(m.shape[-2:])} differs from the frame size {in_hw}")
        if m.ndim == 2 and not m.is_floating_point():
            ids = (
                sorted(int(i) for i in torch.unique(m).tolist() if i != 0)
                if objects is None
                else list(objects)
            )
            if any(i <= 0 for i in ids):
                raise ValueError(f"object ids must be positive, got {ids}")
            m = resize_index_mask(m.long(), proc_hw)
            probs = torch.stack([(m == i) for i in ids]).float() if ids else None
            return probs, ids
        if m.ndim == 3 and m.is_floating_point():
            if objects is None or len(objects) != m.shape[0]:
                raise ValueError("a K×H×W probability mask needs `objects` with its K object ids")
            probs = resize_probabilities(m.float(), proc_hw)
            return probs, list(objects)
        raise ValueError(
            f"mask must be an H×W integer index mask or a K×H×W float tensor, got {tuple(m.shape)} {m.dtype}"
        )

    # -- serialisation -------------------------------------------------------------------------------------
    def state_dict(self) -> EngineState:
        """Everything the engine knows about the video so far (memories, object ids, frame counters), as
        plain tensors, ints and lists: ``torch.save`` it, and :meth:`load_state_dict` in an engine with the
        same network and settings continues the video exactly as this one would."""
        return EngineState(
            objects=list(self.objects),
            frame_index=self.frame_index,
            last_memory_index=self.last_memory_index,
            memory=self.memory.state_dict(),
        )

    def load_state_dict(self, state: EngineState) -> None:
        """Continue a video from :meth:`state_dict`'s output (tensors are moved to this engine's device).

        Raises ``ValueError`` when ``state`` does not fit this engine's network or is inconsistent.
        """
        if not isinstance(state, dict) or set(state) != set(EngineState.__annotations__):
            raise ValueError("not an engine state")
        objects = state["objects"]
        if not isinstance(objects, list) or not all(isinstance(o, int) and o > 0 for o in objects):
            raise ValueError("engine state: objects must be a list of positive ids")
        for name in ("frame_index", "last_memory_index"):
            if not isinstance(state[name], int):  # type: ignore[literal-required]
                raise ValueError(f"engine state: {name} must be an int")
        memory = MemoryManager(self.config.memory, self.network.config.hidden_dim)
        memory.load_state_dict(state["memory"], self.device)
        if memory.objects != objects:
            raise ValueError("engine state: the memory's objects differ from the engine's objects")
        dims = self.network.config
        for store in (memory.work, memory.long):
            if store.key is not None and store.key.shape[0] != dims.key_dim:
                raise ValueError(
                    f"engine state: keys of {store.key.shape[0]} channels, the network has {dims.key_dim}"
                )
            if any(v.shape[2] != dims.value_dim for v in store.values):
                raise ValueError(f"engine state: values do not have the network's {dims.value_dim} channels")
        self.memory = memory
        self.objects = list(objects)
        self.frame_index = state["frame_index"]
        self.last_memory_index = state["last_memory_index"]


class EngineState(TypedDict):
    """The serialised form of an :class:`InferenceCore`'s per-video state."""

    objects: list[int]
    frame_index: int
    last_memory_index: int
    memory: MemoryState
