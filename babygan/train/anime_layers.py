"""What an anime tuning run tunes and the two terms that hold it beside the adversarial loss.

- ``default_swap_layer`` / ``trained_names``: which synthesis layers are tuned (from the first at
  16 px on) and which stay the base's.
- ``structure_maps``: the coarse layout of an image (grey, 8 x 8, standardised), which the tuning
  holds to the base's image of the same code, so one code draws one layout in both models.
- ``mix_styles`` / ``style_gap``: many styles of one face. A batch of fakes is drawn as pairs that
  share their coarse layers and differ from ``swap_layer`` on (StyleGAN's style mixing, which is
  how ``babygan anime`` draws its takes); ``style_gap`` is how much less two takes of one face
  differ in the anime model than the same two codes do in the base. Without it the earlier runs
  drew every take of a face as one image (docs in the README's anime section).

Arrays: images float (N, R, R, 3) in ~[-1, 1]; codes float32 (N, L, w_dim).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from babygan.errors import BabyganError
from babygan.stylegan.config import GeneratorConfig

STRUCTURE_SIZE = 8  # the layout's grid: 8 x 8 cells of a 64 px face are 8 px, eyes and mouth apart
SWAP_RESOLUTION = 16


def default_swap_layer(config: GeneratorConfig) -> int:
    """The first synthesis layer drawn at 16 px (layer 4 of any model of 32 px and up).

    For the 64 px built-in model (10 layers) this freezes the 4 and 8 px layers (0-3) and tunes
    16, 32 and 64 px (4-9). An 8 x 8 grid on a 64 px face places the face outline, hair mass,
    eyes and mouth: the layout the photo and the anime face must share. The 16 px layers draw
    the features' shapes, where anime differs most (eyes twice a photo's size, small nose and
    mouth): frozen too (swap at 32 px) the features would stay photographic; tuned from 8 px on,
    the face shape itself would drift from the photo's.
    """
    for layer in range(config.num_layers):
        if config.layer_resolution(layer) >= SWAP_RESOLUTION:
            return max(layer, 1)
    return max(config.num_layers - 2, 1)  # a model below 16 px: its top resolution's first layer


def trained_names(config: GeneratorConfig, swap_layer: int, tune_noise: bool = False) -> list[str]:
    """The parameters the tuning changes: layers >= swap_layer (not their stored noise; their noise
    strengths only with ``tune_noise``) and ToRGB."""
    names = []
    for name in config.param_shapes():
        if name.startswith("synthesis.layer"):
            layer = int(name.split(".")[1][len("layer") :])
            if name.endswith(".noise_strength") and not tune_noise:
                continue
            if layer >= swap_layer and not name.endswith(".noise"):
                names.append(name)
        elif name.startswith("synthesis.torgb."):
            names.append(name)
    return names


def check_swap_layer(config: GeneratorConfig, swap_layer: int) -> int:
    if not isinstance(swap_layer, int) or not 0 < swap_layer < config.num_layers:
        raise BabyganError(
            f"swap_layer must be an integer in 1..{config.num_layers - 1} for a {config.resolution} px "
            f"model ({config.num_layers} layers), not {swap_layer!r}"
        )
    return swap_layer


def structure_maps(images: Any, size: int = STRUCTURE_SIZE) -> Any:
    """images float (N, R, R, 3) in ~[-1, 1] -> float32 (N, size * size): the grey image averaged
    to size x size, each map standardised (mean 0, std 1): the layout, whatever its colours."""
    gray = ops.mean(ops.cast(images, "float32"), axis=-1, keepdims=True)
    cell = max(int(gray.shape[1]) // size, 1)
    pooled = ops.average_pool(gray, cell, cell, padding="valid")
    flat = ops.reshape(pooled, (-1, int(pooled.shape[1]) * int(pooled.shape[2])))
    flat = flat - ops.mean(flat, axis=1, keepdims=True)
    return flat * ops.rsqrt(ops.mean(ops.square(flat), axis=1, keepdims=True) + 1e-4)


def mix_styles(w: Any, swap_layer: int) -> Any:
    """w (B, L, w_dim), B even -> (B, L, w_dim): the first half as it is; row B/2 + k has row k's
    layers below ``swap_layer`` and row B/2 + k's own from there on (face k in another style)."""
    half = int(w.shape[0]) // 2
    faces, styles = w[:half], w[half:]
    mixed = ops.concatenate([faces[:, :swap_layer], styles[:, swap_layer:]], axis=1)
    return ops.concatenate([faces, mixed], axis=0)


def style_gap(fakes: Any, photos: Any) -> Any:
    """How much less the two takes of each face differ in the anime model than in the base.

    fakes, photos float (B, R, R, 3): the anime model's and the base's images of the same codes,
    drawn by ``mix_styles`` (rows k and B/2 + k: one face, two styles). Per face, the mean absolute
    difference of its two takes in the anime model over that in the base; the gap is how far that
    ratio falls below 1, averaged -> scalar float32 in [0, 1]: 0 when the anime takes differ at least
    as much as the photo model's, 1 when they are one image.
    """
    half = int(fakes.shape[0]) // 2
    f, p = ops.cast(fakes, "float32"), ops.cast(photos, "float32")
    anime_apart = ops.mean(ops.abs(f[:half] - f[half:]), axis=(1, 2, 3))
    photo_apart = ops.mean(ops.abs(p[:half] - p[half:]), axis=(1, 2, 3))
    return ops.mean(ops.relu(1.0 - anime_apart / (photo_apart + 1e-3)))
