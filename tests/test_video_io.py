"""Video/image-folder input and frame writing: order, ranges, formats, sizes and clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from promptlab.errors import PromptlabError
from promptlab.io.video import count_frames, parse_frames, prepare, probe, read_frames
from promptlab.io.writer import write_frames


@pytest.mark.parametrize("spec, want", [(None, None), ("", None), ("0:41", (0, 41)), (":10", (0, 10)),
                                        ("5:", (5, None)), (" 3 : 9 ", (3, 9)), (":", (0, None))])
def test_parse_frames(spec, want):
    assert parse_frames(spec) == want


@pytest.mark.parametrize("spec", ["abc", "5", "1:2:3", "-1:4", "9:3", "4:4", "a:b", "1.5:3"])
def test_parse_frames_rejects_junk(spec):
    with pytest.raises(PromptlabError, match="frame range"):
        parse_frames(spec)


def test_sky_folder(sky_frames):
    info = probe(sky_frames)
    assert (info.kind, info.width, info.height, info.fps, info.frame_count) == ("images", 256, 256, 30.0, 141)
    assert count_frames(sky_frames) == 141
    assert count_frames(sky_frames, (130, 200)) == 11
    frames = list(read_frames(sky_frames, frames=(3, 6), size=128))
    assert len(frames) == 3
    assert all(f.shape == (128, 128, 3) and f.dtype == np.uint8 for f in frames)
    raw = cv2.cvtColor(cv2.imread(str(sky_frames / "00004.png")), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(frames[1], cv2.resize(raw, (128, 128), interpolation=cv2.INTER_AREA))
    assert probe(sky_frames, fps=24).fps == 24


def test_read_is_a_stream(sky_frames):
    it = read_frames(sky_frames, size=64)
    assert next(it).shape == (64, 64, 3)  # first frame without decoding the rest
    assert not isinstance(it, list | tuple)


def test_folder_sorted_by_number(tmp_path):
    for n in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame_{n}.png"), np.full((16, 16, 3), n * 10, np.uint8))
    levels = [int(f[0, 0, 0]) for f in read_frames(tmp_path, size=16)]
    assert levels == [10, 20, 100]


def test_single_image_and_gray_alpha_16bit(tmp_path):
    gray = np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 60
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    bgra = np.zeros((32, 32, 4), np.uint8)
    bgra[..., 2] = 200  # red in BGR order
    bgra[..., 3] = 7
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    (g,) = list(read_frames(tmp_path / "g.png"))
    (a,) = list(read_frames(tmp_path / "a.png", size=16))
    assert g.shape == (32, 32, 3) and g.dtype == np.uint8
    assert g[-1, -1, 0] == round(int(gray[-1, -1]) / 257)
    assert a.shape == (16, 16, 3) and tuple(a[0, 0]) == (200, 0, 0)
    assert count_frames(tmp_path / "a.png") == 1


def test_prepare_modes():
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = (255, 0, 0)
    img[:, 50:150] = (0, 255, 0)
    img[:, 150:] = (0, 0, 255)
    c = prepare(img, 64, "center")
    assert c.shape == (64, 64, 3) and (c[:, :, 1] == 255).all()
    s = prepare(img, 64, "squash")
    assert tuple(s[32, 2]) == (255, 0, 0) and tuple(s[32, 61]) == (0, 0, 255)
    p = prepare(img, 64, "pad")
    assert (p[:15] == 0).all() and (p[-15:] == 0).all() and tuple(p[32, 32]) == (0, 255, 0)
    with pytest.raises(PromptlabError, match="crop mode"):
        prepare(img, 64, "zoom")


def test_synthetic_video_ranges(tmp_path, make_clip, ramp):
    clip = make_clip(tmp_path / "ramp.mkv", ramp(12))
    info = probe(clip)
    assert (info.kind, info.width, info.height) == ("video", 64, 48)
    assert info.fps == pytest.approx(30)
    assert count_frames(clip) == 12
    assert count_frames(clip, (3, 7)) == 4
    got = [int(f[40, 40, 0]) for f in read_frames(clip, frames=(3, 7))]
    assert np.abs(np.array(got) - [50, 60, 70, 80]).max() <= 2  # RGB->YUV->RGB rounding only
    assert [f.shape for f in read_frames(clip, frames=(10, None), size=48)] == [(48, 48, 3)] * 2


@pytest.mark.parametrize("pix_fmt, in_format", [("gray", "gray"), ("yuv420p10le", "rgb24"), ("bgra", "rgba")])
def test_pixel_formats_become_rgb8(tmp_path, make_clip, pix_fmt, in_format):
    frames = [np.full((32, 32), 120, np.uint8)] if in_format == "gray" else \
        [np.dstack([np.full((32, 32, 3), 120, np.uint8), np.full((32, 32, 1), 9, np.uint8)])[..., :4 if in_format == "rgba" else 3]]
    clip = make_clip(tmp_path / f"{pix_fmt}.mkv", frames, pix_fmt=pix_fmt, in_format=in_format)
    (f,) = list(read_frames(clip))
    assert f.shape == (32, 32, 3) and f.dtype == np.uint8
    assert abs(int(f[16, 16, 0]) - 120) <= 2


def test_rotation_metadata_is_applied(tmp_path, make_clip, ramp):
    clip = make_clip(tmp_path / "rot.mp4", ramp(2), codec="libx264", pix_fmt="yuv444p", rotation=90)
    info = probe(clip)
    assert (info.width, info.height) == (48, 64)
    f = next(read_frames(clip))
    assert f.shape == (64, 48, 3)
    # stored top-left marker; a 90-degree counter-clockwise turn moves it to the bottom-left
    assert f[-3, 3].mean() > 200 and f[3, 3].mean() < 100


def test_real_camera_clip(camera_mp4):
    info = probe(camera_mp4)
    assert (info.width, info.height) == (176, 144)
    assert info.fps == pytest.approx(30000 / 1001)
    assert count_frames(camera_mp4) == 120
    frames = list(read_frames(camera_mp4, frames=(100, None), size=128))
    assert len(frames) == 20 and frames[0].shape == (128, 128, 3)
    with pytest.raises(PromptlabError, match="frames are 176x144 but --size 152 needs at least 152 px"):
        read_frames(camera_mp4, size=152)


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.mp4", "does not exist"),
    (lambda d: (d / "x.mp4").write_text("not a video") and d / "x.mp4", "not a video"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "zero frames"),
])
def test_source_errors(tmp_path, make, match):
    with pytest.raises(PromptlabError, match=match):
        list(read_frames(make(tmp_path)))


def test_argument_errors(sky_frames, tmp_path):
    with pytest.raises(PromptlabError, match="multiple of 8"):
        read_frames(sky_frames, size=100)
    with pytest.raises(PromptlabError, match="empty"):
        read_frames(sky_frames, frames=(141, None))
    small = tmp_path / "small"
    small.mkdir()
    cv2.imwrite(str(small / "0.png"), np.zeros((80, 100, 3), np.uint8))
    with pytest.raises(PromptlabError, match="frames are 100x80 but --size 128 needs at least 128 px"):
        read_frames(small, size=128)


def test_empty_video_range(tmp_path, make_clip, ramp):
    clip = make_clip(tmp_path / "r.mkv", ramp(4))
    with pytest.raises(PromptlabError, match="empty"):
        list(read_frames(clip, frames=(10, 20)))
    assert count_frames(clip, (10, 20)) == 0


def test_png_folder_roundtrip_is_exact(sky_frames, tmp_path):
    src = list(read_frames(sky_frames, frames=(0, 4), size=64))
    assert write_frames(tmp_path / "out", iter(src), fps=30) == 4
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i:05d}.png" for i in range(4)]
    for a, b in zip(src, read_frames(tmp_path / "out"), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(PromptlabError, match="already exists"):
        write_frames(tmp_path / "out", src, fps=30)
    assert write_frames(tmp_path / "out", src[:2], fps=30, force=True) == 2
    assert count_frames(tmp_path / "out") == 2


@pytest.mark.parametrize("ext", [".mp4", ".mkv", ".webm", ".gif"])
def test_video_outputs_read_back(sky_frames, tmp_path, ext):
    src = list(read_frames(sky_frames, frames=(0, 5), size=64))
    out = tmp_path / f"clip{ext}"
    assert write_frames(out, src, fps=30) == 5
    back = list(read_frames(out))
    assert len(back) == 5 and back[0].shape == (64, 64, 3)
    err = np.mean([np.abs(a.astype(int) - b).mean() for a, b in zip(src, back, strict=True)])
    assert err < (25 if ext == ".gif" else 8)


def test_odd_sizes_are_padded_for_h264(tmp_path):
    frames = [np.full((33, 65, 3), 100, np.uint8)] * 3
    write_frames(tmp_path / "odd.mp4", frames, fps=25)
    info = probe(tmp_path / "odd.mp4")
    assert (info.width, info.height, count_frames(tmp_path / "odd.mp4")) == (66, 34, 3)


def test_failed_writes_leave_nothing(tmp_path):
    with pytest.raises(PromptlabError, match="no frames"):
        write_frames(tmp_path / "a.mp4", [], fps=30)
    bad = [np.zeros((16, 16, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)]
    for name in ("b.mp4", "c"):
        with pytest.raises(PromptlabError, match="a clip has one frame size"):
            write_frames(tmp_path / name, bad, fps=30)
    with pytest.raises(PromptlabError, match="cannot write"):
        write_frames(tmp_path / "d.avi", bad[:1], fps=30)
    assert list(tmp_path.iterdir()) == []
