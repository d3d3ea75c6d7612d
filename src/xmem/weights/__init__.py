"""The embedded default model: XMem-Lite weights trained by this project in seven stages, each starting from
the weights of the one before (``configs/default-1-synthetic.toml`` to ``configs/default-7-continued.toml``),
shipped inside the package as fp16 ``.safetensors`` with a JSON model card next to them (training config,
data seeds, held-out scores). ``xmem.load_model()`` with no argument loads it; nothing is downloaded."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

DEFAULT_WEIGHTS_NAME = "xmem-lite-default.safetensors"


def default_weights_path() -> Path:
    """The path of the embedded default weights inside the installed package."""
    return Path(str(resources.files(__name__).joinpath(DEFAULT_WEIGHTS_NAME)))


def default_model_card() -> dict:
    """The model card of the embedded weights: how they were trained and how they score."""
    card = default_weights_path().with_suffix(".json")
    return json.loads(card.read_text())
