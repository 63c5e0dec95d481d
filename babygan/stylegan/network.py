"""StyleGAN (v1) mapping and synthesis networks as TensorFlow 2 functions (NHWC, float32).

The weights are baked in as constants already multiplied by their equalized-learning-rate
factor (``gain / sqrt(fan_in) * lrmul``): the official code multiplies the stored
variable by the same float32 factor at run time, so this changes no bit, only work.
Everything here works on tensors; ``generator.py`` wraps it in the numpy API.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from babygan.stylegan.config import GeneratorConfig

_SQRT2 = math.sqrt(2.0)
_LRELU_ALPHA = 0.2
_EPS = 1e-8  # pixel norm and instance norm epsilon, as in the official code

# XLA (jit_compile=True) measured about 10x slower than plain graph mode for 1024 px synthesis
# on a 2-core CPU (13.8-17.8 s vs 1.2-1.6 s per image, scripts/bench_generator.py --jit): its CPU
# convolutions do not use oneDNN. Graph mode is the default.
JIT_COMPILE = False


def _wscale(shape: tuple[int, ...], gain: float, lrmul: float = 1.0) -> np.float32:
    """Runtime weight factor of the official get_weight(): gain / sqrt(fan_in) * lrmul."""
    fan_in = float(np.prod(shape[:-1]))
    return np.float32(gain / np.sqrt(fan_in) * lrmul)


def _lrelu(x: tf.Tensor) -> tf.Tensor:
    # the official formulation; gives dlatents bit-identical to the reference
    return tf.maximum(x, x * _LRELU_ALPHA)


class Networks:
    """The compiled mapping and synthesis functions of one set of weights.

    ``mapping(z)``: float32 (N, latent_size) -> (N, num_layers, dlatent_size), no truncation.
    ``synthesis(w, noises)``: w float32 (N, num_layers, dlatent_size) and one noise tensor per
    layer, float32 (1 or N, res, res, 1), -> images float32 (N, res, res, num_channels).
    """

    def __init__(
        self, config: GeneratorConfig, params: dict[str, np.ndarray], *, jit_compile: bool | None = None
    ):
        c = self.config = config
        jit = JIT_COMPILE if jit_compile is None else jit_compile
        const = tf.constant

        # Mapping: weights scaled by sqrt(2)/sqrt(fan_in) * lrmul, biases by lrmul (lrmul 0.01).
        self._map_layers = []
        for i in range(c.mapping_layers):
            w = params[f"mapping.dense{i}.weight"]
            b = params[f"mapping.dense{i}.bias"]
            self._map_layers.append(
                (const(w * _wscale(w.shape, _SQRT2, c.mapping_lrmul)), const(b * np.float32(c.mapping_lrmul)))
            )

        # Synthesis.
        self._const = const(params["synthesis.const"])  # (1, 4, 4, nf(1))
        self._layers = []
        for layer in range(c.num_layers):
            p = f"synthesis.layer{layer}"
            entry: dict[str, tf.Tensor | bool | None] = {}
            if layer > 0:
                w = params[f"{p}.conv.weight"]  # (3, 3, in, out) HWIO
                w = w * _wscale(w.shape, _SQRT2)
                res_log2 = layer // 2 + 2
                up = layer % 2 == 0
                entry["up"] = up
                entry["fused"] = up and c.fused(res_log2)
                if entry["fused"]:
                    # Transposed-conv kernel (4, 4, out, in): the 3x3 kernel summed over its four
                    # one-pixel shifts, as the official code does. This equals nearest upsampling
                    # + the 3x3 conv with the kernel flipped in space; trained weights expect that.
                    wt = np.pad(w.transpose(0, 1, 3, 2), ((1, 1), (1, 1), (0, 0), (0, 0)))
                    w = wt[1:, 1:] + wt[:-1, 1:] + wt[1:, :-1] + wt[:-1, :-1]
                entry["conv"] = const(w)
            ch = c.layer_channels(layer)
            entry["noise_strength"] = (
                const(params[f"{p}.noise_strength"].reshape(1, 1, 1, ch)) if c.use_noise else None
            )
            entry["bias"] = const(params[f"{p}.bias"].reshape(1, 1, 1, ch))
            ws = params[f"{p}.style.weight"]
            entry["style_w"] = const(ws * _wscale(ws.shape, 1.0))
            entry["style_b"] = const(params[f"{p}.style.bias"])
            self._layers.append(entry)
        wr = params["synthesis.torgb.weight"]
        self._torgb_w = const(wr * _wscale(wr.shape, 1.0))
        self._torgb_b = const(params["synthesis.torgb.bias"])
        if c.blur_filter is not None:
            f = np.asarray(c.blur_filter, np.float32)
            f = np.outer(f, f)
            f /= f.sum()
            self._blur_k = f.shape[0]
            self._blur = {
                ch: const(np.tile(f[:, :, None, None], (1, 1, ch, 1)))
                for ch in {c.layer_channels(i) for i in range(2, c.num_layers, 2)}
            }
        self.const_noise = [
            const(params[f"synthesis.layer{i}.noise"]) for i in range(c.num_layers) if c.use_noise
        ]

        L, D, Z = c.num_layers, c.dlatent_size, c.latent_size
        self.noise_shapes = (
            [(c.layer_resolution(i), c.layer_resolution(i)) for i in range(L)] if c.use_noise else []
        )
        noise_spec = [tf.TensorSpec([None, h, w, 1], tf.float32) for h, w in self.noise_shapes]
        self.mapping = tf.function(
            self._mapping, input_signature=[tf.TensorSpec([None, Z], tf.float32)], jit_compile=jit
        )
        self.synthesis = tf.function(
            self._synthesis,
            input_signature=[tf.TensorSpec([None, L, D], tf.float32), noise_spec],
            jit_compile=jit,
        )

    # ------------------------------------------------------------------ graphs

    def _mapping(self, z: tf.Tensor) -> tf.Tensor:
        x = z
        if self.config.normalize_latents:
            x = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=1, keepdims=True) + _EPS)
        for w, b in self._map_layers:
            x = _lrelu(tf.matmul(x, w) + b)
        return tf.tile(x[:, None, :], [1, self.config.num_layers, 1])

    def _epilogue(self, x: tf.Tensor, layer: int, w: tf.Tensor, noises: list[tf.Tensor]) -> tf.Tensor:
        """Noise, bias, leaky ReLU, instance norm, AdaIN style: the official layer_epilogue.

        Written with as few passes over the big tensor as TF allows (noise and bias are
        summed on the small broadcast shape first; the style scale is folded into the
        normalisation factor): the same arithmetic up to float32 rounding order.
        """
        e = self._layers[layer]
        shift = e["bias"]
        if self.config.use_noise:
            shift = noises[layer] * e["noise_strength"] + shift  # (1 or N, H, W, C)
        x = tf.nn.leaky_relu(x + shift, alpha=_LRELU_ALPHA)
        # AdaIN style: dense of this layer's dlatent -> (scale, bias); scale is applied as 1 + s.
        style = tf.matmul(w[:, layer], e["style_w"]) + e["style_b"]
        ch = x.shape[-1]
        # Instance norm over H, W (eps 1e-8, as the official code), then the style.
        x = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        inv_std = tf.math.rsqrt(tf.reduce_mean(tf.square(x), axis=[1, 2], keepdims=True) + _EPS)
        return x * (inv_std * (style[:, None, None, :ch] + 1.0)) + style[:, None, None, ch:]

    def _upsample_conv(self, x: tf.Tensor, layer: int) -> tf.Tensor:
        e = self._layers[layer]
        if e["fused"]:
            n, h, wd = tf.shape(x)[0], x.shape[1], x.shape[2]
            kernel = e["conv"]
            out_shape = tf.stack([n, 2 * h, 2 * wd, kernel.shape[2]])
            return tf.nn.conv2d_transpose(x, kernel, out_shape, strides=2, padding="SAME")
        h, wd, ch = x.shape[1], x.shape[2], x.shape[3]
        x = tf.reshape(x, [-1, h, 1, wd, 1, ch])
        x = tf.tile(x, [1, 1, 2, 1, 2, 1])  # nearest-neighbour 2x
        x = tf.reshape(x, [-1, 2 * h, 2 * wd, ch])
        return tf.nn.conv2d(x, e["conv"], strides=1, padding="SAME")

    def _synthesis(self, w: tf.Tensor, noises: list[tf.Tensor]) -> tf.Tensor:
        c = self.config
        n = tf.shape(w)[0]
        x = tf.tile(self._const, [n, 1, 1, 1])
        x = self._epilogue(x, 0, w, noises)
        x = tf.nn.conv2d(x, self._layers[1]["conv"], strides=1, padding="SAME")
        x = self._epilogue(x, 1, w, noises)
        for layer in range(2, c.num_layers, 2):
            x = self._upsample_conv(x, layer)
            if c.blur_filter is not None:
                x = tf.nn.depthwise_conv2d(x, self._blur[x.shape[-1]], strides=[1, 1, 1, 1], padding="SAME")
            x = self._epilogue(x, layer, w, noises)
            x = tf.nn.conv2d(x, self._layers[layer + 1]["conv"], strides=1, padding="SAME")
            x = self._epilogue(x, layer + 1, w, noises)
        return tf.nn.conv2d(x, self._torgb_w, strides=1, padding="SAME") + self._torgb_b
