"""Images from seeds, as the official generate scripts make them (z = RandomState(seed).randn(1, z_dim))."""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

from babygan.stylegan.generator import Generator, NoiseMode, to_uint8

_MAX_SEED = 2**32 - 1  # numpy.random.RandomState accepts seeds up to this


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"1,5,9"`` or a mix (``"0-3,10"``) -> [0, 1, ...]; ValueError with a reason otherwise."""
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"{text!r} is not a list of seeds (use e.g. 0-7 or 1,5,9)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"{part!r}: the range ends before it starts")
        if hi > _MAX_SEED:
            raise ValueError(f"{part!r}: seeds must be between 0 and {_MAX_SEED}")
        seeds.extend(range(lo, hi + 1))
    return seeds


def seed_latent(seed: int, z_dim: int) -> np.ndarray:
    """float64 (1, z_dim): the official scripts' z for a seed."""
    return np.random.RandomState(seed).randn(1, z_dim)


def generate_from_seeds(
    G: Generator,
    seeds: list[int],
    *,
    truncation_psi: float = 0.7,
    truncation_cutoff: int | None = 8,
    noise: NoiseMode = "const",
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (seed, w float32 (L, w_dim), image uint8 (H, W, C)) per seed, in minibatches.

    With ``noise="random"`` each image's noise is drawn from its own seed, so an image
    does not depend on which other seeds are asked for.
    """
    for start in range(0, len(seeds), G.minibatch):
        batch = seeds[start : start + G.minibatch]
        z = np.concatenate([seed_latent(s, G.z_dim) for s in batch])
        w = G.mapping(z, truncation_psi, truncation_cutoff)  # (n, L, w_dim)
        if noise == "const":
            images = G.synthesis(w, noise="const")
        else:
            images = np.concatenate(
                [G.synthesis(w[i : i + 1], noise="random", seed=s) for i, s in enumerate(batch)]
            )
        yield from zip(batch, w, to_uint8(images), strict=True)
