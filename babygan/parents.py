"""A parent photo as the Session holds it: its aligned face at the model's resolution, then encoded.

``align_parent`` is the Session's one way from a photo file to the face it encodes: the FFHQ
recipe at the model's crop (from the faces ``babygan.align_ahead`` found, where it did), or a
square resize for photos aligned already (``--aligned``). ``Parent`` is the encoded result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babygan import align, models
from babygan.align import Crop
from babygan.align_ahead import FaceSearchAhead
from babygan.encoder.mask import aligned_landmarks
from babygan.errors import BabyganError
from babygan.photo import load_photo
from babygan.render import resize

log = logging.getLogger("babygan")

#: a photo as the session knows it: its resolved path and the face asked for (None: the largest)
PhotoKey = tuple[Path, int | None]


@dataclass(frozen=True)
class Parent:
    """One parent photo, aligned and encoded."""

    path: Path
    sha256: str
    face: int  # which face of the photo, 1-based from the left (the largest unless one was asked for)
    faces_found: int
    aligned: np.ndarray  # uint8 (S, S, 3), S = the generator's resolution
    dlatents: np.ndarray  # (L, w_dim) float32
    #: float32 (S, S) in [0, 1]: the face mask the encoder's loss used (None without --face-mask)
    mask: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "face": self.face,
            "faces_found": self.faces_found,
        }


@dataclass(frozen=True)
class AlignedPhoto:
    """A photo's face as the encoder takes it."""

    image: np.ndarray  # uint8 (S, S, 3)
    sha256: str  # of the photo file
    face: int
    faces_found: int
    landmarks: np.ndarray | None = None  # (68, 2) in the aligned image; None: not known (--aligned)


def align_parent(
    path: Path,
    face: int | None,
    *,
    resolution: int,
    crop: Crop,
    aligned: bool = False,
    faces_ahead: FaceSearchAhead | None = None,
) -> AlignedPhoto:
    """The photo at ``resolution``: FFHQ-aligned at ``crop``, or resized when ``aligned``.
    Errors name the file (none there, no face, no face number ``face``...)."""
    if not path.is_file():
        raise BabyganError(f"{path}: no such file")
    if aligned:
        if face is not None:
            raise BabyganError(f"{path}: an aligned photo holds one face; no face {face} to choose")
        return AlignedPhoto(_load_aligned(path, resolution), models.sha256_file(path), 1, 1)
    log.info("aligning %s", path.name)
    searched = None if faces_ahead is None else faces_ahead.faces(path)
    found = align.align_photo(path, output_size=resolution, face=face, crop_scale=crop.scale, found=searched)
    image = np.asarray(found.image, np.uint8)
    landmarks = aligned_landmarks(found.face.landmarks, resolution, crop.scale)  # align_photo's crop
    return AlignedPhoto(image, models.sha256_file(path), int(found.index), int(found.num_faces), landmarks)


def _load_aligned(path: Path, size: int) -> np.ndarray:
    """An already aligned photo as uint8 (size, size, 3); it must be square (resized with Lanczos)."""
    image = load_photo(path)
    h, w = image.shape[:2]
    if h != w:
        raise BabyganError(
            f"{path}: an aligned photo must be square, this one is {w}x{h} (drop --aligned to align it)"
        )
    return resize(image, size)
