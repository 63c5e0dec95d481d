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


# (resolved path, size, mtime) -> sha256, so a large estimator is hashed once per process
_HASHES: dict[tuple[str, int, int], str] = {}


def _file_identity(name_or_path: str | None, *, offline: bool) -> str:
    """A hash standing for a model file's content ("" when there is none)."""
    if not name_or_path:
        return ""
    from babygan.models import resolve_model_file, sha256_file

    path = resolve_model_file(name_or_path, offline=offline).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = sha256_file(path)
    return _HASHES[key]


def _dependencies(G: Any, settings: EncoderSettings, *, offline: bool) -> str:
    """What besides the settings decides a result: the start (estimator or dlatent_avg) and VGG file."""
    from babygan.encoder.estimator import choose_estimator

    parts = [str(getattr(G, "source_sha256", ""))]
    chosen = choose_estimator(G, settings, offline=offline)
    parts.append(_file_identity(str(chosen[1]), offline=offline) if chosen else "dlatent_avg")
    if settings.perceptual == "vgg16":
        from babygan.encoder.perceptual import resolve_vgg16_weights

        # resolved here first so that a missing file gets the VGG16-specific message
        parts.append(
            _file_identity(
                str(resolve_vgg16_weights(settings.vgg16_weights, offline=offline)), offline=offline
            )
        )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def cache_path(image: np.ndarray, G: Any, settings: EncoderSettings, deps: str) -> Path:
    """Where the cached dlatents of one aligned image live."""
    from babygan.models import cache_dir

    key = hashlib.sha256(
        f"{image_sha256(image)}|{G.source_sha256}|{settings.cache_key()}|{deps}".encode()
    ).hexdigest()
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
        deps = _dependencies(G, settings, offline=offline)
        paths = [cache_path(img, G, settings, deps) for img in images]
        todo = []
        for i, path in enumerate(paths):
            cached = _read_cached(path, (G.num_layers, G.w_dim)) if path.is_file() else None
            if cached is None:
                todo.append(i)
            else:
                out[i] = cached
                log.info("encoder: image %d found in the latent cache (%s)", i, path.name)
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
