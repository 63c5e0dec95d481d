"""The product: two parents' photos in, a child's face out (one child, siblings, or an age sweep).

Both :func:`predict` and :func:`age_sweep` are built on :func:`blend_and_edit`, the one
function that mixes two parents' dlatents and moves the result along the directions.

    session = Session("ffhq")
    result = predict("dad.jpg", "mum.jpg", ChildOptions(genes=0.4, age=Age.years(5)), session)
    paths = babygan.outputs.write_prediction(result, "out/")

The models and the photos' encodings live in the session (babygan/session.py); the files
are written by babygan/outputs.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from babygan import latent
from babygan.errors import BabyganError
from babygan.latent import Age
from babygan.render import resize
from babygan.session import Parent, Session

__all__ = [
    "Age",
    "Child",
    "ChildOptions",
    "EditOptions",
    "Parent",
    "PredictResult",
    "Session",
    "SweepResult",
    "age_sweep",
    "blend_and_edit",
    "child_dlatents",
    "predict",
]


# --------------------------------------------------------------------------- options


#: images of a model smaller than this (the built-in model's 64 px) are made this size (Lanczos)
#: unless ``size`` says otherwise, so people can see them; records keep the model's resolution
SHOWN_MIN = 256

@dataclass(frozen=True)
class EditOptions:
    """How the parents are mixed and edited, apart from the age (what an age sweep keeps fixed).

    shifts: ``(direction name, coefficient)`` pairs, e.g. ``(("gender", -1.0), ("smile", 1.0))``;
    a name is looked up as ``<name>.npy`` in the directions folder or the registry.
    """

    genes: float = 0.5
    style: str = "default"
    shifts: tuple[tuple[str, float], ...] = ()
    layers: int = latent.DEFAULT_EDIT_LAYERS
    size: int | None = None  # side of the written images; None: the model's, at least SHOWN_MIN
    face_father: int | None = None
    face_mother: int | None = None

    def __post_init__(self) -> None:
        latent.mother_weights(1, self.genes, self.style)  # validates genes and style
        if self.size is not None and self.size < 1:
            raise BabyganError(f"size={self.size}: must be a positive number of pixels")
        if self.layers < 0:
            raise BabyganError(f"layers={self.layers}: must be >= 0")
        names = [n for n, _ in self.shifts]
        if "age" in names:
            raise BabyganError("age is set with --age or --age-coeff, not as a shift")
        if len(set(names)) != len(names):
            raise BabyganError(f"a direction is shifted twice: {names}")

    def with_overrides(self, **changes: Any) -> Self:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["shifts"] = dict(self.shifts)
        return d


@dataclass(frozen=True)
class ChildOptions(EditOptions):
    """Everything that decides the child (or siblings), apart from the photos and the models."""

    age: Age = latent.DEFAULT_AGE  # a plain number is taken as years
    children: int = 1
    seed: int = 0
    resemblance: bool = True
    estimate: bool = True  # the child's apparent age and gender (babygan/attributes.py)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.age, Age):  # a plain number is an age in years
            object.__setattr__(self, "age", Age.years(self.age))
        if self.children < 1:
            raise BabyganError(f"children={self.children}: must be at least 1")

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d.update(self.age.to_json())  # the age as given and its coefficient
        return d


# --------------------------------------------------------------------------- blend and edit


class Directions(Protocol):
    """Where named directions come from (``Session.directions``, a
    ``babygan.directions.LatentDirections``): ``(L, w_dim)`` float32 each."""

    def direction(self, name: str) -> np.ndarray: ...


def blend_and_edit(
    father: np.ndarray,
    mother: np.ndarray,
    options: EditOptions,
    directions: Directions,
    age_coeff: float,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """One child's dlatents ``(L, w_dim)`` float32 from the parents' ``(L, w_dim)``.

    The parents are blended by ``options.genes`` / ``options.style`` or, with ``mask``
    (``(L,)`` bool, True = the mother's layer), crossed over layer by layer; then the age
    direction (``age_coeff``) and every shift of ``options`` move the first ``options.layers`` layers.
    """
    if mask is None:
        w = latent.blend(father, mother, options.genes, options.style)
    else:
        w = np.where(np.asarray(mask, bool)[:, None], mother, father).astype(np.float32)
    shifts = [(directions.direction("age"), float(age_coeff), "age")]
    shifts += [(directions.direction(name), float(c), name) for name, c in options.shifts]
    return latent.apply_directions(w, shifts, options.layers)


def _load_directions(options: EditOptions, directions: Directions) -> None:
    """Load and check every direction a run needs (before the slow encode)."""
    for name in ("age", *(n for n, _ in options.shifts)):
        directions.direction(name)


# --------------------------------------------------------------------------- predict


@dataclass
class Child:
    """One predicted child."""

    name: str  # "child", or "child_01" ... for siblings
    dlatents: np.ndarray  # (L, w_dim) float32, after the blend and every shift
    image: np.ndarray  # uint8 (size, size, 3)
    noise: str  # "const" (the model's own noise maps) or "random"
    noise_seed: int | None
    crossover: list[str] | None  # per layer "father" / "mother" for siblings, None for a blend
    resemblance: dict[str, Any] | None = None  # Session.resemblance, with options.resemblance
    estimate: dict[str, Any] | None = None  # Session.estimate: apparent age and gender, with options.estimate


@dataclass
class PredictResult:
    father: Parent
    mother: Parent
    children: list[Child]
    options: ChildOptions
    #: Session.provenance(): model, directions, encoder
    provenance: dict[str, Any] = field(default_factory=dict)


def child_dlatents(
    father: np.ndarray, mother: np.ndarray, options: ChildOptions, directions: Directions
) -> list[tuple[str, np.ndarray, int | None, list[str] | None]]:
    """The children's dlatents: ``[(name, (L, w_dim) float32, noise seed | None, crossover | None)]``.

    One child: the parents' blend (style and genes). Siblings (children > 1): each a random
    per-layer crossover weighted by genes, with its own noise seed, all drawn from ``seed``.
    """
    coeff = options.age.coefficient
    if options.children == 1:
        return [("child", blend_and_edit(father, mother, options, directions, coeff), None, None)]
    out: list[tuple[str, np.ndarray, int | None, list[str] | None]] = []
    num_layers = np.asarray(father).shape[0]
    for i in range(1, options.children + 1):
        rng = np.random.default_rng([options.seed, i])
        mask = latent.crossover_mask(num_layers, options.genes, rng)
        noise_seed = int(rng.integers(0, 2**31 - 1))
        w = blend_and_edit(father, mother, options, directions, coeff, mask)
        out.append((f"child_{i:02d}", w, noise_seed, ["mother" if m else "father" for m in mask]))
    return out


def predict(
    father: str | Path,
    mother: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
) -> PredictResult:
    """Align and encode both parents (remembered), blend, edit, synthesize, and measure the
    children (resemblance and estimated age/gender, as ``options`` asks)."""
    options = options or ChildOptions()
    session = session or Session()
    directions = session.directions
    _load_directions(options, directions)
    dad, mum = session.parents([(father, options.face_father), (mother, options.face_mother)])
    size = options.size or max(int(session.generator.resolution), SHOWN_MIN)
    children, images = [], []
    for name, w, noise_seed, layers in child_dlatents(dad.dlatents, mum.dlatents, options, directions):
        noise = "const" if noise_seed is None else "random"
        image = session.synthesize(w[None], noise=noise, seed=noise_seed)[0]
        child = Child(name, w, resize(image, size), noise, noise_seed, layers)
        if options.resemblance:
            child.resemblance = session.resemblance(image, dad, mum)
        children.append(child)
        images.append(image)
    if options.estimate:
        for child, estimate in zip(children, session.estimate(images), strict=True):
            child.estimate = estimate
    return PredictResult(dad, mum, children, options, session.provenance())


# --------------------------------------------------------------------------- age sweep


@dataclass
class SweepResult:
    father: Parent
    mother: Parent
    ages: list[Age]  # one per frame
    dlatents: np.ndarray  # (T, L, w_dim) float32
    frames: list[np.ndarray]  # uint8 (size, size, 3) each
    options: EditOptions
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def coeffs(self) -> np.ndarray:
        """(T,) float64: each frame's coefficient on the age direction."""
        return np.array([a.coefficient for a in self.ages], np.float64)

    @property
    def years(self) -> np.ndarray | None:
        """(T,) float64 years, when the sweep was given in years; else None."""
        if not all(a.in_years for a in self.ages):
            return None
        return np.array([a.value for a in self.ages], np.float64)

    def labels(self) -> list[str]:
        return [a.label() for a in self.ages]


def age_sweep(
    father: str | Path,
    mother: str | Path,
    options: EditOptions | None = None,
    session: Session | None = None,
    *,
    ages: Sequence[Age | float],
    batch: int = 4,
) -> SweepResult:
    """The same child at several ages: the parents are encoded once, only the age moves.

    ``ages``: e.g. ``[Age.years(a) for a in (1, 10, 30)]`` (plain numbers are years too) or
    BabyGAN's animation, ``[Age.coeff(c) for c in np.arange(-4, 4.5, 0.5)]``.
    """
    options = options or EditOptions()
    session = session or Session()
    steps = [a if isinstance(a, Age) else Age.years(a) for a in ages]
    if not steps:
        raise BabyganError("age sweep: no frames")
    directions = session.directions
    _load_directions(options, directions)
    dad, mum = session.parents([(father, options.face_father), (mother, options.face_mother)])
    w = np.stack(
        [blend_and_edit(dad.dlatents, mum.dlatents, options, directions, a.coefficient) for a in steps]
    )
    size = options.size or max(int(session.generator.resolution), SHOWN_MIN)
    frames: list[np.ndarray] = []
    for start in range(0, len(w), batch):
        frames += [resize(im, size) for im in session.synthesize(w[start : start + batch])]
    return SweepResult(dad, mum, steps, w.astype(np.float32), frames, options, session.provenance())
