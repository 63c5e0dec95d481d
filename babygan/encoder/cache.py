"""Encode with a per-image result cache: the same photo, model and settings cost nothing twice.

A result is keyed by the SHA-256 of the aligned image's pixels (with its shape), the
generator's source file hash, ``settings.cache_key()`` and the identity of the files
the result depends on (the estimator that gave the start, custom VGG16 weights).
Entries are .npy files of (L, w_dim) float32 under ``cache_dir("latents")``, written
atomically.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from babygan.encoder.projector import EncodeResult, check_images, encode
from babygan.encoder.settings import EncoderSettings

log = logging.getLogger("babygan")


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of a uint8 (S, S, 3) image's shape and pixels."""
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def _file_identity(path: Path) -> str:
    """A hash standing for a model file's content (remembered across processes by its stamp)."""
    from babygan.models import cached_sha256

    return cached_sha256(Path(path).resolve())


def _dependencies(G: Any, settings: EncoderSettings, estimator: Path | None, *, offline: bool) -> str:
    """What besides the settings decides a result: G's file, the start (estimator file or
    dlatent_avg) and the VGG16 file. Built from paths and hashes only: nothing is loaded."""
    parts = [str(getattr(G, "source_sha256", ""))]
    parts.append(_file_identity(estimator) if estimator is not None else "dlatent_avg")
    if settings.perceptual == "vgg16":
        from babygan.encoder.perceptual import resolve_vgg16_weights

        # resolved here first so that a missing file gets the VGG16-specific message
        parts.append(_file_identity(resolve_vgg16_weights(settings.vgg16_weights, offline=offline)))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def cache_path(image: np.ndarray, settings: EncoderSettings, deps: str) -> Path:
    """Where the cached dlatents of one aligned image live (``deps`` from :func:`_dependencies`)."""
    from babygan.models import cache_dir

    key = hashlib.sha256(f"{image_sha256(image)}|{settings.cache_key()}|{deps}".encode()).hexdigest()
    return cache_dir("latents") / f"{key}.npy"


def _read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if w.shape != shape or w.dtype != np.float32 or not np.all(np.isfinite(w)):
        log.warning("encoder: ignoring a damaged cache entry %s", path)
        return None
    return w


def _fill_from_cache(out: np.ndarray, paths: list[Path], indices: Any, shape: tuple[int, int]) -> list[int]:
    """Copy the cached entries of ``indices`` into ``out``; return the indices not found."""
    missing = []
    for i in indices:
        cached = _read_cached(paths[i], shape) if paths[i].is_file() else None
        if cached is None:
            missing.append(i)
        else:
            out[i] = cached
            log.info("encoder: image %d found in the latent cache (%s)", i, paths[i].name)
    return missing


def encode_images(
    G: Any,
    images: Any,
    settings: EncoderSettings | None = None,
    *,
    use_cache: bool = True,
    offline: bool = False,
    progress: bool = True,
    on_result: Any = None,
) -> np.ndarray:
    """Dlatents (N, L, w_dim) float32 for uint8 (N, S, S, 3) aligned images, cached per image.

    Images found in the cache are not optimised again; the others go through
    :func:`encode` together, in batches of ``settings.batch_size``. ``on_result``, when
    given, is called with the :class:`EncodeResult` of the images that were encoded
    (not called when everything came from the cache).
    """
    settings = settings or EncoderSettings()
    images = check_images(images)
    n = images.shape[0]
    out = np.zeros((n, G.num_layers, G.w_dim), np.float32)
    todo = list(range(n))
    paths: list[Path] = []
    if use_cache:
        from babygan.encoder.estimator import choose_estimator, estimator_path

        shape = (G.num_layers, G.w_dim)
        estimator = estimator_path(G, settings, offline=offline)
        deps = _dependencies(G, settings, estimator, offline=offline)
        paths = [cache_path(img, settings, deps) for img in images]
        todo = _fill_from_cache(out, paths, range(n), shape)
        if todo and estimator is not None and choose_estimator(G, settings, offline=offline) is None:
            # "auto" mode and the estimator does not load: encode() will start from
            # dlatent_avg, so results are looked up and filed under that key
            deps = _dependencies(G, settings, None, offline=offline)
            paths = [cache_path(img, settings, deps) for img in images]
            todo = _fill_from_cache(out, paths, todo, shape)
    if todo:
        result: EncodeResult = encode(G, images[todo], settings, progress=progress, offline=offline)
        out[todo] = result.dlatents
        if use_cache:
            from babygan.atomic import atomic_path

            for j, i in enumerate(todo):
                with atomic_path(paths[i]) as tmp:
                    np.save(tmp, result.dlatents[j])
        if on_result is not None:
            on_result(result)
    return out
