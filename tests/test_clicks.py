"""xmem.interactive.clicks: prompt checks, the click simulator, the classical predictors, the protocol."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from xmem.interactive import (
    Click,
    GrabCutPredictor,
    MaskPredictor,
    Prompt,
    RandomWalkerPredictor,
    iou,
    next_click,
    noc,
    run_protocol,
)

H, W = 120, 160


def textured_disc(height: int = H, width: int = W, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A striped reddish disc on a noisy blue-green background: (image, ground-truth mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    cy, cx, r = height * 0.45, width * 0.55, min(height, width) * 0.22
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    bg = np.array([60, 140, 120], np.float32) + rng.normal(0, 14, (height, width, 3))
    bg += 12 * np.sin(xx / 5.0)[..., None]
    fg = np.array([200, 70, 50], np.float32) + rng.normal(0, 14, (height, width, 3))
    fg += 20 * (((xx + yy) // 6) % 2)[..., None]
    image = np.where(disc[..., None], fg, bg).clip(0, 255).astype(np.uint8)
    return image, disc


def centre_of(mask: np.ndarray) -> tuple[float, float]:
    rows, cols = np.nonzero(mask)
    return float(cols.mean()), float(rows.mean())


# --- Prompt.validate ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (Prompt(points=[[10, 200]], labels=[1]), r"point 0 \(x=10, y=200\) lies outside the 160×120 frame"),
        (Prompt(points=[[160, 5]], labels=[1]), r"point 0 \(x=160, y=5\) lies outside"),
        (Prompt(points=[[5, 5], [-1, 5]], labels=[1, 0]), r"point 1 \(x=-1, y=5\) lies outside"),
        (Prompt(points=[[5, 5]], labels=[2]), r"labels must be 1 \(positive\) or 0 \(negative\), got 2"),
        (Prompt(points=[[5, 5], [6, 6]], labels=[1]), r"2 points but 1 labels"),
        (Prompt(box=(10, 10, 10, 50)), r"box .* is empty or inverted"),
        (Prompt(box=(50, 10, 20, 40)), r"box .* is empty or inverted"),
        (Prompt(box=(10, 10, 170, 40)), r"box .* reaches outside the 160×120 frame"),
        (Prompt(box=(-2, 10, 50, 40)), r"reaches outside"),
        (Prompt(points=[[5, 5]], labels=[1], scribbles=np.zeros((60, 80), np.int8)), r"scribbles is 60×80"),
        (Prompt(points=[[5, 5]], labels=[1], previous=np.zeros((H, W + 1), bool)), r"previous is 120×161"),
        (Prompt(), r"the prompt is empty"),
        (Prompt(scribbles=np.zeros((H, W), np.int8)), r"the prompt is empty"),
        (Prompt(previous=np.ones((H, W), bool)), r"the prompt is empty"),
        (Prompt(scribbles=np.full((H, W), 3, np.int8)), r"scribbles must hold only 1"),
    ],
)
def test_validate_rejects(prompt: Prompt, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prompt.validate(H, W)


def test_validate_accepts_and_converts() -> None:
    scribbles = np.zeros((H, W), np.int8)
    scribbles[5, 5] = -1
    for prompt in (
        Prompt(points=[[0, 0], [159.9, 119.9]], labels=[1, 0]),
        Prompt(box=(0, 0, W, H)),
        Prompt(scribbles=scribbles),
    ):
        prompt.validate(H, W)
    p = Prompt(points=[(3, 4)], labels=[1])
    assert p.points.dtype == np.float64 and p.points.shape == (1, 2)
    assert p.positive_points.tolist() == [[3.0, 4.0]] and len(p.negative_points) == 0
    with pytest.raises(ValueError, match="K×2"):
        Prompt(points=[1, 2, 3], labels=[1])


# --- the click simulator --------------------------------------------------------------------------


def test_first_click_is_the_centre_of_the_object() -> None:
    gt = np.zeros((H, W), bool)
    gt[30:51, 70:91] = True  # 21×21, centre (x=80, y=40)
    click = next_click(gt, np.zeros_like(gt))
    assert click == Click(x=80.0, y=40.0, positive=True)


def test_false_positive_blob_gets_a_negative_click_inside_it() -> None:
    gt = np.zeros((H, W), bool)
    gt[30:51, 70:91] = True
    pred = gt.copy()
    pred[80:111, 10:41] = True  # a 31×31 false positive, centre (x=25, y=95)
    pred[30:33, 70:91] = False  # a smaller false negative strip
    click = next_click(gt, pred)
    assert click == Click(x=25.0, y=95.0, positive=False)


def test_largest_error_region_wins_and_frame_edge_is_boundary() -> None:
    gt = np.zeros((H, W), bool)
    gt[:, :40] = True  # a band on the left edge, 40 wide: its centre line is at x = 19 or 20
    gt[10:15, 100:105] = True  # a small second part
    click = next_click(gt, np.zeros_like(gt))
    assert click is not None and click.positive and click.x in (19.0, 20.0)
    assert next_click(gt, gt) is None
    with pytest.raises(ValueError, match="prediction"):
        next_click(gt, np.zeros((H, W + 1), bool))


def test_noc_and_iou() -> None:
    assert noc([0.5, 0.86, 0.95], 0.85) == 2
    assert noc([0.5, 0.86, 0.95], 0.90) == 3
    assert noc([0.5, 0.6], 0.90, max_clicks=20) == 20
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert iou(a, b) == pytest.approx(1 / 3)
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0


# --- the predictors -------------------------------------------------------------------------------

PREDICTORS = [GrabCutPredictor(), RandomWalkerPredictor()]
IDS = ["grabcut", "random_walker"]


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_predictors_follow_the_protocol(predictor: MaskPredictor) -> None:
    assert isinstance(predictor, MaskPredictor)


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_one_positive_click_segments_the_disc(predictor: MaskPredictor) -> None:
    image, gt = textured_disc()
    x, y = centre_of(gt)
    mask = predictor.predict(image, Prompt(points=[[x, y]], labels=[1]))
    assert mask.shape == (H, W) and mask.dtype == bool
    assert iou(mask, gt) > 0.8


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_a_box_segments_the_disc(predictor: MaskPredictor) -> None:
    image, gt = textured_disc(seed=1)
    rows, cols = np.nonzero(gt)
    box = (cols.min() - 6.0, rows.min() - 6.0, cols.max() + 7.0, rows.max() + 7.0)
    mask = predictor.predict(image, Prompt(box=box))
    assert mask.shape == (H, W)
    assert iou(mask, gt) > 0.8
    assert not mask[:, : int(box[0])].any()  # nothing outside the box


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_large_frame_is_worked_small_and_returned_full_size(predictor: MaskPredictor) -> None:
    image, gt = textured_disc(300, 700, seed=2)  # longer side above both predictors' max_side
    x, y = centre_of(gt)
    mask = predictor.predict(image, Prompt(points=[[x, y]], labels=[1]))
    assert mask.shape == (300, 700)
    assert iou(mask, gt) > 0.8


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_scribbles_segment_the_disc(predictor: MaskPredictor) -> None:
    image, gt = textured_disc(seed=3)
    x, y = centre_of(gt)
    scribbles = np.zeros((H, W), np.int8)
    scribbles[int(y), int(x) - 10 : int(x) + 10] = 1
    scribbles[5, 5:60] = -1
    mask = predictor.predict(image, Prompt(scribbles=scribbles))
    assert iou(mask, gt) > 0.8


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_negative_click_removes_its_place(predictor: MaskPredictor) -> None:
    image, gt = textured_disc(seed=4)
    x, y = centre_of(gt)
    previous = gt.copy()
    previous[:20, :20] = True  # a wrong corner in the previous mask
    prompt = Prompt(points=[[x, y], [8, 8]], labels=[1, 0], previous=previous)
    mask = predictor.predict(image, prompt)
    assert not mask[8, 8]
    assert iou(mask, gt) > 0.8
    # a negative click alone trims the previous mask
    mask = predictor.predict(image, Prompt(points=[[8, 8]], labels=[0], previous=previous))
    assert not mask[8, 8]
    assert iou(mask, gt) > 0.8


def test_predict_rejects_bad_input() -> None:
    image, _ = textured_disc()
    with pytest.raises(ValueError, match="lies outside"):
        GrabCutPredictor().predict(image, Prompt(points=[[500, 5]], labels=[1]))
    with pytest.raises(ValueError, match="uint8 RGB"):
        GrabCutPredictor().predict(image.astype(np.float32), Prompt(points=[[5, 5]], labels=[1]))


def test_only_negative_clicks_give_an_empty_mask() -> None:
    image, _ = textured_disc()
    for predictor in PREDICTORS:
        assert not predictor.predict(image, Prompt(points=[[5, 5]], labels=[0])).any()


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    image, _ = textured_disc()
    prompt = Prompt(points=[[80, 50]], labels=[1])
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(ImportError, match=r"xmem-vos\[interactive\]"):
        GrabCutPredictor().predict(image, prompt)
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.raises(ImportError, match=r"xmem-vos\[interactive\]"):
        RandomWalkerPredictor().predict(image, prompt)


# --- the protocol ---------------------------------------------------------------------------------


@pytest.mark.parametrize("predictor", PREDICTORS, ids=IDS)
def test_protocol(predictor: MaskPredictor) -> None:
    image, gt = textured_disc(seed=5)
    result = run_protocol(predictor, image, gt, max_clicks=8, keep_masks=(1,))
    assert len(result.ious) == 8
    assert all(0.0 <= v <= 1.0 for v in result.ious)
    assert 1 <= result.noc85 <= result.noc90 <= 8
    for threshold, n in result.noc.items():
        if n < 8:
            assert result.ious[n - 1] >= threshold
            assert all(v < threshold for v in result.ious[: n - 1])
    assert result.clicks[0].positive
    assert result.ious[0] == pytest.approx(iou(result.masks[1], gt))
    assert len(result.seconds) == len(result.clicks)


class _Oracle:
    """A predictor that answers with the ground truth after three clicks."""

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt

    def predict(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        if len(prompt.points) < 3:
            out = np.zeros_like(self.gt)
            out[: len(prompt.points) * 10] = self.gt[: len(prompt.points) * 10]
            return out
        return self.gt.copy()


def test_protocol_passes_clicks_and_previous_and_stops_when_exact() -> None:
    image, gt = textured_disc(seed=6)
    result = run_protocol(_Oracle(gt), image, gt, max_clicks=20)
    assert len(result.clicks) == 3 and len(result.ious) == 20
    assert result.ious[2:] == (1.0,) * 18
    assert result.noc85 == result.noc90 == 3
    assert all(c.positive for c in result.clicks)
    with pytest.raises(ValueError, match="empty"):
        run_protocol(_Oracle(gt), image, np.zeros_like(gt))
