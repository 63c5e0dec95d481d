"""The built-in model and the default choice (babygan.model_choice), with a tiny stand-in.

The stand-in is a 32 px random generator whose info records a crop (FFHQ recipe at 0.7)
and its own directions folder (age and gender only), put where the built-in model is
looked up by monkeypatching that lookup (nothing is written into the package). The
attribute network is an untrained one of the shipped architecture, also monkeypatched in.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path

import babygan.builtin as builtin_pkg
from babygan import model_choice, models
from babygan.cli import main
from babygan.errors import ModelFileError

CROP = {"recipe": "ffhq", "scale": 0.7}
FAST = ["--perceptual", "pixel", "--iterations", "3", "--quiet", "--precision", "fp32"]


def _make_model(folder: Path, *, directions: bool = True, seed: int = 0) -> Path:
    """tiny.npz with a crop (and a directions folder with age and gender) in ``folder``."""
    from babygan.stylegan import random_generator

    G = random_generator(32, fmap_max=16, seed=seed)
    G.info = {"crop": dict(CROP), "name": "tiny stand-in", "licence": "test only"}
    if directions:
        G.info["directions"] = builtin_pkg.BUILTIN_DIRECTIONS
        own = folder / builtin_pkg.BUILTIN_DIRECTIONS
        own.mkdir(parents=True)
        rng = np.random.default_rng(1)
        for name in ("age", "gender"):
            np.save(own / f"{name}.npy", (rng.standard_normal((G.num_layers, G.w_dim)) * 0.5).astype("f4"))
    folder.mkdir(parents=True, exist_ok=True)
    return G.save(folder / builtin_pkg.BUILTIN_FILE)


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _make_model(tmp_path_factory.mktemp("builtin"))


@pytest.fixture(scope="module")
def attribute_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained attribute network of the shipped architecture (with its crop in the JSON)."""
    from babygan.attributes import AttributeModel, build_network
    from babygan.backend import ensure_started

    ensure_started()
    path = tmp_path_factory.mktemp("attributes") / "attributes.keras"
    AttributeModel(network=build_network(), info={"crop": dict(CROP), "input_size": 64}).save(path)
    return path


@pytest.fixture
def builtin(stand_in: Path, attribute_file: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(builtin_pkg, "builtin_model_path", lambda: stand_in)
    monkeypatch.setattr("babygan.attributes.builtin_path", lambda: attribute_file)
    return stand_in


@pytest.fixture
def no_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    absent = tmp_path / "nowhere" / builtin_pkg.BUILTIN_FILE
    monkeypatch.setattr(builtin_pkg, "builtin_model_path", lambda: absent)
    return absent


def _cache_ffhq() -> Path:
    """A placeholder where the FFHQ pickle lives in the cache (its presence is what counts)."""
    path = models.model_path(models.lookup("ffhq"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"placeholder")
    return path


def _run(args: list) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("Error:")]


def _photos(tmp_path: Path) -> tuple[Path, Path]:
    """Two (empty) photo files: enough for runs that must fail before reading them."""
    dad, mum = tmp_path / "dad.jpg", tmp_path / "mum.jpg"
    dad.touch()
    mum.touch()
    return dad, mum


# --------------------------------------------------------------------------- the default


def test_default_is_builtin_without_ffhq_then_ffhq_once_cached(builtin):
    said: list[str] = []
    assert model_choice.choose_model(None, say=said.append) == "builtin"
    assert len(said) == 1 and "built-in" in said[0] and "`babygan models fetch ffhq`" in said[0]

    _cache_ffhq()
    said.clear()
    assert model_choice.choose_model(None, say=said.append) == "ffhq"
    assert len(said) == 1 and "FFHQ" in said[0] and "--model builtin" in said[0]
    assert model_choice.choose_model("builtin") == "builtin"  # asked for: taken even so


def test_default_without_either_names_both_ways_out(no_builtin):
    said: list[str] = []
    assert model_choice.choose_model(None, say=said.append) == "ffhq"
    assert len(said) == 1 and "babygan models fetch ffhq" in said[0] and "no built-in model" in said[0]


def test_builtin_absent_is_one_line(no_builtin, tmp_path):
    with pytest.raises(ModelFileError, match="not in this build"):
        model_choice.choose_model("builtin")
    with pytest.raises(ModelFileError, match="not in this build"):
        models.resolve_model_file("builtin")
    res = _run(["generate", "--model", "builtin", "--seeds", "0", "-o", tmp_path / "g"])
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert "built-in face model is not in this build" in line and "babygan models fetch ffhq" in line


def test_generate_with_no_model_uses_builtin_and_says_so(builtin, tmp_path):
    res = _run(["generate", "--seeds", "0", "-o", tmp_path / "g", "--precision", "fp32"])
    assert res.exit_code == 0, res.output
    assert "babygan: model: babygan's built-in model" in res.output
    assert (tmp_path / "g" / "seed0000.png").is_file()


def test_models_list_shows_builtin(builtin):
    res = _run(["models", "list"])
    assert res.exit_code == 0, res.output
    (row,) = [line for line in res.output.splitlines() if line.startswith(builtin_pkg.BUILTIN_FILE)]
    assert "builtin" in row and "shipped" in row and "non-commercial" in row
    assert "kB" in row or "MB" in row
    assert _run(["models", "path", "builtin"]).output.strip() == str(builtin)


def test_models_list_without_builtin(no_builtin):
    res = _run(["models", "list"])
    assert res.exit_code == 0 and "not in this build" in res.output


# --------------------------------------------------------------------------- a run on the built-in model


@pytest.mark.slow
def test_predict_on_builtin_end_to_end(builtin, tmp_path, monkeypatch):
    dad = shared_path("faces", "family_father.jpg")
    mum = shared_path("faces", "family_mother.jpg")
    import babygan.align

    scales: list[float] = []
    real = babygan.align.align_photo

    def spy(*args, **kwargs):
        scales.append(kwargs.get("crop_scale", 1.0))
        return real(*args, **kwargs)

    monkeypatch.setattr(babygan.align, "align_photo", spy)
    out = tmp_path / "out"
    res = _run(["predict", dad, mum, "--model", "builtin", "-o", out, "--offline", *FAST])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert scales == [0.7, 0.7]  # both parents aligned with the model's crop
    record = json.loads((out / "child.json").read_text())
    model = record["model"]
    assert model["name"] == "builtin" and model["crop"] == CROP and model["directions_from"] == "model"
    assert model["resolution"] == 32
    age_file = Path(record["directions"]["age"]["path"])
    assert age_file.parent == builtin.parent / builtin_pkg.BUILTIN_DIRECTIONS
    estimate = record["estimate"]
    assert isinstance(estimate["age"], float) and 0.0 <= estimate["p_female"] <= 1.0
    assert estimate["gender"] in ("female", "male") and estimate["face_crop"]["scale"] == 0.7
    assert (out / "child.png").is_file() and (out / "sheet.png").is_file()


def test_direction_the_model_lacks_is_one_line(builtin, tmp_path):
    dad, mum = _photos(tmp_path)
    res = _run(["predict", dad, mum, "--model", "builtin", "--smile", "1", "-o", tmp_path / "o", *FAST])
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    assert line.startswith("Error: smile:") and "has no smile direction" in line and "age, gender" in line
    assert not (tmp_path / "o").exists()


def test_estimate_crops_an_ffhq_face_to_the_attribute_crop(builtin, tmp_path):
    from babygan.session import Session
    from babygan.stylegan import random_generator

    plain = random_generator(32, fmap_max=16, seed=0)  # records no crop: FFHQ's own
    plain_path = plain.save(tmp_path / "plain.npz")
    face = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    (ffhq,) = Session(plain_path).estimate([face])  # FFHQ's crop: the central 0.7 is taken
    (tight,) = Session("builtin").estimate([face[15:85, 15:85]])
    assert ffhq["face_crop"] == tight["face_crop"] == CROP
    assert ffhq["age"] == pytest.approx(tight["age"], abs=0.05)


# --------------------------------------------------------------------------- missing and broken files


def test_offline_first_run_lists_every_missing_file(no_builtin, tmp_path):
    dad, mum = _photos(tmp_path)
    res = _run(["predict", dad, mum, "--smile", "1", "--offline", "-q", "-o", tmp_path / "o"])
    assert res.exit_code == 1
    (line,) = _error_lines(res.output)
    for name in ("karras2019stylegan-ffhq-1024x1024.pkl", "age.npy", "smile.npy", "vgg16_weights"):
        assert name in line
    assert "5 model files are missing" not in line and "4 model files are missing" in line
    # 324,733,157 + 2 x 73,856 + 58,889,256 bytes (the manifest's sizes) = 366 MiB
    assert "(366MB in all)" in line
    assert str(models.models_dir()) in line and "babygan models fetch karras2019" in line
    assert "--perceptual pixel" in line


def test_offline_lists_missing_directions_of_a_model_without_its_own(tmp_path):
    model = _make_model(tmp_path / "m", directions=False)
    dad, mum = _photos(tmp_path)
    args = ["predict", dad, mum, "-m", model, "--gender-shift", "1", "--offline", *FAST]
    res = _run([*args, "-o", tmp_path / "o"])
    (line,) = _error_lines(res.output)
    assert "2 model files are missing" in line and "age.npy" in line and "gender.npy" in line
    assert line.count("kB") >= 2


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
def test_broken_model_file_is_one_line(builtin, tmp_path, monkeypatch, how):
    data = builtin.read_bytes()
    broken = tmp_path / "pkg" / builtin_pkg.BUILTIN_FILE
    broken.parent.mkdir()
    broken.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": b"PK" + b"x" * 99}[how])
    monkeypatch.setattr(builtin_pkg, "builtin_model_path", lambda: broken)
    for model in ("builtin", broken):
        res = _run(["generate", "-m", model, "--seeds", "0", "-o", tmp_path / "g"])
        assert res.exit_code == 1
        (line,) = _error_lines(res.output)
        assert builtin_pkg.BUILTIN_FILE in line
        assert "Traceback" not in res.output


# --------------------------------------------------------------------------- align and shipping


@pytest.mark.slow
def test_align_with_model_uses_its_crop_and_resolution(builtin, tmp_path):
    photo = shared_path("faces", "family_father.jpg")
    out = tmp_path / "aligned"
    res = _run(["align", photo, "-o", out, "--model", "builtin", "--landmarks"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    assert Image.open(out / "family_father.png").size == (32, 32)
    assert json.loads((out / "family_father.json").read_text())["crop"] == CROP


def test_ship_builtin_records_its_directions(tmp_path, monkeypatch):
    trained = _make_model(tmp_path / "run", directions=False)
    learned = tmp_path / "learned"
    learned.mkdir()
    for name in ("age", "gender"):
        np.save(learned / f"{name}.npy", np.zeros((8, 512), np.float32))
    (learned / "directions.json").write_text("{}")
    target = tmp_path / "pkg" / builtin_pkg.BUILTIN_FILE
    monkeypatch.setattr(builtin_pkg, "builtin_model_path", lambda: target)
    assert model_choice.ship_builtin(trained, learned) == target
    from babygan.session import Session

    session = Session("builtin")
    assert session.directions.names() == ["age", "gender"] and session.directions.source == "model"
    assert session.crop.scale == 0.7
    assert session.generator.info["directions"] == builtin_pkg.BUILTIN_DIRECTIONS
