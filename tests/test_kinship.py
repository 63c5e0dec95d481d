"""The family-likeness benchmark's pieces (babygan/kinship.py) on KinFaceW-II itself."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from babygan import kinship
from babygan.errors import BabyganError


def test_ranks_count_the_other_children_farther_than_the_true_one():
    children = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [np.nan, np.nan]])
    faces = np.array([[0.1, 0.0], [2.0, 0.0], [2.9, 0.0], [0.0, 0.0]])
    r = kinship.ranks(faces, children)
    assert r[0] == pytest.approx(1.0)  # its own child nearest: both others (the NaN one left out) farther
    assert r[1] == pytest.approx(0.5)  # 1.0 from its child; 2.0 and 1.0 from the others: one farther
    assert r[2] == pytest.approx(1.0)
    assert np.isnan(r[3])  # no descriptor for its child


def test_spread_is_the_mean_pairwise_distance():
    assert kinship.spread(np.array([[0.0, 0.0], [3.0, 4.0], [np.nan, 1.0]])) == pytest.approx(5.0)
    assert kinship.spread(np.zeros((5, 3))) == 0.0  # one face for everyone: a collapse


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return kinship.extract(shared_path("datasets", "kinfacew2.tar"), tmp_path_factory.mktemp("kin"))


def test_pairs_and_spouses_of_the_other_sex(images):
    pairs = kinship.read_pairs(images, per_relation=10)
    assert len(pairs) == 40 and {p.relation for p in pairs} == set(kinship.RELATIONS)
    assert all(p.parent.name.endswith("_1.jpg") and p.child.name.endswith("_2.jpg") for p in pairs)
    spouses = kinship.spouses(pairs, seed=0)
    role = {p.parent: p.parent_role for p in pairs}
    for pair, spouse in zip(pairs, spouses, strict=True):
        assert role[spouse] != pair.parent_role
    assert spouses == kinship.spouses(pairs, seed=0)  # fixed by the seed
    assert spouses != kinship.spouses(pairs, seed=1)
    # the pairing that leaves the stranger out: each parent with itself
    assert kinship.spouses(pairs, pairing="self") == [p.parent for p in pairs]
    with pytest.raises(BabyganError, match="pairing 'cousin'"):
        kinship.spouses(pairs, pairing="cousin")
    assert len(kinship.read_pairs(images)) == 1000


def test_a_missing_archive_is_one_line(tmp_path):
    with pytest.raises(BabyganError, match="no such file"):
        kinship.extract(tmp_path / "kin.tar", tmp_path / "out")
