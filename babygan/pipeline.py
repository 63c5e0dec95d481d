"""The product: two parents' photos in, a child's face out.

``Session`` holds what is expensive (the generator, the directions, the face
describer, every parent already aligned and encoded) so that a batch over many
pairs loads each model once and aligns/encodes each distinct photo once.

    session = Session("ffhq")
    result = predict("dad.jpg", "mum.jpg", ChildOptions(genes=0.4, age=5), session)
    paths = write_prediction(result, "out/")

Heavy libraries (TensorFlow via the generator and encoder, dlib via alignment and
resemblance) are imported when first needed, never at module import.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babygan import __version__, latent, render
from babygan.atomic import atomic_path, write_text_atomic
from babygan.errors import BabyganError, ModelFileError

log = logging.getLogger("babygan")

#: sheets are for looking at: their tiles are capped at this many pixels
SHEET_TILE_MAX = 512
SHEET_COLUMNS_MAX = 6


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ChildOptions:
    """Everything that decides the child, apart from the photos and the models.

    shifts: ``(direction name, coefficient)`` pairs, e.g. ``(("gender", -1.0), ("smile", 1.0))``;
    a name is looked up as ``<name>.npy`` in the directions folder or the registry.
    age / age_coeff: the target age in years (BabyGAN's default 10) or, when ``age_coeff``
    is set, the raw coefficient on the age direction (then ``age`` is ignored).
    """

    genes: float = 0.5
    style: str = "default"
    age: float = latent.DEFAULT_AGE_YEARS
    age_coeff: float | None = None
    shifts: tuple[tuple[str, float], ...] = ()
    layers: int = latent.DEFAULT_EDIT_LAYERS
    children: int = 1
    seed: int = 0
    size: int | None = None
    face_father: int | None = None
    face_mother: int | None = None
    resemblance: bool = True

    def __post_init__(self) -> None:
        latent.mother_weights(1, self.genes, self.style)  # validates genes and style
        if self.children < 1:
            raise BabyganError(f"children={self.children}: must be at least 1")
        if self.size is not None and self.size < 1:
            raise BabyganError(f"size={self.size}: must be a positive number of pixels")
        if self.layers < 0:
            raise BabyganError(f"layers={self.layers}: must be >= 0")
        names = [n for n, _ in self.shifts]
        if "age" in names:
            raise BabyganError("age is set with --age or --age-coeff, not as a shift")
        if len(set(names)) != len(names):
            raise BabyganError(f"a direction is shifted twice: {names}")

    @property
    def resolved_age_coeff(self) -> float:
        return float(self.age_coeff) if self.age_coeff is not None else latent.age_to_coeff(self.age)

    def with_overrides(self, **changes: Any) -> ChildOptions:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shifts"] = dict(self.shifts)
        d["age"] = None if self.age_coeff is not None else self.age
        d["age_coeff"] = self.resolved_age_coeff
        return d


# --------------------------------------------------------------------------- session


@dataclass
class Parent:
    """One parent photo, aligned and encoded."""

    path: Path
    sha256: str
    face: int  # which face of the photo, 1-based from the left (the largest unless one was asked for)
    faces_found: int
    aligned: np.ndarray  # uint8 (S, S, 3), S = the generator's resolution
    dlatents: np.ndarray  # (L, w_dim) float32

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "face": self.face,
            "faces_found": self.faces_found,
        }


class Session:
    """Models loaded once and parents remembered, for any number of predictions.

    model: registry name or path of the generator (official .pkl or our .npz).
    directions_dir: a folder of ``<name>.npy`` files used instead of the registry's.
    encoder: the encoder's settings (``babygan.encoder.EncoderSettings``); None = its defaults.
    """

    def __init__(
        self,
        model: str | Path = "ffhq",
        *,
        directions_dir: str | Path | None = None,
        encoder: Any = None,
        offline: bool = False,
        progress: bool = True,
        use_cache: bool = True,
    ) -> None:
        self.model = str(model)
        self.directions_dir = Path(directions_dir) if directions_dir is not None else None
        if self.directions_dir is not None and not self.directions_dir.is_dir():
            raise BabyganError(f"{self.directions_dir}: directions folder not found")
        if encoder is None:
            from babygan.encoder.settings import EncoderSettings

            encoder = EncoderSettings()
        self.encoder = encoder
        self.offline = offline
        self.progress = progress
        self.use_cache = use_cache
        self._generator: Any = None
        self._directions: dict[str, tuple[np.ndarray, dict[str, str]]] = {}
        self._parents: dict[tuple[Path, int | None], Parent | BaseException] = {}
        # aligned, not yet encoded (another photo of the same call failed to align)
        self._aligned: dict[tuple[Path, int | None], tuple[Any, str]] = {}
        self._describer: Any = None
        self._descriptors: dict[tuple[Path, int | None], Any] = {}

    # -- generator -------------------------------------------------------------

    @property
    def generator(self) -> Any:
        if self._generator is None:
            from babygan.stylegan import load_generator

            log.info("loading generator %s", self.model)
            G = load_generator(self.model, offline=self.offline)
            # Build the networks now, eagerly: built first inside the encoder's tf.function,
            # their constants would belong to that function's graph and fail on later use.
            _ = getattr(G, "nets", None)
            self._generator = G
        return self._generator

    def model_json(self) -> dict[str, Any]:
        G = self.generator
        return {
            "name": self.model,
            "sha256": getattr(G, "source_sha256", None),
            "resolution": int(G.resolution),
            "num_layers": int(G.num_layers),
            "w_dim": int(G.w_dim),
        }

    def render(self, dlatents: np.ndarray, *, noise: str = "const", seed: int | None = None) -> np.ndarray:
        """``(N, L, w_dim)`` float32 -> ``uint8 (N, R, R, 3)`` at the generator's resolution."""
        from babygan.stylegan import to_uint8

        kwargs: dict[str, Any] = {"noise": noise}
        if seed is not None:
            kwargs["seed"] = seed
        return to_uint8(self.generator.synthesis(np.asarray(dlatents, np.float32), **kwargs))

    # -- directions ------------------------------------------------------------

    def direction(self, name: str) -> np.ndarray:
        """The named direction, checked against the generator: ``(L, w_dim)`` float32."""
        if name not in self._directions:
            path = self._direction_path(name)
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ModelFileError(f"{path}: not a readable .npy direction file ({exc})") from exc
            G = self.generator
            arr = latent.check_direction(arr, int(G.num_layers), int(G.w_dim), name=str(path))
            from babygan.models import cached_sha256  # a model file: hashed once, remembered across runs

            self._directions[name] = (arr, {"path": str(path), "sha256": cached_sha256(path)})
        return self._directions[name][0]

    def _direction_path(self, name: str) -> Path:
        filename = name if name.endswith(".npy") else f"{name}.npy"
        if self.directions_dir is not None:
            path = self.directions_dir / filename
            if not path.is_file():
                raise ModelFileError(f"{path}: direction file not found in --directions folder")
            return path
        from babygan.models import resolve_model_file

        return resolve_model_file(filename, offline=self.offline)

    def directions_json(self) -> dict[str, dict[str, str]]:
        return {name: meta for name, (_, meta) in self._directions.items()}

    # -- parents ---------------------------------------------------------------

    def parents(self, photos: Sequence[tuple[str | Path, int | None]]) -> list[Parent]:
        """Align and encode the photos not seen before (new ones encoded together); cached.

        photos: ``(path, face index or None)`` pairs. Every photo is aligned first, and
        if one fails its error is raised before any (slow) encode; the aligned ones are
        kept for later. Failures are remembered too, so a bad photo costs nothing twice.
        """
        from babygan.models import sha256_file

        keys = [(Path(p).expanduser().resolve(), face) for p, face in photos]
        new = [k for k in dict.fromkeys(keys) if k not in self._parents]
        for key in new:
            if key not in self._aligned:
                try:
                    self._aligned[key] = (self._align(*key), sha256_file(key[0]))
                except BabyganError as exc:
                    self._parents[key] = exc
        for key in keys:
            if isinstance(self._parents.get(key), BaseException):
                raise self._parents[key]
        if new:
            from babygan.encoder.cache import encode_images

            images = np.stack([np.asarray(self._aligned[k][0].image, np.uint8) for k in new])  # (N, S, S, 3)
            w = encode_images(
                self.generator,
                images,
                self.encoder,
                use_cache=self.use_cache,
                offline=self.offline,
                progress=self.progress,
            )  # (N, L, w_dim) float32
            for key, img, wi in zip(new, images, np.asarray(w, np.float32), strict=True):
                face, digest = self._aligned.pop(key)
                self._parents[key] = Parent(key[0], digest, int(face.index), int(face.num_faces), img, wi)
        return [self._parents[key] for key in keys]  # type: ignore[misc]

    def _align(self, path: Path, face: int | None) -> Any:
        """``babygan.align.AlignedFace`` at the generator's resolution."""
        from babygan.align import align_photo

        if not path.is_file():
            raise BabyganError(f"{path}: no such file")
        res = int(self.generator.resolution)
        log.info("aligning %s", path.name)
        return align_photo(path, output_size=res, face=face)

    # -- resemblance -----------------------------------------------------------

    def resemblance(self, child: np.ndarray, father: Parent, mother: Parent) -> dict[str, Any]:
        from babygan import resemblance as rs

        if self._describer is None:
            self._describer = rs.FaceDescriber()
        descs = []
        for who, parent in (("father", father), ("mother", mother)):
            key = (parent.path, parent.face)
            if key not in self._descriptors:
                self._descriptors[key] = self._describer.describe(parent.aligned, f"{who}'s aligned photo")
            descs.append(self._descriptors[key])
        return rs.resemblance(self._describer, child, descs[0], descs[1])


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
    resemblance: dict[str, Any] | None = None


@dataclass
class PredictResult:
    father: Parent
    mother: Parent
    children: list[Child]
    options: ChildOptions
    info: dict[str, Any] = field(default_factory=dict)  # model, directions, encoder: for child.json


def _shift_list(options: ChildOptions, session: Session, *, with_age: bool = True):
    shifts = [(session.direction("age"), options.resolved_age_coeff, "age")] if with_age else []
    shifts += [(session.direction(name), float(c), name) for name, c in options.shifts]
    return shifts


def child_dlatents(father: np.ndarray, mother: np.ndarray, options: ChildOptions, session: Session):
    """The children's dlatents: ``[(name, (L, w_dim) float32, noise seed | None, crossover | None)]``.

    One child: the parents' blend (style and genes). Siblings (children > 1): each a random
    per-layer crossover weighted by genes, with its own noise seed, all drawn from ``seed``.
    """
    shifts = _shift_list(options, session)
    if options.children == 1:
        w = latent.blend(father, mother, options.genes, options.style)
        return [("child", latent.apply_directions(w, shifts, options.layers), None, None)]
    out = []
    for i in range(1, options.children + 1):
        rng = np.random.default_rng([options.seed, i])
        w, mask = latent.crossover(father, mother, options.genes, rng)
        noise_seed = int(rng.integers(0, 2**31 - 1))
        layers = ["mother" if m else "father" for m in mask]
        out.append((f"child_{i:02d}", latent.apply_directions(w, shifts, options.layers), noise_seed, layers))
    return out


def predict(
    father: str | Path,
    mother: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
) -> PredictResult:
    """Align and encode both parents (cached), blend, shift, render, and measure resemblance."""
    options = options or ChildOptions()
    session = session or Session()
    _shift_list(options, session)  # load and check the directions before the slow encode
    dad, mum = session.parents([(father, options.face_father), (mother, options.face_mother)])
    children = []
    size = options.size or int(session.generator.resolution)
    for name, w, noise_seed, layers in child_dlatents(dad.dlatents, mum.dlatents, options, session):
        noise = "const" if noise_seed is None else "random"
        image = session.render(w[None], noise=noise, seed=noise_seed)[0]
        child = Child(name, w, render.resize(image, size), noise, noise_seed, layers)
        if options.resemblance:
            child.resemblance = session.resemblance(image, dad, mum)
        children.append(child)
    info = {
        "model": session.model_json(),
        "directions": session.directions_json(),
        "encoder": _encoder_json(session),
    }
    return PredictResult(dad, mum, children, options, info)


def _encoder_json(session: Session) -> dict[str, Any]:
    enc = session.encoder
    return dataclasses.asdict(enc) if dataclasses.is_dataclass(enc) else {"settings": repr(enc)}


def _sheet_tile(size: int) -> int:
    return min(size, SHEET_TILE_MAX)


def write_prediction(result: PredictResult, output_dir: str | Path) -> dict[str, Any]:
    """Write child.png / .npy / .json (or child_01 ... for siblings) and sheet.png.

    Returns ``{"sheet": path, "children": [{"image", "dlatents", "json"}, ...]}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sheet_path = out / "sheet.png"
    written: dict[str, Any] = {"sheet": str(sheet_path.resolve()), "children": []}
    for child in result.children:
        paths = {
            "image": str((out / f"{child.name}.png").resolve()),
            "dlatents": str((out / f"{child.name}.npy").resolve()),
            "json": str((out / f"{child.name}.json").resolve()),
            "sheet": written["sheet"],
        }
        record = {
            "babygan_version": __version__,
            "father": result.father.to_json(),
            "mother": result.mother.to_json(),
            "options": result.options.to_json(),
            "child": {
                "name": child.name,
                "noise": child.noise,
                "noise_seed": child.noise_seed,
                "blend": "crossover" if child.crossover else result.options.style,
                "crossover": child.crossover,
                "size": int(child.image.shape[0]),
            },
            **result.info,
            "resemblance": child.resemblance,
            "outputs": paths,
        }
        render.save_png(paths["image"], child.image, record)
        with atomic_path(paths["dlatents"]) as tmp:
            np.save(tmp, child.dlatents.astype(np.float32))
        write_text_atomic(paths["json"], json.dumps(record, indent=2, sort_keys=False) + "\n")
        written["children"].append(paths)
    tile = _sheet_tile(int(result.children[0].image.shape[0]))
    images = [result.father.aligned] + [c.image for c in result.children] + [result.mother.aligned]
    labels = ["father"] + [c.name.replace("_", " ") for c in result.children] + ["mother"]
    sheet_meta = {
        "babygan_version": __version__,
        "father": result.father.to_json(),
        "mother": result.mother.to_json(),
        "options": result.options.to_json(),
        "layout": labels,
    }
    # One row (father | child | mother); many siblings wrap onto further rows.
    sheet = render.contact_sheet(images, labels, columns=min(len(images), SHEET_COLUMNS_MAX), tile=tile)
    render.save_png(sheet_path, sheet, sheet_meta)
    return written


# --------------------------------------------------------------------------- age sweep


_FRAME_NAME = re.compile(r"frame_\d+\.png")


@dataclass
class SweepResult:
    father: Parent
    mother: Parent
    coeffs: np.ndarray  # (T,) float64, on the age direction
    ages: np.ndarray | None  # (T,) float64 years, when the sweep was given in years
    dlatents: np.ndarray  # (T, L, w_dim) float32
    frames: list[np.ndarray]  # uint8 (size, size, 3) each
    options: ChildOptions
    info: dict[str, Any] = field(default_factory=dict)

    def labels(self) -> list[str]:
        if self.ages is not None:
            return [f"{a:g} y" for a in np.round(self.ages, 1)]
        return [f"{c:+g}" for c in np.round(self.coeffs, 2)]


def age_sweep(
    father: str | Path,
    mother: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
    *,
    ages: Sequence[float] | None = None,
    coeffs: Sequence[float] | None = None,
    batch: int = 4,
) -> SweepResult:
    """The same child at several ages: the parents are encoded once, only the age coefficient moves.

    Give ``ages`` (years) or ``coeffs`` (raw, BabyGAN's animation is -4..4); the blend and the
    other shifts come from ``options`` (its age is ignored; siblings are not swept).
    """
    options = options or ChildOptions()
    session = session or Session()
    if (ages is None) == (coeffs is None):
        raise BabyganError("age sweep: give either ages or coefficients")
    age_arr = None if ages is None else np.asarray(ages, np.float64)
    coeff_arr = (
        np.array([latent.age_to_coeff(a) for a in age_arr])
        if age_arr is not None
        else np.asarray(coeffs, np.float64)
    )
    if coeff_arr.size == 0:
        raise BabyganError("age sweep: no frames")
    shifts = _shift_list(options, session, with_age=False)
    age_dir = session.direction("age")  # directions are checked before the slow encode
    dad, mum = session.parents([(father, options.face_father), (mother, options.face_mother)])
    base = latent.blend(dad.dlatents, mum.dlatents, options.genes, options.style)
    base = latent.apply_directions(base, shifts, options.layers)
    w = np.stack([latent.apply_direction(base, age_dir, c, options.layers, "age") for c in coeff_arr])
    size = options.size or int(session.generator.resolution)
    frames: list[np.ndarray] = []
    for start in range(0, len(w), batch):
        frames += [render.resize(im, size) for im in session.render(w[start : start + batch])]
    info = {
        "model": session.model_json(),
        "directions": session.directions_json(),
        "encoder": _encoder_json(session),
    }
    return SweepResult(dad, mum, coeff_arr, age_arr, w.astype(np.float32), frames, options, info)


def write_sweep(
    result: SweepResult, output_dir: str | Path, *, gif: bool = False, mp4: bool = False, fps: float = 8.0
) -> dict[str, Any]:
    """Write frame_01.png ..., sheet.png (contact sheet), age_sweep.json/.npy, and the GIF / MP4 asked for."""
    out = Path(output_dir)
    if mp4:  # fail before writing anything
        render.require_mp4(out / "age_sweep.mp4")
    out.mkdir(parents=True, exist_ok=True)
    labels = result.labels()
    width = len(str(len(result.frames)))
    names = [f"frame_{i:0{max(2, width)}d}.png" for i in range(1, len(result.frames) + 1)]
    options = result.options.to_json()
    for swept in ("age", "age_coeff", "children", "seed"):  # per frame / not used by a sweep
        options.pop(swept)
    common = {
        "babygan_version": __version__,
        "father": result.father.to_json(),
        "mother": result.mother.to_json(),
        "options": options,
        **result.info,
    }
    paths: dict[str, Any] = {"frames": []}
    for i, (name, frame) in enumerate(zip(names, result.frames, strict=True)):
        meta = {**common, "frame": i + 1, "age_coeff": float(result.coeffs[i])}
        if result.ages is not None:
            meta["age"] = float(result.ages[i])
        paths["frames"].append(str(render.save_png(out / name, frame, meta).resolve()))
    # An earlier, longer sweep into this folder left frames this one does not have: remove them,
    # so the folder holds one sweep (only our own frame_<digits>.png names are touched).
    for stale in out.glob("frame_*.png"):
        if _FRAME_NAME.fullmatch(stale.name) and stale.name not in names:
            stale.unlink()
    tile = _sheet_tile(int(result.frames[0].shape[0]))
    cols = min(len(result.frames), 5)
    sheet = render.contact_sheet(result.frames, labels, columns=cols, tile=tile)
    paths["sheet"] = str(render.save_png(out / "sheet.png", sheet, common).resolve())
    with atomic_path(out / "age_sweep.npy") as tmp:
        np.save(tmp, result.dlatents)  # (T, L, w_dim) float32
    paths["dlatents"] = str((out / "age_sweep.npy").resolve())
    if gif:
        paths["gif"] = str(render.save_gif(out / "age_sweep.gif", result.frames, fps).resolve())
    if mp4:
        paths["mp4"] = str(render.save_mp4(out / "age_sweep.mp4", result.frames, fps).resolve())
    record = {
        **common,
        "sweep": {
            "age_coeffs": [float(c) for c in result.coeffs],
            "ages": None if result.ages is None else [float(a) for a in result.ages],
            "fps": fps,
        },
        "outputs": paths,
    }
    paths["json"] = str((out / "age_sweep.json").resolve())  # paths is the record's "outputs" already
    write_text_atomic(out / "age_sweep.json", json.dumps(record, indent=2) + "\n")
    return paths


# --------------------------------------------------------------------------- batch


BATCH_COLUMNS = ("father", "mother", "name", "genes", "age", "gender_shift")


@dataclass
class BatchRow:
    line: int  # line number in the CSV (the header is line 1)
    name: str
    father: Path
    mother: Path
    overrides: dict[str, Any]
    ok: bool | None = None
    error: str | None = None
    outputs: dict[str, Any] | None = None
    resemblance: dict[str, Any] | None = None


def read_pairs(csv_path: str | Path) -> list[BatchRow]:
    """Parse a pairs CSV (columns father, mother; optional name, genes, age, gender_shift).

    Relative photo paths are resolved against the CSV's folder. Row names default to
    ``<father stem>+<mother stem>`` and are made unique. A malformed file raises;
    a bad value in a row is kept on the row as its error.
    """
    import csv

    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BabyganError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("father", "mother") if c not in header]
    if missing:
        raise BabyganError(
            f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    unknown = [c for c in header if c not in BATCH_COLUMNS]
    if unknown:
        raise BabyganError(
            f"{csv_path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(BATCH_COLUMNS)}"
        )
    rows: list[BatchRow] = []
    used: set[str] = set()  # output folder names taken by earlier rows
    base = csv_path.parent
    for line, raw in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(rec.values()):
            continue
        father = base / Path(rec.get("father", "")).expanduser()
        mother = base / Path(rec.get("mother", "")).expanduser()
        name = rec.get("name") or f"{father.stem}+{mother.stem}"
        name = "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in name)
        # The name is a folder under OUTPUT_DIR: "." / ".." would write beside batch.json or
        # outside it, and a leading dot hides the folder.
        bad_name = not name or name.startswith(".")
        if not bad_name:
            name = _unique_name(name, used)
            used.add(name)
        row = BatchRow(line, name, father, mother, {})
        if bad_name:
            row.ok, row.error = (
                False,
                f"{csv_path.name} line {line}: name {name!r} cannot be a folder name "
                "(empty, or starts with '.')",
            )
        for col, conv in (("genes", float), ("age", float), ("gender_shift", float)):
            if rec.get(col):
                try:
                    row.overrides[col] = conv(rec[col])
                except ValueError:
                    row.ok, row.error = (
                        False,
                        f"{csv_path.name} line {line}: {col}={rec[col]!r} is not a number",
                    )
        if not rec.get("father") or not rec.get("mother"):
            row.ok, row.error = False, f"{csv_path.name} line {line}: father and mother are both required"
        rows.append(row)
    if not rows:
        raise BabyganError(f"{csv_path}: no pairs in the file")
    return rows


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` ... : the first not in ``used`` (rows x, x_2, x -> x, x_2, x_3)."""
    if name not in used:
        return name
    n = 2
    while f"{name}_{n}" in used:
        n += 1
    return f"{name}_{n}"


def _row_options(base: ChildOptions, overrides: Mapping[str, Any]) -> ChildOptions:
    changes: dict[str, Any] = {}
    if "genes" in overrides:
        changes["genes"] = overrides["genes"]
    if "age" in overrides:
        changes["age"], changes["age_coeff"] = overrides["age"], None
    if "gender_shift" in overrides:
        shifts = dict(base.shifts)
        shifts["gender"] = overrides["gender_shift"]
        changes["shifts"] = tuple(shifts.items())
    return base.with_overrides(**changes) if changes else base


def run_batch(
    csv_path: str | Path,
    output_dir: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
    *,
    on_row: Callable[[BatchRow], None] | None = None,
) -> list[BatchRow]:
    """Predict every pair of the CSV into ``output_dir/<name>/``; a failing row does not stop the rest.

    Models load once (one Session) and each distinct photo is aligned and encoded once.
    Returns the rows with ``ok``, ``error``, ``outputs`` and ``resemblance`` filled in;
    ``on_row`` is called after each row (for progress output).
    """
    options = options or ChildOptions()
    session = session or Session()
    rows = read_pairs(csv_path)
    out = Path(output_dir)
    for row in rows:
        if row.ok is None:
            try:
                row_opts = _row_options(options, row.overrides)
                result = predict(row.father, row.mother, row_opts, session)
                row.outputs = write_prediction(result, out / row.name)
                row.resemblance = result.children[0].resemblance
                row.ok = True
            except BabyganError as exc:
                row.ok, row.error = False, str(exc)
            except Exception as exc:  # an unexpected failure of one row is reported; the others still run
                log.exception("row %s failed", row.name)
                row.ok, row.error = False, f"{type(exc).__name__}: {exc}"
        if on_row is not None:
            on_row(row)
    summary = [
        {
            "line": r.line,
            "name": r.name,
            "father": str(r.father),
            "mother": str(r.mother),
            "ok": r.ok,
            "error": r.error,
            "overrides": r.overrides,
            "outputs": r.outputs,
            "resemblance": r.resemblance,
        }
        for r in rows
    ]
    write_text_atomic(out / "batch.json", json.dumps(summary, indent=2) + "\n")
    return rows


def summary_table(rows: Sequence[BatchRow]) -> str:
    """A plain-text table: one line per row with its status, distances or error."""

    def dist(r: BatchRow, who: str) -> str:
        d = (r.resemblance or {}).get(who)
        return f"{d:.3f}" if d is not None else "-"

    header = ("line", "name", "status", "father", "mother", "detail")
    lines = [
        (
            str(r.line),
            r.name,
            "ok" if r.ok else "FAILED",
            dist(r, "father"),
            dist(r, "mother"),
            (r.outputs or {}).get("children", [{}])[0].get("image", "") if r.ok else (r.error or ""),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(header[:-1])]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths) + "  {}"
    return "\n".join([fmt.format(*header), *(fmt.format(*row) for row in lines)])
