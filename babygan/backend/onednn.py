"""oneDNN, TensorFlow's CPU kernels: asked for on every x86-64 CPU, and the form of a stride-1
convolution that its fast kernels run.

Under TensorFlow with oneDNN, a ``Conv2D`` whose kernel is not a graph constant (babygan's
kernels are arguments of the traced steps, see ``graph_store``) runs as im2col + GEMM, parallel
over the batch only: at batch 1 one core idles, and the 3x3 convolution of the built-in model at
64 px took 21.6 ms against 6.2 ms for ``Conv2DBackpropInput`` of the same size, which oneDNN
runs with its blocked "brgconv" kernels on any layout (``ONEDNN_VERBOSE=1`` shows both; 2-core
AMD EPYC with AVX2). A stride-1 'same' convolution is the input gradient of itself with the
kernel flipped in space and its channel axes swapped, so :func:`conv_same` computes it as that,
with its own gradient: the input's is again ``Conv2DBackpropInput``, the kernel's
``Conv2DBackpropFilter``.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import Any


def prefer() -> None:
    """Have TensorFlow run its CPU ops with oneDNN on every x86-64 CPU, unless the user set
    ``TF_ENABLE_ONEDNN_OPTS`` (or TensorFlow is already imported, when it is too late).

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI or newer; on AVX2-only
    CPUs it runs Eigen's convolutions, whose input gradient (``Conv2DBackpropInput``) took 2.5 x
    oneDNN's in the encoder's step: the step, batch 2 at 128 px, 0.27 s against 0.18 s on a
    2-core AMD EPYC with AVX2 (README, Speed)."""
    if "tensorflow" in sys.modules or platform.machine().lower() not in ("x86_64", "amd64"):
        return
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")


def enabled() -> bool:
    """Whether this process's TensorFlow runs its CPU ops with oneDNN (imports TensorFlow)."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:  # a TensorFlow without the probe: take its ops as they are
        return False
    return bool(_pywrap_util_port.IsMklEnabled())


def conv_same(x: Any, kernel: Any) -> Any:
    """``keras.ops.conv(x, kernel, padding="same")``, stride 1: x (N, H, W, in), kernel
    (k, k, in, out) with k odd -> (N, H, W, out), differentiable in both.

    Under TensorFlow on a CPU with oneDNN, for float32 batches smaller than the cores, it runs
    as ``Conv2DBackpropInput`` (see the module's docstring); elsewhere as ``keras.ops.conv``:
    with a core per image, oneDNN's GEMM form kept up (the built-in model's render and its
    gradient at batch 2 on 2 cores: 0.130 s against 0.131 s). The two differ by float rounding.
    """
    import keras
    from keras import ops

    k, n = tuple(kernel.shape), x.shape[0]
    if (
        keras.backend.backend() != "tensorflow"
        or (n is not None and n >= _cores())
        or str(getattr(x.dtype, "name", x.dtype)) != "float32"
        or k[0] % 2 == 0
        or k[0] != k[1]
        or not _cpu_only()
        or not enabled()
    ):
        return ops.conv(x, kernel, padding="same")
    return _conv_as_input_gradient(x, kernel)


def _cpu_only() -> bool:
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _conv_as_input_gradient(x: Any, kernel: Any) -> Any:
    import tensorflow as tf

    @tf.custom_gradient
    def conv(x: Any, kernel: Any) -> Any:
        flipped = tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2))  # (k, k, out, in)
        shape = tf.concat([tf.shape(x)[:3], tf.shape(kernel)[3:]], 0)
        y = tf.nn.conv2d_transpose(x, flipped, shape, 1, padding="SAME")
        y.set_shape(x.shape[:3].concatenate(kernel.shape[3:]))

        def grad(dy: Any) -> tuple[Any, Any]:
            dx = tf.nn.conv2d_transpose(dy, kernel, tf.shape(x), 1, padding="SAME")
            dk = tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(kernel), dy, (1, 1, 1, 1), "SAME")
            return dx, dk

        return y, grad

    return conv(x, kernel)
