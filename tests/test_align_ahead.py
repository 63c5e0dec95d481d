"""babygan.align_ahead: the photos' faces found by a second process, the same as found here.

On real photos from ../shared/faces (skipped without it); each search is a child process of a
second or two.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from babygan import align
from babygan.align_ahead import FaceSearchAhead
from babygan.errors import BabyganError


def _same_faces(a: list[align.Face], b: list[align.Face]) -> bool:
    return len(a) == len(b) and all(
        x.box == y.box and np.array_equal(x.landmarks, y.landmarks) for x, y in zip(a, b, strict=True)
    )


def test_faces_found_ahead_are_the_ones_found_here():
    paths = [shared_path("faces", n) for n in ("obama.jpg", "two_people.jpg", "family_mother.jpg")]
    search = FaceSearchAhead(paths)
    for path in paths:
        ahead = search.faces(path)
        assert ahead is not None, path
        _, here = align.find_faces(path)
        assert _same_faces(ahead, here), path
    assert len(search.faces(paths[1])) == 2
    # so the crop made from them is the crop align_photo makes
    found = align.align_photo(paths[0], 64, crop_scale=0.7, found=search.faces(paths[0]))
    assert np.array_equal(found.image, align.align_photo(paths[0], 64, crop_scale=0.7).image)


def test_a_search_error_comes_back_as_the_same_message(tmp_path):
    dogs = shared_path("faces", "no_face_dogs.jpg")
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo\n")
    search = FaceSearchAhead([dogs, text])
    for path in (dogs, text):
        with pytest.raises(BabyganError) as ahead:
            search.faces(path)
        with pytest.raises(BabyganError) as here:
            align.find_faces(path)
        assert str(ahead.value) == str(here.value)
        assert str(path) in str(ahead.value)


def test_what_the_child_did_not_search_is_searched_here(tmp_path):
    photo = tmp_path / "mother.jpg"
    shutil.copy(shared_path("faces", "family_mother.jpg"), photo)
    other = shared_path("faces", "obama.jpg")
    search = FaceSearchAhead([photo])
    assert search.faces(photo) is not None
    assert search.faces(other) is None  # not asked for
    assert search.faces(photo, upsample=2) is None  # asked for with other settings
    shutil.copy(other, photo)  # the photo changed since it was searched
    assert search.faces(photo) is None


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.parametrize(
    "body",
    ["echo 'Traceback: it broke' >&2; exit 3", "echo 'not an answer'", None],
    ids=["dies", "prints-something-else", "cannot-start"],
)
def test_a_child_that_fails_leaves_the_search_to_this_process(tmp_path, monkeypatch, caplog, body):
    photo = shared_path("faces", "family_mother.jpg")
    python = str(tmp_path / "no-such-python") if body is None else _fake_python(tmp_path, body)
    monkeypatch.setattr(sys, "executable", python)
    with caplog.at_level(logging.DEBUG, logger="babygan"):
        search = FaceSearchAhead([photo])
        assert search.faces(photo) is None
    assert "face search ahead" in caplog.text and "searching here" in caplog.text


def test_close_stops_the_child():
    photo = shared_path("faces", "biden.jpg")  # 2 megapixels: seconds of search
    search = FaceSearchAhead([photo])
    proc = search._proc
    search.close()
    assert proc is not None and proc.poll() is not None
    assert search.faces(photo) is None
    search.close()  # twice is fine


def test_the_child_imports_this_babygan_without_putting_site_packages_first(monkeypatch):
    import site

    from babygan import align_ahead

    here = Path(align_ahead.__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setattr(site, "getsitepackages", lambda: ["/no/such/site"])
    assert align_ahead._child_env()["PYTHONPATH"] == f"{here}{os.pathsep}/elsewhere"  # a checkout: first
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(here)])
    assert align_ahead._child_env()["PYTHONPATH"] == "/elsewhere"  # installed: as it was


def _aligned(name: str, size: int = 128) -> np.ndarray:
    return np.asarray(align.align_photo(shared_path("faces", name), size, crop_scale=0.7).image, np.uint8)


def test_the_child_finds_the_landmarks_and_descriptors_found_here():
    from babygan.encoder.identity_term import find_landmarks
    from babygan.resemblance import FaceDescriber

    photo = shared_path("faces", "obama.jpg")
    search = FaceSearchAhead([photo])
    try:
        here = FaceDescriber()
        mother, father = _aligned("family_mother.jpg"), _aligned("obama.jpg", 64)
        for image in (mother, father):
            assert np.array_equal(search.find_landmarks(image), find_landmarks(image))  # every bit
        assert search.find_landmarks(np.zeros((64, 64, 3), np.uint8)) is None  # no face: None, as here
        search.describe_ahead(mother)  # sent now, collected below
        for image in (mother, father):
            assert np.array_equal(search.describe(image, "mother").vector, here.describe(image).vector)
        assert search._proc is not None and search._proc.poll() is None  # all answered by the child
        # no face: the reason names what the caller called the image
        blank = search.describe(np.zeros((64, 64, 3), np.uint8), "child")
        assert blank.vector is None and blank.reason == "no face detected in the child (64x64 px)"
    finally:
        search.close()


def test_after_the_child_has_gone_the_work_is_done_here(tmp_path, monkeypatch, caplog):
    from babygan.encoder.identity_term import find_landmarks
    from babygan.resemblance import FaceDescriber

    image = _aligned("family_mother.jpg")
    search = FaceSearchAhead([shared_path("faces", "obama.jpg")])
    search.close()
    assert np.array_equal(search.find_landmarks(image), find_landmarks(image))
    assert np.array_equal(search.describe(image, "mother").vector, FaceDescriber().describe(image).vector)
    # one that dies before answering
    monkeypatch.setattr(sys, "executable", _fake_python(tmp_path, "exit 3"))
    with caplog.at_level(logging.DEBUG, logger="babygan"):
        dead = FaceSearchAhead([shared_path("faces", "obama.jpg")])
        assert np.array_equal(dead.find_landmarks(image), find_landmarks(image))
    assert "face search ahead: exit 3" in caplog.text
    dead.close()
