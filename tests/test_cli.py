"""`xmem segment` over a folder of frames, and its answers to bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import GOLDEN_FLAGS, check_error
from xmem.cli import main
from xmem.io.masks import DAVIS_PALETTE, read_index_mask, write_index_mask
from xmem.model.golden import golden_rule_state_dict


@pytest.fixture
def video(tmp_path, golden) -> tuple[Path, Path]:
    frames = tmp_path / "frames"
    frames.mkdir()
    for t in range(8):  # natural order: frame2 before frame10
        Image.fromarray(golden["frames"][t]).save(frames / f"frame{t * 4}.png")
    mask = tmp_path / "mask.png"
    write_index_mask(mask, golden["mask0"])
    return frames, mask


def segment(frames, mask, out, weights, *extra) -> int:
    return main(["segment", str(frames), "--mask", str(mask), "--out", str(out), "--weights", str(weights),
                 *GOLDEN_FLAGS, *extra])  # fmt: skip


def test_segment_writes_palette_pngs_named_after_frames(video, weights, golden, tmp_path):
    frames, mask = video
    out = tmp_path / "out"
    assert segment(frames, mask, out, weights) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*(f"frame{t * 4}.png" for t in range(8)), "summary.json"])
    for t in range(8):
        img = Image.open(out / f"frame{t * 4}.png")
        assert img.mode == "P"
        assert np.array(img.getpalette()[:12]).reshape(4, 3).tolist() == DAVIS_PALETTE[:4].tolist()
        predicted = np.array(img)
        # the golden run's argmax, except for pixels whose top two probabilities are within 1e-4
        probs = np.sort(golden["probs"][t], axis=0)
        clear = probs[-1] - probs[-2] > 1e-4
        assert (predicted == golden["probs"][t].argmax(0))[clear].all()


def test_binary_and_grey_masks_are_read(tmp_path, golden):
    binary = tmp_path / "binary.png"
    Image.fromarray(((golden["mask0"] == 1) * 255).astype(np.uint8)).save(binary)
    assert set(np.unique(read_index_mask(binary)).tolist()) == {0, 1}
    grey = tmp_path / "grey.png"
    Image.fromarray(golden["mask0"] * 3).save(grey)
    assert set(np.unique(read_index_mask(grey)).tolist()) == {0, 3, 6}


def test_missing_and_empty_frame_folders(tmp_path, video, weights, capsys):
    _, mask = video
    check_error(
        capsys, segment(tmp_path / "nope", mask, tmp_path / "o", weights), "nope", "no such file or folder"
    )
    (tmp_path / "empty").mkdir()
    check_error(capsys, segment(tmp_path / "empty", mask, tmp_path / "o", weights), "empty", "no frames")


def test_mask_problems(tmp_path, video, weights, capsys):
    frames, _ = video
    small = tmp_path / "small.png"
    write_index_mask(small, np.ones((10, 10), np.uint8))
    check_error(capsys, segment(frames, small, tmp_path / "o", weights), "small.png", "differs")
    empty = tmp_path / "empty.png"
    write_index_mask(empty, np.zeros((96, 160), np.uint8))
    check_error(capsys, segment(frames, empty, tmp_path / "o", weights), "empty.png", "no object")
    check_error(
        capsys, segment(frames, tmp_path / "none.png", tmp_path / "o", weights), "none.png", "not found"
    )


def test_bad_checkpoint_and_device(tmp_path, video, weights, capsys):
    frames, mask = video
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    check_error(capsys, segment(frames, mask, tmp_path / "o", bad), "bad.pth")
    state = golden_rule_state_dict()
    del state["decoder.pred.bias"]
    torch.save(state, tmp_path / "partial.pth")
    check_error(capsys, segment(frames, mask, tmp_path / "o", tmp_path / "partial.pth"), "decoder.pred.bias")
    if not torch.cuda.is_available():
        code = main(["segment", str(frames), "--mask", str(mask), "--out", str(tmp_path / "o"),
                     "--weights", str(weights), "--device", "cuda"])  # fmt: skip
        check_error(capsys, code, "cuda", "not available")


def test_output_folder_with_other_files_is_refused(tmp_path, video, weights, capsys):
    frames, mask = video
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    check_error(capsys, segment(frames, mask, out, weights), "out", "--overwrite")
    assert (out / "keep.txt").read_text() == "precious"
    assert segment(frames, mask, out, weights, "--overwrite") == 0
    assert (out / "keep.txt").read_text() == "precious"


def test_frames_of_different_sizes_keep_earlier_outputs(tmp_path, video, weights, capsys):
    frames, mask = video
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(frames / "frame13.png")  # the 5th frame
    out = tmp_path / "out"
    check_error(capsys, segment(frames, mask, out, weights), "frame13.png", "differs")
    assert sorted(p.name for p in out.glob("*.png")) == [
        "frame0.png",
        "frame12.png",
        "frame4.png",
        "frame8.png",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["frames"] == 4 and "frame13.png" in summary["error"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_corrupt_frame_mid_video(tmp_path, video, weights, capsys):
    frames, mask = video
    (frames / "frame9.png").write_bytes(b"\x89PNG garbage")
    out = tmp_path / "out"
    check_error(capsys, segment(frames, mask, out, weights), "frame9.png", "not a readable image")
    # frames 0, 4, 8 were written before the corrupt one
    assert sorted(p.name for p in out.glob("*.png")) == ["frame0.png", "frame4.png", "frame8.png"]


def test_engine_settings_are_the_parsed_engine_options():
    import argparse

    from xmem.config import MemoryConfig
    from xmem.inference.options import add_engine_arguments, engine_config, engine_settings

    parser = argparse.ArgumentParser()
    parser.add_argument("--videos", type=int, default=3)
    add_engine_arguments(parser)
    args = parser.parse_args(["--top-k", "7", "--mem-every", "3", "--precision", "fp16"])
    settings = engine_settings(args)
    assert "videos" not in settings  # only the engine's own options
    assert settings["top_k"] == 7 and settings["mem_every"] == 3 and settings["precision"] == "fp16"
    assert settings["size"] is None and settings["device"] == "auto"
    # every memory setting engine_config reads is recorded, with the value it reads
    memory = engine_config(args).memory
    options = {k for k in settings if k in {f for f in MemoryConfig.__dataclass_fields__}}
    assert options == {
        "mem_every",
        "top_k",
        "min_working_frames",
        "max_working_frames",
        "num_prototypes",
        "max_long_term_elements",
    }
    assert all(settings[k] == getattr(memory, k) for k in options)


def test_the_default_model_names_itself_and_its_limits(video, tmp_path, caplog):
    """Without --weights, one log line says which model runs and where its limits are documented."""
    frames, mask = video
    with caplog.at_level("INFO", logger="xmem"):
        code = main(["segment", str(frames), "--mask", str(mask), "--out", str(tmp_path / "out"),
                     "--device", "cpu", "--size", "48", "--quiet"])  # fmt: skip
    assert code == 0
    lines = [r.getMessage() for r in caplog.records if "embedded default model" in r.getMessage()]
    assert len(lines) == 1 and "docs/default-model.md" in lines[0] and "--weights" in lines[0]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["weights"]["path"] == "default"


def test_the_cli_does_not_import_torchvision():
    """torchvision (1.4 s and 170 MB at start-up) is for training-data augmentation; segmenting never
    loads it (the official network's ResNet blocks are xmem's own: tests/test_backbones.py)."""
    import subprocess
    import sys

    code = "import sys, xmem.cli; sys.exit('torchvision' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
