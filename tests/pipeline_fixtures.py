"""Tiny models and photos for the child pipeline's tests (predict, age-sweep, batch).

A 32 px generator with 16 feature maps (8 layers of 512-d dlatents) saved as our .npz,
tiny random directions of the matching (8, 512) shape, and two face photos that are
always available: scikit-image's astronaut cropped to one face, and its mirror image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Cheap encoder settings: pixel loss only (no VGG16 file), a couple of steps; float32, as the
# library's own calls that tests compare with.
FAST_ENCODER = ["--perceptual", "pixel", "--iterations", "2", "--quiet", "--precision", "fp32"]
DIRECTION_NAMES = ("age", "gender", "smile")


def make_tiny_model(folder: Path) -> tuple[Path, Path]:
    """Write tiny.npz and directions/{age,gender,smile}.npy into ``folder``; return both paths."""
    from babygan.stylegan import random_generator

    G = random_generator(32, fmap_max=16, seed=0)
    model = G.save(folder / "tiny.npz")
    directions = folder / "directions"
    directions.mkdir()
    rng = np.random.default_rng(1)
    for name in DIRECTION_NAMES:
        np.save(directions / f"{name}.npy", rng.standard_normal((G.num_layers, G.w_dim)) * 0.5)
    return model, directions


def make_photos(folder: Path) -> tuple[Path, Path]:
    """The astronaut's face (one face, 260x260) and its mirror image, as PNG files."""
    import skimage.data

    face = np.ascontiguousarray(skimage.data.astronaut()[0:260, 120:380])
    dad = folder / "astronaut.png"
    mum = folder / "astronaut_mirror.png"
    Image.fromarray(face).save(dad)
    Image.fromarray(np.ascontiguousarray(face[:, ::-1])).save(mum)
    return dad, mum
