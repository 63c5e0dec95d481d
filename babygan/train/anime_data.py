"""Anime faces for tuning an anime model: read from a plain tar (or folder) of images, cropped so
that the face sits in the frame where the base model's photo faces sit.

``anime96.tar`` holds 96 px crops made by OpenCV's anime-face cascade. Measured on the mean
image of 3,000 of them against the mean of 3,000 UTKFace faces aligned as the built-in model's
(FFHQ recipe, scale 0.7): the anime face (skin) spans 50 % of the width and its chin sits at
77 % of the height, the photo face 67 % and about 97 %; the eyes are at 40 % and 44 %. So the
anime crops are *looser* than the base's, not tighter: nothing is padded. A square of 0.75 of
the side, centred across and at 42 % of the height, brings the face to the photo face's width,
its chin to the bottom edge and its eyes to 47 % (``AnimeCrop``, the default); it stays inside
the image, and at 64 px it resamples 72 px to 64 (little blur).

A fixed ~2 % of the faces (by the hash of their file names, ``babygan.utkface.holdout_score``)
is held out of training, to be the real anime faces an evaluation compares with.

Arrays crossing the boundary: uint8 (N, R, R, 3) RGB.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from babygan.errors import BabyganError
from babygan.train.data import decode_image
from babygan.utkface import holdout_score

Split = Literal["train", "holdout", "all"]
HOLDOUT_FRACTION = 0.02
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class AnimeCrop:
    """A square cut from each (square) anime image: ``side`` (fraction of the image's side) centred
    across and at ``centre_y`` (fraction of the height from the top); moved, never shrunk, to stay
    inside the image."""

    side: float = 0.75
    centre_y: float = 0.42

    def __post_init__(self) -> None:
        if not 0.1 <= self.side <= 1.0 or not 0.0 <= self.centre_y <= 1.0:
            raise ValueError(f"anime crop: side must be in [0.1, 1] and centre_y in [0, 1], not {self}")

    def box(self) -> tuple[float, float, float, float]:
        """(left, top, right, bottom) as fractions of the image's width and height."""
        top = min(max(self.centre_y - self.side / 2, 0.0), 1.0 - self.side)
        left = (1.0 - self.side) / 2
        return (left, top, left + self.side, top + self.side)


def _in_split(name: str, split: Split) -> bool:
    if split == "all":
        return True
    return (holdout_score(name) < HOLDOUT_FRACTION) == (split == "holdout")


def _members(path: Path) -> list[tuple[str, bytes]]:
    """(name, encoded bytes) of every image file in a tar or folder, sorted by name."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        return [(str(p.relative_to(path)), p.read_bytes()) for p in files]
    try:
        with tarfile.open(path) as tar:
            found = []
            for info in tar:
                if info.isfile() and Path(info.name).suffix.lower() in IMAGE_SUFFIXES:
                    f = tar.extractfile(info)
                    if f is not None:
                        found.append((info.name, f.read()))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BabyganError(f"{path}: not a readable tar archive ({exc})") from exc
    return sorted(found)


def load_anime_faces(
    path: str | os.PathLike[str], resolution: int, *, crop: AnimeCrop | None = None, split: Split = "train"
) -> np.ndarray:
    """The anime faces of a tar (or folder) of images, cropped by ``crop`` (default ``AnimeCrop()``)
    and Lanczos-resized: uint8 (N, R, R, 3), in file-name order. ``split``: "train" leaves the
    held-out ~2 % out, "holdout" is only those, "all" both. A one-line BabyganError when the file
    is missing, not a tar, holds no images or an unreadable one."""
    path = Path(path)
    if not path.exists():
        raise BabyganError(f"{path}: no such file or folder")
    box = (crop or AnimeCrop()).box()
    members = _members(path)
    if not members:
        raise BabyganError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    chosen = [(n, data) for n, data in members if _in_split(n, split)]
    if not chosen:
        raise BabyganError(f"{path}: none of its {len(members)} images is in the {split} split")
    return np.stack([decode_image(data, resolution, f"{path}:{name}", box) for name, data in chosen])
