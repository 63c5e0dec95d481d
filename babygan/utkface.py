"""UTKFace, read straight from its tar files: labels, a fixed held-out split, images, and
the crop babygan's built-in model is trained on.

The archives (``utkface64.tar``: 23,708 faces at 64 px; ``utkface200.tar``: 9,780 at
200 px) are read in place with ``tarfile``; nothing is extracted or copied. Labels come
from the file names, ``AGE_GENDER_RACE_DATETIME.jpg.chip.jpg`` (gender 0 = male,
1 = female; race 0-4, missing in a few names). UTKFace is for non-commercial research
only, and so is anything trained on it.

The held-out split depends on the file name alone (SHA-256 of the base name), so it is
the same on every machine and in both archives (they share names).

The crop: UTKFace's own crops are tighter than FFHQ's, so the FFHQ recipe
(``babygan.align``) is run on the 200 px faces with its square shrunk by
``CROP_SCALE`` (chosen with ``padding_fractions``: the largest scale at which few
crops reach past the UTKFace image and need reflection padding). This module only names
that scale; the crop itself is ``babygan.align.Crop(scale=CROP_SCALE)``, which a model
file records so that a parent photo is aligned the same way.

Arrays crossing this module's boundary: images ``uint8 (N, S, S, 3)`` RGB; ages
``int16 (N,)`` years; genders ``int8 (N,)`` (1 = female); races ``int8 (N,)``
(-1 = not given); landmarks ``float32 (N, 68, 2)`` (x, y) in the 200 px image's pixels.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from babygan.align import SUPERSAMPLE, Crop, align_image, detect_faces, ffhq_quad
from babygan.atomic import atomic_path
from babygan.errors import BabyganError
from babygan.models import cache_dir, cached_sha256

log = logging.getLogger("babygan")

Split = Literal["train", "holdout", "all"]

HOLDOUT_FRACTION = 0.1
# Measured with padding_fractions on all 9,780 faces of utkface200.tar (see models/builtin.md).
CROP_SCALE = 0.7
#: the crop's JSON form, as the built-in model's file records it (babygan.align.Crop reads it)
CROP = Crop(scale=CROP_SCALE).to_dict()
# align_image's supersampling, as FFHQ's 4096 -> 1024.
TRANSFORM_FACTOR = SUPERSAMPLE
_SUFFIX = ".jpg.chip.jpg"
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class FaceLabel:
    """The labels in one file name. ``race`` is -1 when the name does not give it."""

    name: str
    age: int
    gender: int
    race: int


def parse_name(name: str) -> FaceLabel:
    """Labels from a UTKFace file name (a path's directories are ignored).

    Raises ``ValueError`` saying what is wrong with the name. Accepted: ``AGE_GENDER_RACE_
    DATETIME...`` and, as in a few real names, ``AGE_GENDER_DATETIME...`` (race -1);
    age 0-120, gender 0/1, race 0-4.
    """
    base = name.rsplit("/", 1)[-1]
    if not base.endswith(_SUFFIX) and not base.endswith(".jpg"):
        raise ValueError("not a .jpg")
    fields = base.split("_")
    if len(fields) < 3:
        raise ValueError("fewer than 3 '_'-separated fields")
    if not (fields[0].isdigit() and fields[1].isdigit()):
        raise ValueError("age and gender are not whole numbers")
    age, gender = int(fields[0]), int(fields[1])
    if not 0 <= age <= 120:
        raise ValueError(f"age {age} out of range")
    if gender not in (0, 1):
        raise ValueError(f"gender {gender} is neither 0 nor 1")
    race = -1
    if len(fields) >= 4:
        if not (fields[2].isdigit() and int(fields[2]) <= 4):
            raise ValueError(f"race {fields[2]!r} is not 0-4")
        race = int(fields[2])
    return FaceLabel(name=base, age=age, gender=gender, race=race)


def holdout_score(name: str) -> float:
    """A number in [0, 1) fixed by the base name (SHA-256): the split's coin."""
    base = name.rsplit("/", 1)[-1]
    digest = hashlib.sha256(base.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_holdout(name: str, fraction: float = HOLDOUT_FRACTION) -> bool:
    """True for the held-out ~``fraction`` of names; the same answer everywhere, always."""
    return holdout_score(name) < fraction


# --------------------------------------------------------------------------- archive


@dataclass
class FaceSet:
    """Faces and their labels. ``images``: ``uint8 (N, S, S, 3)``; label arrays ``(N,)``."""

    images: np.ndarray
    ages: np.ndarray
    genders: np.ndarray
    races: np.ndarray
    names: list[str]
    crop: Crop | None = None  # None: UTKFace's own crop

    def __len__(self) -> int:
        return len(self.names)

    def subset(self, index: np.ndarray | Sequence[int]) -> FaceSet:
        idx = np.asarray(index)
        return FaceSet(
            images=self.images[idx],
            ages=self.ages[idx],
            genders=self.genders[idx],
            races=self.races[idx],
            names=[self.names[i] for i in np.arange(len(self.names))[idx]],
            crop=self.crop,
        )

    def split(self, split: Split, fraction: float = HOLDOUT_FRACTION) -> FaceSet:
        """The ``train`` or ``holdout`` part (by ``is_holdout``), or ``all`` of it."""
        if split == "all":
            return self
        if split not in ("train", "holdout"):
            raise ValueError(f"split must be 'train', 'holdout' or 'all', not {split!r}")
        held = np.array([is_holdout(n, fraction) for n in self.names], dtype=bool)
        return self.subset(np.flatnonzero(held if split == "holdout" else ~held))


@dataclass
class UTKFaceArchive:
    """The index of one UTKFace tar: labelled members in file order, and what was skipped.

    ``skipped``: ``(member name, reason)`` for each file whose name could not be parsed.
    """

    path: Path
    labels: list[FaceLabel]
    members: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> UTKFaceArchive:
        """Read the archive's index (no image is decoded). ``BabyganError`` naming the file
        when it is missing, not a tar, or holds no UTKFace name at all."""
        path = Path(path)
        if not path.is_file():
            raise BabyganError(f"{path}: no such file (UTKFace archives live in ../shared/datasets)")
        labels: list[FaceLabel] = []
        members: list[str] = []
        skipped: list[tuple[str, str]] = []
        try:
            with tarfile.open(path) as tar:
                for info in tar:
                    if not info.isfile():
                        continue
                    try:
                        label = parse_name(info.name)
                    except ValueError as exc:
                        skipped.append((info.name, str(exc)))
                        continue
                    labels.append(label)
                    members.append(info.name)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BabyganError(f"{path}: not a readable tar archive ({exc})") from exc
        if not labels:
            raise BabyganError(
                f"{path}: no UTKFace-named image in it (AGE_GENDER_RACE_DATETIME.jpg.chip.jpg)"
            )
        for name, reason in skipped:
            log.info("%s: skipping %s (%s)", path, name, reason)
        return cls(path=path, labels=labels, members=members, skipped=skipped)

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, split: Split = "all", fraction: float = HOLDOUT_FRACTION) -> list[int]:
        """Indices of the labelled members in ``split``."""
        if split == "all":
            return list(range(len(self.labels)))
        if split not in ("train", "holdout"):
            raise ValueError(f"split must be 'train', 'holdout' or 'all', not {split!r}")
        want = split == "holdout"
        return [i for i, lab in enumerate(self.labels) if is_holdout(lab.name, fraction) == want]

    def read_images(self, indices: Iterable[int], size: int | None = None) -> np.ndarray:
        """Decode the chosen members as ``uint8 (N, S, S, 3)`` RGB (Lanczos-resized to
        ``size`` when given; all must share a size otherwise)."""
        indices = list(indices)
        wanted = {self.members[i]: k for k, i in enumerate(indices)}
        out: list[np.ndarray | None] = [None] * len(indices)
        with tarfile.open(self.path) as tar:
            for info in tar:
                k = wanted.get(info.name)
                if k is None:
                    continue
                out[k] = self._decode(tar, info, size)
        missing = [self.members[indices[k]] for k, im in enumerate(out) if im is None]
        if missing:
            raise BabyganError(f"{self.path}: {missing[0]} vanished from the archive")
        if not out:
            s = size or 0
            return np.zeros((0, s, s, 3), np.uint8)
        shapes = {im.shape for im in out if im is not None}
        if len(shapes) > 1:
            raise BabyganError(f"{self.path}: images of several sizes {sorted(shapes)}; pass size=")
        return np.stack(out)  # type: ignore[arg-type]

    def _decode(self, tar: tarfile.TarFile, info: tarfile.TarInfo, size: int | None) -> np.ndarray:
        try:
            data = tar.extractfile(info).read()  # type: ignore[union-attr]
            with Image.open(io.BytesIO(data)) as im:
                im = im.convert("RGB")
                if size is not None and im.size != (size, size):
                    im = im.resize((size, size), Image.Resampling.LANCZOS)
                return np.asarray(im, dtype=np.uint8).copy()
        except (OSError, ValueError, SyntaxError) as exc:
            raise BabyganError(f"{self.path}: {info.name} is not a readable image ({exc})") from exc

    def load(self, split: Split = "all", size: int | None = None, limit: int | None = None) -> FaceSet:
        """Images and labels of ``split`` (at most ``limit``, in archive order)."""
        idx = self.select(split)
        if limit is not None:
            idx = idx[:limit]
        return self._faceset(idx, self.read_images(idx, size))

    def _faceset(self, idx: Sequence[int], images: np.ndarray, crop: Crop | None = None) -> FaceSet:
        labs = [self.labels[i] for i in idx]
        return FaceSet(
            images=images,
            ages=np.array([lab.age for lab in labs], dtype=np.int16),
            genders=np.array([lab.gender for lab in labs], dtype=np.int8),
            races=np.array([lab.race for lab in labs], dtype=np.int8),
            names=[lab.name for lab in labs],
            crop=crop,
        )


def load_utkface(
    path: str | os.PathLike[str], split: Split = "all", size: int | None = None, limit: int | None = None
) -> FaceSet:
    """UTKFace's own crops from ``path`` (a tar), as ``uint8 (N, size, size, 3)``."""
    return UTKFaceArchive.open(path).load(split, size, limit)


# --------------------------------------------------------------------------- the crop


def _cache_file(archive: UTKFaceArchive, kind: str) -> Path:

    digest = cached_sha256(archive.path)[:16]
    return cache_dir("datasets") / f"utkface-{digest}-{kind}-v{_CACHE_VERSION}.npz"


def find_landmarks(
    archive: UTKFaceArchive, *, use_cache: bool = True, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """dlib's 68 landmarks of every labelled face (upsample 0; the largest face if several).

    Returns ``(found bool (N,), landmarks float32 (N, 68, 2))`` in archive order; rows
    where no face was found are NaN. About 16 ms a face on one core; the result is
    cached under the user cache dir (``$BABYGAN_HOME/datasets``), keyed by the archive's
    SHA-256. Landmarks are found on Pillow's decoding of the JPEGs.
    """

    cache = _cache_file(archive, "landmarks")
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if list(z["names"]) == archive.members:
                    return z["found"], z["landmarks"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache, finding landmarks again (%s)", cache, exc)
    n = len(archive)
    landmarks = np.full((n, 68, 2), np.nan, np.float32)
    index = {name: i for i, name in enumerate(archive.members)}
    done = 0
    with tarfile.open(archive.path) as tar:
        for info in tar:
            i = index.get(info.name)
            if i is None:
                continue
            faces = detect_faces(archive._decode(tar, info, None), upsample=0)
            if faces:
                landmarks[i] = max(faces, key=lambda f: f.area).landmarks
            done += 1
            if progress and done % 1000 == 0:
                log.info("landmarks: %d / %d", done, n)
    found = np.all(np.isfinite(landmarks), axis=(1, 2))
    if use_cache:
        with atomic_path(cache) as tmp:
            np.savez(tmp, names=np.array(archive.members), found=found, landmarks=landmarks)
    return found, landmarks


def needs_padding(
    landmarks: np.ndarray, width: int, height: int, scale: float, output_size: int = 64
) -> bool:
    """Whether ``align_image(..., output_size, crop_scale=scale)`` would reflect-pad this face
    in a ``width x height`` photo: align_image's own rule (after its shrink step, the square
    comes within 4 px of the photo's edge)."""

    quad, side = ffhq_quad(np.asarray(landmarks, np.float64), scale)
    shrink = int(np.floor(side / output_size * 0.5))
    if shrink > 1:
        quad = quad / shrink
        width, height = int(np.rint(width / shrink)), int(np.rint(height / shrink))
    side /= max(shrink, 1)
    if max(int(np.rint(side * 0.1)), 3) < 4:  # a 3 px border: align_image always pads
        return True
    lo = np.floor(quad.min(axis=0))
    hi = np.ceil(quad.max(axis=0))
    return bool(lo[0] < 4 or lo[1] < 4 or hi[0] > width - 4 or hi[1] > height - 4)


def crop_fit(landmarks: np.ndarray, width: int, height: int, scale: float) -> dict[str, float]:
    """How one face's crop at ``scale`` sits in its ``width x height`` image.

    ``padded``: 1.0 when align_image would reflect-pad it (``needs_padding``), else 0.0;
    ``padded_area``: the share of the square lying outside the image (what the padding
    fills in); ``chin_v`` / ``lip_v``: where the chin (landmark 8) and the lower lip (57)
    fall on the square's vertical axis, from -0.5 (top edge) to 0.5 (bottom edge).
    """

    lm = np.asarray(landmarks, np.float64)
    quad, side = ffhq_quad(lm, scale)
    t = (np.arange(32) + 0.5) / 32
    tu, tv = np.meshgrid(t, t)
    # quad corners: top-left, bottom-left, bottom-right, top-right
    points = quad[0] + tu[..., None] * (quad[3] - quad[0]) + tv[..., None] * (quad[1] - quad[0])
    outside = (
        (points[..., 0] < 0) | (points[..., 0] > width) | (points[..., 1] < 0) | (points[..., 1] > height)
    )
    down = (quad[1] - quad[0]) / side
    centre = quad.mean(axis=0)
    return {
        "padded": float(needs_padding(lm, width, height, scale)),
        "padded_area": float(outside.mean()),
        "chin_v": float((lm[8] - centre) @ down / side),
        "lip_v": float((lm[57] - centre) @ down / side),
    }


def crop_fit_table(
    landmarks: np.ndarray, width: int, height: int, scales: Iterable[float]
) -> dict[float, dict[str, float]]:
    """Per scale, over the faces of ``landmarks (N, 68, 2)`` (NaN rows ignored): ``padded``
    (share of crops that need reflection padding), ``padded_area`` (mean share of the square
    outside the image), ``chin_inside`` (share of crops holding the chin), ``lip_v`` and
    ``chin_v`` (medians; see ``crop_fit``). The measurements behind ``CROP_SCALE``."""
    lms = [lm for lm in np.asarray(landmarks, np.float64) if np.all(np.isfinite(lm))]
    if not lms:
        raise ValueError("no landmarks to measure")
    table = {}
    for s in scales:
        fits = [crop_fit(lm, width, height, s) for lm in lms]
        chin = np.array([f["chin_v"] for f in fits])
        table[float(s)] = {
            "padded": float(np.mean([f["padded"] for f in fits])),
            "padded_area": float(np.mean([f["padded_area"] for f in fits])),
            "chin_inside": float(np.mean(chin < 0.5)),
            "chin_v": float(np.median(chin)),
            "lip_v": float(np.median([f["lip_v"] for f in fits])),
        }
    return table


def align_utkface(
    path: str | os.PathLike[str],
    size: int = 64,
    scale: float = CROP_SCALE,
    split: Split = "all",
    *,
    use_cache: bool = True,
    progress: bool = False,
) -> FaceSet:
    """The UTKFace 200 px faces aligned by the FFHQ recipe at ``scale``: ``uint8 (N, size, size, 3)``.

    ``path``: ``utkface200.tar`` (any UTKFace tar works; small images give poorer
    landmarks). Faces where dlib finds none are left out (none at 200 px). The aligned
    set is cached under ``$BABYGAN_HOME/datasets`` (never in the project), keyed by the
    archive's SHA-256, ``size`` and ``scale``. ``FaceSet.crop`` records the crop.
    """
    archive = UTKFaceArchive.open(path)
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    crop = Crop(scale=scale)
    cache = _cache_file(archive, f"aligned{size}-s{scale:g}")
    images = None
    if use_cache and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if list(z["names"]) == archive.members:
                    images, keep = z["images"], z["keep"]
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache, aligning again (%s)", cache, exc)
    if images is None:
        found, landmarks = find_landmarks(archive, use_cache=use_cache, progress=progress)
        keep = np.flatnonzero(found)
        index = {archive.members[i]: k for k, i in enumerate(keep)}
        images = np.zeros((len(keep), size, size, 3), np.uint8)
        with tarfile.open(archive.path) as tar:
            for info in tar:
                k = index.get(info.name)
                if k is None:
                    continue
                image = archive._decode(tar, info, None)
                images[k] = align_image(
                    image,
                    landmarks[keep[k]].astype(np.float64),
                    output_size=size,
                    transform_size=size * TRANSFORM_FACTOR,
                    crop_scale=scale,
                )
        if len(keep) < len(archive):
            log.info(
                "%s: no face found in %d of %d images", archive.path, len(archive) - len(keep), len(archive)
            )
        if use_cache:
            with atomic_path(cache) as tmp:
                np.savez(tmp, names=np.array(archive.members), keep=keep, images=images)
    faces = archive._faceset([int(i) for i in keep], images, crop)
    return faces.split(split)
