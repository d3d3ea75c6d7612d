"""The training side: the clip forward pass, the trainer's checkpoints (bit-for-bit resume), DDP on the CPU,
exported weights."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from trainconfigs import SMALL, tiny_config
from xmem.config import InferenceConfig
from xmem.inference.core import InferenceCore
from xmem.memory.similarity import similarity
from xmem.model.checkpoint import load_model
from xmem.model.network import XMem
from xmem.train.config import InitConfig, TrainPrecision
from xmem.train.data import build_stage_dataset
from xmem.train.forward import clip_forward, read_memory_dense, reference_frames
from xmem.train.trainer import CALIBRATION_ITEMS, Trainer, TrainingError

# --------------------------------------------------------------------------------------------------
# The clip forward pass


def test_reference_frames_first_frame_plus_random_earlier_ones() -> None:
    g = torch.Generator().manual_seed(0)
    assert reference_frames(2, 3, 2, g).tolist() == [[0, 1], [0, 1]]
    assert reference_frames(3, 3, 1, g).tolist() == [[0, 1, 2]]
    for t in range(4, 9):
        refs = reference_frames(t, 3, 5, g)
        assert refs.shape == (5, 3)
        assert (refs[:, 0] == 0).all()
        for row in refs.tolist():
            assert len(set(row)) == 3 and all(1 <= r < t for r in row[1:])


def test_dense_readout_is_the_softmax_weighted_sum_of_values() -> None:
    g = torch.Generator().manual_seed(1)
    b, ck, n, o, cv, h, w = 2, 4, 6, 2, 3, 2, 3
    key, shrinkage = torch.randn(b, ck, n, generator=g), 1 + torch.rand(b, n, generator=g)
    value = torch.randn(b, o, cv, n, generator=g)
    qk, qs = torch.randn(b, ck, h, w, generator=g), torch.rand(b, ck, h, w, generator=g)
    out = read_memory_dense(key, shrinkage, value, qk, qs)
    for bi in range(b):
        for j in range(h * w):
            q, e = qk[bi].flatten(1)[:, j], qs[bi].flatten(1)[:, j]
            sim = torch.stack(
                [-shrinkage[bi, i] * (e * (key[bi, :, i] - q) ** 2).sum() / ck**0.5 for i in range(n)]
            )
            expected = value[bi] @ torch.softmax(sim, 0)  # O×Cv
            torch.testing.assert_close(out[bi].flatten(2)[:, :, j], expected, rtol=1e-5, atol=1e-5)


def test_clip_forward_shapes_padding_and_gradients() -> None:
    torch.manual_seed(0)
    net = XMem(SMALL).eval()
    b, t, o, h, w = 2, 4, 3, 32, 48
    frames = torch.randn(b, t, 3, h, w)
    first = torch.zeros(b, o, h, w)
    first[:, 0, 4:20, 4:20] = 1
    first[0, 1, 20:30, 30:40] = 1
    valid = torch.tensor([[True, True, False], [True, False, False]])
    out = clip_forward(
        net, frames, first, valid, generator=torch.Generator().manual_seed(0), deep_update_prob=1.0
    )
    assert len(out.logits) == len(out.probs) == t - 1
    for logits, prob in zip(out.logits, out.probs, strict=True):
        assert logits.shape == (b, o + 1, h, w) and prob.shape == (b, o, h, w)
        assert prob[0, 2].abs().max() < 1e-6 and prob[1, 1:].abs().max() < 1e-6  # padding slots stay empty
    loss = sum(-(p[:, 0] + 1e-6).log().mean() for p in out.probs)
    loss.backward()
    for name in ("key_encoder", "key_proj", "value_encoder", "decoder"):
        grads = [p.grad for n, p in net.named_parameters() if n.startswith(name) and p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), name
    assert net.decoder.hidden_update.transform.weight.grad.abs().sum() > 0
    assert net.value_encoder.hidden_reinforce.transform.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------
# The trainer


class StopAfter(torch.utils.data.Dataset):
    """A dataset that interrupts the run (like Ctrl-C) when asked for its ``n``-th item."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.calls = inner, n, 0

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, key):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return self.inner[key]


def test_training_resumes_bit_for_bit(tmp_path: Path) -> None:
    """4 iterations in one go == 2 iterations, an interruption, then --resume for the other 2."""
    config = tiny_config(4)
    straight = Trainer(config, tmp_path / "a", show_progress=False)
    straight.run()

    def interrupted_factory(stage, seed):
        # the BatchNorm calibration of the random encoders reads its clips first, then 2 iterations of batch 2
        return StopAfter(build_stage_dataset(stage, seed), n=CALIBRATION_ITEMS + 2 * 2)

    with pytest.raises(KeyboardInterrupt):
        Trainer(config, tmp_path / "b", dataset_factory=interrupted_factory, show_progress=False).run()
    assert (tmp_path / "b" / "checkpoint.pt").is_file() and not (tmp_path / "b" / "main.safetensors").exists()
    resumed = Trainer(config, tmp_path / "b", resume=True, show_progress=False)
    assert (resumed.start_stage, resumed.start_iteration) == (0, 2)
    resumed.run()
    a, b = straight.network.state_dict(), resumed.network.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], XMem(SMALL).state_dict()[k]) for k in a)  # it did train
    lines = (tmp_path / "a" / "log.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"loss"' in lines[0]


def test_resume_refuses_another_config_and_a_missing_checkpoint(tmp_path: Path) -> None:
    Trainer(tiny_config(2), tmp_path / "run", show_progress=False).run()
    with pytest.raises(TrainingError, match="another configuration"):
        Trainer(tiny_config(2, seed=6), tmp_path / "run", resume=True, show_progress=False)
    Trainer(
        tiny_config(2, num_workers=1), tmp_path / "run", resume=True, show_progress=False
    )  # harmless change
    with pytest.raises(TrainingError, match="no checkpoint"):
        Trainer(tiny_config(2), tmp_path / "nothing", resume=True, show_progress=False)


def test_snapshots_are_the_weights_at_their_iteration(tmp_path: Path) -> None:
    """snapshot_every=2: <stage>-2 and <stage>-4 are written, <stage>-4 holds the weights the checkpoint of
    iteration 4 holds, and the run resumed from there ends with its final weights (no snapshot at the end)."""
    config = tiny_config(5, snapshot_every=2)

    def interrupted_factory(stage, seed):  # stops when asked for the 5th batch
        return StopAfter(build_stage_dataset(stage, seed), n=CALIBRATION_ITEMS + 4 * 2)

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        Trainer(config, run, dataset_factory=interrupted_factory, show_progress=False).run()
    assert sorted(p.name for p in run.glob("main*.safetensors")) == [
        "main-2.safetensors",
        "main-4.safetensors",
    ]
    at4 = torch.load(run / "checkpoint.pt", weights_only=True)
    assert at4["iteration"] == 4
    snapshot = load_model(run / "main-4.safetensors").state_dict()
    assert all(torch.equal(snapshot[k], at4["model"][k]) for k in at4["model"])
    two = load_model(run / "main-2.safetensors").state_dict()
    assert any(not torch.equal(two[k], snapshot[k]) for k in two)

    Trainer(config, run, resume=True, show_progress=False).run()
    names = sorted(p.name for p in run.glob("main*.safetensors"))
    assert names == ["main-2.safetensors", "main-4.safetensors", "main.safetensors"]
    final = load_model(run / "main.safetensors").state_dict()
    assert any(not torch.equal(final[k], snapshot[k]) for k in final)  # iteration 5 moved on from 4
    with pytest.raises(ValueError, match="snapshot_every"):
        tiny_config(2, snapshot_every=0)


def test_exported_weights_load_for_inference(tmp_path: Path) -> None:
    trainer = Trainer(tiny_config(2), tmp_path / "run", show_progress=False)
    path = trainer.run()
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()
    model = load_model(path)
    assert model.config == SMALL
    for k, v in trainer.network.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    core = InferenceCore(model, InferenceConfig(size=-1, device="cpu"))
    frame = torch.rand(3, 48, 64)
    mask = torch.zeros(48, 64, dtype=torch.long)
    mask[10:30, 10:30] = 1
    core.step(frame, mask)
    assert core.step(frame).shape == (2, 48, 64)


def test_exported_weights_carry_the_configured_inference_size(tmp_path: Path) -> None:
    path = Trainer(tiny_config(2, inference_size=96), tmp_path / "run", show_progress=False).run()
    model = load_model(path)
    assert model.inference_size == 96
    core = InferenceCore(model, InferenceConfig(device="cpu"))  # size unset: the weights' size
    assert core.config.size == 96
    plain = load_model(Trainer(tiny_config(2), tmp_path / "plain", show_progress=False).run())
    assert plain.inference_size is None
    with pytest.raises(ValueError, match="inference_size"):
        tiny_config(2, inference_size=0)


DDP_SCRIPT = """
import sys, torch
sys.path.insert(0, {tests!r})
from trainconfigs import tiny_config
from xmem.train.trainer import Trainer
trainer = Trainer(tiny_config(2, batch_size=4, deep_update_prob=0.0), {run!r}, show_progress=False)
rank = trainer.ctx.rank
trainer.run()
torch.save(trainer.network.state_dict(), {run!r} + f"/rank{{rank}}.pt")
"""


def test_ddp_two_cpu_processes_end_identical_and_match_one_process(tmp_path: Path) -> None:
    """torchrun with 2 processes (gloo): both ranks end with the same weights, equal (up to float
    reduction order) to one process with the same total batch."""
    script = tmp_path / "ddp.py"
    run = tmp_path / "ddp"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), run=str(run)))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517"]
    proc = subprocess.run([*cmd, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(run / "rank0.pt", weights_only=True)
    r1 = torch.load(run / "rank1.pt", weights_only=True)
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    single = Trainer(
        tiny_config(2, batch_size=4, deep_update_prob=0.0), tmp_path / "single", show_progress=False
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks: the BatchNorm calibration's sums in the same order
    try:
        single.run()
    finally:
        torch.set_num_threads(threads)
    # Adam moves every weight by about lr per step whatever its gradient's size, so the sign of a
    # near-zero gradient (which the order of the reduction can flip) decides a whole step: compare with
    # that bound, and ask nearly every weight to agree closely.
    bound = 2 * 1e-4 * 2
    close = total = 0
    for k, v in single.network.state_dict().items():
        if v.is_floating_point():
            diff = (r0[k] - v).abs()
            assert diff.max() <= bound, k
            close += int((diff <= 1e-6 + 1e-4 * v.abs()).sum())
            total += v.numel()
    assert close / total > 0.97


def test_fp16_needs_a_gpu(tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match="fp16 training needs a CUDA GPU"):
        Trainer(replace(tiny_config(1), precision=TrainPrecision.FP16), tmp_path, show_progress=False)


def test_validation_keeps_the_best_weights_and_stops_early(tmp_path: Path, monkeypatch) -> None:
    from xmem.data import CompositeConfig
    from xmem.train import trainer as trainer_module
    from xmem.train.validation import ValidationConfig

    scores = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    seen = []

    def fake_validate(network, cfg, device):
        seen.append(float(network.decoder.pred.weight.detach().sum()))
        return next(scores)

    monkeypatch.setattr(trainer_module, "validate", fake_validate)
    validation = ValidationConfig(
        every=1, videos=1, video=CompositeConfig(height=48, width=64, length=8), patience=2
    )
    config = tiny_config(6, validation=validation)
    trainer = Trainer(config, tmp_path / "run", show_progress=False)
    trainer.run()
    assert len(seen) == 4  # 0.5, 0.6 (best), 0.55, 0.58: two without improvement -> stop after iteration 4
    best = load_model(tmp_path / "run" / "main-best.safetensors")
    assert float(best.decoder.pred.weight.detach().sum()) == pytest.approx(seen[1])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (state["stage"], state["iteration"]) == (1, 0)  # the stage is finished
    log = (tmp_path / "run" / "log.jsonl").read_text()
    assert log.count("heldout_jf") == 4


def test_validation_scores_the_engine_on_held_out_videos() -> None:
    from xmem.data import CompositeConfig
    from xmem.train.validation import ValidationConfig, validate

    torch.manual_seed(0)
    net = XMem(SMALL).eval()
    cfg = ValidationConfig(videos=2, video=CompositeConfig(height=48, width=64, length=6))
    jf = validate(net, cfg)
    assert 0.0 <= jf <= 1.0
    assert validate(net, cfg) == jf  # deterministic, and the network is left as it was


def test_export_between_safetensors_and_the_released_layout(tmp_path: Path) -> None:
    from xmem.cli import main
    from xmem.model.checkpoint import read_state_dict, save_weights

    torch.manual_seed(3)
    net = XMem(SMALL)
    save_weights(net, tmp_path / "w.safetensors", {"note": "test"})
    assert main(["export", str(tmp_path / "w.safetensors"), str(tmp_path / "w.pth")]) == 0
    state = read_state_dict(tmp_path / "w.pth")  # a plain state_dict, weights_only
    assert set(state) == set(net.state_dict())
    assert main(["export", str(tmp_path / "w.pth"), str(tmp_path / "back.safetensors")]) == 0
    back = load_model(tmp_path / "back.safetensors")
    assert back.config == SMALL
    assert all(torch.equal(back.state_dict()[k], v) for k, v in net.state_dict().items())
    assert main(["export", str(tmp_path / "w.pth"), str(tmp_path / "w.onnx")]) == 2


def test_similarity_scale_softens_the_starting_weights_exactly(tmp_path: Path) -> None:
    """init.similarity_scale multiplies every similarity of the loaded weights (a softmax temperature):
    shrinkage and selection stay; the network starts from the scaled weights."""
    start = Trainer(tiny_config(2), tmp_path / "first", show_progress=False).run()
    base = Trainer(tiny_config(1, init=InitConfig(weights=start)), tmp_path / "a", show_progress=False)
    soft = Trainer(
        tiny_config(1, init=InitConfig(weights=start, similarity_scale=0.01)),
        tmp_path / "b",
        show_progress=False,
    )
    torch.manual_seed(0)
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        k0, s0, e0, _ = base.network.encode_key(image)
        k1, s1, e1, _ = soft.network.encode_key(image)
    assert torch.allclose(s1, s0) and torch.allclose(e1, e0)
    assert torch.allclose(k1, 0.1 * k0, rtol=1e-4, atol=1e-6)

    def self_similarity(k: torch.Tensor, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return similarity(k.flatten(2)[0], s.flatten(2)[0, 0], k.flatten(2)[0], e.flatten(2)[0])

    sim0, sim1 = self_similarity(k0, s0, e0), self_similarity(k1, s1, e1)
    assert torch.allclose(sim1, 0.01 * sim0, rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="similarity_scale"):
        InitConfig(similarity_scale=0.0)

    # init.shrinkage_offset: every similarity becomes -(d² + offset)·distance of the loaded weights
    offset = Trainer(
        tiny_config(1, init=InitConfig(weights=start, shrinkage_offset=20.0)),
        tmp_path / "c",
        show_progress=False,
    )
    with torch.no_grad():
        k2, s2, e2, _ = offset.network.encode_key(image)
    assert torch.allclose(e2, e0) and torch.allclose(s2, (s0 - 1) / 20 + 1, rtol=1e-4)
    sim2 = self_similarity(k2, s2, e2)
    factor = (s0.flatten() - 1 + 20) / s0.flatten()
    assert torch.allclose(sim2, sim0 * factor, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="shrinkage_offset"):
        InitConfig(shrinkage_offset=0.5)
