"""How much the child looks like each parent: distances between dlib face descriptors.

dlib's face recognition ResNet maps a face to a 128-d descriptor; two photos of the
same person are usually closer than 0.6 (dlib's own threshold). The models ship in
the PyPI package face_recognition_models, so nothing is downloaded. dlib is imported
when a :class:`FaceDescriber` is made, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from babygan.align import _get_detector
from babygan.shipped_models import FACE_DESCRIPTOR, LANDMARKS_5, shipped_model_file

#: dlib's usual "same person" threshold on the descriptor distance
SAME_PERSON_DISTANCE = 0.6


@dataclass
class Descriptor:
    """A face descriptor ``(128,) float64``, or None with the reason it could not be made."""

    vector: np.ndarray | None
    reason: str | None = None


class Describer(Protocol):
    """What describes faces: a :class:`FaceDescriber`, or a command's dlib process that runs one
    (``babygan.align_ahead.FaceSearchAhead``)."""

    def describe(self, image: np.ndarray, what: str = "image") -> Descriptor: ...


class FaceDescriber:
    """dlib's HOG face detector + 5-point shape predictor + face recognition ResNet, loaded once."""

    def __init__(self) -> None:
        import dlib

        five_points = shipped_model_file(LANDMARKS_5)
        descriptor = shipped_model_file(FACE_DESCRIPTOR)
        # The HOG detector alignment already built and caches per process (align has no public
        # getter for it; its private one is used rather than building a second detector).

        self._detector = _get_detector()
        self._shape = dlib.shape_predictor(str(five_points))
        self._net = dlib.face_recognition_model_v1(str(descriptor))

    def describe(self, image: np.ndarray, what: str = "image") -> Descriptor:
        """Descriptor of the largest face in ``uint8 (H, W, 3)``; None + reason when none is found."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        # Aligned crops of 256 px and more hold a face far above HOG's 80 px minimum: no
        # upsampling there (it would cost 4x on a 1024 px image); smaller images need it.
        upsample = 0 if min(image.shape[:2]) >= 256 else 1
        boxes = list(self._detector(image, upsample))
        if not boxes:
            h, w = image.shape[:2]
            return Descriptor(None, f"no face detected in the {what} ({w}x{h} px)")
        box = max(boxes, key=lambda b: b.width() * b.height())
        shape = self._shape(image, box)
        vec = np.asarray(self._net.compute_face_descriptor(image, shape), dtype=np.float64)
        return Descriptor(vec)


def distance(a: Descriptor, b: Descriptor) -> float | None:
    """Euclidean distance between two descriptors, None when either is missing."""
    if a.vector is None or b.vector is None:
        return None
    return float(np.linalg.norm(a.vector - b.vector))


def resemblance(
    describer: Describer,
    child: np.ndarray,
    father: np.ndarray | Descriptor,
    mother: np.ndarray | Descriptor,
) -> dict[str, Any]:
    """Distances from the child's face to each parent's (lower = more alike).

    child, father, mother: ``uint8 (H, W, 3)`` (the parents may be given as descriptors
    already computed). Returns a JSON-ready dict::

        {"father": 0.52 | None, "mother": 0.61 | None, "closer_to": "father" | "mother" | None,
         "threshold": 0.6, "reason": None | "no face detected in the child (32x32 px); ..."}
    """
    c = describer.describe(child, "child")
    f = father if isinstance(father, Descriptor) else describer.describe(father, "father's aligned photo")
    m = mother if isinstance(mother, Descriptor) else describer.describe(mother, "mother's aligned photo")
    df, dm = distance(c, f), distance(c, m)
    reasons = [d.reason for d in (c, f, m) if d.reason]
    closer = None
    if df is not None and dm is not None:
        closer = "father" if df < dm else "mother" if dm < df else None
    return {
        "father": df,
        "mother": dm,
        "closer_to": closer,
        "threshold": SAME_PERSON_DISTANCE,
        "reason": "; ".join(reasons) if reasons else None,
    }


def describe_text(result: dict[str, Any]) -> str:
    """One line for the terminal."""
    parts = []
    for who in ("father", "mother"):
        d = result.get(who)
        parts.append(f"{who} {d:.3f}" if d is not None else f"{who} n/a")
    line = "resemblance (face descriptor distance, lower = more alike): " + ", ".join(parts)
    if result.get("closer_to"):
        line += f"; closer to the {result['closer_to']}"
    if result.get("reason"):
        line += f" ({result['reason']})"
    return line
