"""babygan.attributes: the shipped age/gender model loads, scores held-out UTKFace faces as
well as measured when it was trained, and bad files are one-line errors."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from babygan import utkface
from babygan.align import Crop
from babygan.attributes import AttributeModel, build_network, builtin_path, evaluate, info_path
from babygan.errors import ModelFileError
from tests.conftest import shared_path

# How far a sample of held-out faces may fall short of the figures measured on the whole
# held-out split at training time (recorded in attributes.json).
HELD_OUT_FACES = 300
MAE_MARGIN_YEARS = 1.5
ACCURACY_MARGIN = 0.05


@pytest.fixture(scope="module")
def shipped() -> AttributeModel:
    if not builtin_path().is_file():
        pytest.fail(f"{builtin_path()} is missing: run scripts/train_attributes.py")
    return AttributeModel.load()


def test_shipped_model_is_small_and_says_what_it_was_trained_on(shipped):
    assert builtin_path().stat().st_size < 2_000_000
    assert shipped.path == builtin_path()
    assert shipped.crop == Crop(scale=utkface.CROP_SCALE)
    assert shipped.input_size == shipped.info["input_size"]
    held = shipped.info["holdout"]
    assert held["n"] > 900 and held["age_mae"] < 12 and held["gender_accuracy"] > 0.8


def test_predict_any_size_gives_ages_and_probabilities(shipped):
    rng = np.random.default_rng(0)
    for size in (32, 64, 100):
        ages, p_female = shipped.predict(rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8))
        assert ages.shape == p_female.shape == (3,)
        assert ages.dtype == p_female.dtype == np.float32
        assert np.all((p_female >= 0) & (p_female <= 1)) and np.all(np.isfinite(ages))
    empty = shipped.predict(np.zeros((0, 64, 64, 3), np.uint8))
    assert empty[0].shape == (0,)
    with pytest.raises(ValueError, match="uint8"):
        shipped.predict(np.zeros((2, 64, 64, 3), np.float32))


@pytest.mark.slow
def test_held_out_real_faces_score_as_measured(shipped, tmp_path):
    """The first 300 held-out faces of utkface200.tar, aligned at the built-in crop."""
    source = utkface.UTKFaceArchive.open(shared_path("datasets", "utkface200.tar"))
    wanted = {source.members[i] for i in source.select("holdout")[:HELD_OUT_FACES]}
    small = tmp_path / "holdout.tar"
    with tarfile.open(source.path) as tar, tarfile.open(small, "w") as out:
        for info in tar:
            if info.name in wanted:
                out.addfile(info, io.BytesIO(tar.extractfile(info).read()))  # type: ignore[union-attr]
    faces = utkface.align_utkface(small, size=shipped.input_size, scale=utkface.CROP_SCALE)
    assert len(faces) >= HELD_OUT_FACES - 5 and all(utkface.is_holdout(n) for n in faces.names)
    figures = evaluate(shipped, faces)
    measured = shipped.info["holdout"]
    assert figures["age_mae"] < measured["age_mae"] + MAE_MARGIN_YEARS
    assert figures["gender_accuracy"] > measured["gender_accuracy"] - ACCURACY_MARGIN


def test_each_object_loads_its_own_network(shipped):
    other = AttributeModel.load()
    assert other.network is not shipped.network


def test_corrupt_file_is_a_one_line_model_file_error(tmp_path):
    bad = tmp_path / "attributes.keras"
    bad.write_bytes(b"PK\x03\x04 this is not a keras archive")
    with pytest.raises(ModelFileError) as err:
        AttributeModel.load(bad)
    message = str(err.value)
    assert message.startswith(str(bad)) and "\n" not in message
    with pytest.raises(ModelFileError, match="no such attribute model file"):
        AttributeModel.load(tmp_path / "absent.keras")


def test_a_keras_file_of_another_kind_is_refused(tmp_path):
    import keras

    inputs = keras.Input((8, 8, 3))
    other = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    path = tmp_path / "other.keras"
    other.save(str(path))
    with pytest.raises(ModelFileError, match="expected age and p_female"):
        AttributeModel.load(path)


def test_save_writes_the_network_and_its_json(tmp_path):
    model = AttributeModel(build_network(32), info={"input_size": 32, "crop": utkface.CROP})
    dest = model.save(tmp_path / "m.keras")
    again = AttributeModel.load(dest)
    assert again.input_size == 32 and again.crop == Crop(scale=utkface.CROP_SCALE)
    assert json.loads(info_path(dest).read_text())["input_size"] == 32
    images = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(again.predict(images)[0], model.predict(images)[0], rtol=1e-5)
