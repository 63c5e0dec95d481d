"""The Encoder: aligned images -> StyleGAN dlatents (pbaylies' encoder), one object per G and settings.

It settles once what a run needs (the starting point, VGG16, the compiled step, the cache
key) and reuses it for every batch and every later call: keep one Encoder per process.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from babygan.encoder import cache
from babygan.encoder.images import check_images, image_seed, resize_uint8
from babygan.encoder.settings import EncoderSettings
from babygan.errors import BabyganError
from babygan.stylegan import Generator

log = logging.getLogger("babygan")


@dataclass(frozen=True)
class EncodeResult:
    """What :meth:`Encoder.encode` found for a batch of N aligned images."""

    dlatents: np.ndarray  # (N, L, w_dim) float32: the dlatents of the lowest loss seen
    loss_history: np.ndarray  # (iterations, N) float32: loss of the dlatents going into each step
    init: str  # where it started: "estimator:<file name>", "dlatent_avg", or "given" (initial_dlatents)
    initial_dlatents: np.ndarray  # (N, L, w_dim) float32: where the optimisation started
    generator: Generator | None = field(default=None, repr=False, compare=False)  # G of ``dlatents``

    @cached_property
    def reconstructions(self) -> np.ndarray:
        """uint8 (N, R, R, 3): the generator's render of ``dlatents``, rendered on first use."""
        from babygan.stylegan import to_uint8

        assert self.generator is not None
        return to_uint8(self.generator.synthesis(self.dlatents, noise="const"))

    @property
    def best_loss(self) -> np.ndarray:
        """(N,) float32: the loss of the returned dlatents."""
        return self.loss_history.min(axis=0)


def loss_resolution(G: Generator, settings: EncoderSettings) -> int:
    """Losses are computed at ``settings.loss_size`` (256), or at G's resolution when smaller."""
    size = int(min(settings.loss_size, G.resolution))
    factor = G.resolution // size
    if G.resolution % size or factor & (factor - 1):
        raise BabyganError(f"loss_size={size} must divide the generator's resolution {G.resolution} by 2^k")
    return size


class Encoder:
    """Encodes aligned photos into G's dlatents with ``settings``; build once, call many times.

    Nothing heavy happens here: the files a result depends on are resolved (so a missing
    VGG16 file fails now, with its name), and the estimator, VGG16 and the compiled step
    are loaded on first use, so a fully cached call loads none of them.
    """

    def __init__(
        self, G: Generator, settings: EncoderSettings | None = None, *, offline: bool = False
    ) -> None:
        from babygan.encoder.estimator import estimator_path

        self.settings = settings or EncoderSettings()
        self.G = G.with_precision(self.settings.precision)
        self.offline = offline
        self.size = loss_resolution(self.G, self.settings)
        self.vgg16_path: Path | None = None
        if self.settings.perceptual == "vgg16":
            from babygan.encoder.perceptual import resolve_vgg16_weights

            self.vgg16_path = resolve_vgg16_weights(self.settings.vgg16_weights, offline=offline)
        #: the estimator file the settings ask for (None: start from dlatent_avg); loaded lazily
        self.estimator_path = estimator_path(self.G, self.settings, offline=offline)

    # ------------------------------------------------------------------ what it settles once

    @cached_property
    def estimator(self) -> Any | None:
        """The loaded estimator, or None (dlatent_avg). In "auto" mode a file Keras cannot load
        is noted once and dropped, and the cache key follows (results are filed as dlatent_avg)."""
        from babygan.encoder.estimator import choose_estimator

        chosen = choose_estimator(self.G, self.settings, offline=self.offline)
        if chosen is None:
            self.estimator_path = None
            return None
        return chosen[0]

    @cached_property
    def vgg(self) -> Any | None:
        """VGG16 up to block3_conv3 at the loss size, or None with ``perceptual="pixel"``."""
        if self.vgg16_path is None:
            return None
        from babygan.encoder.perceptual import vgg16_features

        return vgg16_features(self.vgg16_path, self.size, precision=self.settings.precision)

    @cached_property
    def _step(self) -> Callable[..., Any]:
        from babygan.encoder.step import make_adam_step, make_loss

        loss = make_loss(self.G, self.settings, self.size, self.vgg)
        return make_adam_step(loss, float(self.settings.clip))

    def _deps(self) -> str:
        return cache.dependencies_key(self.G.source_sha256, self.estimator_path, self.vgg16_path)

    def cache_path(self, image: np.ndarray) -> Path:
        """Where the cached dlatents of one uint8 (S, S, 3) aligned image are kept."""
        return cache.cache_path(image, self.settings, self._deps())

    # ------------------------------------------------------------------ encoding

    def initial_dlatents(self, images: np.ndarray) -> tuple[np.ndarray, str]:
        """(N, L, w_dim) float32 starting dlatents for uint8 (N, S, S, 3) images, and where they came from."""
        G = self.G
        if self.estimator is not None:
            from babygan.encoder.estimator import predict_dlatents

            assert self.estimator_path is not None
            log.info("encoder: starting from the estimator's guess (%s)", self.estimator_path.name)
            return predict_dlatents(self.estimator, images), f"estimator:{self.estimator_path.name}"
        log.info("encoder: starting from the generator's dlatent_avg")
        avg = np.asarray(G.dlatent_avg, np.float32)
        return np.broadcast_to(avg, (len(images), G.num_layers, G.w_dim)).copy(), "dlatent_avg"

    def encode(
        self, images: Any, *, progress: bool = True, initial_dlatents: np.ndarray | None = None
    ) -> EncodeResult:
        """Optimise dlatents so that G renders each aligned image; returns the best-loss dlatents.

        ``images``: uint8 (N, S, S, 3) aligned faces (any S >= 16; resized to the loss
        resolution). Runs ``settings.iterations`` steps per batch of ``settings.batch_size``.
        ``initial_dlatents`` (N, L, w_dim), when given, replaces the estimator / dlatent_avg
        start. A tqdm bar (stderr) shows iteration, loss and rate.
        """
        from keras import ops

        G, settings = self.G, self.settings
        images = check_images(images)
        n = images.shape[0]
        if initial_dlatents is not None:
            start = np.asarray(initial_dlatents, np.float32)
            if start.shape != (n, G.num_layers, G.w_dim):
                raise BabyganError(
                    f"initial dlatents: expected shape {(n, G.num_layers, G.w_dim)}, got {start.shape}"
                )
            init_label = "given"
        else:
            start, init_label = self.initial_dlatents(images)
        targets = resize_uint8(images, self.size).astype(np.float32)
        step, params = self._step, G.tensors

        iters = settings.iterations
        history = np.zeros((iters, n), np.float32)
        best = start.copy()
        bar = None
        if progress:
            from tqdm import tqdm

            total = iters * math.ceil(n / settings.batch_size)
            bar = tqdm(total=total, desc="encode", unit="it", leave=False)
        try:
            for lo in range(0, n, settings.batch_size):
                hi = min(n, lo + settings.batch_size)
                target = ops.convert_to_tensor(targets[lo:hi])
                target_feat = self._features(target)
                rngs = [np.random.default_rng(image_seed(img, settings.seed)) for img in images[lo:hi]]
                w = ops.convert_to_tensor(start[lo:hi])
                m = ops.zeros_like(w)
                v = ops.zeros_like(w)
                best_loss = np.full(hi - lo, np.inf, np.float32)
                for i in range(iters):
                    t = i + 1
                    draws = np.stack([r.standard_normal(start.shape[1:], dtype=np.float32) for r in rngs])
                    w_in = w
                    w, m, v, loss = step(
                        w, m, v, np.float32(t), np.float32(settings.learning_rate(t)), params,
                        target, target_feat, draws,
                    )  # fmt: skip
                    loss = ops.convert_to_numpy(loss)
                    if not np.all(np.isfinite(loss)):
                        raise BabyganError(f"encoder: the loss became {loss.tolist()} at iteration {t}")
                    history[i, lo:hi] = loss
                    better = loss < best_loss
                    if better.any():
                        best_loss[better] = loss[better]
                        best[lo:hi][better] = ops.convert_to_numpy(w_in)[better]
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(batch=f"{lo // settings.batch_size + 1}", loss=f"{loss.mean():.2f}")
        finally:
            if bar is not None:
                bar.close()
        return EncodeResult(
            dlatents=best, loss_history=history, init=init_label, initial_dlatents=start, generator=G
        )

    def _features(self, target: Any) -> Any:
        """VGG features of a float32 target batch (zeros (N, 1) when VGG16 is off)."""
        from keras import ops

        if self.vgg is None:
            return ops.zeros((target.shape[0], 1), "float32")
        from babygan.encoder.images import caffe_preprocess

        return ops.cast(self.vgg(caffe_preprocess(target), training=False), "float32")

    def encode_cached(
        self,
        images: Any,
        *,
        use_cache: bool = True,
        progress: bool = True,
        on_result: Callable[[EncodeResult], None] | None = None,
    ) -> np.ndarray:
        """Dlatents (N, L, w_dim) float32 for uint8 (N, S, S, 3) aligned images, cached per image.

        Images found in the cache are not optimised again; the others go through
        :meth:`encode` together. ``on_result``, when given, is called with the
        :class:`EncodeResult` of the images that were encoded (not when all were cached).
        """
        G = self.G
        images = check_images(images)
        n = images.shape[0]
        shape = (G.num_layers, G.w_dim)
        out = np.zeros((n, *shape), np.float32)
        todo = list(range(n))
        if use_cache:
            todo = self._fill_from_cache(out, images, todo)
            if todo and self.estimator_path is not None and self.estimator is None:
                # "auto" mode and the estimator did not load: encode() starts from
                # dlatent_avg, so results are looked up and filed under that key
                todo = self._fill_from_cache(out, images, todo)
        if todo:
            result = self.encode(images[todo], progress=progress)
            out[todo] = result.dlatents
            if use_cache:
                for j, i in enumerate(todo):
                    cache.write_cached(self.cache_path(images[i]), result.dlatents[j])
            if on_result is not None:
                on_result(result)
        return out

    def _fill_from_cache(self, out: np.ndarray, images: np.ndarray, indices: list[int]) -> list[int]:
        """Copy the cached entries of ``indices`` into ``out``; return the indices not found."""
        missing = []
        for i in indices:
            path = self.cache_path(images[i])
            cached = cache.read_cached(path, out.shape[1:])
            if cached is None:
                missing.append(i)
            else:
                out[i] = cached
                log.info("encoder: image %d found in the latent cache (%s)", i, path.name)
        return missing
