"""dlib's face descriptor ResNet as a pure ``keras.ops`` function of its parameters, NHWC.

The network of dlib's dnn_face_recognition_ex.cpp (``anet_type``): a 7x7 stride-2
convolution, affine, ReLU and 3x3 stride-2 max-pool, 14 residual units (two 3x3
convolutions each with an affine after each; the units that halve the size add a 2x2
average-pool of their input instead of the input), a global average and a 128-wide
linear layer. dlib pads a convolution by half its size only when its stride is 1, and
never pads its pools. Where a unit's two branches differ in size (8 px -> 3 px against
4 px), dlib's ``add_prev`` adds them in their common top-left corner and keeps the
larger one's other values: that is zero-padding the smaller one, done here too.

Runs under TensorFlow, JAX and PyTorch and is differentiable with respect to its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from keras import ops

from babygan import backend
from babygan.identity.reader import UNITS

Tensor = Any
COMPUTE_DTYPES = ("float32", "bfloat16")


def _conv(x: Tensor, params: Mapping[str, Tensor], name: str, stride: int, dtype: str) -> Tensor:
    w = params[f"{name}.weight"]
    padding = "same" if stride == 1 else "valid"  # dlib: half the kernel when stride 1, else none
    if dtype != "float32":
        y = ops.conv(ops.cast(x, dtype), ops.cast(w, dtype), strides=stride, padding=padding)
        y = ops.cast(y, "float32")
    elif stride == 1:
        y = backend.conv_same(x, w, params.get(f"{name}.weight_flipped"))
    else:
        y = ops.conv(x, w, strides=stride, padding=padding)
    return y + params[f"{name}.bias"]


def stride_one_kernels() -> list[str]:
    """The parameters holding the kernels of the stride-1 convolutions (``backend.conv_same``'s,
    which a caller may keep flipped beside them as ``NAME_flipped``)."""
    names = [f"unit{i}.conv_b.weight" for i in range(len(UNITS))]
    return names + [f"unit{i}.conv_a.weight" for i, (_, stride) in enumerate(UNITS) if stride == 1]


def _affine(x: Tensor, params: Mapping[str, Tensor], name: str) -> Tensor:
    return x * params[f"{name}.gamma"] + params[f"{name}.beta"]


def _pad_to(x: Tensor, height: int, channels: int) -> Tensor:
    """Zero-pad (N, h, w, c) at the bottom, right and last channels to (N, height, height, channels)."""
    h, c = int(x.shape[1]), int(x.shape[3])
    if h == height and c == channels:
        return x
    return ops.pad(x, ((0, 0), (0, height - h), (0, height - h), (0, channels - c)))


def _add(a: Tensor, b: Tensor) -> Tensor:
    """dlib's add_prev: the sum over the larger of the two shapes, each padded with zeros."""
    height = max(int(a.shape[1]), int(b.shape[1]))
    channels = max(int(a.shape[3]), int(b.shape[3]))
    return _pad_to(a, height, channels) + _pad_to(b, height, channels)


#: where ``features`` taps the network: the stem (72 px, 32 maps) and the last unit at each size
#: (35 px / 32, 17 px / 64, 8 px / 128, 4 px / 256 maps), as LPIPS taps VGG at each stage
FEATURE_UNITS = (2, 6, 9, 12)


def features(
    params: Mapping[str, Tensor],
    chips: Tensor,
    mean_rgb: tuple[float, float, float],
    *,
    compute_dtype: str = "float32",
) -> tuple[list[Tensor], Tensor]:
    """float (N, 150, 150, 3) RGB chips in 0..255 -> (feature maps float32 (N, h, w, c) after the
    stem's ReLU and after each unit of ``FEATURE_UNITS``, descriptors float32 (N, 128)): one pass.

    ``compute_dtype="bfloat16"`` runs the convolutions in bfloat16; everything else,
    and the result, stays float32.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype={compute_dtype!r}: choose one of {COMPUTE_DTYPES}")
    # dlib's input_rgb_image_sized: (pixel - channel mean) / 256
    x = (ops.cast(chips, "float32") - np.asarray(mean_rgb, np.float32)) / 256.0
    x = _conv(x, params, "stem.conv", 2, compute_dtype)
    x = ops.relu(_affine(x, params, "stem.affine"))
    taps = [x]
    x = ops.max_pool(x, 3, 2, padding="valid")
    for i, (_, stride) in enumerate(UNITS):
        p = f"unit{i}"
        y = _conv(x, params, f"{p}.conv_a", stride, compute_dtype)
        y = ops.relu(_affine(y, params, f"{p}.affine_a"))
        y = _affine(_conv(y, params, f"{p}.conv_b", 1, compute_dtype), params, f"{p}.affine_b")
        skip = x if stride == 1 else ops.average_pool(x, 2, 2, padding="valid")
        x = ops.relu(_add(y, skip))
        if i in FEATURE_UNITS:
            taps.append(x)
    x = ops.mean(x, axis=(1, 2))  # dlib's avg_pool_everything -> (N, 256)
    return taps, ops.matmul(x, params["fc.weight"])  # (N, 128)


def descriptor(
    params: Mapping[str, Tensor],
    chips: Tensor,
    mean_rgb: tuple[float, float, float],
    *,
    compute_dtype: str = "float32",
) -> Tensor:
    """float (N, 150, 150, 3) RGB chips in 0..255 -> float32 (N, 128) face descriptors
    (``features``' second result: the taps are tensors it computes anyway)."""
    return features(params, chips, mean_rgb, compute_dtype=compute_dtype)[1]
