"""The 150 px face chip dlib's descriptor network reads, and a differentiable way to cut it.

dlib's ``get_face_chip_details(shape, 150, 0.25)`` fits its mean face template to the 68
landmarks (a similarity transform) and ``extract_image_chip`` samples the image there
with bilinear interpolation, a sample whose 2x2 neighbourhood leaves the image being 0.
The geometry is asked from dlib itself (so it is dlib's template, exactly); the sampling
is written here twice: a plan in numpy, made once per target (which 4 pixels, which
weights), and its use in ``keras.ops``, so that a rendered image's chip has a gradient
and a render is never searched for a face.

dlib first shrinks the image with a pyramid when the chip's square in it is over about
300 px (downsampling by more than 2); :func:`chip_transform` reports that scale so a
caller can average-pool the image first. The encoder's loss images (256 px) never need it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25
#: the chip of a typical aligned face (FFHQ crop), as fractions of the image side: image px
#: per chip px, and the chip's upper-left corner (x, y). Measured with dlib on the aligned
#: faces of ../shared/faces (spread 0.01).
TYPICAL_STEP = 0.0047
TYPICAL_ORIGIN = (0.153, 0.258)


def typical_transform(size: int, crop_scale: float = 1.0) -> np.ndarray:
    """(2, 3) chip -> image affine of a typical face aligned by the FFHQ recipe with its square
    scaled by ``crop_scale`` about the same centre (``babygan.align.Crop``), in a ``size`` px image."""
    step = TYPICAL_STEP * size / crop_scale
    x0, y0 = (((o - 0.5) / crop_scale + 0.5) * size for o in TYPICAL_ORIGIN)
    return np.array([[step, 0.0, x0], [0.0, step, y0]])


def fixed_chip_matrices(size: int, crop_scale: float = 1.0) -> tuple[int, np.ndarray, np.ndarray]:
    """The typical chip of ``typical_transform`` as separable bilinear resampling, for images that
    are all aligned the same way: (pyramid halvings, rows float32 (150, S), columns float32
    (150, S)), S = size / 2**halvings; a chip is ``rows @ image @ columns.T`` on the image
    average-pooled by 2 that many times (dlib's pyramid, roughly). The typical transform has no
    rotation, so dlib's bilinear sampling separates; a sample whose 2x2 neighbourhood leaves the
    image is 0, as dlib leaves it black.
    """
    t = typical_transform(size, crop_scale)
    halvings = pyramid_factor(t)
    t = (t + np.array([[0, 0, 0.5], [0, 0, 0.5]])) / 2**halvings - np.array([[0, 0, 0.5], [0, 0, 0.5]])
    side = size // 2**halvings

    def axis(step: float, origin: float) -> np.ndarray:
        pos = origin + step * np.arange(CHIP_SIZE)
        m = np.zeros((CHIP_SIZE, side), np.float32)
        p0 = np.floor(pos).astype(np.int64)
        frac = pos - p0
        for i in np.flatnonzero((p0 >= 0) & (p0 + 1 <= side - 1)):
            m[i, p0[i]], m[i, p0[i] + 1] = 1.0 - frac[i], frac[i]
        return m

    return halvings, axis(t[1, 1], t[1, 2]), axis(t[0, 0], t[0, 2])


def chip_transform(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """(68, 2) (x, y) landmarks -> float64 (2, 3) affine from chip pixel (x, y, 1) to image pixel (x, y).

    The landmarks are rounded to whole pixels, as dlib's full_object_detection holds them.
    """
    import dlib

    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be finite (68, 2), got {lm.shape}")
    points = [dlib.point(round(float(x)), round(float(y))) for x, y in lm]
    xs, ys = lm[:, 0], lm[:, 1]
    box = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    details = dlib.get_face_chip_details(dlib.full_object_detection(box, points), size, padding)
    r, angle = details.rect, float(details.angle)
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    c, s = math.cos(angle), math.sin(angle)

    def corner(x: float, y: float) -> np.ndarray:  # a corner of the rect, turned about its centre
        dx, dy = x - cx, y - cy
        return np.array([cx + c * dx - s * dy, cy + s * dx + c * dy])

    tl, tr, bl = corner(r.left(), r.top()), corner(r.right(), r.top()), corner(r.left(), r.bottom())
    cols, rows = int(details.cols), int(details.rows)
    ax = (tr - tl) / (cols - 1)  # image step per chip column
    ay = (bl - tl) / (rows - 1)  # image step per chip row
    return np.stack([ax, ay, tl], axis=1)  # columns: d/dx, d/dy, origin


def sampling_plan(
    transforms: np.ndarray, height: int, width: int, size: int = CHIP_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sampling of (N, 2, 3) chip transforms in (height, width) images.

    Returns int32 (N, size*size, 4) flat pixel indices (y * width + x) of each chip
    pixel's 4 neighbours and float32 (N, size*size, 4) weights; a sample whose
    neighbourhood leaves the image has weights 0 (dlib leaves it black).
    """
    t = np.asarray(transforms, np.float64).reshape(-1, 2, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    grid = np.stack([xx.ravel(), yy.ravel(), np.ones(size * size)], axis=0)  # (3, P)
    pts = np.einsum("nij,jp->npi", t, grid)  # (N, P, 2) image (x, y)
    x0, y0 = np.floor(pts[..., 0]), np.floor(pts[..., 1])
    fx, fy = pts[..., 0] - x0, pts[..., 1] - y0
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 <= width - 1) & (y0 + 1 <= height - 1)
    x0 = np.clip(x0, 0, width - 2).astype(np.int64)
    y0 = np.clip(y0, 0, height - 2).astype(np.int64)
    base = y0 * width + x0
    idx = np.stack([base, base + 1, base + width, base + width + 1], axis=-1)
    wts = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], axis=-1)
    wts = np.where(inside[..., None], wts, 0.0)
    return idx.astype(np.int32), wts.astype(np.float32)


def crop_chips(images: Any, indices: Any, weights: Any, size: int = CHIP_SIZE) -> Any:
    """float (N, H, W, C) images -> float32 (N, size, size, C) chips, by a plan of :func:`sampling_plan`.

    Differentiable with respect to ``images`` on every Keras backend.
    """
    from keras import ops

    images = ops.cast(images, "float32")
    n, h, w, ch = (int(d) for d in images.shape)
    flat = ops.reshape(images, (n, h * w, ch))
    out = None
    for k in range(4):
        # one broadcast op, where ops.repeat builds some 30 in a TensorFlow graph
        idx = ops.broadcast_to(ops.expand_dims(indices[:, :, k], -1), (n, size * size, ch))  # (N, P, C)
        term = ops.take_along_axis(flat, idx, axis=1) * ops.expand_dims(weights[:, :, k], -1)
        out = term if out is None else out + term
    return ops.reshape(out, (n, size, size, ch))


def pyramid_factor(transform: np.ndarray) -> int:
    """How many times dlib would halve the image before sampling this chip (0: it samples directly).

    dlib halves while half the chip's square still holds more pixels than the chip.
    """
    step = float(np.hypot(*np.asarray(transform)[:, 0]))  # image px per chip px
    side, depth = step * (CHIP_SIZE - 1), 0
    while (side / 2) ** 2 > CHIP_SIZE**2:
        side /= 2
        depth += 1
    return depth
