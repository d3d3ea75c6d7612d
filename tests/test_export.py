"""Exports of a video session (xmem.interactive.export) and objects registered before they are drawn."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import decode_video
from test_session import N, clip, session  # noqa: F401  (clip is a fixture)
from xmem.interactive import ExportOptions, ExportStopped, export_session
from xmem.io.masks import read_index_mask


def test_add_object_takes_the_smallest_free_id_and_remove_forgets_it(clip, golden, golden_model):  # noqa: F811
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    assert s.add_object(name="dog") == 2 and s.object_info[2]["name"] == "dog"
    assert s.add_object(colour=(1, 2, 3)) == 3 and s.object_info[3]["colour"] == [1, 2, 3]
    with pytest.raises(ValueError, match="colour"):
        s.add_object(colour=(1, 2, 300))
    assert sorted(s.object_info) == [1, 2, 3]  # the refused one left nothing behind
    s.remove_object(2)  # never drawn: removable all the same
    assert sorted(s.object_info) == [1, 3] and s.add_object() == 2


def test_export_writes_masks_alpha_overlay_summary_and_archive(tmp_path, clip, golden, golden_model):  # noqa: F811
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    s.add_mask(0, 2, golden["mask0"] == 2)
    s.set_object(1, name="cup/../../etc", colour=(255, 0, 255))
    list(s.propagate(0, stop=N - 3))  # the last two frames stay without a mask
    done = []
    files = export_session(s, tmp_path / "export", progress=lambda d, t: done.append((d, t)))
    out = tmp_path / "export"
    assert done[-1] == (N, N) and len(done) == N
    for t in range(N):
        got = read_index_mask(out / "masks" / f"{t:05d}.png")
        assert (got == s.mask(t)).all()
        assert Image.open(out / "masks" / f"{t:05d}.png").mode == "P"
    assert not read_index_mask(out / "masks" / f"{N - 1:05d}.png").any()
    alpha = sorted(p.name for p in (out / "alpha").iterdir())
    assert alpha == ["1-cup-..-..-etc", "2-object-2"]
    for folder in (out / "alpha").iterdir():
        assert folder.resolve().parent == (out / "alpha").resolve()  # the name cannot climb out
        obj = int(folder.name.split("-")[0])
        matte = np.array(Image.open(folder / "00005.png"))
        assert set(np.unique(matte).tolist()) <= {0, 255}
        assert ((matte == 255) == (s.mask(5) == obj)).all()
    video = decode_video(out / "overlay.mp4")
    assert len(video) == N
    inside = s.mask(3) == 1
    assert inside.sum() > 20
    mean = video[3][inside].astype(float).mean(0)
    assert (
        mean[1] < mean[0] - 30 and mean[1] < mean[2] - 30
    )  # magenta: the object's own colour, not DAVIS red
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == N and summary["key_frames"] == [0]
    counts = {o["id"]: o["frames"] for o in summary["objects"]}
    assert counts == {k: sum(int((s.mask(t) == k).any()) for t in range(N)) for k in (1, 2)}
    assert summary["objects"][0]["name"] == "cup/../../etc" and summary["objects"][0]["last_frame"] <= N - 3
    with zipfile.ZipFile(out / "xmem-export.zip") as archive:
        assert sorted(archive.namelist()) == sorted(f for f in files if f != "xmem-export.zip")


def test_a_stopped_export_leaves_the_previous_one(tmp_path, clip, golden, golden_model):  # noqa: F811
    s = session(clip, golden_model)
    s.add_mask(0, 1, golden["mask0"] == 1)
    export_session(s, tmp_path / "export", ExportOptions(overlay=False, archive=False))
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "export").rglob("*"))
    s.add_mask(4, 1, golden["mask0"] == 1)
    with pytest.raises(ExportStopped):
        export_session(
            s,
            tmp_path / "export",
            should_stop=lambda: len(list((tmp_path).glob(".export.partial/masks/*"))) >= 3,
        )
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "export").rglob("*")) == before
    assert not read_index_mask(tmp_path / "export" / "masks" / "00004.png").any()  # the old export's frame 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
