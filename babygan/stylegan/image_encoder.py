"""E: an aligned face -> the W+ code of a generator, as a pure function of a parameter dict.

The built-in model is trained as an autoencoder: E reads a face, the StyleGAN synthesis
network (``network.synthesis``, the very one that renders) draws it back from E's code.
E ships inside the model file, under ``encoder.*`` names, and is the optimisation's first
guess when a parent is encoded.

Architecture (NHWC, equalized learning rate as the discriminator's: unscaled N(0, 1)
weights multiplied by gain / sqrt(fan_in) at run time, leaky ReLU 0.2): a 1x1 FromRGB,
then per block a 3x3 conv and a blurred 4x4 stride-2 conv down to 4x4, a 3x3 conv there,
a dense layer and a dense output of ``num_layers * dlatent_size`` values. No minibatch
statistics: each image is encoded on its own. Its parameters are listed by
``GeneratorConfig.encoder_param_shapes``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from keras import ops

from babygan.stylegan.config import ENCODER_PREFIX, FADE_FROMRGB, GeneratorConfig

Tensor = Any
_SQRT2 = math.sqrt(2.0)
_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def init_params(config: GeneratorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Weights N(0, 1) (scaled at run time), biases 0: codes start at about unit scale, away
    from zero (a zero code makes every style equal and the first gradients explode)."""
    rng = np.random.default_rng([seed, 0xE4C])
    return {
        name: (rng.standard_normal(shape) if name.endswith(".weight") else np.zeros(shape)).astype(np.float32)
        for name, shape in config.encoder_param_shapes().items()
    }


def scale(shape: tuple[int, ...], gain: float = _SQRT2) -> float:
    """The equalized-lr runtime factor gain / sqrt(fan_in)."""
    return gain / math.sqrt(float(np.prod(shape[:-1])))


def lrelu(x: Tensor) -> Tensor:
    return ops.leaky_relu(x, negative_slope=0.2)


def conv(x: Tensor, params: Any, name: str, dtype: str) -> Tensor:
    """3x3 (or 1x1) conv + bias + leaky ReLU, kernel in ``dtype``."""
    w = params[f"{name}.weight"]
    y = ops.conv(x, ops.cast(w * scale(tuple(w.shape)), dtype), strides=1, padding="same")
    return lrelu(y + ops.cast(params[f"{name}.bias"], dtype))


def conv_down(x: Tensor, params: Any, name: str, dtype: str) -> Tensor:
    """Blur [1, 2, 1], then a 3x3 conv and 2x2 average pooling, as one 4x4 stride-2 conv."""
    channels = x.shape[-1]
    blur = ops.cast(np.tile(_BLUR[:, :, None, None], (1, 1, channels, 1)).astype(np.float32), dtype)
    x = ops.depthwise_conv(x, blur, strides=1, padding="same")
    w = params[f"{name}.weight"]
    w = ops.pad(w * scale(tuple(w.shape)), [[1, 1], [1, 1], [0, 0], [0, 0]])
    w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
    y = ops.conv(x, ops.cast(w, dtype), strides=2, padding="same")
    return lrelu(y + ops.cast(params[f"{name}.bias"], dtype))


def encode(
    params: Any, images: Tensor, config: GeneratorConfig, *, compute_dtype: str = "float32",
    fade_alpha: Tensor | None = None,
) -> Tensor:  # fmt: skip
    """images float (N, R, R, 3) in [-1, 1] -> W+ codes float32 (N, num_layers, dlatent_size).

    ``params`` holds the ``encoder.*`` entries (other entries are ignored);
    ``compute_dtype="bfloat16"`` runs the convolutions in bfloat16, the dense layers in float32.
    ``fade_alpha`` (float32 scalar in [0, 1]): a grown E in training (babygan.train.grow), whose
    first block fades in over the previous FromRGB of the 2x2-averaged image.
    """
    p = {k[len(ENCODER_PREFIX) :]: v for k, v in params.items() if k.startswith(ENCODER_PREFIX)}
    dt = compute_dtype
    x = conv(ops.cast(images, dt), p, "fromrgb", dt)
    res = config.resolution
    while res > 4:
        x = conv(x, p, f"b{res}.conv0", dt)
        x = conv_down(x, p, f"b{res}.conv1", dt)
        if fade_alpha is not None and res == config.resolution:
            # alpha 0: exactly the smaller E reading the image averaged down to its size
            small = ops.cast(ops.average_pool(ops.cast(images, "float32"), 2, 2, padding="valid"), dt)
            old = conv(small, p, FADE_FROMRGB[len(ENCODER_PREFIX) :], dt)
            x = old + (x - old) * ops.cast(fade_alpha, dt)
        res //= 2
    x = conv(x, p, "b4.conv", dt)
    x = ops.reshape(ops.cast(x, "float32"), (-1, 16 * config.encoder_width(4)))
    w0, w1 = p["b4.dense0.weight"], p["b4.dense1.weight"]
    x = lrelu(ops.matmul(x, w0 * scale(tuple(w0.shape))) + p["b4.dense0.bias"])
    x = ops.matmul(x, w1 * scale(tuple(w1.shape), gain=1.0)) + p["b4.dense1.bias"]
    return ops.reshape(x, (-1, config.num_layers, config.dlatent_size))
