"""`xmem segment --dataset`: every video of a DAVIS / YouTube-VOS root, each into its own folder; under
torchrun each rank takes its share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST_FLAGS, check_error, decode_video
from xmem.cli import main
from xmem.io.masks import write_index_mask

VIDEOS = {"bear": 0, "car": 8}  # first golden frame of each video
LENGTH = 5


@pytest.fixture
def root(tmp_path, golden) -> Path:
    """A DAVIS-style root (480p folders): 5 frames per video, the two objects on frame 0 and, as
    YouTube-VOS annotates objects that appear later, a new object 5 on frame 3."""
    root = tmp_path / "DAVIS"
    for name, first in VIDEOS.items():
        images, annotations = root / "JPEGImages" / "480p" / name, root / "Annotations" / "480p" / name
        images.mkdir(parents=True)
        annotations.mkdir(parents=True)
        for t in range(LENGTH):
            Image.fromarray(golden["frames"][first + t]).save(images / f"{t:05d}.jpg", quality=95)
        write_index_mask(annotations / "00000.png", golden["mask0"])
        late = np.zeros((96, 160), np.uint8)
        late[70:90, 10:40] = 5
        write_index_mask(annotations / "00003.png", late)
    return root


def segment(root, out, weights, mode, *extra) -> int:
    return main(["segment", str(root), "--dataset", mode, "--out", str(out), "--weights", str(weights),
                 *FAST_FLAGS, *extra])  # fmt: skip


def ids(path: Path) -> set[int]:
    return set(np.unique(np.array(Image.open(path))).tolist())


def test_youtube_mode_uses_every_mask_and_davis_mode_the_first(root, tmp_path, weights):
    out = tmp_path / "yt"
    assert segment(root, out, weights, "youtube", "--overlay", str(tmp_path / "overlays")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["bear", "car"]
    assert [len(decode_video(tmp_path / "overlays" / f"{name}.mp4")) for name in VIDEOS] == [LENGTH] * 2
    for name in VIDEOS:
        assert sorted(p.name for p in (out / name).glob("*.png")) == [f"{t:05d}.png" for t in range(LENGTH)]
        assert 5 not in ids(out / name / "00002.png") and 5 in ids(out / name / "00003.png")
        summary = json.loads((out / name / "summary.json").read_text())
        assert summary["status"] == "complete" and summary["objects"] == [1, 2, 5]
        assert summary["prompts"] == {"00000": [1, 2], "00003": [5]}

    (tmp_path / "list.txt").write_text("car\n")
    out = tmp_path / "davis"
    assert segment(root, out, weights, "davis", "--videos", str(tmp_path / "list.txt")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["car"]  # only the listed video
    assert all(5 not in ids(p) for p in (out / "car").glob("*.png"))  # later annotations are not prompts
    assert json.loads((out / "car" / "summary.json").read_text())["prompts"] == {"00000": [1, 2]}


def test_a_bad_video_does_not_stop_the_others(root, tmp_path, weights, capsys):
    write_index_mask(root / "Annotations" / "480p" / "bear" / "00000.png", np.ones((10, 10), np.uint8))
    out = tmp_path / "out"
    check_error(capsys, segment(root, out, weights, "youtube"), "1 of 2 videos failed: bear")
    assert len(list((out / "car").glob("*.png"))) == LENGTH

    # a finished video is skipped on --resume; the fixed one is done
    write_index_mask(root / "Annotations" / "480p" / "bear" / "00000.png", np.ones((96, 160), np.uint8))
    car = {p: p.stat().st_mtime_ns for p in (out / "car").iterdir()}
    assert segment(root, out, weights, "youtube", "--resume") == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "car").iterdir()} == car
    assert len(list((out / "bear").glob("*.png"))) == LENGTH


def test_output_folders_are_checked_before_any_work(root, tmp_path, weights, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    check_error(capsys, segment(root, out, weights, "youtube"), "notes.txt", "--overwrite")
    (out / "notes.txt").unlink()
    (out / "car").mkdir()
    (out / "car" / "00000.png").write_bytes(b"old")
    check_error(capsys, segment(root, out, weights, "youtube"), "car", "not empty")
    assert not (out / "bear").exists()  # refused before the first video was started
    check_error(capsys, segment(tmp_path, out, weights, "youtube"), "JPEGImages", "missing")
    check_error(
        capsys, segment(root, out, weights, "youtube", "--overlay", "o.mp4"), "o.mp4", "give a folder"
    )
    check_error(capsys, main(["segment", str(root), "--mask", "m.png", "--videos", "v.txt", "--out", str(out)]), "--videos")  # fmt: skip


def test_torchrun_ranks_share_the_videos(root, tmp_path, weights):
    """Two CPU processes under torchrun (gloo): rank 0 takes bear, rank 1 car, and both finish."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "xmem", "segment", str(root), "--dataset", "youtube", "--out", str(out),
           "--weights", str(weights), *FAST_FLAGS]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[rank 0] [1/1] bear" in result.stderr and "[rank 1] [1/1] car" in result.stderr
    for name in VIDEOS:
        assert json.loads((out / name / "summary.json").read_text())["status"] == "complete"
        assert len(list((out / name).glob("*.png"))) == LENGTH


def test_eval_scores_the_dataset_after_segmenting_it(root, tmp_path, weights, golden, capsys):
    """``--eval`` prints the J&F table and writes ``--out/scores.csv``: the same scores as ``xmem eval``."""
    for name in VIDEOS:  # every frame annotated, as DAVIS does
        for t in (1, 2, 4):
            write_index_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", golden["mask0"])
    out = tmp_path / "out"
    assert segment(root, out, weights, "youtube", "--eval") == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "bear" in printed and "car" in printed
    together = (out / "scores.csv").read_text()
    assert main(["eval", str(out), str(root), "--csv", str(tmp_path / "apart.csv"), "--quiet"]) == 0
    assert together == (tmp_path / "apart.csv").read_text()
    # the scores file is the job's own: a resumed run does not take it for a stranger's file
    assert segment(root, out, weights, "youtube", "--eval", "--resume") == 0
    check_error(capsys, main(["segment", str(root / "JPEGImages" / "480p" / "bear"), "--out", str(tmp_path / "o"),
                              "--mask", str(root / "Annotations" / "480p" / "bear" / "00000.png"), "--eval"]),
                "--eval", "only with --dataset")  # fmt: skip
