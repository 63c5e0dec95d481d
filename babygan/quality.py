"""How good a face model is on real faces: the figures of the built-in model's card.

- the share of samples in which dlib's HOG detector finds a face (HOG alone, as the card's
  earlier figures were measured: ``resemblance`` also asks dlib's CNN detector);
- the Fréchet distance between samples and held-out real faces in dlib's 128-d face
  descriptor space, beside the same distance between two halves of the real faces (the floor);
- how the age direction moves the attribute network's estimate (requested vs estimated years);
- detail: the variance of the Laplacian and the share of spectral power above half the Nyquist
  frequency, of samples or reconstructions against real faces of the same size (a ratio of 1 is
  as sharp as the real faces; an average of faces is far below).

Images are ``uint8 (N, S, S, 3)``; small ones are upscaled (Lanczos) to ``DESCRIBE_SIZE``
before dlib looks at them, real and generated alike, so both are judged the same way.
"""

from __future__ import annotations

import time
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

    describer = describer or FaceDescriber(cnn_fallback=False)
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
    fake: np.ndarray | None = None,
) -> dict[str, Any]:
    """The card's figures for G against held-out real faces ``real`` uint8 (N, S, S, 3).

    ``face_rate``: share of ``face_samples`` samples with a face found; ``fd``: Fréchet distance
    between the descriptors of ``samples`` samples and of the real faces; ``fd_floor``: the same
    between two halves of the real faces (what a perfect model could reach with that many);
    None where fewer than two faces were found on a side. ``fake``: the caller's samples of G,
    uint8 (at least max(samples, face_samples), R, R, 3), instead of drawing them here.
    """
    if fake is None:
        fake = sample_images(G, max(samples, face_samples), seed=seed, truncation_psi=truncation_psi)

    describer = FaceDescriber(cnn_fallback=False)
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


def _luma(images: np.ndarray) -> np.ndarray:
    """uint8 or float (N, S, S, 3) RGB in 0..255 -> float64 (N, S, S) luma (ITU-R BT.601)."""
    x = np.asarray(images, np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, S, S, 3) RGB, not {x.shape}")
    return x @ np.array([0.299, 0.587, 0.114])


def laplacian_variance(images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float64 (N,): the variance of the 4-neighbour Laplacian of each
    image's luma (0..255) over its interior pixels. Edges and texture raise it; blur lowers it."""
    y = _luma(images)
    lap = y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:] - 4.0 * y[:, 1:-1, 1:-1]
    return lap.var(axis=(1, 2))


def high_frequency_share(images: np.ndarray, cutoff: float = 0.5) -> np.ndarray:
    """uint8 (N, S, S, 3) -> float64 (N,): the share of each image's spectral power (luma, mean
    removed, Hann-windowed so that the image's border is no edge) at radial frequencies above
    ``cutoff`` x Nyquist (0.5 cycles per pixel); the zero frequency is left out of both sums.
    White noise gives about 0.8 (the square's area outside the circle), a smooth face little."""
    y = _luma(images)
    h, w = y.shape[1:]
    y = (y - y.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(h), np.hanning(w))
    power = np.abs(np.fft.fft2(y)) ** 2
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    total = power[:, radius > 0].sum(axis=1)
    return power[:, radius > cutoff * 0.5].sum(axis=1) / np.maximum(total, 1e-30)


def detail_ratios(images: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """How sharp uint8 (N, S, S, 3) images are against real faces uint8 (M, S, S, 3) of the same
    size: the ratios of the means of ``laplacian_variance`` and ``high_frequency_share`` (1 = as
    real faces), and the four means."""
    if np.shape(images)[1:] != np.shape(real)[1:]:
        raise ValueError(f"compare images of one size: {np.shape(images)[1:]} and {np.shape(real)[1:]}")
    lv, lv_real = float(laplacian_variance(images).mean()), float(laplacian_variance(real).mean())
    hf, hf_real = float(high_frequency_share(images).mean()), float(high_frequency_share(real).mean())
    return {
        "laplacian_variance_ratio": round(lv / lv_real, 4),
        "hf_share_ratio": round(hf / hf_real, 4),
        "laplacian_variance": round(lv, 2),
        "laplacian_variance_real": round(lv_real, 2),
        "hf_share": round(hf, 5),
        "hf_share_real": round(hf_real, 5),
    }


def reconstruction_quality(recon: np.ndarray, faces: np.ndarray) -> dict[str, float]:
    """Mean PSNR (dB, peak 255) and mean MS-SSIM of uint8 reconstructions against uint8 faces."""
    from keras import ops

    from babygan.encoder.perceptual import msssim_loss_per_image

    a = np.asarray(recon, np.float64)
    b = np.asarray(faces, np.float64)
    mse = np.maximum(((a - b) ** 2).mean(axis=(1, 2, 3)), 1e-10)
    psnr = float(np.mean(10 * np.log10(255.0**2 / mse)))
    ms = 1.0 - np.asarray(
        ops.convert_to_numpy(msssim_loss_per_image(a.astype(np.float32), b.astype(np.float32)))
    )
    return {"psnr": psnr, "msssim": float(np.mean(ms)), "faces": len(faces)}


def encode_render(G: Generator, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    """E's reconstructions (a model with E) of aligned uint8 faces (N, R, R, 3) -> uint8 (N, R, R, 3)."""
    out = [to_uint8(G.synthesis(G.encode_faces(faces[i : i + batch]))) for i in range(0, len(faces), batch)]
    return np.concatenate(out) if out else np.zeros((0, G.resolution, G.resolution, 3), np.uint8)


def reconstruction_figures(
    G: Generator, faces: np.ndarray, recon: np.ndarray, *, crop_scale: float = 1.0, refine_faces: int = 32,
    refine: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """How well a model with E redraws held-out aligned faces uint8 (N, R, R, 3), ``recon`` being
    E's reconstructions of them (``encode_render``): PSNR / MS-SSIM and the face-network
    perceptual and identity distances (babygan.identity.perceptual) of E alone over all of them;
    PSNR / MS-SSIM of E alone and of E + the model's default refinement (``refine`` steps when
    given; 0: none) over the first ``refine_faces``."""
    from babygan.encoder import Encoder
    from babygan.encoder.settings import settings_for_model
    from babygan.identity.perceptual import FacePerceptual

    figures: dict[str, Any] = {"E": reconstruction_quality(recon, faces)}
    perceptual, identity = FacePerceptual(G.resolution, crop_scale).measure(recon, faces)
    figures["E"].update(
        face_perceptual=round(float(perceptual.mean()), 4), identity=round(float(identity.mean()), 4)
    )
    few = faces[:refine_faces]
    figures["E_few"] = reconstruction_quality(recon[:refine_faces], few)
    if refine != 0:
        chosen = {} if refine is None else {"iterations": refine}
        settings = settings_for_model(G.info, G.has_encoder, **chosen)
        t0 = time.perf_counter()
        result = Encoder(G, settings, offline=True).encode(few, progress=False)
        figures["E+refine"] = reconstruction_quality(result.reconstructions, few)
        figures["E+refine"]["seconds_per_face"] = round((time.perf_counter() - t0) / len(few), 2)
        figures["settings"] = {
            k: getattr(settings, k) for k in ("perceptual", "iterations", "lr", "l1_weight")
        }
    return figures


def model_figures(
    G: Generator, real: np.ndarray, *, samples: int = 2000, face_samples: int = 1000, crop_scale: float = 1.0,
    refine_faces: int = 32, refine: int | None = None, seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Every figure of issue 25 for G against held-out real faces uint8 (N, R, R, 3) aligned at G's
    crop (``crop_scale``) and size: ``model_quality``'s, ``detail_samples`` (``detail_ratios`` of
    ``samples`` samples), and for a model with E ``detail_reconstructions`` and
    ``reconstruction`` (``reconstruction_figures``)."""
    fake = sample_images(G, max(samples, face_samples), seed=seed)
    figures: dict[str, Any] = {"resolution": G.resolution}
    figures.update(model_quality(G, real, samples=samples, face_samples=face_samples, fake=fake))
    figures["detail_samples"] = detail_ratios(fake[:samples], real)
    if G.has_encoder:
        recon = encode_render(G, real)
        figures["detail_reconstructions"] = detail_ratios(recon, real)
        figures["reconstruction"] = reconstruction_figures(
            G, real, recon, crop_scale=crop_scale, refine_faces=refine_faces, refine=refine
        )
    return figures


#: issue 25's targets, at the model's own resolution: (label, keys into model_figures' result,
#: ">=" / "<=" / "" (none), bound)
TARGETS: tuple[tuple[str, tuple[str, ...], str, float | None], ...] = (
    ("Laplacian-variance ratio, samples", ("detail_samples", "laplacian_variance_ratio"), ">=", 0.6),
    ("HF-share ratio, samples", ("detail_samples", "hf_share_ratio"), ">=", 0.7),
    ("Laplacian-variance ratio, E recon", ("detail_reconstructions", "laplacian_variance_ratio"), ">=", 0.6),
    ("HF-share ratio, E recon", ("detail_reconstructions", "hf_share_ratio"), ">=", 0.7),
    ("Frechet distance in dlib's space", ("fd",), "<=", 0.06),
    ("  its real-vs-real floor", ("fd_floor",), "", None),
    ("dlib face rate of samples", ("face_rate",), ">=", 0.98),
    ("E alone: PSNR (dB)", ("reconstruction", "E", "psnr"), "", None),
    ("E alone: MS-SSIM", ("reconstruction", "E", "msssim"), "", None),
    ("E alone: face perceptual distance", ("reconstruction", "E", "face_perceptual"), "", None),
    ("E + refinement: PSNR (dB)", ("reconstruction", "E+refine", "psnr"), ">=", 26.0),
    ("E + refinement: MS-SSIM", ("reconstruction", "E+refine", "msssim"), ">=", 0.93),
)


def summary_table(figures: dict[str, Any]) -> str:
    """``model_figures``' result beside issue 25's targets, as a text table ("-": not measured)."""
    from babygan.texttable import text_table

    rows = []
    for label, keys, sense, bound in TARGETS:
        value: Any = figures
        for k in keys:
            value = value.get(k) if isinstance(value, dict) else None
        target = ""
        if bound is not None:
            met = value is not None and (value >= bound if sense == ">=" else value <= bound)
            target = f"{sense} {bound:g}" + ("" if value is None else (" yes" if met else " no"))
        rows.append((label, "-" if value is None else f"{value:.4g}", target))
    return text_table(("figure", f"{figures.get('resolution', '?')} px", "target (met?)"), rows)
