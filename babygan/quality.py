"""How good a face model is on real faces: the figures of the built-in model's card.

- the share of samples in which dlib finds a face;
- the Fréchet distance between samples and held-out real faces in dlib's 128-d face
  descriptor space, beside the same distance between two halves of the real faces (the floor);
- how the age direction moves the attribute network's estimate (requested vs estimated years).

Images are ``uint8 (N, S, S, 3)``; small ones are upscaled (Lanczos) to ``DESCRIBE_SIZE``
before dlib looks at them, real and generated alike, so both are judged the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from babygan import latent
from babygan.render import resize
from babygan.resemblance import FaceDescriber
from babygan.stylegan import Generator, to_uint8

#: dlib's HOG detector wants faces of 80 px (40 px with one upsampling): smaller images are enlarged
DESCRIBE_SIZE = 160


def describe_faces(images: np.ndarray, describer: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (N, S, S, 3) -> (descriptors float64 (M, 128) of the faces found, found bool (N,))."""

    describer = describer or FaceDescriber()
    vectors, found = [], np.zeros(len(images), bool)
    for i, image in enumerate(images):
        if image.shape[0] < DESCRIBE_SIZE:
            image = resize(image, DESCRIBE_SIZE)
        d = describer.describe(image)
        if d.vector is not None:
            vectors.append(d.vector)
            found[i] = True
    return (np.stack(vectors) if vectors else np.zeros((0, 128))), found


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (N, D) and (M, D)."""
    from scipy import linalg

    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"need at least 2 vectors on each side, got {len(a)} and {len(b)}")
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))  # tiny imaginary parts from rounding dropped
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def sample_images(
    G: Generator, count: int, *, seed: int = 0, truncation_psi: float = 1.0, batch: int = 64
) -> np.ndarray:
    """``count`` uint8 (count, R, R, 3) samples of G from seeded latents."""
    z = np.random.default_rng(seed).standard_normal((count, G.z_dim)).astype(np.float32)
    out = [to_uint8(G.run(z[i : i + batch], truncation_psi)) for i in range(0, count, batch)]
    return np.concatenate(out)


def model_quality(
    G: Generator,
    real: np.ndarray,
    *,
    samples: int = 2000,
    face_samples: int = 1000,
    seed: int = 0,
    truncation_psi: float = 1.0,
) -> dict[str, Any]:
    """The card's figures for G against held-out real faces ``real`` uint8 (N, S, S, 3).

    ``face_rate``: share of ``face_samples`` samples with a face found; ``fd``: Fréchet distance
    between the descriptors of ``samples`` samples and of the real faces; ``fd_floor``: the same
    between two halves of the real faces (what a perfect model could reach with that many);
    None where fewer than two faces were found on a side.
    """
    fake = sample_images(G, max(samples, face_samples), seed=seed, truncation_psi=truncation_psi)

    describer = FaceDescriber()
    vecs, found = describe_faces(fake, describer)  # each sample looked at once
    fake_vecs = vecs[: int(found[:samples].sum())]  # the descriptors of the first ``samples``
    rate_found = found[:face_samples]
    real_vecs, real_found = describe_faces(real, describer)
    half = len(real_vecs) // 2
    # with fewer than two faces found on a side there is no distribution to compare: None
    fd = frechet_distance(fake_vecs, real_vecs) if len(fake_vecs) >= 2 and len(real_vecs) >= 2 else None
    floor = frechet_distance(real_vecs[:half], real_vecs[half:]) if half >= 2 else None
    return {
        "samples": samples,
        "face_samples": face_samples,
        "face_rate": round(float(rate_found.mean()), 4),
        "real_faces": len(real),
        "real_face_rate": round(float(real_found.mean()), 4),
        "fd": None if fd is None else round(fd, 4),
        "fd_floor": None if floor is None else round(floor, 4),
        "truncation_psi": truncation_psi,
    }


def age_response(
    G: Generator,
    age_direction: np.ndarray,
    estimate_age: Callable[[np.ndarray], np.ndarray],
    ages: Sequence[float] = tuple(range(2, 61, 4)),
    *,
    samples: int = 64,
    seed: int = 0,
    truncation_psi: float = 0.7,
    w: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Requested age vs the mean estimated age of ``samples`` faces moved along ``age_direction``.

    Moves the first 8 layers by BabyGAN's mapping (coeff = 6 - years / 5), as ``--age`` does.
    ``estimate_age``: uint8 (N, R, R, 3) -> years (N,), e.g. ``AttributeModel.predict(x)[0]``.
    ``w`` float32 (M, L, D): sweep these dlatents (e.g. real faces' codes) instead of samples.
    """

    if w is None:
        z = np.random.default_rng(seed).standard_normal((samples, G.z_dim)).astype(np.float32)
        w = G.mapping(z, truncation_psi)
    rows = []
    for years in ages:
        moved = latent.apply_direction(w, age_direction, latent.age_to_coeff(float(years)), name="age")
        estimated = np.asarray(estimate_age(to_uint8(G.synthesis(moved))), np.float64)
        rows.append(
            {"requested": float(years), "estimated_mean": round(float(estimated.mean()), 2),
             "estimated_sd": round(float(estimated.std()), 2)}
        )  # fmt: skip
    return rows
