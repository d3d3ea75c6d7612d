from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from xmem.config import InferenceConfig, MemoryConfig
from xmem.model.golden import golden_rule_model

GOLDEN = Path(__file__).parent / "data" / "golden.npz"

# The settings of the golden run (shared/fixtures/xmem-golden/README.md).
GOLDEN_MEMORY = MemoryConfig(
    mem_every=2,
    top_k=30,
    min_working_frames=2,
    max_working_frames=4,
    num_prototypes=16,
    max_long_term_elements=56,
)
GOLDEN_CONFIG = InferenceConfig(memory=GOLDEN_MEMORY, size=-1, device="cpu")


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_model():
    """The official architecture with the golden-rule weights (shared by the tests; do not modify)."""
    return golden_rule_model()
