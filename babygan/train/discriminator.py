"""A StyleGAN (v1)-like discriminator as a pure function of a parameter dict, in keras.ops.

Non-progressive ``D_basic`` at lod 0: FromRGB (1x1 conv) at full resolution, then per block
a 3x3 conv and a blurred 3x3 conv that halves the resolution (always the "fused" form, a
4x4 stride-2 kernel, which is the same as conv + 2x2 average pooling at a quarter of the
work), down to 4x4; there minibatch standard deviation (groups of 4, one feature), a 3x3
conv, a dense layer and the dense output logit. Equalized learning rate: the parameters are
unscaled N(0, 1) weights, multiplied by gain / sqrt(fan_in) at run time (gain sqrt(2), 1 for
the output); leaky ReLU 0.2. Feature maps per stage as the generator: min(fmap_base / 2**stage, fmap_max).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from keras import ops

from babygan import backend
from babygan.stylegan.config import GeneratorConfig
from babygan.train import augment

_SQRT2 = math.sqrt(2.0)
_BLUR = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0


def param_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
    """Every discriminator parameter, name -> shape (NHWC conv kernels (kh, kw, in, out))."""
    nf = config.nf
    top = config.resolution_log2
    shapes: dict[str, tuple[int, ...]] = {
        "fromrgb.weight": (1, 1, config.num_channels, nf(top - 1)),
        "fromrgb.bias": (nf(top - 1),),
    }
    for res in range(top, 2, -1):
        p = f"b{2**res}"
        shapes[f"{p}.conv0.weight"] = (3, 3, nf(res - 1), nf(res - 1))
        shapes[f"{p}.conv0.bias"] = (nf(res - 1),)
        shapes[f"{p}.conv1.weight"] = (3, 3, nf(res - 1), nf(res - 2))
        shapes[f"{p}.conv1.bias"] = (nf(res - 2),)
    shapes["b4.conv.weight"] = (3, 3, nf(1) + 1, nf(1))
    shapes["b4.conv.bias"] = (nf(1),)
    shapes["b4.dense0.weight"] = (16 * nf(1), nf(0))
    shapes["b4.dense0.bias"] = (nf(0),)
    shapes["b4.dense1.weight"] = (nf(0), 1)
    shapes["b4.dense1.bias"] = (1,)
    return shapes


def init_params(config: GeneratorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Official initialisation: weights N(0, 1) (scaled at run time), biases 0; float32."""
    rng = np.random.default_rng([seed, 0xD15C])
    return {
        name: (rng.standard_normal(shape) if name.endswith(".weight") else np.zeros(shape)).astype(np.float32)
        for name, shape in param_shapes(config).items()
    }


def _scale(shape: tuple[int, ...], gain: float = _SQRT2) -> float:
    return gain / math.sqrt(float(np.prod(shape[:-1])))


def _lrelu(x):
    # plain leaky ReLU: the sqrt(2) gain is in the weights' He scale, as in StyleGAN v1
    return ops.leaky_relu(x, negative_slope=0.2)


def _conv(x, params, name: str, dtype: str):
    w = params[f"{name}.weight"]
    k = ops.cast(w * _scale(tuple(w.shape)), dtype)
    y = ops.conv(x, k, strides=1, padding="same")
    return _lrelu(y + ops.cast(params[f"{name}.bias"], dtype))


def _conv_down(x, params, name: str, dtype: str):
    """Blur [1, 2, 1], then 3x3 conv and 2x2 average pooling, as one 4x4 stride-2 conv."""
    channels = x.shape[-1]
    blur = ops.cast(np.tile(_BLUR[:, :, None, None], (1, 1, channels, 1)).astype(np.float32), dtype)
    x = ops.depthwise_conv(x, blur, strides=1, padding="same")
    w = params[f"{name}.weight"]
    w = w * _scale(tuple(w.shape))
    w = ops.pad(w, [[1, 1], [1, 1], [0, 0], [0, 0]])
    w = (w[1:, 1:] + w[:-1, 1:] + w[1:, :-1] + w[:-1, :-1]) * 0.25
    y = ops.conv(x, ops.cast(w, dtype), strides=2, padding="same")
    return _lrelu(y + ops.cast(params[f"{name}.bias"], dtype))


def _minibatch_stddev(x, group_size: int = 4):
    """Append the mean standard deviation over groups of images as one more feature map."""
    n, h, w, c = x.shape
    g = min(group_size, n)
    if n % g:
        g = 1 if n % 2 else 2
    y = ops.reshape(ops.cast(x, "float32"), (g, -1, h, w, c))  # image i is in group i % (n // g)
    y = y - ops.mean(y, axis=0, keepdims=True)
    y = ops.sqrt(ops.mean(ops.square(y), axis=0) + 1e-8)  # (n // g, h, w, c)
    y = ops.mean(y, axis=(1, 2, 3))  # (n // g,)
    y = ops.tile(y, (g,))  # (n,)
    y = ops.broadcast_to(ops.reshape(y, (n, 1, 1, 1)), (n, h, w, 1))
    return ops.concatenate([x, ops.cast(y, x.dtype)], axis=-1)


def discriminator(params, images, config: GeneratorConfig, *, compute_dtype: str = "float32"):
    """images float (N, R, R, C) in ~[-1, 1] -> logits float32 (N,) (real > 0 > fake when trained).

    ``compute_dtype="bfloat16"`` runs the convolutions in bfloat16; the dense layers at 4x4
    and the output are float32.
    """
    x = ops.cast(images, compute_dtype)
    x = _conv(x, params, "fromrgb", compute_dtype)
    for res in range(config.resolution_log2, 2, -1):
        p = f"b{2**res}"
        x = _conv(x, params, f"{p}.conv0", compute_dtype)
        x = _conv_down(x, params, f"{p}.conv1", compute_dtype)
    x = _minibatch_stddev(x)
    x = _conv(x, params, "b4.conv", compute_dtype)
    x = ops.reshape(ops.cast(x, "float32"), (x.shape[0], -1))
    w0 = params["b4.dense0.weight"]
    x = _lrelu(ops.matmul(x, w0 * _scale(tuple(w0.shape))) + params["b4.dense0.bias"])
    w1 = params["b4.dense1.weight"]
    x = ops.matmul(x, w1 * _scale(tuple(w1.shape), gain=1.0)) + params["b4.dense1.bias"]
    return x[:, 0]


def make_d_loss(
    config: GeneratorConfig, compute_dtype: str, *, with_r1: bool, gamma: float, interval: int
) -> Callable[..., Any]:
    """The discriminator's loss for a step: ``d_loss(d_params, fakes, reals, aug_fake, aug_real)
    -> (total, (loss, r1, mean real logit, mean fake logit))``.

    Non-saturating logistic loss on DiffAugmented images; with ``with_r1``, lazy R1 on the
    reals (in float32, its real scores reused for the main loss), weighted by
    ``0.5 * gamma * interval``; r1 is NaN otherwise.
    """

    def real_scores(reals, d_params, aug):
        logits = discriminator(d_params, augment.augment(reals, aug), config, compute_dtype="float32")
        return ops.sum(logits), logits

    real_scores_grad = backend.value_and_grad(real_scores)

    def d_loss(d_params, fakes, reals, aug_fake, aug_real):
        fake = discriminator(d_params, augment.augment(fakes, aug_fake), config, compute_dtype=compute_dtype)
        if with_r1:
            (_, real), grad = real_scores_grad(reals, d_params, aug_real)
            r1 = ops.mean(ops.sum(ops.square(grad), axis=(1, 2, 3)))
        else:
            aug = augment.augment(reals, aug_real)
            real = discriminator(d_params, aug, config, compute_dtype=compute_dtype)
            r1 = ops.convert_to_tensor(np.float32(np.nan))
        loss = ops.mean(ops.softplus(fake)) + ops.mean(ops.softplus(-real))
        total = loss + r1 * (0.5 * gamma * interval) if with_r1 else loss
        return total, (loss, r1, ops.mean(real), ops.mean(fake))

    return d_loss
