"""Finish an autoencoder run into the model babygan ships: E's codes give the model its z -> W+
map and its age and gender directions.

- Sampling: no mapping network was trained. The codes E gives the training faces are
  modelled as a Gaussian in W+ through their top principal components; the model's mapping
  is that affine map (``GeneratorConfig.mapping_kind = "linear"``), so ``generate``, random
  siblings and sample-based direction fitting draw faces like the training faces.
- Directions, two ways, the better kept: fitted on the real faces' codes with their real
  labels (UTKFace's age and gender), and fitted on samples scored by the attribute network.
  "Better" is the set whose age sweep of held-out faces the attribute network follows best
  (the highest correlation of estimated with requested age less the slope's distance from 1).

Arrays: faces uint8 (N, R, R, 3); codes float32 (N, L, D).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import numpy as np

from babygan import quality
from babygan.directions_fit import FittedDirections, fit_wplus_directions
from babygan.errors import BabyganError
from babygan.stylegan.generator import Generator, to_uint8
from babygan.train.autoencoder import AutoencoderTrainer, reconstruction_quality

SWEEP_AGES = tuple(range(2, 61, 4))


def fit_linear_mapping(codes: np.ndarray, latent_size: int) -> tuple[dict[str, np.ndarray], float]:
    """A Gaussian over codes (N, L, D) through its top ``latent_size`` principal components:
    ({"mapping.linear.weight": (Z, L*D), "mapping.linear.bias": (L*D,), "dlatent_avg": (L, D)},
    the share of the codes' variance those components hold)."""
    n, L, D = codes.shape
    flat = codes.reshape(n, L * D).astype(np.float64)
    mean = flat.mean(axis=0)
    _, s, vt = np.linalg.svd(flat - mean, full_matrices=False)
    k = min(latent_size, len(s))
    weight = np.zeros((latent_size, L * D))
    weight[:k] = vt[:k] * (s[:k, None] / np.sqrt(max(n - 1, 1)))  # z ~ N(0, I) -> the codes' spread
    explained = float((s[:k] ** 2).sum() / max((s**2).sum(), 1e-30))
    params = {
        "mapping.linear.weight": weight.astype(np.float32),
        "mapping.linear.bias": mean.astype(np.float32),
        "dlatent_avg": mean.reshape(L, D).astype(np.float32),
    }
    return params, explained


def finished_generator(
    trainer: AutoencoderTrainer, codes: np.ndarray, info: dict[str, Any]
) -> tuple[Generator, float]:
    """The run's EMA synthesis network and E, with the z -> W+ map fitted to ``codes``, as a
    Generator (``info`` records the crop, name, licence); and the variance share kept."""
    if trainer.fade_alpha < 1:
        raise BabyganError(
            f"the run's new block is still fading in (alpha {trainer.fade_alpha:.2f} at "
            f"{trainer.nimg / 1000:g} kimg of {trainer.config.fade_kimg:g}): train it further first"
        )
    gc = replace(trainer.gconfig, mapping_kind="linear", image_encoder=True)
    mapping, explained = fit_linear_mapping(codes, gc.latent_size)
    params = {**trainer.ema_params(), **mapping}
    params = {k: params[k] for k in gc.param_shapes()}
    digest = hashlib.sha256()
    for name in sorted(params):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(params[name], np.float32).tobytes())
    gen = Generator(gc, params, source_sha256=digest.hexdigest(), info=info)
    return gen, explained


def _sweep_score(rows: list[dict[str, float]]) -> tuple[float, float]:
    req = np.array([r["requested"] for r in rows])
    est = np.array([r["estimated_mean"] for r in rows])
    corr = float(np.corrcoef(req, est)[0, 1]) if est.std() > 0 else 0.0
    return corr, float(np.polyfit(req, est, 1)[0])


def finish(
    trainer: AutoencoderTrainer,
    train_faces: Any,
    holdout_faces: Any,
    scorer: Any,
    info: dict[str, Any],
    *,
    sweep_faces: int = 64,
    direction_samples: int = 4000,
) -> tuple[Generator, FittedDirections, dict[str, Any]]:
    """The shippable model, its chosen directions and a report of every figure on the way.

    ``train_faces`` / ``holdout_faces``: ``babygan.utkface.FaceSet`` (images, ages, genders);
    ``scorer``: uint8 faces -> (ages, p_female), the attribute network.
    """
    codes, _ = trainer.encode_render(train_faces.images)
    G, explained = finished_generator(trainer, codes, info)
    held_codes, held_recon = trainer.encode_render(holdout_faces.images)
    report: dict[str, Any] = {
        "training": {
            "kimg": trainer.nimg / 1000,
            "steps": trainer.step,
            "minutes": {k: round(v / 60, 1) for k, v in trainer.stage_seconds.items()},
            "config": trainer.config.to_dict(),
        },
        "mapping": {"principal_components": G.z_dim, "variance_kept": round(explained, 4)},
        "holdout_E_alone": reconstruction_quality(to_uint8(held_recon), holdout_faces.images),
    }
    basis = (G.params["mapping.linear.weight"], G.params["mapping.linear.bias"])
    labelled = fit_wplus_directions(
        G, codes, train_faces.ages.astype(np.float64), train_faces.genders.astype(np.float64),
        basis=basis, scorer=scorer, source="training faces' codes, real labels",
    )  # fmt: skip
    z = np.random.default_rng(7).standard_normal((direction_samples, G.z_dim)).astype(np.float32)
    sample_w = G.mapping(z)
    s_ages, s_female = [], []
    for i in range(0, len(sample_w), 256):
        a, p = scorer(to_uint8(G.synthesis(sample_w[i : i + 256])))
        s_ages.append(np.asarray(a, np.float64))
        s_female.append(np.asarray(p, np.float64))
    sampled = fit_wplus_directions(
        G, sample_w, np.concatenate(s_ages), np.concatenate(s_female),
        basis=basis, scorer=scorer, source="samples scored by the attribute network",
    )  # fmt: skip
    sweep_w = held_codes[:sweep_faces]
    candidates = {"labels": labelled, "samples": sampled}
    sweeps = {}
    for name, fitted in candidates.items():
        rows = quality.age_response(
            G, fitted.directions["age"], lambda x: scorer(x)[0], SWEEP_AGES, w=sweep_w
        )
        corr, slope = _sweep_score(rows)
        sweeps[name] = {"rows": rows, "correlation": round(corr, 4), "slope": round(slope, 4)}
        fitted.report["age_sweep"] = sweeps[name]
    # following an age sweep means moving with it (slope near 1) and steadily (correlation)
    best = max(candidates, key=lambda k: sweeps[k]["correlation"] - abs(1 - sweeps[k]["slope"]))
    chosen = candidates[best]
    chosen.report["chosen_over"] = {k: v.report for k, v in candidates.items() if k != best}
    report["directions"] = {"chosen": best, **{k: v.report for k, v in candidates.items()}}
    return G, chosen, report
