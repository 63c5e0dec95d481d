"""Face detection (dlib) and the FFHQ crop: a photo in, 1024x1024 aligned faces out.

The encoder can only find a face in StyleGAN's space if the photo is cropped the way
the FFHQ training faces were, so ``align_image`` follows NVlabs' ffhq-dataset recipe
step by step (same rounding, same padding, same filters); docs/architecture.md places it.

Everything here takes and returns plain values: ``uint8 (H, W, 3)`` RGB arrays,
``(68, 2) float64`` landmark arrays in full-resolution pixel coordinates (x, y), paths.
dlib is imported lazily and its models are loaded once per process.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from babygan.errors import BabyganError, ModelFileError
from babygan.models import resolve_model_file
from babygan.photo import detection_pixels, load_photo
from babygan.shipped_models import LANDMARKS_68, shipped_model_file

log = logging.getLogger("babygan")

# Photos bigger than this are downscaled for detection and landmarking (dlib's HOG
# pyramid at upsample 1 costs ~1.3 s per megapixel on one core); the crop still
# uses every pixel of the original. All photos in ../shared/faces stay below it.
MAX_DETECT_PIXELS = 3_200_000
# Below this size a photo with no face found gets one more try at upsample 2
# (finds faces down to ~20 px across, at 4x the cost).
SMALL_PHOTO_PIXELS = 1_000_000
#: the square is sampled at this many times the output size, then shrunk with Lanczos: FFHQ's
#: 4096 -> 1024. A 64 px model's faces are sampled at 256 (as its training faces were), not at
#: 4096, which cost a cold predict 2 s for the same picture
SUPERSAMPLE = 4
# ------------------------------------------------------------------------ detection


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in the full-resolution pixel coordinates of its photo.

    ``box``: dlib's detection rectangle (left, top, right, bottom), ints; it may reach
    past the photo's edges. ``landmarks``: ``(68, 2) float64`` (x, y) in dlib's
    68-point order (36-41 right eye, 42-47 left eye, 48-59 outer mouth...).
    """

    box: tuple[int, int, int, int]
    landmarks: np.ndarray

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(right - left, 0) * max(bottom - top, 0)

    def to_json(self) -> dict[str, Any]:
        """``{"box": [l, t, r, b], "landmarks": [[x, y] * 68]}``; whole-pixel values as ints."""

        def num(v: float) -> int | float:
            return int(v) if float(v).is_integer() else round(float(v), 3)

        return {"box": list(self.box), "landmarks": [[num(x), num(y)] for x, y in self.landmarks]}


_detector: Any = None
_predictors: dict[Path, Any] = {}


def default_predictor_path() -> Path:
    """The 68-point predictor shipped inside the PyPI package face_recognition_models; the
    error says ``--predictor`` can name another."""
    try:
        return shipped_model_file(LANDMARKS_68)
    except ModelFileError as exc:
        raise ModelFileError(f"{exc}, or pass a predictor file with --predictor") from None


def _get_detector() -> Any:
    global _detector
    if _detector is None:
        import dlib

        _detector = dlib.get_frontal_face_detector()
    return _detector


def load_predictor(predictor: str | os.PathLike[str] | None = None) -> Any:
    """The dlib 68-point shape predictor, loaded once per file per process.

    ``None`` is the copy inside face_recognition_models; otherwise a path or a
    registry name (``shape_predictor_68_face_landmarks.dat``, fetched if needed).
    """
    path = default_predictor_path() if predictor is None else resolve_model_file(predictor)
    path = Path(path).resolve()
    if path not in _predictors:
        import dlib

        if not path.is_file():
            raise ModelFileError(f"{path}: no such file")
        try:
            model = dlib.shape_predictor(str(path))
        except RuntimeError as exc:
            raise ModelFileError(f"{path}: not a dlib shape predictor file ({exc})") from exc
        # A 5-point predictor loads just as well; the FFHQ recipe needs the 68 points.
        probe = model(np.zeros((16, 16, 3), np.uint8), dlib.rectangle(0, 0, 15, 15))
        if probe.num_parts != 68:
            raise ModelFileError(f"{path}: predicts {probe.num_parts} landmarks, the FFHQ crop needs 68")
        _predictors[path] = model
    return _predictors[path]


def detect_faces(
    image: np.ndarray,
    upsample: int = 1,
    *,
    predictor: str | os.PathLike[str] | None = None,
) -> list[Face]:
    """Find faces with dlib's HOG frontal detector and their 68 landmarks.

    ``image``: ``uint8 (H, W, 3)`` RGB. ``upsample``: how many times dlib doubles the
    photo to look for small faces (0 = not at all). Photos over ``MAX_DETECT_PIXELS``
    are searched downscaled (landmarks scaled back, as floats); a photo under
    ``SMALL_PHOTO_PIXELS`` where nothing is found is searched once more at upsample 2.
    Returns the faces sorted left to right (then top to bottom); ``[]`` if none.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"detect_faces wants uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    if upsample < 0:
        raise ValueError(f"upsample must be >= 0, got {upsample}")
    shape_model = load_predictor(predictor)
    detector = _get_detector()

    height, width = image.shape[:2]
    scale = np.ones(2)  # (x, y): detection pixels per photo pixel
    small = image
    downscaled = height * width > MAX_DETECT_PIXELS
    if downscaled:
        factor = math.sqrt(MAX_DETECT_PIXELS / (height * width))
        size = (max(round(width * factor), 1), max(round(height * factor), 1))
        small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))
        scale = np.array([size[0] / width, size[1] / height])
    small = np.ascontiguousarray(small)

    rects = detector(small, upsample)
    if len(rects) == 0 and upsample < 2 and height * width <= SMALL_PHOTO_PIXELS:
        rects = detector(small, 2)

    faces = []
    for rect in rects:
        shape = shape_model(small, rect)
        points = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)  # (68, 2)
        box = (rect.left(), rect.top(), rect.right(), rect.bottom())
        if downscaled:
            # Pixel centres sit at integer coordinates: map centre to centre.
            points = (points + 0.5) / scale - 0.5
            corners = (np.array(box, np.float64).reshape(2, 2) + 0.5) / scale - 0.5
            box = tuple(int(v) for v in np.rint(corners).ravel())  # type: ignore[assignment]
        faces.append(Face(box=box, landmarks=points))
    faces.sort(key=lambda f: (f.box[0], f.box[1]))
    return faces


# ------------------------------------------------------------------------ FFHQ crop


@dataclass(frozen=True)
class Crop:
    """How a model's faces are cropped: the FFHQ recipe, its square scaled about its centre.

    ``scale`` 1.0 is FFHQ's crop exactly; below 1 a tighter one (babygan's built-in model:
    ``babygan.utkface.CROP_SCALE``). Model files (npz ``info["crop"]``) and child.json record
    it as ``{"recipe": "ffhq", "scale": s}`` (``to_dict`` / ``from_dict``).
    """

    recipe: str = "ffhq"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.recipe != "ffhq":
            raise BabyganError(f"unknown crop recipe {self.recipe!r} (babygan knows 'ffhq')")
        scale = self.scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < float(scale) <= 4:
            raise BabyganError(f"crop scale must be a number in (0, 4], got {scale!r}")
        object.__setattr__(self, "scale", float(scale))

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "scale": self.scale}

    @classmethod
    def from_dict(cls, spec: Any, source: str = "crop") -> Crop:
        """The crop a JSON record holds (None: FFHQ's own); a bad one: one line naming ``source``."""
        if spec is None:
            return FFHQ_CROP
        if not isinstance(spec, dict):
            raise BabyganError(f"{source}: its crop {spec!r} is not a {{recipe, scale}} record")
        try:
            return cls(str(spec.get("recipe")), spec.get("scale", 1.0))
        except BabyganError as exc:
            raise BabyganError(f"{source}: {exc}") from None

    def inner(self, image: np.ndarray, tighter: Crop) -> np.ndarray:
        """``image`` (cropped as self) -> its central part cropped as ``tighter`` (when it is
        tighter; both are the FFHQ square scaled about the same centre): uint8 (s, s, 3)."""
        if tighter.scale >= self.scale:
            return image
        side = image.shape[0]
        keep = max(1, round(side * tighter.scale / self.scale))
        start = (side - keep) // 2
        return image[start : start + keep, start : start + keep]


#: the crop of a model that records none: NVIDIA's FFHQ alignment, unscaled
FFHQ_CROP = Crop()


def ffhq_quad(landmarks: np.ndarray, crop_scale: float = 1.0) -> tuple[np.ndarray, float]:
    """The oriented crop square of the FFHQ recipe: ``(4, 2) float64`` corners and its side.

    x runs along the eye line (tilted by the eye-to-mouth direction), scaled by
    max(2.0 x eye distance, 1.8 x eye-to-mouth distance); the square has side 2|x|
    and is centred a tenth of the way from the eyes to the mouth. ``crop_scale``
    multiplies the side about that same centre: 1.0 is FFHQ's crop exactly, below 1
    a tighter one (babygan's built-in model is trained on UTKFace faces cropped at
    ``babygan.utkface.CROP_SCALE``).
    """
    if not (math.isfinite(crop_scale) and crop_scale > 0):
        raise ValueError(f"crop_scale must be a positive number, got {crop_scale}")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite (68, 2), got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)  # the subject's right eye, on the image's left
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # Eye line and the eye-to-mouth line rotated by 90 degrees, averaged.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if norm == 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    if crop_scale != 1.0:  # leave FFHQ's arithmetic untouched at 1.0
        x = x * crop_scale
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def align_image(
    image: np.ndarray,
    landmarks: np.ndarray,
    output_size: int = 1024,
    transform_size: int | None = None,
    *,
    crop_scale: float = 1.0,
) -> np.ndarray:
    """Crop one face the way FFHQ was made; returns ``uint8 (S, S, 3)``, S = output_size.

    ``image``: ``uint8 (H, W, 3)`` RGB at full resolution; ``landmarks``: ``(68, 2)``
    (x, y) in the same pixels. Steps: shrink huge faces, crop with a border,
    reflect-pad what the square leaves outside the photo (blurred and faded to the
    median colour), sample the square at ``transform_size`` (default ``SUPERSAMPLE`` x
    output_size) bilinearly, Lanczos down.
    ``crop_scale``: the square's side relative to FFHQ's (see ``ffhq_quad``).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"align_image wants uint8 (H, W, 3) RGB, got {image.dtype} {image.shape}")
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    transform_size = max(transform_size or SUPERSAMPLE * output_size, output_size)
    quad, qsize = ffhq_quad(landmarks, crop_scale)
    img = Image.fromarray(image)

    # Shrink: a face much larger than the output is first resized as a whole.
    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)), int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    # Crop to the square's bounding box plus a border, inside the photo.
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (
        max(lo[0] - border, 0),
        max(lo[1] - border, 0),
        min(hi[0] + border, img.size[0]),
        min(hi[1] + border, img.size[1]),
    )
    if crop[2] - crop[0] < img.size[0] or crop[3] - crop[1] < img.size[1]:
        img = img.crop(crop)
        quad -= crop[0:2]

    # Pad where the square (plus border) reaches past the photo.
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    pad = (
        max(-lo[0] + border, 0),
        max(-lo[1] + border, 0),
        max(hi[0] - img.size[0] + border, 0),
        max(hi[1] - img.size[1] + border, 0),
    )
    if max(pad) > border - 4:
        img, pad_xy = _reflect_pad(img, pad, qsize)
        quad += pad_xy

    # Sample the square (PIL maps the output corners to quad's, +0.5 for pixel centres).
    img = img.transform(
        (transform_size, transform_size),
        Image.Transform.QUAD,
        (quad + 0.5).flatten(),
        Image.Resampling.BILINEAR,
    )
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8).copy()


def _reflect_pad(
    img: Image.Image, pad: tuple[int, int, int, int], qsize: float
) -> tuple[Image.Image, np.ndarray]:
    """Mirror the photo outwards by at least 0.3 x qsize per side; blur and fade the mirrored part.

    Returns the padded image and the (x, y) offset of the original within it.
    """
    left, top, right, bottom = np.maximum(pad, int(np.rint(qsize * 0.3)))
    arr = np.pad(np.asarray(img, dtype=np.float32), ((top, bottom), (left, right), (0, 0)), "reflect")
    h, w, _ = arr.shape
    yy, xx, _ = np.ogrid[:h, :w, :1]
    # 0 inside the photo, rising to 1 at the padded edge (the nearer of the two axes wins).
    mask = np.maximum(
        1.0 - np.minimum(np.float32(xx) / left, np.float32(w - 1 - xx) / right),
        1.0 - np.minimum(np.float32(yy) / top, np.float32(h - 1 - yy) / bottom),
    )
    from scipy.ndimage import gaussian_filter

    blur = qsize * 0.02
    arr += (gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
    padded = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
    return padded, np.array([left, top], dtype=np.float64)


# ------------------------------------------------------------------------ photos in


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """One aligned face: ``image`` uint8 (S, S, 3); ``index`` 1-based, left to right,
    among ``num_faces`` found in ``source``."""

    image: np.ndarray
    face: Face
    index: int
    num_faces: int
    source: Path


def find_faces(
    path: str | os.PathLike[str], upsample: int = 1, predictor: str | os.PathLike[str] | None = None
) -> tuple[np.ndarray, list[Face]]:
    """The photo (``load_photo``) and its faces (``detect_faces``); ``BabyganError`` naming the
    file when it holds none."""
    path = Path(path)
    image = load_photo(path)
    faces = detect_faces(detection_pixels(path, image), upsample, predictor=predictor)
    if not faces:
        raise BabyganError(f"{path}: no face found")
    return image, faces


def align_photo(
    path: str | os.PathLike[str],
    output_size: int = 1024,
    face: int | None = None,
    *,
    upsample: int = 1,
    predictor: str | os.PathLike[str] | None = None,
    transform_size: int | None = None,
    crop_scale: float = 1.0,
    found: list[Face] | None = None,
) -> AlignedFace:
    """Load, detect and align one face of a photo.

    ``face``: 1-based, counting faces left to right; ``None`` takes the largest and
    logs a warning when there are several. Raises ``BabyganError`` naming the file
    when there is no face, or no face number ``face``. ``crop_scale``: 1.0 is the FFHQ
    crop; a model trained on another crop records its scale (``babygan.utkface``).
    ``found``: the photo's faces as ``find_faces`` gives them, searched already (by
    ``babygan.align_ahead``); None searches here.
    """
    path = Path(path)
    if found:
        image, faces = load_photo(path), found
    else:
        image, faces = find_faces(path, upsample, predictor)
    if face is None:
        index = max(range(len(faces)), key=lambda i: faces[i].area) + 1
        if len(faces) > 1:
            log.warning(
                "%s: %d faces found; using the largest, face %d from the left (choose another with --face N)",
                path,
                len(faces),
                index,
            )
    else:
        if not 1 <= face <= len(faces):
            found = f"{len(faces)} face" + ("s" if len(faces) > 1 else "")
            raise BabyganError(f"{path}: no face {face}, only {found} found (counted left to right)")
        index = face
    chosen = faces[index - 1]
    aligned = align_image(image, chosen.landmarks, output_size, transform_size, crop_scale=crop_scale)
    return AlignedFace(image=aligned, face=chosen, index=index, num_faces=len(faces), source=path)


def align_photo_all(
    path: str | os.PathLike[str],
    output_size: int = 1024,
    *,
    upsample: int = 1,
    predictor: str | os.PathLike[str] | None = None,
    transform_size: int | None = None,
    crop_scale: float = 1.0,
) -> list[AlignedFace]:
    """Every face of a photo, aligned, left to right (``crop_scale`` as in ``align_photo``).
    Raises ``BabyganError`` if none."""
    path = Path(path)
    image, faces = find_faces(path, upsample, predictor)
    return [
        AlignedFace(
            image=align_image(image, f.landmarks, output_size, transform_size, crop_scale=crop_scale),
            face=f,
            index=i,
            num_faces=len(faces),
            source=path,
        )
        for i, f in enumerate(faces, start=1)
    ]
