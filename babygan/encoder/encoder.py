"""The Encoder: aligned images -> StyleGAN dlatents (pbaylies' encoder), one object per G and settings.

It settles once what a run needs (the starting point, VGG16, the compiled step, the cache
key) and reuses it for every batch and every later call: keep one Encoder per process.
Two optimisers: Adam (pbaylies' default recipe, with his early stopping and running
average of the best dlatents) and scipy's L-BFGS-B (his fast recipe); both see the same
loss, optionally masked to the face (babygan/encoder/mask.py).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from babygan.backend.graph_store import GraphStore
from babygan.encoder import cache
from babygan.encoder.images import check_images, image_seed, resize_uint8, sharpen
from babygan.encoder.lbfgs import minimize_one
from babygan.encoder.mask import mask_digest, resize_masks
from babygan.encoder.result import EncodeResult
from babygan.encoder.settings import EncoderSettings
from babygan.encoder.start import load_init_file
from babygan.encoder.step import Plateau
from babygan.errors import BabyganError
from babygan.identity import default_model_path
from babygan.stylegan import Generator

log = logging.getLogger("babygan")


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
    VGG16 file, or an --init file of the wrong shape, fails now, with its name), and the
    estimator, VGG16 and the compiled step are loaded on first use, so a fully cached call
    loads none of them.
    """

    def __init__(
        self,
        G: Generator,
        settings: EncoderSettings | None = None,
        *,
        offline: bool = False,
        identity: Any | None = None,
        graphs: GraphStore | None = None,
    ) -> None:
        """identity: an ``IdentityTerm`` at ``settings.precision`` to use for the identity loss
        (a session shares one with its AgeEditor: dlib's network loaded and traced once);
        None: loaded on first use when ``perceptual="identity"``. graphs: the ``GraphStore``
        keeping the Adam step's traced graph (None: traced in every process)."""
        from babygan.encoder.estimator import estimator_path

        self.settings = settings or EncoderSettings()
        if identity is not None and identity.precision != self.settings.precision:
            raise BabyganError(
                f"the identity term runs in {identity.precision}, the encoder in {self.settings.precision}"
            )
        self._given_identity = identity
        self.graphs = graphs
        self.G = G.with_precision(self.settings.precision)
        self.offline = offline
        self.size = loss_resolution(self.G, self.settings)
        self.vgg16_path: Path | None = None
        if self.settings.perceptual == "vgg16":
            from babygan.encoder.perceptual import resolve_vgg16_weights

            self.vgg16_path = resolve_vgg16_weights(self.settings.vgg16_weights, offline=offline)
        #: the estimator file the settings ask for (None: start from dlatent_avg); loaded lazily
        self.estimator_path = estimator_path(self.G, self.settings, offline=offline)
        #: ``init`` as a .npy file: its path and its (L, w_dim) float32 dlatents, checked now
        self.init_path: Path | None = None
        self._init_dlatents: np.ndarray | None = None
        if self.settings.init_file is not None:
            self.init_path = Path(self.settings.init_file).expanduser()
            self._init_dlatents = load_init_file(self.init_path, self.G)

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
    def identity(self) -> Any | None:
        """The identity term (dlib's descriptor network), or None unless ``perceptual="identity"``."""
        if self.settings.perceptual != "identity":
            return None
        if self._given_identity is not None:
            return self._given_identity
        from babygan.encoder.identity_term import IdentityTerm

        return IdentityTerm(self.settings.precision)

    def _make_loss(self, G: Generator) -> Callable[..., Any]:
        from babygan.encoder.step import make_loss

        return make_loss(G, self.settings, self.size, self.vgg, self.identity)

    @cached_property
    def _step(self) -> Callable[..., Any]:
        from babygan.encoder.step import loss_captures, make_adam_step

        # what the graph store keys the step by, besides the call: settings, files, precision
        owner = f"encoder adam step\n{self.settings!r}\n{self._deps()}\n{self.G.compute_dtype}\n{self.size}"
        return make_adam_step(
            self._make_loss(self.G), float(self.settings.clip),
            store=self.graphs, owner=owner, captures=lambda: loss_captures(self.vgg, self.identity),
        )  # fmt: skip

    @cached_property
    def _value_and_grad(self) -> Callable[..., Any]:
        """L-BFGS' compiled loss and gradient, always in fp32: its line search needs exact
        values, and bf16's coarse ones make it stop early."""
        from babygan.encoder.step import make_value_and_grad

        return make_value_and_grad(self._make_loss(self.G.with_precision("fp32")))

    def _deps(self) -> str:
        identity = default_model_path() if self.settings.perceptual == "identity" else None
        return cache.dependencies_key(
            self.G.source_sha256, self.estimator_path, self.vgg16_path, self.init_path, identity
        )

    def cache_path(self, image: np.ndarray, mask: np.ndarray | None = None) -> Path:
        """Where the cached dlatents of one uint8 (S, S, 3) aligned image are kept.

        With ``face_mask`` the key holds the hash of the image's float32 (S, S) mask
        (None: the mask :meth:`masks` finds with dlib)."""
        digest = None
        if self.settings.face_mask:
            if mask is None:
                mask = self.masks(image[None])[0]
            digest = mask_digest(mask)
        return cache.cache_path(image, self.settings, self._deps(), digest)

    def masks(self, images: np.ndarray, masks: Any | None = None) -> np.ndarray:
        """float32 (N, S, S) face masks in [0, 1] for uint8 (N, S, S, 3) images: ``masks``,
        checked, or when None the landmark hulls of the faces dlib finds (ones where none)."""
        from babygan.encoder.mask import check_masks, masks_for

        if masks is None:
            return masks_for(images, self.settings.mask_scale)
        return check_masks(masks, images.shape[0], images.shape[1])

    # ------------------------------------------------------------------ encoding

    def initial_dlatents(self, images: np.ndarray) -> tuple[np.ndarray, str]:
        """(N, L, w_dim) float32 starting dlatents for uint8 (N, S, S, 3) images, and where they came from."""
        G = self.G
        if self._init_dlatents is not None:
            assert self.init_path is not None
            log.info("encoder: starting from %s", self.init_path.name)
            start = np.broadcast_to(self._init_dlatents, (len(images), G.num_layers, G.w_dim)).copy()
            return start, f"file:{self.init_path.name}"
        if self.estimator is not None:
            from babygan.encoder.estimator import predict_dlatents

            assert self.estimator_path is not None
            log.info("encoder: starting from the estimator's guess (%s)", self.estimator_path.name)
            return predict_dlatents(self.estimator, images), f"estimator:{self.estimator_path.name}"
        if G.has_encoder and self.settings.init != "dlatent_avg":
            # the model's own E (the built-in model's): a forward pass at the model's size;
            # G's file hash (in the cache key) covers it
            log.info("encoder: starting from the model's own image encoder")
            return G.encode_faces(resize_uint8(images, G.resolution)), "model-encoder"
        log.info("encoder: starting from the generator's dlatent_avg")
        avg = np.asarray(G.dlatent_avg, np.float32)
        return np.broadcast_to(avg, (len(images), G.num_layers, G.w_dim)).copy(), "dlatent_avg"

    def encode(
        self,
        images: Any,
        *,
        masks: Any | None = None,
        progress: bool = True,
        initial_dlatents: np.ndarray | None = None,
        stepping: threading.Event | None = None,
    ) -> EncodeResult:
        """Optimise dlatents so that G renders each aligned image; returns the best-loss dlatents.

        ``images``: uint8 (N, S, S, 3) aligned faces (any S >= 16; resized to the loss
        resolution). ``masks``: float32 (N, S, S) in [0, 1], used with ``face_mask`` (None:
        found with dlib) and ignored without it. ``initial_dlatents`` (N, L, w_dim), when
        given, replaces the configured start. Adam runs ``settings.iterations`` steps per
        batch of ``settings.batch_size`` (fewer with early stopping); L-BFGS optimises each
        image on its own. A tqdm bar (stderr) shows iteration, loss and rate. ``stepping``, when
        given, is set once Adam's step graph is ready (traced or found), before its first run
        (graph optimisation, XLA: C++), or once L-BFGS' first image is done: from then on the
        encoding is mostly TensorFlow's work, not Python's (another thread's tracing may go on).
        """
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
        if settings.tile_dlatents:  # one vector for every layer, starting from the layers' mean
            start = start.mean(axis=1, keepdims=True)

        targets = resize_uint8(images, self.size)
        if settings.sharpen_input:
            targets = sharpen(targets)
        seed_images = images  # what each image's clipping draws are seeded from
        if settings.face_mask:
            full = self.masks(images, masks)
            loss_masks = resize_masks(full, self.size)[..., None]
            # only the face decides the result: pixels outside it change nothing, draws included
            seed_images = np.where(full[..., None] > 0, images, 0).astype(np.uint8)
        else:
            loss_masks = np.ones((n, self.size, self.size, 1), np.float32)
        ident = None if self.identity is None else self.identity.targets(images, targets)
        # the loss multiplies its render by the same mask: outside the face both are 0
        targets = targets.astype(np.float32) * loss_masks

        bar = None
        if progress:
            from tqdm import tqdm

            runs = n if settings.optimizer == "lbfgs" else math.ceil(n / settings.batch_size)
            bar = tqdm(total=settings.iterations * runs, desc="encode", unit="it", leave=False)
        try:
            run = self._run_lbfgs if settings.optimizer == "lbfgs" else self._run_adam
            best, history, steps = run(seed_images, start, targets, loss_masks, bar, ident, stepping)
        finally:
            if bar is not None:
                bar.close()
        full = (n, G.num_layers, G.w_dim)
        return EncodeResult(
            dlatents=np.ascontiguousarray(np.broadcast_to(best, full), np.float32),
            loss_history=history,
            init=init_label,
            initial_dlatents=np.ascontiguousarray(np.broadcast_to(start, full), np.float32),
            iterations_run=steps,
            generator=G,
        )

    def _run_adam(
        self,
        images: np.ndarray,
        start: np.ndarray,
        targets: np.ndarray,
        loss_masks: np.ndarray,
        bar: Any,
        ident: dict[str, np.ndarray] | None = None,
        stepping: threading.Event | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Adam with staircase decay and stochastic clipping, batch by batch.

        start (N, L', w_dim) (L' = 1 with tiled dlatents); targets float32 (N, size, size, 3),
        masked; loss_masks (N, size, size, 1); ident: IdentityTerm.targets' arrays; stepping: set
        before the first step runs, its graph ready (``encode``). Returns the best dlatents
        (N, L', w_dim), the history (iterations, N) and the steps each image ran (N,)."""
        from keras import ops

        settings = self.settings
        params = self.G.prepared  # the weights never change here: kernels made once
        n, iters, avg = start.shape[0], settings.iterations, float(settings.average_best_loss)
        history = np.full((iters, n), np.nan, np.float32)
        steps = np.zeros(n, np.int64)
        best = start.copy()
        for lo in range(0, n, settings.batch_size):
            hi = min(n, lo + settings.batch_size)
            target = ops.convert_to_tensor(targets[lo:hi])
            mask = ops.convert_to_tensor(loss_masks[lo:hi])
            target_feat = self._features(target, ident, lo, hi)
            rngs = [np.random.default_rng(image_seed(img, settings.seed)) for img in images[lo:hi]]
            w = ops.convert_to_tensor(start[lo:hi])
            m = ops.zeros_like(w)
            v = ops.zeros_like(w)
            best_loss = np.full(hi - lo, np.inf, np.float32)
            active = np.ones(hi - lo, bool)
            plateau = None
            if settings.early_stopping:
                plateau = Plateau(
                    hi - lo, settings.early_stopping_threshold, settings.early_stopping_patience
                )
            for i in range(iters):
                t = i + 1
                draws = np.stack([r.standard_normal(start.shape[1:], dtype=np.float32) for r in rngs])
                w_in = w
                args = (
                    w, m, v, np.float32(t), np.float32(settings.learning_rate(t)), params,
                    target, target_feat, mask, draws,
                )  # fmt: skip
                if stepping is not None and not stepping.is_set():
                    # the step's graph traced, its first run (mostly C++, one core) can have
                    # another thread's tracing beside it
                    prepare = getattr(self._step, "prepare", None)
                    if prepare is not None:
                        prepare(*args)
                    stepping.set()
                w, m, v, loss = self._step(*args)
                loss = ops.convert_to_numpy(loss)
                if not np.all(np.isfinite(loss[active])):
                    raise BabyganError(f"encoder: the loss became {loss.tolist()} at iteration {t}")
                history[i, lo:hi][active] = loss[active]
                steps[lo:hi][active] = t
                better = (loss < best_loss) & active
                if better.any():
                    w_in_np = ops.convert_to_numpy(w_in)
                    new_best = w_in_np.copy()
                    blend = better & np.isfinite(best_loss) if avg > 0 else np.zeros_like(better)
                    if blend.any():  # pbaylies' average_best_loss: the optimisation goes on from it
                        prev = best[lo:hi][blend]
                        new_best[blend] = avg * prev + (1.0 - avg) * w_in_np[blend]
                        w_np = np.array(ops.convert_to_numpy(w))
                        w_np[blend] = avg * prev + (1.0 - avg) * w_np[blend]
                        w = ops.convert_to_tensor(w_np)
                    best[lo:hi][better] = new_best[better]
                    best_loss[better] = loss[better]
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        batch=f"{lo // settings.batch_size + 1}", loss=f"{loss[active].mean():.2f}"
                    )
                if plateau is not None:
                    active &= ~plateau.update(loss)
                    if not active.any():
                        log.info(
                            "encoder: early stop after %d of %d steps (images %d-%d)", t, iters, lo + 1, hi
                        )
                        if bar is not None:
                            bar.update(iters - t)
                        break
        return best, history, steps

    def _run_lbfgs(
        self,
        images: np.ndarray,
        start: np.ndarray,
        targets: np.ndarray,
        loss_masks: np.ndarray,
        bar: Any,
        ident: dict[str, np.ndarray] | None = None,
        stepping: threading.Event | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """scipy's L-BFGS-B on each image's dlatents, every value bounded to [-clip, clip].

        One image at a time (a line search shared by a batch would tie each result to its
        partners), with the compiled loss and gradient. Arguments and returns as
        :meth:`_run_adam`; the history has iterations + 1 rows."""
        from keras import ops

        n, iters = start.shape[0], self.settings.iterations
        history = np.full((iters + 1, n), np.nan, np.float32)
        steps = np.zeros(n, np.int64)
        best = start.copy()
        for j in range(n):
            target = ops.convert_to_tensor(targets[j : j + 1])
            mask = ops.convert_to_tensor(loss_masks[j : j + 1])
            feat = self._features(target, ident, j, j + 1)
            x, losses, steps[j] = minimize_one(
                self._value_and_grad, self.G.tensors, start[j], target, feat, mask,
                iterations=iters, clip=float(self.settings.clip), bar=bar, image=j + 1,
            )  # fmt: skip
            if stepping is not None:
                stepping.set()
            best[j] = x
            history[: len(losses), j] = losses[: iters + 1]
        return best, history, steps

    def _features(
        self, target: Any, ident: dict[str, np.ndarray] | None = None, lo: int = 0, hi: int = 0
    ) -> Any:
        """What the loss knows of a float32 target batch: its VGG features (zeros (N, 1) when
        VGG16 is off), and with the identity term a dict of those and images lo..hi of ``ident``."""
        from keras import ops

        if self.vgg is None:
            vgg = ops.zeros((target.shape[0], 1), "float32")
        else:
            from babygan.encoder.images import caffe_preprocess

            vgg = ops.cast(self.vgg(caffe_preprocess(target), training=False), "float32")
        if ident is None:
            return vgg
        return {"vgg": vgg, **{k: ops.convert_to_tensor(v[lo:hi]) for k, v in ident.items()}}

    def encode_cached(
        self,
        images: Any,
        *,
        masks: Any | None = None,
        use_cache: bool = True,
        progress: bool = True,
        on_result: Callable[[EncodeResult], None] | None = None,
        stepping: threading.Event | None = None,
    ) -> np.ndarray:
        """Dlatents (N, L, w_dim) float32 for uint8 (N, S, S, 3) aligned images, cached per image.

        Images found in the cache are not optimised again; the others go through
        :meth:`encode` together. ``masks`` as in :meth:`encode` (with ``face_mask`` each
        image's mask is part of its key). ``on_result``, when given, is called with the
        :class:`EncodeResult` of the images that were encoded (not when all were cached).
        ``stepping`` as in :meth:`encode`.
        """
        G = self.G
        images = check_images(images)
        n = images.shape[0]
        found = self.masks(images, masks) if self.settings.face_mask else None
        shape = (G.num_layers, G.w_dim)
        out = np.zeros((n, *shape), np.float32)
        todo = list(range(n))
        if use_cache:
            todo = self._fill_from_cache(out, images, found, todo)
            if todo and self.estimator_path is not None and self.estimator is None:
                # "auto" mode and the estimator did not load: encode() starts from
                # dlatent_avg, so results are looked up and filed under that key
                todo = self._fill_from_cache(out, images, found, todo)
        if todo:
            chosen = None if found is None else found[todo]
            result = self.encode(images[todo], masks=chosen, progress=progress, stepping=stepping)
            out[todo] = result.dlatents
            if use_cache:
                for j, i in enumerate(todo):
                    cache.write_cached(self._entry(images, found, i), result.dlatents[j])
            if on_result is not None:
                on_result(result)
        return out

    def _entry(self, images: np.ndarray, masks: np.ndarray | None, i: int) -> Path:
        return self.cache_path(images[i], None if masks is None else masks[i])

    def _fill_from_cache(
        self, out: np.ndarray, images: np.ndarray, masks: np.ndarray | None, indices: list[int]
    ) -> list[int]:
        """Copy the cached entries of ``indices`` into ``out``; return the indices not found."""
        missing = []
        for i in indices:
            path = self._entry(images, masks, i)
            cached = cache.read_cached(path, out.shape[1:])
            if cached is None:
                missing.append(i)
            else:
                out[i] = cached
                log.info("encoder: image %d found in the latent cache (%s)", i, path.name)
        return missing
