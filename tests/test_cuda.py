"""The CUDA path: the golden run, agreement with the CPU, half precisions, resume states across devices,
AMP training and device choice. Marked ``cuda``; skipped where no CUDA GPU is visible (run them with
``pytest -m cuda`` on a GPU machine; ``benchmarks/gpu_check.py`` does, and commits their log)."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch

from conftest import GOLDEN_CONFIG
from trainconfigs import tiny_config
from xmem.config import InferenceConfig, MemoryConfig, Precision, resolve_device
from xmem.data import CompositeConfig, held_out_videos
from xmem.inference.core import InferenceCore
from xmem.inference.segmenter import VideoSegmenter
from xmem.model.checkpoint import load_model
from xmem.train.config import TrainPrecision
from xmem.train.trainer import Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CUDA = dataclasses.replace(GOLDEN_CONFIG, device="cuda")


def masks_of(config: InferenceConfig, model, frames, prompts) -> np.ndarray:
    seg = VideoSegmenter(model, config)
    return np.stack([m for _, m in seg.propagate(frames, prompts)])


def test_device_auto_chooses_cuda(golden_model):
    assert resolve_device("auto").type == "cuda"
    assert (
        InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, device="auto")).device.type == "cuda"
    )


def test_golden_run_on_cuda_within_the_cpu_tolerance(golden, golden_model):
    """Every frame's probabilities within 1e-3 of the reference engine's (the CPU test's bound), memory sizes
    equal, in fp32 (the engine turns PyTorch's default TF32 convolutions off for fp32)."""
    core = InferenceCore(golden_model, CUDA)
    assert core.device.type == "cuda"
    frames = golden["frames"]
    for t, frame in enumerate(frames):
        prob = core.step(frame, golden["mask0"] if t == 0 else None, end=t == len(frames) - 1)
        assert prob.device.type == "cuda"
        err = np.abs(prob.cpu().numpy() - golden["probs"][t]).max()
        assert err < 1e-3, f"frame {t}: max difference {err:.2e}"
        assert core.memory.work.size == golden["work_elements"][t], f"frame {t}"
        assert core.memory.long.size == golden["long_elements"][t], f"frame {t}"


def test_tf32_flags_are_restored_after_each_step(golden, golden_model):
    """The engine sets TF32 and cuDNN autotuning for its own calls only."""
    from xmem.inference.numerics import _read_flags

    before = (_read_flags(), torch.backends.cudnn.benchmark)
    core = InferenceCore(golden_model, dataclasses.replace(CUDA, precision=Precision.TF32))
    core.step(golden["frames"][0], golden["mask0"])
    core.step(golden["frames"][1])
    assert (_read_flags(), torch.backends.cudnn.benchmark) == before


def test_cpu_and_cuda_masks_agree_through_consolidations():
    """A generated 2-object video of 40 frames at 240×427 on the default model, with memory settings that
    consolidate four times and evict: CPU and CUDA fp32 masks are equal on >= 99.9% of pixels."""
    video = held_out_videos(1, CompositeConfig(height=240, width=427, length=40, objects=(2, 2)))[0]
    frames = [video.frame(t) for t in range(40)]
    model = load_model()
    memory = MemoryConfig(
        mem_every=2, min_working_frames=2, max_working_frames=4, max_long_term_elements=1000
    )
    config = InferenceConfig(memory=memory, size=-1, precision=Precision.FP32)
    cpu = masks_of(dataclasses.replace(config, device="cpu"), model, frames, {0: video.mask(0)})
    cuda = masks_of(dataclasses.replace(config, device="cuda"), model, frames, {0: video.mask(0)})
    agreement = (cpu == cuda).mean()
    assert agreement >= 0.999, agreement
    assert len(np.unique(cpu[-1])) == 3  # both objects still there: a telling comparison


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16, Precision.TF32])
def test_lower_precisions_agree_with_fp32_on_the_default_model(precision):
    """bf16, fp16 and tf32 masks of the default model agree with fp32's on >= 98% of pixels (trained
    weights: a pixel's label is well conditioned, unlike with random weights)."""
    videos = held_out_videos(2, CompositeConfig(height=240, width=427, length=30))
    model = load_model()
    config = InferenceConfig(device="cuda", precision=Precision.FP32)
    same = total = 0
    for video in videos:
        frames = [video.frame(t) for t in range(30)]
        fp32 = masks_of(config, model, frames, {0: video.mask(0)})
        other = masks_of(dataclasses.replace(config, precision=precision), model, frames, {0: video.mask(0)})
        same += int((fp32 == other).sum())
        total += fp32.size
    assert same / total >= 0.98, same / total


@pytest.mark.parametrize(("saved_on", "loaded_on"), [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_state_moves_between_devices(golden, golden_model, saved_on, loaded_on):
    """An engine state saved on one device continues on the other as an uninterrupted run there does."""
    frames, stop = golden["frames"][:10], 7  # consolidation at frame 6: the state holds long-term memory

    def run(core, start, end):
        return [
            core.step(frames[t], golden["mask0"] if t == 0 else None, end=t == 9) for t in range(start, end)
        ]

    first = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, device=saved_on))
    run(first, 0, stop)
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, map_location=loaded_on, weights_only=True)
    second = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, device=loaded_on))
    second.load_state_dict(state)
    assert second.memory.long.size > 0
    resumed = run(second, stop, 10)
    whole = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, device=loaded_on))
    expected = run(whole, 0, 10)[stop:]
    for a, b in zip(resumed, expected, strict=True):
        assert a.device.type == loaded_on
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


@pytest.mark.parametrize("precision", [TrainPrecision.BF16, TrainPrecision.FP16])
def test_one_training_step_with_amp(tmp_path, precision):
    """Two iterations of the tiny training config on the GPU with autocast (fp16 with gradient scaling):
    finite losses, and the weights move."""
    config = dataclasses.replace(tiny_config(2), device="cuda", precision=precision)
    trainer = Trainer(config, tmp_path, show_progress=False)
    before = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
    trainer.run()
    after = trainer.network.state_dict()
    assert any(not torch.equal(before[k], after[k].to(before[k].device)) for k in before)
    assert all(torch.isfinite(v.float()).all() for v in after.values())
    assert '"loss"' in (tmp_path / "log.jsonl").read_text()
