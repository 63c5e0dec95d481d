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
``Conv2DBackpropFilter``. The same GEMM form runs the input gradient of the upsampling's
transposed convolution, a stride-2 ``Conv2D``: :func:`upsample_conv` gives it one band of the
image's rows per core instead (:func:`conv_in_bands`).
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Callable
from typing import Any


def prefer() -> None:
    """Have TensorFlow run its CPU ops with oneDNN on every x86-64 CPU, unless the user set
    ``TF_ENABLE_ONEDNN_OPTS`` (or TensorFlow is already imported, when it is too late).

    TensorFlow turns oneDNN on by itself only on CPUs with AVX-512 VNNI or newer; on AVX2-only
    CPUs it runs Eigen's convolutions, whose input gradient (``Conv2DBackpropInput``) took 2.5 x
    oneDNN's in the encoder's step: the step, batch 2 at 128 px, 0.27 s against 0.18 s on a
    2-core AMD EPYC with AVX2 (docs/speed-history.md)."""
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


def conv_same(x: Any, kernel: Any, flipped: Any | None = None) -> Any:
    """``keras.ops.conv(x, kernel, padding="same")``, stride 1: x (N, H, W, in), kernel
    (k, k, in, out) with k odd -> (N, H, W, out), differentiable in both. ``flipped``: the
    kernel's :func:`flip`, made once by a caller whose kernels never change (else made here,
    in every run of the graph: in the ager's step the flips took about 13 ms of 130).

    Under TensorFlow on a CPU with oneDNN, for float32 batches smaller than the cores, it runs
    as ``Conv2DBackpropInput`` (see the module's docstring); elsewhere as ``keras.ops.conv``:
    with a core per image, oneDNN's GEMM form kept up (the built-in model's render and its
    gradient at batch 2 on 2 cores: 0.130 s against 0.131 s). The two differ by float rounding.
    """
    from keras import ops

    k = tuple(kernel.shape)
    if not _small_batch(x) or k[0] % 2 == 0 or k[0] != k[1]:
        return ops.conv(x, kernel, padding="same")
    return _conv_as_input_gradient(x, kernel, flip(kernel) if flipped is None else flipped)


def flips_pay(dtype: Any) -> bool:
    """Whether :func:`conv_same` runs batches smaller than the cores in the flipped form here
    (TensorFlow with oneDNN on a CPU with 2 cores or more, float32): where a caller should keep
    its kernels' :func:`flip` beside them."""
    import keras

    return (
        keras.backend.backend() == "tensorflow"
        and str(getattr(dtype, "name", dtype)) == "float32"
        and _cores() > 1
        and _cpu_only()
        and enabled()
    )


def flip(kernel: Any) -> Any:
    """(k, k, in, out) -> (k, k, out, in), flipped in space: the filter with which
    ``Conv2DBackpropInput`` computes the 'same' convolution by ``kernel``."""
    import tensorflow as tf

    return tf.transpose(tf.reverse(kernel, [0, 1]), (0, 1, 3, 2))


def _cpu_only() -> bool:
    import tensorflow as tf

    return not tf.config.list_physical_devices("GPU")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _conv_as_input_gradient(x: Any, kernel: Any, flipped: Any) -> Any:
    import tensorflow as tf

    # flipped is closed over, not an argument: the kernel's gradient is dk below, whole
    @tf.custom_gradient
    def conv(x: Any, kernel: Any) -> Any:
        x_shape, k_shape = _shape(x), _shape(kernel)
        shape = _known(lambda xs, ks: [*xs[:3], ks[3]], x, kernel)
        if shape is None:
            shape = tf.concat([x_shape[:3], k_shape[3:]], 0)
        y = tf.nn.conv2d_transpose(x, flipped, shape, 1, padding="SAME")
        y.set_shape(x.shape[:3].concatenate(kernel.shape[3:]))

        def grad(dy: Any) -> tuple[Any, Any]:
            dx = tf.nn.conv2d_transpose(dy, kernel, x_shape, 1, padding="SAME")
            dk = tf.compat.v1.nn.conv2d_backprop_filter(x, k_shape, dy, (1, 1, 1, 1), "SAME")
            return dx, dk

        return y, grad

    return conv(x, kernel)


def upsample_conv(x: Any, kernel: Any) -> Any | None:
    """The stride-2 'same' transposed convolution of ``backend.upsample_conv`` (x (N, H, W, in),
    kernel (4, 4, out, in) -> (N, 2H, 2W, out)) in the form oneDNN runs fastest, or None where
    ``keras.ops.conv_transpose`` is that form already.

    Its forward pass is ``Conv2DBackpropInput``, which oneDNN's blocked kernels run on every
    core. Its input gradient is a stride-2 ``Conv2D``, which oneDNN runs as im2col + GEMM
    parallel over the batch only: at batch 1 on 2 cores the 64 -> 128 px one took 21.4 ms
    against 7.0 ms an image at batch 2 (``ONEDNN_VERBOSE=1``, 2-core AMD EPYC with AVX2). So
    for float32 batches smaller than the cores that gradient runs on the image cut into bands
    of rows, one batch entry each (:func:`conv_in_bands`)."""
    if not _small_batch(x):
        return None
    import tensorflow as tf

    @tf.custom_gradient
    def up(x: Any, kernel: Any) -> Any:
        x_shape, k_shape = _shape(x), _shape(kernel)
        shape = _known(lambda xs, ks: [xs[0], 2 * xs[1], 2 * xs[2], ks[2]], x, kernel)
        if shape is None:
            shape = tf.concat([x_shape[:1], 2 * x_shape[1:3], k_shape[2:3]], 0)
        y = tf.nn.conv2d_transpose(x, kernel, shape, 2, padding="SAME")
        n, h, w = x.shape[:3]
        y.set_shape((n, None if h is None else 2 * h, None if w is None else 2 * w, kernel.shape[2]))

        def grad(dy: Any) -> tuple[Any, Any]:
            dx = conv_in_bands(dy, kernel, 2, (1, 1, 1, 1))
            dk = tf.compat.v1.nn.conv2d_backprop_filter(dy, k_shape, x, (1, 2, 2, 1), "SAME")
            return dx, dk

        return y, grad

    return up(x, kernel)


def conv_in_bands(x: Any, kernel: Any, stride: int, pads: tuple[int, int, int, int]) -> Any:
    """A 'valid' convolution of x (N, H, W, in) padded by ``pads`` (top, bottom, left, right)
    with kernel (kh, kw, in, out) at ``stride`` -> (N, OH, OW, out), for a batch smaller than the
    cores: the output's rows are cut into one band per spare core, each band with the input rows
    it reads, and the bands go to one ``Conv2D`` as a batch (oneDNN's GEMM form is parallel over
    the batch only). The same sums as the whole convolution; differentiable (slices, a concat
    and a convolution). x's height must be known when traced."""
    import tensorflow as tf

    n, h = int(x.shape[0]), int(x.shape[1])
    kh = int(kernel.shape[0])
    top, bottom, left, right = pads
    out_h = (h + top + bottom - kh) // stride + 1
    bands = max(1, min(_cores() // n, out_h))
    rows = -(-out_h // bands)  # output rows per band; the last band may compute a few more
    extra = rows * bands - out_h
    x = tf.pad(x, ((0, 0), (top, bottom + extra * stride), (left, right), (0, 0)))
    span = (rows - 1) * stride + kh
    pieces = [x[:, b * rows * stride : b * rows * stride + span] for b in range(bands)]
    y = tf.nn.conv2d(tf.concat(pieces, 0), kernel, stride, "VALID")  # (bands * N, rows, OW, out)
    y = tf.concat(tf.split(y, bands, axis=0), 1)  # (N, bands * rows, OW, out)
    return y[:, :out_h] if extra else y


def _shape(t: Any) -> Any:
    """t's shape as an int32 tensor: a constant where the trace knows it."""
    import tensorflow as tf

    known = _known(lambda dims: dims, t)
    return tf.shape(t) if known is None else known


def _known(of: Callable[..., list[int]], *tensors: Any) -> Any | None:
    """``of`` the tensors' shapes (lists of ints) as one int32 constant where the trace knows
    them all, else None. One graph node, where ``tf.shape`` and its slices made about ten per
    convolution: a tenth of the ager's step."""
    import tensorflow as tf

    if not all(t.shape.is_fully_defined() for t in tensors):
        return None
    return tf.constant(of(*(t.shape.as_list() for t in tensors)), tf.int32)


def _small_batch(x: Any) -> bool:
    """Whether x is a batch smaller than the cores, of known size and height, for which
    :func:`flips_pay`: the batches that oneDNN's GEMM form leaves a core idle for."""
    n, h = x.shape[0], x.shape[1]
    return n is not None and h is not None and n < _cores() and flips_pay(x.dtype)
