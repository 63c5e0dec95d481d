"""Judging an anime model's outputs (evaluation only, never on the product's path).

- ``AnimeFaceCascade``: OpenCV's anime-face cascade (``lbpcascade_animeface.xml``, kept in
  ../shared/detectors, not shipped), run as its README recommends: enlarged to 192 px (Lanczos),
  grey, equalised, ``detectMultiScale(scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))``. It finds
  a face in ~71 % of real anime faces and 0.3 % of UTKFace photos: whether an output reads as anime.
  It needs the whole head in view: faces cut to babygan's tight frame are judged with a border
  (``margin``, :data:`FRAME_MARGIN`).
  cv2 is imported when it is first used; it is in the test extra, not a dependency of babygan.
- ``structure``: the layout of an image, its grey image averaged to 8 x 8 cells and standardised
  (the numpy twin of ``babygan.train.anime.structure_maps``, which the tuning holds to the base);
  ``layout_agreement`` (photo vs output: correlation, and whether each photo's own output is the
  nearest of all) and ``diversity`` (takes of one photo vs outputs of different photos) on it.

Images: uint8 (N, H, W, 3) RGB throughout; H and W multiples of 8 for ``structure``.
"""

from __future__ import annotations

import os
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from babygan.errors import BabyganError

CASCADE_SIZE = 192
#: the border (a share of the side, each side, edge pixels repeated) the cascade is given around
#: a face cut as babygan draws faces. The cascade looks for a whole head: on real anime faces cut
#: to the training frame (anime_data.AnimeCrop(0.75, 0.42), 128 px; 100 held out) it finds 2 %
#: without a border, 77 % with this one (74 % of the uncut 96 px faces); aligned photos: 2 % / 11 %.
FRAME_MARGIN = 0.3
STRUCTURE_SIZE = 8


class AnimeFaceCascade:
    """OpenCV's anime-face detector, loaded once from its XML file."""

    def __init__(self, path: str | os.PathLike[str], margin: float = 0.0) -> None:
        """margin: the border added around each image first, as a share of its side on each side
        (edge pixels repeated; :data:`FRAME_MARGIN` for faces in babygan's tight frame)."""
        if not 0.0 <= margin <= 1.0:
            raise BabyganError(f"cascade margin {margin} must be in 0..1")
        self.margin = float(margin)
        try:
            import cv2
        except ImportError as exc:
            raise BabyganError(
                "the anime-face judge needs OpenCV: pip install 'opencv-python-headless<5' (babygan[test])"
            ) from exc
        self.path = Path(path)
        if not self.path.is_file():
            raise BabyganError(f"{self.path}: cascade file not found")
        self._cv2 = cv2
        self._classifier = cv2.CascadeClassifier(str(self.path))
        if self._classifier.empty():
            raise BabyganError(f"{self.path}: not an OpenCV cascade classifier")

    def count_faces(self, image: np.ndarray) -> int:
        """Faces found in one uint8 (H, W, 3) RGB image, given the margin, then enlarged to 192 px."""
        cv2 = self._cv2
        image = np.asarray(image, np.uint8)
        if self.margin:
            h, w = image.shape[:2]
            ph, pw = round(h * self.margin), round(w * self.margin)
            image = np.pad(image, ((ph, ph), (pw, pw), (0, 0)), mode="edge")
        big = np.asarray(
            Image.fromarray(image).resize((CASCADE_SIZE, CASCADE_SIZE), Image.Resampling.LANCZOS)
        )
        gray = cv2.equalizeHist(cv2.cvtColor(big, cv2.COLOR_RGB2GRAY))
        found = self._classifier.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
        return len(found)

    def finds_face(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> bool (N,): whether it finds at least one face in each."""
        return np.array([self.count_faces(im) > 0 for im in images], bool)

    def face_rate(self, images: np.ndarray) -> float:
        """The share of ``images`` in which it finds a face (NaN for none)."""
        return float(self.finds_face(images).mean()) if len(images) else float("nan")


def structure(images: np.ndarray, size: int = STRUCTURE_SIZE) -> np.ndarray:
    """uint8 (N, H, W, 3) -> float64 (N, size * size): grey (channel mean, in [-1, 1]) averaged to
    size x size cells, each map standardised to mean 0 and std 1 (eps as in training)."""
    x = np.asarray(images, np.float64) / 127.5 - 1.0
    n, h, w, _ = x.shape
    if h % size or w % size:
        raise ValueError(f"images of {h} x {w} px do not divide into {size} x {size} cells")
    gray = x.mean(axis=-1).reshape(n, size, h // size, size, w // size).mean(axis=(2, 4)).reshape(n, -1)
    gray -= gray.mean(axis=1, keepdims=True)
    return gray / np.sqrt(np.mean(gray**2, axis=1, keepdims=True) + 1e-4)


def _unit(maps: np.ndarray) -> np.ndarray:
    return maps / np.maximum(np.linalg.norm(maps, axis=1, keepdims=True), 1e-12)


def _correlations(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, K), (M, K) centred maps -> (N, M) Pearson correlations (exact, whatever the eps)."""
    return _unit(a) @ _unit(b).T


def layout_agreement(photos: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    """How well outputs keep their photos' layout: photos and outputs uint8 (N, H, W, 3), output i
    made from photo i. ``correlation``: mean correlation of photo i's and output i's structure;
    ``match_back``: the share of photos whose own output is the most correlated of all N outputs
    (chance: 1 / N); ``others``: mean correlation of a photo with the other photos' outputs."""
    if len(photos) != len(outputs) or len(photos) < 2:
        raise ValueError("layout_agreement needs as many outputs as photos, at least 2")
    corr = _correlations(structure(photos), structure(outputs))
    n = len(photos)
    off = corr[~np.eye(n, dtype=bool)]
    return {
        "correlation": float(np.mean(np.diag(corr))),
        "others": float(np.mean(off)),
        "match_back": float(np.mean(np.argmax(corr, axis=1) == np.arange(n))),
        "chance": 1.0 / n,
        "n": n,
    }


def _mean_pair_distances(images: np.ndarray) -> tuple[float, float]:
    """Mean over pairs of (pixel L1 in [0, 1], structure distance 1 - correlation)."""
    pixels = np.asarray(images, np.float64) / 255.0
    maps = structure(images)
    pairs = list(combinations(range(len(images)), 2))
    l1 = [np.mean(np.abs(pixels[i] - pixels[j])) for i, j in pairs]
    corr = _correlations(maps, maps)
    st = [1.0 - float(corr[i, j]) for i, j in pairs]
    return float(np.mean(l1)), float(np.mean(st))


def diversity(takes: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """takes uint8 (P, T, H, W, 3): T styles of each of P photos; outputs uint8 (P, H, W, 3): one
    output per photo. Mean pairwise distances (pixel L1 in [0, 1] and structure 1 - correlation)
    between takes of one photo, and between different photos' outputs; a model whose styles
    change the rendering but keep the photo's layout has a high ``pixel_ratio`` (takes differ as
    much as other people do) and a low ``structure_ratio``."""
    takes = np.asarray(takes)
    if takes.ndim != 5 or takes.shape[1] < 2 or len(outputs) < 2:
        raise ValueError("diversity needs takes (P, T >= 2, H, W, 3) and at least 2 outputs")
    within = np.array([_mean_pair_distances(t) for t in takes])
    between = _mean_pair_distances(outputs)
    return {
        "takes_pixel_l1": float(within[:, 0].mean()),
        "takes_structure": float(within[:, 1].mean()),
        "photos_pixel_l1": between[0],
        "photos_structure": between[1],
        "pixel_ratio": float(within[:, 0].mean() / max(between[0], 1e-12)),
        "structure_ratio": float(within[:, 1].mean() / max(between[1], 1e-12)),
        "photos": len(takes),
        "takes": int(takes.shape[1]),
    }
