"""Frame sources (video files, folders, globs), colour masks, prompts, overlays and dataset roots."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from conftest import decode_video, write_video
from xmem.io.dataset import find_videos, read_video_list
from xmem.io.errors import InputError
from xmem.io.frames import FrameFolder, FrameGlob
from xmem.io.masks import DAVIS_PALETTE, ColourMap, read_index_mask, write_index_mask
from xmem.io.overlay import OverlayWriter, outline, overlay_frame
from xmem.io.prompts import load_prompts
from xmem.io.video import VideoFile, open_frames
from xmem.jobs.distributed import Rank, rank_from_env, shard


def moving_square(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(n):
        img = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        img[8:24, 2 + 3 * t : 18 + 3 * t] = (220, 60, 40)
        frames.append(img)
    return frames


def damage_packet(path, index: int, keep_header: bool = False) -> None:
    """Overwrite the ``index``-th video packet of ``path`` with zeros (or scramble it after its first 4 bytes)."""
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[index]
    data = bytearray(path.read_bytes())
    for i in range(pos + 4, pos + size - 4) if keep_header else range(pos, pos + size):
        data[i] = (data[i] * 7 + 13) % 256 if keep_header else 0
    path.write_bytes(bytes(data))


# -- video files ---------------------------------------------------------------------------------------------
def test_video_file_decodes_every_frame_lazily_with_names_and_rate(tmp_path):
    path = write_video(tmp_path / "clip.mp4", moving_square(12), fps=10)
    video = VideoFile(path)
    expected = decode_video(path)
    assert video.length == 12 and video.fps == 10.0 and video.first_size() == (48, 64)
    assert [video.name(i) for i in (0, 7, 11)] == ["00000", "00007", "00011"]
    assert video.index_of("7") == video.index_of("00007") == 7 and video.index_of("frame7") is None
    got = list(video.frames())
    assert len(got) == 12 and all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))
    # the decoded frames hold what was encoded (lossy codec, noise aside): the square, in its colour
    assert np.abs(got[3][12:20, 13:23].astype(int).mean((0, 1)) - (220, 60, 40)).max() < 12
    assert got[3][30:, :].mean() < 40
    tail = list(video.frames(start=9))
    assert len(tail) == 3 and np.array_equal(tail[0], expected[9])


@pytest.mark.parametrize(
    ("name", "codec"), [("clip.mp4", "libx264"), ("clip.mkv", "libx264"), ("clip.avi", "mpeg4")]
)
def test_a_later_start_seeks_to_the_key_frame_before_it_and_gives_the_same_frames(
    tmp_path, name, codec, monkeypatch
):
    path = write_video(tmp_path / name, moving_square(40), codec=codec, gop=8)
    expected = decode_video(path)
    video = VideoFile(path)
    for start in (1, 7, 8, 9, 23, 31, 39):
        got = list(video.frames(start))
        assert len(got) == 40 - start and all(
            np.array_equal(a, b) for a, b in zip(got, expected[start:], strict=True)
        )
    # it seeks: frame 33 is reached by decoding from the key frame before it (at most a GOP), not from frame 0
    decoded = []
    real_decode = av.container.InputContainer.decode

    def counting(self, *args, **kwargs):
        for frame in real_decode(self, *args, **kwargs):
            decoded.append(frame.pts)
            yield frame

    monkeypatch.setattr(av.container.InputContainer, "decode", counting)
    first = next(video.frames(33))
    assert np.array_equal(first, expected[33]) and 2 <= len(decoded) <= 8


def test_mkv_without_a_frame_count(tmp_path):
    video = open_frames(write_video(tmp_path / "clip.mkv", moving_square(4)))
    assert isinstance(video, VideoFile) and video.length is None
    assert sum(1 for _ in video.frames()) == 4 and video.name(3) == "00003"


def test_corrupt_frame_mid_video_is_reported_at_its_index_after_the_earlier_frames(tmp_path):
    # MPEG-4 part 2 without B-frames: packet 6 is frame 6
    path = write_video(tmp_path / "clip.mp4", moving_square(10), codec="mpeg4")
    damage_packet(path, 6)
    frames = VideoFile(path).frames()
    for _ in range(6):
        next(frames)  # decoded one at a time: the first six come before the error
    with pytest.raises(InputError, match=r"clip.mp4: frame 6 is corrupt"):
        next(frames)


def test_a_frame_the_decoder_drops_silently_is_reported(tmp_path, caplog):
    path = write_video(tmp_path / "clip.mp4", moving_square(10), codec="mpeg4")
    damage_packet(path, 6, keep_header=True)  # this damage makes FFmpeg skip the frame without an error
    assert len(list(VideoFile(path).frames())) == 9
    assert "declares 10 frames but 9 could be decoded" in caplog.text


@pytest.mark.skipif(not hasattr(av.video.stream.VideoStream, "set_display_rotation"), reason="PyAV too old")
def test_rotated_video_is_turned_upright(tmp_path):
    frame = np.zeros((48, 64, 3), np.uint8)
    frame[:8, :8] = 255  # a marker in the top-left corner
    path = write_video(tmp_path / "phone.mp4", [frame, frame], rotation=90)
    video = VideoFile(path)
    assert video.first_size() == (64, 48)
    upright = next(video.frames())
    # a quarter turn counterclockwise takes the top-left corner to the bottom-left
    assert upright[-8:, :8].mean() > 200 and upright[:8, :8].mean() < 50


def test_open_frames_tells_what_is_wrong(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        open_frames(tmp_path / "missing.mp4")
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(InputError, match=r"notes\.mp4: not a readable video"):
        open_frames(tmp_path / "notes.mp4")
    Image.fromarray(moving_square(1)[0]).save(tmp_path / "one.png")
    with pytest.raises(InputError, match=r"one\.png: a single image"):
        open_frames(tmp_path / "one.png")
    with av.open(str(tmp_path / "tone.wav"), "w") as container:  # a file with sound only
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InputError, match=r"tone\.wav: no video stream"):
        open_frames(tmp_path / "tone.wav")


# -- folders and globs ---------------------------------------------------------------------------------------
def test_glob_in_natural_order_and_duplicate_names(tmp_path):
    for t in (10, 2, 1):
        Image.fromarray(moving_square(1)[0]).save(tmp_path / f"f{t}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_frames(str(tmp_path / "f*"))
    assert isinstance(source, FrameGlob) and source.names == ["f1", "f2", "f10"]
    with pytest.raises(InputError, match="no frames"):
        open_frames(str(tmp_path / "g*.png"))
    Image.fromarray(moving_square(1)[0]).save(tmp_path / "f2.jpg")
    with pytest.raises(InputError, match="two frames named 'f2'"):
        FrameFolder(tmp_path)


# -- masks ---------------------------------------------------------------------------------------------------
def test_rgb_colour_masks_map_colours_to_ids_consistently(tmp_path):
    red, odd, green = (128, 0, 0), (10, 200, 30), (0, 128, 0)  # red and green are DAVIS palette 1 and 2
    a = np.zeros((4, 6, 3), np.uint8)
    a[0, :2], a[1, :2] = odd, red
    Image.fromarray(a).save(tmp_path / "a.png")
    b = np.zeros((4, 6, 3), np.uint8)
    b[2, :2], b[3, :2] = green, odd
    Image.fromarray(b).save(tmp_path / "b.png")
    colours = ColourMap()
    ma, mb = read_index_mask(tmp_path / "a.png", colours), read_index_mask(tmp_path / "b.png", colours)
    assert ma[1, 0] == 1 and ma[0, 0] == 2 and ma[3, 5] == 0  # red keeps its palette id, odd takes the next
    assert mb[2, 0] == 3 and mb[3, 0] == 2  # green's palette id 2 is taken by odd: next free id
    assert colours.describe() == "(128, 0, 0) -> 1, (10, 200, 30) -> 2, (0, 128, 0) -> 3"
    grey = np.zeros((4, 6, 3), np.uint8)
    grey[1:3, 1:3] = 255  # a binary mask saved as RGB: one object
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert set(np.unique(read_index_mask(tmp_path / "grey.png")).tolist()) == {0, 1}


def test_more_than_255_objects_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)  # like a JPEG-compressed colour mask
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    with pytest.raises(InputError, match=r"noisy\.png: more than 255 objects"):
        read_index_mask(tmp_path / "noisy.png")
    Image.fromarray(np.arange(300, dtype=np.uint16).reshape(15, 20)).save(tmp_path / "ids16.png")
    with pytest.raises(InputError, match=r"ids16\.png: more than 255 objects"):
        read_index_mask(tmp_path / "ids16.png")


def test_prompt_masks_are_matched_to_frames(tmp_path):
    video = VideoFile(write_video(tmp_path / "clip.mp4", moving_square(6)))
    masks = tmp_path / "masks"
    masks.mkdir()
    first = np.zeros((48, 64), np.uint8)
    first[8:24, 2:18] = 4
    write_index_mask(masks / "00000.png", first)
    write_index_mask(masks / "3.png", np.where(first > 0, 9, 0).astype(np.uint8))
    prompts = load_prompts(video, masks=masks)
    assert prompts.indices == [0, 3] and prompts.objects == [4, 9]
    assert np.array_equal(prompts.mask(3), np.where(first > 0, 9, 0))
    assert load_prompts(video, masks=masks, first_only=True).indices == [0]
    write_index_mask(masks / "00009.png", first)
    with pytest.raises(InputError, match=r"00009\.png: names frame 9, but the video has 6 frames"):
        load_prompts(video, masks=masks)
    (masks / "00009.png").unlink()
    write_index_mask(masks / "0.png", first)
    with pytest.raises(InputError, match="a second mask for frame 0"):
        load_prompts(video, masks=masks)


# -- overlays ------------------------------------------------------------------------------------------------
def test_overlay_frame_blends_and_outlines():
    frame = np.full((9, 9, 3), 100, np.uint8)
    mask = np.zeros((9, 9), np.uint8)
    mask[2:7, 2:7] = 3
    out = overlay_frame(frame, mask)
    colour = DAVIS_PALETTE[3]
    assert (out[0, 0] == 100).all()  # background untouched
    assert (out[4, 4] == np.rint(100 * 0.5 + colour * 0.5)).all()  # inside: blended
    assert (out[2, 4] == colour).all() and outline(mask)[2, 4] and not outline(mask)[4, 4]  # edge: solid


def test_overlay_writer_makes_a_video_and_keeps_it_when_interrupted(tmp_path):
    frames = moving_square(5, h=47, w=63)  # odd sides are padded to even ones for 4:2:0
    mask = np.zeros((47, 63), np.uint8)
    mask[8:24, 2:18] = 1
    path = tmp_path / "overlay.mp4"
    with pytest.raises(KeyboardInterrupt), OverlayWriter(path, fps=10) as writer:
        for i, frame in enumerate(frames):
            if i == 3:
                raise KeyboardInterrupt
            writer.write(frame, mask)
    decoded = decode_video(path)
    assert len(decoded) == 3 and decoded[0].shape == (48, 64, 3)
    # the object is drawn in its colour (DAVIS red) over the frame
    assert decoded[0][14, 10, 0] > decoded[0][14, 10, 1] + 60
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.mp4"]  # no temporary file left


# -- datasets and sharding -----------------------------------------------------------------------------------
def test_dataset_root_with_a_resolution_folder(tmp_path):
    for name in ("car10", "car2", "bear"):
        (tmp_path / "JPEGImages" / "480p" / name).mkdir(parents=True)
        (tmp_path / "Annotations" / "480p" / name).mkdir(parents=True)
    videos = find_videos(tmp_path)
    assert [v.name for v in videos] == ["bear", "car2", "car10"]
    assert videos[0].frames == tmp_path / "JPEGImages" / "480p" / "bear"
    (tmp_path / "val.txt").write_text("car2\n\nbear\n")
    assert [v.name for v in find_videos(tmp_path, read_video_list(tmp_path / "val.txt"))] == ["car2", "bear"]
    with pytest.raises(InputError, match="no video named zebra"):
        find_videos(tmp_path, ["zebra"])
    (tmp_path / "JPEGImages" / "480p" / "dog").mkdir()
    with pytest.raises(InputError, match="video 'dog' has no annotation folder"):
        find_videos(tmp_path)
    (tmp_path / "other" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(InputError, match="Annotations: missing"):
        find_videos(tmp_path / "other")


def test_shards_cover_every_video_once():
    videos = [f"v{i}" for i in range(7)]
    shards = [shard(videos, r, 3) for r in range(3)]
    assert shards == [["v0", "v3", "v6"], ["v1", "v4"], ["v2", "v5"]]
    assert sorted(v for s in shards for v in s) == sorted(videos)
    assert shard(videos, 0, 1) == videos
    with pytest.raises(ValueError):
        shard(videos, 3, 3)
    assert rank_from_env({}) is None
    assert rank_from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == Rank(3, 4, 1)


def test_frames_in_order_forward_and_backward_by_windows(tmp_path, monkeypatch):
    from xmem.io.frames import FrameCache, frames_in_order

    path = write_video(tmp_path / "clip.mp4", moving_square(30), gop=6)
    expected = decode_video(path)
    video = VideoFile(path)
    for indices in (range(4, 30), range(29, -1, -1), range(17, 3, -1), range(5, 5)):
        got = list(frames_in_order(video, indices, chunk=7))
        assert len(got) == len(indices) and all(
            np.array_equal(g, expected[i]) for g, i in zip(got, indices, strict=True)
        )
    with pytest.raises(ValueError, match="step 1 or -1"):
        list(frames_in_order(video, range(0, 10, 2)))
    # the cache reads a window after a jump and before the frame when walking backward
    starts = []
    real = VideoFile.frames

    def spy(self, start=0):
        starts.append(start)
        return real(self, start)

    monkeypatch.setattr(VideoFile, "frames", spy)
    cache = FrameCache(video, capacity=8)
    assert np.array_equal(cache[20], expected[20]) and starts == [20]  # a jump: a reader at 20
    for i in range(19, 11, -1):  # walking back: windows 16-19, then 12-15
        assert np.array_equal(cache[i], expected[i])
    assert starts == [20, 16, 12]
    for i in range(21, 29):  # walking forward from 20: the reader goes on
        assert np.array_equal(cache[i], expected[i])
    assert starts == [20, 16, 12] and len(cache._frames) == 8
    assert np.array_equal(cache[3], expected[3]) and starts == [20, 16, 12, 3]  # another jump
