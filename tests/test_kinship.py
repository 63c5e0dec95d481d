"""The family-likeness benchmark's pieces (babygan/kinship.py) on KinFaceW-II itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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


def _family(folder, name, **photos):
    (folder / name).mkdir(parents=True)
    for file_name, target in photos.items():
        path = folder / name / file_name.replace("_", ".")
        if target is None:
            path.write_bytes(b"")
        else:
            path.symlink_to(target)
    return folder / name


def test_family_folders_are_read_by_role_and_faults_named(tmp_path):
    _family(tmp_path, "b", father_jpg=None, Mother_PNG=None, child_jpeg=None, notes_txt=None)
    _family(tmp_path, "a", father_jpg=None, mother_jpg=None, child_jpg=None)
    (tmp_path / "README.txt").write_text("not a family")
    (tmp_path / ".thumbnails").mkdir()
    families = kinship.read_families(tmp_path)
    assert [f.name for f in families] == ["a", "b"]
    assert families[1].mother.name == "Mother.PNG" and families[1].child.name == "child.jpeg"

    _family(tmp_path / "one", "a", father_jpg=None, mother_jpg=None, child_jpg=None)
    with pytest.raises(BabyganError, match=r"1 family folder.*at least two"):
        kinship.read_families(tmp_path / "one")
    _family(tmp_path, "c", father_jpg=None, mother_jpg=None)
    with pytest.raises(BabyganError, match=r"/c: no child photo"):
        kinship.read_families(tmp_path)
    (tmp_path / "c" / "child.png").write_bytes(b"")
    (tmp_path / "c" / "father.png").write_bytes(b"")
    with pytest.raises(BabyganError, match=r"/c: 2 father photos \(father.jpg, father.png\); keep one"):
        kinship.read_families(tmp_path)
    with pytest.raises(BabyganError, match="no such folder"):
        kinship.read_families(tmp_path / "nowhere")


#: a stand-in for the team's second face descriptor: the photo's 8 x 8 grey levels, centred
TINY_DESCRIPTOR = """
import numpy as np
from PIL import Image


def describe(image):
    small = np.asarray(Image.fromarray(image).convert("L").resize((8, 8)), np.float64).ravel()
    return small - small.mean()


def no_face(image):
    return None


def broken(image):
    return np.ones((2, 2))


def grows(image):
    return np.ones(image.shape[0])
"""


def test_a_second_descriptor_is_loaded_checked_and_normalised(tmp_path):
    """``bench_kinship.py --descriptor``'s loader: a function from a file or a module, its
    vectors scaled to unit length, None kept as "no face", and every fault one line."""
    path = tmp_path / "tiny.py"
    path.write_text(TINY_DESCRIPTOR)
    image = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    describe = kinship.SecondDescriptor(f"{path}:describe")
    v = describe(image, "a.jpg")
    assert v.shape == (64,) and np.isclose(np.linalg.norm(v), 1.0) and describe.size == 64
    assert kinship.SecondDescriptor(f"{path}:no_face")(image, "a.jpg") is None
    stacked = describe.stack([v, None])
    assert stacked.shape == (2, 64) and np.isnan(stacked[1]).all() and np.array_equal(stacked[0], v)
    assert kinship.SecondDescriptor("numpy:ravel")(image, "a.jpg").shape == (16 * 16 * 3,)  # a module's
    for spec, says in [
        ("describe", "give MODULE:FUNCTION"),
        (f"{tmp_path / 'nowhere.py'}:describe", "no such file"),
        (f"{path}:absent", "has no function absent"),
        ("no_such_module_here:describe", "could not be imported"),
    ]:
        with pytest.raises(BabyganError, match=says):
            kinship.SecondDescriptor(spec)
    with pytest.raises(BabyganError, match=r"b\.jpg: not a finite, non-zero 1-D vector"):
        kinship.SecondDescriptor(f"{path}:broken")(image, "b.jpg")
    grows = kinship.SecondDescriptor(f"{path}:grows")
    grows(image, "a.jpg")
    with pytest.raises(BabyganError, match=r"c\.jpg: 8 values where the first image gave 16"):
        grows(image[:8], "c.jpg")
    with pytest.raises(
        BabyganError, match=r"d\.jpg: TypeError: Cannot handle"
    ):  # the descriptor's own failure, named
        describe(np.zeros((4, 4, 7), np.uint8), "d.jpg")


@pytest.mark.slow
def test_the_benchmark_scores_whole_families(tmp_path):
    """``bench_kinship.py --families``: the children of real fathers and mothers, ranked among
    the families' children (the team's held-back families are such a folder)."""
    faces = shared_path("faces")
    folder = tmp_path / "families"
    _family(folder, "a", father_jpg=faces / "family_father.jpg", mother_jpg=faces / "family_mother.jpg",
            child_jpg=faces / "family_child.jpg")  # fmt: skip
    _family(folder, "b", father_jpg=faces / "biden.jpg", mother_jpg=faces / "family_mother.jpg",
            child_jpg=faces / "obama.jpg")  # fmt: skip
    _family(folder, "c", father_jpg=faces / "no_face_dogs.jpg", mother_jpg=faces / "family_mother.jpg",
            child_jpg=faces / "tom_cruise.jpg")  # fmt: skip
    out = tmp_path / "families.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_kinship.py"
    (tmp_path / "tiny_descriptor.py").write_text(TINY_DESCRIPTOR)  # the team's second descriptor's place
    args = ["--families", str(folder), "--encoder-iterations", "2", "--aging-steps", "2", "--out", str(out),
            "--descriptor", f"{tmp_path / 'tiny_descriptor.py'}:describe"]  # fmt: skip
    res = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["families"] == 3
    assert list(report["rank"]) == [
        "father's photo", "mother's photo", "encoded father", "encoded mother",
        "blend, no age edit", "child, default age", "child at 5 years",
    ]  # fmt: skip
    assert "no face" in report["failed"]["c"]  # the dogs: one line for that family, the others scored
    for row, score in report["rank"].items():
        assert score["scored"] == 2 and 0.0 <= score["overall"] <= 1.0, row
        assert row in res.stdout
    assert 3.0 < report["read_age"]["child at 5 years"] < report["read_age"]["child, default age"]
    # the same rows by the second descriptor, over the families it scored in every row
    second = report["second_descriptor"]
    assert second["spec"].endswith("tiny_descriptor.py:describe") and "by " + second["spec"] in res.stdout
    assert list(second["rank"]) == list(report["rank"])
    for row, score in second["rank"].items():
        assert score["scored"] == 2 and 0.0 <= score["overall"] <= 1.0, row
    assert second["spread"]["real children"] > 0.0

    res = subprocess.run([sys.executable, str(script), "--families", str(folder / "a")],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert res.returncode != 0
    assert res.stderr.strip().splitlines()[-1].startswith("bench_kinship: ")
    assert "0 family folder(s)" in res.stderr
