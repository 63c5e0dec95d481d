"""Photos on disk -> dlatents and reconstructions: what ``babygan encode`` runs."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babygan.encoder.cache import encode_images
from babygan.encoder.settings import EncoderSettings
from babygan.errors import BabyganError

log = logging.getLogger("babygan")


@dataclass(frozen=True)
class EncodedPhoto:
    path: Path
    dlatents: np.ndarray  # (L, w_dim) float32
    reconstruction: np.ndarray  # uint8 (R, R, 3): G's render of ``dlatents``


def load_aligned(path: str | os.PathLike[str], size: int) -> np.ndarray:
    """An already aligned photo as uint8 (size, size, 3); it must be square (resized with Lanczos)."""
    from babygan.align import load_photo
    from babygan.render import resize

    image = load_photo(path)
    h, w = image.shape[:2]
    if h != w:
        raise BabyganError(
            f"{path}: an aligned photo must be square, this one is {w}x{h} (drop --aligned to align it)"
        )
    return resize(image, size)


def encode_photos(
    paths: Sequence[str | os.PathLike[str]],
    G: Any,
    settings: EncoderSettings | None = None,
    *,
    aligned: bool = False,
    use_cache: bool = True,
    offline: bool = False,
    progress: bool = True,
) -> list[EncodedPhoto]:
    """Align (unless ``aligned``) and encode photos, all in one call (both parents share a batch).

    Alignment gives G.resolution px crops; with ``aligned`` each photo is taken as it is
    and resized to G.resolution. Each photo's reconstruction is rendered once, here
    (:func:`encode_images` renders nothing).
    """
    settings = settings or EncoderSettings()
    images = []
    for path in paths:
        if aligned:
            images.append(load_aligned(path, G.resolution))
        else:
            from babygan.align import align_photo

            images.append(align_photo(path, output_size=G.resolution).image)
    batch = np.stack(images)  # uint8 (N, R, R, 3)
    dlatents = encode_images(G, batch, settings, use_cache=use_cache, offline=offline, progress=progress)
    from babygan.stylegan import to_uint8

    recon = to_uint8(G.synthesis(dlatents, noise="const"))
    return [EncodedPhoto(Path(p), w, r) for p, w, r in zip(paths, dlatents, recon, strict=True)]
