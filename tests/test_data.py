"""Training data: the sample format, determinism, warps, frame sampling, the composite generator and its
split, the DAVIS / YouTube-VOS reader, the static-image sequences and the iteration sampler."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xmem.data import (
    AugmentConfig,
    ClipSampler,
    ColorJitterRange,
    CompositeClipConfig,
    CompositeClipDataset,
    CompositeConfig,
    CompositeVideo,
    ConcatClips,
    ImageMaskFolder,
    ItemKey,
    MissingExtraError,
    SkipCurriculum,
    Split,
    StaticConfig,
    StaticImageDataset,
    VOSConfig,
    VOSDataset,
    background_videos,
    held_out_videos,
    photo_static_dataset,
    photographs,
    set_data_state,
    sources,
    write_davis_folder,
)
from xmem.data.geometry import ThinPlateSpline
from xmem.data.sampling import sample_frame_indices
from xmem.io.errors import InputError
from xmem.io.masks import write_index_mask

SMALL = CompositeConfig(height=64, width=64, length=200)
NO_COLOUR = dict(clip_color=ColorJitterRange(), frame_color=ColorJitterRange(), grayscale_probability=0.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Data is made in DataLoader workers with one thread each; tiny tensor operations on two threads of a
    # busy machine mostly wait for each other.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def clip_dataset(seed: int = 0, **changes) -> CompositeClipDataset:
    config = CompositeClipConfig(video=changes.pop("video", SMALL), num_frames=4, items=20, **changes)
    return CompositeClipDataset(config, seed=seed)


def check_format(sample: dict[str, torch.Tensor], t: int, o: int, size: tuple[int, int]) -> int:
    """Assert the common sample format; return the number of objects."""
    h, w = size
    assert set(sample) == {"frames", "masks", "first_masks", "valid"}
    frames, masks, first, valid = sample["frames"], sample["masks"], sample["first_masks"], sample["valid"]
    assert frames.shape == (t, 3, h, w) and frames.dtype == torch.float32
    assert float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0
    assert masks.shape == (t, h, w) and masks.dtype == torch.int64
    assert first.shape == (o, h, w) and first.dtype == torch.float32
    assert valid.shape == (o,) and valid.dtype == torch.bool
    n = int(valid.sum())
    assert n >= 1 and valid[:n].all() and not valid[n:].any()  # real slots first
    assert set(masks.unique().tolist()) <= set(range(n + 1))  # renumbered 1..n, no void
    for k in range(o):
        expected = (masks[0] == k + 1).float() if k < n else torch.zeros(h, w)
        assert torch.equal(first[k], expected)
    assert (first[:n].flatten(1).sum(1) > 0).all()  # every real object is visible in frame 0
    return n


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --- frame sampling, curriculum, sampler ------------------------------------------------------------


def test_frame_indices_stay_within_max_skip():
    rng = np.random.default_rng(0)
    for skip in (1, 3, 15):
        for _ in range(50):
            idx = sample_frame_indices(rng, 40, 8, skip)
            assert idx == sorted(set(idx)) and len(idx) == 8 and idx[0] >= 0 and idx[-1] < 40
            assert max(np.diff(idx)) <= skip
    assert sample_frame_indices(rng, 8, 8, 5) == list(range(8))
    with pytest.raises(ValueError):
        sample_frame_indices(rng, 5, 8, 5)


def test_skip_curriculum_values():
    c = SkipCurriculum()
    progress = [0.0, 0.05, 0.0999, 0.1, 0.2, 0.2999, 0.3, 0.5, 0.8999, 0.9, 0.95, 1.0]
    assert [c.max_skip(p) for p in progress] == [5, 5, 5, 10, 10, 10, 15, 15, 15, 5, 5, 5]
    assert [c.at_iteration(i, 1000) for i in (0, 99, 100, 299, 300, 899, 900, 999)] == [
        5,
        5,
        10,
        10,
        15,
        15,
        5,
        5,
    ]
    with pytest.raises(ValueError):
        SkipCurriculum(values=(5, 10), boundaries=(0.5, 0.7))


def test_clip_sampler_resumes_and_splits_ranks():
    full = ClipSampler(7, batch_size=4, total_iterations=10, seed=3)
    keys = list(full)
    assert len(keys) == len(full) == 40
    # each epoch is a permutation of the dataset
    stream = [(k.epoch, k.index) for k in keys]
    for epoch in range(40 // 7):
        assert sorted(i for e, i in stream if e == epoch) == list(range(7))
    # max skip follows the curriculum per iteration
    assert [keys[4 * i].max_skip for i in range(10)] == [
        SkipCurriculum().at_iteration(i, 10) for i in range(10)
    ]
    # resuming at iteration 6 gives the same tail
    assert list(ClipSampler(7, batch_size=4, total_iterations=10, seed=3, start_iteration=6)) == keys[24:]
    # two ranks share each global batch without overlap
    ranks = [
        list(ClipSampler(7, batch_size=4, total_iterations=10, seed=3, rank=r, world_size=2)) for r in (0, 1)
    ]
    for i in range(10):
        assert ranks[0][2 * i : 2 * i + 2] + ranks[1][2 * i : 2 * i + 2] == keys[4 * i : 4 * i + 4]
    assert list(ClipSampler(7, batch_size=4, total_iterations=10, seed=4)) != keys


def test_sampler_keys_drive_concatenated_datasets_in_worker_processes():
    mixed = ConcatClips([clip_dataset(seed=1), clip_dataset(seed=2, max_skip=9)])
    assert len(mixed) == 40
    sampler = ClipSampler(len(mixed), batch_size=2, total_iterations=20, seed=0, start_iteration=17)
    loader = torch.utils.data.DataLoader(mixed, batch_size=2, sampler=sampler, num_workers=1)
    batches = list(loader)
    assert len(batches) == 3
    keys = list(sampler)
    assert [k.max_skip for k in keys] == [15, 15, 5, 5, 5, 5]  # iteration 17: 85 %; 18, 19: the last 10 %
    for b, batch in enumerate(batches):
        for j in range(2):
            expected = mixed[keys[2 * b + j]]
            assert torch.equal(batch["frames"][j], expected["frames"])
            assert torch.equal(batch["masks"][j], expected["masks"])
    # the key reaches the right part with its epoch and skip
    key = ItemKey(25, epoch=3, max_skip=2)
    assert same(mixed[key], clip_dataset(seed=2)[ItemKey(5, epoch=3, max_skip=2)])


# --- geometry -------------------------------------------------------------------------------------


def test_thin_plate_spline_interpolates_and_keeps_affine_maps():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(12, 2, generator=g, dtype=torch.float64)
    targets = centres + 0.05 * torch.randn(12, 2, generator=g, dtype=torch.float64)
    spline = ThinPlateSpline(centres, targets)
    assert torch.allclose(spline(centres), targets, atol=1e-9)
    # an affine target is reproduced exactly everywhere (no bending)
    a = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    affine = ThinPlateSpline(centres, centres @ a.T + torch.tensor([0.3, -0.2], dtype=torch.float64))
    points = torch.rand(100, 2, generator=g, dtype=torch.float64) * 3 - 1
    assert torch.allclose(
        affine(points), points @ a.T + torch.tensor([0.3, -0.2], dtype=torch.float64), atol=1e-9
    )
    assert affine.weights.abs().max() < 1e-9


def colour_mismatch(frames: torch.Tensor, masks: torch.Tensor) -> float:
    """Fraction of pixels where the colour code (objects red or green, background blue, grey fill) and
    the mask disagree. ``frames``: T×3×H×W; ``masks``: T×H×W."""
    r, g, b = frames[:, 0], frames[:, 1], frames[:, 2]
    object_colour = (torch.maximum(r, g) - b) > 0.25
    background_colour = (b - torch.maximum(r, g)) > 0.25
    grey = ~object_colour & ~background_colour
    bad = ((masks > 0) & ~object_colour) | ((masks == 0) & object_colour)
    return float((bad & ~grey).float().mean() + ((masks > 0) & grey).float().mean())


def test_static_frames_and_masks_warped_identically(tmp_path):
    # an image whose colour encodes its mask: a red blob on blue
    yy, xx = np.mgrid[:96, :128]
    blob = ((yy - 40) ** 2 / 900 + (xx - 70) ** 2 / 1600) < 1
    image = np.zeros((96, 128, 3), np.uint8)
    image[..., 2] = 210
    image[blob] = (220, 20, 0)
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=98)
    Image.fromarray((blob * 255).astype(np.uint8)).save(tmp_path / "a.png")
    augment = replace(AugmentConfig.static(), tps_probability=1.0, tps_sigma=0.04, **NO_COLOUR)
    dataset = StaticImageDataset(
        ImageMaskFolder(tmp_path), StaticConfig(size=64, num_frames=5, augment=augment)
    )
    for index in range(3):
        sample = dataset[ItemKey(0, epoch=index)]
        check_format(sample, 5, 1, (64, 64))
        frames, masks = sample["frames"], sample["masks"]
        assert not torch.equal(masks[0], masks[1])  # the frames really are warped differently
        assert colour_mismatch(frames, masks) < 0.03
        # the check has power: the mask of another frame does not fit
        assert colour_mismatch(frames, masks.roll(1, dims=0)) > 0.03


def test_static_dataset_of_photographs_and_multiple_objects():
    config = StaticConfig(size=64, num_frames=3, max_objects=3)
    dataset = photo_static_dataset(12, config, seed=5)
    counts = [check_format(dataset[i], 3, 3, (64, 64)) for i in range(8)]
    assert max(counts) > 1  # objects of other images pasted in
    assert same(dataset[2], photo_static_dataset(12, config, seed=5)[2])
    assert not same(dataset[2], photo_static_dataset(12, config, seed=6)[2])


def test_image_mask_folder_reads_pairs_and_thresholds_soft_masks(tmp_path):
    (tmp_path / "class_a").mkdir()
    soft = np.zeros((20, 30), np.uint8)
    soft[5:15, 5:10] = 255
    soft[5:15, 10:12] = 100  # antialiased edge: below half, background
    Image.fromarray(np.full((20, 30, 3), 90, np.uint8)).save(tmp_path / "class_a" / "1.jpg")
    Image.fromarray(soft).save(tmp_path / "class_a" / "1.png")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "no_mask.jpg")
    folder = ImageMaskFolder(tmp_path)
    assert len(folder) == 1
    image, mask = folder.load(0)
    assert image.shape == (20, 30, 3) and mask.sum() == 50 and set(np.unique(mask)) == {0, 1}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no image/mask pairs"):
        ImageMaskFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="no such folder"):
        ImageMaskFolder(tmp_path / "missing")


# --- composite videos -------------------------------------------------------------------------------


def test_composite_video_is_deterministic_and_lazy():
    a, b = CompositeVideo(SMALL, 7), CompositeVideo(SMALL, 7)
    for t in (0, 13, 199):
        assert np.array_equal(a.frame(t), b.frame(t)) and np.array_equal(a.mask(t), b.mask(t))
    assert not np.array_equal(a.frame(0), CompositeVideo(SMALL, 8).frame(0))
    # random access equals sequential iteration, and any length costs the same
    frames = [f for f, _ in zip(a, range(5), strict=False)]
    assert np.array_equal(frames[4][0], b.frame(4))
    long = CompositeVideo(replace(SMALL, length=10_000), 7)
    assert long.frame(9_999).shape == (64, 64, 3) and long.mask(9_999).dtype == np.uint8
    assert np.array_equal(long.frame(13), a.frame(13))  # the length does not change the trajectories


def test_composite_objects_visible_at_start_and_ids_in_range():
    for seed in range(6):
        video = CompositeVideo(replace(SMALL, objects=(1, 4)), seed)
        first = video.mask(0)
        assert 1 <= video.num_objects <= 4
        assert set(np.unique(first)) - {0} == set(range(1, video.num_objects + 1))
        for t in (50, 120):
            assert set(np.unique(video.mask(t))) <= set(range(video.num_objects + 1))


def test_composite_objects_leave_and_reenter_the_frame_and_occlude():
    config = replace(SMALL, length=300, objects=(3, 3), exit_probability=0.4)
    left_and_returned, occluded = False, False
    for seed in range(2):
        video = CompositeVideo(config, seed)
        amodal = torch.stack([video.amodal_masks(t) for t in range(0, 300, 2)])  # T×n×H×W
        area = amodal.flatten(2).sum(2)  # T×n
        for obj in range(video.num_objects):
            present = (area[:, obj] > 0).tolist()
            gone = [i for i, p in enumerate(present) if not p]
            # wholly outside the frame (the amodal mask is empty), after and before being inside
            if gone and present[0] and any(present[gone[0] :]):
                left_and_returned = True
        for t in range(0, 300, 10):
            modal = torch.from_numpy(video.mask(t)).long()
            full = video.amodal_masks(t)
            for obj in range(video.num_objects):
                shown = int((modal == obj + 1).sum())
                if 0 < shown < int(full[obj].sum()) - 20 and not _touches_border(full[obj]):
                    occluded = True  # partly hidden by another object, not by the frame edge
    assert left_and_returned and occluded


def _touches_border(mask: torch.Tensor) -> bool:
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_composite_mask_matches_rendered_pixels():
    # pixels labelled as an object take that object's texture: over a constant background, the masks
    # must mark exactly where the frame differs from the background
    video = CompositeVideo(SMALL, 3)
    frame, mask = video.render(20)
    video._background = torch.full_like(video._background, 0.5)  # a flat grey background, same objects
    video._cache = None
    flat, flat_mask = video.render(20)
    assert torch.equal(mask, flat_mask)
    differs = (flat - 0.5).abs().amax(0) > 1e-6
    assert bool(differs[mask == 0].logical_not().all())  # background pixels are untouched
    assert torch.equal(flat[:, mask > 0], frame[:, mask > 0])  # object pixels do not depend on the background


def test_held_out_split_is_disjoint_from_training():
    train, held = photographs(Split.TRAIN), photographs(Split.HELD_OUT)
    assert train and held and not {p.name for p in train} & {p.name for p in held}
    assert not {p.path for p in train} & {p.path for p in held}
    digests = {p.split: set() for p in train + held}
    for p in train + held:
        digests[p.split].add(hashlib.sha256(sources.load_photograph(p).tobytes()).hexdigest())
    assert not digests[Split.TRAIN] & digests[Split.HELD_OUT]  # no photograph on both sides
    held_names, train_names = {p.name for p in held}, {p.name for p in train}
    for video in held_out_videos(4, SMALL):
        assert video.config.split is Split.HELD_OUT and set(video.sources) <= held_names
    for seed in range(4):
        assert set(CompositeVideo(SMALL, seed).sources) <= train_names
    # the same seed number on the two sides draws different videos
    assert not np.array_equal(CompositeVideo(SMALL, 0).frame(0), held_out_videos(1, SMALL)[0].frame(0))


def test_background_video_listing_respects_split_and_reserved_demo(tmp_path):
    for name in ("vtest.avi", "Megamind.avi", "cup.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    if not sources.has_video_decoder():
        assert background_videos(Split.TRAIN, tmp_path) == ()
        return
    assert [p.name for p in background_videos(Split.TRAIN, tmp_path)] == ["vtest.avi"]
    assert [p.name for p in background_videos(Split.HELD_OUT, tmp_path)] == ["Megamind.avi"]
    assert sources.video_split("cup.mp4") is None
    assert background_videos(Split.TRAIN, tmp_path / "missing") == ()


def test_video_background_random_access_matches_sequential(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 8
        for t in range(30):
            image = np.zeros((48, 64, 3), np.uint8)
            image[:, : 2 * t + 2] = (200, 100, 50)  # a growing bar: every frame differs
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    reader = sources.VideoFrames(path)
    assert len(reader) == 30 and len(reader.index.keyframes) > 1
    sequential = [reader[i].copy() for i in range(30)]
    for i in (25, 3, 17, 16, 29, 0, 9):
        assert np.array_equal(reader[i], sequential[i])
    config = replace(SMALL, background_videos=(path,), video_probability=1.0)
    video = CompositeVideo(config, 1)
    assert video.sources[0] == "clip.mp4"
    assert not np.array_equal(video.frame(0)[video.mask(0) == 0], video.frame(1)[video.mask(1) == 0])
    assert np.array_equal(video.frame(5), CompositeVideo(config, 1).frame(5))


def test_missing_photograph_package_names_the_extra(monkeypatch):
    real = sources.importlib.util.find_spec
    monkeypatch.setattr(sources.importlib.util, "find_spec", lambda n: None if n == "sklearn" else real(n))
    photo = next(p for p in photographs(Split.TRAIN) if p.package == "sklearn")
    sources.load_photograph.cache_clear()
    try:
        with pytest.raises(MissingExtraError, match=r"xmem-vos\[train\]"):
            sources.load_photograph(photo)
    finally:
        sources.load_photograph.cache_clear()


# --- composite training clips -----------------------------------------------------------------------


def test_composite_clips_format_determinism_and_collate():
    dataset = clip_dataset(seed=1)
    samples = [dataset[i] for i in range(6)]
    for s in samples:
        check_format(s, 4, 3, (64, 64))
        first_areas = s["first_masks"][s["valid"]].flatten(1).sum(1)
        assert (first_areas >= round(0.002 * 64 * 64)).all()
    assert same(dataset[3], samples[3])  # independent of the order of lookups
    assert same(clip_dataset(seed=1)[3], samples[3])
    assert not same(clip_dataset(seed=2)[3], samples[3])
    assert not same(dataset[ItemKey(3, epoch=1)], samples[3])
    dataset.set_epoch(1)
    assert same(dataset[3], clip_dataset(seed=1)[ItemKey(3, epoch=1)])
    batch = next(iter(torch.utils.data.DataLoader(clip_dataset(seed=1), batch_size=3)))
    assert batch["frames"].shape == (3, 4, 3, 64, 64) and batch["valid"].shape == (3, 3)
    assert torch.equal(batch["masks"][1], samples[1]["masks"])


def test_composite_clips_pad_and_limit_objects():
    one = clip_dataset(video=replace(SMALL, objects=(1, 1)), max_objects=3)
    for i in range(3):
        s = one[i]
        assert s["valid"].tolist() == [True, False, False]
        assert s["first_masks"][1:].abs().sum() == 0
    many = clip_dataset(video=replace(SMALL, objects=(5, 5)), max_objects=2)
    counts = [check_format(many[i], 4, 2, (64, 64)) for i in range(4)]
    assert max(counts) == 2


def test_composite_clips_time_reversal():
    forward = clip_dataset(seed=4, reverse_probability=0.0, augment=None)
    backward = clip_dataset(seed=4, reverse_probability=1.0, augment=None)
    for i in range(3):
        f, b = forward[i], backward[i]
        assert torch.equal(b["frames"], f["frames"].flip(0))
        assert not torch.equal(b["frames"], f["frames"])


# --- DAVIS / YouTube-VOS layout ----------------------------------------------------------------------


def make_vos_folder(
    root: Path, *, videos: int = 2, frames: int = 12, stride: int = 1, jpeg_every: int = 1
) -> Path:
    """A DAVIS-layout folder: two objects (red, green) moving over blue; annotations on every
    ``stride``-th frame number, images on every ``jpeg_every``-th. Frame number n is also written into
    the blue level (blue = 60 + 3 n) so tests can read back which frames were sampled."""
    for v in range(videos):
        (root / "JPEGImages" / f"video{v}").mkdir(parents=True)
        (root / "Annotations" / f"video{v}").mkdir(parents=True)
        for n in range(0, frames * stride, jpeg_every):
            mask = np.zeros((48, 64), np.uint8)
            x = 4 + n % 30
            mask[10:30, x : x + 16] = 1
            mask[25:44, 40 - n % 20 : 60 - n % 20] = 2
            image = np.zeros((48, 64, 3), np.uint8)
            image[..., 2] = 60 + 3 * n
            image[mask == 1] = (230, 0, 0)
            image[mask == 2] = (0, 230, 0)
            Image.fromarray(image).save(root / "JPEGImages" / f"video{v}" / f"{n:05d}.jpg", quality=98)
            if n % stride == 0:
                write_index_mask(root / "Annotations" / f"video{v}" / f"{n:05d}.png", mask)
    return root


def test_vos_dataset_format_determinism_and_warp_consistency(tmp_path):
    root = make_vos_folder(tmp_path / "davis")
    augment = replace(AugmentConfig.video(), **NO_COLOUR)
    config = VOSConfig(size=32, num_frames=4, augment=augment, repeats=3)
    dataset = VOSDataset(root, config, seed=0)
    assert len(dataset) == 6
    for i in range(len(dataset)):
        s = dataset[i]
        check_format(s, 4, 3, (32, 32))
        assert colour_mismatch(s["frames"], s["masks"]) < 0.05
    assert same(VOSDataset(root, config, seed=0)[4], dataset[4])
    assert not same(VOSDataset(root, config, seed=1)[4], dataset[4])


def sampled_frame_numbers(sample: dict[str, torch.Tensor]) -> list[int]:
    numbers = []
    for frame in sample["frames"]:
        r, g, b = frame
        background = b > torch.maximum(r, g) + 0.2
        numbers.append(round((float(b[background].median()) * 255 - 60) / 3))
    return numbers


def test_vos_max_skip_and_time_reversal(tmp_path):
    root = make_vos_folder(tmp_path / "davis", videos=1, frames=30)
    still = replace(AugmentConfig.video(), rotation=0.0, shear=0.0, **NO_COLOUR)
    config = VOSConfig(size=32, num_frames=5, max_skip=3, augment=still, reverse_probability=0.5)
    dataset = VOSDataset(root, config, seed=0)
    directions = set()
    for epoch in range(12):
        numbers = sampled_frame_numbers(dataset[ItemKey(0, epoch=epoch)])
        assert numbers == sorted(numbers) or numbers == sorted(numbers, reverse=True)
        assert len(set(numbers)) == 5 and max(np.abs(np.diff(numbers))) <= 3
        directions.add(numbers[0] < numbers[-1])
    assert directions == {True, False}
    set_data_state(torch.utils.data.ConcatDataset([dataset]), max_skip=1)
    numbers = sampled_frame_numbers(dataset[0])
    assert max(np.abs(np.diff(numbers))) == 1


def test_youtube_layout_samples_annotated_frames_with_scaled_skip(tmp_path):
    # images on every frame, annotations on every 5th (as YouTube-VOS's all-frames release)
    root = make_vos_folder(tmp_path / "yt", videos=1, frames=12, stride=5, jpeg_every=1)
    still = replace(AugmentConfig.video(), rotation=0.0, shear=0.0, **NO_COLOUR)
    dataset = VOSDataset(root, VOSConfig(size=32, num_frames=4, max_skip=10, augment=still))
    assert dataset.videos[0].stride == 5 and len(dataset.videos[0].images) == 12
    for epoch in range(6):
        numbers = sampled_frame_numbers(dataset[ItemKey(0, epoch=epoch)])
        assert all(n % 5 == 0 for n in numbers)
        assert max(np.abs(np.diff(numbers))) <= 10


def test_vos_bad_input_is_named(tmp_path):
    with pytest.raises(InputError, match="JPEGImages"):
        VOSDataset(tmp_path)
    root = make_vos_folder(tmp_path / "d", videos=1, frames=4)
    with pytest.raises(InputError, match="no annotated video with at least 8 frames"):
        VOSDataset(root, VOSConfig(num_frames=8))
    write_index_mask(root / "Annotations" / "video0" / "00002.png", np.zeros((10, 10), np.uint8))
    dataset = VOSDataset(root, VOSConfig(size=32, num_frames=4))
    with pytest.raises(InputError, match=r"00002\.png"):
        dataset[0]


def test_composite_video_round_trips_through_the_davis_layout(tmp_path):
    video = CompositeVideo(replace(SMALL, length=10), 2)
    write_davis_folder(video, tmp_path, "synthetic")
    dataset = VOSDataset(tmp_path, VOSConfig(size=32, num_frames=4, max_objects=video.num_objects))
    sample = dataset[0]
    check_format(sample, 4, video.num_objects, (32, 32))
    assert Image.open(tmp_path / "Annotations" / "synthetic" / "00009.png").mode == "P"
    assert np.array_equal(
        np.array(Image.open(tmp_path / "Annotations" / "synthetic" / "00003.png")), video.mask(3)
    )
