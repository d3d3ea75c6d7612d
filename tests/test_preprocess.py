"""Frame preparation: the network's input from a decoded frame."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xmem.inference.preprocess import image_size, image_to_tensor, network_input, normalize, resize_image

CPU = torch.device("cpu")


def _frame(seed: int, h: int = 30, w: int = 44) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("kind", ["uint8", "float"])
@pytest.mark.parametrize("hw", [(30, 44), (16, 23), (45, 66)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_network_input_is_the_normalised_resized_frame(kind: str, hw: tuple[int, int], dtype: torch.dtype):
    """network_input equals normalize(resize_image(image_to_tensor(frame))) in the network's dtype (float
    rounding apart), stored channels-last, for decoded uint8 frames and 3×H×W float frames, at the input
    size, shrunk and enlarged."""
    frame = _frame(1)
    image = frame if kind == "uint8" else torch.from_numpy(frame).permute(2, 0, 1).float() / 255
    expected = normalize(resize_image(image_to_tensor(image, CPU), hw))[None]
    out = network_input(image, hw, CPU, dtype)
    assert out.shape == (1, 3, *hw) and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    tol = 1e-5 if dtype == torch.float32 else 2e-2  # bf16: one unit in the last place of values up to 2.6
    torch.testing.assert_close(out.float(), expected, atol=tol, rtol=0)
    plain = network_input(image, hw, CPU, dtype, channels_last=False)
    assert plain.is_contiguous() and torch.equal(plain, out)


def test_network_input_checks_the_frame():
    """Frames of the wrong shape are refused with the same messages as image_to_tensor's."""
    assert image_size(_frame(2)) == (30, 44)
    assert image_size(torch.rand(3, 5, 7)) == (5, 7)
    with pytest.raises(ValueError, match="H×W×3"):
        network_input(np.zeros((4, 5), dtype=np.uint8), (4, 5), CPU, torch.float32)
    with pytest.raises(ValueError, match="3×H×W"):
        network_input(torch.rand(5, 7, 3), (5, 7), CPU, torch.float32)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        image_size([[0, 0, 0]])  # type: ignore[arg-type]
