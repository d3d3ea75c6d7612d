"""An interactive video session: annotate objects on any frame, propagate forward or backward, correct a
frame and propagate again.

>>> session = VideoSession("clip.mp4")                          # the embedded default model
>>> session.add_clicks(40, obj_id=1, points=[[320, 200]], labels=[1])
>>> for index, mask in session.propagate(40, Direction.BOTH):   # frames 41.. then 39..0
...     show(index, mask)                                       # stop iterating to cancel
>>> session.add_clicks(80, obj_id=1, points=[[300, 210]], labels=[0])   # a correction: a key frame
>>> list(session.propagate(80))                                 # 81 .. the end; 0-79 stay as they are

**Key frames.** A frame the user annotated or corrected is a key frame: its mask is kept as given.
Propagating from frame k replaces the masks of the frames after it (``FORWARD``) or before it
(``BACKWARD``) up to the next key frame in that direction (not included), to ``stop`` (included), or to
the end of the video. Each propagation starts the engine afresh from frame k's mask, so memory stays
bounded however many propagations are run. XMem's memory has no direction: backward propagation feeds
the same engine the frames in reverse order.

**Undo and redo** work per frame: :meth:`VideoSession.undo` puts a frame's mask and key-frame flag back as
they were before its last edit. With a ``workspace`` folder every change is saved as it happens
(:mod:`xmem.interactive.workspace`), and opening the same folder again restores the session exactly.

Masks are held compressed (PNG bytes); frames are decoded on demand with a bounded cache.
"""

from __future__ import annotations

import dataclasses
import enum
import io
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from xmem.config import InferenceConfig
from xmem.inference.core import InferenceCore
from xmem.inference.segmenter import propagate_from
from xmem.interactive.clicks import GrabCutPredictor, MaskPredictor, Prompt
from xmem.interactive.workspace import (
    HistoryEntry,
    Workspace,
    WorkspaceState,
    default_colour,
    model_fingerprint,
)
from xmem.io.frames import FrameCache, FrameSource, frames_in_order
from xmem.io.video import open_frames
from xmem.jobs.pipeline import BackgroundWriter, Prefetcher
from xmem.model.network import XMem


class Direction(enum.Enum):
    """Which way :meth:`VideoSession.propagate` goes from its start frame."""

    FORWARD = "forward"
    BACKWARD = "backward"
    BOTH = "both"  # forward, then backward


def _encode(mask: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(mask, mode="L").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


class VideoSession:
    """Objects annotated on any frames of one video and propagated through it (see the module's text).

    ``frames``: a video file, a folder of frames, a glob or a :class:`FrameSource`. ``model``: the network
    (default: the embedded default model); ``config``: the engine's settings. ``predictor`` turns clicks,
    boxes and scribbles into masks (default: :class:`GrabCutPredictor`). ``workspace``: a folder where the
    session is saved as it changes, and from which it is restored when it exists (a workspace of another
    video or model is refused with a ``ValueError``). Object ids are 1-255. ``copy_model=False`` lets the
    engine prepare ``model`` in place instead of a copy (one set of weights in memory; ``model`` is then
    the engine's and must not be trained or saved).
    """

    def __init__(
        self,
        frames: FrameSource | str | Path,
        model: XMem | None = None,
        config: InferenceConfig | None = None,
        *,
        predictor: MaskPredictor | None = None,
        cache_frames: int = 16,
        workspace: str | Path | None = None,
        copy_model: bool = True,
    ) -> None:
        if model is None:
            from xmem.model.checkpoint import load_model

            model, copy_model = load_model(), False
        source = open_frames(frames) if isinstance(frames, (str, Path)) else frames
        self.frames = FrameCache(source, cache_frames)
        self.height, self.width = source.first_size()
        fingerprint = model_fingerprint(model)  # of the weights as given, before the engine prepares them
        self.core = InferenceCore(model, config, copy_network=copy_model)
        self.predictor: MaskPredictor = predictor if predictor is not None else GrabCutPredictor()
        self._masks: dict[int, bytes] = {}
        self._key_frames: set[int] = set()
        self._state = WorkspaceState()
        self._history: dict[str, bytes] = {}  # history entry name -> mask PNG bytes (when not on disk)
        self.workspace = Workspace(workspace) if workspace is not None else None
        self.identity: dict[str, object] = {
            "video": source.fingerprint(),
            "location": source.location,
            "frames": len(self.frames),
            "size": [self.height, self.width],
            "model": fingerprint,
        }
        if self.workspace is not None:
            saved = self.workspace.read()
            if saved is None:
                self._save()
            else:
                Workspace.check(saved, self.identity, self.workspace.folder)
                self._state = Workspace.state_of(saved)
                self._key_frames = set(self._state.key_frames)
                self._masks = self.workspace.saved_masks()

    # -- state -------------------------------------------------------------------------------------------
    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def key_frames(self) -> list[int]:
        return sorted(self._key_frames)

    @property
    def objects(self) -> list[int]:
        """The object ids on the key frames."""
        ids: set[int] = set()
        for index in self._key_frames:
            ids.update(int(i) for i in np.unique(self.mask(index)) if i != 0)
        return sorted(ids)

    @property
    def object_info(self) -> dict[int, dict[str, object]]:
        """Name and colour of every object, by id."""
        return {k: dict(v) for k, v in sorted(self._state.objects.items())}

    def add_object(self, name: str | None = None, colour: Sequence[int] | None = None) -> int:
        """Register a new object before it is drawn (the smallest free id) and return its id."""
        used = set(self._state.objects) | set(self.objects)
        free = [i for i in range(1, 256) if i not in used]
        if not free:
            raise ValueError("a session holds at most 255 objects")
        obj_id = free[0]
        self._state.objects[obj_id] = {"name": f"object {obj_id}", "colour": default_colour(obj_id)}
        try:
            if name is not None or colour is not None:
                self.set_object(obj_id, name=name, colour=colour)
        except ValueError:
            self._state.objects.pop(obj_id)
            raise
        self._save()
        return obj_id

    def set_object(
        self, obj_id: int, *, name: str | None = None, colour: Sequence[int] | None = None
    ) -> None:
        """Name or colour an object (RGB, 0-255)."""
        self._check_id(obj_id)
        if obj_id not in self._state.objects:
            raise ValueError(f"no object {obj_id} in this session (objects: {sorted(self._state.objects)})")
        if name is not None and (not name.strip() or len(name) > 200):
            raise ValueError("an object name must be 1-200 characters")
        rgb = None if colour is None else [int(c) for c in colour]
        if rgb is not None and (len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb)):
            raise ValueError(f"a colour is three values 0-255, got {list(colour)}")  # type: ignore[arg-type]
        info = self._state.objects[obj_id]  # checked first, changed after: a refusal changes nothing
        if name is not None:
            info["name"] = name
        if rgb is not None:
            info["colour"] = rgb
        self._save()

    @property
    def masked_frames(self) -> list[int]:
        """The frames that have a mask (annotated or propagated)."""
        return sorted(self._masks)

    @property
    def undoable_frames(self) -> list[int]:
        """The frames with an edit to undo."""
        return sorted(f for f, stack in self._state.undo.items() if stack)

    @property
    def redoable_frames(self) -> list[int]:
        """The frames with an undone edit to redo."""
        return sorted(f for f, stack in self._state.redo.items() if stack)

    def mask_png(self, frame: int) -> bytes | None:
        """Frame ``frame``'s index mask as a grey PNG (pixel value = object id), or None where it has none."""
        self._check_frame(frame)
        return self._masks.get(frame)

    def mask(self, frame: int) -> np.ndarray:
        """Frame ``frame``'s H×W uint8 index mask (zeros where nothing is known yet)."""
        self._check_frame(frame)
        data = self._masks.get(frame)
        return _decode(data) if data is not None else np.zeros((self.height, self.width), np.uint8)

    # -- annotation --------------------------------------------------------------------------------------
    def add_mask(self, frame: int, obj_id: int, mask: np.ndarray) -> np.ndarray:
        """Set object ``obj_id``'s pixels on ``frame`` to ``mask`` (H×W, true or non-zero = the object; it
        is drawn over other objects). The frame becomes a key frame. Returns the frame's new index mask."""
        self._check_frame(frame)
        self._check_id(obj_id)
        mask = np.asarray(mask)
        if mask.shape != (self.height, self.width):
            raise ValueError(
                f"the mask is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]} but the frames are "
                f"{self.width}x{self.height}"
            )
        current = self.mask(frame)
        updated = np.where(current == obj_id, 0, current).astype(np.uint8)
        updated[mask.astype(bool)] = obj_id
        self._remember(frame, self._state.undo)
        self._state.redo.pop(frame, None)
        self._state.objects.setdefault(obj_id, {"name": f"object {obj_id}", "colour": default_colour(obj_id)})
        self._set(frame, updated, key=True)
        return updated

    def undo(self, frame: int) -> np.ndarray:
        """Put ``frame`` back as it was before its last edit (mask and key-frame flag)."""
        return self._step_history(frame, self._state.undo, self._state.redo, "undo")

    def redo(self, frame: int) -> np.ndarray:
        """Apply again the edit of ``frame`` that :meth:`undo` took back."""
        return self._step_history(frame, self._state.redo, self._state.undo, "redo")

    def _step_history(self, frame: int, source: dict, target: dict, what: str) -> np.ndarray:
        self._check_frame(frame)
        if not source.get(frame):
            raise ValueError(f"frame {frame} has nothing to {what}")
        entry = source[frame].pop()
        self._remember(frame, target)
        mask = self._history_mask(entry.mask) if entry.mask is not None else None
        self._set(frame, mask, key=entry.key)
        return self.mask(frame)

    def _remember(self, frame: int, stacks: dict[int, list[HistoryEntry]]) -> None:
        """Push ``frame``'s present state onto one of its history stacks."""
        data = self._masks.get(frame)
        name = None
        if data is not None:
            name = f"{frame:05d}-{self._state.counter}.png"
            self._state.counter += 1
            if self.workspace is not None:
                self.workspace.write_history(name, _decode(data))
            else:
                self._history[name] = data
        stacks.setdefault(frame, []).append(HistoryEntry(name, frame in self._key_frames))

    def _history_mask(self, name: str) -> np.ndarray:
        if self.workspace is not None:
            return np.array(Image.open(self.workspace.history_path(name)))
        return _decode(self._history[name])

    def _set(self, frame: int, mask: np.ndarray | None, *, key: bool) -> None:
        """Store a frame's mask (None: no mask) and key flag, on disk too, then the workspace's record."""
        if mask is None:
            self._masks.pop(frame, None)
            if self.workspace is not None:
                self.workspace.delete_mask(frame)
        else:
            self._masks[frame] = _encode(mask)
            if self.workspace is not None:
                self.workspace.write_mask(frame, mask)
        if key:
            self._key_frames.add(frame)
        else:
            self._key_frames.discard(frame)
        self._save()

    def _save(self) -> None:
        self._state.key_frames = sorted(self._key_frames)
        if self.workspace is not None:
            self.workspace.write_meta(self.identity, self.core.config, self._state)

    def add_prompt(self, frame: int, obj_id: int, prompt: Prompt) -> np.ndarray:
        """The object's mask on ``frame`` from a :class:`Prompt` through the predictor (its current mask
        there is the prompt's ``previous`` unless the prompt gives one), then :meth:`add_mask`."""
        self._check_frame(frame)
        self._check_id(obj_id)
        prompt.validate(self.height, self.width)
        if prompt.previous is None:
            previous = self.mask(frame) == obj_id
            if previous.any():
                prompt = dataclasses.replace(prompt, previous=previous)
        return self.add_mask(frame, obj_id, self.predictor.predict(self.frames[frame], prompt))

    def add_clicks(
        self, frame: int, obj_id: int, points: Sequence[Sequence[float]], labels: Sequence[int]
    ) -> np.ndarray:
        """Positive (label 1) and negative (0) clicks at (x, y) pixels of ``frame`` for ``obj_id``."""
        return self.add_prompt(frame, obj_id, Prompt(points=points, labels=labels))

    def add_box(self, frame: int, obj_id: int, box: Sequence[float]) -> np.ndarray:
        """A box (x0, y0, x1, y1) around ``obj_id`` on ``frame``."""
        return self.add_prompt(frame, obj_id, Prompt(box=tuple(box)))  # type: ignore[arg-type]

    def add_scribbles(self, frame: int, obj_id: int, scribbles: np.ndarray) -> np.ndarray:
        """Brush strokes on ``frame``: H×W, 1 on the object, -1 on the background, 0 elsewhere."""
        return self.add_prompt(frame, obj_id, Prompt(scribbles=np.asarray(scribbles, dtype=np.int8)))

    def remove_object(self, obj_id: int) -> None:
        """Erase ``obj_id`` from every frame and forget its name and colour."""
        self._check_id(obj_id)
        if obj_id not in self._state.objects and obj_id not in self.objects:
            raise ValueError(f"no object {obj_id} in this session (objects: {sorted(self._state.objects)})")
        for index, data in list(self._masks.items()):
            mask = _decode(data)
            if (mask == obj_id).any():
                cleared = np.where(mask == obj_id, 0, mask).astype(np.uint8)
                self._masks[index] = _encode(cleared)
                if self.workspace is not None:
                    self.workspace.write_mask(index, cleared)
        self._state.objects.pop(obj_id, None)
        self._save()

    # -- propagation -------------------------------------------------------------------------------------
    def span(self, start: int, direction: Direction, stop: int | None = None) -> range:
        """The frames a propagation from ``start`` in ``direction`` (FORWARD or BACKWARD) rewrites."""
        self._check_frame(start)
        if stop is not None:
            self._check_frame(stop)
        if direction is Direction.FORWARD:
            end = self.num_frames - 1 if stop is None else stop
            later = [k for k in self._key_frames if k > start]
            if later:
                end = min(end, min(later) - 1)
            return range(start + 1, end + 1)
        if direction is Direction.BACKWARD:
            end = 0 if stop is None else stop
            earlier = [k for k in self._key_frames if k < start]
            if earlier:
                end = max(end, max(earlier) + 1)
            return range(start - 1, end - 1, -1)
        raise ValueError("span takes FORWARD or BACKWARD")

    def propagate(
        self, start: int, direction: Direction | str = Direction.FORWARD, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Propagate frame ``start``'s mask; yields ``(frame, mask)`` as each frame is done (its mask is
        stored first). Stop iterating to cancel: the frames done so far keep their new masks. With a
        workspace, the mask files are written on a thread; all of them are on disk when the generator ends."""
        direction = Direction(direction)
        self._check_frame(start)
        first = self.mask(start)
        ids = sorted(int(i) for i in np.unique(first) if i != 0)
        if not ids:
            raise ValueError(f"frame {start} has no mask to propagate from: annotate it first")
        ways = [Direction.FORWARD, Direction.BACKWARD] if direction is Direction.BOTH else [direction]
        spans = [self.span(start, way, stop) for way in ways]  # decided before any mask changes
        # the workspace's files are written on a thread while the engine goes on (each one atomically)
        writer = BackgroundWriter(workers=1, max_pending=16) if self.workspace is not None else None
        try:
            for frames in spans:
                if len(frames) == 0:
                    continue
                # frames are decoded in order on a thread, ahead of the engine
                with Prefetcher(frames_in_order(self.frames.source, frames)) as ahead:
                    masks = propagate_from(self.core, self.frames[start], first, ids, ahead)
                    for index, mask in zip(frames, masks, strict=True):
                        self._masks[index] = _encode(mask)
                        if writer is not None and self.workspace is not None:
                            writer.submit(self.workspace.write_mask, index, mask)
                        yield index, mask
        finally:  # done or cancelled: every mask is on disk, and the engine's memory is let go
            try:
                if writer is not None:
                    writer.close()
            finally:
                self.core.reset()

    # -- checks ------------------------------------------------------------------------------------------
    def _check_frame(self, frame: int) -> None:
        if not isinstance(frame, (int, np.integer)) or not 0 <= frame < self.num_frames:
            raise ValueError(
                f"frame {frame} is outside the video's {self.num_frames} frames (0-{self.num_frames - 1})"
            )

    @staticmethod
    def _check_id(obj_id: int) -> None:
        if not isinstance(obj_id, (int, np.integer)) or not 1 <= obj_id <= 255:
            raise ValueError(f"object ids are 1-255, got {obj_id!r}")
