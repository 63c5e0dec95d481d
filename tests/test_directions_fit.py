"""babygan.directions_fit: directions recovered from a scorer that is linear in w, on a tiny
random generator; orthogonality, units, files, the CLI command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from babygan import directions_fit as df
from babygan.errors import BabyganError


class _Recording:
    """A generator whose synthesis remembers the dlatents it was last given."""

    def __init__(self, G):
        self.G = G
        self.num_layers, self.w_dim, self.z_dim = G.num_layers, G.w_dim, G.z_dim
        self.last_w = None

    def mapping(self, z, truncation_psi=1.0, truncation_cutoff=8):
        return self.G.mapping(z, truncation_psi, truncation_cutoff)

    def synthesis(self, w, noise="const", seed=None):
        self.last_w = np.asarray(w)
        return self.G.synthesis(w, noise, seed)


@pytest.fixture(scope="module")
def tiny():
    from babygan.stylegan import random_generator

    return random_generator(32)


def _true_directions(G, rng):
    """Unit age and gender directions in W, orthogonal, and w's spread along them."""
    a = rng.standard_normal(G.w_dim)
    b = rng.standard_normal(G.w_dim)
    a /= np.linalg.norm(a)
    b -= (b @ a) * a
    b /= np.linalg.norm(b)
    return a, b


def _fake_scorer(rec, a, b, mean_w, age_scale, gender_scale):
    def score(images):
        assert images.dtype == np.uint8 and images.ndim == 4
        w0 = rec.last_w[:, 0, :] - mean_w  # layer 0: inside the shifted layers
        return 30.0 + age_scale * (w0 @ a), 1.0 / (1.0 + np.exp(-gender_scale * (w0 @ b)))

    return score


@pytest.mark.slow
def test_learned_directions_recover_the_true_ones(tiny, tmp_path):
    rec = _Recording(tiny)
    rng = np.random.default_rng(1)
    a, b = _true_directions(tiny, rng)
    w = tiny.mapping(rng.standard_normal((512, tiny.z_dim)), 0.7, tiny.num_layers)[:, 0]
    mean_w = w.mean(axis=0)
    sd_a, sd_b = np.std((w - mean_w) @ a), np.std((w - mean_w) @ b)
    scorer = _fake_scorer(rec, a, b, mean_w, 15.0 / sd_a, 2.0 / sd_b)

    fitted = df.fit_directions(rec, scorer, 800, seed=3, calibration_samples=32)
    age, gender = fitted.directions["age"], fitted.directions["gender"]
    L = tiny.num_layers
    assert age.shape == gender.shape == (L, 512) and age.dtype == gender.dtype == np.float32
    assert np.array_equal(age, np.tile(age[0], (L, 1)))  # the same vector on every layer
    cos_age = age[0] @ a / np.linalg.norm(age[0])
    cos_gender = gender[0] @ b / np.linalg.norm(gender[0])
    assert cos_age < -0.9  # positive coeff = younger, as BabyGAN's age.npy
    assert cos_gender > 0.9  # positive coeff = more female
    assert abs(float(age[0] @ gender[0])) < 1e-5 * np.linalg.norm(age[0]) * np.linalg.norm(gender[0])

    # Units: one unit of age coeff on the first 8 layers = 5 years younger; gender = 1 sd of w.
    slope = df.measured_age_slope(rec, scorer, w[:16], age[0], layers=8)
    assert slope == pytest.approx(-df.YEARS_PER_COEFF, rel=0.02)
    g_unit = gender[0] / np.linalg.norm(gender[0])
    assert np.linalg.norm(gender[0]) == pytest.approx(np.std((w - mean_w) @ g_unit), rel=0.1)
    assert fitted.report["age"]["r2"] > 0.99 and fitted.report["gender"]["accuracy"] > 0.95

    written = df.save_directions(fitted, tmp_path / "out", {"generator": "tiny"})
    assert sorted(p.name for p in written) == ["age.npy", "directions.json", "gender.npy"]
    assert np.array_equal(np.load(tmp_path / "out" / "age.npy"), age)
    report = json.loads((tmp_path / "out" / "directions.json").read_text())
    assert report["generator"] == "tiny" and "units" in report
    assert not list((tmp_path / "out").glob(".*part*"))  # no temporary left behind


def test_gender_is_made_orthogonal_to_a_correlated_age():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((600, 16))
    a = np.eye(16)[0]
    b = (np.eye(16)[0] + np.eye(16)[1]) / np.sqrt(2)  # 45 degrees from age
    coef, r2 = df.ridge_direction(w, 3 * (w @ a) + 1)
    assert r2 > 0.999 and coef / np.linalg.norm(coef) @ a > 0.999
    g, acc = df.logistic_direction(w, 1 / (1 + np.exp(-4 * (w @ b))))
    assert acc > 0.97 and g / np.linalg.norm(g) @ b > 0.99


def test_flat_scores_are_a_clear_error(tiny):
    with pytest.raises(BabyganError, match="age: the fit found no direction"):
        df.fit_directions(tiny, lambda im: (np.full(len(im), 30.0), np.full(len(im), 0.5)), 8)
    with pytest.raises(BabyganError, match="at least 2 samples"):
        df.sample_scores(tiny, lambda im: (np.zeros(len(im)), np.zeros(len(im))), 1)


def test_a_wider_generator_crop_is_cut_to_the_scorers():
    seen = []
    scorer = df.adapt_scorer(
        lambda im: seen.append(im.shape) or (np.zeros(len(im)), np.zeros(len(im))), 1.0, 0.7
    )
    scorer(np.zeros((2, 100, 100, 3), np.uint8))
    assert seen == [(2, 70, 70, 3)]
    images = np.arange(10 * 10).reshape(1, 10, 10, 1)
    assert df.center_crop(images, 0.6)[0, 0, 0, 0] == 22  # rows/cols 2..7
    same = df.adapt_scorer(lambda im: im, 0.7, 0.7)
    assert same(images) is images


def test_save_directions_refuses_a_file_as_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    fitted = df.FittedDirections({"age": np.zeros((2, 512), np.float32)})
    with pytest.raises(BabyganError, match="f: exists and is not a folder"):
        df.save_directions(fitted, tmp_path / "f")


@pytest.mark.slow
def test_cli_learns_directions_of_a_generator_file(tiny, tmp_path):
    from click.testing import CliRunner

    from babygan.attributes import builtin_path
    from babygan.cli import main

    if not builtin_path().is_file():
        pytest.skip("the shipped attribute model is not trained yet")
    model = tiny.save(tmp_path / "tiny.npz")
    result = CliRunner().invoke(
        main,
        ["learn-directions", "-m", str(model), "-o", str(tmp_path / "dirs"), "--samples", "48", "-q"],
    )
    assert result.exit_code == 0, result.output
    age = np.load(tmp_path / "dirs" / "age.npy")
    assert age.shape == (tiny.num_layers, 512) and age.dtype == np.float32
    report = json.loads((tmp_path / "dirs" / "directions.json").read_text())
    assert report["samples"] == 48 and len(report["attribute_model"]["sha256"]) == 64


def test_cli_is_registered_and_bad_input_is_one_line(tmp_path):
    from click.testing import CliRunner

    from babygan.cli import main

    assert "learn-directions" in main.commands
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(
        main, ["learn-directions", "-m", "x.npz", "-o", str(tmp_path / "o"), "--attributes", str(bad)]
    )
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "bad.keras" in errors[0]
