"""`xmem bench` and its machinery (back-and-forth play, records, summary, plots) and the baselines."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmem.cli import main
from xmem.config import InferenceConfig, MemoryConfig, ModelConfig
from xmem.data import CompositeConfig
from xmem.data.sources import Split
from xmem.eval.baselines import (
    CopyFirstMask,
    DisPreset,
    FlowMethod,
    FlowWarp,
    FlowWarpConfig,
    SegmenterPropagator,
    score_propagation,
)
from xmem.eval.bench import (
    BenchRun,
    FrameRecord,
    GeneratedVideo,
    StreamedVideo,
    block_figures,
    pingpong_index,
    pingpong_order,
    read_csv,
    summarize,
    write_csv,
)
from xmem.eval.plots import rolling_mean
from xmem.inference.segmenter import VideoSegmenter
from xmem.io.errors import InputError
from xmem.io.masks import write_index_mask
from xmem.metrics import Protocol, score_video
from xmem.model.checkpoint import load_model, save_weights
from xmem.model.network import XMem

SMALL = ModelConfig(key_dim=16, value_dim=32, hidden_dim=8)
# Small memory: consolidations after 8 frames, the long-term limit reached within 20.
MEMORY = MemoryConfig(
    mem_every=2, min_working_frames=2, max_working_frames=4, num_prototypes=16, max_long_term_elements=64
)
CONFIG = InferenceConfig(memory=MEMORY, size=-1, device="cpu")
MEMORY_FLAGS = [
    "--mem-every",
    "2",
    "--min-working-frames",
    "2",
    "--max-working-frames",
    "4",
    "--num-prototypes",
    "16",
    "--max-long-term-elements",
    "64",
    "--size",
    "-1",
    "--device",
    "cpu",
    "--quiet",
]
VIDEO = CompositeConfig(height=48, width=64, length=5, objects=(2, 2), split=Split.HELD_OUT)


@pytest.fixture(scope="module")
def model() -> XMem:
    torch.manual_seed(3)
    return XMem(SMALL).eval()


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bench-weights") / "small.safetensors"
    save_weights(model, path)
    return path


# --------------------------------------------------------------------------------------------------
# Back and forth


def test_pingpong_plays_forward_then_backward_each_frame_once_per_pass() -> None:
    assert pingpong_order(4, 1) == [0, 1, 2, 3]
    assert pingpong_order(4, 3) == [0, 1, 2, 3, 3, 2, 1, 0, 0, 1, 2, 3]
    assert pingpong_order(1, 3) == [0, 0, 0]
    assert [pingpong_index(i, 5) for i in (5, 9, 10, 14, 15)] == [4, 0, 0, 4, 4]
    with pytest.raises(ValueError):
        pingpong_order(4, 0)


class LoggingVideo:
    """A 4-frame video whose frames and ground truth encode their index; logs what is read."""

    name = "logged"
    has_ground_truth = True

    def __init__(self) -> None:
        self.frames_read: list[int] = []
        self.truth_read: list[int] = []
        rng = np.random.default_rng(0)
        self._frames = [(rng.random((32, 48, 3)) * 255).astype(np.uint8) for _ in range(4)]
        self._masks = []
        for t in range(4):
            m = np.zeros((32, 48), np.uint8)
            m[4 + t : 14 + t, 6 + 2 * t : 20 + 2 * t] = 1
            m[20:28, 30:40] = 2
            self._masks.append(m)

    def __len__(self) -> int:
        return 4

    def frame(self, t: int) -> np.ndarray:
        self.frames_read.append(t)
        return self._frames[t]

    def ground_truth(self, t: int) -> np.ndarray:
        self.truth_read.append(t)
        return self._masks[t]

    def prompt(self) -> np.ndarray:
        return self._masks[0]


def test_bench_run_plays_back_and_forth_and_scores_against_the_played_ground_truth(model) -> None:
    video = LoggingVideo()
    run = BenchRun(model, CONFIG, video, passes=3)
    result = run.run()
    order = pingpong_order(4, 3)
    assert video.frames_read == order
    assert video.truth_read == order
    assert [r.source_index for r in result.records] == order
    assert [r.index for r in result.records] == list(range(12))
    assert result.complete

    # The same frames through a segmenter of our own, scored independently against the played truth.
    segmenter = VideoSegmenter(model, CONFIG)
    frames = [video._frames[t] for t in order]
    predicted = [mask for _, mask in segmenter.propagate(frames, {0: video.prompt()})]
    expected = score_video([video._masks[t] for t in order], predicted, Protocol.davis())
    assert result.summary.objects == 2
    assert result.summary.jf == pytest.approx(expected.summary.jf, abs=1e-12)
    assert result.summary.j == pytest.approx(expected.summary.j.mean, abs=1e-12)
    # Per-frame J: the mean over objects on every scored frame (1 .. n-2), none on the first and last.
    assert result.records[0].j is None and result.records[-1].j is None
    for i in (1, 6, 10):
        per_object = [o.j_frames[i - 1] for o in expected.objects]
        assert result.records[i].j == pytest.approx(np.mean(per_object), abs=1e-12)
    with pytest.raises(RuntimeError):
        list(run)  # a run runs once


def test_a_run_stopped_early_gives_its_frames_without_scores(model) -> None:
    run = BenchRun(model, CONFIG, LoggingVideo(), passes=2)
    for record in run:
        if record.index == 2:
            break
    result = run.result()
    assert not result.complete and result.scores is None and result.summary.jf is None
    assert [r.index for r in result.records] == [0, 1, 2] and result.summary.frames == 3
    assert all(r.j is None for r in result.records)


def test_streamed_video_decodes_once_and_replays_backwards_from_disk() -> None:
    rng = np.random.default_rng(1)
    originals = [(rng.random((6, 8, 3)) * 255).astype(np.uint8) for _ in range(4)]

    class Source:
        iterations = 0

        def __iter__(self):
            Source.iterations += 1
            yield from (f.copy() for f in originals)

    prompt = np.ones((6, 8), np.uint8)
    video = StreamedVideo(Source(), prompt, name="s", length=4, replay=True)
    spill = Path(video._spill.name)
    played = [video.frame(t) for t in pingpong_order(4, 3)]
    assert all(np.array_equal(p, originals[t]) for p, t in zip(played, pingpong_order(4, 3), strict=True))
    assert Source.iterations == 1
    assert len(list(spill.iterdir())) == 4
    video.close()
    assert not spill.exists()

    Source.iterations = 0
    forward_only = StreamedVideo(Source(), prompt, name="s", length=4)
    assert np.array_equal(forward_only.frame(3), originals[3])
    assert np.array_equal(forward_only.frame(3), originals[3])  # the last frame is kept
    assert np.array_equal(forward_only.frame(1), originals[1])  # going back decodes again
    assert Source.iterations == 2
    with pytest.raises(IndexError):
        forward_only.frame(4)

    Source.iterations = 0
    counted = StreamedVideo(Source(), prompt, name="s")  # no declared length: counted by decoding once
    assert len(counted) == 4 and Source.iterations == 1
    declared = Source()
    declared.length = 6  # e.g. a container's frame count; the stream ends early
    short = StreamedVideo(declared, prompt, name="short")
    assert len(short) == 6
    with pytest.raises(InputError, match="ended after 4 of 6 frames"):
        short.frame(5)


# --------------------------------------------------------------------------------------------------
# Records and summary


def _record(i: int, seconds: float, rss: float, long_term: int = 0) -> FrameRecord:
    return FrameRecord(
        index=i,
        source_index=i,
        seconds=seconds,
        read_seconds=0.001,
        rss_mb=rss,
        peak_rss_mb=rss + 10,
        gpu_allocated_mb=None,
        gpu_peak_allocated_mb=None,
        working_elements=i % 7,
        long_term_elements=long_term,
        memory_store_mb=i / 100,
    )


def test_summary_of_hand_made_records() -> None:
    records = [_record(i, 0.01 if i < 50 else 0.02, 100.0 + i, long_term=min(i, 60)) for i in range(100)]
    s = summarize(records, steady_from=50)
    assert s.frames == 100
    assert s.seconds == pytest.approx(1.5)
    assert s.frames_per_second == pytest.approx(100 / 1.5)
    assert s.steady_from == 50 and s.steady_frames_per_second == pytest.approx(50.0)
    assert s.window == 25  # half of the steady frames
    assert s.ms_per_frame_early == pytest.approx(20.0) and s.ms_per_frame_late == pytest.approx(20.0)
    assert s.median_ms_per_frame_steady == pytest.approx(20.0)
    assert s.rss_reference_frames == 50 and s.rss_mb_at_reference == 149.0 and s.rss_mb_at_end == 199.0
    assert s.peak_rss_mb == 209.0
    assert s.max_long_term_elements == 60 and s.max_working_elements == 6
    assert s.memory_store_mb_at_end == pytest.approx(0.99)
    assert s.peak_gpu_allocated_mb is None and s.jf is None
    # The steady state is clipped to half of a short run; a 1-frame run is summarised too.
    assert summarize(records[:10], steady_from=50).steady_from == 5
    assert summarize(records[:1]).frames == 1


def test_median_and_block_figures_ignore_a_few_slowed_frames() -> None:
    # 25 frames at 10 ms with every fifth slowed to 500 ms (another job on the CPU): the means move, the
    # medians do not.
    records = [_record(i, 0.5 if i % 5 == 0 else 0.01, 100.0 + i, long_term=2 * i) for i in range(25)]
    s = summarize(records, steady_from=0)
    assert s.ms_per_frame_early > 50 and s.median_ms_per_frame_steady == pytest.approx(10.0)
    blocks = block_figures(records, 10)
    assert [(b.start, b.stop) for b in blocks] == [(0, 10), (10, 20), (20, 25)]
    assert [b.median_ms_per_frame for b in blocks] == pytest.approx([10.0, 10.0, 10.0])
    assert [b.rss_mb_at_end for b in blocks] == [109.0, 119.0, 124.0]
    assert [b.long_term_elements_at_end for b in blocks] == [18, 38, 48]
    # Mostly slowed frames do show.
    assert block_figures([_record(i, 0.5 if i % 3 else 0.01, 1.0) for i in range(9)], 9)[
        0
    ].median_ms_per_frame == pytest.approx(500.0)
    with pytest.raises(ValueError, match="block size"):
        block_figures(records, 0)


def test_csv_round_trip(tmp_path) -> None:
    records = [_record(i, 0.1 + i / 3, 50.0 + i / 7) for i in range(5)]
    records[2] = FrameRecord(**{**records[2].__dict__, "j": 0.25, "f": 1 / 3})
    write_csv(records, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        header = next(csv.reader(f))
    assert "gpu_allocated_mb" not in header and header[-2:] == ["j", "f"]
    assert read_csv(tmp_path / "r.csv") == records


def test_rolling_mean_over_the_preceding_window() -> None:
    np.testing.assert_allclose(rolling_mean(np.array([1.0, 3, 5, 7]), 2), [1, 2, 4, 6])
    np.testing.assert_allclose(rolling_mean(np.array([2.0, 4]), 50), [2, 3])


# --------------------------------------------------------------------------------------------------
# The command


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        img.verify()
        return img.format == "PNG" and img.width > 200 and img.height > 200


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="needs the bench extra")
def test_bench_generated_video_writes_csv_json_plots_and_prints_the_summary(
    weights, tmp_path, capsys
) -> None:
    out = tmp_path / "out"
    argv = [
        "bench",
        "--weights",
        str(weights),
        "--frames",
        "8",
        "--height",
        "48",
        "--width",
        "64",
        "--objects",
        "2",
        "--pingpong",
        "2",
        "--out",
        str(out),
        *MEMORY_FLAGS,
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out

    with open(out / "bench.csv") as f:
        rows = list(csv.DictReader(f))
        columns = list(rows[0])
    assert columns == [
        "index",
        "source_index",
        "seconds",
        "read_seconds",
        "rss_mb",
        "peak_rss_mb",
        "working_elements",
        "long_term_elements",
        "memory_store_mb",
        "j",
        "f",
    ]
    assert len(rows) == 16
    assert [int(r["source_index"]) for r in rows] == pingpong_order(8, 2)
    assert max(int(r["long_term_elements"]) for r in rows) > 0  # consolidated
    for name in ("bench_time.png", "bench_memory.png", "bench_quality.png"):
        assert _is_png(out / name)

    report = json.loads((out / "bench.json").read_text())
    s = report["summary"]
    assert report["complete"] and report["setup"]["passes"] == 2 and report["setup"]["source_frames"] == 8
    seconds = np.array([float(r["seconds"]) for r in rows])
    assert s["frames"] == 16
    assert s["frames_per_second"] == pytest.approx(16 / seconds.sum())
    assert s["steady_from"] == 8  # mem_every × max_working_frames
    assert s["steady_frames_per_second"] == pytest.approx(8 / seconds[8:].sum())
    assert s["ms_per_frame_late"] == pytest.approx(1000 * seconds[-s["window"] :].mean())
    assert s["peak_rss_mb"] == pytest.approx(max(float(r["peak_rss_mb"]) for r in rows))
    assert s["rss_mb_at_end"] == pytest.approx(float(rows[-1]["rss_mb"]))
    assert s["max_long_term_elements"] == max(int(r["long_term_elements"]) for r in rows)
    j = [float(r["j"]) for r in rows if r["j"]]
    assert len(j) == 14 and s["objects"] == 2
    assert s["j"] == pytest.approx(np.mean(j))  # every object is scored on the same frames

    assert f"frames/s: {s['frames_per_second']:.3f} overall, {s['steady_frames_per_second']:.3f}" in printed
    assert f"J&F {100 * s['jf']:.1f}" in printed and "16 frames (generated composite 48×64" in printed

    # The files are there now: a second run is refused without --overwrite, and they are left as they were.
    before = (out / "bench.csv").read_bytes()
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "bench.csv").read_bytes() == before


def test_bench_given_folder_with_ground_truth(weights, tmp_path, capsys) -> None:
    video = GeneratedVideo(VIDEO, seed=2)
    frames, gt = tmp_path / "frames", tmp_path / "gt"
    frames.mkdir()
    gt.mkdir()
    for t in range(len(video)):
        Image.fromarray(video.frame(t)).save(frames / f"{t}.png")
        write_index_mask(gt / f"{t}.png", video.ground_truth(t))
    out = tmp_path / "out"
    argv = [
        "bench",
        "--weights",
        str(weights),
        "--video",
        str(frames),
        "--gt",
        str(gt),
        "--pingpong",
        "2",
        "--out",
        str(out),
        "--no-plots",
        *MEMORY_FLAGS,
    ]
    assert main(argv) == 0
    assert "10 frames (frames: 5 frames played 2× back and forth)" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["bench.csv", "bench.json"]
    records = read_csv(out / "bench.csv")
    assert [r.source_index for r in records] == pingpong_order(5, 2)
    assert records[0].j is None and all(r.j is not None for r in records[1:-1])

    # The generated video itself gives the same J&F (its frames were written losslessly).
    summary = json.loads((out / "bench.json").read_text())["summary"]
    same = BenchRun(load_model(weights), CONFIG, video, passes=2).run().summary
    assert summary["jf"] == pytest.approx(same.jf, abs=1e-9)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--video", "FRAMES"], "--video needs --mask"),
        (["--video", "FRAMES", "--frames", "10"], "--frames sets the length of a generated video"),
        (["--mask", "MASK"], "--mask goes with --video"),
        (["--pingpong", "0"], "--pingpong: must be at least 1"),
        (["--frames", "1"], "at least 2 frames"),
        (["--video", "NOWHERE", "--mask", "MASK"], "nowhere: no such file or folder"),
    ],
)
def test_bench_bad_arguments(weights, tmp_path, capsys, extra, message) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(frames / "0.png")
    mask = tmp_path / "mask.png"
    write_index_mask(mask, np.ones((8, 8), np.uint8))
    extra = [
        {"FRAMES": str(frames), "MASK": str(mask), "NOWHERE": str(tmp_path / "nowhere")}.get(a, a)
        for a in extra
    ]
    assert main(["bench", "--weights", str(weights), *extra, *MEMORY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xmem: error: ") and message in err and "Traceback" not in err


def test_bench_with_missing_weights_or_without_matplotlib(weights, tmp_path, capsys, monkeypatch) -> None:
    assert main(["bench", "--weights", str(tmp_path / "XMem.pth"), "--frames", "4", *MEMORY_FLAGS]) == 2
    assert "XMem.pth: checkpoint file not found" in capsys.readouterr().err

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a)
    )
    out = tmp_path / "out"
    assert main(["bench", "--weights", str(weights), "--frames", "4", "--out", str(out), *MEMORY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "xmem-vos[bench]" in err
    assert not (out / "bench.csv").exists()


# --------------------------------------------------------------------------------------------------
# Baselines


def _smooth_texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Colour texture varying over about 12 pixels (the scale the flow methods lock on to)."""
    coarse = torch.from_numpy(rng.random((1, 3, h // 12 + 2, w // 12 + 2), dtype=np.float32))
    fine = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)[0]
    fine = (fine - fine.min()) / (fine.max() - fine.min())
    return (fine * 255).permute(1, 2, 0).numpy().astype(np.uint8)


def moving_squares(steps: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two textured 48-pixel squares over a textured, still background (192×256): object 1 moves 3 px
    right and 1 px down per frame, object 2 moves 3 px left."""
    rng = np.random.default_rng(4)
    background = _smooth_texture(rng, 192, 256)
    textures = [_smooth_texture(rng, 48, 48), _smooth_texture(rng, 48, 48)]
    frames, masks = [], []
    for t in range(steps):
        frame, mask = background.copy(), np.zeros((192, 256), np.uint8)
        for k, (y, x) in enumerate([(24 + t, 16 + 3 * t), (128, 192 - 3 * t)], start=1):
            frame[y : y + 48, x : x + 48] = textures[k - 1]
            mask[y : y + 48, x : x + 48] = k
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _centre(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def test_copy_first_mask_repeats_the_first_mask() -> None:
    frames, masks = moving_squares(4)
    out = list(CopyFirstMask().propagate(frames, masks[0]))
    assert len(out) == 4 and all(np.array_equal(m, masks[0]) for m in out)


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="needs the baselines extra")
def test_flow_warp_follows_translating_squares() -> None:
    frames, masks = moving_squares(12)  # 33 px to the side in 11 steps
    out = list(FlowWarp().propagate(frames, masks[0]))  # Farneback
    assert np.array_equal(out[0], masks[0]) and len(out) == 12
    for k in (1, 2):
        truth, first, last = masks[-1] == k, masks[0] == k, out[-1] == k
        assert _iou(first, truth) < 0.2  # the copy baseline has nearly lost them
        assert _iou(last, truth) > 0.75
        assert np.abs(_centre(last) - _centre(truth)).max() < 6
    # DIS underestimates the motion of small objects but still moves both the right way, most of it.
    dis = FlowWarp(FlowWarpConfig(method=FlowMethod.DIS, dis_preset=DisPreset.MEDIUM))
    out = list(dis.propagate(frames, masks[0]))
    for k in (1, 2):
        moved = _centre(out[-1] == k) - _centre(masks[0] == k)
        true = _centre(masks[-1] == k) - _centre(masks[0] == k)
        assert (np.sign(moved) == np.sign(true))[true != 0].all()
        assert (np.abs(moved) > 0.5 * np.abs(true))[true != 0].all()
        assert _iou(out[-1] == k, masks[-1] == k) > 0.5


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="needs the baselines extra")
def test_flow_warp_of_a_still_video_keeps_the_mask() -> None:
    frames, masks = moving_squares(1)
    out = list(FlowWarp().propagate([frames[0]] * 5, masks[0]))
    assert all(np.array_equal(m, masks[0]) for m in out)


def test_score_propagation_plays_the_order_from_its_first_frame_and_scores_it() -> None:
    frames, masks = moving_squares(6)
    order = pingpong_order(6, 2)[3:]  # starts on frame 3: 3, 4, 5, 5, 4, ..., 0
    scored = score_propagation(CopyFirstMask(), frames, masks, order, name="sq", keep_predictions=True)
    assert scored.frames == 9 and scored.seconds > 0 and scored.fps > 0
    assert scored.predictions is not None and all(np.array_equal(p, masks[3]) for p in scored.predictions)
    # the same figures as scoring the played sequence by hand
    expected = score_video([masks[t] for t in order], [masks[3]] * 9, name="sq")
    assert scored.result.summary.jf == pytest.approx(expected.summary.jf)
    assert 0.2 < scored.result.summary.jf < 0.99  # frame 3 copied: right on the replays of 3, off elsewhere
    assert score_propagation(CopyFirstMask(), frames, masks).predictions is None


def test_segmenter_propagator_gives_a_mask_per_frame_and_resets(model) -> None:
    frames, masks = moving_squares(3)
    frames, masks = [f[::4, ::4] for f in frames], [m[::4, ::4] for m in masks]  # 48×64
    method = SegmenterPropagator(model, CONFIG)
    first = list(method.propagate(frames, masks[0]))
    second = list(method.propagate(frames, masks[0]))
    assert len(first) == 3 and np.array_equal(first[0], masks[0])
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
