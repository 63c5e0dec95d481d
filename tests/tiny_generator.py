"""Tiny random generators for tests: 32 px (8 layers), 16 feature maps, z/w 32 wide, built in a second."""

from __future__ import annotations

from babygan.stylegan import Generator, random_generator


def tiny_generator(seed: int = 0, resolution: int = 32, **kwargs) -> Generator:
    """Random weights; mapping lrmul 0.01 as the real thing. Builds its TF functions on first use."""
    return random_generator(
        resolution=resolution,
        fmap_base=64,
        fmap_max=16,
        seed=seed,
        latent_size=32,
        dlatent_size=32,
        mapping_layers=2,
        **kwargs,
    )


def tiny_fused_generator(seed: int = 0) -> Generator:
    """128 px so the fused transposed-conv path is used (8 feature maps at the top, still small)."""
    return random_generator(
        resolution=128,
        fmap_base=64,
        fmap_max=16,
        seed=seed,
        latent_size=32,
        dlatent_size=32,
        mapping_layers=2,
    )
