"""Family likeness, measured on real parent-child pairs (KinFaceW-II), for babygan's benchmark.

Not on the product's path: ``scripts/bench_kinship.py`` and the tests use it. KinFaceW-II
(research use only) holds 1,000 parent-child pairs, 250 in each of four relations, as 64 px
crops ``images/<relation>/<xx>_<NNN>_1.jpg`` (the parent) and ``_2`` (the child). Nothing
here trains on them.

The score is a rank, a question with no threshold: for a face compared with pair i's child,
the share of the relation's other children that are farther from it (by dlib's descriptor)
than pair i's own child is. 0.5 is chance; 1.0: the true child always nearest.
"""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
