"""The encoder on tiny generators: self-inversion, VGG16 path, cache, determinism, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from encoder_checks import assert_best_seen, assert_reconstructions_render_the_dlatents

from babygan.encoder import Encoder, EncoderSettings
from babygan.errors import BabyganError, ModelFileError

# Fast settings for a 32 px generator; "pixel" needs no VGG16 file.
# lr 0.05: the default 0.25 overshoots on this tiny random generator before it settles
PIXEL = EncoderSettings(iterations=100, lr=0.05, perceptual="pixel", init="dlatent_avg")


@pytest.fixture(scope="module")
def G():
    from babygan.stylegan import random_generator

    return random_generator(resolution=32, fmap_max=16, seed=0)


@pytest.fixture(scope="module")
def targets(G):
    """Two renders of known dlatents: uint8 (2, 32, 32, 3) and their (2, L, 512) dlatents."""
    from babygan.stylegan import to_uint8

    w = G.mapping(np.random.RandomState(1).randn(2, G.z_dim).astype(np.float32), truncation_psi=0.5)
    return to_uint8(G.synthesis(w)), w


def encode(G, images, settings, *, progress=False, offline=False, initial_dlatents=None):
    """One fresh Encoder's optimisation (what a caller with one batch does)."""
    encoder = Encoder(G, settings, offline=offline)
    return encoder.encode(images, progress=progress, initial_dlatents=initial_dlatents)


def encode_images(G, images, settings, *, use_cache=True, progress=False):
    return Encoder(G, settings).encode_cached(images, use_cache=use_cache, progress=progress)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB of two uint8 (N, H, W, 3) batches."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2, axis=(1, 2, 3))
    return 10 * np.log10(255.0**2 / mse)


def test_self_inversion_raises_psnr(G, targets):
    from babygan.stylegan import to_uint8

    images, _ = targets
    result = encode(G, images, PIXEL, progress=False)
    start = psnr(to_uint8(G.synthesis(result.initial_dlatents)), images)
    reached = psnr(result.reconstructions, images)
    print(f"tiny 32 px, {PIXEL.iterations} iterations: PSNR {start.round(1)} -> {reached.round(1)} dB")
    assert result.dlatents.shape == (2, G.num_layers, G.w_dim) and result.dlatents.dtype == np.float32
    assert result.loss_history.shape == (PIXEL.iterations, 2) and result.loss_history.dtype == np.float32
    assert result.reconstructions.shape == (2, 32, 32, 3) and result.reconstructions.dtype == np.uint8
    assert result.init == "dlatent_avg"
    np.testing.assert_array_equal(result.initial_dlatents[0, 0], G.dlatent_avg)
    assert np.all(reached > start + 4.0), (start, reached)
    # the returned dlatents are the best seen: they score the history's minimum
    assert_best_seen(G, PIXEL, images, result)
    # the reconstruction is the render of the returned dlatents (rendered here another way)
    assert_reconstructions_render_the_dlatents(G, result)


@pytest.mark.slow
def test_self_inversion_reference_128():
    """The same on the official-format 128 px reference generator (losses at 128 px)."""
    from conftest import shared_path

    from babygan.stylegan import load_generator, to_uint8

    G = load_generator(shared_path("reference", "stylegan-ref-128.pkl"))
    ref = np.load(shared_path("reference", "stylegan-ref-128.npz"))
    # random weights give a raw output wider than [-1, 1]: the uint8 target saturates, as
    # the reconstruction's uint8 conversion does, so the comparison stays like for like
    target = to_uint8(G.synthesis(ref["dlatents"][:1]))
    settings = EncoderSettings(iterations=40, perceptual="pixel", init="dlatent_avg", batch_size=1)
    result = encode(G, target, settings, progress=False)
    start = psnr(to_uint8(G.synthesis(result.initial_dlatents)), target)
    reached = psnr(result.reconstructions, target)
    print(f"reference 128 px, 40 iterations: PSNR {start.round(1)} -> {reached.round(1)} dB")
    assert np.all(reached > start + 1.0), (start, reached)


def test_deterministic_for_a_seed(G, targets):
    images, _ = targets
    settings = EncoderSettings(iterations=15, perceptual="pixel", init="dlatent_avg", seed=3)
    a = encode(G, images, settings, progress=False)
    b = encode(G, images, settings, progress=False)
    np.testing.assert_array_equal(a.dlatents, b.dlatents)
    np.testing.assert_array_equal(a.loss_history, b.loss_history)


def test_batch_partner_does_not_change_a_result(G, targets):
    """Each image's loss, Adam state and clipping draws are its own: batch 2 == one at a time
    (up to float rounding, which a long optimisation amplifies: hence few steps)."""
    images, _ = targets
    settings = dataclasses.replace(PIXEL, iterations=8)
    together = encode(G, images, settings, progress=False)
    alone = encode(G, images[:1], settings, progress=False)
    np.testing.assert_allclose(together.loss_history[:, 0], alone.loss_history[:, 0], rtol=1e-4)
    np.testing.assert_allclose(together.dlatents[0], alone.dlatents[0], atol=1e-4)


def test_initial_dlatents_are_used(G, targets):
    images, w = targets
    result = encode(
        G, images, EncoderSettings(iterations=1, perceptual="pixel"), initial_dlatents=w, progress=False
    )
    # one iteration: the only loss seen is that of the start, so the start is returned
    np.testing.assert_array_equal(result.dlatents, w.astype(np.float32))
    assert result.init == "given"


@pytest.mark.parametrize(
    ("images", "needle"),
    [
        (np.zeros((2, 32, 30, 3), np.uint8), "(N, S, S, 3)"),
        (np.zeros((32, 32, 3), np.uint8), "(N, S, S, 3)"),
        (np.zeros((1, 32, 32, 4), np.uint8), "(N, S, S, 3)"),
        (np.zeros((1, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((1, 8, 8, 3), np.uint8), "too small"),
    ],
)
def test_wrong_images_are_refused_clearly(G, images, needle):
    with pytest.raises(BabyganError, match="images") as info:
        encode(G, images, PIXEL, progress=False)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_bad_settings_are_refused():
    with pytest.raises(BabyganError, match="perceptual"):
        EncoderSettings(perceptual="lpips-maybe")
    with pytest.raises(BabyganError, match="init"):
        EncoderSettings(init="zeros")


def test_learning_rate_decays_by_staircase():
    assert EncoderSettings().learning_rate(40) == EncoderSettings().lr  # constant by default
    s = EncoderSettings(iterations=100, lr=0.25, decay_rate=0.9)  # BabyGAN's schedule
    assert s.decay_steps == 4
    assert s.learning_rate(1) == s.learning_rate(3) == 0.25
    assert s.learning_rate(4) == pytest.approx(0.225)
    assert s.learning_rate(100) == pytest.approx(0.25 * 0.9**25)


def test_cache_key_follows_the_settings_that_matter():
    base = EncoderSettings()
    assert base.cache_key() == EncoderSettings().cache_key()
    assert base.cache_key() == EncoderSettings(batch_size=1).cache_key()  # does not change results
    assert base.cache_key() != EncoderSettings(seed=1).cache_key()
    assert base.cache_key() != EncoderSettings(iterations=99).cache_key()
    assert base.cache_key() != EncoderSettings(perceptual="pixel").cache_key()


# ----------------------------------------------------------------------------- cache


@pytest.fixture
def counted(monkeypatch):
    """Counts the optimisations encode_images runs, and how many images each had."""
    calls: list[int] = []
    real = Encoder.encode

    def counting(self, images, *args, **kwargs):
        calls.append(len(images))
        return real(self, images, *args, **kwargs)

    monkeypatch.setattr(Encoder, "encode", counting)
    return calls


def test_second_call_comes_from_the_cache(G, targets, counted, _isolated_babygan_home):
    images, _ = targets
    settings = EncoderSettings(iterations=10, perceptual="pixel")
    first = encode_images(G, images, settings, progress=False)
    assert counted == [2]
    files = sorted((_isolated_babygan_home / "latents").glob("*.npy"))
    assert len(files) == 2
    assert not [p for p in (_isolated_babygan_home / "latents").iterdir() if ".part" in p.name]

    again = encode_images(G, images, settings, progress=False)
    assert counted == [2]  # no optimisation ran
    np.testing.assert_array_equal(first, again)
    assert again.shape == (2, G.num_layers, G.w_dim) and again.dtype == np.float32

    # only the image not seen before is encoded
    other = np.ascontiguousarray(images[:, ::-1])
    encode_images(G, np.stack([images[0], other[0]]), settings, progress=False)
    assert counted == [2, 1]

    # other settings, or --no-cache: encoded again
    encode_images(G, images, EncoderSettings(iterations=10, perceptual="pixel", seed=5), progress=False)
    encode_images(G, images, settings, use_cache=False, progress=False)
    assert counted == [2, 1, 2, 2]


def test_damaged_cache_entry_is_ignored(G, targets, counted, _isolated_babygan_home):
    images, _ = targets
    settings = EncoderSettings(iterations=5, perceptual="pixel")
    first = encode_images(G, images[:1], settings, progress=False)
    (entry,) = (_isolated_babygan_home / "latents").glob("*.npy")
    entry.write_bytes(b"not a numpy file")
    again = encode_images(G, images[:1], settings, progress=False)
    assert counted == [1, 1]
    np.testing.assert_array_equal(first, again)


# ----------------------------------------------------------------------------- VGG16


def write_legacy_vgg16_h5(path, seed: int = 0) -> None:
    """Save a randomly initialised Keras VGG16 (no top) in the legacy .h5 weights layout.

    The registry file (58 MB) cannot be downloaded in tests. This file has the same
    layout (one group per layer, ``layer_names`` / ``weight_names`` attributes, written
    by Keras' own legacy HDF5 writer), so the loading code path is the one the real
    file takes; only the values are random, which is legitimate for checking that the
    VGG16 loss is wired in and optimises, not for judging its quality.
    """
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    keras.utils.set_random_seed(seed)
    model = keras.applications.VGG16(include_top=False, weights=None)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "random_vgg16_notop.h5"
    write_legacy_vgg16_h5(path)
    return path


def test_vgg16_loss_path(G, targets, vgg_file):
    from babygan.stylegan import to_uint8

    images, _ = targets
    settings = dataclasses.replace(PIXEL, perceptual="vgg16", vgg16_weights=str(vgg_file))
    encoder = Encoder(G, settings)
    result = encoder.encode(images, progress=False)
    start = psnr(to_uint8(G.synthesis(result.initial_dlatents)), images)
    reached = psnr(result.reconstructions, images)
    print(f"tiny 32 px, VGG16 loss, {settings.iterations} it.: PSNR {start.round(1)} -> {reached.round(1)}")
    assert np.all(reached > start + 2.0)
    assert np.all(result.loss_history[-1] < result.loss_history[0])
    # the file's weights are the ones in use (not a fresh random VGG16)
    model = encoder.vgg
    import h5py

    with h5py.File(vgg_file) as f:
        group = f["block1_conv1"]
        names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
        kernel = group[names[0]][()]
    np.testing.assert_array_equal(model.get_layer("block1_conv1").get_weights()[0], kernel)


def test_vgg16_file_of_the_wrong_kind(G, targets, tmp_path):
    images, _ = targets
    bad = tmp_path / "vgg.h5"
    bad.write_bytes(b"this is not HDF5")
    settings = EncoderSettings(iterations=2, init="dlatent_avg", vgg16_weights=str(bad))
    with pytest.raises(ModelFileError, match="not a Keras VGG16"):
        encode(G, images, settings, progress=False)


def test_missing_vgg16_offline_says_which_file_and_the_way_out(G, targets):
    images, _ = targets
    with pytest.raises(ModelFileError) as info:
        encode(G, images, EncoderSettings(iterations=2, init="dlatent_avg"), offline=True, progress=False)
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--perceptual pixel" in message
    assert "--perceptual identity" in message and "\n" not in message


def test_unreachable_vgg16_download_fails_clearly(G, targets, tmp_path, monkeypatch):
    """Every mirror dead (a closed port on 127.0.0.1): a clear error, never a random VGG16."""
    import socket

    images, _ = targets

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    dead = f"http://127.0.0.1:{port}"
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        '[[file]]\nname = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"\nkind = "keras-vgg16"\n'
        f'licence = "test"\nurls = ["{dead}/vgg16.h5"]\n'
    )
    monkeypatch.setenv("BABYGAN_MANIFEST", str(manifest))
    monkeypatch.setenv("BABYGAN_MIRROR", dead)
    from babygan import registry

    registry._load_manifest.cache_clear()
    try:
        with pytest.raises(ModelFileError) as info:
            encode(G, images, EncoderSettings(iterations=2, init="dlatent_avg"), progress=False)
    finally:
        registry._load_manifest.cache_clear()
    message = str(info.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert "--perceptual pixel" in message


# ----------------------------------------------------------------------- render and load only what is used


@pytest.fixture
def synthesis_calls(G, monkeypatch):
    """Counts G.synthesis calls (full-resolution renders) and the images each rendered."""
    calls: list[int] = []
    real = G.synthesis

    def counting(w, *args, **kwargs):
        calls.append(len(w))
        return real(w, *args, **kwargs)

    monkeypatch.setattr(G, "synthesis", counting)
    return calls


def test_encode_renders_reconstructions_only_when_asked(G, targets, synthesis_calls):

    images, _ = targets
    result = encode(G, images, dataclasses.replace(PIXEL, iterations=3), progress=False)
    assert synthesis_calls == []  # the optimisation renders in its own graph, not with synthesis()
    recon = result.reconstructions
    assert recon.shape == (2, 32, 32, 3) and recon.dtype == np.uint8
    assert result.reconstructions is recon and synthesis_calls == [2]  # rendered once, then kept
    synthesis_calls.clear()
    assert_reconstructions_render_the_dlatents(G, result)  # the render of the returned dlatents


class _FakeEstimator:
    """Stands in for a Keras estimator: fits G and guesses dlatent_avg."""

    def __init__(self, G):
        self.G = G
        self.input_shape = (None, 32, 32, 3)
        self.output_shape = (None, G.num_layers, G.w_dim)

    def __call__(self, x, training=False):
        return np.broadcast_to(self.G.dlatent_avg, (len(x), *self.output_shape[1:])).astype(np.float32)


def test_fully_cached_call_loads_no_estimator(G, targets, counted, monkeypatch, tmp_path):
    import babygan.encoder.estimator as est

    loads: list[str] = []

    def fake_load(path):
        loads.append(str(path))
        return _FakeEstimator(G)

    monkeypatch.setattr(est, "load_estimator", fake_load)
    est_file = tmp_path / "est.keras"
    est_file.write_bytes(b"stands for an estimator")
    images, _ = targets
    settings = EncoderSettings(iterations=3, lr=0.05, perceptual="pixel", estimator=str(est_file))
    first = encode_images(G, images, settings, progress=False)
    assert counted == [2] and len(loads) >= 1
    loads.clear()
    again = encode_images(G, images, settings, progress=False)
    assert counted == [2] and loads == []  # everything cached: the estimator is not loaded
    np.testing.assert_array_equal(first, again)
    # the estimator file's content is part of the key: another file, another result
    est_file.write_bytes(b"another estimator")
    encode_images(G, images, settings, progress=False)
    assert counted == [2, 2]


def test_auto_estimator_that_does_not_load_files_results_as_dlatent_avg(
    G, targets, counted, monkeypatch, _isolated_babygan_home
):
    import babygan.encoder.estimator as est
    from babygan import models

    monkeypatch.setattr(models, "_models_dir_override", None)
    models_dir = models.models_dir()
    models_dir.mkdir(parents=True, exist_ok=True)
    (models_dir / est.FFHQ_ESTIMATOR).write_bytes(b"not an HDF5 file")
    monkeypatch.setattr(est, "_is_ffhq", lambda _G: True)
    images, _ = targets
    settings = EncoderSettings(iterations=3, lr=0.05, perceptual="pixel")
    first = encode_images(G, images, settings, progress=False)
    assert counted == [2]
    again = encode_images(G, images, settings, progress=False)
    assert counted == [2]  # found under the dlatent_avg key it was filed under
    np.testing.assert_array_equal(first, again)
    # the same as a start from dlatent_avg without any estimator file
    (models_dir / est.FFHQ_ESTIMATOR).unlink()
    np.testing.assert_array_equal(encode_images(G, images, settings, progress=False), first)
    assert counted == [2]


def test_the_encoder_owns_its_state_and_frees_it(targets):
    """One Encoder compiles its step once and reuses it; dropping it frees the generator
    (no module-level cache holds either)."""
    import gc
    import weakref

    from babygan.stylegan import random_generator

    images, _ = targets
    G2 = random_generator(resolution=32, fmap_max=16, seed=3)
    encoder = Encoder(G2, dataclasses.replace(PIXEL, iterations=1))
    encoder.encode(images[:1], progress=False)
    step = encoder._step
    encoder.encode(images[1:], progress=False)
    assert encoder._step is step
    ref = weakref.ref(G2)
    del G2, encoder, step
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_stepping_is_set_once_the_first_steps_graph_is_ready(G, targets, optimizer, tmp_path):
    """What a warm-up thread waits for before its own tracing (pipeline._parents). With Adam:
    the step's graph traced (and kept in the store), before its first run, whose graph
    optimisation and XLA compiling are TensorFlow's C++, beside which the other thread's
    tracing costs little. With L-BFGS: the first image done."""
    import threading

    from babygan import backend
    from babygan.backend.graph_store import GraphStore

    images, _ = targets
    settings = EncoderSettings(iterations=3, perceptual="pixel", init="dlatent_avg", optimizer=optimizer)
    store = GraphStore(tmp_path / "graphs")
    encoder = Encoder(G, settings, graphs=store)
    seen: list[tuple[int, int]] = []
    calls: list[int] = []

    class Stepping(threading.Event):
        def set(self) -> None:
            seen.append((len(calls), store.saved))
            super().set()

    if optimizer == "adam":
        real = encoder._step

        class Counted:  # the step, counting its runs
            def __call__(self, *a):
                calls.append(1)
                return real(*a)

            def __getattr__(self, name):
                return getattr(real, name)

        encoder.__dict__["_step"] = Counted()
    stepping = Stepping()
    encoder.encode(images, progress=False, stepping=stepping)
    assert stepping.is_set()
    if optimizer == "adam":
        kept = 1 if backend.name() == "tensorflow" else 0  # only TensorFlow's graphs are kept
        assert seen == [(0, kept)]  # before the first run, its graph ready; once
        assert len(calls) == 3
