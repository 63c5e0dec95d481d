"""StyleGAN (v1) mapping and synthesis as pure functions of a parameter dict, in ``keras.ops``.

One definition serves rendering, encoding and training, under whichever Keras backend
runs (TensorFlow, JAX or PyTorch; ``KERAS_BACKEND``). Layout NHWC.

``params`` holds the official parameters, unscaled, under the names of
``GeneratorConfig.param_shapes()``. The equalized-learning-rate factors
(``gain / sqrt(fan_in) * lrmul``) are applied here, at run time, exactly as the official
code multiplies its stored variables: the bits are the same, and gradients with respect
to ``params`` are those of the official training parametrisation.

``compute_dtype="bfloat16"`` runs the convolutions in bfloat16 while the normalisations,
styles, noise and output stay float32. ``"float64"`` (with float64 ``params``) is a slow
reference evaluation for measuring float32 rounding (scripts/bench_generator.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from keras import ops

from babygan.stylegan.config import GeneratorConfig

Tensor = Any  # a backend tensor (tf.Tensor, jax.Array, torch.Tensor) or a numpy array

_SQRT2 = math.sqrt(2.0)
_LRELU_ALPHA = 0.2
_EPS = 1e-8  # pixel norm and instance norm epsilon, as in the official code
COMPUTE_DTYPES = ("float32", "bfloat16", "float64")


def weight_scale(shape: Sequence[int], gain: float, lrmul: float = 1.0) -> float:
    """The official get_weight() runtime factor: gain / sqrt(fan_in) * lrmul, as float32."""
    fan_in = float(np.prod(shape[:-1]))
    return float(np.float32(gain / np.sqrt(fan_in) * lrmul))


def noise_shapes(config: GeneratorConfig) -> list[tuple[int, int]]:
    """(H, W) of each synthesis layer's noise input; empty when the model has no noise."""
    if not config.use_noise:
        return []
    return [(config.layer_resolution(i), config.layer_resolution(i)) for i in range(config.num_layers)]


def _lrelu(x: Tensor) -> Tensor:
    # the official formulation max(x, 0.2 x): dlatents bit-identical to the reference
    return ops.maximum(x, x * _LRELU_ALPHA)


def mapping(params: Mapping[str, Tensor], z: Tensor, config: GeneratorConfig) -> Tensor:
    """z float32 (N, latent_size) -> w float32 (N, num_layers, dlatent_size); no truncation.

    ``config.mapping_kind == "linear"``: one affine map to W+ (weights stored as they act).
    """
    x = ops.cast(z, "float32")
    if config.mapping_kind == "linear":
        w = ops.matmul(x, params["mapping.linear.weight"]) + params["mapping.linear.bias"]
        return ops.reshape(w, (-1, config.num_layers, config.dlatent_size))
    if config.normalize_latents:
        x = x * ops.rsqrt(ops.mean(ops.square(x), axis=1, keepdims=True) + _EPS)
    lrmul = config.mapping_lrmul
    for i in range(config.mapping_layers):
        w = params[f"mapping.dense{i}.weight"]
        b = params[f"mapping.dense{i}.bias"]
        scale = weight_scale(tuple(w.shape), _SQRT2, lrmul)
        x = _lrelu(ops.matmul(x, w * scale) + b * np.float32(lrmul))
    return ops.repeat(ops.expand_dims(x, 1), config.num_layers, axis=1)


def _instance_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image, per-channel mean and 1/std over H, W of float32 (N, H, W, C) -> two (N, 1, 1, C).

    A float32 sum over a million pixels in one pass loses digits (7.7e-4 x std from a float64
    render at 1024 px, against the official code's 2.0e-4): the values are summed over H then
    W, and the mean corrected by its residual (2.4e-4). Those extra passes are costly to
    differentiate, and their gradient is exactly the plain mean's, so the gradient takes the
    plain path and only the value the careful one (stop_gradient of the difference).
    """

    def careful_mean(t: Tensor) -> Tensor:
        return ops.mean(ops.mean(t, axis=1, keepdims=True), axis=2, keepdims=True)

    def plain_with_careful_value(t: Tensor, careful: Tensor) -> Tensor:
        plain = ops.mean(t, axis=(1, 2), keepdims=True)
        return plain + ops.stop_gradient(careful - plain)

    rough = careful_mean(x)
    mean = plain_with_careful_value(x, rough + careful_mean(x - rough))
    square = ops.square(x - mean)
    var = plain_with_careful_value(square, careful_mean(square))
    return mean, ops.rsqrt(var + _EPS)


def _epilogue(
    params: Mapping[str, Tensor],
    config: GeneratorConfig,
    layer: int,
    x: Tensor,
    w: Tensor,
    noises: Sequence[Tensor] | None,
    acc: str = "float32",
) -> Tensor:
    """Noise, bias, leaky ReLU, instance norm, AdaIN style (the official layer_epilogue), in ``acc``.

    Noise and bias are summed on their small broadcast shape first and the style scale is
    folded into the normalisation factor: the official arithmetic up to rounding order.
    """
    p = f"synthesis.layer{layer}"
    ch = config.layer_channels(layer)
    shift = ops.reshape(params[f"{p}.bias"], (1, 1, 1, ch))
    if config.use_noise:
        noise = params[f"{p}.noise"] if noises is None else noises[layer]
        shift = ops.cast(noise, acc) * ops.reshape(params[f"{p}.noise_strength"], (1, 1, 1, ch)) + shift
    style_w = params[f"{p}.style.weight"]
    style = ops.matmul(w[:, layer], style_w * weight_scale(tuple(style_w.shape), 1.0))
    style = style + params[f"{p}.style.bias"]  # (N, 2 * ch): scale (applied as 1 + s), then bias
    style = ops.expand_dims(ops.expand_dims(style, 1), 1)
    x = ops.leaky_relu(ops.cast(x, acc) + shift, negative_slope=_LRELU_ALPHA)
    mean, inv_std = _instance_stats(x)
    return (x - mean) * (inv_std * (style[..., :ch] + 1.0)) + style[..., ch:]


def _conv_kernel(params: Mapping[str, Tensor], layer: int, fused: bool, dtype: str) -> Tensor:
    w = params[f"synthesis.layer{layer}.conv.weight"]  # (3, 3, in, out) HWIO
    w = w * weight_scale(tuple(w.shape), _SQRT2)
    if fused:
        # Transposed-conv kernel (4, 4, out, in): the 3x3 kernel summed over its four one-pixel
        # shifts, as the official code does. It equals nearest upsampling + the 3x3 conv with
        # the kernel flipped in space; trained weights expect exactly that.
        wt = ops.pad(ops.transpose(w, (0, 1, 3, 2)), ((1, 1), (1, 1), (0, 0), (0, 0)))
        w = wt[1:, 1:] + wt[:-1, 1:] + wt[1:, :-1] + wt[:-1, :-1]
    return ops.cast(w, dtype)


def _blur_kernel(config: GeneratorConfig, channels: int, dtype: str) -> Tensor:
    f = np.asarray(config.blur_filter, np.float32)
    f = np.outer(f, f)
    f /= f.sum()
    return ops.cast(np.tile(f[:, :, None, None], (1, 1, channels, 1)), dtype)  # (k, k, C, 1)


def _upsample_conv(
    params: Mapping[str, Tensor], config: GeneratorConfig, layer: int, x: Tensor, dtype: str
) -> Tensor:
    fused = config.fused(layer // 2 + 2)
    kernel = _conv_kernel(params, layer, fused, dtype)
    if fused:
        return ops.conv_transpose(x, kernel, strides=2, padding="same")
    x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour 2x
    return ops.conv(x, kernel, strides=1, padding="same")


def synthesis(
    params: Mapping[str, Tensor],
    w: Tensor,
    config: GeneratorConfig,
    noises: Sequence[Tensor] | None = None,
    *,
    compute_dtype: str = "float32",
) -> Tensor:
    """w float32 (N, num_layers, dlatent_size) -> images float32 (N, R, R, num_channels).

    ``noises``: one tensor per layer, float32 (1 or N, res, res, 1); None uses the stored
    ``synthesis.layer{i}.noise`` (official ``randomize_noise=False``). The output is the raw
    network output (about [-1, 1] for a trained model).
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, not {compute_dtype!r}")
    dt = compute_dtype
    acc = "float64" if dt == "float64" else "float32"  # normalisations, styles, noise, output
    w = ops.cast(w, acc)
    n = ops.shape(w)[0]
    const = params["synthesis.const"]
    x = ops.broadcast_to(const, (n, *tuple(const.shape)[1:]))
    x = _epilogue(params, config, 0, x, w, noises, acc)
    x = ops.conv(ops.cast(x, dt), _conv_kernel(params, 1, False, dt), padding="same")
    x = _epilogue(params, config, 1, x, w, noises, acc)
    for layer in range(2, config.num_layers, 2):
        x = _upsample_conv(params, config, layer, ops.cast(x, dt), dt)
        if config.blur_filter is not None:
            x = ops.depthwise_conv(x, _blur_kernel(config, config.layer_channels(layer), dt), padding="same")
        x = _epilogue(params, config, layer, x, w, noises, acc)
        x = ops.conv(ops.cast(x, dt), _conv_kernel(params, layer + 1, False, dt), padding="same")
        x = _epilogue(params, config, layer + 1, x, w, noises, acc)
    rgb_w = params["synthesis.torgb.weight"]
    rgb = ops.conv(x, rgb_w * weight_scale(tuple(rgb_w.shape), 1.0), padding="same")
    return rgb + params["synthesis.torgb.bias"]
