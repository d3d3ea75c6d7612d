"""Video-level API: propagate masks given on any frames through a whole video."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized

import numpy as np
import torch

from xmem.config import InferenceConfig
from xmem.inference.core import InferenceCore, MaskLike
from xmem.model.network import XMem


def _with_last_flag(frames: Iterable) -> Iterator[tuple[object, bool]]:
    """Yield (frame, is_last); sized inputs are read one frame at a time, others one frame ahead."""
    if isinstance(frames, Sized):
        n = len(frames)
        for i, frame in enumerate(frames):
            yield frame, i == n - 1
        return
    it = iter(frames)
    try:
        current = next(it)
    except StopIteration:
        return
    for nxt in it:
        yield current, False
        current = nxt
    yield current, True


class VideoSegmenter:
    """Segments whole videos from masks given on some frames.

    >>> seg = VideoSegmenter(load_model("XMem.pth"), InferenceConfig(device="cpu"))
    >>> for index, mask in seg.propagate(frames, {0: first_mask}):
    ...     save(index, mask)   # H×W index mask (object ids), uint8 when ids fit

    ``frames``: any iterable of RGB frames (H×W×3 uint8 arrays or 3×H×W float tensors in [0, 1]), read
    lazily. ``prompts`` maps frame indices to H×W index masks; a prompt defines the objects present in it
    (new ids are added, existing ones corrected); objects absent from it keep being propagated. Frames
    before the first prompt are all background. ``copy_network``: as for :class:`InferenceCore` (False
    prepares ``network`` in place, holding one set of weights instead of two).
    """

    def __init__(
        self, network: XMem, config: InferenceConfig | None = None, *, copy_network: bool = True
    ) -> None:
        self.core = InferenceCore(network, config, copy_network=copy_network)

    @property
    def objects(self) -> list[int]:
        return list(self.core.objects)

    def reset(self) -> None:
        self.core.reset()

    def remove_object(self, obj_id: int) -> None:
        self.core.remove_object(obj_id)

    def propagate(
        self,
        frames: Iterable[np.ndarray | torch.Tensor],
        prompts: Mapping[int, MaskLike],
        *,
        start: int = 0,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, mask)`` for every frame, in order. ``start`` is the index of the first frame
        (when continuing a video in pieces)."""
        for offset, (frame, last) in enumerate(_with_last_flag(frames)):
            index = start + offset
            prob = self.step(frame, prompts.get(index), end=last)
            yield index, self.to_index_mask(prob)

    def step(self, frame: np.ndarray | torch.Tensor, prompt: MaskLike | None = None, *, end: bool = False):
        """One frame; returns probabilities (background, then :attr:`objects`) at the frame's size."""
        return self.core.step(frame, prompt, end=end)

    def to_index_mask(self, prob: torch.Tensor, objects: Sequence[int] | None = None) -> np.ndarray:
        """Argmax of probabilities -> H×W index mask holding object ids (uint8 when they fit)."""
        ids = list(self.core.objects if objects is None else objects)
        return index_mask_from_probabilities(prob, ids)


def propagate_from(
    core: InferenceCore,
    first_frame: np.ndarray | torch.Tensor,
    mask: MaskLike,
    objects: Sequence[int],
    frames: Iterable[np.ndarray | torch.Tensor],
) -> Iterator[np.ndarray]:
    """Start ``core`` afresh from ``mask`` (an index mask defining ``objects``) on ``first_frame``, then
    yield the H×W index mask of each of ``frames`` in turn, read lazily (the last one is not memorised).
    The frames may come in any order: backward propagation passes them reversed."""
    core.reset()
    core.step(first_frame, mask, objects)
    for frame, last in _with_last_flag(frames):
        yield index_mask_from_probabilities(core.step(frame, end=last), core.objects)


def index_mask_from_probabilities(prob: torch.Tensor, ids: Sequence[int]) -> np.ndarray:
    """Argmax over (N+1)×H×W probabilities (background first), written as the object ids ``ids``.

    The same result as ``argmax(dim=0)`` (ties go to the first), computed with N elementwise passes
    rather than a strided reduction, and written straight into the output dtype.
    """
    dtype = torch.uint8 if max(ids, default=0) <= 255 else torch.int32
    out = torch.zeros(prob.shape[1:], dtype=dtype, device=prob.device)
    best = prob[0]
    for i, obj in enumerate(ids, start=1):
        better = prob[i] > best
        out.masked_fill_(better, obj)
        if i < len(ids):
            best = torch.maximum(best, prob[i])
    return out.cpu().numpy()
