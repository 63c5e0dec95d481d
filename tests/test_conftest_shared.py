"""tests/conftest.py's shared_path: only an absent ../shared skips; a missing file fails."""

from __future__ import annotations

from pathlib import Path

import conftest
import pytest


def test_absent_shared_folder_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "no-shared-here")
    with pytest.raises(pytest.skip.Exception, match="no-shared-here"):
        conftest.shared_path("faces", "x.jpg")


def test_missing_file_fails_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faces").mkdir()
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    # a skip escaping here would show as a skip, not a failure: catch every outcome and judge it
    with pytest.raises(BaseException) as info:
        conftest.shared_path("faces", "gone.jpg")
    assert isinstance(info.value, pytest.fail.Exception), f"{type(info.value).__name__}: {info.value}"
    assert str(tmp_path / "faces" / "gone.jpg") in str(info.value)


def test_present_file_is_returned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "here.jpg").write_bytes(b"x")
    monkeypatch.setattr(conftest, "SHARED", tmp_path)
    assert conftest.shared_path("faces", "here.jpg") == tmp_path / "faces" / "here.jpg"
