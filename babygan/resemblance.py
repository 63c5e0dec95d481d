"""How much the child looks like each parent: distances between dlib face descriptors.

dlib's face recognition ResNet maps a face to a 128-d descriptor; two photos of the
same person are usually closer than 0.6 (dlib's own threshold). Faces are found by dlib's HOG
detector, and where it finds none, by dlib's CNN detector (slower, but it finds the soft and
old faces a model draws that HOG misses). The models ship in
the PyPI package face_recognition_models, so nothing is downloaded. dlib is imported
when a :class:`FaceDescriber` is made, never at module import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from babygan.align import _get_detector
from babygan.shipped_models import CNN_FACE_DETECTOR, FACE_DESCRIPTOR, LANDMARKS_5, shipped_model_file

#: dlib's usual "same person" threshold on the descriptor distance
SAME_PERSON_DISTANCE = 0.6
#: the CNN detector searches the image scaled to this shorter side (px): a model's face fills its
#: frame, and the detector's cost grows with the pixels (about 0.25 s a search here on 2 cores)
CNN_SEARCH_SIZE = 160


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
    """dlib's HOG face detector (its CNN detector where HOG finds nothing, unless
    ``cnn_fallback`` is False) + 5-point shape predictor + face recognition ResNet, loaded once."""

    def __init__(self, *, cnn_fallback: bool = True) -> None:
        import dlib

        five_points = shipped_model_file(LANDMARKS_5)
        descriptor = shipped_model_file(FACE_DESCRIPTOR)
        # The HOG detector alignment already built and caches per process (align has no public
        # getter for it; its private one is used rather than building a second detector).

        self._detector = _get_detector()
        self._shape = dlib.shape_predictor(str(five_points))
        self._net = dlib.face_recognition_model_v1(str(descriptor))
        self.cnn_fallback = cnn_fallback
        self._cnn: Any = None  # loaded at its first use: HOG finds most faces

    def describe(self, image: np.ndarray, what: str = "image") -> Descriptor:
        """Descriptor of the largest face in ``uint8 (H, W, 3)``; None + reason when none is found."""
        image = np.ascontiguousarray(image, dtype=np.uint8)
        box = self._find(image)
        if box is None:
            h, w = image.shape[:2]
            return Descriptor(None, f"no face detected in the {what} ({w}x{h} px)")
        shape = self._shape(image, box)
        vec = np.asarray(self._net.compute_face_descriptor(image, shape), dtype=np.float64)
        return Descriptor(vec)

    def _find(self, image: np.ndarray) -> Any:
        """The largest face's ``dlib.rectangle`` in image pixels, or None."""
        # Aligned crops of 256 px and more hold a face far above HOG's 80 px minimum: no
        # upsampling there (it would cost 4x on a 1024 px image); smaller images need it.
        upsample = 0 if min(image.shape[:2]) >= 256 else 1
        boxes = list(self._detector(image, upsample))
        if boxes:
            return max(boxes, key=lambda b: b.width() * b.height())
        return self._find_cnn(image) if self.cnn_fallback else None

    def _find_cnn(self, image: np.ndarray) -> Any:
        """dlib's CNN detector on the image scaled to ``CNN_SEARCH_SIZE``: it finds the soft, old
        faces a model draws that HOG misses (a quarter of the built-in model's 60-year-olds)."""
        import dlib

        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(str(shipped_model_file(CNN_FACE_DETECTOR)))
        h, w = image.shape[:2]
        scale = CNN_SEARCH_SIZE / min(h, w)
        size = (max(round(w * scale), 1), max(round(h * scale), 1))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        found = self._cnn(np.ascontiguousarray(small), 0)
        if not found:
            return None
        r = max(found, key=lambda d: d.rect.width() * d.rect.height()).rect
        sx, sy = size[0] / w, size[1] / h
        return dlib.rectangle(
            round(r.left() / sx), round(r.top() / sy), round(r.right() / sx), round(r.bottom() / sy)
        )


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
