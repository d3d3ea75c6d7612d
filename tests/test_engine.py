"""The per-frame engine and the video segmenter, end to end on the official architecture."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import GOLDEN_CONFIG, GOLDEN_MEMORY
from xmem.config import InferenceConfig, Precision
from xmem.inference.core import InferenceCore
from xmem.inference.segmenter import VideoSegmenter
from xmem.model.modules import aggregate


def run_core(core: InferenceCore, frames: np.ndarray, prompts: dict[int, np.ndarray]) -> list[torch.Tensor]:
    out = []
    for t, frame in enumerate(frames):
        out.append(core.step(frame, prompts.get(t), end=t == len(frames) - 1))
    return out


def test_golden_run_probabilities_and_memory_sizes(golden, golden_model):
    """Every frame's probabilities stay within 1e-3 of the reference engine's, memory sizes match exactly
    (through consolidation from frame 6 and LFU eviction from frame 18)."""
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    frames = golden["frames"]
    for t, frame in enumerate(frames):
        prob = core.step(frame, golden["mask0"] if t == 0 else None, end=t == len(frames) - 1)
        assert prob.shape == golden["probs"][t].shape
        err = np.abs(prob.numpy() - golden["probs"][t]).max()
        assert err < 1e-3, f"frame {t}: max difference {err:.2e}"
        assert core.memory.work.size == golden["work_elements"][t], f"frame {t}"
        assert core.memory.long.size == golden["long_elements"][t], f"frame {t}"
    assert core.objects == [1, 2]


def test_golden_run_detects_a_changed_setting(golden, golden_model):
    """The golden comparison is sensitive: 8 prototypes instead of 16 moves probabilities well past 1e-3."""
    memory = dataclasses.replace(GOLDEN_MEMORY, num_prototypes=8)
    core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, memory=memory))
    probs = run_core(core, golden["frames"][:12], {0: golden["mask0"]})
    worst = max(np.abs(p.numpy() - golden["probs"][t]).max() for t, p in enumerate(probs))
    assert worst > 5e-3


def test_first_frame_is_the_soft_aggregation_of_the_mask(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    prob = core.step(golden["frames"][0], golden["mask0"])
    one_hot = torch.stack([torch.from_numpy(golden["mask0"] == i) for i in (1, 2)]).float()
    torch.testing.assert_close(prob, aggregate(one_hot, dim=0)[1])
    assert (prob.argmax(0).numpy() == golden["mask0"]).all()


def test_outputs_are_at_input_size_when_processing_smaller(golden, golden_model):
    """With size=64 the 96×160 frames are processed at 64×107 and returned at 96×160."""
    core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, size=64))
    probs = run_core(core, golden["frames"][:4], {0: golden["mask0"]})
    for p in probs:
        assert p.shape == (3, 96, 160)
        torch.testing.assert_close(p.sum(0), torch.ones(96, 160))
    assert core.memory.frame_elements == 4 * 7  # 64×107 padded to 64×112, at stride 16


def test_frames_before_the_first_mask_are_background(golden, golden_model):
    seg = VideoSegmenter(golden_model, GOLDEN_CONFIG)
    out = dict(seg.propagate(golden["frames"][:6], {2: golden["mask0"]}))
    assert sorted(out) == list(range(6))
    assert not out[0].any() and not out[1].any()
    assert (out[2] == golden["mask0"]).all()
    assert seg.core.frame_index == 3  # the engine starts on the first prompted frame


def test_segmenter_matches_core_and_marks_the_last_frame(golden, golden_model):
    """propagate() == step() frame by frame, ids kept, and the last frame is not memorised."""
    seg = VideoSegmenter(golden_model, GOLDEN_CONFIG)
    frames = golden["frames"][:7]
    masks = [m for _, m in seg.propagate(iter(list(frames)), {0: golden["mask0"]})]
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    probs = run_core(core, frames, {0: golden["mask0"]})
    for m, p in zip(masks, probs, strict=True):
        assert (m == p.argmax(0).numpy()).all()
    # frame 6 would be a memory frame (mem_every 2) but it is the last one
    assert core.last_memory_index == 4


def test_object_ids_keep_their_values(golden, golden_model):
    """Ids 3 and 200 (not contiguous) come back as 3 and 200."""
    mask = np.where(golden["mask0"] == 1, 3, np.where(golden["mask0"] == 2, 200, 0)).astype(np.uint8)
    seg = VideoSegmenter(golden_model, GOLDEN_CONFIG)
    out = [m for _, m in seg.propagate(golden["frames"][:3], {0: mask})]
    assert seg.objects == [3, 200]
    assert (out[0] == mask).all()
    assert set(np.unique(out[2]).tolist()) <= {0, 3, 200}


def test_late_object_through_consolidation_and_eviction(golden, golden_model):
    """Object 2 joins on frame 5: it gets its own group, a zero sensory memory, and the memory keeps running
    through consolidations and LFU evictions (the reference raises there)."""
    frames = golden["frames"]
    first = np.where(golden["mask0"] == 1, 1, 0).astype(np.uint8)
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    hw = 6 * 10
    for t, frame in enumerate(frames):
        prompt = first if t == 0 else (golden["mask0"] if t == 5 else None)
        prob = core.step(frame, prompt, end=t == len(frames) - 1)
        assert torch.isfinite(prob).all()
        torch.testing.assert_close(prob.sum(0), torch.ones(96, 160))
        if t == 5:
            assert core.objects == [1, 2]
            assert core.memory.groups == [[1], [2]]
            assert core.memory.work.group_size(1) == hw
            assert (prob.argmax(0).numpy() == golden["mask0"]).all()  # both given: the mask is the output
        mem = core.memory
        for store in (mem.work, mem.long):
            for g in range(store.num_groups):
                assert store.group_size(g) <= store.size
        assert mem.work.size <= GOLDEN_MEMORY.max_working_frames * hw
        assert mem.long.size <= GOLDEN_MEMORY.max_long_term_elements
    assert core.memory.long.num_groups == 2  # object 2 reached long-term memory
    assert core.memory.long.size == 56  # eviction ran


def test_partial_mask_overrides_only_its_area(golden, golden_model):
    """A mask for object 1 alone on a later frame: object 1 becomes the given mask; object 2 keeps the
    prediction outside the given area and is zeroed inside it."""
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    frames = golden["frames"]
    core.step(frames[0], golden["mask0"])
    before = core.memory.hidden.clone()
    reference = InferenceCore(golden_model, GOLDEN_CONFIG)
    reference.step(frames[0], golden["mask0"])
    predicted = reference.step(frames[1])
    given = np.zeros((96, 160), np.uint8)
    given[20:60, 30:90] = 1
    prob = core.step(frames[1], given)
    expected_obj2 = predicted[2].clone()
    expected_obj2[20:60, 30:90] = 0
    expected = aggregate(torch.stack([torch.from_numpy(given == 1).float(), expected_obj2]), dim=0)[1]
    torch.testing.assert_close(prob, expected, atol=1e-5, rtol=0)
    assert core.memory.work.size == 120  # a frame with a mask is always memorised
    assert not torch.equal(core.memory.hidden, before)  # deep update on the memory frame


def test_remove_object(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    frames = golden["frames"]
    for t in range(8):
        core.step(frames[t], golden["mask0"] if t == 0 else None)
    core.remove_object(1)
    assert core.objects == [2]
    assert core.memory.hidden.shape[1] == 1
    prob = core.step(frames[8])
    assert prob.shape == (2, 96, 160)
    core.remove_object(2)
    assert core.objects == [] and not core.memory.engaged
    assert core.step(frames[9]).shape == (1, 96, 160)  # nothing left to track: background


def test_reset_restarts_the_video(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    a = run_core(core, golden["frames"][:4], {0: golden["mask0"]})
    core.reset()
    b = run_core(core, golden["frames"][:4], {0: golden["mask0"]})
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
def test_half_precisions_stay_close_to_fp32(golden, golden_model, precision):
    """bf16 / fp16 networks (memory reading stays fp32) give probabilities close to fp32's.

    (With random weights the top two probabilities of a pixel are typically 0.004 apart, so the argmax
    itself is ill-conditioned; the probabilities are what can be compared.)"""
    frames = golden["frames"][:8]
    fp32 = run_core(InferenceCore(golden_model, GOLDEN_CONFIG), frames, {0: golden["mask0"]})
    half_core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, precision=precision))
    assert half_core.network.decoder.pred.weight.dtype == precision.dtype
    half = run_core(half_core, frames, {0: golden["mask0"]})
    for a, b in zip(fp32[1:], half[1:], strict=True):
        assert b.dtype == torch.float32
        assert (a - b).abs().max() < 0.1
        assert (a - b).abs().mean() < 0.01


def test_bad_inputs_are_explained(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    with pytest.raises(ValueError, match="differs from the frame size"):
        core.step(golden["frames"][0], golden["mask0"][:50])
    with pytest.raises(ValueError, match="needs `objects`"):
        core.step(golden["frames"][0], torch.zeros(2, 96, 160))
    with pytest.raises(ValueError, match="H×W×3"):
        core.step(golden["frames"][0][..., :2], golden["mask0"])
    with pytest.raises(ValueError, match="not available"):
        InferenceCore(golden_model, InferenceConfig(device="cuda:7" if torch.cuda.is_available() else "cuda"))


def test_index_mask_equals_argmax_with_ties_to_the_first():
    from xmem.inference.segmenter import index_mask_from_probabilities

    torch.manual_seed(0)
    prob = torch.softmax(torch.randn(4, 30, 40), dim=0)
    prob[:, 0, :5] = 0.25  # exact four-way ties
    prob[2, 1, :5] = prob[1, 1, :5] = 0.5  # two-way ties between objects
    ids = [3, 7, 250]
    expected = torch.tensor([0, *ids])[prob.argmax(0)].numpy()
    out = index_mask_from_probabilities(prob, ids)
    assert out.dtype == np.uint8
    assert (out == expected).all()
    assert index_mask_from_probabilities(prob, [3, 7, 300]).dtype == np.int32


def test_the_given_network_is_left_untouched(golden_model):
    """The engine works on an inference copy: the caller's model keeps its dtype, BatchNorms and weights."""
    before = {k: v.clone() for k, v in golden_model.state_dict().items()}
    core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, precision=Precision.BF16))
    assert core.network is not golden_model
    after = golden_model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert isinstance(golden_model.key_encoder.bn1, torch.nn.BatchNorm2d)


def test_an_engine_prepared_in_place_gives_the_same_masks(golden, golden_model):
    """``copy_network=False`` (the command line's choice: one set of weights in memory) converts the given
    network itself: BatchNorms folded, and every frame's probabilities equal the copying engine's."""
    model = golden_model.__class__(golden_model.config)
    model.load_state_dict(golden_model.state_dict())
    model.eval()
    frames = golden["frames"][:8]
    in_place = InferenceCore(model, GOLDEN_CONFIG, copy_network=False)
    assert in_place.network is model
    assert not isinstance(model.key_encoder.bn1, torch.nn.BatchNorm2d)
    copied = InferenceCore(golden_model, GOLDEN_CONFIG)
    prompts = {0: golden["mask0"]}
    for t, (a, b) in enumerate(
        zip(run_core(in_place, frames, prompts), run_core(copied, frames, prompts), strict=True)
    ):
        assert torch.equal(a, b), f"frame {t}"


def test_a_frame_after_the_end_asks_for_reset(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    core.step(golden["frames"][0], golden["mask0"], end=True)  # a one-frame video: nothing memorised
    with pytest.raises(RuntimeError, match="reset"):
        core.step(golden["frames"][1])
    core.reset()
    assert core.step(golden["frames"][1], golden["mask0"]).shape == (3, 96, 160)


def test_tf32_is_fp32_off_cuda(golden, golden_model):
    """TF32 only concerns CUDA's matrix units: on the CPU it gives fp32's probabilities exactly."""
    frames = golden["frames"][:7]
    fp32 = run_core(InferenceCore(golden_model, GOLDEN_CONFIG), frames, {0: golden["mask0"]})
    tf32_core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, precision=Precision.TF32))
    assert tf32_core.network.decoder.pred.weight.dtype == torch.float32
    tf32 = run_core(tf32_core, frames, {0: golden["mask0"]})
    for a, b in zip(fp32, tf32, strict=True):
        assert torch.equal(a, b)


def test_numerics_sets_and_restores_the_cuda_flags():
    """On CUDA the scope sets IEEE fp32 (or TF32), cuDNN autotuning for fp32 / tf32 only, and puts the
    caller's flags back; elsewhere it changes nothing. (The flags can be set without a GPU.)"""
    from xmem.inference.numerics import _read_flags, numerics, tf32_flags

    before = (_read_flags(), torch.backends.cudnn.benchmark)
    assert before[1] is False  # PyTorch's default
    for precision, tf32, autotune in (
        (Precision.FP32, False, True),
        (Precision.TF32, True, True),
        (Precision.BF16, False, False),
        (Precision.FP16, False, False),
    ):
        with numerics(torch.device("cuda"), precision):
            assert _read_flags() == tf32_flags(tf32)
            assert torch.backends.cudnn.benchmark is autotune
        assert (_read_flags(), torch.backends.cudnn.benchmark) == before
    with numerics(torch.device("cpu"), Precision.TF32):
        assert (_read_flags(), torch.backends.cudnn.benchmark) == before


@pytest.mark.filterwarnings("ignore::UserWarning")  # dynamo's notes on the CPU's fused convolutions
def test_compiled_engine_traces_the_network_calls(golden, golden_model, monkeypatch):
    """compile=True sends the three network calls through torch.compile (here with the eager backend,
    which traces them without generating code): the probabilities are the eager engine's."""
    compiled_calls = []
    real_compile = torch.compile

    def eager_compile(fn, **kwargs):
        compiled_calls.append(fn.__name__)
        assert kwargs == {"dynamic": False}
        return real_compile(fn, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    frames = golden["frames"][:7]
    core = InferenceCore(golden_model, dataclasses.replace(GOLDEN_CONFIG, compile=True))
    assert compiled_calls == ["encode_key", "segment_probabilities", "encode_value"]
    got = run_core(core, frames, {0: golden["mask0"]})
    expected = run_core(InferenceCore(golden_model, GOLDEN_CONFIG), frames, {0: golden["mask0"]})
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
