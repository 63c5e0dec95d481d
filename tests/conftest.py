"""Shared fixtures. Reference data lives in ../shared beside the checkout and is
never copied into the project: tests that need it skip where the folder is absent, and fail,
naming the file, where the folder is there but a file in it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from babygan.backend import onednn

# The test process runs TensorFlow as babygan's commands do, also where a test module imports
# TensorFlow before babygan starts it: with oneDNN, which TensorFlow reads once, at import.
# Otherwise, on AVX2 CPUs, this process would compute with Eigen and its Ray workers and CLI
# runs with oneDNN, and results compared byte for byte would differ by rounding.
onednn.prefer()

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BABYGAN_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """Path under ../shared. Skips the test only when ../shared itself is absent (a checkout
    without the team's reference data); a file missing from a present ../shared is a failure
    that names it, never a quiet skip."""
    if not SHARED.is_dir():
        pytest.skip(f"reference data folder {SHARED} is absent (it lives in ../shared beside the checkout)")
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"reference data {path} is missing from {SHARED}", pytrace=False)
    return path


@pytest.fixture(autouse=True)
def _isolated_babygan_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own cache dir: nothing touches the user's real cache."""
    home = tmp_path_factory.mktemp("babygan-home")
    monkeypatch.setenv("BABYGAN_HOME", str(home))
    monkeypatch.delenv("BABYGAN_MIRROR", raising=False)
    monkeypatch.delenv("BABYGAN_MODELS_DIR", raising=False)
    monkeypatch.delenv("BABYGAN_MANIFEST", raising=False)
    # the CLI's default precision is "auto" (bf16 on CPUs with AVX512-BF16): tests compare exact
    # fp32 results unless they ask for bf16 themselves (tests/test_precision.py)
    monkeypatch.setenv("BABYGAN_PRECISION", "fp32")
    from babygan import models

    models.use_models_dir(None)
    return home
