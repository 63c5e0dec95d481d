"""What the web page can ask for, without HTTP: photos in, children, sheets and GIFs out.

One ``WebService`` wraps one Session (the CLI's: generator, directions, encoded parents)
and one lock. Every request that touches a model takes the lock, so concurrent requests
queue instead of loading or running anything twice (TensorFlow and dlib are not shared
across threads here). Files live in ``workdir`` (photos/, results/), a temporary folder
that ``babygan serve`` removes when it stops.

Heavy libraries come in through the Session and babygan.align, when first used.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import math
import re
import shutil
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from babygan import align, latent, pipeline
from babygan.edit_ranges import EditRangeError, EditRanges
from babygan.errors import BabyganError
from babygan.latent import Age
from babygan.outputs import write_prediction, write_sweep
from babygan.photo import detection_pixels, load_photo
from babygan.pipeline import ChildOptions
from babygan.session import Session
from babygan.web.anime_takes import AnimeRequestError, AnimeTakes, anime_params, style_seed
from babygan.web.upload import display_name, size_mb, square_crop

log = logging.getLogger("babygan")

#: slider ranges for the directions BabyGAN's demo documents; any other direction gets DEFAULT_RANGE
#: (each kept within the model's valid range, Session.edit_ranges, which the API enforces)
SLIDER_RANGES = {"gender": (-2.0, 2.0), "smile": (-1.0, 2.0)}
DEFAULT_RANGE = (-3.0, 3.0)
AGE_RANGE = (0.0, 60.0)  # years; BabyGAN's coefficient 6 - age/5 spans +6 .. -6
MAX_SIBLINGS = 12
_DEFAULTS = ChildOptions()  # a request leaving a value out gets the library's
#: the age-sweep GIF: the library's default ages, frames capped in size (a 1024 px GIF of 19 frames is huge)
SWEEP_MAX_SIZE = 512
SWEEP_FPS = 6.0
THUMB_SIZE = 96
#: result folders kept (each prediction or sweep writes one; older ones are removed)
KEEP_RESULTS = 32

_ID = re.compile(r"[0-9a-f]{16}")
_RUN = re.compile(r"r\d{5}")
_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class WebError(BabyganError):
    """A request the page made that cannot be served; ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Photo:
    """One uploaded photo: where it is, the faces found in it, which one is the default."""

    id: str
    name: str  # the name the user's file had, for messages
    path: Path
    size: tuple[int, int]  # (width, height)
    boxes: list[tuple[int, int, int, int]]  # left to right, as align.detect_faces orders them
    default_face: int  # 1-based: the largest, as the CLI chooses

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "width": self.size[0],
            "height": self.size[1],
            "default_face": self.default_face,
            "faces": [
                {"index": i, "box": list(box), "thumb": f"/api/photo/{self.id}/face/{i}"}
                for i, box in enumerate(self.boxes, start=1)
            ],
        }


@dataclass
class _Busy:
    """What the model lock is doing, for the page's progress line."""

    stage: str | None = None
    since: float = 0.0
    waiting: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class WebService:
    """The page's back end over one Session.

    session: a ``Session`` as the CLI builds it (``babygan.cli.options.SessionOptions.open``).
    workdir: an empty folder owned by this service (photos/ and results/ go there).
    directions: names of the directions to offer as sliders (``age`` is required; a name
    that does not load is left out with a warning).
    anime: whether to offer the anime switch: None, where the session has an anime model;
    True, required (``prepare`` fails without one: ``--anime-model`` was given); False, never.
    """

    def __init__(
        self,
        session: Session,
        workdir: str | Path,
        *,
        directions: Sequence[str] = ("age",),
        max_upload_bytes: int = 20 * 1024 * 1024,
        anime: bool | None = None,
    ) -> None:
        self.session = session
        self.workdir = Path(workdir)
        self.photos_dir = self.workdir / "photos"
        self.results_dir = self.workdir / "results"
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        self.results_dir.mkdir(parents=True, exist_ok=True)
        self.max_upload_bytes = int(max_upload_bytes)
        self._wanted_directions = list(dict.fromkeys(directions))
        self.directions: list[str] = []
        self._photos: dict[str, Photo] = {}
        self._runs = itertools.count(1)
        self._busy = _Busy()
        self._anime_wanted = anime
        self.anime_offered = False  # whether the page offers the anime switch (known after prepare)
        self._takes = AnimeTakes()  # the anime children's codes, for "another style"

    # -- the lock --------------------------------------------------------------

    @contextlib.contextmanager
    def _models(self, stage: str) -> Iterator[None]:
        """Hold the model lock (queueing behind other requests), reporting ``stage``."""
        b = self._busy
        b.waiting += 1
        try:
            b.lock.acquire()
        finally:
            b.waiting -= 1
        try:
            self._stage(stage)
            yield
        finally:
            b.stage = None
            b.lock.release()

    def _stage(self, stage: str) -> None:
        self._busy.stage, self._busy.since = stage, time.monotonic()

    def status(self) -> dict[str, Any]:
        """What runs now (None when idle), for how long, and how many requests wait."""
        b = self._busy
        stage = b.stage
        return {
            "stage": stage,
            "seconds": round(time.monotonic() - b.since, 1) if stage else 0.0,
            "queued": b.waiting,
        }

    # -- start-up --------------------------------------------------------------

    def prepare(self) -> None:
        """Load the generator and the directions now, so that a bad model fails at start-up."""
        with self._models("Loading the models"):
            directions = self.session.directions  # loads the generator
            directions.direction("age")  # required: the age slider
            wanted = self._wanted_directions
            # directions from a folder (--directions, or the model's own) offer what it holds
            held = directions.names()
            if held is not None:
                wanted = list(dict.fromkeys(["age", *held]))
            for name in wanted:
                try:
                    directions.direction(name)
                except BabyganError as exc:
                    if name == "age":
                        raise
                    log.warning("no %s slider: %s", name, exc)
                    continue
                if name not in self.directions:
                    self.directions.append(name)
            if "age" not in self.directions:
                self.directions.insert(0, "age")
            ager = self.session.ager  # loads the attribute network and dlib's
            if ager is not None:
                ager.warm(1)  # a one-child page's aging has nothing left to trace (about 2 s)
            if self._anime_wanted is not False:
                try:
                    _ = self.session.anime  # loads the anime model
                    self.anime_offered = True
                except BabyganError as exc:
                    if self._anime_wanted:
                        raise
                    log.info("no anime switch: %s", exc)

    def info(self) -> dict[str, Any]:
        """What the page needs to draw itself: the sliders and the limits."""
        G = self.session.generator
        ranges = self.session.edit_ranges
        sliders = []
        for n in self.directions:
            if n != "age":  # age has a slider of its own
                low, high = _within(SLIDER_RANGES.get(n, DEFAULT_RANGE), ranges.shift_range(n))
                sliders.append({"name": n, "min": low, "max": high})
        age_min, age_max = _within(AGE_RANGE, ranges.age)
        return {
            "model": Path(self.session.model).name,  # a registry name, or the file's name
            "resolution": int(G.resolution),
            "directions": sliders,
            "age": {"min": age_min, "max": age_max, "default": latent.DEFAULT_AGE_YEARS},
            "max_siblings": MAX_SIBLINGS,
            "max_upload_bytes": self.max_upload_bytes,
            "anime": self.anime_offered,
        }

    # -- photos ----------------------------------------------------------------

    def add_photo(self, data: bytes, filename: str = "photo") -> dict[str, Any]:
        """Keep an uploaded photo and find its faces (thumbnails for choosing one).

        The same bytes uploaded twice are one photo (so the Session's encodings are reused).
        Raises WebError with a message for the page when it is not a usable photo.
        """
        name = display_name(filename)
        if not data:
            raise WebError(f"{name}: the file is empty")
        if len(data) > self.max_upload_bytes:
            raise WebError(
                f"{name}: {size_mb(len(data))} is over the upload limit of {size_mb(self.max_upload_bytes)}",
                413,
            )
        photo_id = hashlib.sha256(data).hexdigest()[:16]
        known = self._photos.get(photo_id)
        if known is not None:
            return known.to_json()
        path = self.photos_dir / f"{photo_id}.upload"
        path.write_bytes(data)
        try:
            with self._models(f"Looking for faces in {name}"):
                photo = self._read_photo(photo_id, name, path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        self._photos[photo_id] = photo
        return photo.to_json()

    def _read_photo(self, photo_id: str, name: str, path: Path) -> Photo:
        try:
            image = load_photo(path)  # the decompression-bomb guard and every format check
        except BabyganError as exc:
            raise WebError(_rename(str(exc), path, name)) from exc
        faces = align.detect_faces(detection_pixels(path, image))
        if not faces:
            raise WebError(f"{name}: no face found; use a photo where the face is clearly visible")
        height, width = image.shape[:2]
        for i, face in enumerate(faces, start=1):
            thumb = Image.fromarray(square_crop(image, face.box))
            thumb.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)  # keeps the aspect ratio
            thumb.save(self.photos_dir / f"{photo_id}_face{i}.png")
        largest = max(range(len(faces)), key=lambda i: faces[i].area) + 1
        return Photo(photo_id, name, path, (width, height), [f.box for f in faces], largest)

    def face_thumb(self, photo_id: str, index: int) -> Path:
        photo = self._photo(photo_id)
        if not 1 <= index <= len(photo.boxes):
            raise WebError(f"{photo.name}: no face {index}", 404)
        return self.photos_dir / f"{photo.id}_face{index}.png"

    def _photo(self, photo_id: Any) -> Photo:
        photo = self._photos.get(photo_id) if isinstance(photo_id, str) and _ID.fullmatch(photo_id) else None
        if photo is None:
            raise WebError("unknown photo: upload it again", 404)
        return photo

    # -- children --------------------------------------------------------------

    def predict(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The child (or siblings) for ``params``; encodes only photos not seen before.

        params: ``{"father": {"photo": id, "face": n|null}, "mother": {...}, "genes": 0.5,
        "style": "default", "age": 10, "shifts": {"gender": 0.5, ...}, "children": 1, "seed": 0,
        "anime": false, "anime_seed": null}``. With anime, each child also has ``anime``: the
        URL of the child drawn by the anime model.
        """
        father, mother, options = self._parse(params)
        with self._models("Aligning and encoding the photos (only new photos take long)"):
            start = time.monotonic()
            with self._renamed(father, mother):
                self.session.parents([(father.path, options.face_father), (mother.path, options.face_mother)])
                self._stage("Making the child")
                result = pipeline.predict(father.path, mother.path, options, self.session)
                out = self._new_run()
                written = write_prediction(result, out)
                if options.anime:  # the codes, for "another style" (restyle)
                    kept = [(c.name, c.dlatents) for c in result.children]
                    self._takes.keep(out.name, int(result.children[0].image.shape[0]), kept)
        run = out.name
        children = []
        for c, p in zip(result.children, written["children"], strict=True):
            child = {"name": c.name, "url": _file_url(run, Path(p["image"]).name)}
            if "anime" in p:
                child["anime"] = _file_url(run, Path(p["anime"]).name)
            children.append(child)
        return {
            "run": run,
            "children": children,
            "sheet": _file_url(run, Path(written["sheet"]).name),
            "faces": {"father": result.father.face, "mother": result.mother.face},
            "seconds": round(time.monotonic() - start, 2),
        }

    def restyle(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The page's "another style": the anime children of an earlier prediction (its ``run``,
        made with anime on) drawn again with the style of ``seed`` (null: the default take);
        nothing is encoded or blended again. ``{"run": "r00003", "seed": 4}`` -> ``{"run", "seed",
        "children": [{"name", "anime"}]}``."""
        if not isinstance(params, Mapping):
            raise WebError("expected a JSON object")
        run = params.get("run")
        if not (isinstance(run, str) and _RUN.fullmatch(run)):
            raise WebError(f"run: expected a run such as r00001, got {run!r}")
        with self._models("Drawing another anime style"):
            try:
                seed = style_seed(params.get("seed"), "seed")
                drawn = self._takes.draw(self.session, run, self.results_dir / run, seed)
            except AnimeRequestError as exc:
                raise WebError(str(exc), exc.status) from exc
        children = [{"name": name, "anime": _file_url(run, path.name)} for name, path in drawn]
        return {"run": run, "seed": seed, "children": children}

    def sweep(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """An age-sweep GIF (and its contact sheet) of the child for ``params``; with anime, the
        anime sweep's GIF too (``anime_gif``)."""

        father, mother, options = self._parse(params)
        size = min(int(self.session.generator.resolution), SWEEP_MAX_SIZE)
        options = options.with_overrides(children=1, size=size)
        with self._models("Making the age sweep"), self._renamed(father, mother):
            result = pipeline.age_sweep(
                father.path,
                mother.path,
                options,
                self.session,
                ages=[float(a) for a in latent.parse_range(latent.DEFAULT_SWEEP_AGES, count=True)],  # years
            )
            out = self._new_run()
            paths = write_sweep(result, out, gif=True, fps=SWEEP_FPS)
        answer = {
            "run": out.name,
            "gif": _file_url(out.name, Path(paths["gif"]).name),
            "sheet": _file_url(out.name, Path(paths["sheet"]).name),
        }
        if "anime_gif" in paths:
            answer["anime_gif"] = _file_url(out.name, Path(paths["anime_gif"]).name)
        return answer

    def result_file(self, run: str, name: str) -> Path:
        """A file of a result folder, checked to stay inside it."""
        if not (_RUN.fullmatch(run) and _FILE.fullmatch(name)):
            raise WebError("no such file", 404)
        path = self.results_dir / run / name
        if not path.is_file():
            raise WebError("no such file (results older than the last few are removed)", 404)
        return path

    def _new_run(self) -> Path:
        out = self.results_dir / f"r{next(self._runs):05d}"
        out.mkdir()
        runs = sorted(p for p in self.results_dir.iterdir() if _RUN.fullmatch(p.name))
        for old in runs[:-KEEP_RESULTS]:
            shutil.rmtree(old, ignore_errors=True)
        self._takes.forget_all_but(p.name for p in runs[-KEEP_RESULTS:])
        return out

    @contextlib.contextmanager
    def _renamed(self, *photos: Photo) -> Iterator[None]:
        """Errors name the user's files, not our temporary copies."""
        try:
            yield
        except BabyganError as exc:
            message = str(exc)
            for p in photos:
                message = _rename(message, p.path, p.name)
            raise WebError(message) from exc

    def _parse(self, params: Mapping[str, Any]) -> tuple[Photo, Photo, ChildOptions]:
        if not isinstance(params, Mapping):
            raise WebError("expected a JSON object")
        photos, faces = [], []
        for who in ("father", "mother"):
            ref = params.get(who)
            if not isinstance(ref, Mapping):
                raise WebError(f"the {who}'s photo is missing")
            photo = self._photo(ref.get("photo"))
            face = ref.get("face")
            if face is not None:
                face = _number(face, f"{who}'s face", int)
                if not 1 <= face <= len(photo.boxes):
                    raise WebError(f"{photo.name}: no face {face}, only {len(photo.boxes)} found")
            photos.append(photo)
            faces.append(face)
        shifts_in = params.get("shifts") or {}
        if not isinstance(shifts_in, Mapping):
            raise WebError("shifts: expected an object of direction: value")
        shifts = []
        for name, value in shifts_in.items():
            if name not in self.directions or name == "age":
                raise WebError(f"unknown direction {name!r}; this model has {', '.join(self.directions)}")
            value = _number(value, name, float)
            if value != 0.0:
                shifts.append((name, value))
        children = _number(params.get("children", 1), "siblings", int)
        if not 1 <= children <= MAX_SIBLINGS:
            raise WebError(f"siblings: between 1 and {MAX_SIBLINGS}")
        genes = _number(params.get("genes", _DEFAULTS.genes), "genes", float)
        age = _number(params.get("age", latent.DEFAULT_AGE_YEARS), "age", float)
        _check_ranges(self.session.edit_ranges, genes, age, shifts)
        try:
            anime, anime_seed = anime_params(params)
        except AnimeRequestError as exc:
            raise WebError(str(exc)) from exc
        if anime and not self.anime_offered:
            raise WebError(f"anime: {Path(self.session.model).name} has no anime model here")
        try:
            options = ChildOptions(
                genes=genes,
                style=str(params.get("style", _DEFAULTS.style)),
                age=age,
                shifts=tuple(shifts),
                children=children,
                seed=_number(params.get("seed", _DEFAULTS.seed), "seed", int),
                face_father=faces[0],
                face_mother=faces[1],
                # the page shows neither: dlib and the attribute network on every slider move would slow it
                resemblance=False,
                estimate=False,
                anime=anime,
                anime_seed=anime_seed,
            )
        except BabyganError as exc:
            raise WebError(str(exc)) from exc
        return photos[0], photos[1], options


# --------------------------------------------------------------------------- helpers


def _number(value: Any, what: str, kind: type) -> Any:
    """A JSON number (or a number's text) as ``kind``; a float may be NaN or infinite here
    (JSON's ``NaN`` reaches us through json.loads): the edit ranges refuse it, naming the range."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise WebError(f"{what}: expected a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise WebError(f"{what}: expected a number, got {value!r}") from None
    if kind is int and (not math.isfinite(number) or number != int(number)):
        raise WebError(f"{what}: expected a whole number, got {value!r}")
    return int(number) if kind is int else number


def _check_ranges(ranges: EditRanges, genes: float, age: float, shifts: Sequence[tuple[str, float]]) -> None:
    """The request's edits within the model's ranges (NaN and infinities refused), or a 400
    naming the JSON field (``age``, ``genes``, ``shifts.gender``) and the allowed range."""
    try:
        ranges.check_genes(genes)
        ranges.check_age(Age.years(age))
        for name, value in shifts:
            ranges.check_shift(name, value)
    except EditRangeError as exc:
        field = f"shifts.{exc.direction}" if exc.field == "shift" else exc.field
        raise WebError(exc.message(field)) from exc


def _within(wanted: tuple[float, float], allowed: tuple[float, float]) -> tuple[float, float]:
    """A slider's span cut to the model's valid range."""
    return max(wanted[0], allowed[0]), min(wanted[1], allowed[1])


def _rename(message: str, path: Path, name: str) -> str:
    return message.replace(str(path), name)


def _file_url(run: str, name: str) -> str:
    return f"/files/{run}/{name}"
