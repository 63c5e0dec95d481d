"""The encoder's image losses in ``keras.ops``: VGG16 block3_conv3 features, pixel logcosh, MS-SSIM.

Images enter these functions as float tensors in the 0..255 range, NHWC, at the loss
resolution (pbaylies' encoder works in that range; its loss weights assume it). They
run under any Keras backend; Keras is imported inside functions so that importing this
module is cheap.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from babygan.errors import BabyganError, ModelFileError, first_line

#: the layer whose activations pbaylies' encoder compares (``vgg16.layers[9]``)
VGG_LAYER = "block3_conv3"
#: tf.image.ssim_multiscale's default weights of its five scales
_MSSSIM_POWERS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_SSIM_FILTER = 11


def resolve_vgg16_weights(name_or_path: str, *, offline: bool = False) -> Path:
    """The local VGG16 weights file, fetched by registry name if needed.

    Fails with a message that names the file and offers ``--perceptual identity``, which
    needs no download: a randomly initialised VGG16 is never used in its place.
    """
    from babygan.models import resolve_model_file

    try:
        return resolve_model_file(name_or_path, offline=offline)
    except ModelFileError as exc:
        raise ModelFileError(
            f"{exc} (the VGG16 perceptual loss needs this file; or encode without it, with nothing "
            "to download: --perceptual identity, or --perceptual pixel)"
        ) from exc


def vgg16_features(weights: Path, size: int, *, precision: str = "fp32") -> Any:
    """A Keras model: float32 (N, size, size, 3) Caffe-preprocessed BGR -> block3_conv3 activations.

    Built from ``keras.applications.VGG16(include_top=False, weights=None)`` and the given
    legacy Keras .h5 weights file (the layout of the registry's
    vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5). With ``precision="bf16"`` its
    layers compute in bfloat16 (weights stay float32). The caller keeps the model: an
    ``Encoder`` builds it once.
    """
    import keras

    policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bf16" else "float32")
    try:
        full = keras.applications.VGG16(include_top=False, weights=None, input_shape=(size, size, 3))
    finally:
        keras.config.set_dtype_policy(policy)
    try:
        # Keras 3 reads a plain ".h5" with its legacy loader, which checks the number of
        # layers with weights and every array's shape: a wrong file fails here, loudly.
        full.load_weights(str(weights))
    except Exception as exc:  # any reader error becomes one clear line naming the file
        raise ModelFileError(f"{weights}: not a Keras VGG16 no-top weights file ({first_line(exc)})") from exc
    model = keras.Model(full.input, full.get_layer(VGG_LAYER).output, name="vgg16_block3_conv3")
    model.trainable = False
    return model


def logcosh_per_image(a: Any, b: Any) -> Any:
    """Mean of log(cosh(a - b)) over all but the first axis -> (N,). Stable for large differences."""
    from keras import ops

    x = ops.cast(a, "float32") - ops.cast(b, "float32")
    # log(cosh(x)) = x + softplus(-2x) - log(2), which never overflows
    value = x + ops.softplus(-2.0 * x) - math.log(2.0)
    return ops.mean(value, axis=tuple(range(1, len(x.shape))))


def msssim_scales(size: int) -> int:
    """How many MS-SSIM scales fit an image of ``size`` px (each must still hold the 11 px filter).

    tf.image.ssim_multiscale halves the image (rounding up) between scales; its five
    default scales need 161 px, so smaller loss images use fewer.
    """
    scales, side = 1, size
    while scales < len(_MSSSIM_POWERS):
        side = math.ceil(side / 2)
        if side < _SSIM_FILTER:
            break
        scales += 1
    if size < _SSIM_FILTER:
        raise BabyganError(f"loss images of {size} px are too small for MS-SSIM (at least {_SSIM_FILTER} px)")
    return scales


def _gaussian_window(size: int = _SSIM_FILTER, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _ssim_terms(a: Any, b: Any, max_val: float) -> tuple[Any, Any]:
    """Mean SSIM and mean contrast-structure term per image and channel -> two (N, C) tensors."""
    from keras import ops

    channels = int(a.shape[-1])
    g = _gaussian_window()
    kx = np.tile(g.reshape(1, -1, 1, 1), (1, 1, channels, 1))
    ky = np.tile(g.reshape(-1, 1, 1, 1), (1, 1, channels, 1))

    def blur(x):  # separable Gaussian, VALID (as tf.image.ssim)
        return ops.depthwise_conv(ops.depthwise_conv(x, kx, padding="valid"), ky, padding="valid")

    c1 = (0.01 * max_val) ** 2
    c2 = (0.03 * max_val) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a * mu_a
    var_b = blur(b * b) - mu_b * mu_b
    cov = blur(a * b) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    return ops.mean(luminance * cs, axis=(1, 2)), ops.mean(cs, axis=(1, 2))


def msssim_loss_per_image(a: Any, b: Any, max_val: float = 255.0) -> Any:
    """1 - MS-SSIM of two float (N, S, S, 3) batches in 0..max_val -> (N,).

    The algorithm of tf.image.ssim_multiscale (11 px Gaussian window, sigma 1.5, 2x
    average-pool between scales, its five scale weights), written out because TF's
    version has a NaN gradient wherever a scale's term is <= 0 (pow of 0). Here each
    term is floored at a tiny positive value instead. With fewer than five scales
    (small images) the first weights are kept, rescaled to sum to 1.
    """
    from keras import ops

    scales = msssim_scales(int(a.shape[1]))
    powers = _MSSSIM_POWERS[:scales]
    powers = [p / sum(powers) for p in powers]
    value = 1.0
    for k, power in enumerate(powers):
        if k > 0:
            if int(a.shape[1]) % 2:  # pad odd sizes symmetrically, as tf.image.ssim_multiscale does
                a = ops.pad(a, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="symmetric")
                b = ops.pad(b, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="symmetric")
            a = ops.average_pool(a, 2, 2, padding="valid")
            b = ops.average_pool(b, 2, 2, padding="valid")
        ssim, cs = _ssim_terms(a, b, max_val)
        term = ssim if k == len(powers) - 1 else cs
        value = value * ops.power(ops.maximum(term, 1e-6), power)
    return 1.0 - ops.mean(value, axis=-1)
