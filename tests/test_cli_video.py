"""`xmem segment` on video files and globs: masks, overlays, probabilities, summaries, prompts on later
frames, colour masks, and its answers to bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import FAST_FLAGS, GOLDEN_FLAGS, check_error, decode_video, write_video
from xmem.cli import main
from xmem.io.masks import write_index_mask

SMALL = [*GOLDEN_FLAGS, "--size", "64"]  # 96×160 frames processed at 64×107, written at 96×160


@pytest.fixture
def clip(tmp_path, golden) -> tuple[Path, Path]:
    """An 8-frame mp4 of the golden frames and the golden first-frame mask."""
    video = write_video(tmp_path / "clip.mp4", golden["frames"][:8], fps=10)
    mask = tmp_path / "mask.png"
    write_index_mask(mask, golden["mask0"])
    return video, mask


def segment(source, out, weights, *extra, mask=None, masks=None) -> int:
    given = ["--mask", str(mask)] if mask is not None else ["--masks", str(masks)]
    return main(["segment", str(source), *given, "--out", str(out), "--weights", str(weights), *extra])


def pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def read(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_video_file_gives_the_masks_of_its_frames_with_overlay_and_probabilities(tmp_path, clip, weights):
    """The video's masks are those of a folder holding its decoded frames, byte for byte; the overlay and
    the probability maps agree with the masks; summary.json says what was done."""
    video, mask = clip
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(decode_video(video)):
        Image.fromarray(frame).save(frames / f"{i:05d}.png")
    out = tmp_path / "v"
    extra = ["--overlay", str(tmp_path / "ov.mp4"), "--save-probabilities"]
    assert segment(video, out, weights, *SMALL, *extra, mask=mask) == 0
    assert segment(frames, tmp_path / "f", weights, *SMALL, mask=mask) == 0

    from_video = pngs(out)
    assert list(from_video) == [f"{i:05d}.png" for i in range(8)]
    assert from_video == pngs(tmp_path / "f")
    last = read(out / "00007.png")
    assert last.shape == (96, 160) and set(np.unique(last).tolist()) == {0, 1, 2}  # input size, both objects

    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["frames"] == 8 and summary["objects"] == [1, 2]
    assert summary["frame_size"] == [96, 160] and summary["processing_size"] == [64, 107]
    assert summary["video_fps"] == 10.0 and summary["frames_per_second"] > 0
    assert summary["peak_memory_mib"]["process_rss"] > 100
    assert summary["settings"]["size"] == 64 and summary["settings"]["mem_every"] == 2
    assert summary["weights"]["sha256"] and summary["prompts"] == {"00000": [1, 2]}

    overlay = decode_video(tmp_path / "ov.mp4")
    assert len(overlay) == 8 and overlay[0].shape == (96, 160, 3)
    # the overlay differs from the frame where there are objects, and (codec noise aside) only there
    diff = np.abs(overlay[0].astype(int) - decode_video(video)[0]).sum(-1)
    masked = read(out / "00000.png") > 0
    assert diff[masked].mean() > 4 * diff[~masked].mean()

    for t in range(8):
        m = read(out / f"{t:05d}.png")
        p1, p2 = (read(out / "probabilities" / str(i) / f"{t:05d}.png").astype(int) for i in (1, 2))
        bg = 255 - p1 - p2  # (±1 from rounding)
        assert p1.shape == (96, 160) and (bg >= -2).all()
        assert (m[(p1 > p2 + 8) & (p1 > bg + 8)] == 1).all()  # a clear winner is the mask's id
        assert (m[(p2 > p1 + 8) & (p2 > bg + 8)] == 2).all()
        assert (m[(bg > p1 + 8) & (bg > p2 + 8)] == 0).all()


def test_masks_on_later_frames_with_ids_that_are_not_contiguous(tmp_path, clip, weights, golden):
    video, _ = clip
    masks = tmp_path / "masks"
    masks.mkdir()
    first = np.select([golden["mask0"] == 1, golden["mask0"] == 2], [3, 9], 0).astype(np.uint8)
    write_index_mask(masks / "00000.png", first)
    late = np.zeros((96, 160), np.uint8)
    late[70:90, 10:40] = 200
    write_index_mask(masks / "4.png", late)  # numbered names match by number
    out = tmp_path / "out"
    assert segment(video, out, weights, *GOLDEN_FLAGS, masks=masks) == 0
    for t in range(4):
        assert set(np.unique(read(out / f"{t:05d}.png")).tolist()) <= {0, 3, 9}
    at4 = read(out / "00004.png")
    assert (at4[70:90, 10:40] == 200).all() and (at4 == 200).sum() == 600  # the given object, as given
    assert {3, 9} <= set(np.unique(at4).tolist())  # the others are still tracked
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objects"] == [3, 9, 200] and summary["prompts"] == {"00000": [3, 9], "00004": [200]}


def test_rgb_colour_mask_and_its_printed_mapping(tmp_path, weights, golden, caplog):
    video = write_video(tmp_path / "short.mp4", golden["frames"][:3])
    rgb = np.zeros((96, 160, 3), np.uint8)
    rgb[golden["mask0"] == 1] = (255, 255, 0)
    rgb[golden["mask0"] == 2] = (0, 255, 255)
    Image.fromarray(rgb).save(tmp_path / "colours.png")
    out = tmp_path / "out"
    caplog.set_level("INFO")
    assert segment(video, out, weights, *GOLDEN_FLAGS, mask=tmp_path / "colours.png") == 0
    assert "(0, 255, 255) -> 1, (255, 255, 0) -> 2" in caplog.text
    swapped = np.select([golden["mask0"] == 1, golden["mask0"] == 2], [2, 1], 0)
    assert np.array_equal(read(out / "00000.png"), swapped)


def test_corrupt_frame_mid_video_keeps_the_masks_and_overlay_before_it(tmp_path, golden, weights, capsys):
    import av

    video = write_video(tmp_path / "clip.mp4", golden["frames"][:10], codec="mpeg4")  # packet i = frame i
    with av.open(str(video)) as container:
        pos, size = [(p.pos, p.size) for p in container.demux(video=0) if p.size][6]
    data = bytearray(video.read_bytes())
    data[pos : pos + size] = bytes(size)
    video.write_bytes(bytes(data))
    write_index_mask(tmp_path / "mask.png", golden["mask0"])
    out = tmp_path / "out"
    code = segment(
        video, out, weights, *FAST_FLAGS, "--overlay", str(out / "ov.mp4"), mask=tmp_path / "mask.png"
    )
    check_error(capsys, code, "clip.mp4", "frame 6 is corrupt")
    assert list(pngs(out)) == [f"{i:05d}.png" for i in range(6)]
    assert len(decode_video(out / "ov.mp4")) == 6
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["frames"] == 6 and "frame 6" in summary["error"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files


def test_bad_input_gets_one_line_and_status_2(tmp_path, clip, weights, golden, capsys):
    video, mask = clip
    o = tmp_path / "o"
    check_error(capsys, segment(tmp_path / "none.mp4", o, weights, mask=mask), "none.mp4", "no such file")
    (tmp_path / "notes.mp4").write_text("hello")
    check_error(
        capsys, segment(tmp_path / "notes.mp4", o, weights, mask=mask), "notes.mp4", "not a readable video"
    )
    check_error(capsys, segment(tmp_path / "mask.png", o, weights, mask=mask), "mask.png", "single image")
    write_index_mask(tmp_path / "small.png", np.ones((10, 10), np.uint8))
    check_error(capsys, segment(video, o, weights, mask=tmp_path / "small.png"), "small.png", "differs")
    noisy = np.random.default_rng(0).integers(0, 256, (96, 160, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    check_error(
        capsys, segment(video, o, weights, mask=tmp_path / "noisy.png"), "noisy.png", "more than 255 objects"
    )
    masks = tmp_path / "masks"
    masks.mkdir()
    check_error(capsys, segment(video, o, weights, masks=masks), "masks", "no masks")
    write_index_mask(masks / "first.png", golden["mask0"])
    check_error(capsys, segment(video, o, weights, masks=masks), "first.png", "names no frame")
    check_error(
        capsys, segment(video, o, weights, "--overlay", "x.gif", mask=mask), "x.gif", "unsupported overlay"
    )
    check_error(
        capsys, segment(video, o, weights, "--checkpoint-every", "-1", mask=mask), "--checkpoint-every"
    )
    check_error(capsys, segment(video, o, weights, "--device", "mps", mask=mask), "mps", "not available")
    check_error(capsys, segment(video, o, weights, "--device", "tpu", mask=mask), "tpu")
    missing = tmp_path / "XMem.pth"
    check_error(
        capsys,
        main(["segment", str(video), "--mask", str(mask), "--out", str(o), "--weights", str(missing)]),
        "XMem.pth",
        "not found",
    )
    assert not o.exists()  # nothing was started


def test_real_process_prints_one_line_without_traceback(tmp_path, clip):
    video, mask = clip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "xmem",
            "segment",
            str(video),
            "--mask",
            str(mask),
            "--out",
            str(tmp_path / "o"),
            "--weights",
            str(tmp_path / "XMem.pth"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"xmem: error: {tmp_path / 'XMem.pth'}: checkpoint file not found"
    ]
