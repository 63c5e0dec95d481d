"""``babygan encode`` through click's CliRunner, on a tiny generator saved as our .npz."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from babygan.cli import main


@pytest.fixture(autouse=True)
def _fp32(monkeypatch):
    """float32, whatever this machine's --precision auto would pick (results are compared exactly)."""
    monkeypatch.setenv("BABYGAN_PRECISION", "fp32")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny generator file and two aligned 'photos' (its own renders) as PNG files."""
    from babygan.stylegan import random_generator, to_uint8

    folder = tmp_path_factory.mktemp("tiny")
    G = random_generator(resolution=32, fmap_max=16, seed=0)
    model = G.save(folder / "tiny.npz")
    w = G.mapping(np.random.RandomState(2).randn(2, G.z_dim).astype(np.float32), truncation_psi=0.5)
    images = to_uint8(G.synthesis(w))
    photos = []
    for name, img in zip(("dad", "mum"), images, strict=True):
        # stored at 64 px: --aligned resizes to the generator's 32 px
        path = folder / f"{name}.png"
        Image.fromarray(img).resize((64, 64), Image.LANCZOS).save(path)
        photos.append(path)
    return model, photos, G


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_encode_writes_dlatents_and_reconstructions(tiny, tmp_path):
    model, photos, G = tiny
    out = tmp_path / "out"
    common = [
        "--model",
        model,
        "--output-dir",
        out,
        "--aligned",
        "--perceptual",
        "pixel",
        "--lr",
        "0.05",
        "-q",
    ]
    result = run("encode", *photos, "--iterations", "20", *common)
    assert result.exit_code == 0, result.output
    for stem in ("dad", "mum"):
        w = np.load(out / f"{stem}.npy")
        assert w.shape == (G.num_layers, G.w_dim) and w.dtype == np.float32
        with Image.open(out / f"{stem}_reconstruction.png") as im:
            assert im.size == (32, 32) and im.mode == "RGB"
        assert f"{stem}.npy" in result.output
    assert not [p for p in out.iterdir() if ".part" in p.name]
    assert "dlatent_avg" in result.output  # says where the optimisation started (log on stderr)

    # same photos and settings: from the cache, same numbers
    first = np.load(out / "dad.npy")
    again = run("encode", *photos, "--iterations", "20", *common)
    assert again.exit_code == 0, again.output
    assert "latent cache" in again.output
    np.testing.assert_array_equal(np.load(out / "dad.npy"), first)

    # --no-cache with the same seed: the same result again (deterministic)
    fresh = run("encode", photos[0], "--iterations", "20", "--no-cache", *common)
    assert fresh.exit_code == 0, fresh.output
    assert "latent cache" not in fresh.output
    np.testing.assert_array_equal(np.load(out / "dad.npy"), first)


def test_missing_vgg16_offline_is_a_clear_error(tiny, tmp_path):
    model, photos, _ = tiny
    result = run("encode", photos[0], "--model", model, "-o", tmp_path, "--aligned", "--offline", "-q")
    assert result.exit_code == 1
    assert "Error: vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in result.output
    assert "--perceptual pixel" in result.output
    assert "--perceptual identity" in result.output  # the loss that needs no download
    assert not list(tmp_path.glob("*.npy"))


def test_perceptual_identity_encodes_offline_without_vgg16(tiny, tmp_path, monkeypatch):
    """No VGG16 file anywhere and every mirror dead: --perceptual identity still encodes
    (dlib's descriptor network ships in face_recognition_models), and records its weight."""
    import json
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("BABYGAN_MIRROR", dead)
    model, photos, G = tiny
    out = tmp_path / "out"
    args = ["--model", model, "-o", out, "--aligned", "--offline", "-q", "--perceptual", "identity"]
    result = run("encode", photos[0], "--iterations", "3", "--identity-weight", "50", *args)
    assert result.exit_code == 0, result.output
    w = np.load(out / "dad.npy")
    assert w.shape == (G.num_layers, G.w_dim) and np.all(np.isfinite(w))
    # the reconstruction's record names the loss and its weight (as child.json does)
    encoder = json.loads(Image.open(out / "dad_reconstruction.png").text["encoder"])
    assert encoder["perceptual"] == "identity" and encoder["identity_weight"] == 50.0
    # the default schedule (a constant rate), or BabyGAN's staircase when asked for
    assert encoder["lr"] == 0.05 and encoder["decay_rate"] == 1.0
    babygan = ["--iterations", "3", "--lr", "0.25", "--decay-rate", "0.9", "--decay-percent", "34"]
    result = run("encode", photos[0], *babygan, "-o", tmp_path / "old", *args[:2], *args[4:])
    assert result.exit_code == 0, result.output
    encoder = json.loads(Image.open(tmp_path / "old" / "dad_reconstruction.png").text["encoder"])
    assert (encoder["lr"], encoder["decay_rate"], encoder["decay_percent"]) == (0.25, 0.9, 34.0)


def test_non_square_aligned_photo_is_refused(tiny, tmp_path):
    model, _, _ = tiny
    photo = tmp_path / "wide.png"
    Image.new("RGB", (40, 32)).save(photo)
    result = run(
        "encode", photo, "--model", model, "-o", tmp_path / "o", "--aligned", "--perceptual", "pixel"
    )
    assert result.exit_code == 1
    assert "wide.png: an aligned photo must be square" in result.output


def test_missing_photo_and_duplicate_names(tiny, tmp_path):
    model, photos, _ = tiny
    result = run(
        "encode",
        tmp_path / "nope.jpg",
        "--model",
        model,
        "-o",
        tmp_path,
        "--aligned",
        "-q",
        "--perceptual",
        "pixel",
    )
    assert result.exit_code == 1 and "nope.jpg" in result.output
    other = tmp_path / "x" / photos[0].name
    other.parent.mkdir()
    other.write_bytes(photos[0].read_bytes())
    result = run("encode", photos[0], other, "--model", model, "-o", tmp_path, "--aligned", "-q")
    assert result.exit_code == 1 and "two photos share this name" in result.output


def test_estimator_needed_but_missing(tiny, tmp_path):
    model, photos, _ = tiny
    result = run(
        "encode",
        photos[0],
        "--model",
        model,
        "-o",
        tmp_path,
        "--aligned",
        "--perceptual",
        "pixel",
        "--init",
        "estimator",
        "-q",
    )
    assert result.exit_code == 1
    assert "no estimator for this generator" in result.output


def test_encode_aligns_a_real_photo(tiny, tmp_path):
    """Without --aligned the photo goes through face alignment (to the generator's 32 px) first."""
    from conftest import shared_path

    photo = shared_path("faces", "obama_small.jpg")
    model, _, G = tiny
    out = tmp_path / "out"
    fast = ["--perceptual", "pixel", "--iterations", "3", "-q"]
    result = run("encode", photo, "--model", model, "-o", out, *fast)
    assert result.exit_code == 0, result.output
    assert np.load(out / "obama_small.npy").shape == (G.num_layers, G.w_dim)
    with Image.open(out / "obama_small_reconstruction.png") as im:
        assert im.size == (32, 32)

    # a photo without a face: the alignment's one-line error, exit 1, nothing written
    dogs = shared_path("faces", "no_face_dogs.jpg")
    result = run("encode", dogs, "--model", model, "-o", out, *fast)
    assert result.exit_code == 1 and "no_face_dogs.jpg" in result.output
    assert not (out / "no_face_dogs.npy").exists()
