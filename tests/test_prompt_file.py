"""`xmem segment --prompts FILE.json`: clicks, boxes and masks per frame and object, and bad prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FAST_FLAGS, check_error, write_video
from xmem.cli import main
from xmem.io.masks import read_index_mask, write_index_mask

pytest.importorskip("cv2")

H, W, T = 96, 160, 6


def square(t: int, which: int) -> tuple[slice, slice]:
    if which == 1:
        return slice(20, 50), slice(20 + 2 * t, 55 + 2 * t)
    return slice(55, 85), slice(100 - 2 * t, 140 - 2 * t)


@pytest.fixture
def clip(tmp_path):
    rng = np.random.default_rng(1)
    frames = (rng.random((T, H, W, 3)) * 50 + 60).astype(np.uint8)
    for t in range(T):
        frames[t][square(t, 1)] = (230, 40, 40)
        frames[t][square(t, 2)] = (40, 60, 230)
    return write_video(tmp_path / "clip.mp4", frames)


def run(video, prompts, out, weights, *extra) -> int:
    return main(["segment", str(video), "--prompts", str(prompts), "--out", str(out), "--weights", str(weights),
                 *FAST_FLAGS, *extra])  # fmt: skip


def truth(t: int, which: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[square(t, which)] = True
    return m


def iou(a, b) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_clicks_a_box_and_a_mask_become_the_prompted_frames_masks(clip, tmp_path, weights):
    third = np.zeros((H, W), np.uint8)
    third[2:12, 2:12] = 1  # a binary mask: its 1s are object 3
    write_index_mask(tmp_path / "third.png", third)
    prompts = {
        "2": {"1": {"points": [[40, 35]], "labels": [1]}, "2": {"box": [90, 50, 145, 90]}},
        "4": {"3": {"mask": "third.png"}},
    }
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    out = tmp_path / "out"
    assert run(clip, tmp_path / "p.json", out, weights) == 0
    made = read_index_mask(out / "prompts" / "00002.png")
    assert iou(made == 1, truth(2, 1)) > 0.85 and iou(made == 2, truth(2, 2)) > 0.85
    assert (read_index_mask(out / "prompts" / "00004.png") == np.where(third == 1, 3, 0)).all()
    assert (read_index_mask(out / "00002.png") == made).all()  # the prompted frame's output is its prompt
    assert not read_index_mask(out / "00000.png").any()  # frames before the first prompt: background
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["frames"] == T
    assert summary["prompts"] == {"00002": [1, 2], "00004": [3]}
    assert summary["objects"] == [1, 2, 3]


@pytest.mark.parametrize(
    ("prompts", "needles"),
    [
        ({"2": {"1": {"points": [[500, 10]], "labels": [1]}}}, ["frame 2, object 1", "outside"]),
        ({"2": {"1": {"box": [40, 40, 40, 60]}}}, ["frame 2, object 1", "box"]),
        ({"2": {"1": {"points": [[40, 35]]}}}, ["need labels"]),
        ({"9": {"1": {"points": [[40, 35]], "labels": [1]}}}, ["frame 9", "6 frames"]),
        ({"2": {"0": {"points": [[40, 35]], "labels": [1]}}}, ["object ids are 1-255"]),
        ({"2": {"1": {"mask": "missing.png"}}}, ["no mask file"]),
        ({"2": {"1": {"brush": 3}}}, ["points with labels, a box, or a mask"]),
        ([], ["expected"]),
    ],
)
def test_bad_prompts_get_one_line_and_write_nothing(clip, tmp_path, weights, capsys, prompts, needles):
    (tmp_path / "p.json").write_text(json.dumps(prompts))
    out = tmp_path / "out"
    check_error(capsys, run(clip, tmp_path / "p.json", out, weights), "p.json", *needles)
    assert not out.exists() or not any(out.rglob("*.png"))


def test_a_prompts_file_that_is_not_json(clip, tmp_path, weights, capsys):
    (tmp_path / "p.json").write_text("{not json")
    check_error(
        capsys, run(clip, tmp_path / "p.json", tmp_path / "out", weights), "p.json", "not a readable JSON"
    )


# -- --direction both ----------------------------------------------------------------------------------------
def both(video, masks, out, *extra) -> int:
    return main(["segment", str(video), "--masks", str(masks), "--out", str(out), "--device", "cpu", "--quiet",
                 "--direction", "both", *extra])  # fmt: skip


def test_direction_both_traces_objects_back_to_the_start(clip, tmp_path):
    """A mask on frame 3 only: forward leaves frames 0-2 empty; both directions track both squares back
    to frame 0 (the default model), and the overlay is drawn after the backward pass."""
    masks = tmp_path / "masks"
    masks.mkdir()
    write_index_mask(masks / "00003.png", (truth(3, 1) * 1 + truth(3, 2) * 2).astype(np.uint8))
    out = tmp_path / "both"
    assert both(clip, masks, out, "--overlay", str(tmp_path / "both.mp4")) == 0
    for t in range(3):
        mask = read_index_mask(out / f"{t:05d}.png")
        assert iou(mask == 1, truth(t, 1)) > 0.6 and iou(mask == 2, truth(t, 2)) > 0.6, t
    from conftest import decode_video

    assert len(decode_video(tmp_path / "both.mp4")) == T
    ahead = tmp_path / "ahead"
    assert main(["segment", str(clip), "--masks", str(masks), "--out", str(ahead), "--device", "cpu",
                 "--quiet"]) == 0  # fmt: skip
    assert not read_index_mask(ahead / "00000.png").any()
    assert (read_index_mask(ahead / "00005.png") == read_index_mask(out / "00005.png")).all()


def test_direction_both_stops_at_the_previous_mask(clip, tmp_path):
    """Object 1 given on frame 1, object 2 added on frame 4: object 2 is traced back over frames 3 and 2
    only, object 1 back to frame 0."""
    masks = tmp_path / "masks"
    masks.mkdir()
    write_index_mask(masks / "00001.png", truth(1, 1).astype(np.uint8))
    write_index_mask(masks / "00004.png", (truth(4, 2) * 2).astype(np.uint8))
    out = tmp_path / "out"
    assert both(clip, masks, out) == 0
    first = read_index_mask(out / "00000.png")
    assert iou(first == 1, truth(0, 1)) > 0.6 and not (first == 2).any()
    for t in (2, 3):
        assert iou(read_index_mask(out / f"{t:05d}.png") == 2, truth(t, 2)) > 0.6, t


# -- --click-weights: SAM / SAM 2 instead of GrabCut ----------------------------------------------------------
def test_click_weights_choose_the_predictor(tmp_path, monkeypatch):
    import xmem.interactive.sam as sam

    made = []
    monkeypatch.setattr(
        sam.Sam2MaskPredictor, "from_checkpoint", classmethod(lambda cls, p, **kw: made.append(("sam2", p)))
    )
    monkeypatch.setattr(
        sam.SamMaskPredictor, "from_checkpoint", classmethod(lambda cls, p, **kw: made.append(("sam", p)))
    )
    sam.predictor_for_checkpoint("ckpt/sam2.1_hiera_tiny.pt")
    sam.predictor_for_checkpoint("ckpt/sam_vit_b_01ec64.pth")
    assert made == [("sam2", "ckpt/sam2.1_hiera_tiny.pt"), ("sam", "ckpt/sam_vit_b_01ec64.pth")]


def test_click_weights_drive_the_prompted_masks(clip, tmp_path, weights, monkeypatch):
    """The predictor built from --click-weights makes the prompted frame's mask (a stand-in predictor here,
    since no SAM checkpoint ships; the adapters themselves are tested in test_sam.py)."""
    import xmem.interactive.sam as sam

    class Fixed:
        def predict(self, image, prompt):
            assert image.shape == (H, W, 3) and prompt.points.tolist() == [[40.0, 35.0]]
            return truth(2, 1)

    checkpoint = tmp_path / "sam2.1_hiera_tiny.pt"
    checkpoint.write_bytes(b"weights")
    monkeypatch.setattr(sam, "predictor_for_checkpoint", lambda path, device=None: Fixed())
    (tmp_path / "p.json").write_text(json.dumps({"2": {"1": {"points": [[40, 35]], "labels": [1]}}}))
    out = tmp_path / "out"
    assert run(clip, tmp_path / "p.json", out, weights, "--click-weights", str(checkpoint)) == 0
    assert (read_index_mask(out / "prompts" / "00002.png") == truth(2, 1)).all()


def test_click_weights_errors(clip, tmp_path, weights, capsys):
    (tmp_path / "p.json").write_text(json.dumps({"2": {"1": {"points": [[40, 35]], "labels": [1]}}}))
    missing = tmp_path / "sam_vit_b.pth"
    check_error(capsys, run(clip, tmp_path / "p.json", tmp_path / "o1", weights, "--click-weights", str(missing)),
                "sam_vit_b.pth")  # fmt: skip
    code = main(["segment", str(clip), "--mask", str(tmp_path / "p.json"), "--out", str(tmp_path / "o2"),
                 "--click-weights", str(missing), *FAST_FLAGS])  # fmt: skip
    check_error(capsys, code, "--click-weights", "only with --prompts")
