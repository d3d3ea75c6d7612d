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


def run(video, prompts, out, weights) -> int:
    return main(["segment", str(video), "--prompts", str(prompts), "--out", str(out), "--weights", str(weights),
                 *FAST_FLAGS])  # fmt: skip


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
