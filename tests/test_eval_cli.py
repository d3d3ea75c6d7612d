"""`xmem eval`: layouts (DAVIS, YouTube-VOS, video folders, one video), the table, the CSV, workers, and its
answers to bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaldata import ground_truth, predict, write_video
from xmem.cli import main
from xmem.eval import Layout, evaluate_dataset
from xmem.io.masks import write_index_mask


def make_videos(gt_base: Path, pred_base: Path, names=("alpha", "beta", "gamma"), seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i, name in enumerate(names):
        gt = ground_truth(rng, 6 + i, 30 + 7 * i, 41 + 5 * i, {1: 0, 2: 0} if i != 1 else {1: 0})
        write_video(gt_base / name, gt)
        write_video(pred_base / name, predict(rng, gt))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table_and_csv(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["video", "J&F", "J-Mean", "F-Mean", "objects"]
    result = evaluate_dataset(tmp_path / "pred", tmp_path / "gt")
    for line, video in zip(out[1:4], result.videos, strict=True):
        s = video.summary
        expected = [
            video.name,
            f"{100 * s.jf:.1f}",
            f"{100 * s.j.mean:.1f}",
            f"{100 * s.f.mean:.1f}",
            str(s.objects),
        ]
        assert line.split() == expected
    total = result.summary
    assert out[5].split() == [
        "overall",
        f"{100 * total.jf:.1f}",
        f"{100 * total.j.mean:.1f}",
        f"{100 * total.f.mean:.1f}",
        "5",
    ]
    assert out[6].startswith(f"J-Recall {100 * total.j.recall:.1f}")

    rows = read_csv(tmp_path / "pred" / "scores.csv")  # the default place
    assert [r["level"] for r in rows] == [
        "overall",
        "video",
        "object",
        "object",
        "video",
        "object",
        "video",
        "object",
        "object",
    ]
    overall = rows[0]
    assert float(overall["J&F"]) == pytest.approx(100 * total.jf, abs=1e-4)
    assert float(overall["F-Decay"]) == pytest.approx(100 * total.f.decay, abs=1e-4)
    assert overall["objects"] == "5" and overall["frames"] == str(6 + 7 + 8)
    beta = [r for r in rows if r["video"] == "beta"]
    assert beta[0]["level"] == "video" and beta[0]["frames"] == "7"
    assert beta[1]["object"] == "1" and beta[1]["frames"] == "5"  # 7 frames less the first and the last
    obj = result.videos[1].objects[0]
    assert float(beta[1]["J-Mean"]) == pytest.approx(100 * obj.j.mean, abs=1e-4)
    assert float(beta[1]["J-Recall"]) == pytest.approx(100 * obj.j.recall, abs=1e-4)


def test_davis_layout_with_a_video_list(tmp_path, capsys, caplog):
    davis = tmp_path / "DAVIS"
    make_videos(davis / "Annotations" / "480p", tmp_path / "pred", names=("bike", "cat"))
    make_videos(davis / "Annotations" / "480p", tmp_path / "other", names=("dance",), seed=1)  # a train video
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "val.txt").write_text("bike\ncat\n")
    csv_path = tmp_path / "out.csv"
    code = main(["eval", str(tmp_path / "pred"), str(davis), "--csv", str(csv_path), "--quiet",
                 "--videos", str(davis / "ImageSets" / "2017" / "val.txt")])  # fmt: skip
    assert code == 0
    assert [r["video"] for r in read_csv(csv_path) if r["level"] == "video"] == ["bike", "cat"]
    assert capsys.readouterr().out.splitlines()[-1].endswith("(3 objects in 2 videos; davis protocol)")
    # without the list, the unpredicted ground-truth video is reported and skipped
    result = evaluate_dataset(tmp_path / "pred", davis)
    assert result.layout is Layout.DAVIS and [v.name for v in result.videos] == ["bike", "cat"]
    assert "1 ground-truth video(s) have no predictions and are not scored: dance" in caplog.text


def test_youtube_vos_layout_scores_late_objects(tmp_path):
    yt = tmp_path / "valid"
    rng = np.random.default_rng(2)
    gt = ground_truth(rng, 9, 36, 64, {1: 0, 2: 3})
    write_video(yt / "Annotations" / "0a1b", gt, names=[f"{5 * i:05d}" for i in range(9)])
    (yt / "meta.json").write_text(json.dumps({"videos": {}}))
    # a submission: PRED/Annotations/<video>/, with every frame, of which only the annotated ones count
    pred = np.repeat(predict(rng, gt), 5, axis=0)
    write_video(tmp_path / "sub" / "Annotations" / "0a1b", pred, names=[f"{i:05d}" for i in range(45)])
    result = evaluate_dataset(tmp_path / "sub", yt)
    assert result.layout is Layout.YOUTUBE_VOS
    (video,) = result.videos
    assert [(o.object_id, o.first_frame, o.num_frames) for o in video.objects] == [
        (1, "00005", 7),
        (2, "00020", 4),
    ]
    assert main(["eval", str(tmp_path / "sub"), str(yt), "--protocol", "davis", "--no-csv", "--quiet"]) == 0
    davis = evaluate_dataset(tmp_path / "sub", yt, protocol=result.protocol.davis())
    assert [o.object_id for o in davis.videos[0].objects] == [1]
    assert not (tmp_path / "sub" / "scores.csv").exists()


def test_two_plain_folders_and_binary_masks(tmp_path, capsys):
    gt = np.zeros((5, 20, 30), dtype=np.uint8)
    gt[:, 5:15, 5:15] = 255  # grey 0/255 masks: one object (DAVIS 2016 style)
    pred = gt.copy()
    pred[2] = 0
    for folder, labels in (("gt_clip", gt), ("pred_clip", pred)):
        (tmp_path / folder).mkdir()
        for i, frame in enumerate(labels):
            Image.fromarray(frame).save(tmp_path / folder / f"{i}.png")
    assert main(["eval", str(tmp_path / "pred_clip"), str(tmp_path / "gt_clip"), "--quiet"]) == 0
    line = capsys.readouterr().out.splitlines()[1].split()
    assert line == ["gt_clip", "66.7", "66.7", "66.7", "1"]  # frames 1..3, frame 2 missed


def test_workers_give_the_same_scores(tmp_path):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--csv", str(one), "--quiet"]) == 0
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--csv", str(two), "--quiet",
                 "--workers", "2"]) == 0  # fmt: skip
    assert one.read_text() == two.read_text()


def check_error(capsys, code: int, *needles: str) -> None:
    assert code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def run(tmp_path, *extra: str) -> int:
    return main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt"), "--quiet", *extra])


def test_missing_folders(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "elsewhere")
    check_error(capsys, run(tmp_path), "pred", "no such folder")
    check_error(
        capsys, main(["eval", str(tmp_path / "elsewhere"), str(tmp_path / "nogt")]), "nogt", "no such folder"
    )


def test_a_predicted_video_without_ground_truth(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    write_video(tmp_path / "pred" / "zeta", np.zeros((3, 8, 8), np.uint8))
    check_error(capsys, run(tmp_path), "zeta", "without ground truth")
    (tmp_path / "list.txt").write_text("alpha\nomega\n")
    check_error(capsys, run(tmp_path, "--videos", str(tmp_path / "list.txt")), "omega", "no ground truth")


def test_missing_prediction_frame(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    (tmp_path / "pred" / "beta" / "00003.png").unlink()
    check_error(capsys, run(tmp_path), "beta/00003.png", "missing prediction")
    for png in (tmp_path / "pred" / "beta").iterdir():  # an empty folder: a video whose frames are missing
        png.unlink()
    check_error(capsys, run(tmp_path), "beta/00001.png", "missing prediction")


def test_mismatched_sizes(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    write_index_mask(tmp_path / "pred" / "alpha" / "00002.png", np.zeros((31, 41), np.uint8))
    check_error(capsys, run(tmp_path), "alpha/00002.png", "41x31", "differs")


def test_unreadable_png_keeps_the_previous_csv(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    scores = tmp_path / "pred" / "scores.csv"
    scores.write_text("earlier scores\n")
    (tmp_path / "gt" / "gamma" / "00004.png").write_bytes(b"not a png")
    check_error(capsys, run(tmp_path), "gamma/00004.png", "not a readable PNG")
    assert scores.read_text() == "earlier scores\n"


def test_nothing_to_score_and_bad_options(tmp_path, capsys):
    make_videos(tmp_path / "gt", tmp_path / "pred")
    check_error(capsys, run(tmp_path, "--workers", "0"), "--workers")
    check_error(
        capsys, run(tmp_path, "--csv", str(tmp_path / "no" / "such.csv")), "no/such.csv", "does not exist"
    )
    check_error(capsys, run(tmp_path, "--videos", str(tmp_path / "none.txt")), "none.txt", "not found")
    two = tmp_path / "two"
    write_video(two / "gt" / "v", np.ones((2, 8, 8), np.uint8))  # two frames: none is scored
    write_video(two / "pred" / "v", np.ones((2, 8, 8), np.uint8))
    check_error(capsys, run(two), "nothing to score")
