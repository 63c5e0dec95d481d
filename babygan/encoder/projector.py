"""The optimisation loop: aligned images -> StyleGAN dlatents (pbaylies' encoder, in TF2).

One compiled step (render, losses, Adam, stochastic clipping) is built per generator
and loss configuration and reused for every batch and every later call.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from babygan.encoder.settings import EncoderSettings
from babygan.errors import BabyganError
from babygan.stylegan.loading import on_clear_cache

log = logging.getLogger("babygan")

# TF1's AdamOptimizer defaults, which pbaylies' encoder ran with
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8

#: compile the optimisation step with XLA: off, as it ran 20x slower on a 2-core CPU (256 px, batch 1)
JIT_COMPILE = False

# Compiled steps, built once per process: key -> _Step. A step holds its generator
# (its graph renders with it), so babygan.stylegan.clear_cache() empties this too.
_STEP_CACHE: dict[tuple, _Step] = {}


@on_clear_cache
def clear_encoder_caches() -> None:
    """Forget the compiled steps, VGG16 models and estimators (and so the generators they hold)."""
    from babygan.encoder.estimator import clear_loaded
    from babygan.encoder.perceptual import clear_vgg_cache

    _STEP_CACHE.clear()
    clear_vgg_cache()
    clear_loaded()


@dataclass(frozen=True)
class EncodeResult:
    """What :func:`encode` found for a batch of N aligned images."""

    dlatents: np.ndarray  # (N, L, w_dim) float32: the dlatents of the lowest loss seen
    loss_history: np.ndarray  # (iterations, N) float32: loss of the dlatents going into each step
    init: str  # where it started: "estimator:<file name>", "dlatent_avg", or "given" (initial_dlatents)
    initial_dlatents: np.ndarray  # (N, L, w_dim) float32: where the optimisation started
    generator: Any = field(default=None, repr=False, compare=False)  # the G that ``dlatents`` are for

    @cached_property
    def reconstructions(self) -> np.ndarray:
        """uint8 (N, R, R, 3): the generator's render of ``dlatents``, rendered on first use.

        Rendered lazily: callers that only need the dlatents (the cache, predict) never pay for it.
        """
        from babygan.stylegan import to_uint8

        return to_uint8(self.generator.synthesis(self.dlatents, noise="const"))

    @property
    def best_loss(self) -> np.ndarray:
        """(N,) float32: the loss of the returned dlatents."""
        return self.loss_history.min(axis=0)


def check_images(images: Any, name: str = "images") -> np.ndarray:
    """The images as a uint8 (N, S, S, 3) array, or a BabyganError saying what is wrong."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[1] != arr.shape[2] or arr.shape[0] < 1:
        raise BabyganError(
            f"{name}: expected square aligned RGB images, uint8 (N, S, S, 3), got shape {arr.shape}"
        )
    if arr.dtype != np.uint8:
        raise BabyganError(f"{name}: expected uint8 pixels (0..255), got {arr.dtype}")
    if arr.shape[1] < 16:
        raise BabyganError(f"{name}: images of {arr.shape[1]} px are too small to encode (at least 16 px)")
    return arr


def loss_resolution(G: Any, settings: EncoderSettings) -> int:
    """Losses are computed at ``settings.loss_size`` (256), or at G's resolution when smaller."""
    return int(min(settings.loss_size, G.resolution))


def resize_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) -> uint8 (N, size, size, 3) with Lanczos (as pbaylies loads targets)."""
    if images.shape[1] == size:
        return images
    from babygan.render import resize

    return np.stack([resize(img, size) for img in images])


def image_seed(image: np.ndarray, seed: int) -> tuple[int, int]:
    """A per-image RNG seed from the settings' seed and the image's pixels.

    Stochastic clipping draws from it, so an image's result does not depend on which
    other image shares its batch (the cache stores results per image).
    """
    digest = hashlib.sha256(np.ascontiguousarray(image).tobytes() + str(seed).encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1, int.from_bytes(digest[4:8], "little") >> 1


class _Step:
    """One compiled optimisation step for a generator and a loss configuration."""

    def __init__(self, G: Any, settings: EncoderSettings, size: int, vgg: Any | None) -> None:
        import tensorflow as tf

        self.size = size
        self.vgg = vgg
        self.generator = G  # keeps G alive while its id is a cache key (so no other G can get that id)
        weights = (settings.vgg_weight, settings.pixel_weight, settings.mssim_weight, settings.l1_weight)
        vgg_w, pixel_w, mssim_w, l1_w = (float(x) for x in weights)
        clip = float(settings.clip)
        avg = tf.constant(np.asarray(G.dlatent_avg, np.float32))  # (w_dim,)
        factor = G.resolution // size

        from babygan.encoder.perceptual import logcosh_per_image, msssim_loss_per_image, vgg_preprocess

        def render(w):
            # (N, L, w_dim) -> float (N, size, size, 3) in 0..255 (not clipped: clipping stops gradients)
            img = G.synthesis_tensor(w, noise="const")
            img = (tf.cast(img, tf.float32) + 1.0) * 127.5
            if factor > 1:
                # an exact area average: the generator's resolution is a power-of-two multiple of size
                img = tf.nn.avg_pool2d(img, factor, factor, "VALID")
            return img

        def losses(w, target, target_feat):
            # per-image losses (N,); summed for the gradient so images never influence each other
            img = render(w)
            total = pixel_w * logcosh_per_image(target, img)
            total += mssim_w * msssim_loss_per_image(target, img)
            if vgg is not None:
                feat = vgg(vgg_preprocess(img), training=False)
                total += vgg_w * logcosh_per_image(target_feat, feat)
            total += l1_w * 512.0 * tf.reduce_mean(tf.abs(w - avg), axis=[1, 2])
            return total

        def step(w, m, v, t, lr, target, target_feat, seeds):
            # w, m, v: (N, L, w_dim) float32; t: float32 step number from 1; seeds: (N, 2) int32
            with tf.GradientTape() as tape:
                tape.watch(w)
                per_image = losses(w, target, target_feat)
                total = tf.reduce_sum(per_image)
            g = tape.gradient(total, w)
            m = _BETA1 * m + (1.0 - _BETA1) * g
            v = _BETA2 * v + (1.0 - _BETA2) * tf.square(g)
            lr_t = lr * tf.sqrt(1.0 - _BETA2**t) / (1.0 - _BETA1**t)
            w_new = w - lr_t * m / (tf.sqrt(v) + _EPS)
            # stochastic clipping: values that left [-clip, clip] are re-drawn from N(0, 1)
            draws = tf.stack(
                [
                    tf.random.stateless_normal(
                        tf.shape(w)[1:],
                        seed=tf.random.experimental.stateless_fold_in(seeds[i], tf.cast(t, tf.int32)),
                    )
                    for i in range(w.shape[0])
                ]
            )
            w_new = tf.where(tf.abs(w_new) > clip, draws, w_new)
            return w_new, m, v, per_image

        self.step = tf.function(step, jit_compile=JIT_COMPILE)

    def target_features(self, target: Any) -> Any:
        """VGG features of the target batch (zeros of shape (N, 1) when VGG is off)."""
        import tensorflow as tf

        if self.vgg is None:
            return tf.zeros((target.shape[0], 1), tf.float32)
        from babygan.encoder.perceptual import vgg_preprocess

        return self.vgg(vgg_preprocess(target), training=False)


def _get_step(G: Any, settings: EncoderSettings, *, offline: bool) -> _Step:
    size = loss_resolution(G, settings)
    # Build G's networks eagerly: first built while the step is traced, their constants
    # would belong to that graph and fail on any later eager use.
    _ = getattr(G, "nets", None)
    vgg = None
    vgg_path = ""
    if settings.perceptual == "vgg16":
        from babygan.encoder.perceptual import resolve_vgg16_weights, vgg16_features

        path = resolve_vgg16_weights(settings.vgg16_weights, offline=offline)
        vgg = vgg16_features(path, size)
        vgg_path = str(Path(path).resolve())
    if G.resolution % size or (G.resolution // size) & (G.resolution // size - 1):
        raise BabyganError(f"loss_size={size} must divide the generator's resolution {G.resolution} by 2^k")
    key = (
        id(G),
        size,
        vgg_path,
        settings.vgg_weight,
        settings.pixel_weight,
        settings.mssim_weight,
        settings.l1_weight,
        settings.clip,
    )
    step = _STEP_CACHE.get(key)
    if step is None:
        step = _Step(G, settings, size, vgg)
        _STEP_CACHE[key] = step
    return step


def _initial_dlatents(
    G: Any, images: np.ndarray, settings: EncoderSettings, *, offline: bool
) -> tuple[np.ndarray, str]:
    """(N, L, w_dim) float32 starting dlatents and a label saying where they came from."""
    from babygan.encoder.estimator import choose_estimator, predict_dlatents

    n = images.shape[0]
    chosen = choose_estimator(G, settings, offline=offline)
    if chosen is not None:
        model, path = chosen
        guess = predict_dlatents(model, images)
        log.info("encoder: starting from the estimator's guess (%s)", path.name)
        return guess.astype(np.float32), f"estimator:{path.name}"
    log.info("encoder: starting from the generator's dlatent_avg")
    avg = np.asarray(G.dlatent_avg, np.float32)
    return np.broadcast_to(avg, (n, G.num_layers, G.w_dim)).copy(), "dlatent_avg"


def encode(
    G: Any,
    images: Any,
    settings: EncoderSettings | None = None,
    *,
    progress: bool = True,
    offline: bool = False,
    initial_dlatents: np.ndarray | None = None,
) -> EncodeResult:
    """Optimise dlatents so that G renders each aligned image; returns the best-loss dlatents.

    ``images``: uint8 (N, S, S, 3) aligned faces (any S >= 16; resized to the loss
    resolution). Runs ``settings.iterations`` steps per batch of ``settings.batch_size``
    images. ``initial_dlatents`` (N, L, w_dim), when given, replaces the estimator /
    dlatent_avg start. A tqdm bar (stderr) shows iteration, loss and rate.
    """
    import tensorflow as tf

    settings = settings or EncoderSettings()
    images = check_images(images)
    n = images.shape[0]
    step = _get_step(G, settings, offline=offline)
    targets = resize_uint8(images, step.size)

    if initial_dlatents is not None:
        start = np.asarray(initial_dlatents, np.float32)
        if start.shape != (n, G.num_layers, G.w_dim):
            raise BabyganError(
                f"initial dlatents: expected shape {(n, G.num_layers, G.w_dim)}, got {start.shape}"
            )
        init_label = "given"
    else:
        start, init_label = _initial_dlatents(G, images, settings, offline=offline)

    iters = settings.iterations
    history = np.zeros((iters, n), np.float32)
    best = start.copy()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iters * math.ceil(n / settings.batch_size), desc="encode", unit="it", leave=False)
    try:
        for lo in range(0, n, settings.batch_size):
            hi = min(n, lo + settings.batch_size)
            target = tf.constant(targets[lo:hi].astype(np.float32))
            target_feat = step.target_features(target)
            seeds = tf.constant([image_seed(img, settings.seed) for img in images[lo:hi]], tf.int32)
            w = tf.constant(start[lo:hi])
            m = tf.zeros_like(w)
            v = tf.zeros_like(w)
            best_loss = np.full(hi - lo, np.inf, np.float32)
            for i in range(iters):
                t = i + 1
                lr = settings.learning_rate(t)
                w_in = w
                w, m, v, loss = step.step(
                    w, m, v, tf.constant(float(t)), tf.constant(lr, tf.float32), target, target_feat, seeds
                )
                loss = loss.numpy()
                if not np.all(np.isfinite(loss)):
                    raise BabyganError(f"encoder: the loss became {loss.tolist()} at iteration {t}")
                history[i, lo:hi] = loss
                better = loss < best_loss
                if better.any():
                    best_loss[better] = loss[better]
                    best[lo:hi][better] = w_in.numpy()[better]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        batch=f"{lo // settings.batch_size + 1}", loss=f"{float(loss.mean()):.2f}"
                    )
    finally:
        if bar is not None:
            bar.close()

    return EncodeResult(
        dlatents=best.astype(np.float32),
        loss_history=history,
        init=init_label,
        initial_dlatents=start.astype(np.float32),
        generator=G,
    )
