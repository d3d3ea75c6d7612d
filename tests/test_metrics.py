"""J and F by hand on small cases, against a slow reference and against vos-benchmark; the protocol's
frames, objects and void; the statistics."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from evaldata import ground_truth, predict, write_video
from xmem.eval.dataset import evaluate_dataset
from xmem.metrics import (
    Protocol,
    boundary_f_measure,
    boundary_map,
    boundary_tolerance,
    region_and_boundary,
    region_similarity,
    score_video,
    statistics,
)


def square(h: int, w: int, top: int, left: int, size: int = 10) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[top : top + size, left : left + size] = True
    return m


# --- boundaries and tolerance -------------------------------------------------------------------------


def test_boundary_of_a_square_is_the_ring_half_a_pixel_towards_the_origin():
    b = boundary_map(square(12, 12, 3, 3, size=4))  # rows and columns 3..6
    ring = np.zeros((12, 12), dtype=bool)
    ring[2:7, 2:7] = True
    ring[3:6, 3:6] = False  # the 5×5 ring from (2, 2) to (6, 6)
    assert b.sum() == 16
    assert (b == ring).all()


def test_boundary_at_the_image_border():
    assert not boundary_map(np.ones((5, 7), dtype=bool)).any()  # the border itself is no boundary
    corner = np.zeros((5, 7), dtype=bool)
    corner[-1, -1] = True  # seen by its upper, left and upper-left neighbours, never by itself
    assert sorted(zip(*np.nonzero(boundary_map(corner)), strict=True)) == [(3, 5), (3, 6), (4, 5)]
    stack = np.stack([corner, ~corner])
    assert (boundary_map(stack) == np.stack([boundary_map(corner), boundary_map(~corner)])).all()


@pytest.mark.parametrize(
    ("h", "w", "bound_th", "radius"),
    [(480, 854, 0.008, 8), (60, 80, 0.008, 1), (150, 150, 0.008, 2), (1080, 1920, 0.008, 18), (60, 80, 3, 3)],
)
def test_tolerance_is_the_ceiling_of_the_diagonal_share(h, w, bound_th, radius):
    assert boundary_tolerance(h, w, bound_th) == radius


# --- J and F by hand ----------------------------------------------------------------------------------


def test_square_shifted_by_two_pixels():
    # 60×80: diagonal 100, tolerance 1 px. 10×10 squares 2 px apart: 80 px overlap of 120.
    gt, pred = square(60, 80, 20, 20), square(60, 80, 20, 22)
    j, f = region_and_boundary(gt, pred)
    assert j[0] == pytest.approx(80 / 120)
    # Each 40-pixel ring: the top and bottom rows match but for one end pixel (10 + 10); of the side
    # columns, 2 px from the other ring's, only the two pixels next to the other ring's top and bottom rows
    # match (2): precision = recall = 22 / 40.
    assert f[0] == pytest.approx(22 / 40)
    # 150×150: tolerance 2 px, every boundary pixel matches.
    j, f = region_and_boundary(square(150, 150, 20, 20), square(150, 150, 20, 22))
    assert (j[0], f[0]) == (pytest.approx(80 / 120), 1.0)
    # the same shift downwards
    assert region_and_boundary(gt, square(60, 80, 22, 20))[1][0] == pytest.approx(22 / 40)


def test_the_tolerance_is_a_disk_not_a_square():
    # Shifted by (1, 1) with a 1-px disk: only the gt ring's top-left corner and the prediction's
    # bottom-right corner are 2 px (diagonal) from the other ring: 39 / 40 each way.
    j, f = region_and_boundary(square(60, 80, 20, 20), square(60, 80, 21, 21))
    assert j[0] == pytest.approx(81 / 119)
    assert f[0] == pytest.approx(39 / 40)


def test_empty_masks():
    empty, obj = np.zeros((30, 40), bool), square(30, 40, 5, 5)
    assert region_and_boundary(empty, empty) == (pytest.approx([1.0]), pytest.approx([1.0]))
    assert region_and_boundary(obj, empty) == (pytest.approx([0.0]), pytest.approx([0.0]))
    assert region_and_boundary(empty, obj) == (pytest.approx([0.0]), pytest.approx([0.0]))


def test_void_pixels_are_left_out():
    gt = square(60, 80, 20, 20)
    pred = np.zeros_like(gt)
    pred[20:30, 20:40] = True  # gt plus a 10×10 band on its right
    void = np.zeros_like(gt)
    void[:, 30:] = True
    j, f = region_and_boundary(gt, pred, void=void)
    assert (j[0], f[0]) == (1.0, 1.0)
    assert region_similarity(gt, pred)[0] == pytest.approx(0.5)
    assert boundary_f_measure(gt, pred)[0] < 1


# --- against a slow per-frame reference written from the definitions -----------------------------------


def slow_boundary(m: np.ndarray) -> np.ndarray:
    h, w = m.shape
    b = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                neighbours = [(y, x + 1)]
            elif x == w - 1:
                neighbours = [(y + 1, x)]
            else:
                neighbours = [(y, x + 1), (y + 1, x), (y + 1, x + 1)]
            b[y, x] = any(m[n] != m[y, x] for n in neighbours)
    return b


def slow_j_f(gt: np.ndarray, pred: np.ndarray, void: np.ndarray) -> tuple[float, float]:
    g, p = gt & ~void, pred & ~void
    union = (g | p).sum()
    j = 1.0 if union == 0 else (g & p).sum() / union
    h, w = g.shape
    r = math.ceil(0.008 * math.hypot(h, w))
    gb, pb = slow_boundary(g), slow_boundary(p)

    def near(a: np.ndarray, y: int, x: int) -> bool:
        return any(
            a[y + dy, x + dx]
            for dy in range(-r, r + 1)
            for dx in range(-r, r + 1)
            if dy * dy + dx * dx <= r * r and 0 <= y + dy < h and 0 <= x + dx < w
        )

    gt_hits = sum(near(pb, y, x) for y, x in zip(*np.nonzero(gb), strict=True))
    pred_hits = sum(near(gb, y, x) for y, x in zip(*np.nonzero(pb), strict=True))
    n_gt, n_pred = gb.sum(), pb.sum()
    if n_gt == 0 and n_pred == 0:
        return j, 1.0
    if n_gt == 0 or n_pred == 0:
        return j, 0.0
    precision, recall = pred_hits / n_pred, gt_hits / n_gt
    return j, 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_matches_a_slow_reference_on_odd_sizes_with_void():
    rng = np.random.default_rng(1)
    for h, w in [(1, 9), (7, 1), (13, 17), (31, 7), (40, 33), (63, 94)]:
        gt = ground_truth(rng, 4, h, w, {1: 0, 2: 0})
        pred = predict(rng, gt, noise=0.1)
        void = np.zeros(gt.shape, dtype=bool)
        void[1:3, : h // 3, : w // 2] = True  # frames 1 and 2
        for k in (1, 2):
            j, f = region_and_boundary(gt == k, pred == k, void=void)  # four frames at once
            for t in range(4):
                ref = slow_j_f(gt[t] == k, pred[t] == k, void[t])
                assert (j[t], f[t]) == pytest.approx(ref, abs=1e-12), (h, w, k, t)


# --- against vos-benchmark, frame by frame ----------------------------------------------------------------


def test_frames_agree_with_vos_benchmark():
    evaluator = pytest.importorskip("vos_benchmark.evaluator")
    rng = np.random.default_rng(2)
    checked = 0
    for h, w in [(37, 53), (61, 45), (101, 77), (9, 13), (240, 427)]:
        gt = ground_truth(rng, 6, h, w, {1: 0, 2: 1, 3: 3})
        pred = predict(rng, gt, miss=0.2, noise=0.05)
        for t in range(6):
            theirs = evaluator.Evaluator()
            theirs.feed_frame(pred[t], gt[t])
            for k, values in theirs.object_iou.items():
                j, f = region_and_boundary(gt[t] == k, pred[t] == k)
                assert j[0] == pytest.approx(values[0], abs=1e-12)
                assert f[0] == pytest.approx(theirs.boundary_f[k][0], abs=1e-12)
                checked += 1
    assert checked > 50


# --- statistics --------------------------------------------------------------------------------------------


def davis_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """The published recipe, written out: bins from round(linspace(1, n, 5)) - 1 (halves up)."""
    edges = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(int)
    bins = [values[edges[i] : edges[i + 1] + 1] for i in range(4)]
    return float(np.mean(values)), float(np.mean(values > 0.5)), float(np.mean(bins[0]) - np.mean(bins[3]))


def test_statistics_by_hand():
    s = statistics(np.array([1.0, 0.9, 0.8, 0.4, 0.6, 0.2, 0.0, 0.3]))
    # 8 frames: bins [0..2], [2..4], [4..5], [5..7]
    assert s.mean == pytest.approx(4.2 / 8)
    assert s.recall == pytest.approx(4 / 8)
    assert s.decay == pytest.approx(0.9 - 0.5 / 3)
    assert statistics(np.array([0.5, 0.5])).recall == 0  # above 0.5, not at it
    assert statistics(np.array([0.7])).decay == 0


def test_statistics_follow_the_davis_recipe_at_every_length():
    rng = np.random.default_rng(3)
    for n in range(1, 300):
        values = rng.random(n)
        s = statistics(values)
        assert (s.mean, s.recall, s.decay) == pytest.approx(davis_statistics(values), abs=1e-12), n


# --- the protocol ------------------------------------------------------------------------------------------


def video(frames: int, h: int = 24, w: int = 32) -> np.ndarray:
    return np.zeros((frames, h, w), dtype=np.uint8)


def test_first_and_last_frames_are_not_scored():
    gt = video(5)
    gt[:, 4:12, 4:12] = 1
    pred = gt.copy()
    pred[0] = 0
    pred[4] = 0  # wrong on the first and last frames only
    result = score_video(gt, pred, name="v")
    (obj,) = result.objects
    assert obj.object_id == 1 and obj.first_frame == "1"
    assert obj.j_frames.tolist() == [1.0, 1.0, 1.0] and obj.jf == 1.0
    pred[2] = 0  # a scored frame
    (obj,) = score_video(gt, pred).objects
    assert obj.j_frames.tolist() == [1.0, 0.0, 1.0]
    assert obj.j.mean == pytest.approx(2 / 3) and obj.j.recall == pytest.approx(2 / 3)
    # unscored frames need no prediction
    (obj,) = score_video(gt, [None, gt[1], gt[2], gt[3], None]).objects
    assert obj.jf == 1.0
    kept = score_video(gt, pred, Protocol(score_last_frame=True)).objects[0]
    assert kept.j_frames.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_objects_absent_on_a_frame_score_one_when_the_prediction_agrees():
    gt = video(6)
    gt[:, 2:8, 2:8] = 1
    gt[0, 12:20, 12:20] = 2  # object 2: only on the first frame
    pred = gt.copy()
    pred[1:] = np.where(gt[1:] == 2, 0, pred[1:])
    result = score_video(gt, pred)
    assert [o.object_id for o in result.objects] == [1, 2]
    assert result.objects[1].j_frames.tolist() == [1.0] * 4  # absent from both: J = F = 1
    assert result.objects[1].f_frames.tolist() == [1.0] * 4
    pred[3, 12:20, 12:20] = 2  # predicted where it is not
    obj2 = score_video(gt, pred).objects[1]
    assert obj2.j_frames.tolist() == [1.0, 1.0, 0.0, 1.0]
    assert obj2.f_frames.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_late_objects_under_each_protocol(caplog):
    gt = video(8)
    gt[:, 2:8, 2:8] = 1
    gt[3:, 12:20, 12:20] = 3  # object 3 appears on frame 3
    pred = gt.copy()
    with caplog.at_level(logging.WARNING):
        davis = score_video(gt, pred, Protocol.davis(), name="late")
    assert [o.object_id for o in davis.objects] == [1]
    assert "late: object(s) 3 first appear after the first annotated frame" in caplog.text

    youtube = score_video(gt, pred, Protocol.youtube_vos())
    assert [o.object_id for o in youtube.objects] == [1, 3]
    late = youtube.objects[1]
    assert late.first_frame == "4" and late.num_frames == 3  # frames 4, 5, 6

    bench = score_video(gt, pred, Protocol.vos_benchmark())
    assert bench.objects[1].first_frame == "3" and bench.objects[1].num_frames == 4  # frames 3..6
    pred[2, 12:20, 12:20] = 3  # predicted one frame early: vos-benchmark starts there and scores it 0
    early = score_video(gt, pred, Protocol.vos_benchmark()).objects[1]
    assert early.first_frame == "2" and early.j_frames.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert [o.object_id for o in score_video(gt, pred, Protocol.youtube_vos()).objects] == [1, 3]


def test_void_under_the_davis_protocol_and_as_an_id_under_vos_benchmark():
    gt = video(4)
    gt[:, 2:8, 2:8] = 1
    gt[:, 2:8, 8:12] = 255  # void next to the object
    pred = np.where(gt == 255, 1, gt).astype(np.uint8)  # the prediction covers the void too
    (obj,) = score_video(gt, pred).objects
    assert obj.jf == 1.0
    bench = score_video(gt, pred, Protocol.vos_benchmark())
    assert [o.object_id for o in bench.objects] == [1, 255]
    assert bench.objects[0].j.mean == pytest.approx(36 / 60)


def test_chunked_scoring_equals_one_chunk():
    rng = np.random.default_rng(4)
    gt = ground_truth(rng, 12, 37, 53, {1: 0, 2: 0, 3: 5})
    pred = predict(rng, gt)
    from xmem.eval.protocol import VideoScorer

    for protocol in (Protocol.davis(), Protocol.youtube_vos(), Protocol.vos_benchmark()):
        results = []
        for chunk in (1, 3 * 37 * 53, 1 << 30):
            scorer = VideoScorer(12, protocol, chunk_pixels=chunk)
            for g, p in zip(gt, pred, strict=True):
                scorer.add(g, p)
            results.append(scorer.result())
        for other in results[1:]:
            assert [o.object_id for o in other.objects] == [o.object_id for o in results[0].objects]
            for a, b in zip(other.objects, results[0].objects, strict=True):
                assert (a.j_frames == b.j_frames).all() and (a.f_frames == b.f_frames).all()


# --- datasets against vos-benchmark ------------------------------------------------------------------------


def make_dataset(root, rng, *, late: bool, void: bool) -> None:
    """Videos of odd sizes with several objects, empty frames and (optionally) late objects and void."""
    specs = [
        ("bear", 8, 37, 53, {1: 0, 2: 0}, {2: [3, 4], 1: [4]}),  # frame 4: empty
        ("car", 10, 61, 45, {1: 0, 3: 0, **({2: 4} if late else {})}, {}),
        ("dog", 7, 101, 77, {1: 0, 2: 0}, {}),
        ("eel", 5, 9, 13, {1: 0}, {}),
        ("fox", 3, 33, 21, {1: 0, 4: 0}, {}),  # one scored frame
    ]
    for name, frames, h, w, appear, absent in specs:
        gt = ground_truth(rng, frames, h, w, appear, absent)
        pred = predict(rng, gt, miss=0.15)
        if name == "car" and late:
            pred[3][gt[4] == 2] = 2  # the late object predicted one frame early
        if name == "dog":
            pred[2:4, :10, :10] = 7  # an id that is not in the ground truth
            if void:
                gt[1:6, -12:, -20:] = 255
        write_video(root / "gt" / name, gt)
        write_video(root / "pred" / name, pred)


def compare_with_vos_benchmark(tmp_path, protocol: Protocol, *, late: bool, void: bool) -> int:
    benchmark = pytest.importorskip("vos_benchmark.benchmark")
    make_dataset(tmp_path, np.random.default_rng(5), late=late, void=void)
    ours = evaluate_dataset(tmp_path / "pred", tmp_path / "gt", protocol=protocol)
    jf, j, f, per_object = benchmark.benchmark(
        [str(tmp_path / "gt")], [str(tmp_path / "pred")], num_processes=1, verbose=False
    )
    total = ours.summary
    assert 100 * total.jf == pytest.approx(jf[0], abs=1e-6)
    assert 100 * total.j.mean == pytest.approx(j[0], abs=1e-6)
    assert 100 * total.f.mean == pytest.approx(f[0], abs=1e-6)
    compared = 0
    for video in ours.videos:
        iou, boundary = per_object[0][video.name]
        assert sorted(iou) == [o.object_id for o in video.objects], video.name
        for o in video.objects:
            assert 100 * o.j.mean == pytest.approx(iou[o.object_id], abs=1e-6)
            assert 100 * o.f.mean == pytest.approx(boundary[o.object_id], abs=1e-6)
            assert 100 * o.jf == pytest.approx((iou[o.object_id] + boundary[o.object_id]) / 2, abs=1e-6)
            compared += 1
    return compared


def test_dataset_agrees_with_vos_benchmark_under_its_rule(tmp_path):
    # late objects, one predicted early, an id only in the prediction, 255 in the ground truth (an object
    # there: 2 + 3 + 3 + 1 + 2)
    assert compare_with_vos_benchmark(tmp_path, Protocol.vos_benchmark(), late=True, void=True) == 11


def test_dataset_agrees_with_vos_benchmark_under_davis_where_they_coincide(tmp_path):
    # every object visible from the first frames, no late object, no void: the DAVIS numbers are the same
    assert compare_with_vos_benchmark(tmp_path, Protocol.davis(), late=False, void=False) == 9
