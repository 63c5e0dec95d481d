"""The encoder's pbaylies options: face mask, composite, early stopping, best-loss average,
sharpening, L-BFGS, --init FILE.npy, tiled dlatents; their cache keys and records.

Backend-neutral (keras.ops and babygan.backend only), so the file runs under JAX too.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from encoder_checks import assert_best_seen, loss_of

from babygan.encoder import Encoder, EncoderSettings
from babygan.encoder import mask as masks_mod
from babygan.encoder.step import Plateau
from babygan.errors import BabyganError

# pixel loss (no VGG16 file), dlatent_avg start, a learning rate this tiny generator takes;
# clip 5: this random generator's dlatent_avg reaches 4.7, and a start re-drawn at once by
# stochastic clipping (pbaylies' 2) would make a few steps worse than the start
PIXEL = EncoderSettings(
    iterations=6, lr=0.05, decay_rate=0.9, perceptual="pixel", init="dlatent_avg", clip=5.0
)


@pytest.fixture(scope="module")
def G():
    from babygan.stylegan import random_generator

    return random_generator(resolution=32, fmap_max=16, seed=0)


@pytest.fixture(scope="module")
def targets(G):
    """Two renders of known dlatents: uint8 (2, 32, 32, 3), and their (2, L, 512) dlatents."""
    from babygan.stylegan import to_uint8

    w = G.mapping(np.random.RandomState(1).randn(2, G.z_dim).astype(np.float32), truncation_psi=0.5)
    return to_uint8(G.synthesis(w)), np.asarray(w, np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / mse)


def left_half_mask(n: int, size: int) -> np.ndarray:
    m = np.zeros((n, size, size), np.float32)
    m[:, :, : size // 2] = 1.0
    return m


# ----------------------------------------------------------------------------- face mask


def test_the_mask_zeroes_the_loss_outside_the_face(G, targets):
    """Pixels outside the mask change nothing: not the loss, not its gradient, not the result."""
    from keras import ops

    from babygan import backend

    images, _ = targets
    mask = left_half_mask(2, 32)
    other = images.copy()
    other[:, :, 16:] = 255 - other[:, :, 16:]  # the right half (outside the face) repainted
    settings = dataclasses.replace(PIXEL, face_mask=True, iterations=4)
    enc = Encoder(G, settings)
    loss = enc._make_loss(enc.G)
    grad = backend.value_and_grad(loss)
    w = ops.convert_to_tensor(np.broadcast_to(G.dlatent_avg, (2, G.num_layers, G.w_dim)).astype(np.float32))
    m4 = ops.convert_to_tensor(mask[..., None])
    feat = ops.zeros((2, 1))
    values = []
    for imgs in (images, other):
        target = ops.convert_to_tensor(imgs.astype(np.float32) * mask[..., None])
        (_, per), g = grad(w, G.tensors, target, feat, m4)
        values.append((ops.convert_to_numpy(per), ops.convert_to_numpy(g)))
    np.testing.assert_array_equal(values[0][0], values[1][0])
    np.testing.assert_array_equal(values[0][1], values[1][1])

    # the whole encode: same losses, same dlatents
    a = enc.encode(images, masks=mask, progress=False)
    b = enc.encode(other, masks=mask, progress=False)
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-6)
    np.testing.assert_allclose(a.dlatents, b.dlatents, atol=1e-6)
    # inside the face it does matter
    inside = images.copy()
    inside[:, :, :16] = 255 - inside[:, :, :16]
    c = enc.encode(inside, masks=mask, progress=False)
    assert not np.allclose(a.loss_history[0], c.loss_history[0])
    # without --face-mask the masks are ignored and the whole image counts
    d = Encoder(G, dataclasses.replace(settings, face_mask=False)).encode(other, masks=mask, progress=False)
    assert not np.allclose(a.loss_history[0], d.loss_history[0])


def test_bad_masks_are_refused(G, targets):
    images, _ = targets
    enc = Encoder(G, dataclasses.replace(PIXEL, face_mask=True, iterations=1))
    with pytest.raises(BabyganError, match=r"masks: expected") as info:
        enc.encode(images, masks=np.ones((2, 16, 16), np.float32), progress=False)
    assert "\n" not in str(info.value)
    with pytest.raises(BabyganError, match=r"\[0, 1\]"):
        enc.encode(images, masks=np.full((2, 32, 32), 2.0, np.float32), progress=False)


def test_no_face_found_means_the_whole_image(G, targets, caplog):
    images, _ = targets  # random renders: dlib finds no face
    found = masks_mod.masks_for(images, 1.2)
    assert found.shape == (2, 32, 32) and found.dtype == np.float32 and np.all(found == 1.0)
    assert "no face found" in caplog.text


def test_face_mask_is_the_scaled_landmark_hull():
    rng = np.random.default_rng(0)
    pts = rng.uniform(40, 80, size=(68, 2))
    small = masks_mod.face_mask(pts, 128, scale=1.0)
    big = masks_mod.face_mask(pts, 128, scale=1.4)
    assert small.shape == (128, 128) and small.dtype == np.float32
    assert small.min() >= 0.0 and small.max() <= 1.0
    centre = np.rint(pts.mean(axis=0)).astype(int)
    assert small[centre[1], centre[0]] == 1.0 and small[0, 0] == 0.0 and small[127, 127] == 0.0
    assert big.sum() > small.sum() * 1.6  # area grows with the square of the scale (1.96)
    assert np.all(big >= small - 1e-6)


@pytest.mark.slow
def test_landmarks_follow_the_alignment(tmp_path):
    """The photo's landmarks carried through the crop land where dlib finds them in the crop."""
    from pipeline_fixtures import make_photos

    from babygan.align import align_photo

    dad, _ = make_photos(tmp_path)
    found = align_photo(dad, output_size=256)
    mapped = masks_mod.aligned_landmarks(found.face.landmarks, 256)
    detected = masks_mod.detect_landmarks(found.image)
    assert detected is not None
    err = np.linalg.norm(mapped - detected, axis=1)
    print(
        f"mapped vs detected landmarks in the 256 px crop: mean {err.mean():.2f} px, max {err.max():.2f} px"
    )
    assert err.mean() < 3.0
    mask = masks_mod.face_mask(mapped, 256, 1.2)
    eyes = mapped[36:48].mean(axis=0).round().astype(int)
    assert mask[eyes[1], eyes[0]] == 1.0 and mask[2, 2] == 0.0


def test_composite_keeps_the_photo_outside_the_face():
    recon = np.full((1, 64, 64, 3), 200, np.uint8)
    photo = np.full((1, 64, 64, 3), 10, np.uint8)
    mask = left_half_mask(1, 64)
    hard = masks_mod.composite(recon, photo, mask, blur=0)
    assert np.all(hard[0, :, :32] == 200) and np.all(hard[0, :, 32:] == 10)
    soft = masks_mod.composite(recon, photo, mask, blur=64)  # 4 px at 64 px
    assert soft[0, 32, 0, 0] == 200 and soft[0, 32, 63, 0] == 10
    assert 10 < soft[0, 32, 32, 0] < 200  # the edge is blended
    # a reconstruction at another size than the photo
    small = masks_mod.composite(recon[:, ::2, ::2], photo, mask, blur=0)
    assert small.shape == (1, 32, 32, 3) and small[0, 5, 2, 0] == 200 and small[0, 5, 30, 0] == 10


# ----------------------------------------------------------------------------- early stopping, averaging


def test_plateau_stops_on_a_plateau_not_on_a_descent():
    flat = Plateau(1, threshold=0.5, patience=3)
    stops = [bool(flat.update(np.array([10.0]))[0]) for _ in range(8)]
    # 1st: no difference; 2nd: starts the average; then 4 steps under the threshold > patience 3
    assert stops == [False, False, False, False, False, True, True, True]
    falling = Plateau(1, threshold=0.5, patience=3)
    assert not any(falling.update(np.array([100.0 - 2 * i]))[0] for i in range(30))


def test_early_stopping_ends_the_optimisation(G, targets):
    images, _ = targets
    settings = dataclasses.replace(
        PIXEL, iterations=30, early_stopping=True, early_stopping_threshold=1e9, early_stopping_patience=2
    )
    result = Encoder(G, settings).encode(images, progress=False)
    # every step is "under" a huge threshold: steps 3, 4, 5 count, and 3 > patience 2
    assert result.iterations_run.tolist() == [5, 5]
    assert np.all(np.isfinite(result.loss_history[:5])) and np.all(np.isnan(result.loss_history[5:]))
    assert np.all(np.isfinite(result.best_loss))
    # a real plateau: a long run stops before its end
    patient = dataclasses.replace(
        PIXEL, iterations=300, lr=0.05, early_stopping=True, early_stopping_patience=5
    )
    res = Encoder(G, patient).encode(images[:1], progress=False)
    print(f"early stopping (threshold 0.5, patience 5): stopped after {res.iterations_run[0]} of 300 steps")
    assert res.iterations_run[0] < 300


def test_average_best_loss_blends_the_best(G, targets):
    images, _ = targets
    plain = Encoder(G, dataclasses.replace(PIXEL, iterations=10)).encode(images, progress=False)
    avg = Encoder(G, dataclasses.replace(PIXEL, iterations=10, average_best_loss=0.25)).encode(
        images, progress=False
    )
    np.testing.assert_array_equal(plain.loss_history[:2], avg.loss_history[:2])  # same until a blend
    assert not np.allclose(plain.dlatents, avg.dlatents)
    assert_best_seen(G, dataclasses.replace(PIXEL, iterations=10), images, plain)
    # blended dlatents were never scored in the loop: score them here; they beat the start
    blended = loss_of(G, PIXEL, images, avg.dlatents)
    assert np.all(blended < avg.loss_history[0]), (blended, avg.loss_history[0])


def test_sharpen_input_changes_the_target(G, targets):
    from babygan.encoder.images import sharpen

    images, _ = targets
    sharp = sharpen(images)
    assert sharp.shape == images.shape and sharp.dtype == np.uint8 and not np.array_equal(sharp, images)
    a = Encoder(G, dataclasses.replace(PIXEL, iterations=1)).encode(images, progress=False)
    b = Encoder(G, dataclasses.replace(PIXEL, iterations=1, sharpen_input=True)).encode(
        images, progress=False
    )
    assert not np.allclose(a.loss_history, b.loss_history)


# ----------------------------------------------------------------------------- L-BFGS, tiling, init file


def test_lbfgs_self_inverts_a_tiny_generator(G, targets):
    from babygan.stylegan import to_uint8

    images, _ = targets
    settings = dataclasses.replace(PIXEL, optimizer="lbfgs", iterations=10)
    result = Encoder(G, settings).encode(images, progress=False)
    start = psnr(to_uint8(G.synthesis(result.initial_dlatents)), images)
    reached = psnr(result.reconstructions, images)
    print(f"tiny 32 px, L-BFGS 10 iterations: PSNR {start.round(1)} -> {reached.round(1)} dB")
    assert np.all(reached > start + 4.0), (start, reached)
    assert result.loss_history.shape == (11, 2)
    assert np.all(result.iterations_run <= 10) and np.all(result.iterations_run >= 1)
    assert np.all(np.abs(result.dlatents) <= settings.clip + 1e-6)  # bounded, as clipping bounds Adam
    # each image on its own: a batch partner changes nothing
    alone = Encoder(G, settings).encode(images[1:], progress=False)
    np.testing.assert_allclose(alone.dlatents[0], result.dlatents[1], atol=1e-5)


def test_tile_dlatents_shares_one_vector(G, targets):
    images, _ = targets
    result = Encoder(G, dataclasses.replace(PIXEL, tile_dlatents=True)).encode(images, progress=False)
    assert result.dlatents.shape == (2, G.num_layers, G.w_dim)
    np.testing.assert_array_equal(
        result.dlatents, np.broadcast_to(result.dlatents[:, :1], result.dlatents.shape)
    )
    assert_best_seen(G, dataclasses.replace(PIXEL, tile_dlatents=True), images, result)
    lb = dataclasses.replace(PIXEL, tile_dlatents=True, optimizer="lbfgs", iterations=3)
    tiled = Encoder(G, lb).encode(images[:1], progress=False).dlatents
    np.testing.assert_array_equal(tiled, np.broadcast_to(tiled[:, :1], tiled.shape))


def test_init_file_is_the_start(G, targets, tmp_path):
    images, w = targets
    path = tmp_path / "earlier.npy"
    np.save(path, w[0])
    settings = dataclasses.replace(PIXEL, iterations=1, init=str(path))
    result = Encoder(G, settings).encode(images[:1], progress=False)
    np.testing.assert_array_equal(result.dlatents[0], w[0])  # one step: the start is the best seen
    assert result.init == "file:earlier.npy"
    # one vector for every layer is accepted too
    np.save(path, w[0, 0])
    again = Encoder(G, settings).encode(images[:1], progress=False)
    np.testing.assert_array_equal(again.initial_dlatents[0], np.broadcast_to(w[0, 0], w[0].shape))


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (np.zeros((3, 7), np.float32), "must be floats of shape"),
        (np.zeros((8, 512), np.int32), "must be floats of shape"),
        (np.full((8, 512), np.nan, np.float32), "NaN"),
        (None, "not a readable .npy"),
    ],
)
def test_bad_init_file_is_one_clear_line(G, tmp_path, content, needle):
    path = tmp_path / "bad.npy"
    if content is None:
        path.write_bytes(b"not numpy")
    else:
        np.save(path, content)
    with pytest.raises(BabyganError) as info:
        Encoder(G, dataclasses.replace(PIXEL, init=str(path)))
    assert str(path) in str(info.value) and needle in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(BabyganError, match="init file not found"):
        Encoder(G, dataclasses.replace(PIXEL, init=str(tmp_path / "missing.npy")))


# ----------------------------------------------------------------------------- the cache key


def test_every_option_is_in_the_cache_key():
    base = EncoderSettings()
    changed = {
        "optimizer": "lbfgs",
        "face_mask": True,
        "early_stopping": True,
        "average_best_loss": 0.25,
        "sharpen_input": True,
        "tile_dlatents": True,
    }
    keys = {base.cache_key()}
    for name, value in changed.items():
        keys.add(dataclasses.replace(base, **{name: value}).cache_key())
    assert len(keys) == len(changed) + 1
    masked = dataclasses.replace(base, face_mask=True)
    assert masked.cache_key() != dataclasses.replace(masked, mask_scale=1.4).cache_key()
    stopping = dataclasses.replace(base, early_stopping=True)
    assert stopping.cache_key() != dataclasses.replace(stopping, early_stopping_patience=3).cache_key()
    # what does not change the dlatents stays out: the composite, and settings of switched-off options
    assert base.cache_key() == dataclasses.replace(base, composite=True, composite_blur=2.0).cache_key()
    assert base.cache_key() == dataclasses.replace(base, mask_scale=1.4).cache_key()
    assert base.cache_key() == dataclasses.replace(base, early_stopping_threshold=0.1).cache_key()
    lbfgs = dataclasses.replace(base, optimizer="lbfgs")
    assert lbfgs.cache_key() == dataclasses.replace(lbfgs, lr=0.01, average_best_loss=0.5).cache_key()


def test_cache_key_holds_the_mask_and_the_init_file_content(G, targets, tmp_path):
    images, w = targets
    enc = Encoder(G, dataclasses.replace(PIXEL, face_mask=True))
    m = left_half_mask(1, 32)[0]
    assert enc.cache_path(images[0], m) == enc.cache_path(images[0], m.copy())
    assert enc.cache_path(images[0], m) != enc.cache_path(images[0], 1.0 - m)
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, w[0])
    np.save(b, w[0])
    pa = Encoder(G, dataclasses.replace(PIXEL, init=str(a))).cache_path(images[0])
    pb = Encoder(G, dataclasses.replace(PIXEL, init=str(b))).cache_path(images[0])
    assert pa == pb  # the same content under another name
    np.save(b, w[1])
    assert Encoder(G, dataclasses.replace(PIXEL, init=str(b))).cache_path(images[0]) != pa


def test_masked_results_are_cached_per_mask(G, targets):
    images, _ = targets
    enc = Encoder(G, dataclasses.replace(PIXEL, face_mask=True, iterations=2))
    calls = []
    real = enc.encode

    def counting(imgs, **kw):
        calls.append(len(imgs))
        return real(imgs, **kw)

    enc.encode = counting  # type: ignore[method-assign]
    m = left_half_mask(2, 32)
    first = enc.encode_cached(images, masks=m, progress=False)
    again = enc.encode_cached(images, masks=m, progress=False)
    np.testing.assert_array_equal(first, again)
    assert calls == [2]
    enc.encode_cached(images, masks=1.0 - m, progress=False)
    assert calls == [2, 2]


# ----------------------------------------------------------------------------- CLI and records


@pytest.mark.slow
def test_encode_cli_with_the_options(tmp_path):
    """babygan encode on the astronaut photo: face mask from the alignment's landmarks, L-BFGS,
    the composite keeps the photo outside the face; the options are in the record."""
    from click.testing import CliRunner
    from PIL import Image
    from pipeline_fixtures import make_photos, make_tiny_model

    from babygan.cli import main

    model, _ = make_tiny_model(tmp_path)
    dad, _ = make_photos(tmp_path)
    out = tmp_path / "out"
    args = ["encode", dad, "-m", model, "-o", out, "--perceptual", "pixel", "--init", "dlatent_avg"]
    args += ["--optimizer", "lbfgs", "--iterations", "3", "--face-mask", "--composite", "-q"]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    from babygan.align import align_photo
    from babygan.render import read_png_metadata

    png = out / "astronaut_reconstruction.png"
    with Image.open(png) as im:
        recon = np.asarray(im.convert("RGB"))
    aligned = align_photo(dad, output_size=32).image
    assert np.array_equal(recon[0, 0], aligned[0, 0])  # a corner: the photo, not the render
    record = read_png_metadata(png)
    assert record["encoder"]["face_mask"] is True and record["encoder"]["optimizer"] == "lbfgs"
    assert record["encoder"]["composite"] is True
    # --init FILE.npy from the written result; a wrong file is one line naming it
    again = CliRunner().invoke(
        main, [str(a) for a in [*args[:-1], "--init", out / "astronaut.npy", "--no-cache", "-q"]]
    )
    assert again.exit_code == 0, again.output
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 3), np.float32))
    wrong = CliRunner().invoke(main, [str(a) for a in [*args[:-1], "--init", bad, "-q"]])
    assert wrong.exit_code == 1 and str(bad) in wrong.output and "must be floats of shape" in wrong.output
