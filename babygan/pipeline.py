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
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from babygan import edit_ranges, latent
from babygan.aging import AgingSettings
from babygan.backend import graph_store
from babygan.errors import BabyganError
from babygan.latent import Age
from babygan.parents import Parent
from babygan.render import resize
from babygan.session import Session

__all__ = [
    "Age",
    "Child",
    "ChildOptions",
    "EditOptions",
    "Parent",
    "PredictResult",
    "Session",
    "SweepResult",
    "age_children",
    "age_sweep",
    "anime_images",
    "anime_record",
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
    #: how an age in years is reached (babygan/aging.py); steps=0: the calibrated direction alone
    aging: AgingSettings = field(default_factory=AgingSettings)
    #: also draw each child (each sweep frame) through the session's anime model (Session.anime)
    anime: bool = False
    #: with anime: None, the default take (the face's own code in the fine layers too); a seed,
    #: the style take of that seed (AnimeStylizer.style_codes(1, seed)), the same for every child
    anime_seed: int | None = None

    def __post_init__(self) -> None:
        # what no model changes: genes in 0..1, finite shifts (their range is the model's:
        # predict and age_sweep check it against session.edit_ranges)
        edit_ranges.DEFAULT_RANGES.check_genes(self.genes)
        for name, value in self.shifts:
            edit_ranges.require_finite("shift", value, direction=name)
        latent.mother_weights(1, self.genes, self.style)  # validates style
        if self.size is not None and self.size < 1:
            raise BabyganError(f"size={self.size}: must be a positive number of pixels")
        if self.layers < 0:
            raise BabyganError(f"layers={self.layers}: must be >= 0")
        if self.anime_seed is not None and not (isinstance(self.anime_seed, int) and self.anime_seed >= 0):
            raise BabyganError(f"anime_seed={self.anime_seed!r}: must be a whole number >= 0")
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
        d["aging"] = dataclasses.asdict(self.aging)
        if not self.anime:  # records (and a batch's done.json) of runs without anime stay as they were
            del d["anime"], d["anime_seed"]
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
        edit_ranges.require_finite("age" if self.age.in_years else "age_coeff", self.age.value)
        edit_ranges.DEFAULT_RANGES.check_children(self.children)

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


def _parents(
    session: Session, photos: list[tuple[str | Path, int | None]], options: EditOptions, ages: Sequence[Age]
) -> list[Parent]:
    """``session.parents(photos)``; when the run will age faces in years, the ager's one-off
    costs (``AgeEditor.warm``: tracing, the first run's graph optimisation) are paid in a second
    thread meanwhile. TensorFlow's runs (the encoding) release the GIL for most of their time,
    so on a 2-core CPU the warm-up costs the photos little, if its tracing waits for them to
    begin; the same graph runs afterwards, so nothing the run makes changes."""
    n = sum(a.in_years for a in ages)
    if not (n and options.aging.steps):
        return session.parents(photos)
    # built once, here: the encoding and the warm-up beside it share them
    _ = session.generator.prepared, session.identity_term(session.precision)
    stepping = threading.Event()  # the encoder's step graph is ready: TensorFlow's work from then on

    def warm() -> None:
        # the ager is made here too (its attribute network's Keras file takes 0.3 s to load);
        # a step that must be traced waits for the encoder's step graph
        # (graph_store.tracing_after): beside the encoder's own tracing it would only take turns
        # with it for the GIL
        ager = session.ager
        if ager is not None:
            with graph_store.tracing_after(stepping):
                ager.warm(n)

    with ThreadPoolExecutor(1, thread_name_prefix="babygan-warm") as pool:
        warming = pool.submit(warm)
        try:
            parents = session.parents(photos, stepping=stepping)
        finally:
            stepping.set()  # nothing encoded (all cached), or it failed: the warm-up goes on
        warming.result()
    return parents


# --------------------------------------------------------------------------- anime


def anime_images(session: Session, w: np.ndarray, seed: int | None, size: int, batch: int = 4) -> np.ndarray:
    """Codes ``(N, L, w_dim)`` float32 drawn by the session's anime model -> ``uint8 (N, size, size, 3)``.

    seed None: the default take (each code as it is); else the style take ``seed``, one style
    code for all (so siblings, or a sweep's frames, share one style).
    """
    stylizer = session.anime
    w = np.asarray(w, np.float32)
    styles = None if seed is None else stylizer.style_codes(1, seed)  # (1, L, w_dim)
    out = []
    for start in range(0, len(w), batch):
        chunk = w[start : start + batch]
        drawn = stylizer.render(chunk, None if styles is None else np.repeat(styles, len(chunk), axis=0))
        out += [resize(im, size) for im in drawn]
    return np.stack(out)


def anime_record(session: Session, seed: int | None) -> dict[str, Any]:
    """Which anime model drew the anime images, and which take, for the records."""
    from babygan.models import cached_sha256

    model = session.anime.anime  # the AnimeModel the stylizer was made with
    path = None if model.path is None else Path(model.path).resolve()
    return {
        "model": None if path is None else str(path),
        "name": model.info.get("name"),
        "sha256": None if path is None or not path.is_file() else cached_sha256(path),
        "base_sha256": model.base_sha256,
        "swap_layer": int(model.swap_layer),
        "take": "default" if seed is None else "style",
        "seed": seed,
    }


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
    aging: dict[str, Any] | None = None  # how the age was reached (age_children), for the record
    #: uint8 (size, size, 3): the same code (``dlatents``) drawn by the anime model, with options.anime
    anime: np.ndarray | None = None


@dataclass
class PredictResult:
    father: Parent
    mother: Parent
    children: list[Child]
    options: ChildOptions
    #: Session.provenance(): model, directions, encoder
    provenance: dict[str, Any] = field(default_factory=dict)
    anime: dict[str, Any] | None = None  # anime_record(), with options.anime


def child_dlatents(
    father: np.ndarray, mother: np.ndarray, options: ChildOptions, directions: Directions, *, age: bool = True
) -> list[tuple[str, np.ndarray, int | None, list[str] | None]]:
    """The children's dlatents: ``[(name, (L, w_dim) float32, noise seed | None, crossover | None)]``.

    One child: the parents' blend (style and genes). Siblings (children > 1): each a random
    per-layer crossover weighted by genes, with its own noise seed, all drawn from ``seed``.
    ``age=False``: the same children before the age edit (what aging holds their likeness to).
    """
    coeff = options.age.coefficient if age else 0.0
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


def age_children(
    session: Session,
    starts: np.ndarray,
    blends: np.ndarray,
    ages: Sequence[Age],
    options: EditOptions,
    anchors: dict[str, np.ndarray] | None = None,
    parents: tuple[Parent, Parent] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Faces moved to ages in years keep their likeness: ``starts`` (N, L, w_dim), the blends
    ``blends`` (N, L, w_dim) moved along the age direction by each age's coefficient, are
    refined by the session's AgeEditor (babygan/aging.py), each held to the descriptor of its
    blend's render, or of ``parents``' photos with ``aging.anchor="parents"``; ``anchors``:
    those already made (a sweep holds every frame to one). Raw coefficients, ``aging.steps=0``
    or no attribute network leave the starts as they are. Returns (dlatents (N, L, w_dim)
    float32, per face what was done, for the records)."""
    starts = np.asarray(starts, np.float32)
    records: list[dict[str, Any]] = [
        {"method": "direction", "coefficient": a.coefficient, "calibrated": a.calibrated is not None}
        for a in ages
    ]
    todo = [i for i, a in enumerate(ages) if a.in_years]
    if not todo or options.aging.steps == 0 or session.ager is None:
        return starts, records
    if anchors is None:
        blends = np.asarray(blends, np.float32)[todo]
        held = None
        if options.aging.anchor == "parents" and parents is not None:
            held = (parents[0].aligned, parents[1].aligned, options.genes)
        anchors = session.ager.anchors(blends, held)
    refined, read = session.ager.edit(
        starts[todo], [ages[i].value for i in todo], options.aging, options.layers, anchors, session.progress
    )
    out = starts.copy()
    out[todo] = refined
    for j, i in enumerate(todo):
        records[i].update(
            method="likeness-held", steps=options.aging.steps, read_age=round(float(read[j]), 2)
        )
    return out, records


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
    session.edit_ranges.check(options)  # before the slow encode: nothing is made out of range
    if options.anime:
        _ = session.anime  # likewise: no anime model is one line before anything is made
    directions = session.directions
    _load_directions(options, directions)
    options = options.with_overrides(age=session.resolve_age(options.age))
    photos = [(father, options.face_father), (mother, options.face_mother)]
    dad, mum = _parents(session, photos, options, [options.age] * options.children)
    if options.resemblance:
        session.describe_ahead((dad, mum))  # in the dlib process, while the children are aged
    size = options.size or max(int(session.generator.resolution), SHOWN_MIN)
    made = child_dlatents(dad.dlatents, mum.dlatents, options, directions)
    blends = child_dlatents(dad.dlatents, mum.dlatents, options, directions, age=False)
    aged, agings = age_children(
        session, np.stack([m[1] for m in made]), np.stack([b[1] for b in blends]),
        [options.age] * len(made), options, parents=(dad, mum),
    )  # fmt: skip
    children, images = [], []
    for (name, _, noise_seed, layers), w, aging in zip(made, aged, agings, strict=True):
        noise = "const" if noise_seed is None else "random"
        image = session.synthesize(w[None], noise=noise, seed=noise_seed)[0]
        child = Child(name, w, resize(image, size), noise, noise_seed, layers, aging=aging)
        if options.resemblance:
            child.resemblance = session.resemblance(image, dad, mum)
        children.append(child)
        images.append(image)
    if options.estimate:
        for child, estimate in zip(children, session.estimate(images), strict=True):
            child.estimate = estimate
    anime = None
    if options.anime:  # the child's final code (blend, aging, shifts), drawn by the anime model
        for child, drawn in zip(children, anime_images(session, aged, options.anime_seed, size), strict=True):
            child.anime = drawn
        anime = anime_record(session, options.anime_seed)
    return PredictResult(dad, mum, children, options, session.provenance(), anime)


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
    #: with options.anime: each frame's code drawn by the anime model, uint8 (size, size, 3) each
    anime_frames: list[np.ndarray] | None = None
    anime: dict[str, Any] | None = None  # anime_record(), with options.anime

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
    session.edit_ranges.check(options, steps)  # before the slow encode: nothing is made out of range
    if options.anime:
        _ = session.anime  # likewise: no anime model is one line before anything is made
    directions = session.directions
    _load_directions(options, directions)
    steps = [session.resolve_age(a) for a in steps]
    photos = [(father, options.face_father), (mother, options.face_mother)]
    dad, mum = _parents(session, photos, options, steps)
    w = np.stack(
        [blend_and_edit(dad.dlatents, mum.dlatents, options, directions, a.coefficient) for a in steps]
    )
    blend = blend_and_edit(dad.dlatents, mum.dlatents, options, directions, 0.0)
    anchors = None
    if session.ager is not None and options.aging.steps and any(a.in_years for a in steps):
        # every frame is held to the one face: one child growing up
        held = (dad.aligned, mum.aligned, options.genes) if options.aging.anchor == "parents" else None
        one = session.ager.anchors(blend[None], held)
        anchors = {k: np.repeat(v, sum(a.in_years for a in steps), axis=0) for k, v in one.items()}
    w, _ = age_children(session, w, np.repeat(blend[None], len(w), axis=0), steps, options, anchors)
    size = options.size or max(int(session.generator.resolution), SHOWN_MIN)
    frames: list[np.ndarray] = []
    for start in range(0, len(w), batch):
        frames += [resize(im, size) for im in session.synthesize(w[start : start + batch])]
    result = SweepResult(dad, mum, steps, w.astype(np.float32), frames, options, session.provenance())
    if options.anime:
        result.anime_frames = list(anime_images(session, w, options.anime_seed, size, batch))
        result.anime = anime_record(session, options.anime_seed)
    return result
