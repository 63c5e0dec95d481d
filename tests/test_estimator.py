"""The ResNet50 estimator (the encoder's first guess): training, saving, loading, use by encode."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from babygan.cli import main
from babygan.encoder import Encoder, EncoderSettings, load_estimator, save_estimator, train_estimator
from babygan.encoder.estimator import predict_dlatents, sample_pairs
from babygan.errors import BabyganError, ModelFileError


def encode(G, images, settings, *, progress=False):
    return Encoder(G, settings).encode(images, progress=progress)


@pytest.fixture(scope="module")
def G():
    """A tiny generator with 32-dim latents: with 512 (the real size) a few hundred samples are
    far too few for any regressor to learn the image -> dlatents map; with 32 they suffice."""
    from babygan.stylegan import random_generator

    return random_generator(
        resolution=32, fmap_max=16, seed=0, latent_size=32, dlatent_size=32, mapping_fmaps=32
    )


@pytest.fixture(scope="module")
def trained(G, tmp_path_factory):
    model = train_estimator(G, samples=256, epochs=4, batch_size=16, seed=0, progress=False)
    path = save_estimator(model, tmp_path_factory.mktemp("est") / "tiny_estimator.keras")
    return model, path


@pytest.mark.slow
def test_estimator_beats_dlatent_avg_on_held_out_samples(G, trained):
    model, _ = trained
    images, w = sample_pairs(G, 64, seed=1234)  # not the training seed: held out
    guess = predict_dlatents(model, images)
    assert guess.shape == w.shape == (64, G.num_layers, G.w_dim) and guess.dtype == np.float32
    mse_estimator = float(np.mean((guess - w) ** 2))
    mse_avg = float(np.mean((G.dlatent_avg - w) ** 2))
    print(f"held-out MSE: estimator {mse_estimator:.4f}, dlatent_avg {mse_avg:.4f}")
    assert mse_estimator < 0.8 * mse_avg


@pytest.mark.slow
def test_saved_estimator_loads_and_starts_the_encoder(G, trained):
    model, path = trained
    assert path.is_file() and not [p for p in path.parent.iterdir() if ".part" in p.name]
    loaded = load_estimator(path)
    images, _ = sample_pairs(G, 2, seed=99)
    np.testing.assert_allclose(predict_dlatents(loaded, images), predict_dlatents(model, images), atol=1e-5)

    settings = EncoderSettings(iterations=3, lr=0.05, perceptual="pixel", estimator=str(path))
    result = encode(G, images, settings, progress=False)
    assert result.init == "estimator:tiny_estimator.keras"
    np.testing.assert_allclose(result.initial_dlatents, predict_dlatents(loaded, images), atol=1e-5)

    # init="dlatent_avg" ignores the estimator
    plain = encode(
        G, images, EncoderSettings(iterations=1, perceptual="pixel", init="dlatent_avg"), progress=False
    )
    assert plain.init == "dlatent_avg"


@pytest.mark.slow
def test_estimator_for_another_generator_is_refused(trained):
    from babygan.stylegan import random_generator

    _, path = trained
    other = random_generator(resolution=32, fmap_max=16, seed=1)  # 512-dim dlatents
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ModelFileError, match=r"tiny_estimator\.keras: estimator maps"):
        encode(
            other,
            images,
            EncoderSettings(iterations=1, perceptual="pixel", estimator=str(path)),
            progress=False,
        )


def test_unreadable_estimator_is_a_clear_error(G, tmp_path):
    bad = tmp_path / "broken.keras"
    bad.write_bytes(b"not a keras file")
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with pytest.raises(ModelFileError, match=r"broken\.keras: Keras .* cannot load this estimator"):
        encode(
            G, images, EncoderSettings(iterations=1, perceptual="pixel", estimator=str(bad)), progress=False
        )


def test_ffhq_estimator_that_keras_cannot_load_falls_back(G, monkeypatch, caplog, _isolated_babygan_home):
    """For FFHQ, a finetuned_resnet.h5 Keras 3 cannot read: a logged note, and dlatent_avg."""
    from babygan import models
    from babygan.encoder import estimator as est

    models_dir = _isolated_babygan_home / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / "finetuned_resnet.h5").write_bytes(b"not an HDF5 file")
    monkeypatch.setattr(est, "_is_ffhq", lambda _G: True)
    monkeypatch.setattr(models, "_models_dir_override", None)
    images = np.zeros((1, 32, 32, 3), np.uint8)
    with caplog.at_level("WARNING", logger="babygan"):
        result = encode(G, images, EncoderSettings(iterations=1, perceptual="pixel"), progress=False)
    assert result.init == "dlatent_avg"
    assert "finetuned_resnet.h5" in caplog.text and "dlatent_avg" in caplog.text
    # asked for explicitly, the same file is an error
    with pytest.raises(ModelFileError, match=r"finetuned_resnet\.h5"):
        encode(G, images, EncoderSettings(iterations=1, perceptual="pixel", init="estimator"), progress=False)


def test_estimator_file_must_be_keras_format(G, tmp_path):
    with pytest.raises(BabyganError, match=r"\.keras"):
        save_estimator(object(), tmp_path / "est.h5")


def test_train_estimator_cli_then_encode_with_it(G, tmp_path):
    model_file = G.save(tmp_path / "tiny32.npz")
    est = tmp_path / "est.keras"
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "train-estimator",
            "--model",
            str(model_file),
            "--samples",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--output",
            str(est),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert est.is_file()

    from PIL import Image

    from babygan.stylegan import to_uint8

    photo = tmp_path / "face.png"
    Image.fromarray(to_uint8(G.synthesis(G.mapping(np.zeros((1, G.z_dim)))))[0]).save(photo)
    out = tmp_path / "out"
    result = runner.invoke(
        main,
        [
            "encode",
            str(photo),
            "--model",
            str(model_file),
            "-o",
            str(out),
            "--aligned",
            "--perceptual",
            "pixel",
            "--iterations",
            "2",
            "--estimator",
            str(est),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "estimator" in result.output and "est.keras" in result.output
    assert np.load(out / "face.npy").shape == (G.num_layers, G.w_dim)

    bad = runner.invoke(
        main, ["train-estimator", "--model", str(model_file), "--output", str(tmp_path / "e.h5")]
    )
    assert bad.exit_code == 1 and "e.h5" in bad.output and ".keras" in bad.output
