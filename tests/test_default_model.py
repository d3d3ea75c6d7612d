"""The embedded default model: XMem-Lite weights shipped inside the package, loaded by ``load_model()`` and by
``xmem segment`` / ``bench`` / ``info`` without ``--weights``, with its model card; and its quality on
held-out synthetic videos (seeds neither the benchmarks nor the training validation use)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

import xmem.model.checkpoint as checkpoint
from conftest import write_video
from xmem import Architecture, CheckpointError, InferenceConfig, VideoSegmenter, load_model
from xmem.cli import main
from xmem.data import CompositeConfig, held_out_videos
from xmem.io.masks import read_index_mask, write_index_mask
from xmem.metrics import VideoScorer, summarize
from xmem.weights import default_model_card, default_weights_path

# held-out seeds apart from the benchmarks' (0-9) and the training validation's (1,000,000 on)
TEST_SEEDS = 500


@pytest.fixture(scope="module")
def default_model():
    return load_model()


def test_load_model_without_a_path_is_the_shipped_lite_model(default_model) -> None:
    path = default_weights_path()
    assert path.is_file() and path.stat().st_size < 8e6
    assert default_model.config.architecture is Architecture.LITE and not default_model.training
    card = default_model_card()
    assert card["model"]["architecture"] == "lite"
    info = card["info"]
    with safe_open(str(path), framework="pt") as f:
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118
    assert str(next(iter(dtypes - {torch.int64}))).endswith(info["stored_as"].replace("fp", "float"))
    assert info["training"]["config"]["model"]["architecture"] == "lite"
    assert info["training"]["shipped_weights"]["iteration"] > 0
    # the processing size and memory interval tuned on validation seeds travel with the weights
    assert (default_model.inference_size, default_model.inference_mem_every) == (
        info["inference_size"],
        info["inference_mem_every"],
    )
    assert info["training"]["validation_history"]
    assert "chelsea" in info["data"]["held_out_photographs"]
    # fp32 parameters whatever the file stores
    assert all(p.dtype == torch.float32 for p in default_model.parameters())


def test_default_model_follows_held_out_objects(default_model) -> None:
    """Real segmentation: the shipped weights track 1-3 objects through held-out composite videos far better
    than an untrained network could (which scores about 10)."""
    videos = held_out_videos(3, CompositeConfig(height=96, width=160, length=30), first_seed=TEST_SEEDS)
    segmenter = VideoSegmenter(default_model, InferenceConfig(size=-1, device="cpu"))
    results = []
    for video in videos:
        segmenter.reset()
        scorer = VideoScorer(len(video))
        for index, pred in segmenter.propagate(video.frames(), {0: video.mask(0)}):
            scorer.add(video.mask(index), pred if scorer.needs_prediction(index) else None)
        results.append(scorer.result())
    assert summarize(results).jf > 0.5


def test_missing_default_model_is_explained(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint, "default_weights_path", lambda: tmp_path / "gone.safetensors")
    with pytest.raises(CheckpointError, match="embedded default model is missing"):
        load_model()


def test_segment_and_info_without_weights_use_the_default_model(tmp_path, golden, capsys) -> None:
    frames = [np.ascontiguousarray(f) for f in golden["frames"][:4]]
    video = write_video(tmp_path / "clip.mp4", frames, fps=10)
    mask = tmp_path / "mask.png"
    write_index_mask(mask, golden["mask0"])
    out = tmp_path / "out"
    assert (
        main(["segment", str(video), "--mask", str(mask), "--out", str(out), "--quiet", "--size", "-1"]) == 0
    )
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:05d}.png" for i in range(4)]
    assert read_index_mask(out / "00003.png").shape == golden["mask0"].shape
    summary = json.loads((out / "summary.json").read_text())
    assert summary["weights"]["path"] == "default" and len(summary["weights"]["sha256"]) == 64
    # precision auto, resolved (to fp32 in the tests, conftest) and explained
    settings = summary["settings"]
    assert settings["precision"] == "fp32" and "no native bf16" in settings["precision_reason"]
    capsys.readouterr()
    assert main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "precision:   auto runs fp32 on cpu here (this CPU has no native bf16" in printed
    assert "variant:     XMem-Lite (EfficientNet-Lite0 key encoder" in printed
    assert "format:      safetensors" in printed
    assert "processing:  shorter side 240, memory every 2 frames (recorded with the weights)" in printed


def test_packaging_a_snapshot_ships_the_weights_of_that_iteration(tmp_path, monkeypatch, capsys) -> None:
    """benchmarks/default_model.py --snapshot N packages <stage>-N.safetensors of a run (the weights chosen on
    the real benchmark), records which, and refuses --final with it or a snapshot the run did not write."""
    import sys
    from pathlib import Path

    from trainconfigs import tiny_config
    from xmem.train.trainer import Trainer

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    import default_model as script

    run = tmp_path / "run"
    Trainer(tiny_config(4, snapshot_every=2), run, show_progress=False).run()
    target = tmp_path / "shipped.safetensors"
    monkeypatch.setattr(script, "default_weights_path", lambda: target)
    config = str(root / "configs" / "synthetic-small.toml")  # only named in the card's command
    assert script.main([str(run), "--config", config, "--snapshot", "2", "--threads", "1"]) == 0
    shipped, snapshot = load_model(target).state_dict(), load_model(run / "main-2.safetensors").state_dict()
    # stored as fp16 (no validation here to say it costs quality): the snapshot's values rounded to fp16
    assert all(
        torch.equal(
            shipped[k],
            snapshot[k].half().to(snapshot[k].dtype) if snapshot[k].is_floating_point() else snapshot[k],
        )
        for k in snapshot
    )
    _, info = checkpoint.read_safetensors_info(target)
    assert info["training"]["shipped"] == "iteration 2"
    assert info["training"]["shipped_weights"]["iteration"] == 2
    capsys.readouterr()
    assert script.main([str(run), "--config", config, "--snapshot", "3"]) == 2
    assert "main-3.safetensors: no weights of iteration 3" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        script.main([str(run), "--config", config, "--snapshot", "2", "--final"])
