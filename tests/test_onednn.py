"""oneDNN under TensorFlow: asked for on every x86-64 CPU, and the stride-1 convolution in the
form its fast kernels run (babygan/backend/onednn.py). Each check runs in a fresh process, since
TensorFlow reads its oneDNN setting once, when it is imported."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

x86 = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="oneDNN's default is x86-64's"
)


def _run(code: str, **env: str | None) -> list[str]:
    full = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    full.pop("TF_ENABLE_ONEDNN_OPTS", None)
    full.update({k: v for k, v in env.items() if v is not None})
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@x86
def test_tensorflow_runs_onednn_on_any_x86_cpu_unless_the_user_says_otherwise():
    """TensorFlow turns oneDNN on by itself only on AVX-512 VNNI CPUs; on AVX2 ones its Eigen
    convolutions made the encoder's step 1.5 x slower. babygan asks for oneDNN, and a user's
    own ``TF_ENABLE_ONEDNN_OPTS`` is kept."""
    code = """
        from babygan import backend
        backend.start()
        print(backend.onednn.enabled())
        """
    assert _run(code) == ["True"]
    assert _run(code, TF_ENABLE_ONEDNN_OPTS="0") == ["False"]


@x86
def test_the_python_api_runs_tensorflow_as_the_commands_do():
    """A Python user's first model (``babygan.Session``'s generator, dlib's network) starts the
    backend as a command does: oneDNN on, and none of TensorFlow's start-up lines on stderr.
    Before, the Python API ran Eigen's kernels on AVX2-only CPUs (1024 px renders 2.5 x slower
    there) and its children differed from the command's by rounding."""
    code = """
        import sys
        import babygan
        session = babygan.Session("builtin", offline=True, progress=False)
        _ = session.generator.runtime
        print("keras" in sys.modules, babygan.backend.onednn.enabled())
        """
    full = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    full.pop("TF_ENABLE_ONEDNN_OPTS", None)
    full.pop("BABYGAN_TF_VERBOSE", None)
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "True"]
    assert "absl" not in proc.stderr and "I0000" not in proc.stderr, proc.stderr
    # dlib's network alone (no generator first) starts it the same way
    code = """
        from babygan.identity import IdentityNet
        from babygan import backend
        IdentityNet()
        print(backend.onednn.enabled())
        """
    assert _run(code) == ["True"]


CONV_CODE = """
    import os
    import numpy as np
    from babygan import backend
    backend.start()
    import tensorflow as tf
    from keras import ops

    rng = np.random.default_rng(0)
    worst = 0.0
    for n, k, cin, cout in ((1, 3, 8, 16), (2, 3, 16, 8), (1, 1, 8, 3), (2, 5, 4, 4)):
        x = tf.constant(rng.standard_normal((n, 12, 12, cin)).astype(np.float32))
        w = tf.constant(rng.standard_normal((k, k, cin, cout)).astype(np.float32))
        up = tf.constant(rng.standard_normal((n, 12, 12, cout)).astype(np.float32))
        outs = []
        for conv in (backend.conv_same, lambda a, b: ops.conv(a, b, padding="same")):
            with tf.GradientTape(persistent=True) as tape:
                tape.watch([x, w])
                y = conv(x, w)
                loss = tf.reduce_sum(y * up)
            outs.append([y, *tape.gradient(loss, [x, w])])
        assert outs[0][0].shape == outs[1][0].shape == (n, 12, 12, cout)
        for a, b in zip(*outs):
            worst = max(worst, float(np.abs(a.numpy() - b.numpy()).max() / np.abs(b.numpy()).max()))
    def types(n):
        spec = tf.TensorSpec((n, 12, 12, 8)), tf.TensorSpec((3, 3, 8, 16))
        graph = tf.function(backend.conv_same).get_concrete_function(*spec).graph
        return {op.type for op in graph.get_operations()}

    cores = len(os.sched_getaffinity(0))
    print(worst < 1e-5, "Conv2DBackpropInput" in types(1), "Conv2D" in types(1), "Conv2D" in types(cores))
    """


@x86
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="batch 1 is a core's share on one core")
def test_conv_same_equals_the_convolution_and_its_gradients_and_runs_as_the_input_gradient():
    """Values and both gradients as ``keras.ops.conv`` gives them (float rounding apart), for
    3x3, 1x1 and 5x5 kernels at batch 1 and 2; with oneDNN on, a batch-1 graph holds no
    ``Conv2D`` (oneDNN's slow form for kernels that are not constants, one core busy) and a batch
    of one image per core does; with oneDNN off, ``Conv2D`` as before."""
    assert _run(CONV_CODE) == ["True", "True", "False", "True"]
    assert _run(CONV_CODE, TF_ENABLE_ONEDNN_OPTS="0") == ["True", "False", "True", "True"]


UPSAMPLE_CODE = """
    import os
    import numpy as np
    from babygan import backend
    backend.start()
    import tensorflow as tf
    from keras import ops

    rng = np.random.default_rng(0)
    worst = 0.0
    for n, h, cin, cout in ((1, 4, 8, 16), (1, 6, 5, 3), (2, 8, 4, 4), (1, 9, 3, 5)):
        x = tf.constant(rng.standard_normal((n, h, h, cin)).astype(np.float32))
        k = tf.constant(rng.standard_normal((4, 4, cout, cin)).astype(np.float32))
        up = tf.constant(rng.standard_normal((n, 2 * h, 2 * h, cout)).astype(np.float32))
        outs = []
        for conv in (backend.upsample_conv, lambda a, b: ops.conv_transpose(a, b, strides=2, padding="same")):
            with tf.GradientTape() as tape:
                tape.watch([x, k])
                y = conv(x, k)
                loss = tf.reduce_sum(y * up)
            outs.append([y, *tape.gradient(loss, [x, k])])
        assert outs[0][0].shape == outs[1][0].shape == (n, 2 * h, 2 * h, cout)
        for a, b in zip(*outs):
            worst = max(worst, float(np.abs(a.numpy() - b.numpy()).max() / np.abs(b.numpy()).max()))

    def conv_batches(n):
        spec = tf.TensorSpec((n, 8, 8, 8)), tf.TensorSpec((4, 4, 16, 8))

        def input_gradient(x, k):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = backend.upsample_conv(x, k)
            return tape.gradient(y, x)

        graph = tf.function(input_gradient).get_concrete_function(*spec).graph
        return sorted({op.inputs[0].shape[0] for op in graph.get_operations() if op.type == "Conv2D"})

    cores = len(os.sched_getaffinity(0))
    print(worst < 1e-5, conv_batches(1) == [cores], conv_batches(cores) == [cores])
    """


@x86
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="batch 1 is a core's share on one core")
def test_upsampling_equals_the_transposed_convolution_and_its_input_gradient_fills_the_cores():
    """The upsampling's values and both gradients as ``keras.ops.conv_transpose`` gives them
    (batch 1 and 2, even and odd sizes); with oneDNN on, the input gradient of a batch-1
    upsampling is a ``Conv2D`` over one band of rows per core (oneDNN runs ``Conv2D`` in
    parallel over the batch only), and with oneDNN off it is the plain stride-2 ``Conv2D``."""
    assert _run(UPSAMPLE_CODE) == ["True", "True", "True"]
    assert _run(UPSAMPLE_CODE, TF_ENABLE_ONEDNN_OPTS="0") == ["True", "False", "True"]
