"""The LPIPS-like distance on dlib's face network (babygan.identity.perceptual): zero for the
same image, larger for more blur, a finite gradient, and a fixed chip close to dlib's own."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image, ImageFilter

pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """Three FFHQ-aligned faces at 64 px: uint8 (3, 64, 64, 3)."""
    paths = sorted(shared_path("faces", "ffhq").glob("*.png"))[:3]
    return np.stack([np.asarray(Image.open(p).convert("RGB").resize((64, 64), Image.LANCZOS)) for p in paths])


@pytest.fixture(scope="module")
def measure():
    from babygan.identity.perceptual import FacePerceptual

    return FacePerceptual(64, crop_scale=1.0)


def _blur(images: np.ndarray, radius: float) -> np.ndarray:
    return np.stack(
        [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images]
    )


def test_distance_is_zero_for_the_same_image_and_grows_with_blur(faces, measure):
    same, same_id = measure.measure(faces, faces)
    assert np.all(same < 1e-9) and np.all(same_id < 1e-4)  # 0 up to the batch's rounding
    d = [measure.measure(_blur(faces, r), faces)[0] for r in (0.5, 1.0, 2.0)]
    assert np.all(d[0] > 0) and np.all(d[0] < d[1]) and np.all(d[1] < d[2]), d
    other = measure.measure(faces[::-1], faces)[0][0]  # a different face is further than a blur
    assert other > d[0][0]


def test_gradient_is_finite_in_float32_and_bfloat16(faces, measure):
    from keras import ops

    from babygan import backend
    from babygan.identity.perceptual import FacePerceptual

    x = faces.astype(np.float32) / 127.5 - 1.0
    y = _blur(faces, 1.0).astype(np.float32) / 127.5 - 1.0
    for fp in (measure, FacePerceptual(64, 0.7, net=None, compute_dtype="bfloat16")):

        def loss(a, fp=fp):
            p, i = fp.distances(a, ops.convert_to_tensor(x))
            return ops.sum(p) + 0.1 * ops.sum(i), p

        (value, _), grad = backend.value_and_grad(loss)(ops.convert_to_tensor(y))
        grad = ops.convert_to_numpy(grad)
        assert np.isfinite(float(ops.convert_to_numpy(value))) and float(ops.convert_to_numpy(value)) > 0
        assert grad.shape == y.shape and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_the_fixed_chip_is_close_to_dlibs_own_on_aligned_faces(faces):
    """The typical chip stands in for dlib's per-face chip: the descriptors of both are well within
    dlib's 0.6 for one person (0.08 to 0.23 apart on these faces)."""
    from keras import ops

    from babygan.encoder.identity_term import chip_transforms
    from babygan.identity.chip import crop_chips, sampling_plan
    from babygan.identity.perceptual import FacePerceptual

    size = 256
    big = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.LANCZOS))
                    for p in sorted(shared_path("faces", "ffhq").glob("*.png"))[:3]])  # fmt: skip
    fp = FacePerceptual(size, 1.0)
    fixed = np.asarray(ops.convert_to_numpy(fp.chips(big.astype(np.float32) / 127.5 - 1.0)))
    idx, wts = sampling_plan(chip_transforms(big, size), size, size)
    own = np.asarray(ops.convert_to_numpy(crop_chips(big.astype(np.float32), idx, wts)))
    gap = np.linalg.norm(fp.net.describe(fixed) - fp.net.describe(own), axis=1)
    assert np.all(gap < 0.3), gap
