"""Face masks for the encoder's loss, and the composite of a reconstruction into its photo.

pbaylies' encoder segments the face with OpenCV's grabcut, seeded by the hull of dlib's 68
landmarks. babygan has those landmarks already (the aligner found them to crop the photo),
so the mask is their convex hull, scaled about its centre by ``mask_scale``: no new
dependency, and no second detection when the photo went through ``babygan.align``.

The landmarks are carried into the aligned image by the crop's own geometry
(:func:`aligned_landmarks`, exact up to the resampling), rather than detected again on the
aligned image: that would cost a dlib pass per photo and could miss a face the photo's
detection found. Only an image that arrives aligned already (``--aligned``, or a library
caller without landmarks) is searched with :func:`detect_landmarks`.

Masks are float32 (N, S, S) arrays in [0, 1], S the aligned images' side: 1 inside the face.
"""

from __future__ import annotations

import hashlib
import logging

import numpy as np

from babygan.errors import BabyganError

log = logging.getLogger("babygan")

#: supersampling of the hull's rasterisation, for an anti-aliased edge
_SUPERSAMPLE = 4


def aligned_landmarks(landmarks: np.ndarray, output_size: int, crop_scale: float = 1.0) -> np.ndarray:
    """A photo's (68, 2) (x, y) landmarks -> the same points in its aligned crop of ``output_size`` px.

    The crop (``babygan.align.align_image``) samples the FFHQ square ``ffhq_quad(landmarks,
    crop_scale)``, upper-left corner to pixel (0, 0), so a point's place is its offset from
    that corner along the square's two sides. Pixel centres at integer coordinates, as dlib's.
    """
    from babygan.align import ffhq_quad

    lm = np.asarray(landmarks, np.float64)
    quad, _ = ffhq_quad(lm, crop_scale)
    origin = quad[0]
    across = quad[3] - quad[0]  # along the output's x axis (upper-left -> upper-right)
    down = quad[1] - quad[0]  # along its y axis (upper-left -> lower-left)
    d = lm - origin
    u = d @ across / (across @ across)
    v = d @ down / (down @ down)
    return np.stack([u, v], axis=1) * output_size - 0.5


def detect_landmarks(image: np.ndarray) -> np.ndarray | None:
    """The (68, 2) landmarks of the largest face dlib finds in a uint8 (S, S, 3) image, or None."""
    from babygan.align import detect_faces

    faces = detect_faces(np.ascontiguousarray(image), 1)
    if not faces:
        return None
    return max(faces, key=lambda f: f.area).landmarks


def face_mask(landmarks: np.ndarray, size: int, scale: float = 1.2) -> np.ndarray:
    """float32 (size, size) in [0, 1]: the convex hull of (68, 2) landmarks scaled by ``scale``
    about the hull's centre, rasterised with an anti-aliased edge."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull

    pts = np.asarray(landmarks, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3 or not np.all(np.isfinite(pts)):
        raise BabyganError(f"face mask: expected finite (68, 2) landmarks, got shape {pts.shape}")
    hull = pts[ConvexHull(pts).vertices]
    centre = hull.mean(axis=0)
    hull = centre + (hull - centre) * float(scale)
    big = size * _SUPERSAMPLE
    canvas = Image.new("L", (big, big), 0)
    # pixel centre (x, y) -> supersampled pixel-edge coordinates
    poly = (hull + 0.5) * _SUPERSAMPLE
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in poly], fill=255)
    small = canvas.resize((size, size), Image.Resampling.BOX)
    return np.asarray(small, np.float32) / 255.0


def masks_for(
    images: np.ndarray, scale: float, landmarks: list[np.ndarray | None] | None = None
) -> np.ndarray:
    """float32 (N, S, S) face masks for uint8 (N, S, S, 3) aligned images.

    ``landmarks[i]``: image i's (68, 2) landmarks in the aligned frame, or None to look for
    them with dlib. An image without a face gets a mask of ones (the whole image counts),
    with a warning, as pbaylies' encoder does.
    """
    n, size = images.shape[0], images.shape[1]
    if landmarks is None:
        landmarks = [None] * n
    if len(landmarks) != n:
        raise BabyganError(f"face mask: {len(landmarks)} landmark sets for {n} images")
    out = np.ones((n, size, size), np.float32)
    for i, (image, lm) in enumerate(zip(images, landmarks, strict=True)):
        if lm is None:
            lm = detect_landmarks(image)
        if lm is None:
            log.warning("encoder: no face found in aligned image %d; its loss looks at the whole image", i)
            continue
        out[i] = face_mask(lm, size, scale)
    return out


def check_masks(masks: object, n: int, size: int) -> np.ndarray:
    """The masks as float32 (n, size, size) in [0, 1], or a BabyganError saying what is wrong."""
    arr = np.asarray(masks)
    if arr.shape != (n, size, size):
        raise BabyganError(f"masks: expected float32 (N, S, S) = {(n, size, size)}, got shape {arr.shape}")
    arr = arr.astype(np.float32, copy=False)
    if not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0:
        raise BabyganError("masks: values must lie in [0, 1]")
    return arr


def mask_digest(mask: np.ndarray) -> str:
    """A short hash of one (S, S) mask, for the latent cache key."""
    arr = np.ascontiguousarray(np.asarray(mask, np.float32))
    return hashlib.sha256(f"{arr.shape}".encode() + arr.tobytes()).hexdigest()[:32]


def resize_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """float32 (N, S, S) -> (N, size, size); an exact area average when S is a multiple of size."""
    n, s = masks.shape[0], masks.shape[1]
    if s == size:
        return masks.astype(np.float32, copy=False)
    if s % size == 0:
        f = s // size
        return masks.reshape(n, size, f, size, f).mean(axis=(2, 4)).astype(np.float32)
    from PIL import Image

    return np.stack(
        [np.asarray(Image.fromarray(m, "F").resize((size, size), Image.Resampling.BILINEAR)) for m in masks]
    ).astype(np.float32)


def composite(
    reconstructions: np.ndarray, aligned: np.ndarray, masks: np.ndarray, blur: float = 8.0
) -> np.ndarray:
    """Reconstructions inside the face, the aligned photo outside: uint8 (N, R, R, 3).

    reconstructions: uint8 (N, R, R, 3); aligned: uint8 (N, S, S, 3) (resized to R with
    Lanczos when S != R); masks: float32 (N, S, S). The mask's edge is blurred by a
    Gaussian of ``blur`` px at 1024 px (scaled with R), as pbaylies' composite_blur.
    """
    from scipy.ndimage import gaussian_filter

    from babygan.render import resize

    r = int(reconstructions.shape[1])
    photos = aligned if aligned.shape[1] == r else np.stack([resize(a, r) for a in aligned])
    m = resize_masks(np.asarray(masks, np.float32), r)
    sigma = float(blur) * r / 1024.0
    if sigma > 0:
        m = np.stack([gaussian_filter(mi, sigma) for mi in m])
    m = np.clip(m, 0.0, 1.0)[..., None]
    out = m * reconstructions.astype(np.float32) + (1.0 - m) * photos.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
