"""DiffAugment (colour, translation, cutout) in keras.ops, x-flips, and random numbers drawn in-graph.

Differentiable augmentation (Zhao et al. 2020): the same kind of random transform is applied to
every image the discriminator sees, real or generated, and gradients flow through it to the
generator. The random choices are drawn on the host (``draw_params``, numpy) and passed in as
arrays, so a compiled step has no random state; translations are one-hot matrix products
(cheap, and their gradient is a matrix product too, not a scatter).

``hash_normal`` gives large arrays of N(0, 1) values (the generator's noise inputs) inside a
compiled step from a uint32 seed array: a counter-based integer hash, then Box-Muller.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

POLICIES = ("color", "translation", "cutout")


def draw_params(
    rng: np.random.Generator, n: int, resolution: int, policy: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """The random choices of one batch of n images, for ``augment``; {} for an empty policy."""
    out: dict[str, np.ndarray] = {}
    if "color" in policy:
        out["brightness"] = rng.uniform(-0.5, 0.5, (n, 1, 1, 1)).astype(np.float32)
        out["saturation"] = rng.uniform(0.0, 2.0, (n, 1, 1, 1)).astype(np.float32)
        out["contrast"] = rng.uniform(0.5, 1.5, (n, 1, 1, 1)).astype(np.float32)
    if "translation" in policy:
        t = int(resolution * 0.125 + 0.5)
        out["shift"] = rng.integers(-t, t + 1, (n, 2)).astype(np.int32)  # (dy, dx) pixels
    if "cutout" in policy:
        out["cutout"] = rng.integers(0, resolution, (n, 2)).astype(np.int32)  # centre (y, x)
    return out


def _shift_matrix(shift, resolution: int):
    """shift int (N,) -> float32 (N, R, R) one-hot M with (M @ v)[i] = v[i - shift], 0 outside."""
    idx = ops.arange(resolution, dtype="int32")
    src = ops.expand_dims(idx, 0) - ops.expand_dims(shift, 1)  # (N, R): source row of each row
    return ops.cast(ops.equal(ops.expand_dims(src, 2), ops.reshape(idx, (1, 1, resolution))), "float32")


def augment(images, params: dict):
    """images float (N, R, R, C) in ~[-1, 1] -> augmented, same shape and dtype.

    Colour: brightness + U(-0.5, 0.5), saturation x U(0, 2) around the pixel's channel mean,
    contrast x U(0.5, 1.5) around the image mean. Translation: up to 1/8 of the side, filled
    with zeros. Cutout: a zeroed square of half the side at a random centre.
    """
    x = images
    if not params:
        return x
    dtype = x.dtype
    if "brightness" in params:
        x = x + ops.cast(params["brightness"], dtype)
        mean = ops.mean(x, axis=-1, keepdims=True)
        x = (x - mean) * ops.cast(params["saturation"], dtype) + mean
        mean = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * ops.cast(params["contrast"], dtype) + mean
    n, r = x.shape[0], x.shape[1]
    if "shift" in params:
        shift = ops.convert_to_tensor(params["shift"], "int32")
        my = ops.cast(_shift_matrix(shift[:, 0], r), dtype)
        mx = ops.cast(_shift_matrix(shift[:, 1], r), dtype)
        x = ops.einsum("nij,njwc->niwc", my, x)
        x = ops.einsum("nkw,niwc->nikc", mx, x)
    if "cutout" in params:
        centre = ops.convert_to_tensor(params["cutout"], "int32")
        idx = ops.arange(r, dtype="int32")
        half = r // 4
        inside_y = ops.less(ops.abs(ops.expand_dims(idx, 0) - centre[:, :1]), half)  # (N, R)
        inside_x = ops.less(ops.abs(ops.expand_dims(idx, 0) - centre[:, 1:]), half)
        cut = ops.logical_and(ops.expand_dims(inside_y, 2), ops.expand_dims(inside_x, 1))  # (N, R, R)
        x = x * ops.cast(ops.logical_not(ops.expand_dims(cut, 3)), dtype)
    del n
    return x


# ---------------------------------------------------------------------- in-graph N(0, 1)

_GOLDEN = np.uint32(0x9E3779B9)
_M1 = np.uint32(0x7FEB352D)
_M2 = np.uint32(0x846CA68B)


def _hash_u32(x):
    """The 'lowbias32' integer hash (uint32 -> uint32, wrapping arithmetic)."""
    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))
    x = ops.multiply(x, _M1)
    x = ops.bitwise_xor(x, ops.right_shift(x, np.uint32(15)))
    x = ops.multiply(x, _M2)
    return ops.bitwise_xor(x, ops.right_shift(x, np.uint32(16)))


def _uniform(counter, key):
    """(counter, key) uint32 -> float32 in (0, 1), never 0 or 1."""
    bits = _hash_u32(ops.bitwise_xor(_hash_u32(ops.add(counter, key)), ops.multiply(key, _GOLDEN)))
    return (ops.cast(ops.right_shift(bits, np.uint32(8)), "float32") + 0.5) * (1.0 / 2**24)


def hash_normal(shape: tuple[int, ...], seed, stream: int = 0):
    """float32 N(0, 1) of ``shape`` from ``seed`` (a uint32 scalar tensor) and a stream number.

    Different (seed, stream) pairs give independent-looking arrays; the same pair the same one.
    """
    size = math.prod(shape)
    half = (size + 1) // 2
    # TensorFlow has no CPU kernel for a uint32 range: count in int32, then reinterpret
    counter = ops.cast(ops.arange(half, dtype="int32"), "uint32")
    seed = ops.cast(seed, "uint32")
    k1 = _hash_u32(ops.add(ops.multiply(seed, np.uint32(2654435761)), np.uint32(2 * stream + 1)))
    k2 = _hash_u32(ops.add(ops.multiply(seed, np.uint32(2654435761)), np.uint32(2 * stream + 2)))
    u1 = _uniform(counter, k1)
    u2 = _uniform(counter, k2)
    radius = ops.sqrt(-2.0 * ops.log(u1))
    angle = (2.0 * math.pi) * u2
    z = ops.concatenate([radius * ops.cos(angle), radius * ops.sin(angle)])
    return ops.reshape(z[:size], shape)
