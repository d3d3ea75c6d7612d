"""Long jobs: resume states, interruptions (abrupt and Ctrl-C), resumes that match an uninterrupted run
byte for byte, and refused resumes."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import xmem.jobs.segment as segment_module
from conftest import FAST_FLAGS, check_error, decode_video, write_video
from xmem.cli import main
from xmem.inference.core import InferenceCore
from xmem.io.errors import InputError
from xmem.io.masks import write_index_mask
from xmem.io.overlay import overlay_frame
from xmem.jobs.state import RESUME_FILE, check_fingerprint, load_resume_state

FRAMES = 12  # the golden memory settings consolidate from frame 6: the resume state holds long-term memory


@pytest.fixture(scope="module")
def job(tmp_path_factory, golden, weights):
    """A 12-frame video, its first mask, and the outputs of an uninterrupted run."""
    root = tmp_path_factory.mktemp("job")
    video = write_video(root / "clip.mp4", golden["frames"][:FRAMES])
    mask = root / "mask.png"
    write_index_mask(mask, golden["mask0"])
    assert run(video, mask, root / "full", weights) == 0
    last = np.array(Image.open(root / "full" / f"{FRAMES - 1:05d}.png"))
    assert set(np.unique(last).tolist()) == {0, 1, 2}  # both objects are still there: a telling comparison
    return video, mask, root / "full"


def run(video, mask, out, weights, *extra) -> int:
    return main(["segment", str(video), "--mask", str(mask), "--out", str(out), "--weights", str(weights),
                 "--overlay", f"{out}.mp4", "--save-probabilities", "--checkpoint-every", "4",
                 *FAST_FLAGS, *extra])  # fmt: skip


def files(folder: Path) -> dict[str, bytes]:
    """Every mask and probability map, by path relative to ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def stop_writer(monkeypatch, after: int, action) -> None:
    """Make the job's mask writer call ``action`` once ``after`` masks have been written."""
    real = segment_module.write_index_mask
    written = []

    def writer(path, mask):
        if len(written) == after:
            action()
        real(path, mask)
        written.append(path)

    monkeypatch.setattr(segment_module, "write_index_mask", writer)


def count_steps(monkeypatch) -> list[int]:
    steps: list[int] = []
    real = InferenceCore.step

    def step(self, *args, **kwargs):
        steps.append(self.frame_index + 1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InferenceCore, "step", step)
    return steps


def raise_interrupt() -> None:
    raise KeyboardInterrupt


def late_interrupt() -> None:
    time.sleep(0.5)
    raise KeyboardInterrupt


def test_abrupt_interruption_then_resume_is_byte_identical(tmp_path, job, weights, monkeypatch, caplog):
    video, mask, full = job
    part = tmp_path / "part"
    # dies while writing frame 9, late: the engine has gone on to the next frames meanwhile
    stop_writer(monkeypatch, after=9, action=late_interrupt)
    assert run(video, mask, part, weights) == 130
    monkeypatch.undo()

    # a consistent folder: whole masks for frames 0-8, no temporary files, the state saved after frame 7
    assert sorted(p.name for p in part.glob("*.png")) == [f"{i:05d}.png" for i in range(9)]
    assert not [p for p in part.rglob(".*")]
    state = load_resume_state(part / RESUME_FILE)
    assert (
        state.frames_done == 8 and state.engine["memory"]["long"]["key"] is not None
    )  # with long-term memory
    summary = json.loads((part / "summary.json").read_text())
    assert (
        summary["status"] == "interrupted" and summary["frames"] == 9
    )  # the frames whose files were written
    # the overlay so far is a valid video; it may hold a few frames whose files were still queued
    assert 9 <= len(decode_video(Path(f"{part}.mp4"))) <= FRAMES

    steps = count_steps(monkeypatch)
    caplog.set_level("INFO")
    assert run(video, mask, part, weights, "--resume") == 0
    assert steps == list(range(8, FRAMES))  # the engine went on from frame 8, it did not start again
    assert "resuming after frame 7" in caplog.text

    expected = files(full)
    assert len(expected) == 3 * FRAMES  # masks and two probability maps per frame
    assert files(part) == expected
    # the overlay: redrawn from the saved masks up to frame 7, then continued. (x264 is not bit-reproducible
    # from run to run, so its frames are compared with what the masks draw, up to the codec's loss.)
    overlay, source = decode_video(Path(f"{part}.mp4")), decode_video(video)
    uninterrupted = decode_video(Path(f"{full}.mp4"))
    assert len(overlay) == len(uninterrupted) == FRAMES
    for t in range(FRAMES):
        ov = overlay[t].astype(int)
        drawn = overlay_frame(source[t], np.array(Image.open(part / f"{t:05d}.png")))
        assert np.abs(ov - drawn).mean() < min(10, 0.3 * np.abs(ov - source[t]).mean()), t
        assert np.abs(ov - uninterrupted[t]).mean() < 3, t
    summary = json.loads((part / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["resumed_from"] == 8 and summary["frames"] == FRAMES
    assert not (part / RESUME_FILE).exists()  # complete: nothing left to resume


def test_ctrl_c_stops_after_the_frame_saves_and_resumes(tmp_path, job, weights, monkeypatch, capsys):
    video, mask, full = job
    part = tmp_path / "part"
    handler = signal.getsignal(signal.SIGINT)  # (SIG_IGN when pytest runs in a background job)
    real = InferenceCore.step

    def step(self, *args, **kwargs):  # Ctrl-C while the engine works on frame 4
        if self.frame_index + 1 == 4:
            os.kill(os.getpid(), signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(InferenceCore, "step", step)
    assert run(video, mask, part, weights) == 130
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "stopped after frame 4" in err and "--resume" in err
    assert load_resume_state(part / RESUME_FILE).frames_done == 5  # saved at the stop, not only every 4
    assert signal.getsignal(signal.SIGINT) is handler  # the handler is put back

    assert run(video, mask, part, weights, "--resume") == 0
    assert files(part) == files(full)

    before = {p: p.stat().st_mtime_ns for p in part.iterdir()}
    assert run(video, mask, part, weights, "--resume") == 0  # complete: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in part.iterdir()} == before


def test_resume_is_refused_when_the_job_differs_or_the_state_is_bad(tmp_path, job, weights, golden, monkeypatch, capsys):  # fmt: skip
    video, mask, full = job
    part = tmp_path / "part"
    stop_writer(monkeypatch, after=4, action=raise_interrupt)
    assert run(video, mask, part, weights) == 130
    monkeypatch.undo()
    capsys.readouterr()
    saved = (part / RESUME_FILE).read_bytes()

    check_error(capsys, run(video, mask, part, weights, "--resume", "--mem-every", "3"), RESUME_FILE, "settings", "mem_every 2 -> 3")  # fmt: skip
    other_video = write_video(tmp_path / "clip.mp4", golden["frames"][1 : FRAMES + 1])
    check_error(
        capsys, run(other_video, mask, part, weights, "--resume"), "cannot resume", "the input differ"
    )
    state = torch.load(weights, weights_only=True)
    state["decoder.pred.bias"] += 1
    torch.save(state, tmp_path / "other.pth")
    check_error(capsys, run(video, mask, part, tmp_path / "other.pth", "--resume"), "the weights differ")
    (part / RESUME_FILE).write_bytes(b"garbage")
    check_error(
        capsys, run(video, mask, part, weights, "--resume"), RESUME_FILE, "not a readable resume state"
    )
    (part / RESUME_FILE).write_bytes(saved)

    # the same checks without a run: other masks, a torch file that is not a resume state
    saved_state = load_resume_state(part / RESUME_FILE)
    with pytest.raises(InputError, match="the masks differ"):
        check_fingerprint(saved_state.fingerprint, {**saved_state.fingerprint, "masks": "1 mask, 0123"}, part)
    torch.save({"hello": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match=r"other\.pt: not an xmem resume state"):
        load_resume_state(tmp_path / "other.pt")

    # without --resume the folder is refused, and nothing in it was touched by the refused attempts
    check_error(capsys, run(video, mask, part, weights), "not empty", "--resume")
    assert (part / RESUME_FILE).read_bytes() == saved
    assert sorted(p.name for p in part.glob("*.png")) == [f"{i:05d}.png" for i in range(4)]

    # --overwrite starts again from the first frame and drops the stale state
    steps = count_steps(monkeypatch)
    assert run(video, mask, part, weights, "--overwrite", "--checkpoint-every", "0") == 0
    assert steps == list(range(FRAMES)) and not (part / RESUME_FILE).exists()
    assert files(part) == files(full)
