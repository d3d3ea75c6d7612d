"""The resume state of a segmentation job: the engine's memories after the last saved frame, and what
identifies the job (input, masks, weights, settings), saved atomically next to the masks."""

from __future__ import annotations

import json
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from xmem.inference.core import EngineState
from xmem.io.atomic import atomic_write
from xmem.io.errors import InputError

RESUME_FILE = "xmem-resume.pt"
FORMAT = "xmem-resume"
VERSION = 1

# what identifies a job; a resume must match on all of them
FINGERPRINT_FIELDS = ("input", "masks", "weights", "settings")


@dataclass(frozen=True)
class ResumeState:
    """A job stopped after ``frames_done`` frames; ``engine`` continues it from frame ``frames_done``."""

    fingerprint: dict[str, str]
    frames_done: int
    engine: EngineState


def save_resume_state(path: Path, state: ResumeState) -> None:
    """Write ``state`` to ``path`` atomically (plain tensors, ints, strings and lists only)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "fingerprint": dict(state.fingerprint),
        "frames_done": state.frames_done,
        "engine": state.engine,
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_resume_state(path: Path, device: torch.device | str = "cpu") -> ResumeState:
    """Read a resume state (``weights_only``: nothing in the file can run code). Raises
    :class:`InputError` naming the file when it is not one."""
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise InputError(f"{path}: resume state not found") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a readable resume state ({first})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(f"{path}: not an xmem resume state")
    if payload.get("version") != VERSION:
        raise InputError(f"{path}: resume state version {payload.get('version')}, this xmem reads {VERSION}")
    fingerprint, done = payload.get("fingerprint"), payload.get("frames_done")
    if (
        not isinstance(fingerprint, dict)
        or set(fingerprint) != set(FINGERPRINT_FIELDS)
        or not isinstance(done, int)
        or done < 1
        or not isinstance(payload.get("engine"), dict)
    ):
        raise InputError(f"{path}: damaged resume state (missing or invalid entries)")
    return ResumeState(fingerprint=fingerprint, frames_done=done, engine=payload["engine"])


def check_fingerprint(saved: dict[str, str], current: dict[str, str], source: Path) -> None:
    """Raise :class:`InputError` naming what differs between the saved job and this one."""
    for field in FINGERPRINT_FIELDS:
        was, now = saved.get(field), current.get(field)
        if was == now:
            continue
        if field == "settings":
            try:
                a, b = json.loads(was or "{}"), json.loads(now or "{}")
                changed = [
                    f"{k} {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
                ]
                detail = ", ".join(changed)
            except json.JSONDecodeError:
                detail = f"{was} -> {now}"
        else:
            detail = f"saved for {was}, now {now}"
        raise InputError(
            f"{source}: cannot resume: the {field} differ ({detail}); run without --resume and with "
            "--overwrite to start again"
        )
