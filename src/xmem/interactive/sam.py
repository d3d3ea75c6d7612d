"""Meta's Segment Anything (SAM) and SAM 2 as :class:`~xmem.interactive.clicks.MaskPredictor` s.

Both adapters run the official packages (``segment-anything`` for SAM, ``sam2`` for SAM 2; install them
with ``pip install 'xmem-vos[sam]'``) on a checkpoint file the user gives: nothing is ever downloaded.

- :class:`SamMaskPredictor`: SAM through ``segment_anything.SamPredictor``. Build it with
  :meth:`SamMaskPredictor.from_checkpoint` (the model type, a :class:`SamModelType`, is read from the file
  name ``sam_vit_b_01ec64.pth`` or else from the weights' shapes) or :meth:`SamMaskPredictor.from_model`
  (an already built ``segment_anything.modeling.Sam``).
- :class:`Sam2MaskPredictor`: SAM 2 through ``sam2.sam2_image_predictor.SAM2ImagePredictor``. Build it with
  :meth:`Sam2MaskPredictor.from_checkpoint` (the model config, say ``configs/sam2.1/sam2.1_hiera_t.yaml``,
  is read from the file name ``sam2.1_hiera_tiny.pt`` by :func:`sam2_config_for_checkpoint`, or given)
  or :meth:`Sam2MaskPredictor.from_model` (an already built ``SAM2Base``).

How a :class:`~xmem.interactive.clicks.Prompt` becomes the package's inputs (the same for both):

- Points: the pixel each point lies in, ``(floor(x), floor(y))``, as ``point_coords`` (the packages take
  integer pixel indices and add 0.5 themselves to reach the pixel's centre), labels 1 / 0 as
  ``point_labels``. The package maps them to the model's input frame (SAM: the longer side resized to
  the encoder's size, 1024; SAM 2: the frame squashed to 1024×1024).
- Box: ``(x0, y0, x1, y1)`` as it is (XYXY pixels).
- Scribbles: each sign's stroke pixels give up to ``scribble_points`` points, spread along the strokes by
  farthest-point sampling (starting from the stroke pixel nearest the strokes' centroid): foreground
  strokes positive points, background strokes negative ones, after the clicks.
- Previous mask: fed as ``mask_input`` (low-resolution logits, 256×256 for the released models). When
  ``previous`` is exactly the mask this adapter returned last, on the same frame, the low-resolution
  logits of that prediction are fed back (as SAM's interactive demo does); otherwise ``previous`` is
  resized to the model's low-resolution frame and turned into logits of ``±previous_logit``. An empty
  ``previous`` is not fed.
- Multimask: with exactly one point (click or scribble point) and no box the model gives three masks,
  otherwise one; the mask with the highest predicted IoU is returned.

The image embedding is cached: predictions on a frame with the same content (shape and bytes) do not
re-encode it. The returned mask is an H×W bool array at the frame's size.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from xmem.interactive.clicks import Prompt, _check_image

EXTRA_HINT = "pip install 'xmem-vos[sam]'"

__all__ = [
    "EXTRA_HINT",
    "Sam2MaskPredictor",
    "SamMaskPredictor",
    "SamModelType",
    "sam2_config_for_checkpoint",
    "sam_model_type_for_checkpoint",
    "scribble_points",
]


# --- imports of the packages -----------------------------------------------------------------------


def _import_segment_anything() -> Any:
    try:
        import segment_anything
        from segment_anything import SamPredictor, sam_model_registry  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"SamMaskPredictor needs Meta's segment-anything package, which is not installed: {EXTRA_HINT}"
        ) from exc
    return segment_anything


def _import_sam2() -> tuple[Any, Any]:
    """``(build_sam2, SAM2ImagePredictor)`` from the ``sam2`` package."""
    try:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except ImportError as exc:
        raise ImportError(
            f"Sam2MaskPredictor needs Meta's sam2 package (SAM 2), which is not installed: {EXTRA_HINT}"
        ) from exc
    return build_sam2, SAM2ImagePredictor


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _existing_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist: give the path of a downloaded checkpoint "
            "(nothing is downloaded for you)"
        )
    return path


# --- model types and configs -----------------------------------------------------------------------


class SamModelType(str, Enum):
    """The released SAM image encoders (``segment_anything.sam_model_registry`` keys)."""

    VIT_B = "vit_b"
    VIT_L = "vit_l"
    VIT_H = "vit_h"


# the patch embedding's output width of each encoder
_SAM_EMBED_DIM = {768: SamModelType.VIT_B, 1024: SamModelType.VIT_L, 1280: SamModelType.VIT_H}


def _sam_type_from_name(name: str) -> SamModelType | None:
    match = re.search(r"vit_([blh])(?![a-z0-9])", name.lower())
    return SamModelType(f"vit_{match.group(1)}") if match else None


def _sam_type_from_state_dict(state: Mapping[str, Any]) -> SamModelType | None:
    weight = state.get("image_encoder.patch_embed.proj.weight")
    return None if weight is None else _SAM_EMBED_DIM.get(int(weight.shape[0]))


def sam_model_type_for_checkpoint(path: str | Path) -> SamModelType | None:
    """The model type in a SAM checkpoint's file name (``sam_vit_h_4b8939.pth``: ``VIT_H``), or None."""
    return _sam_type_from_name(Path(path).name)


_SAM2_SIZES = {
    "tiny": "t",
    "t": "t",
    "small": "s",
    "s": "s",
    "base_plus": "b+",
    "b+": "b+",
    "large": "l",
    "l": "l",
}


def sam2_config_for_checkpoint(path: str | Path) -> str | None:
    """The ``sam2`` package's config name for a checkpoint file named as Meta releases them, or None.

    ``sam2.1_hiera_tiny.pt`` → ``configs/sam2.1/sam2.1_hiera_t.yaml``, ``sam2_hiera_base_plus.pt`` →
    ``configs/sam2/sam2_hiera_b+.yaml`` (sizes tiny / small / base_plus / large, or t / s / b+ / l)."""
    match = re.search(
        r"(sam2(?:\.1)?)_hiera_(tiny|small|base_plus|large|b\+|t|s|l)(?![a-z0-9_])", Path(path).name.lower()
    )
    if match is None:
        return None
    version, size = match.group(1), _SAM2_SIZES[match.group(2)]
    return f"configs/{version}/{version}_hiera_{size}.yaml"


# --- scribbles -------------------------------------------------------------------------------------


def _farthest_points(points: np.ndarray, k: int) -> np.ndarray:
    """Up to ``k`` of ``points`` (N×2) spread out: the one nearest their centroid, then each time the one
    farthest from those chosen."""
    if len(points) > 4096:  # a regular subsample keeps the sampling cheap on long strokes
        points = points[:: math.ceil(len(points) / 4096)]
    first = int(np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((points - points[first]) ** 2).sum(axis=1)
    while len(chosen) < k:
        nxt = int(np.argmax(dist))
        if dist[nxt] <= 0:
            break
        chosen.append(nxt)
        dist = np.minimum(dist, ((points - points[nxt]) ** 2).sum(axis=1))
    return points[chosen]


def scribble_points(scribbles: np.ndarray, per_sign: int) -> tuple[np.ndarray, np.ndarray]:
    """Points standing for scribbles (H×W, 1 foreground, -1 background): up to ``per_sign`` pixel
    positions ``(x, y)`` of each sign's strokes, spread by farthest-point sampling, with labels 1
    (foreground) / 0 (background). Returns ``(points K×2 float, labels K int)``."""
    points, labels = [np.zeros((0, 2))], [np.zeros((0,), dtype=np.int64)]
    if per_sign > 0:
        for sign, label in ((1, 1), (-1, 0)):
            rows, cols = np.nonzero(scribbles == sign)
            if len(rows) == 0:
                continue
            chosen = _farthest_points(np.column_stack([cols, rows]).astype(np.float64), per_sign)
            points.append(chosen)
            labels.append(np.full(len(chosen), label, dtype=np.int64))
    return np.concatenate(points), np.concatenate(labels)


# --- the shared adapter ----------------------------------------------------------------------------


def _image_key(image: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    return image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()


def _resize_float(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A float copy of the bool ``mask`` resized (bilinear) to ``size`` = (H, W)."""
    h, w = size
    img = Image.fromarray(mask.astype(np.float32))
    return np.asarray(img.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


class _PackagePredictor:
    """What both adapters share: the prompt's translation, the embedding cache, the feedback of the last
    prediction's low-resolution logits and the choice among the outputs. Subclasses say how to set an
    image and how ``previous`` maps to the model's low-resolution frame."""

    def __init__(self, predictor: Any, *, scribble_points: int = 5, previous_logit: float = 8.0) -> None:
        if scribble_points < 0:
            raise ValueError(f"scribble_points must be >= 0, got {scribble_points}")
        self.predictor = predictor
        self.scribble_points = scribble_points
        self.previous_logit = float(previous_logit)
        self._image_key: tuple[tuple[int, ...], bytes] | None = None
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (returned mask, its 1×h×w logits)
        self.encodings = 0  # how many times an image was encoded (set) on the package's predictor

    # hooks
    def _set_image(self, image: np.ndarray) -> None:
        raise NotImplementedError

    def _low_res_from_mask(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (H×W bool, the frame's size) as 1×h×w logits in the model's low-resolution frame."""
        raise NotImplementedError

    # the translation
    def prompt_inputs(self, prompt: Prompt) -> dict[str, Any]:
        """The package predictor's keyword arguments for ``prompt`` (no ``mask_input``):
        ``point_coords``, ``point_labels``, ``box``, ``multimask_output``."""
        points = np.floor(prompt.points)
        labels = prompt.labels.astype(np.int64)
        if prompt.scribbles is not None:
            extra, extra_labels = scribble_points(prompt.scribbles, self.scribble_points)
            points = np.concatenate([points, extra])
            labels = np.concatenate([labels, extra_labels])
        box = None if prompt.box is None else np.asarray(prompt.box, dtype=np.float64)
        has_points = len(points) > 0
        return {
            "point_coords": points if has_points else None,
            "point_labels": labels if has_points else None,
            "box": box,
            "multimask_output": len(points) == 1 and box is None,
        }

    def _mask_input(self, previous: np.ndarray | None) -> np.ndarray | None:
        if previous is None or not previous.any():
            return None
        if self._last is not None and np.array_equal(previous, self._last[0]):
            return self._last[1]
        return self._low_res_from_mask(previous)

    def predict(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        """``image``: H×W×3 uint8 RGB; returns the H×W bool mask of the object."""
        h, w = _check_image(image)
        prompt.validate(h, w)
        key = _image_key(image)
        if key != self._image_key:
            self._image_key = None
            self._last = None
            self._set_image(image)
            self.encodings += 1
            self._image_key = key
        inputs = self.prompt_inputs(prompt)
        mask_input = self._mask_input(prompt.previous)
        masks, scores, low_res = self.predictor.predict(**inputs, mask_input=mask_input, return_logits=False)
        best = int(np.argmax(np.asarray(scores).reshape(-1)))
        mask = np.asarray(masks[best])
        mask = mask if mask.dtype == bool else mask > 0.5
        if mask.shape != (h, w):
            mask = _resize_float(mask, (h, w)) >= 0.5
        self._last = (mask.copy(), np.asarray(low_res[best : best + 1], dtype=np.float32))
        return mask

    def reset(self) -> None:
        """Forget the cached frame and the last prediction (the next call encodes its frame)."""
        self._image_key = None
        self._last = None


class SamMaskPredictor(_PackagePredictor):
    """SAM (``segment_anything``) as a :class:`~xmem.interactive.clicks.MaskPredictor`.

    ``predictor``: a ``segment_anything.SamPredictor`` (or anything with its ``set_image`` / ``predict``);
    usually made by :meth:`from_checkpoint` or :meth:`from_model`. ``scribble_points``: points taken from
    each sign's scribbles; ``previous_logit``: the logit magnitude a given ``previous`` mask becomes when it
    is not this adapter's last output. See the module's documentation for the translation."""

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> SamMaskPredictor:
        """An adapter around a built ``segment_anything.modeling.Sam`` (on the device it is on)."""
        segment_anything = _import_segment_anything()
        return cls(segment_anything.SamPredictor(model), **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        model_type: SamModelType | str | None = None,
        *,
        device: str | None = None,
        **kwargs: Any,
    ) -> SamMaskPredictor:
        """Build SAM from a checkpoint file (a state dict, as Meta releases them) on ``device`` (CUDA when
        available, else CPU, by default). ``model_type``: the encoder; by default read from the file name
        (``sam_vit_b_01ec64.pth``), else from the weights' shapes."""
        import torch

        segment_anything = _import_segment_anything()
        path = _existing_file(checkpoint)
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and "model" in state and isinstance(state["model"], Mapping):
            state = state["model"]
        if model_type is None:
            model_type = _sam_type_from_name(path.name) or _sam_type_from_state_dict(state)
            if model_type is None:
                raise ValueError(
                    f"cannot tell the SAM model type of {str(path)!r}: give model_type "
                    f"({', '.join(t.value for t in SamModelType)})"
                )
        model_type = SamModelType(model_type)
        model = segment_anything.sam_model_registry[model_type.value](checkpoint=None)
        model.load_state_dict(state)
        model.to(device or _default_device()).eval()
        return cls(segment_anything.SamPredictor(model), **kwargs)

    def _set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image, image_format="RGB")

    def _low_res_from_mask(self, mask: np.ndarray) -> np.ndarray:
        # SAM's input frame: the longer side resized to the encoder's size L, padded bottom-right to L×L;
        # the low-resolution frame is that square at mask_input_size
        model = self.predictor.model
        side = int(model.image_encoder.img_size)
        lh, lw = (int(v) for v in model.prompt_encoder.mask_input_size)
        h, w = mask.shape
        scale = side / max(h, w)
        rh = max(1, round(h * scale * lh / side))
        rw = max(1, round(w * scale * lw / side))
        out = np.zeros((lh, lw), dtype=np.float32)
        out[:rh, :rw] = _resize_float(mask, (rh, rw))
        return (self.previous_logit * (2.0 * out - 1.0))[None]


class Sam2MaskPredictor(_PackagePredictor):
    """SAM 2 (``sam2``) as a :class:`~xmem.interactive.clicks.MaskPredictor`.

    ``predictor``: a ``sam2.sam2_image_predictor.SAM2ImagePredictor`` (or anything with its ``set_image``
    / ``predict``); usually made by :meth:`from_checkpoint` or :meth:`from_model`. The other arguments as
    for :class:`SamMaskPredictor`."""

    @classmethod
    def from_model(cls, model: Any, **kwargs: Any) -> Sam2MaskPredictor:
        """An adapter around a built SAM 2 model (``sam2.build_sam.build_sam2``'s result)."""
        _, image_predictor = _import_sam2()
        return cls(image_predictor(model), **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        config: str | None = None,
        *,
        device: str | None = None,
        **kwargs: Any,
    ) -> Sam2MaskPredictor:
        """Build SAM 2 with ``sam2.build_sam.build_sam2`` from a checkpoint file on ``device`` (CUDA when
        available, else CPU, by default). ``config``: the package's config name (say
        ``configs/sam2.1/sam2.1_hiera_t.yaml``); by default read from the file name
        (:func:`sam2_config_for_checkpoint`)."""
        build_sam2, image_predictor = _import_sam2()
        path = _existing_file(checkpoint)
        if config is None:
            config = sam2_config_for_checkpoint(path)
            if config is None:
                raise ValueError(
                    f"cannot tell the SAM 2 config of {str(path)!r} from its name: give config "
                    "(say 'configs/sam2.1/sam2.1_hiera_t.yaml')"
                )
        model = build_sam2(config, str(path), device=device or _default_device())
        return cls(image_predictor(model), **kwargs)

    def _set_image(self, image: np.ndarray) -> None:
        self.predictor.set_image(image)

    def _low_res_from_mask(self, mask: np.ndarray) -> np.ndarray:
        # SAM 2's input frame is the whole frame resized to a square: so is its low-resolution frame
        lh, lw = (int(v) for v in self.predictor.model.sam_prompt_encoder.mask_input_size)
        return (self.previous_logit * (2.0 * _resize_float(mask, (lh, lw)) - 1.0))[None]


def predictor_for_checkpoint(
    path: str | Path, *, device: str | None = None
) -> SamMaskPredictor | Sam2MaskPredictor:
    """The adapter for a SAM or SAM 2 checkpoint file, told apart by its name (``sam2``/``sam2.1`` files:
    SAM 2; others: SAM)."""
    name = Path(path).name.lower()
    if name.startswith("sam2") or sam2_config_for_checkpoint(path) is not None:
        return Sam2MaskPredictor.from_checkpoint(path, device=device)
    return SamMaskPredictor.from_checkpoint(path, device=device)
