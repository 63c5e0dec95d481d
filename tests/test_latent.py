"""Blend, crossover, direction and age math against hand-computed arrays."""

from __future__ import annotations

import numpy as np
import pytest

from babygan import latent
from babygan.errors import BabyganError

L, D = 18, 4


def _parents() -> tuple[np.ndarray, np.ndarray]:
    father = np.zeros((L, D), np.float32)
    mother = np.ones((L, D), np.float32) * 10.0
    return father, mother


def test_default_blend_is_linear_in_genes():
    f = np.array([[0.0, 2.0], [4.0, 6.0]], np.float32)
    m = np.array([[10.0, 10.0], [0.0, 2.0]], np.float32)
    out = latent.blend(f, m, genes=0.3)
    np.testing.assert_allclose(out, [[3.0, 4.4], [2.8, 4.8]], rtol=1e-6)
    assert out.dtype == np.float32 and out.shape == (2, 2)
    np.testing.assert_array_equal(latent.blend(f, m, genes=0.0), f)
    np.testing.assert_array_equal(latent.blend(f, m, genes=1.0), m)


def test_father_style_per_layer_curve():
    father, mother = _parents()
    genes = 0.5
    out = latent.blend(father, mother, genes, style="father")
    # BabyGAN: lr = (arange(1, 19) / 18) ** genes; child = lr * father + (1 - lr) * mother.
    lr = np.array([((i + 1) / 18) ** 0.5 for i in range(18)])
    expected = 10.0 * (1 - lr)
    np.testing.assert_allclose(out[:, 0], expected, rtol=1e-5)
    # Hand values: layer 0 -> 1 - sqrt(1/18), last layer -> all father.
    assert out[0, 0] == pytest.approx(10 * (1 - 0.23570226), rel=1e-5)
    assert out[-1, 0] == pytest.approx(0.0, abs=1e-6)
    assert np.all(np.diff(out[:, 0]) < 0)  # the father's share grows along the layers


def test_mother_style_per_layer_curve():
    father, mother = _parents()
    out = latent.blend(father, mother, genes=0.25, style="mother")
    # lr = (arange(1, 19) / 18) ** (1 - genes); child = (1 - lr) * father + lr * mother.
    lr = (np.arange(1, 19) / 18) ** 0.75
    np.testing.assert_allclose(out[:, 2], 10.0 * lr, rtol=1e-5)
    assert out[8, 1] == pytest.approx(10 * 0.5**0.75, rel=1e-5)  # layer 9 of 18 is ramp 0.5
    assert out[-1, 3] == pytest.approx(10.0)


def test_mother_weights_shape_and_batch_blend():
    m = latent.mother_weights(18, 0.4, "default")
    assert m.shape == (18, 1) and np.allclose(m, 0.4)
    father = np.zeros((3, L, D), np.float32)
    mother = np.ones((3, L, D), np.float32)
    out = latent.blend(father, mother, 0.4, "mother")
    assert out.shape == (3, L, D)
    np.testing.assert_allclose(out[1, :, 0], latent.mother_weights(18, 0.4, "mother")[:, 0])


@pytest.mark.parametrize("genes", [-0.1, 1.5, float("nan")])
def test_genes_out_of_range(genes):
    father, mother = _parents()
    with pytest.raises(BabyganError, match="genes must be between 0"):
        latent.blend(father, mother, genes)


def test_unknown_style_and_mismatched_parents():
    father, mother = _parents()
    with pytest.raises(BabyganError, match="unknown blend style 'uncle'"):
        latent.blend(father, mother, 0.5, style="uncle")
    with pytest.raises(BabyganError, match="same shape"):
        latent.blend(father, mother[:10], 0.5)


def test_crossover_takes_whole_layers_and_is_reproducible():
    father, mother = _parents()
    child, mask = latent.crossover(father, mother, genes=0.5, seed=7)
    assert child.shape == (L, D) and mask.shape == (L,) and mask.dtype == bool
    np.testing.assert_array_equal(child[mask], mother[mask])
    np.testing.assert_array_equal(child[~mask], father[~mask])
    child2, mask2 = latent.crossover(father, mother, genes=0.5, seed=7)
    np.testing.assert_array_equal(child, child2)
    np.testing.assert_array_equal(mask, mask2)
    masks = {tuple(latent.crossover(father, mother, 0.5, seed=s)[1]) for s in range(10)}
    assert len(masks) > 5  # different seeds, different siblings
    # The same draw as numpy's generator: mother where uniform < genes.
    expected = np.random.default_rng(7).random(L) < 0.5
    np.testing.assert_array_equal(mask, expected)


def test_crossover_weighted_by_genes():
    father, mother = _parents()
    assert not latent.crossover(father, mother, 0.0, seed=1)[1].any()
    assert latent.crossover(father, mother, 1.0, seed=1)[1].all()
    share = np.mean([latent.crossover(father, mother, 0.8, seed=s)[1].mean() for s in range(200)])
    assert 0.75 < share < 0.85


def test_direction_touches_only_first_8_layers():
    w = np.arange(L * D, dtype=np.float32).reshape(L, D)
    direction = np.ones((L, D), np.float64) * 0.5
    out = latent.apply_direction(w, direction, coeff=4.0)
    expected = w.copy()
    expected[:8] += 2.0
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(w[0], np.arange(D))  # input untouched


def test_direction_layer_choices_and_batch():
    w = np.zeros((2, L, D), np.float32)
    d = np.tile(np.arange(L, dtype=np.float32)[:, None], (1, D))
    out = latent.apply_direction(w, d, -1.0, layers=[0, 17])
    assert out.shape == (2, L, D)
    np.testing.assert_array_equal(out[1, :, 0], [0.0] * 17 + [-17.0])
    out = latent.apply_direction(w, d, 1.0, layers=slice(4, 6))
    np.testing.assert_array_equal(np.nonzero(out[0, :, 0])[0], [4, 5])
    out = latent.apply_direction(w, d, 1.0, layers=100)  # more than L: every layer
    np.testing.assert_array_equal(out[0, 1:, 0], np.arange(1, L))
    with pytest.raises(BabyganError, match=r"outside 0\.\.17"):
        latent.apply_direction(w, d, 1.0, layers=[18])


def test_direction_shape_mismatch_names_file():
    w = np.zeros((8, 16), np.float32)
    with pytest.raises(BabyganError, match=r"age.npy: direction has shape \(18, 512\).*\(8, 16\)"):
        latent.apply_direction(w, np.zeros((18, 512)), 1.0, name="age.npy")


def test_apply_directions_add_up():
    w = np.zeros((L, D), np.float32)
    a = np.ones((L, D))
    b = np.full((L, D), 2.0)
    out = latent.apply_directions(w, [(a, 1.0, "a"), (b, -2.0, "b")], layers=3)
    np.testing.assert_array_equal(out[:3], -3.0)
    np.testing.assert_array_equal(out[3:], 0.0)


@pytest.mark.parametrize(("age", "coeff"), [(10, 4.0), (30, 0.0), (50, -4.0), (1, 5.8), (0, 6.0)])
def test_age_to_coeff(age, coeff):
    assert latent.age_to_coeff(age) == pytest.approx(coeff)
    assert latent.coeff_to_age(coeff) == pytest.approx(age)


def test_parse_range():
    np.testing.assert_allclose(latent.parse_range("1:50:19", count=True), np.linspace(1, 50, 19))
    assert len(latent.parse_range("1:50:19", count=True)) == 19
    np.testing.assert_allclose(latent.parse_range("-4:4:0.5", count=False), np.arange(-4, 4.01, 0.5))
    np.testing.assert_allclose(latent.parse_range("4:-4:-2", count=False), [4, 2, 0, -2, -4])
    np.testing.assert_allclose(latent.parse_range("7", count=True), [7.0])
    bad_ranges = [("1:2", True), ("a:b:c", False), ("1:5:0", False), ("1:5:-1", False), ("1:5:2.5", True)]
    for bad, count in bad_ranges:
        with pytest.raises(BabyganError, match="bad range"):
            latent.parse_range(bad, count=count)
