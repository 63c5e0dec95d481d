"""The Generator API: shapes, truncation, noise, minibatches, gradients, npz format, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from official_pickle import write_official_pickle
from tiny_generator import tiny_fused_generator, tiny_generator

from babygan.errors import ModelFileError
from babygan.stylegan import (
    Generator,
    GeneratorConfig,
    legacy,
    load_generator,
    random_generator,
    to_uint8,
    truncate,
)


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator(seed=0)


def test_shapes_and_dtypes(G: Generator) -> None:
    assert (G.resolution, G.num_layers, G.z_dim, G.w_dim) == (32, 8, 32, 32)
    assert G.dlatent_avg.shape == (32,) and G.dlatent_avg.dtype == np.float32
    z = np.random.RandomState(1).randn(3, G.z_dim)
    w = G.mapping(z, truncation_psi=0.7, truncation_cutoff=8)
    assert w.shape == (3, 8, 32) and w.dtype == np.float32
    images = G.synthesis(w)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    assert np.isfinite(images).all()
    assert images.std() > 0.05  # random weights still draw something, not a flat image
    assert G.mapping(np.zeros((0, G.z_dim))).shape == (0, 8, 32)
    assert G.synthesis(np.zeros((0, 8, 32))).shape == (0, 32, 32, 3)


def test_bad_shapes_are_rejected(G: Generator) -> None:
    with pytest.raises(ValueError, match="z must have shape"):
        G.mapping(np.zeros((2, 7)))
    with pytest.raises(ValueError, match="w must have shape"):
        G.synthesis(np.zeros((2, 7, 32)))
    with pytest.raises(ValueError, match="noise"):
        G.synthesis(np.zeros((1, 8, 32)), noise="loud")


def test_full_size_architecture_has_the_ffhq_parameter_count() -> None:
    config = GeneratorConfig()  # defaults = released FFHQ 1024
    assert (config.resolution, config.num_layers) == (1024, 18)
    assert config.num_params() == 26_212_019  # 26.2 M, the used part of the official Gs
    assert config.nf(1) == 512 and config.layer_channels(17) == 16


def test_truncation(G: Generator) -> None:
    z = np.random.RandomState(2).randn(4, G.z_dim)
    w = G.mapping(z)  # default psi 1.0: none
    np.testing.assert_array_equal(G.mapping(z, truncation_psi=1.0, truncation_cutoff=4), w)
    t = G.mapping(z, truncation_psi=0.5, truncation_cutoff=4)
    avg = G.dlatent_avg
    np.testing.assert_allclose(t[:, :4], avg + 0.5 * (w[:, :4] - avg), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(t[:, 4:], w[:, 4:], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(truncate(w, avg, 0.0, 8), np.broadcast_to(avg, w.shape), atol=1e-6)
    np.testing.assert_array_equal(truncate(w, avg, 0.5, None), w)


def test_noise_modes(G: Generator) -> None:
    w = G.mapping(np.random.RandomState(3).randn(3, G.z_dim))
    const = G.synthesis(w, noise="const")
    np.testing.assert_array_equal(const, G.synthesis(w, noise="const"))
    r1 = G.synthesis(w, noise="random", seed=1)
    assert np.abs(r1 - const).max() > 1e-2
    np.testing.assert_array_equal(r1, G.synthesis(w, noise="random", seed=1))
    assert np.abs(r1 - G.synthesis(w, noise="random", seed=2)).max() > 1e-2
    assert np.abs(G.synthesis(w, noise="random") - G.synthesis(w, noise="random")).max() > 1e-2


def test_minibatches_do_not_change_results(G: Generator) -> None:
    w = G.mapping(np.random.RandomState(4).randn(5, G.z_dim))
    small = Generator(G.config, G.params, source_sha256="x", minibatch=2)
    # float rounding apart, which the random weights' instance norms magnify: a CPU's kernels may
    # block a batch of 1, 2 or 5 differently, or run it in another form (backend.conv_same below
    # one image per core): up to 1.8e-5 seen on an AVX2 CPU, never images mixed (errors of order 1)
    np.testing.assert_allclose(small.synthesis(w), G.synthesis(w), atol=1e-4)
    # random noise with a seed is per image, whatever the minibatch
    np.testing.assert_allclose(
        small.synthesis(w, noise="random", seed=7),
        G.synthesis(w, noise="random", seed=7),
        atol=1e-4,
    )


def test_fused_upsampling_is_upsample_then_conv_with_the_flipped_kernel() -> None:
    # The official fused path (conv2d_transpose of the summed kernel) equals nearest
    # upsampling + a 3x3 conv whose kernel is flipped in space: the trained weights of the
    # >= 128 px layers expect exactly that, so both paths must agree once flipped.
    fused = tiny_fused_generator(seed=5)
    c = fused.config
    fused_layers = [i for i in range(2, c.num_layers, 2) if c.fused(i // 2 + 2)]
    assert fused_layers == [10]
    params = dict(fused.params)
    for i in fused_layers:
        params[f"synthesis.layer{i}.conv.weight"] = params[f"synthesis.layer{i}.conv.weight"][::-1, ::-1]
    plain = Generator(GeneratorConfig(**{**c.to_dict(), "fused_scale": False}), params, source_sha256="plain")
    w = fused.mapping(np.random.RandomState(5).randn(2, fused.z_dim), 0.7)
    a, b = fused.synthesis(w), plain.synthesis(w)
    assert a.shape == (2, 128, 128, 3)
    assert np.abs(a - b).max() <= 1e-4 * a.std()


def test_every_upsampling_is_the_official_nearest_upsample_then_conv() -> None:
    # Below 128 px the official code upsamples (nearest) and then convolves; network.py runs
    # every upsampling as one transposed conv of the flipped, shift-summed kernel instead.
    from keras import ops

    from babygan.stylegan import network

    rng = np.random.RandomState(8)
    x = rng.randn(2, 5, 6, 3).astype(np.float32)
    w = rng.randn(3, 3, 3, 4).astype(np.float32)
    params = {"synthesis.layer2.conv.weight": w}
    kernel = network._conv_kernel(params, 2, up=True, fused=False)
    ours = ops.convert_to_numpy(ops.conv_transpose(x, kernel, strides=2, padding="same"))
    up = np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)
    scaled = w * network.weight_scale(w.shape, np.sqrt(2.0))
    official = ops.convert_to_numpy(ops.conv(up, scaled, padding="same"))
    assert ours.shape == official.shape == (2, 10, 12, 4)
    np.testing.assert_allclose(ours, official, rtol=1e-5, atol=1e-5)


def test_gradient_through_synthesis_and_a_compiled_descent_step(G: Generator) -> None:
    from keras import ops

    from babygan import backend
    from babygan.stylegan import network

    w0 = G.mapping(np.random.RandomState(6).randn(2, G.z_dim))
    target = ops.convert_to_tensor(G.synthesis(G.mapping(np.random.RandomState(7).randn(2, G.z_dim))))
    noises = G._random_noise(3, 0, 2)

    def loss_fn(w, params, noises):
        loss = ops.mean(ops.square(network.synthesis(params, w, G.config, noises) - target))
        return loss, None

    grad_fn = backend.value_and_grad(loss_fn)
    _, grad = grad_fn(ops.convert_to_tensor(w0), G.tensors, noises)
    grad = ops.convert_to_numpy(grad)
    assert grad.shape == w0.shape
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0

    @backend.jit
    def step(w, params, noises):
        (loss, _), g = grad_fn(w, params, noises)
        return w - 0.1 * g, loss

    w = ops.convert_to_tensor(w0)
    w, first = step(w, G.tensors, noises)
    for _ in range(5):
        w, last = step(w, G.tensors, noises)
    assert float(last) < float(first)


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("batch_noise", [False, True])
def test_synthesis_gradients_match_finite_differences(
    G: Generator, batch_noise: bool, fused: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gradients the encoder and the trainers descend (through the fused layer epilogue,
    whose backward pass is written out, and through the op-by-op one small layers run) are the
    true derivatives: float64 central differences along random directions, for w, the noise
    inputs and every kind of parameter."""
    from keras import ops

    from babygan import backend
    from babygan.stylegan import network

    monkeypatch.setattr(network, "FUSE_MIN_PIXELS", 0 if fused else 10**9)

    if "64" not in str(ops.convert_to_tensor(np.zeros(1)).dtype):
        pytest.skip("this backend computes float64 in float32 (JAX without jax_enable_x64)")
    rng = np.random.default_rng(3)
    n = 2
    params = {k: ops.convert_to_tensor(v.astype(np.float64)) for k, v in G.params.items()}
    w = ops.convert_to_tensor(G.mapping(rng.standard_normal((n, G.z_dim))).astype(np.float64))
    noises = [
        ops.convert_to_tensor(a.astype(np.float64)) for a in G._random_noise(5, 0, n if batch_noise else 1)
    ]
    weights = ops.convert_to_tensor(rng.standard_normal((n, G.resolution, G.resolution, 3)))
    names = ["synthesis.layer7.bias", "synthesis.layer4.noise_strength", "synthesis.layer2.style.weight"]

    def loss(x, params, noises):
        w, picked, noise5 = x
        p = {**params, **dict(zip(names, picked, strict=True))}
        nz = [*noises[:5], noise5, *noises[6:]]
        img = network.synthesis(p, w, G.config, nz, compute_dtype="float64")
        return ops.sum(img * weights), None

    x = (w, [params[k] for k in names], noises[5])
    grads = backend.value_and_grad(loss)(x, params, noises)[1]
    flat_x = [x[0], *x[1], x[2]]
    flat_g = [ops.convert_to_numpy(g) for g in [grads[0], *grads[1], grads[2]]]
    for i, (xi, gi) in enumerate(zip(flat_x, flat_g, strict=True)):
        v = rng.standard_normal(tuple(xi.shape))
        eps = 1e-7 * float(np.abs(ops.convert_to_numpy(xi)).max() + 1.0)  # small: leaky ReLU kinks

        def moved(sign: float, i: int = i, v: np.ndarray = v, eps: float = eps) -> float:
            parts = list(flat_x)
            parts[i] = parts[i] + sign * eps * v
            return float(loss((parts[0], parts[1:-1], parts[-1]), params, noises)[0])

        numeric = (moved(1.0) - moved(-1.0)) / (2 * eps)
        analytic = float(np.sum(gi * v))
        assert analytic == pytest.approx(numeric, rel=1e-5, abs=1e-6), i


def test_to_uint8_is_the_official_convert() -> None:
    x = np.array([[-2.0, -1.0, -0.5, 0.0, 0.00393, 0.5, 1.0, 3.0]], np.float32).reshape(1, 1, 8, 1)
    u = to_uint8(x)
    assert u.dtype == np.uint8
    assert u.ravel().tolist() == [0, 0, 64, 128, 128, 191, 255, 255]


def test_npz_round_trip_is_exact(G: Generator, tmp_path: Path) -> None:
    path = G.save(tmp_path / "tiny.npz")
    assert path.is_file() and not list(tmp_path.glob(".*part*"))
    with np.load(path, allow_pickle=False) as npz:  # no pickle anywhere in our format
        assert "synthesis.const" in npz.files
    G2 = load_generator(path)
    assert G2.config == G.config
    for name, value in G.params.items():
        np.testing.assert_array_equal(G2.params[name], value)
    from babygan import models

    assert G2.source_sha256 == models.sha256_file(path)
    z = np.random.RandomState(8).randn(2, G.z_dim)
    np.testing.assert_array_equal(G2.run(z, 0.7), G.run(z, 0.7))
    # float16 storage (the built-in model ships so): half the file, float32 when read
    G.info["crop"] = {"recipe": "ffhq", "scale": 0.7}
    try:
        half = G.save(path.with_name("half.npz"), storage="float16")
    finally:
        G.info.clear()
    G3 = load_generator(half)
    assert G3.info == {"crop": {"recipe": "ffhq", "scale": 0.7}}  # the model file's own record
    assert half.stat().st_size < 0.6 * path.stat().st_size
    assert all(a.dtype == np.float32 for a in G3.params.values())
    const16 = G.params["synthesis.const"].astype(np.float16)
    np.testing.assert_array_equal(G3.params["synthesis.const"], const16)


def test_damaged_npz_is_a_clear_error(G: Generator, tmp_path: Path) -> None:
    data = G.save(tmp_path / "good.npz").read_bytes()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"^bad\.npz: "):
        load_generator(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, a=np.zeros(3))
    with pytest.raises(ModelFileError, match=r"^foreign\.npz: not a babygan generator file"):
        load_generator(foreign)


def test_converted_cache_is_written_then_used(G: Generator, tmp_path: Path, monkeypatch) -> None:
    from babygan import models

    pkl = write_official_pickle(tmp_path / "net.pkl", G)
    sha = models.sha256_file(pkl)
    G1 = load_generator(pkl)
    cached = models.cache_dir("converted") / f"{sha}.npz"
    assert cached.is_file() and G1.source_sha256 == sha

    def no_unpickling(path):
        raise AssertionError("the converted cache should have been used")

    def no_hashing(path):
        raise AssertionError("an unchanged file should not be hashed again")

    monkeypatch.setattr(legacy, "load_official", no_unpickling)
    monkeypatch.setattr(models, "sha256_file", no_hashing)
    G2 = load_generator(pkl)
    assert G2.source_sha256 == sha  # still the pickle's hash: latent caches keyed on it stay valid
    z = np.random.RandomState(9).randn(2, G.z_dim)
    np.testing.assert_array_equal(G2.run(z), G1.run(z))
    monkeypatch.undo()

    # a changed file is hashed and converted again
    other = tiny_generator(seed=1)
    write_official_pickle(pkl, other)
    G3 = load_generator(pkl)
    assert G3.source_sha256 == models.sha256_file(pkl) != sha
    np.testing.assert_array_equal(G3.params["synthesis.const"], other.params["synthesis.const"])


def test_damaged_converted_cache_is_rebuilt(G: Generator, tmp_path: Path) -> None:
    from babygan import models

    pkl = write_official_pickle(tmp_path / "net.pkl", G)
    cached = models.cache_dir("converted") / f"{models.sha256_file(pkl)}.npz"
    cached.write_bytes(b"PK garbage")
    G1 = load_generator(pkl)
    np.testing.assert_array_equal(G1.params["synthesis.const"], G.params["synthesis.const"])
    assert cached.stat().st_size > 1000  # rewritten


def test_random_generator_is_reproducible() -> None:
    a = random_generator(resolution=8, fmap_base=32, fmap_max=8, seed=4, latent_size=16, dlatent_size=16)
    b = random_generator(resolution=8, fmap_base=32, fmap_max=8, seed=4, latent_size=16, dlatent_size=16)
    assert a.source_sha256 == "random-4"
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    w = a.mapping(np.random.RandomState(0).randn(256, 16))
    # dlatent_avg is the mean mapping output, as training tracks it
    assert np.abs(w[:, 0].mean(axis=0) - a.dlatent_avg).max() < 0.5 * w[:, 0].std()


def test_importing_the_package_does_not_import_tensorflow() -> None:
    import subprocess
    import sys

    code = "import sys, babygan.stylegan, babygan.stylegan.legacy; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.heavy
def test_full_size_official_pickle_round_trip(tmp_path: Path) -> None:
    """The FFHQ 1024 architecture (random weights) through the official format and back.

    The pickle is written from babygan's own name table (tests/official_pickle.py), so this
    checks the round trip and the size, not the official names: tests/test_stylegan_parity.py
    judges those against NVlabs' reference pickle."""
    full = random_generator(resolution=1024, fmap_base=8192, fmap_max=512, seed=2)
    assert full.config.num_params() == 26_212_019
    pkl = write_official_pickle(tmp_path / "ffhq-like.pkl", full, form="gs")
    loaded = load_generator(pkl)
    assert (loaded.resolution, loaded.num_layers, loaded.z_dim, loaded.w_dim) == (1024, 18, 512, 512)
    z = np.random.RandomState(0).randn(1, 512)
    a, b = loaded.run(z, 0.7, 8), full.run(z, 0.7, 8)
    assert a.shape == (1, 1024, 1024, 3)
    np.testing.assert_array_equal(a, b)
