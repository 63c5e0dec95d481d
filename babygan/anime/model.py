"""The anime model file: a babygan generator npz that names the photo model it was tuned from.

It is an ordinary generator file (``babygan.stylegan.generator.read_npz``) of the base model's
architecture, without E (photos are encoded by the base model's E), stored as float16, whose
``info`` says::

    {"kind": "anime", "base_sha256": <sha256 of the base model's file>,
     "swap_layer": <first W+ layer drawn with the style code>, "name": ..., "licence": ...}

The anime generator is only ever used with the base it was tuned from: its frozen coarse layers
and mapping are the base's, so one code draws one layout in both. Loading it with any other base
is refused in one line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babygan.errors import ModelFileError
from babygan.stylegan.generator import Generator, read_npz

ANIME_KIND = "anime"
#: the licence of anything trained on ../shared/datasets/anime96.tar
ANIME_LICENCE = "trained on anime96 (crawled anime faces, no licence stated): research use only"


@dataclass(frozen=True)
class AnimeModel:
    """An anime generator and how it joins its base model."""

    generator: Generator  # the tuned synthesis; same architecture as the base, no E
    swap_layer: int  # W+ layers >= swap_layer carry the style (0 < swap_layer < num_layers)
    base_sha256: str
    path: Path | None = None

    @property
    def info(self) -> dict[str, Any]:
        return self.generator.info


def _check_swap(swap_layer: int, num_layers: int, name: str) -> int:
    if not isinstance(swap_layer, int) or not 0 < swap_layer < num_layers:
        raise ModelFileError(
            f"{name}: swap_layer must be an integer in 1..{num_layers - 1}, not {swap_layer!r}"
        )
    return swap_layer


def save_anime_model(
    path: str | os.PathLike[str],
    base: Generator,
    params: dict[str, np.ndarray],
    *,
    swap_layer: int,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write the anime generator ``params`` (the base's synthesis/mapping names; E's are dropped).

    Written atomically, float16. ``info`` adds to (never replaces) kind, base and swap layer.
    """
    path = Path(path)
    _check_swap(swap_layer, base.num_layers, path.name)
    config = dataclasses.replace(base.config, image_encoder=False)
    kept = {n: np.asarray(params[n], np.float32) for n in config.param_shapes()}
    meta = {
        "name": path.stem,
        "licence": ANIME_LICENCE,
        "crop": base.info.get("crop"),
        **(info or {}),
        "kind": ANIME_KIND,
        "base_sha256": base.source_sha256,
        "swap_layer": int(swap_layer),
    }
    anime = Generator(config, kept, source_sha256=base.source_sha256, info=meta)
    return anime.save(path, storage="float16")


def load_anime_model(path: str | os.PathLike[str], base: Generator) -> AnimeModel:
    """Read an anime model file for ``base``; a one-line ModelFileError when it is not one, or
    belongs to another base."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: anime model file not found")
    config, params, meta = read_npz(path)
    info = dict(meta.get("info") or {})
    if info.get("kind") != ANIME_KIND:
        raise ModelFileError(f"{path.name}: not an anime model (a plain generator file)")
    if info.get("base_sha256") != base.source_sha256:
        raise ModelFileError(
            f"{path.name}: tuned from another model (sha256 {str(info.get('base_sha256'))[:12]}), "
            f"not this one ({base.source_sha256[:12]})"
        )
    if dataclasses.replace(base.config, image_encoder=False) != config:
        raise ModelFileError(f"{path.name}: its architecture differs from its base model's")
    swap = _check_swap(info.get("swap_layer"), config.num_layers, path.name)
    generator = Generator(config, params, source_sha256=base.source_sha256, info=info)
    return AnimeModel(generator=generator, swap_layer=swap, base_sha256=base.source_sha256, path=path)
