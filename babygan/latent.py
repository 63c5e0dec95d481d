"""Operations on StyleGAN dlatents: parent blends, sibling crossover, directions, age.

Numpy only. A dlatent array here is ``(L, w_dim)`` float32 for one face (L = synthesis
layers, 18 for the 1024 px FFHQ model) or ``(N, L, w_dim)`` for a batch.

The blends and the age mapping follow BabyGAN's published notebook (tg-bomze/BabyGAN):

- style "default": ``child = (1 - genes) * father + genes * mother``;
- style "father":  ``t = ((1..L) / L) ** genes``,       ``child = t * father + (1 - t) * mother``;
- style "mother":  ``t = ((1..L) / L) ** (1 - genes)``, ``child = (1 - t) * father + t * mother``;
- a direction moves only the first 8 layers: ``w[:8] += coeff * direction[:8]``;
- age in years -> coefficient on the age direction: ``coeff = 6 - age / 5``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from babygan.errors import BabyganError

STYLES = ("default", "father", "mother")
# BabyGAN edits only the coarse and middle styles (layers 0..7): pose, face shape, age.
DEFAULT_EDIT_LAYERS = 8
DEFAULT_AGE_YEARS = 10.0

LayerSpec = int | slice | Sequence[int]


def _check_genes(genes: float) -> float:
    genes = float(genes)
    if not 0.0 <= genes <= 1.0 or not np.isfinite(genes):
        raise BabyganError(f"genes must be between 0 (all father) and 1 (all mother), got {genes}")
    return genes


def _check_pair(father: np.ndarray, mother: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    father = np.asarray(father, dtype=np.float32)
    mother = np.asarray(mother, dtype=np.float32)
    if father.shape != mother.shape or father.ndim not in (2, 3):
        raise BabyganError(
            f"parents' dlatents must have the same shape (L, w_dim) or (N, L, w_dim), "
            f"got {father.shape} and {mother.shape}"
        )
    return father, mother


def mother_weights(num_layers: int, genes: float = 0.5, style: str = "default") -> np.ndarray:
    """Per-layer weight of the mother in the blend: ``(L, 1)`` float32 in [0, 1].

    ``child = (1 - m) * father + m * mother`` with ``m`` from this function reproduces
    every BabyGAN style (for "father", ``m = 1 - t``; for "mother", ``m = t``).
    """
    genes = _check_genes(genes)
    if style not in STYLES:
        raise BabyganError(f"unknown blend style {style!r}: choose one of {', '.join(STYLES)}")
    ramp = np.arange(1, num_layers + 1, dtype=np.float64) / num_layers  # (L,) 1/L .. 1
    if style == "default":
        m = np.full(num_layers, genes)
    elif style == "father":
        m = 1.0 - ramp**genes
    else:
        m = ramp ** (1.0 - genes)
    return m.astype(np.float32)[:, None]


def blend(father: np.ndarray, mother: np.ndarray, genes: float = 0.5, style: str = "default") -> np.ndarray:
    """Mix the parents' dlatents. ``(L, w_dim)`` or ``(N, L, w_dim)`` float32 in, same shape out.

    ``genes``: 0 = all father, 1 = all mother (for style "default"; the per-layer
    styles bend it along the layers as BabyGAN's "Father's/Mother's photo" do).
    """
    father, mother = _check_pair(father, mother)
    m = mother_weights(father.shape[-2], genes, style)  # (L, 1) broadcasts over w_dim and N
    return ((1.0 - m) * father + m * mother).astype(np.float32)


def crossover_mask(num_layers: int, genes: float, rng: np.random.Generator) -> np.ndarray:
    """A random per-layer choice of parent: ``(L,)`` bool, True = this layer from the mother.

    Each layer comes from the mother with probability ``genes``.
    """
    genes = _check_genes(genes)
    return rng.random(num_layers) < genes


def crossover(
    father: np.ndarray, mother: np.ndarray, genes: float = 0.5, seed: int | np.random.Generator = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A sibling: each layer's style taken whole from one parent, chosen at random.

    father, mother: ``(L, w_dim)`` float32. Returns ``(child (L, w_dim) float32, mask (L,) bool)``
    where ``mask[i]`` says layer i came from the mother. The same seed gives the same child.
    """
    father, mother = _check_pair(father, mother)
    if father.ndim != 2:
        raise BabyganError(f"crossover takes one face's dlatents (L, w_dim), got {father.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    mask = crossover_mask(father.shape[0], genes, rng)
    child = np.where(mask[:, None], mother, father).astype(np.float32)
    return child, mask


def layer_indices(num_layers: int, layers: LayerSpec = DEFAULT_EDIT_LAYERS) -> np.ndarray:
    """The layers an edit touches, as sorted unique indices (int64).

    ``layers``: an int n (the first n layers, clipped to L), a slice, or a list of indices.
    """
    if isinstance(layers, bool):
        raise BabyganError(f"bad layer selection {layers!r}")
    if isinstance(layers, int | np.integer):
        if layers < 0:
            raise BabyganError(f"the number of edited layers must be >= 0, got {layers}")
        return np.arange(min(int(layers), num_layers))
    if isinstance(layers, slice):
        return np.arange(num_layers)[layers]
    idx = np.unique(np.asarray(list(layers), dtype=np.int64))
    if idx.size and (idx.min() < 0 or idx.max() >= num_layers):
        raise BabyganError(f"layer indices {idx.tolist()} are outside 0..{num_layers - 1}")
    return idx


def check_direction(
    direction: np.ndarray, num_layers: int, w_dim: int, name: str = "direction"
) -> np.ndarray:
    """Return ``direction`` as ``(L, w_dim)`` float32, or raise naming ``name`` and both shapes."""
    direction = np.asarray(direction)
    if direction.shape != (num_layers, w_dim):
        raise BabyganError(
            f"{name}: direction has shape {direction.shape}, but the generator's dlatents are "
            f"({num_layers}, {w_dim}); use directions made for this model"
        )
    if not np.all(np.isfinite(direction)):
        raise BabyganError(f"{name}: direction contains NaN or infinite values")
    return direction.astype(np.float32)


def apply_direction(
    w: np.ndarray,
    direction: np.ndarray,
    coeff: float,
    layers: LayerSpec = DEFAULT_EDIT_LAYERS,
    name: str = "direction",
) -> np.ndarray:
    """``w + coeff * direction`` on the chosen layers only (default the first 8); a new array.

    w: ``(L, w_dim)`` or ``(N, L, w_dim)`` float32; direction: ``(L, w_dim)``.
    """
    w = np.asarray(w, dtype=np.float32)
    if w.ndim not in (2, 3):
        raise BabyganError(f"dlatents must be (L, w_dim) or (N, L, w_dim), got {w.shape}")
    num_layers, w_dim = w.shape[-2:]
    direction = check_direction(direction, num_layers, w_dim, name)
    idx = layer_indices(num_layers, layers)
    out = w.copy()
    out[..., idx, :] += np.float32(coeff) * direction[idx]
    return out


def apply_directions(
    w: np.ndarray,
    shifts: Sequence[tuple[np.ndarray, float, str]],
    layers: LayerSpec = DEFAULT_EDIT_LAYERS,
) -> np.ndarray:
    """Apply several ``(direction, coeff, name)`` shifts in order (they add up)."""
    for direction, coeff, name in shifts:
        w = apply_direction(w, direction, coeff, layers, name)
    return np.asarray(w, dtype=np.float32)


def age_to_coeff(age_years: float) -> float:
    """Target age in years -> coefficient on BabyGAN's age direction (10 y -> 4, 30 -> 0, 50 -> -4)."""
    return 6.0 - float(age_years) / 5.0


def coeff_to_age(coeff: float) -> float:
    """The inverse of :func:`age_to_coeff`."""
    return 5.0 * (6.0 - float(coeff))


@dataclass(frozen=True)
class Age:
    """One target age, held as it was given: in years, or as the raw coefficient on the age
    direction. Make one with :meth:`years` or :meth:`coeff`; :attr:`coefficient` is what edits use."""

    value: float
    in_years: bool = True
    #: the coefficient of an age in years on the model that runs (its calibration, see
    #: babygan/aging.py), once a session has resolved it; None: BabyGAN's ``6 - years / 5``
    calibrated: float | None = None

    @classmethod
    def years(cls, years: float) -> Age:
        return cls(float(years), True)

    @classmethod
    def coeff(cls, coeff: float) -> Age:
        return cls(float(coeff), False)

    def with_coefficient(self, coeff: float) -> Age:
        """This age in years with its coefficient measured on a model (raw coefficients stay)."""
        return Age(self.value, True, float(coeff)) if self.in_years else self

    @property
    def coefficient(self) -> float:
        if not self.in_years:
            return self.value
        return age_to_coeff(self.value) if self.calibrated is None else self.calibrated

    def to_json(self) -> dict[str, Any]:
        """``{"age": years or None, "age_coeff": the coefficient}``."""
        return {"age": self.value if self.in_years else None, "age_coeff": self.coefficient}

    def label(self) -> str:
        """``"13.2 y"`` in years, ``"+4"`` as a coefficient."""
        return f"{round(self.value, 1):g} y" if self.in_years else f"{round(self.value, 2):+g}"


#: BabyGAN's default target age: 10 years
DEFAULT_AGE = Age.years(DEFAULT_AGE_YEARS)
#: an age sweep's ages when none are given: FROM:TO:N years (babygan.latent.parse_range)
DEFAULT_SWEEP_AGES = "1:50:19"


def parse_range(text: str, *, count: bool) -> np.ndarray:
    """Parse ``"start:stop:n"`` (count=True, n values from start to stop inclusive) or
    ``"start:stop:step"`` (count=False, stop included when it falls on a step) -> float64 (K,).
    A single number gives one value."""
    parts = text.split(":")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise BabyganError(f"bad range {text!r}: expected start:stop:{'n' if count else 'step'}") from None
    if len(nums) == 1:
        return np.array(nums)
    if len(nums) != 3:
        raise BabyganError(f"bad range {text!r}: expected start:stop:{'n' if count else 'step'}")
    start, stop, third = nums
    if count:
        if third != int(third) or third < 1:
            raise BabyganError(f"bad range {text!r}: the number of frames must be a whole number >= 1")
        return np.linspace(start, stop, int(third))
    if third == 0 or (stop - start) / third < 0:
        raise BabyganError(f"bad range {text!r}: the step must be non-zero and go from start toward stop")
    n = int(np.floor((stop - start) / third + 1e-9)) + 1
    return start + third * np.arange(n)
