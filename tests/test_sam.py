"""xmem.interactive.sam: the plumbing of the SAM / SAM 2 adapters (random weights: not mask quality)."""

from __future__ import annotations

import sys
from functools import partial
from typing import Any

import numpy as np
import pytest

from xmem.interactive.clicks import MaskPredictor, Prompt
from xmem.interactive.sam import (
    Sam2MaskPredictor,
    SamMaskPredictor,
    SamModelType,
    sam2_config_for_checkpoint,
    sam_model_type_for_checkpoint,
    scribble_points,
)

# sam2 (1.1.0) calls torch.jit.script, which recent torch deprecates: not this project's concern
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


def frame(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


class Recorder:
    """Wraps ``obj.name`` (a method or a module's forward) to record each call's keyword arguments and
    result."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, obj: Any, name: str) -> None:
        self.calls: list[dict[str, Any]] = []
        self.results: list[Any] = []
        original = getattr(obj, name)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(kwargs)
            result = original(*args, **kwargs)
            self.results.append(result)
            return result

        monkeypatch.setattr(obj, name, wrapped)


# --- a fake package predictor: the adapters' own logic ---------------------------------------------


class FakePredictor:
    """Returns three known masks with known scores (only the first with single-mask output)."""

    def __init__(self, h: int, w: int, scores: tuple[float, ...] = (0.2, 0.9, 0.5)) -> None:
        self.masks = np.zeros((3, h, w), dtype=bool)
        self.masks[0, : h // 3] = True
        self.masks[1, :, : w // 4] = True
        self.masks[2, h // 2 :, w // 2 :] = True
        self.scores = np.asarray(scores, dtype=np.float32)
        self.calls: list[dict[str, Any]] = []
        self.images = 0

    def set_image(self, image: np.ndarray, **kwargs: Any) -> None:
        self.images += 1

    def predict(self, **kwargs: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.calls.append(kwargs)
        n = 3 if kwargs["multimask_output"] else 1
        low = np.arange(n, dtype=np.float32)[:, None, None] * np.ones((n, 8, 8), np.float32)
        return self.masks[:n], self.scores[:n], low


ADAPTERS = [SamMaskPredictor, Sam2MaskPredictor]


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_multimask_for_one_click_and_the_highest_score_wins(adapter) -> None:
    fake = FakePredictor(60, 80)
    pred = adapter(fake)
    assert isinstance(pred, MaskPredictor)
    image = frame(60, 80)
    mask = pred.predict(image, Prompt([(10, 20)], [1]))
    assert fake.calls[-1]["multimask_output"] is True
    np.testing.assert_array_equal(mask, fake.masks[1])  # score 0.9 of (0.2, 0.9, 0.5)
    assert mask.dtype == bool and mask.shape == (60, 80)
    fake.scores = np.array([0.1, 0.3, 0.7], np.float32)
    np.testing.assert_array_equal(pred.predict(image, Prompt([(10, 20)], [1])), fake.masks[2])
    # two clicks, or a click and a box: one output
    pred.predict(image, Prompt([(10, 20), (50, 40)], [1, 0]))
    assert fake.calls[-1]["multimask_output"] is False
    pred.predict(image, Prompt([(10, 20)], [1], box=(0, 0, 40, 30)))
    assert fake.calls[-1]["multimask_output"] is False
    assert fake.images == 1  # one frame, encoded once


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_last_logits_fed_back_only_for_the_adapters_own_mask(adapter) -> None:
    fake = FakePredictor(60, 80)
    pred = adapter(fake)
    image = frame(60, 80)
    first = pred.predict(image, Prompt([(10, 20)], [1]))
    assert fake.calls[-1]["mask_input"] is None
    pred.predict(image, Prompt([(10, 20), (70, 50)], [1, 0], previous=first))
    fed = fake.calls[-1]["mask_input"]
    assert fed.shape == (1, 8, 8) and np.all(fed == 1.0)  # the low-res output of the chosen mask (index 1)
    # an empty previous mask is not fed
    pred.predict(image, Prompt([(10, 20)], [1], previous=np.zeros((60, 80), bool)))
    assert fake.calls[-1]["mask_input"] is None
    # a new frame forgets the last prediction: then a previous mask would be converted (needs the model)
    pred.predict(frame(60, 80, seed=1), Prompt([(10, 20)], [1]))
    assert fake.images == 2


def test_points_are_pixel_indices_and_scribbles_become_spread_points() -> None:
    fake = FakePredictor(60, 80)
    pred = SamMaskPredictor(fake, scribble_points=3)
    scribbles = np.zeros((60, 80), np.int8)
    scribbles[30, 10:71] = 1  # a horizontal foreground stroke from x=10 to x=70
    scribbles[5:8, 5] = -1  # a short background stroke
    pred.predict(frame(60, 80), Prompt([(12.7, 40.2)], [0], scribbles=scribbles))
    call = fake.calls[-1]
    coords, labels = call["point_coords"], call["point_labels"]
    np.testing.assert_array_equal(coords[0], [12, 40])  # the click: the pixel it lies in
    np.testing.assert_array_equal(labels, [0, 1, 1, 1, 0, 0, 0])
    fg = coords[1:4]
    assert np.all(fg[:, 1] == 30) and sorted(fg[:, 0].tolist()) == [10, 40, 70]  # centre, then the ends
    bg = coords[4:]
    assert np.all(bg[:, 0] == 5) and sorted(bg[:, 1].tolist()) == [5, 6, 7]
    assert call["box"] is None and call["multimask_output"] is False
    # scribbles only, and a box only: no clicks needed
    only = np.zeros((60, 80), np.int8)
    only[10, 10] = 1
    pts, labs = scribble_points(only, 5)
    np.testing.assert_array_equal(pts, [[10, 10]])
    np.testing.assert_array_equal(labs, [1])
    pred.predict(frame(60, 80), Prompt(scribbles=only))
    assert fake.calls[-1]["multimask_output"] is True  # one point
    pred.predict(frame(60, 80), Prompt(box=(4, 5, 40.5, 50)))
    call = fake.calls[-1]
    assert call["point_coords"] is None and call["point_labels"] is None
    np.testing.assert_array_equal(call["box"], [4, 5, 40.5, 50])


def test_invalid_input_is_refused() -> None:
    pred = SamMaskPredictor(FakePredictor(60, 80))
    with pytest.raises(ValueError, match="outside"):
        pred.predict(frame(60, 80), Prompt([(90, 10)], [1]))
    with pytest.raises(ValueError, match="uint8"):
        pred.predict(frame(60, 80).astype(np.float32), Prompt([(9, 10)], [1]))
    with pytest.raises(ValueError, match="scribble_points"):
        SamMaskPredictor(FakePredictor(6, 8), scribble_points=-1)


def test_missing_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("segment_anything", "sam2", "sam2.build_sam", "sam2.sam2_image_predictor"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import name` raise ImportError
    with pytest.raises(ImportError, match=r"segment-anything.*pip install 'xmem-vos\[sam\]'"):
        SamMaskPredictor.from_model(object())
    with pytest.raises(ImportError, match=r"segment-anything.*pip install 'xmem-vos\[sam\]'"):
        SamMaskPredictor.from_checkpoint("sam_vit_b.pth")
    with pytest.raises(ImportError, match=r"sam2.*pip install 'xmem-vos\[sam\]'"):
        Sam2MaskPredictor.from_model(object())
    with pytest.raises(ImportError, match=r"sam2.*pip install 'xmem-vos\[sam\]'"):
        Sam2MaskPredictor.from_checkpoint("sam2.1_hiera_tiny.pt")


def test_model_type_and_config_from_file_names() -> None:
    assert sam_model_type_for_checkpoint("/w/sam_vit_h_4b8939.pth") is SamModelType.VIT_H
    assert sam_model_type_for_checkpoint("sam_vit_b_01ec64.pth") is SamModelType.VIT_B
    assert sam_model_type_for_checkpoint("SAM_ViT_L.pth") is SamModelType.VIT_L
    assert sam_model_type_for_checkpoint("weights.pth") is None
    assert sam2_config_for_checkpoint("ckpt/sam2.1_hiera_tiny.pt") == "configs/sam2.1/sam2.1_hiera_t.yaml"
    assert sam2_config_for_checkpoint("sam2.1_hiera_base_plus.pt") == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    assert sam2_config_for_checkpoint("sam2_hiera_large.pt") == "configs/sam2/sam2_hiera_l.yaml"
    assert sam2_config_for_checkpoint("sam2_hiera_s.pt") == "configs/sam2/sam2_hiera_s.yaml"
    assert sam2_config_for_checkpoint("model.pt") is None


# --- SAM (segment_anything) with random weights ----------------------------------------------------


def tiny_sam():
    """SAM's architecture at tiny widths, a 256-pixel input and random weights (seconds, not minutes)."""
    torch = pytest.importorskip("torch")
    modeling = pytest.importorskip("segment_anything.modeling", reason="segment-anything is not installed")
    torch.manual_seed(0)
    side, patch, dim = 256, 16, 32
    model = modeling.Sam(
        image_encoder=modeling.ImageEncoderViT(
            img_size=side,
            patch_size=patch,
            embed_dim=48,
            depth=2,
            num_heads=2,
            out_chans=dim,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=4,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=modeling.PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(side // patch, side // patch),
            input_image_size=(side, side),
            mask_in_chans=4,
        ),
        mask_decoder=modeling.MaskDecoder(
            transformer_dim=dim,
            transformer=modeling.TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            num_multimask_outputs=3,
            iou_head_depth=2,
            iou_head_hidden_dim=32,
        ),
    )
    return model.eval()


def test_sam_prompt_reaches_the_model_in_its_input_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_sam()
    pred = SamMaskPredictor.from_model(model)
    h, w = 480, 854  # SAM resizes the longer side to 256 here: 854 → 256, 480 → round(143.9) = 144
    sx, sy = 256 / 854, 144 / 480
    prompts = Recorder(monkeypatch, model.prompt_encoder, "forward")
    decoder = Recorder(monkeypatch, model.mask_decoder, "forward")
    image = frame(h, w)
    points = np.array([[100.6, 50.2], [853.0, 479.9], [0.0, 0.0]])
    mask = pred.predict(image, Prompt(points, [1, 0, 1], box=(40, 30, 600, 400)))
    assert mask.dtype == bool and mask.shape == (h, w)
    coords, labels = prompts.calls[-1]["points"]
    expected = np.floor(points) * [sx, sy]
    np.testing.assert_allclose(coords.numpy()[0], expected, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(labels.numpy()[0], [1, 0, 1])
    np.testing.assert_allclose(
        prompts.calls[-1]["boxes"].numpy().reshape(-1), [40 * sx, 30 * sy, 600 * sx, 400 * sy], rtol=1e-6
    )
    assert prompts.calls[-1]["masks"] is None
    assert decoder.calls[-1]["multimask_output"] is False
    # one click: multimask, and the returned mask is the output with the highest predicted IoU
    package_predict = Recorder(monkeypatch, pred.predictor, "predict")
    mask = pred.predict(image, Prompt([(300, 200)], [1]))
    assert decoder.calls[-1]["multimask_output"] is True
    masks, scores, low_res = package_predict.results[-1]
    assert masks.shape == (3, h, w) and low_res.shape == (3, 64, 64)
    np.testing.assert_array_equal(mask, masks[int(np.argmax(scores))])
    # the next click on the same object: the chosen output's low-res logits come back as mask_input
    pred.predict(image, Prompt([(300, 200), (400, 100)], [1, 0], previous=mask))
    fed = prompts.calls[-1]["masks"].numpy()
    np.testing.assert_allclose(fed[0], low_res[int(np.argmax(scores))][None])
    # a mask from elsewhere: resized into the padded 64×64 low-res frame as ±previous_logit
    other = np.zeros((h, w), bool)
    other[:240, :427] = True  # the top-left quarter
    pred.predict(image, Prompt([(300, 200)], [1], previous=other))
    fed = prompts.calls[-1]["masks"].numpy()[0, 0]
    assert fed.shape == (64, 64)  # the frame covers 64 × 36 of it (144 / 4 = 36 rows)
    assert np.all(fed[:16, :30] == pred.previous_logit)  # well inside the quarter
    assert np.all(fed[20:36, 36:] == -pred.previous_logit) and np.all(fed[36:] == -pred.previous_logit)


def test_sam_encodes_each_frame_once(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_sam()
    pred = SamMaskPredictor.from_model(model)
    encoder = Recorder(monkeypatch, model.image_encoder, "forward")
    image = frame(240, 320)
    previous = None
    for clicks in ([(10, 10)], [(10, 10), (200, 100)], [(10, 10), (200, 100), (300, 230)]):
        previous = pred.predict(image, Prompt(clicks, [1] * len(clicks), previous=previous))
        assert previous.shape == (240, 320) and previous.dtype == bool
    pred.predict(image.copy(), Prompt([(5, 5)], [1]))  # the same content in another array
    assert len(encoder.calls) == 1 and pred.encodings == 1
    pred.predict(frame(240, 320, seed=3), Prompt([(5, 5)], [1]))
    assert len(encoder.calls) == 2 and pred.encodings == 2


def test_sam_from_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    torch = pytest.importorskip("torch")
    segment_anything = pytest.importorskip("segment_anything")
    source = tiny_sam()
    path = tmp_path / "sam_vit_b_test.pth"
    torch.save(source.state_dict(), path)
    built: list[str] = []

    def fake_builder(checkpoint=None):
        assert checkpoint is None
        built.append("vit_b")
        torch.manual_seed(1)
        return tiny_sam()

    monkeypatch.setitem(segment_anything.sam_model_registry, "vit_b", fake_builder)
    pred = SamMaskPredictor.from_checkpoint(path, device="cpu")
    assert built == ["vit_b"]  # the type read from the file name
    for key, value in source.state_dict().items():
        torch.testing.assert_close(pred.predictor.model.state_dict()[key], value)
    assert pred.predict(frame(60, 80), Prompt([(3, 4)], [1])).shape == (60, 80)
    with pytest.raises(ValueError, match="model_type"):
        SamMaskPredictor.from_checkpoint(path.rename(tmp_path / "weights.pth"))  # and width 48: unknown
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        SamMaskPredictor.from_checkpoint(tmp_path / "missing_vit_b.pth")


# --- SAM 2 (sam2) with random weights --------------------------------------------------------------


@pytest.fixture(scope="module")
def sam2_model():
    pytest.importorskip("hydra", reason="hydra-core (a dependency of sam2) is not installed")
    pytest.importorskip("sam2", reason="sam2 is not installed")
    torch = pytest.importorskip("torch")
    from sam2.build_sam import build_sam2

    torch.manual_seed(0)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", None, device="cpu")


def test_sam2_plumbing(monkeypatch: pytest.MonkeyPatch, sam2_model) -> None:
    pred = Sam2MaskPredictor.from_model(sam2_model)
    prompts = Recorder(monkeypatch, sam2_model.sam_prompt_encoder, "forward")
    decoder = Recorder(monkeypatch, sam2_model.sam_mask_decoder, "forward")
    set_image = Recorder(monkeypatch, pred.predictor, "set_image")
    package_predict = Recorder(monkeypatch, pred.predictor, "predict")
    h, w = 240, 320  # SAM 2 squashes the frame to 1024×1024
    sx, sy = 1024 / w, 1024 / h
    image = frame(h, w)
    points = np.array([[100.6, 50.2], [319.0, 239.0]])
    mask = pred.predict(image, Prompt(points, [1, 0], box=(40, 30, 200, 150)))
    assert mask.dtype == bool and mask.shape == (h, w)
    coords, labels = prompts.calls[-1]["points"]  # SAM 2 passes the box as two corner points first
    expected = np.vstack([[[40 * sx, 30 * sy], [200 * sx, 150 * sy]], np.floor(points) * [sx, sy]])
    np.testing.assert_allclose(coords.numpy()[0], expected, rtol=1e-5)
    np.testing.assert_array_equal(labels.numpy()[0], [2, 3, 1, 0])
    assert prompts.calls[-1]["masks"] is None
    assert decoder.calls[-1]["multimask_output"] is False
    # one click: multimask, the highest score wins
    mask = pred.predict(image, Prompt([(160, 120)], [1]))
    assert decoder.calls[-1]["multimask_output"] is True
    masks, scores, low_res = package_predict.results[-1]
    assert masks.shape == (3, h, w) and low_res.shape == (3, 256, 256)
    np.testing.assert_array_equal(mask, masks[int(np.argmax(scores))] > 0.5)
    # feedback of the last low-res logits, conversion of another mask
    pred.predict(image, Prompt([(160, 120), (10, 10)], [1, 0], previous=mask))
    np.testing.assert_allclose(prompts.calls[-1]["masks"].numpy()[0], low_res[int(np.argmax(scores))][None])
    other = np.zeros((h, w), bool)
    other[:, : w // 2] = True
    pred.predict(image, Prompt([(10, 10)], [1], previous=other))
    fed = prompts.calls[-1]["masks"].numpy()[0, 0]
    assert fed.shape == (256, 256)
    assert np.all(fed[:, :120] == pred.previous_logit) and np.all(fed[:, 136:] == -pred.previous_logit)
    assert len(set_image.calls) == 1 and pred.encodings == 1  # four predictions, one embedding


def test_sam2_from_checkpoint(tmp_path, sam2_model) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": sam2_model.state_dict()}, path)
    pred = Sam2MaskPredictor.from_checkpoint(path, device="cpu")  # the config read from the file name
    name = "sam_mask_decoder.iou_prediction_head.layers.0.weight"
    torch.testing.assert_close(pred.predictor.model.state_dict()[name], sam2_model.state_dict()[name])
    with pytest.raises(ValueError, match="config"):
        Sam2MaskPredictor.from_checkpoint(path.rename(tmp_path / "model.pt"))
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        Sam2MaskPredictor.from_checkpoint(tmp_path / "sam2.1_hiera_tiny_missing.pt")
