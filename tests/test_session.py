"""Interactive video sessions (xmem.interactive.session): key frames, propagation both ways, corrections,
cancellation, bounded memory and frame cache, and bad input that changes nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN_CONFIG
from xmem.interactive import Direction, FrameCache, VideoSession
from xmem.io.frames import FrameFolder

CONFIG = dataclasses.replace(GOLDEN_CONFIG, size=48)  # the golden memory settings, processed at 48×80
N = 14


def frame_folder(path: Path, frames: np.ndarray) -> Path:
    path.mkdir()
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(path / f"{t:05d}.png")
    return path


@pytest.fixture
def clip(tmp_path, golden) -> Path:
    return frame_folder(tmp_path / "clip", golden["frames"][:N])


def session(path: Path, golden_model, **kw) -> VideoSession:
    return VideoSession(FrameFolder(path), golden_model, CONFIG, **kw)


def masks_of(s: VideoSession) -> list[np.ndarray]:
    return [s.mask(t) for t in range(s.num_frames)]


def test_key_frames_bound_each_propagation(clip, golden, golden_model):
    """From frame 0 with a key frame at 10: frames 1-9 are written, 10 keeps its mask; from 10 on, 11-13."""
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    s.add_mask(0, 2, golden["mask0"] == 2)
    key10 = np.zeros_like(golden["mask0"])
    key10[10:40, 20:60] = 1
    s.add_mask(10, 1, key10)
    assert s.key_frames == [0, 10] and s.objects == [1, 2]
    done = [i for i, _ in s.propagate(0)]
    assert done == list(range(1, 10))
    assert (s.mask(10) == key10).all()
    assert set(np.unique(s.mask(9)).tolist()) == {0, 1, 2}
    assert [i for i, _ in s.propagate(10)] == list(range(11, N))
    assert set(np.unique(s.mask(13)).tolist()) <= {0, 1}  # frame 10 holds object 1 only


def test_a_correction_repropagates_only_after_it(clip, golden, golden_model):
    """Propagate from 0, correct frame 6, propagate from 6: frames 1-5 are untouched, 7-13 change."""
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    s.add_mask(0, 2, golden["mask0"] == 2)
    list(s.propagate(0))
    before = masks_of(s)
    fix = s.mask(6).copy()
    fix[fix == 2] = 0  # the user erases object 2 on frame 6
    s.add_mask(6, 2, np.zeros_like(fix, dtype=bool))
    assert s.key_frames == [0, 6]
    assert [i for i, _ in s.propagate(6)] == list(range(7, N))
    after = masks_of(s)
    for t in range(6):
        assert (after[t] == before[t]).all(), t
    assert (after[6] == fix).all()
    assert all((after[t] != 2).all() for t in range(7, N))  # object 2 is gone after the correction
    assert any((before[t] == 2).any() for t in range(7, N))


def test_backward_equals_forward_on_the_reversed_video(tmp_path, golden, golden_model):
    """Backward from the last frame == forward from the first frame of the reversed video, frame by frame."""
    frames = golden["frames"][:N]
    ahead = session(frame_folder(tmp_path / "a", frames), golden_model)
    ahead.add_mask(N - 1, 1, golden["mask0"] == 1)
    ahead.add_mask(N - 1, 2, golden["mask0"] == 2)
    back = [(i, m) for i, m in ahead.propagate(N - 1, "backward")]
    assert [i for i, _ in back] == list(range(N - 2, -1, -1))
    rev = session(frame_folder(tmp_path / "b", frames[::-1]), golden_model)
    rev.add_mask(0, 1, golden["mask0"] == 1)
    rev.add_mask(0, 2, golden["mask0"] == 2)
    fwd = dict(rev.propagate(0))
    for i, mask in back:
        assert (mask == fwd[N - 1 - i]).all(), i


def test_both_directions_from_a_middle_frame(clip, golden, golden_model):
    s = session(clip, golden_model)
    s.add_mask(7, 1, golden["mask0"] == 1)
    order = [i for i, _ in s.propagate(7, Direction.BOTH)]
    assert order == [*range(8, N), *range(6, -1, -1)]
    assert all((s.mask(t) == 1).any() for t in range(N))
    assert [i for i, _ in s.propagate(7, Direction.BACKWARD, stop=4)] == [6, 5, 4]


def test_cancelling_keeps_the_frames_done(clip, golden, golden_model):
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    for i, _ in s.propagate(0):
        if i == 3:
            break  # the user cancels
    assert all((s.mask(t) == 1).any() for t in range(4))
    assert all(not s.mask(t).any() for t in range(4, N))
    assert s.core.memory.work.size == 0  # a later propagation starts afresh


def test_memory_stays_bounded_over_repeated_propagations(clip, golden, golden_model):
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    sizes = []
    for _ in range(4):
        gen = s.propagate(0)
        for i, _ in gen:
            if i == N - 2:
                sizes.append((s.core.memory.work.size, s.core.memory.long.size))
        assert s.core.memory.work.size == 0
    assert len(set(sizes)) == 1
    assert len(s._masks) == N


def test_clicks_and_box_through_the_predictor(tmp_path, golden_model):
    """A distinct square: one click and a box give its mask on the frame (GrabCut), as a key frame."""
    pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    frames = (rng.random((4, 96, 160, 3)) * 60 + 40).astype(np.uint8)
    frames[:, 36:60, 65:95] = (220, 40, 40)
    s = session(frame_folder(tmp_path / "sq", frames), golden_model)
    truth = np.zeros((96, 160), bool)
    truth[36:60, 65:95] = True
    mask = s.add_clicks(2, 3, points=[[80, 48]], labels=[1])
    assert (((mask == 3) & truth).sum() / ((mask == 3) | truth).sum()) > 0.9
    assert s.key_frames == [2] and s.objects == [3]
    boxed = s.add_box(1, 4, (58, 30, 102, 66))
    assert (((boxed == 4) & truth).sum() / ((boxed == 4) | truth).sum()) > 0.9
    strokes = np.zeros((96, 160), np.int8)
    strokes[46:50, 70:90] = 1  # a brush stroke inside the square
    strokes[10:14, 20:140] = -1  # and one on the background
    brushed = s.add_scribbles(3, 5, strokes)
    assert (((brushed == 5) & truth).sum() / ((brushed == 5) | truth).sum()) > 0.9
    assert s.key_frames == [1, 2, 3] and s.objects == [3, 4, 5]


def test_bad_input_is_refused_and_changes_nothing(clip, golden, golden_model):
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    state = (dict(s._masks), s.key_frames)
    with pytest.raises(ValueError, match="outside the 160×96 frame"):
        s.add_clicks(3, 1, points=[[500, 10]], labels=[1])
    with pytest.raises(ValueError, match="box"):
        s.add_box(3, 1, (40, 40, 40, 60))
    with pytest.raises(ValueError, match="no object 7"):
        s.remove_object(7)
    with pytest.raises(ValueError, match="the mask is 80x48 but the frames are 160x96"):
        s.add_mask(3, 1, np.ones((48, 80), bool))
    with pytest.raises(ValueError, match="object ids are 1-255"):
        s.add_mask(3, 0, golden["mask0"] == 1)
    with pytest.raises(ValueError, match="outside the video's 14 frames"):
        s.add_mask(14, 1, golden["mask0"] == 1)
    with pytest.raises(ValueError, match="a colour is three values"):
        s.set_object(1, name="cup", colour=(1, 2, 300))
    assert s.object_info[1]["name"] == "object 1"
    with pytest.raises(ValueError, match="frame 5 has no mask"):
        next(s.propagate(5))
    with pytest.raises(ValueError):
        next(s.propagate(0, "sideways"))
    assert (dict(s._masks), s.key_frames) == state


def test_remove_object_erases_it_everywhere(clip, golden, golden_model):
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    s.add_mask(0, 2, golden["mask0"] == 2)
    list(s.propagate(0))
    s.remove_object(2)
    assert s.objects == [1]
    assert all((s.mask(t) != 2).all() for t in range(N))


def test_frame_cache_is_bounded_and_walks_both_ways(clip, golden):
    cache = FrameCache(FrameFolder(clip), capacity=4)
    for t in [*range(N), *range(N - 1, -1, -1), 7, 2, 11]:
        assert (cache[t] == golden["frames"][t]).all()
        assert len(cache._frames) <= 4
    with pytest.raises(IndexError):
        cache[N]


# -- undo / redo and the workspace on disk -------------------------------------------------------------------
def test_undo_and_redo_walk_a_frames_edits(clip, golden, golden_model):
    s = session(clip, golden_model)
    first, second = golden["mask0"] == 1, np.zeros_like(golden["mask0"], dtype=bool)
    second[5:25, 5:25] = True
    s.add_mask(3, 1, first)
    s.add_mask(3, 1, second)
    assert (s.undo(3) == np.where(first, 1, 0)).all() and s.key_frames == [3]
    assert not s.undo(3).any() and s.key_frames == []  # before any edit: no mask, not a key frame
    with pytest.raises(ValueError, match="frame 3 has nothing to undo"):
        s.undo(3)
    assert (s.redo(3) == np.where(first, 1, 0)).all() and s.key_frames == [3]
    assert (s.redo(3) == np.where(second, 1, 0)).all()
    with pytest.raises(ValueError, match="nothing to redo"):
        s.redo(3)
    s.undo(3)
    s.add_mask(3, 2, second)  # a new edit clears what could be redone
    with pytest.raises(ValueError, match="nothing to redo"):
        s.redo(3)


def test_a_workspace_reopens_identical(clip, golden, golden_model, tmp_path):
    ws = tmp_path / "ws"
    a = session(clip, golden_model, workspace=ws)
    a.add_mask(0, 1, golden["mask0"] == 1)
    a.add_mask(0, 2, golden["mask0"] == 2)
    a.set_object(2, name="boot", colour=(10, 200, 30))
    list(a.propagate(0))
    fix = np.zeros_like(golden["mask0"], dtype=bool)
    fix[40:70, 90:140] = True
    a.add_mask(8, 1, fix)
    b = session(clip, golden_model, workspace=ws)
    assert b.key_frames == a.key_frames == [0, 8]
    assert b.object_info == a.object_info and b.object_info[2] == {"name": "boot", "colour": [10, 200, 30]}
    for t in range(N):
        assert (b.mask(t) == a.mask(t)).all(), t
    assert (b.undo(8) == a.undo(8)).all()  # the history came back too
    reopened = session(clip, golden_model, workspace=ws)
    assert (reopened.mask(8) == a.mask(8)).all() and reopened.key_frames == [0]


def test_a_workspace_of_another_video_or_model_is_refused(clip, tmp_path, golden, golden_model):
    ws = tmp_path / "ws"
    session(clip, golden_model, workspace=ws).add_mask(0, 1, golden["mask0"] == 1)
    other = frame_folder(tmp_path / "other", golden["frames"][1 : N + 1])
    with pytest.raises(ValueError, match="belongs to another video"):
        session(other, golden_model, workspace=ws)
    changed = golden_model.__class__(golden_model.config)
    changed.load_state_dict(golden_model.state_dict())
    with torch.no_grad():
        changed.decoder.pred.bias.add_(0.5)
    with pytest.raises(ValueError, match="belongs to another model"):
        session(clip, changed, workspace=ws)


def test_a_session_that_converts_its_model_in_place_reopens_with_a_copy(clip, golden, golden_model, tmp_path):
    """The workspace's model fingerprint is taken from the weights as given, before the engine folds its
    BatchNorms: a workspace saved by ``xmem annotate`` (``copy_model=False``) reopens from Python."""
    model = golden_model.__class__(golden_model.config)
    model.load_state_dict(golden_model.state_dict())
    ws = tmp_path / "ws"
    first = session(clip, model, workspace=ws, copy_model=False)
    assert first.core.network is model
    first.add_mask(0, 1, golden["mask0"] == 1)
    reopened = session(clip, golden_model, workspace=ws)
    assert reopened.objects == [1] and (reopened.mask(0) == (golden["mask0"] == 1)).all()


def test_a_stopped_propagation_leaves_whole_files(clip, golden, golden_model, tmp_path):
    ws = tmp_path / "ws"
    s = session(clip, golden_model, workspace=ws)
    s.add_mask(0, 1, golden["mask0"] == 1)
    for i, _ in s.propagate(0):
        if i == 5:
            break
    files = sorted(p.name for p in (ws / "masks").iterdir())
    assert files == [f"{t:05d}.png" for t in range(6)]  # no temporary files left over
    reopened = session(clip, golden_model, workspace=ws)
    assert all((reopened.mask(t) == s.mask(t)).all() for t in range(N))
