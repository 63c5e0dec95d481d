"""Where an encoded photo's dlatents are kept: one .npy per aligned image, model and settings.

A result is keyed by the SHA-256 of the aligned image's pixels (with its shape), the
generator's source file hash, ``settings.cache_key()`` and the identity of the files the
result depends on (the estimator that gave the start, the VGG16 weights). Entries are
(L, w_dim) float32 arrays under ``cache_dir("latents")``, written atomically.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from babygan.encoder.settings import EncoderSettings

log = logging.getLogger("babygan")


def image_sha256(image: np.ndarray) -> str:
    """SHA-256 of a uint8 (S, S, 3) image's shape and pixels."""
    digest = hashlib.sha256(f"{image.shape}{image.dtype}".encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def file_identity(path: Path) -> str:
    """A hash standing for a model file's content (remembered across processes by its stamp)."""
    from babygan.models import cached_sha256

    return cached_sha256(Path(path).resolve())


def dependencies_key(
    source_sha256: str,
    estimator: Path | None,
    vgg16: Path | None,
    init_file: Path | None = None,
    identity: Path | None = None,
) -> str:
    """What besides the settings decides a result: G's file, the start (an init .npy file,
    the estimator file or dlatent_avg), the VGG16 file and dlib's descriptor network file
    (with the identity term). Built from paths and hashes only: nothing is loaded."""
    if init_file is not None:
        start = "init:" + file_identity(init_file)
    else:
        start = file_identity(estimator) if estimator is not None else "dlatent_avg"
    parts = [source_sha256, start]
    if vgg16 is not None:
        parts.append(file_identity(vgg16))
    if identity is not None:
        parts.append("identity:" + file_identity(identity))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def cache_path(
    image: np.ndarray, settings: EncoderSettings, deps: str, mask_digest: str | None = None
) -> Path:
    """Where the cached dlatents of one aligned image live (``deps`` from :func:`dependencies_key`;
    ``mask_digest``: its face mask's hash when the loss is masked)."""
    from babygan.models import cache_dir

    text = f"{image_sha256(image)}|{settings.cache_key()}|{deps}"
    if mask_digest is not None:
        text += f"|mask:{mask_digest}"
    key = hashlib.sha256(text.encode()).hexdigest()
    return cache_dir("latents") / f"{key}.npy"


def read_cached(path: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The (L, w_dim) float32 entry at ``path``, or None when absent or damaged (with a warning)."""
    if not path.is_file():
        return None
    try:
        w = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        w = None
    if w is None or w.shape != shape or w.dtype != np.float32 or not np.all(np.isfinite(w)):
        log.warning("encoder: ignoring a damaged cache entry %s", path)
        return None
    return w


def write_cached(path: Path, dlatents: np.ndarray) -> None:
    from babygan.atomic import atomic_path

    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(dlatents, np.float32))
