"""Family likeness, measured on real parent-child pairs (KinFaceW-II), for babygan's benchmark;
and on folders of whole families (father, mother, child), such as the team's held-back ones.

Not on the product's path: ``scripts/bench_kinship.py`` and the tests use it. KinFaceW-II
(research use only) holds 1,000 parent-child pairs, 250 in each of four relations, as 64 px
crops ``images/<relation>/<xx>_<NNN>_1.jpg`` (the parent) and ``_2`` (the child). Nothing
here trains on them.

The score is a rank, a question with no threshold: for a face compared with pair i's child,
the share of the relation's other children that are farther from it (by dlib's descriptor)
than pair i's own child is. 0.5 is chance; 1.0: the true child always nearest.
"""

from __future__ import annotations

import importlib
import importlib.util
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babygan.errors import BabyganError

#: relation folder -> (the parent's role, the child's sex)
RELATIONS = {
    "father-dau": ("father", "daughter"),
    "father-son": ("father", "son"),
    "mother-dau": ("mother", "daughter"),
    "mother-son": ("mother", "son"),
}


@dataclass(frozen=True)
class KinPair:
    relation: str  # a key of RELATIONS
    number: int  # the pair's number in its relation, from 1
    parent: Path
    child: Path

    @property
    def parent_role(self) -> str:
        return RELATIONS[self.relation][0]


#: the photos of a family folder, by file stem (``father.jpg``, ``mother.png``, ``child.jpeg``)
FAMILY_ROLES = ("father", "mother", "child")
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class Family:
    """One family of a folder that :func:`read_families` reads: both parents' and the child's photo."""

    name: str  # the family's folder name
    father: Path
    mother: Path
    child: Path


def read_families(folder: str | Path) -> list[Family]:
    """The families of ``folder``, one subfolder each holding ``father``, ``mother`` and ``child``
    photos (.jpg, .jpeg or .png), in name order; other files and hidden folders are left alone.
    At least two families: a child's rank compares it with the other families' children.
    ``BabyganError`` naming the folder at fault otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BabyganError(f"{folder}: no such folder (one subfolder per family: father, mother, child)")
    families: list[Family] = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found: dict[str, list[Path]] = {role: [] for role in FAMILY_ROLES}
        for photo in sorted(sub.iterdir()):
            role = photo.stem.lower()
            if role in found and photo.suffix.lower() in PHOTO_SUFFIXES and photo.is_file():
                found[role].append(photo)
        for role, photos in found.items():
            if not photos:
                raise BabyganError(f"{sub}: no {role} photo ({role}.jpg, .jpeg or .png)")
            if len(photos) > 1:
                names = ", ".join(p.name for p in photos)
                raise BabyganError(f"{sub}: {len(photos)} {role} photos ({names}); keep one")
        families.append(Family(sub.name, found["father"][0], found["mother"][0], found["child"][0]))
    if len(families) < 2:
        raise BabyganError(
            f"{folder}: {len(families)} family folder(s); a rank needs at least two families "
            "(one subfolder each with father, mother and child photos)"
        )
    return families


def extract(archive: str | Path, dest: str | Path) -> Path:
    """Unpack ``kinfacew2.tar`` into ``dest`` once (its images folder returned); a run after
    the first finds it unpacked. Only JPEGs under ``images/`` are taken."""
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise BabyganError(f"{archive}: no such file (KinFaceW-II, see ../shared/datasets/README.md)")
    done = dest / ".unpacked"
    if not done.is_file():
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and "/images/" in f"/{m.name}"]
            members = [m for m in members if m.name.endswith(".jpg") and ".." not in Path(m.name).parts]
            tar.extractall(dest, members=members, filter="data")
        done.write_text(archive.name + "\n")
    found = sorted(dest.glob("*/images"))
    if not found:
        raise BabyganError(f"{archive}: holds no images/ folder")
    return found[0]


def read_pairs(images: str | Path, per_relation: int | None = None) -> list[KinPair]:
    """The pairs of each relation in number order (the first ``per_relation`` of each)."""
    images = Path(images)
    pairs: list[KinPair] = []
    for relation in RELATIONS:
        folder = images / relation
        parents = sorted(folder.glob("*_1.jpg"))
        if not parents:
            raise BabyganError(f"{folder}: no parent photos (*_1.jpg)")
        for parent in parents[: per_relation or None]:
            child = parent.with_name(parent.name.replace("_1.jpg", "_2.jpg"))
            if not child.is_file():
                raise BabyganError(f"{child}: the child of {parent.name} is missing")
            pairs.append(KinPair(relation, int(parent.stem.split("_")[1]), parent, child))
    return pairs


#: how a pair's second parent is chosen: "other", a parent of another family (the benchmark's
#: pairing); "self", the pair's parent itself, so that what aging costs shows without the
#: stranger's half of the child
PAIRINGS = ("other", "self")


def spouses(pairs: Sequence[KinPair], seed: int = 0, pairing: str = "other") -> list[Path]:
    """A spouse for each pair, fixed by ``seed``: a parent of the other sex drawn from the
    other relations' pairs (a father's spouse is some mother-son or mother-daughter parent),
    each used at most once while any is left; with ``pairing="self"``, the pair's own parent."""
    if pairing not in PAIRINGS:
        raise BabyganError(f"pairing {pairing!r}: choose one of {', '.join(PAIRINGS)}")
    if pairing == "self":
        return [p.parent for p in pairs]
    rng = np.random.default_rng(seed)
    by_role: dict[str, list[Path]] = {"father": [], "mother": []}
    for p in pairs:
        by_role[p.parent_role].append(p.parent)
    out: list[Path] = []
    pools = {role: list(rng.permutation(len(paths))) for role, paths in by_role.items()}
    for p in pairs:
        other = "mother" if p.parent_role == "father" else "father"
        if not by_role[other]:
            raise BabyganError(f"no {other}s among the pairs to pair with {p.parent.name}")
        if not pools[other]:
            pools[other] = list(rng.permutation(len(by_role[other])))
        out.append(by_role[other][int(pools[other].pop())])
    return out


def ranks(faces: np.ndarray, children: np.ndarray) -> np.ndarray:
    """float64 (N,): for each face i (N, 128), the share of the other children j != i
    (N, 128; one relation) that are farther from face i than child i is. NaN rows (no
    descriptor) give NaN and are left out of the others' comparisons."""
    faces = np.asarray(faces, np.float64)
    children = np.asarray(children, np.float64)
    d = np.linalg.norm(faces[:, None, :] - children[None, :, :], axis=-1)  # (N, N)
    n = len(faces)
    out = np.full(n, np.nan)
    valid_child = ~np.isnan(children).any(axis=1)
    for i in range(n):
        if np.isnan(d[i, i]):
            continue
        others = valid_child.copy()
        others[i] = False
        if others.any():
            out[i] = float(np.mean(d[i, others] > d[i, i]))
    return out


def spread(descriptors: np.ndarray) -> float:
    """Mean pairwise descriptor distance of a set (N, 128), rows with NaN left out: how
    different the faces are from one another (a collapse onto one face shows as a small value)."""
    x = np.asarray(descriptors, np.float64)
    x = x[~np.isnan(x).any(axis=1)]
    if len(x) < 2:
        return float("nan")
    d = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=-1)
    return float(d[np.triu_indices(len(x), 1)].mean())


class SecondDescriptor:
    """A face descriptor the caller brings, scored beside dlib's: the issue's "second,
    independent descriptor", which babygan itself never uses (none can be had offline here).

    ``spec``: ``MODULE:FUNCTION`` (importable) or ``path/to/file.py:FUNCTION``, a function of one
    uint8 (H, W, 3) RGB image (a photo as it is, or a render) that returns a 1-D vector, or None
    where it finds no face. The vectors are scaled to unit length, so that its ranks are by
    cosine distance, as such descriptors are usually compared.
    """

    def __init__(self, spec: str) -> None:
        where, sep, name = spec.rpartition(":")
        if not sep or not where or not name:
            raise BabyganError(f"--descriptor {spec}: give MODULE:FUNCTION or FILE.py:FUNCTION")
        module = _import_descriptor_module(spec, where)
        fn = getattr(module, name, None)
        if not callable(fn):
            raise BabyganError(f"--descriptor {spec}: {where} has no function {name}")
        self.spec = spec
        self._fn: Callable[[np.ndarray], Any] = fn
        self.size: int | None = None  # the vectors' length, fixed by the first one

    def __call__(self, image: np.ndarray, what: str) -> np.ndarray | None:
        """float64 (D,) unit vector of uint8 (H, W, 3) ``image``, or None (no face found).
        ``what``: the image's name in an error."""
        try:
            out = self._fn(np.ascontiguousarray(image))
        except Exception as exc:  # the caller's code: any failure is one line naming the image
            raise BabyganError(f"--descriptor {self.spec}: {what}: {type(exc).__name__}: {exc}") from exc
        if out is None:
            return None
        try:
            v = np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            v = np.zeros((0,))
        if v.ndim != 1 or not np.all(np.isfinite(v)) or not np.any(v):
            raise BabyganError(f"--descriptor {self.spec}: {what}: not a finite, non-zero 1-D vector")
        if self.size is None:
            self.size = v.size
        elif v.size != self.size:
            raise BabyganError(
                f"--descriptor {self.spec}: {what}: {v.size} values where the first image gave {self.size}"
            )
        return v / np.linalg.norm(v)

    def stack(self, vectors: Sequence[np.ndarray | None]) -> np.ndarray:
        """float64 (N, D) of :meth:`__call__`'s results, NaN rows where there was none (no face,
        or never described); what :func:`ranks` and :func:`spread` take."""
        out = np.full((len(vectors), self.size or 1), np.nan)
        for i, v in enumerate(vectors):
            if v is not None:
                out[i] = v
        return out


def _import_descriptor_module(spec: str, where: str) -> Any:
    """The module ``where`` names: a .py file's path, or an importable name."""
    try:
        if where.endswith(".py"):
            path = Path(where)
            if not path.is_file():
                raise BabyganError(f"--descriptor {spec}: no such file {where}")
            loader_spec = importlib.util.spec_from_file_location(f"bench_descriptor_{path.stem}", path)
            if loader_spec is None or loader_spec.loader is None:
                raise BabyganError(f"--descriptor {spec}: {where} is not a Python file")
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
            return module
        return importlib.import_module(where)
    except BabyganError:
        raise
    except Exception as exc:  # an import error, or the module's own code failing
        raise BabyganError(
            f"--descriptor {spec}: {where} could not be imported ({type(exc).__name__}: {exc})"
        ) from exc
