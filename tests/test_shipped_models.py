"""dlib's model files are found inside face_recognition_models without importing it: the
package needs pkg_resources, which setuptools 81 removed and Python 3.12+ venvs lack. A user
with such an environment must still align, encode and measure resemblance."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest
from conftest import shared_path

from babygan import shipped_models
from babygan.errors import ModelFileError
from babygan.shipped_models import FACE_DESCRIPTOR, LANDMARKS_5, LANDMARKS_68, shipped_model_file


@pytest.fixture
def no_pkg_resources(monkeypatch):
    """An environment where ``import pkg_resources`` fails, as with setuptools >= 81."""
    monkeypatch.setitem(sys.modules, "pkg_resources", None)
    monkeypatch.delitem(sys.modules, "face_recognition_models", raising=False)
    with pytest.raises(ImportError):
        import face_recognition_models  # noqa: F401


@pytest.mark.parametrize("name", [LANDMARKS_68, LANDMARKS_5, FACE_DESCRIPTOR])
def test_each_file_is_found_without_pkg_resources(no_pkg_resources, name):
    path = shipped_model_file(name)
    assert path.name == name and path.parent.name == "models"
    assert path.stat().st_size > 1_000_000  # the real network, not an empty placeholder


def test_alignment_and_resemblance_work_without_pkg_resources(no_pkg_resources):
    from babygan import align
    from babygan.identity.net import default_model_path
    from babygan.photo import load_photo
    from babygan.resemblance import FaceDescriber

    assert align.default_predictor_path().name == LANDMARKS_68
    assert default_model_path().name == FACE_DESCRIPTOR  # the encoder's identity loss
    descriptor = FaceDescriber().describe(load_photo(shared_path("faces", "obama.jpg")))
    assert descriptor.reason is None and descriptor.vector.shape == (128,)


def test_cli_align_runs_where_pkg_resources_is_missing(tmp_path):
    """The whole command in a fresh process that cannot import pkg_resources."""
    face = shared_path("faces", "obama.jpg")
    code = (
        "import sys; sys.modules['pkg_resources'] = None; from babygan.cli import main; "
        f"main(['align', {str(face)!r}, '-o', {str(tmp_path)!r}, '--size', '64'])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "obama.png").is_file()


def test_missing_package_is_one_line_naming_the_file(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        ModelFileError, match=rf"^{LANDMARKS_68}: the package face_recognition_models is not installed"
    ):
        shipped_model_file(LANDMARKS_68)
    from babygan import align

    with pytest.raises(ModelFileError, match=r"or pass a predictor file with --predictor$") as info:
        align.default_predictor_path()
    assert "\n" not in str(info.value)


def test_missing_file_names_its_path(monkeypatch, tmp_path):
    (tmp_path / "models").mkdir()
    spec = importlib.util.spec_from_loader(shipped_models.PACKAGE, loader=None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec)
    with pytest.raises(ModelFileError) as info:
        shipped_model_file(FACE_DESCRIPTOR)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "models" / FACE_DESCRIPTOR))
    assert "no such file" in message and "\n" not in message
