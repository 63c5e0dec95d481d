"""The same networks and encoder under every Keras backend: JAX here, beside the default TensorFlow.

Keras fixes its backend when it is first imported, so the JAX runs happen in fresh
processes with ``KERAS_BACKEND=jax``: the parity tests against the official reference,
the encoder's self-inversion, VGG16 and determinism tests, the trainers' learning tests,
and the CLI end to end.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import REPO

needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="JAX is not installed (pip install -e '.[jax]')"
)


def test_running_backend_matches_the_environment():
    from babygan import backend

    assert backend.name() == os.environ.get("KERAS_BACKEND", "tensorflow")


def _jax_env() -> dict[str, str]:
    return {**os.environ, "KERAS_BACKEND": "jax", "BABYGAN_PRECISION": "fp32", "JAX_PLATFORMS": "cpu"}


@needs_jax
@pytest.mark.slow
def test_parity_and_encoder_tests_pass_under_jax():
    tests = [
        "tests/test_backends.py::test_running_backend_matches_the_environment",
        "tests/test_stylegan_parity.py",
        "tests/test_encoder.py::test_self_inversion_raises_psnr",
        "tests/test_encoder.py::test_deterministic_for_a_seed",
        "tests/test_encoder.py::test_vgg16_loss_path",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=REPO,
        env=_jax_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], tail


_JAX_CPU_FORMS = """
import numpy as np
from keras import ops
from babygan import backend
assert backend.name() == "jax"
rng = np.random.default_rng(0)
worst = 0.0
for h, w in ((8, 8), (7, 5)):
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    k = rng.standard_normal((4, 4, 4, 3)).astype(np.float32)
    ref = ops.convert_to_numpy(ops.conv_transpose(x, k, strides=2, padding="same"))
    got = ops.convert_to_numpy(backend.upsample_conv(x, k))
    assert got.shape == ref.shape == (2, 2 * h, 2 * w, 4)
    worst = max(worst, float(np.abs(got - ref).max()))
    for taps in ((1.0, 2.0, 1.0), (1.0, 3.0, 3.0, 1.0)):
        f = np.asarray(taps) / np.sum(taps)
        kern = np.tile(np.outer(f, f)[:, :, None, None], (1, 1, 3, 1)).astype(np.float32)
        before, after = (len(f) - 1) // 2, len(f) // 2
        padded = np.pad(x, ((0, 0), (before, after), (before, after), (0, 0)))
        ref = ops.convert_to_numpy(ops.depthwise_conv(padded, kern, padding="valid"))
        got = ops.convert_to_numpy(backend.blur(x, tuple(f)))
        assert got.shape == ref.shape == x.shape
        worst = max(worst, float(np.abs(got - ref).max()))
print("worst", worst)
assert worst < 1e-5
"""


@needs_jax
def test_jax_cpu_forms_of_blur_and_upsampling_equal_the_convolutions():
    """Under JAX on a CPU, backend.blur (shifted sums) and backend.upsample_conv (four phases of
    a 2x2 conv) replace XLA's slow depthwise and transposed convolutions: same numbers."""
    run = subprocess.run(
        [sys.executable, "-c", _JAX_CPU_FORMS], cwd=REPO, env=_jax_env(), capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "worst" in run.stdout


@needs_jax
@pytest.mark.slow
def test_trainers_learn_under_jax():
    """tests/test_train_learning.py (both trainers learn, resume exactly, refuse damaged
    checkpoints) in a JAX process: the training steps are compiled by jax.jit there."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_train_learning.py"],
        cwd=REPO,
        env=_jax_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    tail = run.stdout[-3000:] + run.stderr[-2000:]
    assert run.returncode == 0, tail
    assert " passed" in run.stdout and "skipped" not in run.stdout.splitlines()[-1], tail


@needs_jax
@pytest.mark.slow
def test_cli_generate_runs_under_jax_and_names_the_backend(tmp_path):
    from babygan.stylegan import random_generator

    model = random_generator(32, fmap_max=16, seed=1).save(tmp_path / "tiny.npz")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "babygan",
            "generate",
            "-m",
            str(model),
            "--seeds",
            "0-1",
            "-o",
            str(tmp_path),
        ],
        env={**_jax_env(), "BABYGAN_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Keras backend jax: running on the CPU" in run.stderr
    assert (tmp_path / "seed0000.png").is_file() and (tmp_path / "seed0001.png").is_file()


@needs_jax
@pytest.mark.slow
def test_predict_age_sweep_batch_and_encode_run_under_jax(tmp_path):
    """The whole child pipeline (align, encode, blend, edit, render, GIF) in JAX processes."""
    from pipeline_fixtures import FAST_ENCODER, make_photos, make_tiny_model

    model, directions = make_tiny_model(tmp_path)
    dad, mum = make_photos(tmp_path)
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(f"father,mother\n{dad.name},{mum.name}\n")
    env = {**_jax_env(), "BABYGAN_HOME": str(tmp_path / "home")}
    common = ["-m", str(model), *FAST_ENCODER]
    edits = ["--directions", str(directions)]
    for command, args in (
        ("predict", [str(dad), str(mum), *edits]),
        ("age-sweep", [str(dad), str(mum), *edits, "--ages", "1:40:3", "--gif"]),
        ("batch", [str(pairs), *edits]),
        ("encode", [str(dad)]),
    ):
        out = tmp_path / command
        run = subprocess.run(
            [sys.executable, "-m", "babygan", command, *args, *common, "-o", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        assert "Keras backend jax" in run.stderr
    assert (tmp_path / "predict" / "child.png").is_file()
    assert (tmp_path / "age-sweep" / "age_sweep.gif").is_file()
    assert (tmp_path / "batch" / "batch.json").is_file()
    assert (tmp_path / "encode" / f"{dad.stem}.npy").is_file()
