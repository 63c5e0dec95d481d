"""`babygan predict` and `babygan age-sweep` end to end on a tiny generator."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path
from PIL import Image
from pipeline_fixtures import FAST_ENCODER, make_photos, make_tiny_model

from babygan import __version__, render
from babygan.cli import main
from babygan.models import sha256_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, directions = make_tiny_model(folder)
    dad, mum = make_photos(folder)
    return {"model": model, "directions": directions, "dad": dad, "mum": mum, "folder": folder}


def _run(args, expect_ok=True):
    result = CliRunner().invoke(main, [str(a) for a in args])
    if expect_ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _model_args(tiny):
    return ["--model", tiny["model"], "--directions", tiny["directions"], *FAST_ENCODER]


def test_predict_writes_every_file(tiny, tmp_path):
    out = tmp_path / "out"
    res = _run(
        [
            "predict",
            tiny["dad"],
            tiny["mum"],
            "-o",
            out,
            "--genes",
            "0.3",
            "--style",
            "father",
            "--age",
            "5",
            "--smile",
            "1.5",
            "--size",
            "48",
            *_model_args(tiny),
        ]
    )
    for name in ("child.png", "sheet.png", "child.npy", "child.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in out.iterdir()) == ["child.json", "child.npy", "child.png", "sheet.png"]
    with Image.open(out / "child.png") as im:
        assert im.size == (48, 48) and im.mode == "RGB"
    with Image.open(out / "sheet.png") as im:
        assert im.width > 3 * 32 and im.height >= 32  # father | child | mother
    w = np.load(out / "child.npy")
    assert w.shape == (8, 512) and w.dtype == np.float32

    record = json.loads((out / "child.json").read_text())
    assert record["babygan_version"] == __version__
    opts = record["options"]
    assert opts["genes"] == 0.3 and opts["style"] == "father"
    assert opts["age"] == 5 and opts["age_coeff"] == pytest.approx(5.0)  # 6 - 5/5
    assert opts["shifts"] == {"smile": 1.5} and opts["size"] == 48 and opts["layers"] == 8
    assert record["father"]["sha256"] == sha256_file(tiny["dad"])
    assert record["mother"]["sha256"] == sha256_file(tiny["mum"])
    assert record["father"]["path"].endswith("astronaut.png")
    assert record["model"]["resolution"] == 32 and record["model"]["num_layers"] == 8
    assert record["model"]["sha256"]
    assert set(record["directions"]) == {"age", "smile"}
    assert record["directions"]["age"]["sha256"] == sha256_file(tiny["directions"] / "age.npy")
    assert record["encoder"]["perceptual"] == "pixel" and record["encoder"]["iterations"] == 2
    assert record["outputs"]["image"] == str((out / "child.png").resolve())
    assert record["child"]["noise"] == "const"
    # A 32 px random generator makes no detectable face: said, not crashed.
    assert record["resemblance"]["father"] is None
    assert "no face detected in the child" in record["resemblance"]["reason"]
    assert "no face detected in the child" in res.output
    # The PNG carries the same record in its text metadata.
    meta = render.read_png_metadata(out / "child.png")
    assert meta["options"] == opts and meta["father"]["sha256"] == record["father"]["sha256"]


def test_predict_matches_library_math(tiny, tmp_path):
    """child.npy = blend of the parents' encodings + age and gender shifts on the first 8 layers."""
    out = tmp_path / "out"
    _run(
        [
            "predict",
            tiny["dad"],
            tiny["mum"],
            "-o",
            out,
            "--genes",
            "0.25",
            "--age-coeff",
            "2",
            "--gender-shift",
            "-1",
            "--layers",
            "3",
            *_model_args(tiny),
        ]
    )
    record = json.loads((out / "child.json").read_text())
    assert record["options"]["age"] is None and record["options"]["age_coeff"] == 2.0
    from babygan.encoder.settings import EncoderSettings
    from babygan.pipeline import Session

    session = Session(
        tiny["model"],
        directions_dir=tiny["directions"],
        encoder=EncoderSettings(perceptual="pixel", iterations=2),
        progress=False,
    )
    dad, mum = session.parents([(tiny["dad"], None), (tiny["mum"], None)])
    d = tiny["directions"]
    expected = 0.75 * dad.dlatents + 0.25 * mum.dlatents
    expected[:3] += 2.0 * np.load(d / "age.npy")[:3] - 1.0 * np.load(d / "gender.npy")[:3]
    np.testing.assert_allclose(np.load(out / "child.npy"), expected, rtol=1e-5, atol=1e-5)


def test_children_distinct_and_reproducible(tiny, tmp_path):
    args = [tiny["dad"], tiny["mum"], "--children", "3", "--seed", "11", *_model_args(tiny)]
    _run(["predict", *args, "-o", tmp_path / "a"])
    _run(["predict", *args, "-o", tmp_path / "b"])
    _run(
        [
            "predict",
            *args[: -len(_model_args(tiny))],
            "--seed",
            "12",
            *_model_args(tiny),
            "-o",
            tmp_path / "c",
        ]
    )
    names = [f"child_{i:02d}" for i in (1, 2, 3)]
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted([f"{n}.{ext}" for n in names for ext in ("png", "npy", "json")] + ["sheet.png"])
    with Image.open(tmp_path / "a" / "sheet.png") as im:
        assert im.width == 5 * 256 + 6 * 4  # father | three children | mother at 256 px, 4 px gaps
    images = [np.asarray(Image.open(tmp_path / "a" / f"{n}.png")) for n in names]
    seeds = [json.loads((tmp_path / "a" / f"{n}.json").read_text())["child"]["noise_seed"] for n in names]
    assert len(set(seeds)) == 3
    assert not np.array_equal(images[0], images[1]) and not np.array_equal(images[1], images[2])
    for n in names:  # same --seed: the same children, bit for bit
        np.testing.assert_array_equal(
            np.load(tmp_path / "a" / f"{n}.npy"), np.load(tmp_path / "b" / f"{n}.npy")
        )
        np.testing.assert_array_equal(
            np.asarray(Image.open(tmp_path / "a" / f"{n}.png")),
            np.asarray(Image.open(tmp_path / "b" / f"{n}.png")),
        )
    rec = json.loads((tmp_path / "a" / "child_02.json").read_text())
    assert rec["child"]["noise"] == "random" and rec["child"]["blend"] == "crossover"
    assert len(rec["child"]["crossover"]) == 8 and set(rec["child"]["crossover"]) <= {"father", "mother"}
    other = [json.loads((tmp_path / "c" / f"{n}.json").read_text())["child"]["noise_seed"] for n in names]
    assert other != seeds  # another --seed, other siblings


def test_age_sweep_gif(tiny, tmp_path):
    out = tmp_path / "sweep"
    res = _run(
        [
            "age-sweep",
            tiny["dad"],
            tiny["mum"],
            "-o",
            out,
            "--ages",
            "1:50:5",
            "--gif",
            "--fps",
            "5",
            "--aging-steps",  # the direction alone: the refinement is tests/test_aging.py's
            "0",
            *_model_args(tiny),
        ]
    )
    frames = sorted(out.glob("frame_*.png"))
    assert [f.name for f in frames] == [f"frame_{i:02d}.png" for i in range(1, 6)]
    with Image.open(out / "age_sweep.gif") as im:
        assert im.n_frames == 5 and im.info["loop"] == 0 and im.info["duration"] == 200
        assert im.size == (256, 256)  # a 32 px model's frames are shown at 256 px
    assert (out / "sheet.png").is_file()
    record = json.loads((out / "age_sweep.json").read_text())
    assert "age" not in record["options"] and record["options"]["genes"] == 0.5
    assert render.read_png_metadata(frames[1])["age"] == pytest.approx(13.25)
    assert record["sweep"]["ages"] == pytest.approx([1, 13.25, 25.5, 37.75, 50])
    assert record["sweep"]["age_coeffs"] == pytest.approx([6 - a / 5 for a in (1, 13.25, 25.5, 37.75, 50)])
    w = np.load(out / "age_sweep.npy")
    assert w.shape == (5, 8, 512)
    # Only the age direction moves between frames, and only on the first 8 layers (all 8 here).
    age = np.load(tiny["directions"] / "age.npy")
    np.testing.assert_allclose(w[0] - w[-1], (5.8 - -4.0) * age, rtol=1e-4, atol=1e-4)
    assert "age_sweep.gif" in res.output


def test_age_sweep_coeffs_and_mp4_error(tiny, tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    _run(["age-sweep", tiny["dad"], tiny["mum"], "-o", out, "--coeffs", "-4:4:4", *_model_args(tiny)])
    assert len(list(out.glob("frame_*.png"))) == 3 and not (out / "age_sweep.gif").exists()
    assert json.loads((out / "age_sweep.json").read_text())["sweep"]["age_coeffs"] == [-4.0, 0.0, 4.0]
    monkeypatch.setattr(render, "mp4_available", lambda: False)
    res = _run(
        ["age-sweep", tiny["dad"], tiny["mum"], "-o", tmp_path / "mp4", "--mp4", *_model_args(tiny)],
        expect_ok=False,
    )
    assert res.exit_code == 1
    assert "age_sweep.mp4: writing MP4 needs imageio-ffmpeg" in res.output
    assert not (tmp_path / "mp4").exists()


def test_errors_are_one_line_and_exit_1(tiny, tmp_path):
    bad_dirs = tmp_path / "dirs"
    bad_dirs.mkdir()
    np.save(bad_dirs / "age.npy", np.zeros((18, 512)))
    res = _run(
        [
            "predict",
            tiny["dad"],
            tiny["mum"],
            "-o",
            tmp_path / "o1",
            "--model",
            tiny["model"],
            "--directions",
            bad_dirs,
            *FAST_ENCODER,
        ],
        expect_ok=False,
    )
    assert res.exit_code == 1
    assert "age.npy: direction has shape (18, 512)" in res.output and "(8, 512)" in res.output
    assert not (tmp_path / "o1").exists()

    res = _run(
        [
            "predict",
            tiny["dad"],
            tiny["mum"],
            "-o",
            tmp_path / "o2",
            *_model_args(tiny),
            "--shift",
            "wings=1",
        ],
        expect_ok=False,
    )
    assert res.exit_code == 1 and "wings.npy: direction file not found" in res.output

    # --offline and no registry directions in the (empty) cache: how to fetch, no download.
    res = _run(
        [
            "predict",
            tiny["dad"],
            tiny["mum"],
            "-o",
            tmp_path / "o3",
            "--model",
            tiny["model"],
            "--offline",
            *FAST_ENCODER,
        ],
        expect_ok=False,
    )
    assert res.exit_code == 1 and "age.npy" in res.output and "--offline" in res.output

    res = _run(
        ["predict", tiny["dad"], tiny["mum"], "--age", "3", "--age-coeff", "1", *_model_args(tiny)],
        expect_ok=False,
    )
    assert res.exit_code == 2 and "--age or --age-coeff" in res.output


def test_no_face_photo(tiny, tmp_path):
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(blank)
    res = _run(["predict", tiny["dad"], blank, "-o", tmp_path / "o", *_model_args(tiny)], expect_ok=False)
    assert res.exit_code == 1 and "wall.png: no face found" in res.output
    assert not (tmp_path / "o").exists()


def test_predict_real_family_photos(tiny, tmp_path):
    father = shared_path("faces", "family_father.jpg")
    mother = shared_path("faces", "family_mother.jpg")
    local = tmp_path / "photos"
    local.mkdir()
    shutil.copy(father, local / "father.jpg")
    shutil.copy(mother, local / "mother.jpg")
    out = tmp_path / "out"
    _run(["predict", local / "father.jpg", local / "mother.jpg", "-o", out, *_model_args(tiny)])
    record = json.loads((out / "child.json").read_text())
    assert record["father"]["sha256"] == sha256_file(father)
    assert record["mother"]["sha256"] == sha256_file(mother)
    with Image.open(out / "sheet.png") as im:
        sheet = np.asarray(im)
    # The sheet's first tile is the father's aligned face (grey-scale photo: R = G = B).
    tile = sheet[4:36, 4:36].astype(int)
    assert np.abs(tile[..., 0] - tile[..., 1]).max() <= 2 and tile.std() > 5


def test_face_choice_recorded_and_checked(tiny, tmp_path):
    import skimage.data

    group = tmp_path / "astronaut_full.png"
    Image.fromarray(skimage.data.astronaut()).save(group)  # dlib finds 2 faces here
    res = _run(
        ["predict", group, tiny["mum"], "-o", tmp_path / "bad", "--face-father", "3", *_model_args(tiny)],
        expect_ok=False,
    )
    assert res.exit_code == 1 and "astronaut_full.png: no face 3, only 2 faces found" in res.output
    assert "encoder" not in res.output  # failed before any encode
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "ok"
    _run(["predict", group, tiny["mum"], "-o", out, "--face-father", "2", *_model_args(tiny)])
    record = json.loads((out / "child.json").read_text())
    assert record["father"]["face"] == 2 and record["father"]["faces_found"] == 2
    assert record["mother"]["face"] == 1 and record["mother"]["faces_found"] == 1
    assert record["options"]["face_father"] == 2 and record["options"]["face_mother"] is None
