"""Growing an autoencoder model by a block (babygan.train.grow): at step 0 the grown model is the
small one, upsampled; E reads the larger faces; the grown run trains, resumes and finishes only
once its fade is over. Tiny models (16 -> 32 px), float32, a handful of steps; one test grows
the shipped 64 px model to 128 px and renders two faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from keras import ops

from babygan.errors import BabyganError
from babygan.stylegan import image_encoder, network
from babygan.train.autoencoder import AutoencoderTrainer
from babygan.train.config import AutoencoderConfig
from babygan.train.grow import grow_params, grown_state, read_source

TINY = {"fmap_base": 64, "fmap_max": 32, "batch": 4, "dlatent_size": 16, "mixed_precision": False}


def _faces(n: int, size: int) -> np.ndarray:
    """Smooth random colour fields: uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(5)
    small = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    return np.repeat(np.repeat(small, size // 4, axis=1), size // 4, axis=2).astype(np.uint8)


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def _autoencode(params, x, gc, alpha=None):
    w = image_encoder.encode(params, x, gc, fade_alpha=alpha)
    return _np(w), _np(network.synthesis(params, w, gc, fade_alpha=alpha))


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """The checkpoint folder of a 16 px autoencoder trained a few steps."""
    tr = AutoencoderTrainer(AutoencoderConfig(resolution=16, **TINY))
    faces = _faces(8, 16)
    for _ in range(3):
        tr.train_step(faces)
    return tr.save(tmp_path_factory.mktemp("small") / "checkpoint")


def test_the_grown_model_at_alpha_0_is_the_small_one_upsampled(small):
    gc16, params = read_source(small)
    gc32, grown = grow_params(gc16, params)
    assert (gc32.resolution, gc32.num_layers) == (32, gc16.num_layers + 2)
    x32 = _faces(4, 32).astype(np.float32) / 127.5 - 1.0
    x16 = x32.reshape(4, 16, 2, 16, 2, 3).mean(axis=(2, 4))  # what alpha 0 shows the old E
    w_s, img_s = _autoencode(params, x16, gc16)
    w_b, img_b = _autoencode(grown, x32, gc32, np.float32(0.0))
    assert w_b.shape == (4, gc32.num_layers, 16) and img_b.shape == (4, 32, 32, 3)  # E reads 32 px
    np.testing.assert_allclose(w_b[:, : gc16.num_layers], w_s, atol=1e-5)
    np.testing.assert_allclose(w_b[:, gc16.num_layers :], np.repeat(w_s[:, -1:], 2, axis=1), atol=1e-5)
    upsampled = np.repeat(np.repeat(img_s, 2, axis=1), 2, axis=2)
    assert np.abs(img_b - upsampled).max() < 1e-4
    # alpha 1 is the new block alone: a different image of the same size
    _, img_1 = _autoencode(grown, x32, gc32, np.float32(1.0))
    assert np.abs(img_1 - upsampled).max() > 0.01


def test_a_grown_run_fades_in_trains_resumes_and_finishes_after_the_fade(small, tmp_path):
    from babygan.train.finish import finished_generator

    folder = small
    # with the face network's perceptual and identity terms in the loss
    config = AutoencoderConfig(
        resolution=32, fade_kimg=0.008, ae_kimg=0.02, total_kimg=0.02, perceptual_weight=0.1,
        identity_weight=0.1, **TINY,
    )  # fmt: skip
    tr = AutoencoderTrainer(config, grown_state(folder, config))
    faces = _faces(8, 32)
    codes, recon = tr.encode_render(faces)  # the EMA networks at alpha 0
    assert codes.shape == (8, 8, 16) and recon.shape == (8, 32, 32, 3)
    with pytest.raises(BabyganError, match="still fading in"):
        finished_generator(tr, codes, {})
    metrics = [_np(tr.train_step(faces)) for _ in range(2)]
    assert all(np.isfinite(m[:5]).all() and m[3] > 0 and m[4] > 0 for m in metrics)  # recon .. identity
    assert tr.fade_alpha == pytest.approx(1.0)  # 8 images of a fade over 8
    tr.save(tmp_path / "ck")
    resumed = AutoencoderTrainer.resume(tmp_path / "ck", ae_kimg=0.024)
    assert (resumed.step, resumed.fade_alpha, resumed.config.ae_kimg) == (2, 1.0, 0.024)
    resumed.train_step(faces)
    G, _ = finished_generator(resumed, resumed.encode_render(faces)[0], {})
    assert G.resolution == 32 and "synthesis.torgb_prev.weight" not in G.params
    # a run that does not fit the source is a one-line error
    with pytest.raises(BabyganError, match="grows to 32 px"):
        grown_state(folder, AutoencoderConfig(resolution=64, fade_kimg=0.008, ae_kimg=0.02, **TINY))


def test_the_shipped_model_grows_by_a_block(tmp_path):
    """The shipped model (128 px; the 64 px one it was grown from, before) grows to twice its
    size, and at fade-in 0 the grown autoencoder is the shipped one on the 2x2-averaged face."""
    from babygan.builtin import builtin_model_path

    path = builtin_model_path()
    if not path.is_file():
        pytest.skip("no built-in model in this build")
    gc, params = read_source(path)
    r = gc.resolution
    gc2, grown = grow_params(gc, params)
    assert (gc2.resolution, gc2.num_layers) == (2 * r, gc.num_layers + 2)
    faces = _faces(2, 2 * r).astype(np.float32) / 127.5 - 1.0
    _, img_s = _autoencode(params, faces.reshape(2, r, 2, r, 2, 3).mean(axis=(2, 4)), gc)
    _, img_b = _autoencode(grown, faces, gc2, np.float32(0.0))
    assert np.abs(img_b - np.repeat(np.repeat(img_s, 2, axis=1), 2, axis=2)).max() < 1e-3


@pytest.mark.slow
def test_the_script_grows_resumes_and_retunes_a_run(tmp_path):
    """scripts/train_builtin.py: a tiny 16 px run, then a 32 px run grown from its checkpoint,
    stopped and resumed with a longer stage 1 (JAX on the CPU, in subprocesses)."""
    import json
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "train_builtin.py"
    faces = tmp_path / "faces.npy"
    np.save(faces, _faces(16, 32))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "BABYGAN_HOME": str(tmp_path / "h")}
    tiny = ["--batch", "4", "--fmap-base", "64", "--fmap-max", "32", "--latent", "16", "--fp32"]
    tiny += ["--report-seconds", "0", "--seed", "1"]

    def run(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), str(faces), *tiny, *args], env=env, capture_output=True, text=True,
            timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    run("--resolution", "16", "--out", str(tmp_path / "r16"), "--max-steps", "2")
    grow = [
        "--resolution",
        "32",
        "--out",
        str(tmp_path / "r32"),
        "--grow-from",
        str(tmp_path / "r16" / "checkpoint"),
    ]
    grow += ["--fade-kimg", "0.008", "--ae-kimg", "0.016", "--kimg", "0.024"]
    first = run(*grow, "--max-steps", "2")
    assert "growing" in first and "fade 0.50" in first, first
    second = run(*grow[:4], "--ae-kimg", "0.02", "--max-minutes", "5")  # resumes; stage 1 lengthened
    assert "resumed" in second, second
    meta = json.loads((tmp_path / "r32" / "checkpoint" / "meta.json").read_text())
    assert meta["nimg"] == 24 and meta["config"]["ae_kimg"] == 0.02 and meta["config"]["resolution"] == 32
    assert (tmp_path / "r32" / "stage1" / "meta.json").is_file()  # kept as stage 2 began
