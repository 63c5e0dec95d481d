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

from babygan import backend
from babygan.stylegan.config import FADE_TORGB, GeneratorConfig

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


def _mean_hw(t: Tensor) -> Tensor:
    """(N, H, W, C) -> (N, 1, 1, C): the mean over H, then over W.

    A float32 sum over a million pixels in one pass loses digits (7.7e-4 x std from a float64
    render at 1024 px, against the official code's 2.0e-4); in two stages of at most R terms
    each it keeps them. Its gradient is the plain mean's: the same linear map.
    """
    return ops.mean(ops.mean(t, axis=1, keepdims=True), axis=2, keepdims=True)


def _adain(t: Tensor, style: Tensor, ch: int) -> tuple[Tensor, Tensor, Tensor]:
    """Instance norm over H, W (eps 1e-8), then the style: t float (N, H, W, C), style (N, 1, 1, 2C).

    Returns the output and the statistics the gradient needs, mean and 1/std (N, 1, 1, C).
    Four passes over the activations plus two reads, where the textbook order takes six plus
    two: the centring is never materialised (the squared deviations are one op, and the mean
    and the style scale fold into one multiply and one add). Measured alone at 1024 px
    against float64 statistics, this order is 2e-6 x std off, as is a mean corrected by
    its residual (which costs two more passes); a one-pass float32 mean is 5e-4 off.
    """
    mean = _mean_hw(t)
    var = _mean_hw(ops.square(t - mean))
    rstd = ops.rsqrt(var + _EPS)
    scale = rstd * (style[..., :ch] + 1.0)
    return t * scale + (style[..., ch:] - mean * scale), mean, rstd


def _epilogue_pre(y: Tensor, noise: Tensor | None, strength: Tensor | None, bias: Tensor, acc: str) -> Tensor:
    """The leaky ReLU's input: y + noise x strength + bias, in ``acc`` (the official order)."""
    u = ops.cast(y, acc)
    if noise is not None:
        u = u + ops.cast(noise, acc) * strength
    return u + bias


def _epilogue_forward(
    y: Tensor,
    noise: Tensor | None,
    strength: Tensor | None,
    bias: Tensor,
    style: Tensor,
    acc: str,
    out_dtype: str,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """The official layer_epilogue: noise, bias, leaky ReLU, instance norm, AdaIN style.

    y (N, H, W, C) a convolution's output in any float dtype; noise (1 or N, H, W, 1) and its
    per-channel strength (1, 1, 1, C), or None; bias (C,); style (N, 1, 1, 2C) in ``acc``.
    Computes in ``acc``; returns the output in ``out_dtype`` (the next convolution's input
    dtype) and (mean, 1/std) of the instance norm, which :func:`_epilogue_backward` reuses.
    """
    t = ops.leaky_relu(_epilogue_pre(y, noise, strength, bias, acc), negative_slope=_LRELU_ALPHA)
    out, mean, rstd = _adain(t, style, int(t.shape[-1]))
    return ops.cast(out, out_dtype), (mean, rstd)


def _epilogue_backward(
    upstream: Tensor,
    args: tuple[Tensor | None, ...],
    saved: tuple[Tensor, Tensor],
    acc: str,
    out_dtype: str,
) -> tuple[Tensor, Tensor]:
    """The gradient of :func:`_epilogue_forward`'s output, given d loss / d output (N, H, W, C):
    (d / d y in y's dtype, d / d style (N, 1, 1, 2C)); :func:`_epilogue_param_grads` takes
    it on to noise, strength and bias.

    Written out, it takes two passes over the activations (the per-channel sums, then the
    input gradient), where the chain rule op by op takes about three times the forward's work.
    """
    y, noise, strength, bias, style = args
    mean, rstd = saved
    ch = int(y.shape[-1])
    hw = float(int(y.shape[1]) * int(y.shape[2]))
    g = ops.cast(upstream, acc)
    u = _epilogue_pre(y, noise, strength, bias, acc)
    positive = u > 0
    xhat = (ops.where(positive, u, u * _LRELU_ALPHA) - mean) * rstd
    d_shift = ops.sum(g, axis=(1, 2), keepdims=True)  # d / d style bias
    d_scale = ops.sum(g * xhat, axis=(1, 2), keepdims=True)  # d / d style scale
    gain = rstd * (style[..., :ch] + 1.0)
    d_t = gain * (g - d_shift / hw - xhat * (d_scale / hw))
    d_u = ops.where(positive, d_t, d_t * _LRELU_ALPHA)
    return ops.cast(d_u, y.dtype), ops.concatenate([d_scale, d_shift], axis=-1)


def _epilogue_param_grads(
    grads: tuple[Tensor, Tensor], args: tuple[Tensor | None, ...], acc: str, out_dtype: str
) -> tuple[Tensor | None, ...]:
    """d / d each of :func:`_epilogue_forward`'s tensor arguments (None for None), from
    :func:`_epilogue_backward`'s. Kept apart from it, unfused: the sums over the activations
    for noise, strength and bias cost a pass each, and only the trainers ask for them (the
    encoder's graph drops them)."""
    d_y, d_style = grads
    _y, noise, strength, _bias, _style = args
    d_u = ops.cast(d_y, acc)
    d_noise = d_strength = None
    if noise is not None:
        d_strength = ops.sum(d_u * ops.cast(noise, acc), axis=(0, 1, 2), keepdims=True)
        d_noise = ops.sum(d_u * strength, axis=3, keepdims=True)
        if int(noise.shape[0]) == 1:
            d_noise = ops.sum(d_noise, axis=0, keepdims=True)
        d_noise = ops.cast(d_noise, noise.dtype)
    return d_y, d_noise, d_strength, ops.sum(d_u, axis=(0, 1, 2)), d_style


# A dozen passes over the largest activations when run op by op, forward and three times that
# backward; fused, about three each way. Under TensorFlow this is the render's largest cost
# (scripts/bench_synthesis_stages.py) and most of the encoder's (scripts/bench_encoder_step.py).
#: layers smaller than this run their epilogue op by op: there XLA's compile of the fused kernels
#: costs more than the passes it saves (a cold predict of the 64 px built-in model: 1.5 s of 14)
FUSE_MIN_PIXELS = 128 * 128
_fused_epilogue = backend.fuse(
    _epilogue_forward, _epilogue_backward, _epilogue_param_grads, static=("acc", "out_dtype")
)


def _epilogue(
    prep: Mapping[str, Tensor],
    config: GeneratorConfig,
    layer: int,
    y: Tensor,
    w: Tensor,
    noises: Sequence[Tensor] | None,
    acc: str,
    out_dtype: str,
) -> Tensor:
    """Layer ``layer``'s epilogue on its convolution's output y: gathers its noise, bias and
    style (from w float (N, w_dim), the layer's own) and runs :func:`_epilogue_forward`, fused from
    ``FUSE_MIN_PIXELS`` up."""
    p = f"layer{layer}"
    noise = strength = None
    if config.use_noise:
        noise = prep[f"{p}.noise"] if noises is None else noises[layer]
        strength = prep[f"{p}.noise_strength"]
    style = ops.matmul(w, prep[f"{p}.style.weight"]) + prep[f"{p}.style.bias"]
    style = ops.expand_dims(ops.expand_dims(style, 1), 1)  # (N, 1, 1, 2ch): scale (as 1 + s), bias
    args = (y, noise, strength, prep[f"{p}.bias"], style)
    if int(y.shape[1]) * int(y.shape[2]) < FUSE_MIN_PIXELS:
        return _epilogue_forward(*args, acc=acc, out_dtype=out_dtype)[0]
    return _fused_epilogue(*args, acc=acc, out_dtype=out_dtype)


def _conv_kernel(params: Mapping[str, Tensor], layer: int, up: bool, fused: bool) -> Tensor:
    w = params[f"synthesis.layer{layer}.conv.weight"]  # (3, 3, in, out) HWIO
    w = w * weight_scale(tuple(w.shape), _SQRT2)
    if up:
        # Every upsampling runs as one stride-2 transposed conv with a (4, 4, out, in) kernel:
        # the 3x3 kernel summed over its four one-pixel shifts. With the kernel as stored this is
        # the official fused path (>= 128 px), which equals nearest upsampling + the 3x3 conv
        # with the kernel flipped in space; so the official non-fused path (nearest upsampling +
        # the conv, below 128 px) is the same construction on the flipped kernel. It takes 4
        # taps per output pixel instead of 9 and never materialises the upsampled input.
        if not fused:
            w = ops.flip(ops.flip(w, axis=0), axis=1)
        wt = ops.pad(ops.transpose(w, (0, 1, 3, 2)), ((1, 1), (1, 1), (0, 0), (0, 0)))
        w = wt[1:, 1:] + wt[:-1, 1:] + wt[1:, :-1] + wt[:-1, :-1]
    return w


def _blur_taps(config: GeneratorConfig) -> tuple[float, ...]:
    """The blur's 1-D taps, normalised so that their outer product sums to 1 (official blur2d)."""
    f = np.asarray(config.blur_filter, np.float64)
    return tuple(float(v) for v in f / f.sum())


def prepare_synthesis(
    params: Mapping[str, Tensor], config: GeneratorConfig, *, compute_dtype: str = "float32"
) -> dict[str, Tensor]:
    """The part of ``synthesis`` that depends on the parameters only: kernels scaled (and, for
    upsampling, made transposed) in the compute dtype, per-channel vectors shaped to broadcast.

    ``synthesis`` runs it inside every call (differentiable: training and the encoder see the
    official parametrisation); a renderer with fixed weights runs it once and calls
    ``synthesis_prepared``, which then touches no weight it need not read.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, not {compute_dtype!r}")
    dt = compute_dtype
    acc = "float64" if dt == "float64" else "float32"  # normalisations, styles, noise, output
    prep: dict[str, Tensor] = {"const": ops.cast(params["synthesis.const"], acc)}
    flips = backend.onednn.flips_pay(dt)  # the stride-1 kernels' flips, for batches under the cores
    for layer in range(config.num_layers):
        src, p = f"synthesis.layer{layer}", f"layer{layer}"
        ch = config.layer_channels(layer)
        if layer > 0:
            up = layer % 2 == 0
            kernel = _conv_kernel(params, layer, up, up and config.fused(layer // 2 + 2))
            prep[f"{p}.kernel"] = ops.cast(kernel, dt)
            if flips and not up:
                prep[f"{p}.kernel_flipped"] = backend.onednn.flip(prep[f"{p}.kernel"])
        prep[f"{p}.bias"] = ops.cast(params[f"{src}.bias"], acc)  # (ch,)
        if config.use_noise:
            if f"{src}.noise" in params:  # absent where the caller always gives noises (training)
                prep[f"{p}.noise"] = ops.cast(params[f"{src}.noise"], acc)
            strength = ops.cast(params[f"{src}.noise_strength"], acc)
            prep[f"{p}.noise_strength"] = ops.reshape(strength, (1, 1, 1, ch))
        style_w = params[f"{src}.style.weight"]
        prep[f"{p}.style.weight"] = ops.cast(style_w * weight_scale(tuple(style_w.shape), 1.0), acc)
        prep[f"{p}.style.bias"] = ops.cast(params[f"{src}.style.bias"], acc)
    rgb_w = params["synthesis.torgb.weight"]
    prep["torgb.weight"] = ops.cast(rgb_w * weight_scale(tuple(rgb_w.shape), 1.0), acc)
    prep["torgb.bias"] = ops.cast(params["synthesis.torgb.bias"], acc)
    if flips:
        prep["torgb.weight_flipped"] = backend.onednn.flip(prep["torgb.weight"])
    if f"{FADE_TORGB}.weight" in params:  # a grown model while its new block fades in (training only)
        prev_w = params[f"{FADE_TORGB}.weight"]
        prep["torgb_prev.weight"] = ops.cast(prev_w * weight_scale(tuple(prev_w.shape), 1.0), acc)
        prep["torgb_prev.bias"] = ops.cast(params[f"{FADE_TORGB}.bias"], acc)
    return prep


def synthesis_prepared(
    prep: Mapping[str, Tensor],
    w: Tensor,
    config: GeneratorConfig,
    noises: Sequence[Tensor] | None = None,
    *,
    compute_dtype: str = "float32",
    fade_alpha: Tensor | None = None,
) -> Tensor:
    """``synthesis`` from ``prepare_synthesis(params, config, compute_dtype=...)``'s output."""
    dt = compute_dtype
    acc = "float64" if dt == "float64" else "float32"
    w = ops.cast(w, acc)
    n = ops.shape(w)[0]
    # each layer's w (N, w_dim): one unstack, whose gradient is one stack, where a slice per
    # layer traced a slice and a slice's gradient each (a tenth of a step's graph)
    per_layer = ops.unstack(w, num=config.num_layers, axis=1)
    const = prep["const"]
    x = ops.broadcast_to(const, (n, *tuple(const.shape)[1:]))
    last = config.num_layers - 1
    x = _epilogue(prep, config, 0, x, per_layer[0], noises, acc, acc if last == 0 else dt)
    for layer in range(1, config.num_layers):
        p = f"layer{layer}"
        kernel = prep[f"{p}.kernel"]
        if layer % 2:
            x = backend.conv_same(x, kernel, prep.get(f"{p}.kernel_flipped"))
        else:
            x = backend.upsample_conv(x, kernel)
            if config.blur_filter is not None:
                x = backend.blur(x, _blur_taps(config))
        # the epilogue casts its output for the next convolution (ToRGB takes acc)
        x = _epilogue(prep, config, layer, x, per_layer[layer], noises, acc, acc if layer == last else dt)
        if layer == last - 2:
            half = x  # the previous top resolution's features, for the fade-in below
    rgb = backend.conv_same(x, prep["torgb.weight"], prep.get("torgb.weight_flipped"))
    rgb = backend.bias_add(rgb, prep["torgb.bias"])
    if fade_alpha is None:
        return rgb
    # progressive growing: the half-resolution ToRGB, nearest-upsampled, blended into the new
    # block's image; alpha 0 = the smaller model's image exactly, 1 = the new block alone
    old = ops.conv(ops.cast(half, acc), prep["torgb_prev.weight"], padding="same")
    old = backend.bias_add(old, prep["torgb_prev.bias"])
    old = ops.repeat(ops.repeat(old, 2, axis=1), 2, axis=2)
    return old + (rgb - old) * ops.cast(fade_alpha, acc)


def synthesis(
    params: Mapping[str, Tensor],
    w: Tensor,
    config: GeneratorConfig,
    noises: Sequence[Tensor] | None = None,
    *,
    compute_dtype: str = "float32",
    fade_alpha: Tensor | None = None,
) -> Tensor:
    """w float32 (N, num_layers, dlatent_size) -> images float32 (N, R, R, num_channels).

    ``noises``: one tensor per layer, float32 (1 or N, res, res, 1); None uses the stored
    ``synthesis.layer{i}.noise`` (official ``randomize_noise=False``). The output is the raw
    network output (about [-1, 1] for a trained model). ``fade_alpha`` (a float32 scalar in
    [0, 1]): a grown model in training, whose ``params`` hold ``FADE_TORGB`` (babygan.train.grow).
    """
    prep = prepare_synthesis(params, config, compute_dtype=compute_dtype)
    return synthesis_prepared(prep, w, config, noises, compute_dtype=compute_dtype, fade_alpha=fade_alpha)
