"""Codes in, anime faces out: the photo model's W+ drawn by its anime copy, in one or many styles.

    stylizer = AnimeStylizer(base, load_anime_model("anime.npz", base))
    own = stylizer.render(w)                        # (N, L, w_dim) -> uint8 (N, S, S, 3)
    takes = stylizer.takes(w[0], n=4, seed=0)       # four styles of one face

The anime generator's coarse layers (W+ layers < ``swap_layer``) and mapping are the base's,
frozen, so a code keeps its layout in both models (Toonify's layer swap). The layers from
``swap_layer`` on decide the rendering: the face's own code there is the plain anime version
of the face; random codes of the base's mapping there are the other styles (GANs N' Roses'
many styles of one content, done by style mixing). Renders use the generator's stored noise,
so the same code always draws the same picture.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from babygan.anime.model import AnimeModel
from babygan.errors import BabyganError, ModelFileError
from babygan.stylegan import Generator, to_uint8, truncate

#: most styles one call draws (the CLI's --styles range is 1..MAX_STYLES)
MAX_STYLES = 16
#: style codes are drawn at this truncation (every layer, toward the base's average code): the
#: mapping's far tails draw broken rendering more often than new looks; 0.7 is StyleGAN's usual
#: setting for samples
STYLE_PSI = 0.7
#: the default take draws the face's own code with its layers from ``swap_layer`` on moved toward
#: the base's average code by this much (1: as they are). Refined photo codes lie off the
#: mapping's range in the fine layers, where the anime model was never tuned; on the shipped
#: model, 0.7 drew anime faces for 95 % of 100 held-out photos against 65 % at 1, each matched
#: back to its own photo as often (scripts/eval_anime.py --own-psi compares the settings)
OWN_PSI = 0.7


def check_styles(styles: int, *, least: int = 0) -> int:
    """``styles`` as an int in ``least``..MAX_STYLES, or a one-line BabyganError."""
    whole = isinstance(styles, int | np.integer) and not isinstance(styles, bool)
    if not whole or not least <= styles <= MAX_STYLES:
        raise BabyganError(f"styles={styles!r}: must be a whole number from {least} to {MAX_STYLES}")
    return int(styles)


class AnimeStylizer:
    """The base (photo) model and its anime model, loaded once, drawing codes as anime faces.

    base: the photo model (its mapping makes the style codes; its E, if any, the faces' codes).
    anime: its anime model (``babygan.anime.model.load_anime_model(path, base)``).
    """

    def __init__(self, base: Generator, anime: AnimeModel, *, own_psi: float = OWN_PSI) -> None:
        name = anime.path.name if anime.path is not None else "anime model"
        if anime.base_sha256 != base.source_sha256 or anime.generator.source_sha256 != base.source_sha256:
            raise ModelFileError(
                f"{name}: tuned from another model (sha256 {anime.base_sha256[:12]}), "
                f"not this one ({base.source_sha256[:12]})"
            )
        if dataclasses.replace(base.config, image_encoder=False) != dataclasses.replace(
            anime.generator.config, image_encoder=False
        ):
            raise ModelFileError(f"{name}: its architecture differs from its base model's")
        if not 0 <= own_psi <= 1:
            raise ValueError(f"own_psi must be in 0..1, not {own_psi}")
        self.base = base
        self.anime = anime
        self.own_psi = float(own_psi)

    @property
    def resolution(self) -> int:
        """Side of the rendered faces in pixels (the models' resolution)."""
        return int(self.anime.generator.resolution)

    @property
    def swap_layer(self) -> int:
        return self.anime.swap_layer

    @property
    def shape(self) -> tuple[int, int]:
        """(L, w_dim): one code."""
        return int(self.base.num_layers), int(self.base.w_dim)

    def style_codes(self, n: int, seed: int) -> np.ndarray:
        """(n, L, w_dim) float32: the base mapping's codes of z drawn from ``default_rng([seed, k])``
        for k = 0..n-1 (code k depends on (seed, k) only), truncated by ``STYLE_PSI``."""
        if n < 0:
            raise ValueError(f"n must be >= 0, not {n}")
        if seed < 0:
            raise BabyganError(f"seed={seed}: must be >= 0")
        L, D = self.shape
        if n == 0:
            return np.zeros((0, L, D), np.float32)
        zs = [np.random.default_rng([int(seed), k]).standard_normal(self.base.z_dim) for k in range(n)]
        z = np.stack(zs).astype(np.float32)  # (n, z_dim)
        w = self.base.mapping(z)  # (n, L, w_dim)
        return truncate(w, self.base.dlatent_avg, STYLE_PSI, L).astype(np.float32)

    def mix(self, w: np.ndarray, styles: np.ndarray | None) -> np.ndarray:
        """w (N, L, w_dim) with its layers >= swap_layer taken from ``styles`` ((N, L, w_dim), or
        one (L, w_dim) for all); ``styles`` None: w as it is. float32 (N, L, w_dim)."""
        w = self._check(w, "w")
        if styles is None:
            return w
        styles = np.asarray(styles, np.float32)
        if styles.ndim == 2:
            styles = np.broadcast_to(styles, w.shape)
        styles = self._check(styles, "styles")
        if len(styles) != len(w):
            raise ValueError(f"{len(styles)} styles for {len(w)} codes")
        out = w.copy()
        out[:, self.swap_layer :] = styles[:, self.swap_layer :]
        return out

    def own_styles(self, w: np.ndarray) -> np.ndarray:
        """The default take's style: w (N, L, w_dim) moved toward the base's average code by
        :attr:`own_psi` (float32, same shape; only its layers >= swap_layer are drawn)."""
        w = self._check(w, "w")
        return truncate(w, self.base.dlatent_avg, self.own_psi, self.shape[0]).astype(np.float32)

    def render(self, w: np.ndarray, styles: np.ndarray | None = None) -> np.ndarray:
        """w (N, L, w_dim) mixed with ``styles`` as :meth:`mix` does (None: the face's own style,
        :meth:`own_styles`) -> uint8 (N, S, S, 3), S = :attr:`resolution`, drawn by the anime
        generator with its stored noise."""
        mixed = self.mix(w, self.own_styles(w) if styles is None else styles)
        return to_uint8(self.anime.generator.synthesis(mixed, noise="const"))

    def takes(self, w: np.ndarray, n: int, seed: int) -> np.ndarray:
        """n styles of one face: w (L, w_dim) -> uint8 (n, S, S, 3); take k uses style code k of
        ``seed`` (:meth:`style_codes`), so asking for more takes keeps the first ones."""
        w = np.asarray(w, np.float32)
        if w.shape != self.shape:
            raise ValueError(f"w must have shape {self.shape}, not {w.shape}")
        codes = self.style_codes(n, seed)
        # one take per call: a take's pixels must not depend on the batch it was drawn in
        out = [self.render(w[None], codes[k : k + 1])[0] for k in range(n)]
        S = self.resolution
        return np.stack(out) if out else np.zeros((0, S, S, 3), np.uint8)

    def _check(self, w: np.ndarray, what: str) -> np.ndarray:
        w = np.asarray(w, np.float32)
        if w.ndim != 3 or w.shape[1:] != self.shape:
            raise ValueError(f"{what} must have shape (N, {self.shape[0]}, {self.shape[1]}), not {w.shape}")
        return w
