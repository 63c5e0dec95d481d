"""Latent directions learned from labels, InterFaceGAN-style, for any generator babygan loads.

Sample ``N`` latents z, map them to W (no truncation cut-off, so every layer holds the same
w), synthesize the faces, score each with an attribute model (age in years, probability
female), and fit linear models in W (numpy only):

- age: ridge regression of the predicted age on w;
- gender: L2-regularised logistic regression of the (soft) probability female on w,
  made orthogonal to the age direction, so moving along it leaves the age model's
  prediction unchanged to first order.

Each direction is returned as an ``(L, 512) float32`` array with the same vector on every
layer, like BabyGAN's files (``coeff * direction`` is added to a dlatent's first layers).

Units (``UNITS`` says the same in the files' JSON):

- ``age``: coeff 1 = ``-YEARS_PER_COEFF`` (5) years, the scale BabyGAN's own age.npy is used
  at (``--age A`` means coeff = 6 - A/5: positive = younger). Set from the regression's
  slope, then (``calibrate=True``) measured: faces are synthesized with the direction added
  to their first ``layers`` layers, as babygan applies it, and the direction is rescaled
  so that the attribute model's age moves by -5 years per unit.
- ``gender``: coeff 1 = one standard deviation of the sampled w along the direction;
  positive = more female. BabyGAN's demo range -2..2 thus spans about 4 standard deviations.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from babygan.atomic import atomic_path, write_text_atomic
from babygan.errors import BabyganError
from babygan.stylegan import to_uint8

log = logging.getLogger("babygan")

YEARS_PER_COEFF = 5.0  # BabyGAN: coeff = -(age / 5 - 6)
UNITS = {
    "age": f"coeff 1 = -{YEARS_PER_COEFF:g} years as the attribute model sees it (positive = younger, "
    "BabyGAN's age.npy convention: coeff = 6 - age/5)",
    "gender": "coeff 1 = one standard deviation of the sampled w along the direction (positive = more "
    "female); orthogonal to age",
}

# images uint8 (N, R, R, 3) -> (ages float (N,) years, p_female float (N,))
Scorer = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class GeneratorLike(Protocol):
    num_layers: int
    w_dim: int
    z_dim: int

    def mapping(
        self, z: np.ndarray, truncation_psi: float = 1.0, truncation_cutoff: int | None = 8
    ) -> np.ndarray: ...

    def synthesis(self, w: np.ndarray, noise: Any = "const", seed: int | None = None) -> np.ndarray: ...


@dataclass
class FittedDirections:
    """``directions``: name -> ``(L, w_dim) float32``; ``report``: fit figures, units, settings."""

    directions: dict[str, np.ndarray]
    report: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- linear models


def ridge_direction(x: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> tuple[np.ndarray, float]:
    """Least squares ``y ~ x @ a + b`` with an L2 penalty ``alpha * mean(diag(Xc^T Xc))``.

    ``x`` float (N, D), ``y`` (N,). Returns ``(a float64 (D,), R^2 on the samples)``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    gram = xc.T @ xc
    lam = alpha * max(float(np.trace(gram)) / gram.shape[0], 1e-12)
    a = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), xc.T @ yc)
    resid = yc - xc @ a
    total = float(yc @ yc)
    r2 = 1.0 - float(resid @ resid) / total if total > 0 else 0.0
    return a, r2


def logistic_direction(
    x: np.ndarray, p: np.ndarray, alpha: float = 1e-3, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """Logistic regression of soft targets ``p`` in [0, 1] on ``x`` (N, D), by Newton's method
    with the same relative L2 penalty as ``ridge_direction``. Returns ``(a (D,), accuracy)``,
    accuracy = agreement of ``x @ a + b > 0`` with ``p > 0.5``."""
    x = np.asarray(x, np.float64)
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    mean = x.mean(axis=0)
    xc = x - mean
    n, d = xc.shape
    lam = alpha * max(float(np.einsum("ij,ij->", xc, xc)) / d, 1e-12)
    xb = np.concatenate([xc, np.ones((n, 1))], axis=1)
    penalty = np.full(d + 1, lam)
    penalty[-1] = 0.0  # no penalty on the intercept
    theta = np.zeros(d + 1)
    for _ in range(iterations):
        q = 1.0 / (1.0 + np.exp(-np.clip(xb @ theta, -40, 40)))
        grad = xb.T @ (q - p) + penalty * theta
        hess = (xb * (q * (1 - q))[:, None]).T @ xb + np.diag(penalty) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if float(np.max(np.abs(step))) < 1e-7 * (1.0 + float(np.max(np.abs(theta)))):
            break
    accuracy = float(np.mean((xb @ theta > 0) == (p > 0.5)))
    return theta[:d], accuracy


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not np.isfinite(norm) or norm == 0:
        raise BabyganError(f"{what}: the fit found no direction (the scores do not vary with w)")
    return v / norm


# --------------------------------------------------------------------------- crops


def center_crop(images: np.ndarray, ratio: float) -> np.ndarray:
    """The central ``ratio`` of each ``(N, R, R, C)`` image (side ``round(R * ratio)``)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    r = images.shape[1]
    side = max(round(r * ratio), 1)
    lo = (r - side) // 2
    return images[:, lo : lo + side, lo : lo + side]


def adapt_scorer(scorer: Scorer, generator_scale: float, attribute_scale: float) -> Scorer:
    """A scorer for a generator whose faces are cropped at ``generator_scale`` (FFHQ recipe),
    when ``scorer`` reads faces cropped at ``attribute_scale``: the FFHQ recipe scales its
    square about a fixed centre, so a tighter crop is exactly the central part of a wider one.
    A generator cropped tighter than the scorer expects is scored as it is (with a warning)."""
    ratio = attribute_scale / generator_scale
    if abs(ratio - 1) < 1e-6:
        return scorer
    if ratio > 1:
        log.warning(
            "the generator's faces (crop scale %g) are tighter than the attribute model's (%g); "
            "scoring them uncropped",
            generator_scale,
            attribute_scale,
        )
        return scorer
    return lambda images: scorer(np.ascontiguousarray(center_crop(images, ratio)))


# --------------------------------------------------------------------------- sampling


def sample_scores(
    G: GeneratorLike,
    scorer: Scorer,
    samples: int,
    *,
    truncation_psi: float = 0.7,
    seed: int = 0,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``samples`` z (seeded), map (truncation on every layer), synthesize and score.

    Returns ``(w float32 (N, w_dim), ages float64 (N,), p_female float64 (N,))``.
    """
    if samples < 2:
        raise BabyganError(f"need at least 2 samples to fit a direction, got {samples}")

    rng = np.random.default_rng(seed)
    ws, ages, p_female = [], [], []
    for start in range(0, samples, batch_size):
        n = min(batch_size, samples - start)
        z = rng.standard_normal((n, G.z_dim)).astype(np.float32)
        w = G.mapping(z, truncation_psi, G.num_layers)  # (n, L, D), all layers equal
        a, p = scorer(to_uint8(G.synthesis(w)))
        ws.append(w[:, 0, :])
        ages.append(np.asarray(a, np.float64).reshape(n))
        p_female.append(np.asarray(p, np.float64).reshape(n))
        if progress is not None:
            progress(n)
    return np.concatenate(ws), np.concatenate(ages), np.concatenate(p_female)


def measured_age_slope(
    G: GeneratorLike,
    scorer: Scorer,
    w: np.ndarray,
    direction: np.ndarray,
    *,
    layers: int = 8,
    coeff: float = 2.0,
    batch_size: int = 32,
) -> float:
    """Years of predicted age per unit coeff when ``coeff * direction`` (``(D,)`` or ``(L, D)``) is
    added to the first ``layers`` layers of the dlatents ``w`` (``(M, D)``, one w for every
    layer, or ``(M, L, D)``), by central difference."""

    layers = min(max(layers, 1), G.num_layers)
    step = np.broadcast_to(np.asarray(direction, np.float32), (G.num_layers, G.w_dim))[:layers]
    diffs = []
    for start in range(0, len(w), batch_size):
        chunk = np.asarray(w[start : start + batch_size], np.float32)
        if chunk.ndim == 2:  # one w for every layer
            chunk = np.repeat(chunk[:, None, :], G.num_layers, axis=1)
        shifted = []
        for sign in (1.0, -1.0):
            moved = chunk.copy()
            moved[:, :layers] += np.float32(sign * coeff) * step
            shifted.append(np.asarray(scorer(to_uint8(G.synthesis(moved)))[0], np.float64))
        diffs.append((shifted[0] - shifted[1]) / (2 * coeff))
    return float(np.mean(np.concatenate(diffs)))


# --------------------------------------------------------------------------- the fit


def fit_directions(
    G: GeneratorLike,
    scorer: Scorer,
    samples: int = 2000,
    *,
    truncation_psi: float = 0.7,
    seed: int = 0,
    alpha: float = 1e-3,
    calibrate: bool = True,
    calibration_samples: int | None = None,
    layers: int = 8,
    batch_size: int = 32,
    progress: Callable[[int], None] | None = None,
) -> FittedDirections:
    """Learn ``age`` and ``gender`` directions of ``G`` from ``scorer``'s labels.

    ``scorer``: images ``uint8 (N, R, R, 3)`` -> ``(ages (N,) years, p_female (N,))``, e.g.
    ``AttributeModel.load().predict``. ``calibrate``: measure the age direction's effect
    on ``calibration_samples`` (default a tenth of ``samples``, at least 16) faces with it
    added to the first ``layers`` layers, and rescale to ``-YEARS_PER_COEFF`` years per
    unit. Returns ``(L, w_dim) float32`` arrays (units: module docstring) and a report.
    """
    w, ages, p_female = sample_scores(
        G, scorer, samples, truncation_psi=truncation_psi, seed=seed, batch_size=batch_size, progress=progress
    )
    a_age, r2 = ridge_direction(w, ages, alpha)
    u_age = _unit(a_age, "age")
    slope = float(np.linalg.norm(a_age))  # years per unit of w along u_age (all layers)
    age_vec = -YEARS_PER_COEFF / slope * u_age
    report: dict[str, Any] = {
        "samples": int(samples),
        "truncation_psi": truncation_psi,
        "seed": seed,
        "alpha": alpha,
        "units": UNITS,
        "age": {"r2": round(r2, 4), "years_per_unit_w": round(slope, 4), "score_std": float(np.std(ages))},
    }
    if calibrate:
        m = calibration_samples or max(16, samples // 10)
        rng = np.random.default_rng([seed, 1])
        pick = rng.choice(len(w), size=min(m, len(w)), replace=False)
        measured = measured_age_slope(G, scorer, w[pick], age_vec, layers=layers, batch_size=batch_size)
        report["age"]["measured_years_per_coeff_before"] = round(measured, 4)
        if measured < -0.1 * YEARS_PER_COEFF:
            age_vec = age_vec * (YEARS_PER_COEFF / -measured)
            report["age"]["calibrated_on_layers"] = layers
        else:
            log.warning(
                "age direction: adding it to the first %d layers moves the predicted age by %+.2f years "
                "per unit, not about -%g; keeping the regression's scale",
                layers,
                measured,
                YEARS_PER_COEFF,
            )

    a_gender, accuracy = logistic_direction(w, p_female, alpha)
    g = _unit(a_gender, "gender")
    cos_before = float(g @ u_age)
    g = _unit(g - cos_before * u_age, "gender (orthogonal to age)")
    sigma = float(np.std((w - w.mean(axis=0)) @ g))
    gender_vec = g * sigma
    report["gender"] = {
        "accuracy": round(accuracy, 4),
        "cosine_with_age_before_orthogonalising": round(cos_before, 4),
        "w_std_along_direction": round(sigma, 4),
        "female_share": float(np.mean(p_female > 0.5)),
    }
    L = G.num_layers
    directions = {
        "age": np.tile(age_vec.astype(np.float32), (L, 1)),
        "gender": np.tile(gender_vec.astype(np.float32), (L, 1)),
    }
    for name, d in directions.items():
        report[name]["norm_per_layer"] = round(float(np.linalg.norm(d[0])), 4)
    return FittedDirections(directions=directions, report=report)


def fit_wplus_directions(
    G: GeneratorLike,
    w: np.ndarray,
    ages: np.ndarray,
    p_female: np.ndarray,
    *,
    basis: tuple[np.ndarray, np.ndarray] | None = None,
    scorer: Scorer | None = None,
    alpha: float = 1e-3,
    layers: int = 8,
    calibration_samples: int = 128,
    seed: int = 0,
    source: str = "",
) -> FittedDirections:
    """Age and gender directions in W+ (a w per layer) from codes ``w`` float (N, L, D) and
    their labels (ages (N,) years, p_female (N,) in [0, 1]: real labels of encoded faces, or
    an attribute model's scores of samples).

    The same models as :func:`fit_directions` (ridge for age, logistic for gender, gender
    made orthogonal to age), returned as ``(L, D)`` arrays that differ per layer. ``basis``
    ``(weight (Z, L*D), bias (L*D,))``, a linear mapping's ``w = z @ weight + bias``: the
    models are fitted on the codes' z coordinates and the directions mapped back, so a
    direction moves along the codes' main axes only (fitted on all L*D values, a few thousand
    codes let it hide in directions of tiny variance that change the label fit and not the
    face). With a ``scorer``, the age direction is calibrated as there: added to the first
    ``layers`` layers of ``calibration_samples`` codes, rescaled to -5 years per unit.
    """
    w = np.asarray(w, np.float32)
    n, L, D = w.shape
    flat = w.reshape(n, L * D).astype(np.float64)
    if basis is None:
        x, to_w = flat, np.eye(L * D)
    else:
        weight, bias = (np.asarray(b, np.float64) for b in basis)
        x = np.linalg.solve(weight @ weight.T, weight @ (flat - bias).T).T  # (N, Z) coordinates
        to_w = weight
    a_age, r2 = ridge_direction(x, ages, alpha)
    u_age = _unit(a_age, "age")
    slope = float(np.linalg.norm(a_age))
    age_vec = (-YEARS_PER_COEFF / slope * u_age @ to_w).reshape(L, D)
    report: dict[str, Any] = {
        "source": source,
        "samples": int(n),
        "alpha": alpha,
        "fitted_in": "W+" if basis is None else f"the {to_w.shape[0]} z coordinates of the linear mapping",
        "units": UNITS,
        "age": {"r2": round(r2, 4), "years_per_unit": round(slope, 4), "label_std": float(np.std(ages))},
    }
    if scorer is not None:
        pick = np.random.default_rng([seed, 1]).choice(n, size=min(calibration_samples, n), replace=False)
        measured = measured_age_slope(G, scorer, w[pick], age_vec, layers=layers)
        report["age"]["measured_years_per_coeff_before"] = round(measured, 4)
        if measured < -0.1 * YEARS_PER_COEFF:
            age_vec = age_vec * (YEARS_PER_COEFF / -measured)
            report["age"]["calibrated_on_layers"] = layers
    a_gender, accuracy = logistic_direction(x, p_female, alpha)
    g = _unit(a_gender, "gender")
    cos_before = float(g @ u_age)
    g = _unit(g - cos_before * u_age, "gender (orthogonal to age)")
    sigma = float(np.std((x - x.mean(axis=0)) @ g))
    report["gender"] = {
        "accuracy": round(accuracy, 4),
        "cosine_with_age_before_orthogonalising": round(cos_before, 4),
        "std_along_direction": round(sigma, 4),
        "female_share": float(np.mean(np.asarray(p_female) > 0.5)),
    }
    gender_vec = (g * sigma @ to_w).reshape(L, D)
    directions = {"age": age_vec.astype(np.float32), "gender": gender_vec.astype(np.float32)}
    return FittedDirections(directions=directions, report=report)


def save_directions(
    fitted: FittedDirections, output_dir: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``NAME.npy`` per direction and ``directions.json`` (the report) into
    ``output_dir``, each atomically. Returns the paths written."""

    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise BabyganError(f"{out}: exists and is not a folder")
    written = []
    for name, d in fitted.directions.items():
        dest = out / f"{name}.npy"
        with atomic_path(dest) as tmp:
            np.save(tmp, np.asarray(d, np.float32))
        written.append(dest)
    report = dict(fitted.report, **(extra or {}))
    written.append(write_text_atomic(out / "directions.json", json.dumps(report, indent=2) + "\n"))
    return written
