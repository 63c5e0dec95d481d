"""PNG metadata, sheets, GIF and MP4 output."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from babygan import render
from babygan.errors import BabyganError


def _frames(n: int, size: int = 32) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_png_keeps_pixels_and_metadata(tmp_path):
    img = _frames(1, 40)[0]
    meta = {"genes": 0.3, "style": "father", "shifts": {"smile": 1.0}}
    path = render.save_png(tmp_path / "child.png", img, meta)
    with Image.open(path) as im:
        assert im.size == (40, 40) and im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), img)
        assert im.text["style"] == "father"
        assert im.text["genes"] == "0.3"
        assert im.text["Software"].startswith("babygan ")
    assert render.read_png_metadata(path) == meta
    assert [p.name for p in tmp_path.iterdir()] == ["child.png"]  # no temp file left


def test_png_rejects_float_images(tmp_path):
    with pytest.raises(BabyganError, match=r"x\.png: expected uint8 \(H, W, 3\)"):
        render.save_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert not list(tmp_path.iterdir())


def test_resize():
    img = _frames(1, 32)[0]
    assert render.resize(img, 64).shape == (64, 64, 3)
    assert render.resize(img, (20, 10)).shape == (10, 20, 3)
    assert render.resize(img, 32) is img


def test_side_by_side_sheet_geometry():
    imgs = [np.full((32, 32, 3), v, np.uint8) for v in (10, 128, 250)]
    sheet = render.side_by_side(imgs, tile=32)
    gap = 4
    assert sheet.shape == (32 + 2 * gap, 3 * 32 + 4 * gap, 3)
    # Middle tile's centre pixel is the middle image.
    assert tuple(sheet[gap + 16, gap + 32 + gap + 16]) == (128, 128, 128)
    labelled = render.side_by_side(imgs, ["father", "child", "mother"], tile=64)
    assert labelled.shape[1] == 3 * 64 + 4 * gap and labelled.shape[0] > 64 + 2 * gap
    # Labels are drawn: the caption band is not all background.
    band = labelled[gap + 64 :, :]
    assert (band < 128).any()


def test_contact_sheet_grid():
    sheet = render.contact_sheet(_frames(19, 16), columns=5, tile=16, gap=2)
    assert sheet.shape == (4 * 16 + 5 * 2, 5 * 16 + 6 * 2, 3)
    with pytest.raises(BabyganError, match="2 labels for 3 images"):
        render.contact_sheet(_frames(3), ["a", "b"])
    with pytest.raises(BabyganError, match="no images"):
        render.contact_sheet([])


def test_gif_frame_count_loop_and_fps(tmp_path):
    frames = _frames(19)
    path = render.save_gif(tmp_path / "age_sweep.gif", frames, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 19
        assert im.info["loop"] == 0  # 0 = loop forever
        assert im.info["duration"] == 100
        assert im.size == (32, 32)
    once = render.save_gif(tmp_path / "once.gif", frames[:3], fps=5, loop=False)
    with Image.open(once) as im:
        assert im.n_frames == 3 and im.info.get("loop", 1) != 0


def test_gif_errors(tmp_path):
    with pytest.raises(BabyganError, match=r"a\.gif: no frames"):
        render.save_gif(tmp_path / "a.gif", [])
    with pytest.raises(BabyganError, match=r"b\.gif: frames differ in size"):
        render.save_gif(tmp_path / "b.gif", [_frames(1, 8)[0], _frames(1, 16)[0]])
    with pytest.raises(BabyganError, match="fps must be > 0"):
        render.save_gif(tmp_path / "c.gif", _frames(2), fps=0)
    assert not list(tmp_path.iterdir())


def test_mp4_without_ffmpeg_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "mp4_available", lambda: False)
    with pytest.raises(
        BabyganError, match=r"age_sweep.mp4: writing MP4 needs imageio-ffmpeg.*babygan\[mp4\]"
    ):
        render.save_mp4(tmp_path / "age_sweep.mp4", _frames(3))
    assert not list(tmp_path.iterdir())


def test_mp4_written_and_read_back(tmp_path):
    # imageio-ffmpeg is in the test extra (it ships its own ffmpeg), so this runs in CI: no skip
    import imageio.v3 as iio

    y, x = np.mgrid[0:64, 0:48]
    # smooth frames, each a different brightness: H.264 keeps them recognisable
    frames = [np.stack([x * 5, y * 4, np.full_like(x, 30 + 40 * i)], -1).astype(np.uint8) for i in range(6)]
    path = render.save_mp4(tmp_path / "age_sweep.mp4", frames, fps=6)
    assert path == tmp_path / "age_sweep.mp4"
    assert [p.name for p in tmp_path.iterdir()] == ["age_sweep.mp4"]  # no temporary file left
    back = iio.imread(path, plugin="FFMPEG")  # (T, H, W, 3)
    assert back.shape == (6, 64, 48, 3)
    meta = iio.immeta(path, plugin="FFMPEG")
    assert meta["fps"] == pytest.approx(6)
    for got, want in zip(back.astype(int), frames, strict=True):
        assert np.abs(got - want).mean() < 8
    blues = [frame[..., 2].mean() for frame in back]
    assert blues == sorted(blues)  # the frames come back in order


def test_gif_frames_look_like_the_input(tmp_path):
    import imageio.v3 as iio

    y, x = np.mgrid[0:64, 0:64]
    frames = [np.stack([x * 4, y * 4, np.full_like(x, 40 * i)], -1).astype(np.uint8) for i in range(4)]
    path = render.save_gif(tmp_path / "g.gif", frames, fps=4)
    back = iio.imread(path, index=None)[..., :3].astype(int)  # (T, H, W, 3)
    assert back.shape == (4, 64, 64, 3)
    for got, want in zip(back, frames, strict=True):
        assert np.abs(got - want).mean() < 6


def test_require_mp4(tmp_path, monkeypatch):
    assert render.mp4_available()  # the test extra installs imageio-ffmpeg
    assert render.require_mp4(tmp_path / "x.mp4") is None  # no error where it is installed
    assert not list(tmp_path.iterdir())  # and it only checks: nothing written
    monkeypatch.setattr(render, "mp4_available", lambda: False)
    with pytest.raises(BabyganError, match=r"^x\.mp4: writing MP4 needs imageio-ffmpeg.*babygan\[mp4\]"):
        render.require_mp4(tmp_path / "x.mp4")
