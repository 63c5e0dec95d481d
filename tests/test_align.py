"""babygan.align and `babygan align`: photos in, FFHQ crops out.

Runs anywhere on scikit-image's bundled astronaut photo; the parity and group-photo
tests use ../shared/faces (real photos and the reference crops) and skip without it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path
from PIL import Image

from babygan import align
from babygan.align import (
    AlignedFace,
    Face,
    align_image,
    align_photo,
    align_photo_all,
    detect_faces,
)
from babygan.cli import main
from babygan.errors import BabyganError, ModelFileError
from babygan.photo import detection_pixels, load_photo

# ----------------------------------------------------------------------- test photos


def astronaut() -> np.ndarray:
    """uint8 (300, 512, 3): Eileen Collins' face alone (the whole photo also has a
    mission patch that dlib takes for a second, smaller face)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:300])


def two_faces() -> np.ndarray:
    """uint8 (300, 872, 3): a smaller copy of the face on the left, the full one on the right."""
    face = astronaut()
    small = np.asarray(Image.fromarray(face).resize((360, 211), Image.Resampling.LANCZOS))
    left = np.zeros((300, 360, 3), np.uint8)
    left[45:256] = small
    return np.ascontiguousarray(np.hstack([left, face]))


def save(array: np.ndarray, path: Path, **kwargs) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def eye_line(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Mid-point of the eyes (x, y) and the eye line's angle in degrees (0 = level)."""
    left, right = landmarks[36:42].mean(axis=0), landmarks[42:48].mean(axis=0)
    dx, dy = right - left
    return (left + right) / 2, float(np.degrees(np.arctan2(dy, dx)))


def assert_looks_aligned(image: np.ndarray, size: int) -> None:
    """What FFHQ crops look like: one upright face, eyes level and centred left-right."""
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    faces = detect_faces(image)
    assert len(faces) == 1
    centre, angle = eye_line(faces[0].landmarks)
    assert abs(angle) < 3
    assert abs(centre[0] / size - 0.5) < 0.03
    assert 0.35 < centre[1] / size < 0.5


@pytest.fixture(scope="module")
def astro_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(astronaut(), tmp_path_factory.mktemp("photos") / "astronaut.png")


@pytest.fixture(scope="module")
def two_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save(two_faces(), tmp_path_factory.mktemp("photos") / "two.png")


@pytest.fixture(scope="module")
def blank_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    noise = np.random.default_rng(0).integers(90, 110, (240, 320, 3), dtype=np.uint8)
    return save(noise, tmp_path_factory.mktemp("photos") / "wall.png")


# ------------------------------------------------------------------------ detection


def test_detects_the_astronaut_face_with_68_landmarks():
    faces = detect_faces(astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert isinstance(face, Face)
    assert face.box == (175, 76, 265, 166)
    assert all(isinstance(v, int) for v in face.box)
    assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float64
    left, top, right, bottom = face.box
    eyes, _ = eye_line(face.landmarks)
    assert left < eyes[0] < right and top < eyes[1] < bottom


def test_faces_are_numbered_left_to_right():
    faces = detect_faces(two_faces())
    assert len(faces) == 2
    assert faces[0].box[0] < faces[1].box[0]
    assert faces[0].area < faces[1].area  # the smaller copy is on the left


def test_small_photo_gets_a_second_look_at_upsample_2():
    import dlib

    tiny = np.asarray(Image.fromarray(astronaut()).resize((120, 70), Image.Resampling.LANCZOS))
    assert len(dlib.get_frontal_face_detector()(tiny, 1)) == 0  # the premise: too small for upsample 1
    faces = detect_faces(tiny, upsample=1)
    assert len(faces) == 1
    assert np.all((faces[0].landmarks >= 0) & (faces[0].landmarks < [120, 70]))


def test_large_photo_is_searched_downscaled_but_landmarks_are_full_resolution(monkeypatch):
    face = astronaut()
    big = np.asarray(Image.fromarray(face).resize((1536, 900), Image.Resampling.LANCZOS))  # 3x
    expected = detect_faces(face)[0].landmarks * 3 + 1  # pixel centres: (x + 0.5) * 3 - 0.5
    monkeypatch.setattr(align, "MAX_DETECT_PIXELS", face.shape[0] * face.shape[1])
    faces = detect_faces(big)
    assert len(faces) == 1
    # Searched at 1/3 scale: the same points, to one pixel of that scale.
    assert np.abs(faces[0].landmarks - expected).max() <= 3
    assert 3 * 175 - 6 < faces[0].box[0] < 3 * 175 + 6
    # The crop itself samples the full-resolution pixels.
    assert_looks_aligned(align_image(big, faces[0].landmarks, 256, 1024), 256)


def test_detect_faces_rejects_non_rgb_arrays():
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(astronaut().astype(np.float32))
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(astronaut()[:, :, 0])


def test_predictor_is_loaded_once_and_bad_files_are_refused(tmp_path):
    assert align.load_predictor() is align.load_predictor()
    assert align.load_predictor(align.default_predictor_path()) is align.load_predictor()
    junk = tmp_path / "junk.dat"
    junk.write_text("not a model")
    with pytest.raises(ModelFileError, match=r"junk\.dat: not a dlib shape predictor file"):
        align.load_predictor(junk)
    with pytest.raises(ModelFileError, match="no such file"):
        align.load_predictor(tmp_path / "absent.dat")


# ------------------------------------------------------------------------ FFHQ crop


@pytest.mark.parametrize("size", [64, 256])
def test_align_image_gives_an_upright_centred_square(size):
    face = astronaut()
    landmarks = detect_faces(face)[0].landmarks
    out = align_image(face, landmarks, output_size=size, transform_size=1024)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    if size >= 256:
        assert_looks_aligned(out, size)


def test_align_image_output_size_above_transform_size_is_still_honoured():
    face = astronaut()
    out = align_image(face, detect_faces(face)[0].landmarks, output_size=300, transform_size=256)
    assert out.shape == (300, 300, 3)


def test_align_image_rejects_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        align_image(astronaut(), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        align_image(astronaut(), np.zeros((68, 2)))


def test_align_photo_returns_the_face_and_where_it_came_from(astro_png):
    result = align_photo(astro_png, output_size=256, transform_size=1024)
    assert isinstance(result, AlignedFace)
    assert result.source == astro_png
    assert (result.index, result.num_faces) == (1, 1)
    assert result.face.box == (175, 76, 265, 166)
    assert_looks_aligned(result.image, 256)


def test_default_is_the_largest_face_with_a_warning(two_png):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("babygan")
    logger.addHandler(handler)
    try:
        result = align_photo(two_png, output_size=64, transform_size=256)
    finally:
        logger.removeHandler(handler)
    assert (result.index, result.num_faces) == (2, 2)
    messages = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert len(messages) == 1
    assert "two.png: 2 faces found" in messages[0] and "face 2" in messages[0] and "--face N" in messages[0]


def test_face_number_picks_left_to_right(two_png):
    first = align_photo(two_png, output_size=64, face=1, transform_size=256)
    second = align_photo(two_png, output_size=64, face=2, transform_size=256)
    assert first.index == 1 and second.index == 2
    assert first.face.box[0] < second.face.box[0]
    with pytest.raises(BabyganError, match=r"two\.png: no face 3, only 2 faces found"):
        align_photo(two_png, output_size=64, face=3)


def test_align_photo_all_returns_every_face_in_order(two_png):
    results = align_photo_all(two_png, output_size=64, transform_size=256)
    assert [r.index for r in results] == [1, 2]
    assert all(r.num_faces == 2 and r.image.shape == (64, 64, 3) for r in results)
    assert results[0].face.box[0] < results[1].face.box[0]


def test_no_face_is_an_error_naming_the_photo(blank_png):
    with pytest.raises(BabyganError, match=r"^.*wall\.png: no face found$"):
        align_photo(blank_png)
    with pytest.raises(BabyganError, match=r"wall\.png: no face found"):
        align_photo_all(blank_png)


# --------------------------------------------------------------------- photo files


# EXIF orientation -> how the camera stored the upright picture (the inverse of the fix).
_STORED = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _with_orientation(upright: np.ndarray, orientation: int, path: Path, **kwargs) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = Image.fromarray(upright).transpose(_STORED[orientation])
    stored.save(path, exif=exif.tobytes(), **kwargs)
    return path


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_exif_orientation_is_applied(tmp_path, orientation):
    face = astronaut()
    rotated = _with_orientation(face, orientation, tmp_path / "rotated.png")
    assert np.array_equal(load_photo(rotated), face)


@pytest.mark.parametrize("orientation", [2, 3, 6, 8])
def test_landmark_pixels_of_a_rotated_jpeg_are_turned_upright_too(tmp_path, orientation):
    # Landmarks are found on dlib's own decoding of a JPEG: the EXIF fix must apply to it too.
    rotated = _with_orientation(astronaut(), orientation, tmp_path / "rotated.jpg", quality=95)
    image = load_photo(rotated)
    pixels = detection_pixels(rotated, image)
    assert pixels is not image and pixels.shape == image.shape == (300, 512, 3)
    assert np.abs(pixels.astype(int) - image).mean() < 2


def test_exif_rotated_jpeg_aligns_like_the_upright_one(tmp_path):
    face = astronaut()
    upright = save(face, tmp_path / "upright.jpg", quality=95)
    rotated = _with_orientation(face, 6, tmp_path / "rotated.jpg", quality=95)
    a = align_photo(upright, output_size=256, transform_size=1024)
    b = align_photo(rotated, output_size=256, transform_size=1024)
    assert np.abs(a.face.landmarks - b.face.landmarks).max() <= 3
    assert np.abs(a.image.astype(int) - b.image).mean() < 3
    assert_looks_aligned(b.image, 256)


def _cmyk_jpeg(face: np.ndarray, path: Path) -> np.ndarray:
    Image.fromarray(face).convert("CMYK").save(path, quality=95)
    return face


def _grey16_png(face: np.ndarray, path: Path) -> np.ndarray:
    grey = np.asarray(Image.fromarray(face).convert("L"))
    Image.fromarray(grey.astype(np.uint16) * 257).save(path)  # mode I;16, 0..65535
    return np.repeat(grey[:, :, None], 3, axis=2)


def _rgb16_tiff(face: np.ndarray, path: Path) -> np.ndarray:
    import tifffile

    tifffile.imwrite(path, face.astype(np.uint16) * 257)
    return face


def _rgba_png(face: np.ndarray, path: Path) -> np.ndarray:
    rgba = np.dstack([face, np.full(face.shape[:2], 255, np.uint8)])
    rgba[:, :40, 3] = 0  # a transparent strip: shown on white
    rgba[:, :40, :3] = 0
    save(rgba, path)
    expected = face.copy()
    expected[:, :40] = 255
    return expected


def _grey_png(face: np.ndarray, path: Path) -> np.ndarray:
    grey = np.asarray(Image.fromarray(face).convert("L"))
    save(grey, path)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _grey_alpha_png(face: np.ndarray, path: Path) -> np.ndarray:
    Image.fromarray(face).convert("LA").save(path)
    return np.repeat(np.asarray(Image.fromarray(face).convert("L"))[:, :, None], 3, axis=2)


def _palette_png(face: np.ndarray, path: Path) -> np.ndarray:
    pal = Image.fromarray(face).quantize(256)
    pal.save(path)
    return np.asarray(pal.convert("RGB"))


@pytest.mark.parametrize(
    ("make", "name", "tolerance"),
    [
        (_rgba_png, "rgba.png", 0),
        (_grey_png, "grey.png", 0),
        (_grey_alpha_png, "grey_alpha.png", 0),
        (_palette_png, "palette.png", 0),
        (_grey16_png, "grey16.png", 0),
        (_rgb16_tiff, "rgb16.tif", 0),
        (_cmyk_jpeg, "cmyk.jpg", 4),
    ],
)
def test_any_mode_becomes_rgb_and_still_aligns(tmp_path, make, name, tolerance):
    path = tmp_path / name
    expected = make(astronaut(), path)
    image = load_photo(path)
    assert image.dtype == np.uint8 and image.shape == (300, 512, 3)
    assert np.abs(image.astype(int) - expected).mean() <= tolerance
    result = align_photo(path, output_size=64, transform_size=256)
    assert result.num_faces == 1


def _truncated_jpeg(path: Path) -> None:
    save(astronaut(), path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: p.write_text("this is not a photo\n"), "not an image"),
        (_truncated_jpeg, "corrupt or truncated image"),
        (lambda p: p.mkdir(), "is a directory"),
    ],
    ids=["missing", "empty", "text", "truncated", "directory"],
)
def test_unreadable_photos_give_their_own_error(tmp_path, setup, message):
    path = tmp_path / "photo.jpg"
    setup(path)
    with pytest.raises(BabyganError) as info:
        load_photo(path)
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text
    with pytest.raises(BabyganError, match=message):
        align_photo(path)


@pytest.mark.parametrize("limit", [200_000, 10_000], ids=["over-limit", "over-twice-the-limit"])
def test_decompression_bomb_limit_is_kept(tmp_path, monkeypatch, limit):
    path = save(astronaut()[:, :400], tmp_path / "huge.png")  # 120,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit // 2)
    with pytest.raises(BabyganError, match=r"huge\.png: image too large"):
        load_photo(path)


# ---------------------------------------------------------- parity with the reference


def _reference() -> dict:
    return json.loads(shared_path("faces", "aligned-reference", "landmarks.json").read_text())


QUICK = ["family_father.jpg", "obama_small.jpg", "alex_rgba.png", "group_2_faces.jpg", "two_people.jpg"]
REST = [
    "family_mother.jpg",
    "family_child.jpg",
    "obama.jpg",
    "obama_partial_face.jpg",
    "tom_cruise.jpg",
    "biden.jpg",
    "group_24_faces.jpg",
    "no_face_dogs.jpg",
]


def _same_landmarks(name: str) -> None:
    expected = _reference()[name]
    path = shared_path("faces", name)
    image = load_photo(path)
    assert [image.shape[1], image.shape[0]] == expected["size"]
    faces = detect_faces(detection_pixels(path, image))
    # The reference lists faces in dlib's order; ours run left to right.
    want = sorted(expected["faces"], key=lambda f: (f["box"][0], f["box"][1]))
    assert [list(f.box) for f in faces] == [f["box"] for f in want]
    for face, ref in zip(faces, want, strict=True):
        assert np.array_equal(face.landmarks, np.array(ref["landmarks"], dtype=np.float64))


@pytest.mark.parametrize("name", QUICK)
def test_same_landmarks_as_reference(name):
    _same_landmarks(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", REST)
def test_same_landmarks_as_reference_more(name):
    _same_landmarks(name)


def _same_crop(stem: str) -> None:
    reference = shared_path("faces", "aligned-reference", f"{stem}_01.png")
    name = next(n for n in _reference() if Path(n).stem == stem)
    expected = np.asarray(Image.open(reference).convert("RGB")).astype(int)
    # The reference's "first face" is dlib's first; every one of these photos has one face.
    result = align_photo(shared_path("faces", name))
    assert result.num_faces == 1
    assert result.image.shape == expected.shape == (1024, 1024, 3)
    assert np.abs(result.image - expected).mean() < 1.0


@pytest.mark.parametrize("stem", ["family_father", "obama_small", "alex_rgba"])
def test_same_crop_as_reference(stem):
    _same_crop(stem)


@pytest.mark.slow
@pytest.mark.parametrize("stem", ["family_mother", "obama", "tom_cruise"])
def test_same_crop_as_reference_more(stem):
    _same_crop(stem)


def test_dogs_have_no_face():
    with pytest.raises(BabyganError, match=r"no_face_dogs\.jpg: no face found"):
        align_photo(shared_path("faces", "no_face_dogs.jpg"), output_size=64)


@pytest.mark.slow
def test_group_photo_of_24_numbered_left_to_right():
    results = align_photo_all(shared_path("faces", "group_24_faces.jpg"), output_size=32, transform_size=128)
    assert [r.index for r in results] == list(range(1, 25))
    lefts = [r.face.box[0] for r in results]
    assert lefts == sorted(lefts)


def test_two_people_face_choice():
    path = shared_path("faces", "two_people.jpg")
    faces = [align_photo(path, output_size=64, face=n, transform_size=256).face for n in (1, 2)]
    assert faces[0].box[0] < faces[1].box[0]
    assert align_photo(path, output_size=64, transform_size=256).index == 2  # the larger face is on the right


# ------------------------------------------------------------------------------ CLI


def _run(*args: str):
    return CliRunner().invoke(main, ["align", *map(str, args)])


def test_cli_writes_one_png_per_photo(tmp_path, astro_png):
    out = tmp_path / "out"
    result = _run(astro_png, "--output-dir", out, "--size", "128")
    assert result.exit_code == 0, result.output
    assert f"{astro_png} -> {out / 'astronaut.png'}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png"]
    with Image.open(out / "astronaut.png") as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (128, 128))


def test_cli_one_bad_photo_among_good_ones(tmp_path, astro_png, blank_png):
    out = tmp_path / "out"
    missing = tmp_path / "missing.jpg"
    result = _run(blank_png, astro_png, missing, "--output-dir", out, "--size", "64")
    assert result.exit_code == 1
    assert f"Error: {blank_png}: no face found" in result.stderr
    assert f"Error: {missing}: no such file" in result.stderr
    assert "Error: 2 of 3 photos failed" in result.stderr
    # The good photo was still written; nothing at all for the failed ones.
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png"]


def test_cli_only_failures_write_nothing(tmp_path, blank_png):
    out = tmp_path / "out"
    result = _run(blank_png, "--output-dir", out, "--landmarks")
    assert result.exit_code == 1
    assert "no face found" in result.stderr
    assert not out.exists() or list(out.iterdir()) == []


def test_cli_all_faces_and_landmarks(tmp_path, two_png):
    out = tmp_path / "out"
    result = _run(two_png, "-o", out, "--size", "64", "--all-faces", "--landmarks")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["two.json", "two_01.png", "two_02.png"]
    record = json.loads((out / "two.json").read_text())
    assert record["num_faces"] == 2 and record["source"] == str(two_png)
    assert [f["index"] for f in record["faces"]] == [1, 2]
    assert [f["file"] for f in record["faces"]] == ["two_01.png", "two_02.png"]
    assert record["faces"][0]["box"][0] < record["faces"][1]["box"][0]
    assert all(np.array(f["landmarks"]).shape == (68, 2) for f in record["faces"])


def test_cli_face_choice_and_default_warning(tmp_path, two_png):
    out = tmp_path / "out"
    result = _run(two_png, "-o", out, "--size", "64", "--face", "1", "--landmarks")
    assert result.exit_code == 0, result.output
    assert "faces found" not in result.stderr  # the user chose: no warning
    record = json.loads((out / "two.json").read_text())
    assert [f["index"] for f in record["faces"]] == [1] and record["faces"][0]["box"][0] < 360

    result = _run(two_png, "-o", out, "--size", "64")
    assert result.exit_code == 0
    assert "2 faces found" in result.stderr and "--face N" in result.stderr

    result = _run(two_png, "-o", out, "--face", "3")
    assert result.exit_code == 1
    assert "no face 3, only 2 faces found" in result.stderr


def test_cli_refuses_face_with_all_faces(tmp_path, two_png):
    result = _run(two_png, "-o", tmp_path, "--face", "1", "--all-faces")
    assert result.exit_code == 2
    assert "--face and --all-faces" in result.stderr


def test_cli_same_stem_twice_does_not_overwrite(tmp_path, astro_png):
    other = tmp_path / "b" / "astronaut.jpg"
    other.parent.mkdir()
    save(astronaut(), other, quality=90)
    out = tmp_path / "out"
    result = _run(astro_png, other, "-o", out, "--size", "64")
    assert result.exit_code == 1
    assert f"{other}: would overwrite {out / 'astronaut.png'}" in result.stderr


def test_cli_bad_predictor_fails_once_before_any_photo(tmp_path, astro_png):
    junk = tmp_path / "junk.dat"
    junk.write_text("nope")
    result = _run(astro_png, astro_png, "-o", tmp_path / "out", "--predictor", junk)
    assert result.exit_code == 1
    assert result.stderr.count("Error:") == 1 and "not a dlib shape predictor file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_is_listed():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "align" in result.stdout


def test_cli_failure_part_way_through_a_photo_leaves_none_of_its_files(tmp_path, two_png):
    """The JSON cannot be written (a folder stands in its place): no PNG of that photo remains."""
    out = tmp_path / "out"
    (out / "two.json").mkdir(parents=True)
    result = _run(two_png, "-o", out, "--size", "64", "--all-faces", "--landmarks")
    assert result.exit_code == 1
    assert "two.json" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["two.json"]
