"""One compiled optimisation step of the encoder: render, losses, gradient, Adam, stochastic clipping.

Written with ``keras.ops`` over ``babygan.stylegan.network``; the gradient and the
compilation come from ``babygan.backend``, so the same step runs under every backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from babygan.encoder.settings import EncoderSettings
from babygan.stylegan import Generator

# TF1's AdamOptimizer defaults, which pbaylies' encoder ran with
BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def make_loss(
    G: Generator, settings: EncoderSettings, size: int, vgg: Any | None, identity: Any | None = None
) -> Callable[..., Any]:
    """``loss(w, params, target, target_feat, mask) -> (sum over images, per-image losses (N,))``.

    params: ``G.tensors``, or ``G.prepared`` when the weights stay fixed (the encoder's steps).

    w float32 (N, L, w_dim), or (N, 1, w_dim) with ``tile_dlatents`` (one vector for every
    layer); target float32 (N, size, size, 3) in 0..255, already multiplied by the mask;
    target_feat what the losses know of the target: the VGG16 features of that masked
    target (or anything, when ``vgg`` is None), or a dict holding them under "vgg" and,
    with ``identity`` (an ``IdentityTerm``), its chip plan and descriptor
    (``IdentityTerm.targets``); the identity term looks at the unmasked render. mask
    float32 (N, size, size, 1) in [0, 1] (ones: the whole image). The render is
    multiplied by the mask before every image loss, as pbaylies does, so pixels outside the
    face contribute nothing. Per-image losses are summed for the gradient, so images in
    one batch never influence each other.
    """
    from keras import ops

    from babygan.encoder.images import caffe_preprocess
    from babygan.encoder.perceptual import logcosh_per_image, msssim_loss_per_image
    from babygan.stylegan import network

    vgg_w, pixel_w, mssim_w, l1_w = (
        float(x)
        for x in (settings.vgg_weight, settings.pixel_weight, settings.mssim_weight, settings.l1_weight)
    )
    avg = np.asarray(G.dlatent_avg, np.float32)  # (w_dim,)
    factor = G.resolution // size
    config, dtype = G.config, G.compute_dtype

    def render(w: Any, params: Any) -> Any:
        # (N, L, w_dim) -> float32 (N, size, size, 3) in 0..255 (not clipped: clipping stops gradients).
        # params: G.tensors, or G.prepared (the kernels made once: no per-step preparation)
        if "const" in params:
            img = network.synthesis_prepared(params, w, config, compute_dtype=dtype)
        else:
            img = network.synthesis(params, w, config, compute_dtype=dtype)
        img = (img + 1.0) * 127.5
        if factor > 1:
            # an exact area average: the generator's resolution is a power-of-two multiple of size
            img = ops.average_pool(img, factor, factor, padding="valid")
        return img

    layers = int(G.num_layers)
    id_w = float(settings.identity_weight)

    def loss(w: Any, params: Any, target: Any, target_feat: Any, mask: Any) -> tuple[Any, Any]:
        w_full = ops.repeat(w, layers, axis=1) if w.shape[1] == 1 and layers > 1 else w
        raw = render(w_full, params)
        img = raw * mask
        per_image = pixel_w * logcosh_per_image(target, img)
        per_image = per_image + mssim_w * msssim_loss_per_image(target, img)
        feats = target_feat if isinstance(target_feat, dict) else {"vgg": target_feat}
        if vgg is not None:
            feat = vgg(caffe_preprocess(img), training=False)
            per_image = per_image + vgg_w * logcosh_per_image(feats["vgg"], feat)
        if identity is not None:
            per_image = per_image + id_w * identity.distance(raw, feats)
        per_image = per_image + l1_w * 512.0 * ops.mean(ops.abs(ops.subtract(w, avg)), axis=(1, 2))
        return ops.sum(per_image), per_image

    return loss


def loss_captures(vgg: Any | None, identity: Any | None) -> dict[str, Any]:
    """The tensors and variables :func:`make_loss`'s loss closes over, by name (the graph
    store's ``captures``): dlib's network's and VGG16's."""
    named: dict[str, Any] = {}
    if identity is not None:
        named.update({f"identity/{k}": t for k, t in identity.net.tensors.items()})
    if vgg is not None:
        named.update({f"vgg16/{i}": v for i, v in enumerate(vgg.weights)})
    return named


def make_value_and_grad(loss: Callable[..., Any]) -> Callable[..., Any]:
    """The compiled ``(w, params, target, target_feat, mask) -> ((sum, per-image (N,)), d sum / d w)``
    (what L-BFGS asks for at each point)."""
    from babygan import backend

    return backend.jit(backend.value_and_grad(loss))


def make_adam_step(loss: Callable[..., Any], clip: float, **jit_options: Any) -> Callable[..., Any]:
    """The compiled step ``(w, m, v, t, lr, params, target, target_feat, mask, draws) -> (w, m, v, loss)``.

    w, m, v, draws: float32 (N, L, w_dim) (L = 1 with tiled dlatents); mask as in
    :func:`make_loss`; t: the step number from 1; lr: this step's
    learning rate. Stochastic clipping: values that leave [-clip, clip] are replaced by
    ``draws`` (fresh N(0, 1) values drawn by the caller per image, so a result never
    depends on its batch partners). ``jit_options``: ``backend.jit``'s graph store options.
    """
    from keras import ops

    from babygan import backend

    grad_fn = backend.value_and_grad(loss)

    def step(w, m, v, t, lr, params, target, target_feat, mask, draws):
        (_, per_image), g = grad_fn(w, params, target, target_feat, mask)
        m = BETA1 * m + (1.0 - BETA1) * g
        v = BETA2 * v + (1.0 - BETA2) * ops.square(g)
        lr_t = lr * ops.sqrt(1.0 - BETA2**t) / (1.0 - BETA1**t)
        w_new = w - lr_t * m / (ops.sqrt(v) + ADAM_EPS)
        w_new = ops.where(ops.abs(w_new) > clip, draws, w_new)
        return w_new, m, v, per_image

    return backend.jit(step, **jit_options)


class Plateau:
    """pbaylies' early stopping, per image: each step ``avg = avg / 2 + (previous - this loss)``
    (the first difference starts it); an image stops once ``avg < threshold`` has held for
    more than ``patience`` consecutive steps."""

    def __init__(self, n: int, threshold: float, patience: int) -> None:
        self.threshold, self.patience = float(threshold), int(patience)
        self.prev: np.ndarray | None = None
        self.avg = np.full(n, np.nan)
        self.count = np.zeros(n, np.int64)

    def update(self, loss: np.ndarray) -> np.ndarray:
        """Feed one step's (N,) losses; returns the (N,) bool of the images that stop now."""
        loss = np.asarray(loss, np.float64)
        if self.prev is not None:
            drop = self.prev - loss
            first = np.isnan(self.avg)
            self.avg = np.where(first, drop, 0.5 * self.avg + drop)
            self.count = np.where(~first & (self.avg < self.threshold), self.count + 1, 0)
        self.prev = loss
        return self.count > self.patience
