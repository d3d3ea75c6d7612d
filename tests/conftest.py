from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from xmem.config import InferenceConfig, MemoryConfig, Precision
from xmem.inference import precision
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
GOLDEN_CONFIG = InferenceConfig(memory=GOLDEN_MEMORY, size=-1, device="cpu", precision=Precision.FP32)


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def _auto_is_fp32() -> Iterator[None]:
    """Precision ``auto`` resolves to fp32 in the tests, whatever this CPU has (bf16 on some machines would
    change results by machine); tests of ``auto`` itself patch the detection. Commands the tests start as
    processes pass ``--precision fp32``."""
    original = precision.cpu_bf16_units
    precision.cpu_bf16_units = lambda: ()
    yield
    precision.cpu_bf16_units = original


@pytest.fixture(scope="session")
def golden() -> dict[str, np.ndarray]:
    with np.load(GOLDEN) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def golden_model():
    """The official architecture with the golden-rule weights (shared by the tests; do not modify)."""
    return golden_rule_model()


# -- command line helpers (tests/test_cli*.py, test_resume.py, test_dataset.py) --------------------------------
# The golden run's memory settings at the input size: consolidation from frame 6, eviction from frame 18.
GOLDEN_FLAGS = [
    "--size", "-1", "--mem-every", "2", "--min-working-frames", "2", "--max-working-frames", "4",
    "--num-prototypes", "16", "--max-long-term-elements", "56", "--device", "cpu", "--precision", "fp32",
    "--quiet",
]  # fmt: skip
# The same, processed at 48×80 (3×5 memory elements a frame): for tests of the command's behaviour
FAST_FLAGS = [*GOLDEN_FLAGS, "--size", "48"]


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> Path:
    """The golden-rule weights saved as a checkpoint file."""
    from xmem.model.golden import golden_rule_state_dict

    path = tmp_path_factory.mktemp("weights") / "golden.pth"
    torch.save(golden_rule_state_dict(), path)
    return path


def write_video(
    path: Path,
    frames,
    fps: int = 10,
    codec: str = "libx264",
    rotation: int | None = None,
    gop: int | None = None,
) -> Path:
    """Encode H×W×3 uint8 frames with PyAV (yuv420p; ``rotation``: display matrix, degrees counterclockwise;
    ``gop``: a key frame every ``gop`` frames, with B-frames for H.264)."""
    import av

    frames = list(frames)
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop is not None:
            stream.gop_size = gop
        if codec == "libx264":
            stream.options = {"crf": "12"}
            if gop is not None:
                stream.options = {"crf": "12", "bf": "2", "keyint": str(gop), "min-keyint": str(gop)}
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_video(path: Path) -> list[np.ndarray]:
    """Every frame of a video as PyAV decodes it (RGB, no rotation applied)."""
    import av

    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]


def check_error(capsys, code: int, *needles: str) -> str:
    """Exit status 2 and one line on stderr, without a traceback, that holds every needle."""
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err
