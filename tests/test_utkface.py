"""babygan.utkface: labels, the fixed split, reading the tars in place, the built-in crop;
and align.py's crop_scale (1.0 must stay FFHQ's crop exactly)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from babygan import utkface
from babygan.align import FFHQ_CROP, Crop
from babygan.errors import BabyganError
from tests.conftest import shared_path


def _tar_with(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _jpeg(size: int = 16, value: int = 100) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _real_members(archive_name: str, n: int, split: str = "all") -> dict[str, bytes]:
    """The first ``n`` labelled members of a shared archive (of ``split``), as bytes."""
    archive = utkface.UTKFaceArchive.open(shared_path("datasets", archive_name))
    wanted = {archive.members[i] for i in archive.select(split)[:n]}  # type: ignore[arg-type]
    out = {}
    with tarfile.open(archive.path) as tar:
        for info in tar:
            if info.name in wanted:
                out[info.name] = tar.extractfile(info).read()  # type: ignore[union-attr]
    return out


# ------------------------------------------------------------------- labels and split


def test_parse_name_reads_age_gender_race():
    lab = utkface.parse_name("utkface64/41_0_3_20170119171541497.jpg.chip.jpg")
    assert (lab.name, lab.age, lab.gender, lab.race) == ("41_0_3_20170119171541497.jpg.chip.jpg", 41, 0, 3)


def test_parse_name_tolerates_a_missing_race():
    assert utkface.parse_name("61_1_20170109150557335.jpg.chip.jpg").race == -1


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("61_3_20170109150557335.jpg.chip.jpg", "gender 3"),
        ("x_0_1_2017.jpg.chip.jpg", "whole numbers"),
        ("20_1.jpg.chip.jpg", "fewer than 3"),
        ("20_1_7_2017.jpg.chip.jpg", "race"),
        ("20_1_1_2017.png", "not a .jpg"),
        ("130_1_1_2017.jpg.chip.jpg", "age 130"),
    ],
)
def test_malformed_names_say_why(name, reason):
    with pytest.raises(ValueError, match=reason):
        utkface.parse_name(name)


def test_holdout_is_fixed_by_the_name_alone():
    # sha256("41_0_3_20170119171541497.jpg.chip.jpg"): the coin must never change.
    name = "41_0_3_20170119171541497.jpg.chip.jpg"
    score = utkface.holdout_score(name)
    assert score == utkface.holdout_score("utkface200/" + name)
    import hashlib

    assert score == int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") / 2.0**64
    names = [f"{i}_0_0_2017{i:05d}.jpg.chip.jpg" for i in range(5000)]
    share = np.mean([utkface.is_holdout(n) for n in names])
    assert 0.08 < share < 0.12


# ------------------------------------------------------------------- archives


def test_archive_skips_and_reports_malformed_names(tmp_path):
    path = _tar_with(
        tmp_path / "faces.tar",
        {
            "d/20_1_0_2017.jpg.chip.jpg": _jpeg(16, 10),
            "d/bad_name.jpg": _jpeg(),
            "d/30_0_2_2017.jpg.chip.jpg": _jpeg(16, 200),
        },
    )
    archive = utkface.UTKFaceArchive.open(path)
    assert [lab.age for lab in archive.labels] == [20, 30]
    assert [name for name, _ in archive.skipped] == ["d/bad_name.jpg"]
    faces = archive.load(size=8)
    assert faces.images.shape == (2, 8, 8, 3) and faces.images.dtype == np.uint8
    assert faces.ages.tolist() == [20, 30] and faces.genders.tolist() == [1, 0]
    assert faces.images[0].mean() < 50 < faces.images[1].mean()


def test_bad_archives_are_one_line_errors(tmp_path):
    with pytest.raises(BabyganError, match="no such file"):
        utkface.UTKFaceArchive.open(tmp_path / "absent.tar")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    with pytest.raises(BabyganError, match=r"junk.tar: not a readable tar"):
        utkface.UTKFaceArchive.open(junk)
    empty = _tar_with(tmp_path / "other.tar", {"readme.txt": b"hello"})
    with pytest.raises(BabyganError, match="no UTKFace-named image"):
        utkface.UTKFaceArchive.open(empty)
    broken = _tar_with(tmp_path / "broken.tar", {"20_1_0_2017.jpg.chip.jpg": b"\xff\xd8 not jpeg"})
    with pytest.raises(BabyganError, match=r"broken.tar: 20_1_0_2017.jpg.chip.jpg is not a readable image"):
        utkface.load_utkface(broken)


def test_real_archives_are_indexed_in_place():
    for archive_name, count in (("utkface64.tar", 23_708), ("utkface200.tar", 9_780)):
        archive = utkface.UTKFaceArchive.open(shared_path("datasets", archive_name))
        assert len(archive) + len(archive.skipped) == count
        assert len(archive.skipped) <= 5
        holdout = archive.select("holdout")
        assert 0.09 < len(holdout) / len(archive) < 0.11
        assert set(holdout).isdisjoint(archive.select("train"))


def test_real_faces_load_at_a_requested_size():
    faces = utkface.load_utkface(shared_path("datasets", "utkface64.tar"), "holdout", size=32, limit=20)
    assert faces.images.shape == (20, 32, 32, 3)
    assert all(utkface.is_holdout(n) for n in faces.names)
    assert faces.images.std() > 20  # real pictures, not blanks


# ------------------------------------------------------------------- crop scale (align.py)


def _landmarks() -> np.ndarray:
    """A plausible upright face: eyes at y=100, mouth at y=160, 68 points."""
    lm = np.zeros((68, 2))
    lm[:, 0] = 128
    lm[:, 1] = 130
    lm[36:42] = [100, 100]
    lm[42:48] = [156, 100]
    lm[48] = [110, 160]
    lm[54] = [146, 160]
    return lm


def test_crop_scale_one_is_ffhq_exactly():
    from babygan.align import align_image, ffhq_quad

    lm = _landmarks()
    quad, side = ffhq_quad(lm)
    quad1, side1 = ffhq_quad(lm, 1.0)
    assert np.array_equal(quad, quad1) and side == side1
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    assert np.array_equal(align_image(image, lm, 32, 64), align_image(image, lm, 32, 64, crop_scale=1.0))


def test_crop_scale_shrinks_the_square_about_its_centre():
    from babygan.align import ffhq_quad

    quad, side = ffhq_quad(_landmarks())
    half, side_half = ffhq_quad(_landmarks(), 0.5)
    assert side_half == pytest.approx(side / 2)
    np.testing.assert_allclose(half.mean(axis=0), quad.mean(axis=0))
    np.testing.assert_allclose(half - half.mean(axis=0), (quad - quad.mean(axis=0)) / 2)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="crop_scale"):
            ffhq_quad(_landmarks(), bad)


@pytest.mark.parametrize("scale", [0.4, 0.6, 0.8, 1.0])
def test_needs_padding_agrees_with_align_image(monkeypatch, scale):
    from babygan import align

    padded = []
    real = align._reflect_pad
    monkeypatch.setattr(align, "_reflect_pad", lambda *a: padded.append(1) or real(*a))
    image = np.zeros((256, 256, 3), np.uint8)
    for dx in (-60, 0, 60):
        lm = _landmarks() + np.array([dx, 0])
        for size in (16, 128):
            padded.clear()
            align.align_image(image, lm, size, 64, crop_scale=scale)
            assert bool(padded) == utkface.needs_padding(lm, 256, 256, scale, size), (dx, scale, size)


def test_crop_fit_measures_the_padding_and_where_the_chin_falls():
    lm = _landmarks()
    lm[8] = [128, 200]  # chin
    lm[57] = [128, 170]  # lower lip
    table = utkface.crop_fit_table(np.stack([lm, np.full((68, 2), np.nan)]), 256, 256, [0.5, 1.0])
    assert table[0.5]["padded"] == 0.0 and table[0.5]["padded_area"] == 0.0
    assert table[1.0]["padded_area"] > 0
    assert table[1.0]["chin_v"] == pytest.approx(table[0.5]["chin_v"] / 2)
    assert 0 < table[0.5]["lip_v"] < table[0.5]["chin_v"]


def test_crop_json_round_trip():
    crop = Crop(scale=utkface.CROP_SCALE)
    assert crop.to_dict() == utkface.CROP == {"recipe": "ffhq", "scale": 0.7}  # what model files hold
    assert Crop.from_dict(crop.to_dict()) == crop
    assert Crop.from_dict(None) == FFHQ_CROP == Crop("ffhq", 1.0)
    with pytest.raises(BabyganError, match=r"^m\.npz: unknown crop recipe 'celeba'"):
        Crop.from_dict({"recipe": "celeba"}, "m.npz")
    with pytest.raises(BabyganError, match=r"^m\.npz: crop scale must be"):
        Crop.from_dict({"recipe": "ffhq", "scale": "big"}, "m.npz")
    with pytest.raises(BabyganError, match="not a"):
        Crop.from_dict([0.7], "m.npz")


def test_crop_inner_takes_the_central_tighter_square():
    image = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    np.testing.assert_array_equal(FFHQ_CROP.inner(image, Crop(scale=0.7)), image[15:85, 15:85])
    assert Crop(scale=0.7).inner(image, FFHQ_CROP) is image  # never wider than the face given


# ------------------------------------------------------------------- the aligned set


def test_align_utkface_aligns_real_faces_and_caches_them(tmp_path, monkeypatch, _isolated_babygan_home):
    path = _tar_with(tmp_path / "few.tar", _real_members("utkface200.tar", 6))
    faces = utkface.align_utkface(path, size=32, scale=0.7)
    assert faces.images.shape == (6, 32, 32, 3) and faces.images.dtype == np.uint8
    assert faces.crop == Crop(scale=0.7)
    cached = sorted(p.name for p in (_isolated_babygan_home / "datasets").iterdir())
    assert any("landmarks" in n for n in cached) and any("aligned32-s0.7" in n for n in cached)

    def no_more_work(*args, **kwargs):
        raise AssertionError("the cached set must be reused")

    monkeypatch.setattr(utkface, "find_landmarks", no_more_work)
    again = utkface.align_utkface(path, size=32, scale=0.7)
    assert np.array_equal(again.images, faces.images) and again.names == faces.names
    # The 200 px faces, aligned at the built-in crop, resemble their own 64 px crops
    # only loosely, but they are faces: centred, not blank.
    assert faces.images.std() > 20
    held = utkface.align_utkface(path, size=32, scale=0.7, split="holdout")
    assert all(utkface.is_holdout(n) for n in held.names)
