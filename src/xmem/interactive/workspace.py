"""A video session's state on disk: every mask, the key frames, the objects with their names and colours,
the undo / redo history of each frame, the settings and which video and model it belongs to.

Layout of a workspace folder::

    workspace.json            format, video and model fingerprints, settings, objects, key frames, history
    masks/00042.png           a frame's index mask (DAVIS palette), for every frame that has one
    history/00042-3.png       an earlier state of a frame, for undo / redo

Every file is written atomically (a temporary file renamed into place), masks before the JSON that refers
to them, so a workspace stopped at any moment reopens consistent: at worst a mask written after the last
JSON is newer than the JSON's history says, never half a file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from xmem.config import InferenceConfig
from xmem.io.atomic import atomic_write
from xmem.io.masks import DAVIS_PALETTE, write_index_mask
from xmem.model.network import XMem

FORMAT = "xmem-workspace"
VERSION = 1
META = "workspace.json"


def model_fingerprint(model: XMem) -> str:
    """A hash of the network's configuration and every tensor of its state (weights and buffers)."""
    h = hashlib.sha256(repr(model.config).encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def default_colour(obj_id: int) -> list[int]:
    return [int(c) for c in DAVIS_PALETTE[obj_id]]


@dataclass
class HistoryEntry:
    """A frame's state before an edit: its mask file (None: the frame had no mask) and key-frame flag."""

    mask: str | None
    key: bool


@dataclass
class WorkspaceState:
    """What ``workspace.json`` holds besides the fingerprints."""

    objects: dict[int, dict[str, object]] = field(default_factory=dict)  # id -> {"name", "colour"}
    key_frames: list[int] = field(default_factory=list)
    undo: dict[int, list[HistoryEntry]] = field(default_factory=dict)
    redo: dict[int, list[HistoryEntry]] = field(default_factory=dict)
    counter: int = 0  # names history files uniquely


class Workspace:
    """The folder of one session (created if missing). :meth:`check` refuses a workspace made for another
    video or model, naming what differs."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise ValueError(f"{self.folder}: exists and is not a folder")
        (self.folder / "masks").mkdir(parents=True, exist_ok=True)
        (self.folder / "history").mkdir(exist_ok=True)

    @property
    def meta_path(self) -> Path:
        return self.folder / META

    def mask_path(self, frame: int) -> Path:
        return self.folder / "masks" / f"{frame:05d}.png"

    # -- identity ------------------------------------------------------------------------------------------
    def read(self) -> dict | None:
        """The saved JSON, or None for a new workspace."""
        try:
            data = json.loads(self.meta_path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.meta_path}: not a readable workspace ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{self.meta_path}: not an xmem workspace")
        if data.get("version") != VERSION:
            raise ValueError(
                f"{self.meta_path}: workspace version {data.get('version')}, this xmem reads {VERSION}"
            )
        return data

    @staticmethod
    def check(saved: dict, identity: dict[str, object], folder: Path) -> None:
        for key, what in (("video", "video"), ("frames", "number of frames"), ("size", "frame size"),
                          ("model", "model")):  # fmt: skip
            if saved.get(key) != identity.get(key):
                raise ValueError(
                    f"{folder}: this workspace belongs to another {what} ({saved.get(key)} there, "
                    f"{identity.get(key)} here); open it with the video and model it was made with, or use a "
                    "new workspace folder"
                )

    # -- writing -------------------------------------------------------------------------------------------
    def write_mask(self, frame: int, mask: np.ndarray) -> None:
        write_index_mask(self.mask_path(frame), mask)

    def delete_mask(self, frame: int) -> None:
        self.mask_path(frame).unlink(missing_ok=True)

    def write_history(self, name: str, mask: np.ndarray) -> None:
        write_index_mask(self.folder / "history" / name, mask)

    def history_path(self, name: str) -> Path:
        return self.folder / "history" / name

    def write_meta(
        self, identity: dict[str, object], settings: InferenceConfig, state: WorkspaceState
    ) -> None:
        def entries(stacks: dict[int, list[HistoryEntry]]) -> dict[str, list[dict]]:
            return {
                str(f): [{"mask": e.mask, "key": e.key} for e in stack]
                for f, stack in stacks.items()
                if stack
            }

        payload = {
            "format": FORMAT,
            "version": VERSION,
            **identity,
            "settings": settings_summary(settings),
            "objects": {str(k): v for k, v in sorted(state.objects.items())},
            "key_frames": sorted(state.key_frames),
            "undo": entries(state.undo),
            "redo": entries(state.redo),
            "counter": state.counter,
        }
        with atomic_write(self.meta_path, "w") as f:
            json.dump(payload, f, indent=1)

    @staticmethod
    def state_of(data: dict) -> WorkspaceState:
        def stacks(raw: dict) -> dict[int, list[HistoryEntry]]:
            return {
                int(f): [HistoryEntry(e["mask"], bool(e["key"])) for e in stack] for f, stack in raw.items()
            }

        return WorkspaceState(
            objects={int(k): dict(v) for k, v in data.get("objects", {}).items()},
            key_frames=[int(k) for k in data.get("key_frames", [])],
            undo=stacks(data.get("undo", {})),
            redo=stacks(data.get("redo", {})),
            counter=int(data.get("counter", 0)),
        )

    def saved_masks(self) -> dict[int, bytes]:
        """Every mask file's bytes, by frame (PNG: read back with :func:`numpy.array` of PIL's image)."""
        out = {}
        for path in sorted((self.folder / "masks").glob("*.png")):
            if path.stem.isdigit():
                out[int(path.stem)] = path.read_bytes()
        return out


def settings_summary(config: InferenceConfig) -> dict[str, object]:
    return {
        "size": config.size,
        "precision": config.precision.value,
        "device": config.device,
        "memory": {k: getattr(config.memory, k) for k in config.memory.__dataclass_fields__},
    }
