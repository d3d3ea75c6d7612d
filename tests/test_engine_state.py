"""Saving and restoring the engine's per-video state: a restored engine continues the video exactly."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pytest
import torch

from conftest import GOLDEN_CONFIG
from xmem.config import ModelConfig
from xmem.inference.core import InferenceCore
from xmem.model.golden import golden_rule_model

CONFIG = dataclasses.replace(GOLDEN_CONFIG, size=48)  # the golden memory settings, processing at 48×80


def prompts_with_a_late_object(golden) -> dict[int, np.ndarray]:
    """Objects 1 and 2 on frame 0; object 7 (a square) joins on frame 5, so memory holds two groups."""
    late = np.zeros_like(golden["mask0"])
    late[60:80, 120:150] = 7
    return {0: golden["mask0"], 5: late}


def roundtrip(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # plain tensors, ints and lists only


def run(core, frames, prompts, start=0):
    return [core.step(f, prompts.get(start + i), end=start + i == LENGTH - 1) for i, f in enumerate(frames)]


LENGTH = 10


def test_restored_engine_continues_bit_for_bit(golden, golden_model):
    """Stopped after 3 frames (before any consolidation) or 8 (with long-term memory and two object
    groups), saved, loaded into a fresh engine: the remaining frames' probabilities are identical to an
    uninterrupted run's, and so are the memory stores at the end."""
    frames = golden["frames"][:LENGTH]
    prompts = prompts_with_a_late_object(golden)
    whole = InferenceCore(golden_model, CONFIG)
    expected = run(whole, frames, prompts)
    assert whole.objects == [1, 2, 7]

    for stop in (3, 8):
        first = InferenceCore(golden_model, CONFIG)
        run(first, frames[:stop], prompts)
        if stop == 8:
            assert first.memory.long.size > 0 and len(first.memory.groups) == 2
        state = roundtrip(first.state_dict())
        resumed = InferenceCore(golden_model, CONFIG)
        resumed.load_state_dict(state)
        got = run(resumed, frames[stop:], prompts, start=stop)

        for t, (a, b) in enumerate(zip(expected[stop:], got, strict=True), start=stop):
            assert torch.equal(a, b), f"stopped at {stop}: frame {t}"
        assert resumed.objects == whole.objects
        for name in ("work", "long"):
            a, b = getattr(whole.memory, name), getattr(resumed.memory, name)
            for field in ("key", "shrinkage", "selection", "use", "life"):
                ta, tb = getattr(a, field), getattr(b, field)
                assert (ta is None) == (tb is None)
                assert ta is None or torch.equal(ta, tb), f"{name}.{field}"
            assert all(torch.equal(x, y) for x, y in zip(a.values, b.values, strict=True))


def test_state_of_a_fresh_engine_restores_to_a_fresh_engine(golden, golden_model):
    core = InferenceCore(golden_model, GOLDEN_CONFIG)
    core.load_state_dict(roundtrip(InferenceCore(golden_model, GOLDEN_CONFIG).state_dict()))
    assert core.objects == [] and core.frame_index == -1 and not core.memory.engaged
    prob = core.step(golden["frames"][0], golden["mask0"])
    assert (prob.argmax(0).numpy() == golden["mask0"]).all()


def test_state_from_another_network_or_inconsistent_state_is_refused(golden, golden_model):
    core = InferenceCore(golden_model, CONFIG)
    core.step(golden["frames"][0], golden["mask0"])
    state = roundtrip(core.state_dict())

    small = InferenceCore(
        golden_rule_model(ModelConfig(key_dim=16, value_dim=32, hidden_dim=8)), GOLDEN_CONFIG
    )
    with pytest.raises(ValueError, match="channels"):
        small.load_state_dict(state)

    bad = copy.deepcopy(state)
    bad["objects"] = [1, 2, 3]
    with pytest.raises(ValueError, match="objects"):
        core.load_state_dict(bad)
    bad = copy.deepcopy(state)
    bad["memory"]["work"]["shrinkage"] = bad["memory"]["work"]["shrinkage"][:-1]
    with pytest.raises(ValueError, match="shrinkage"):
        core.load_state_dict(bad)
    bad = copy.deepcopy(state)
    del bad["memory"]["hidden"]
    with pytest.raises(ValueError, match="not a memory state"):
        core.load_state_dict(bad)
    # a refused state leaves the engine as it was
    assert core.objects == [1, 2] and core.memory.work.size > 0
