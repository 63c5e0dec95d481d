"""The built-in model's quality figures: Fréchet distance, dlib face rate, age response."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from babygan import quality


def test_frechet_distance_is_zero_for_the_same_set_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((400, 8))
    assert quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # equal covariances: the distance is the squared distance of the means
    assert quality.frechet_distance(a, a + 0.5) == pytest.approx(8 * 0.25, rel=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        quality.frechet_distance(a[:1], a)


@pytest.fixture(scope="module")
def ffhq_faces() -> np.ndarray:
    folder = shared_path("faces", "ffhq")
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))])


def test_faces_are_found_in_real_photos_and_not_in_noise(ffhq_faces):
    small = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.LANCZOS)) for f in ffhq_faces])
    vectors, found = quality.describe_faces(small)  # 64 px: enlarged before dlib looks
    assert found.all() and vectors.shape == (len(small), 128)
    noise = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    vectors, found = quality.describe_faces(noise)
    assert not found.any() and vectors.shape == (0, 128)


def test_model_quality_of_an_untrained_generator(ffhq_faces):
    """Random weights draw no face: rate 0 and no distance; the real faces still give the floor."""
    from babygan.stylegan import random_generator

    G = random_generator(32, fmap_max=16, seed=0)
    figures = quality.model_quality(G, ffhq_faces, samples=8, face_samples=8)
    assert figures["face_rate"] == 0.0 and figures["fd"] is None
    assert figures["real_face_rate"] == 1.0 and figures["fd_floor"] > 0


def test_age_response_reports_each_requested_age():
    from babygan.stylegan import random_generator

    G = random_generator(32, fmap_max=16, seed=0)
    direction = np.random.default_rng(1).standard_normal((G.num_layers, G.w_dim)).astype(np.float32)
    seen = []

    def brightness(images: np.ndarray) -> np.ndarray:  # stands in for the age estimator
        seen.append(images.shape)
        return images.mean(axis=(1, 2, 3))

    rows = quality.age_response(G, direction, brightness, ages=(2, 30, 58), samples=4)
    assert [r["requested"] for r in rows] == [2.0, 30.0, 58.0]
    assert seen == [(4, 32, 32, 3)] * 3
    assert len({r["estimated_mean"] for r in rows}) == 3  # the direction moved the images


def test_sharpness_measures_rank_blur_below_sharp_and_noise_high(ffhq_faces):
    from PIL import ImageFilter

    sharp = np.stack([np.asarray(Image.fromarray(f).resize((64, 64), Image.LANCZOS)) for f in ffhq_faces])
    blurred = np.stack([np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(1.5))) for f in sharp])
    assert np.all(quality.laplacian_variance(blurred) < quality.laplacian_variance(sharp))
    assert np.all(quality.high_frequency_share(blurred) < quality.high_frequency_share(sharp))
    same = quality.detail_ratios(sharp, sharp)
    assert same["laplacian_variance_ratio"] == 1.0 and same["hf_share_ratio"] == 1.0
    soft = quality.detail_ratios(blurred, sharp)
    assert soft["laplacian_variance_ratio"] < 0.5 and soft["hf_share_ratio"] < 0.7, soft
    noise = np.random.default_rng(0).integers(0, 256, (4, 64, 64, 3)).astype(np.uint8)
    share = quality.high_frequency_share(noise)
    assert np.all((share > 0.7) & (share < 0.9)), share  # ~ 1 - pi / 16 of the power is above half Nyquist
    assert np.all(quality.high_frequency_share(sharp) < 0.2)
    with pytest.raises(ValueError, match="one size"):
        quality.detail_ratios(sharp, blurred[:, :32, :32])


@pytest.mark.slow
def test_model_figures_of_a_tiny_model_with_e(ffhq_faces):
    """Every figure of issue 25 is computed for a tiny untrained model that carries E, and the
    summary table shows each beside its target."""
    from babygan.train.autoencoder import AutoencoderTrainer
    from babygan.train.config import AutoencoderConfig
    from babygan.train.finish import finished_generator

    held = np.stack([np.asarray(Image.fromarray(f).resize((32, 32), Image.LANCZOS)) for f in ffhq_faces])
    tr = AutoencoderTrainer(
        AutoencoderConfig(
            resolution=32, fmap_base=64, fmap_max=16, dlatent_size=16, batch=4, mixed_precision=False
        )
    )
    G, _ = finished_generator(tr, tr.encode_render(held)[0], {"crop": {"recipe": "ffhq", "scale": 1.0}})
    figures = quality.model_figures(G, held, samples=6, face_samples=6, refine_faces=2, refine=1)
    assert figures["resolution"] == 32 and figures["face_rate"] == 0.0
    for part in ("detail_samples", "detail_reconstructions"):
        assert figures[part]["laplacian_variance_ratio"] > 0 and figures[part]["hf_share_ratio"] > 0
    recon = figures["reconstruction"]
    assert recon["E"]["faces"] == len(held) and recon["E+refine"]["faces"] == 2
    assert recon["E"]["face_perceptual"] > 0 and recon["settings"]["iterations"] == 1
    table = quality.summary_table(figures)
    assert "HF-share ratio, E recon" in table and ">= 26" in table and "<= 0.06" in table
