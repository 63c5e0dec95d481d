""".ci/run's exit code: a green CI must mean the tests ran and passed.

The script removes `.venv` relative to its own repository root, so every run here is of a copy
in a temporary directory, beside a fake README and a fake `.ci/install-browser`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run_copy(tmp_path: Path, test_command: str) -> subprocess.CompletedProcess[str]:
    root = tmp_path / "repo"
    (root / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", root / ".ci" / "run")
    (root / ".ci" / "install-browser").write_text("#!/bin/sh\nexit 0\n")
    (root / ".venv").mkdir()  # the copy's own: the script removes it, nothing else
    (root / "README.md").write_text(f"# fake\n\n<!-- test-command -->\n```\n{test_command}\n```\n")
    return subprocess.run(["bash", str(root / ".ci" / "run")], capture_output=True, text=True, timeout=60)


def test_no_tests_collected_is_a_failure(tmp_path: Path) -> None:
    res = _run_copy(tmp_path, "echo 'no tests ran in 0.01s'; exit 5")
    assert res.returncode == 5, res.stdout + res.stderr
    assert "collected no tests" in res.stderr


def test_passing_tests_give_zero(tmp_path: Path) -> None:
    res = _run_copy(tmp_path, "echo '3 passed in 0.02s'; exit 0")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed" in res.stdout
    assert not (tmp_path / "repo" / ".venv").exists()  # it did run, in the copy


@pytest.mark.parametrize("code", [1, 2])
def test_failures_keep_their_code(tmp_path: Path, code: int) -> None:
    res = _run_copy(tmp_path, f"echo '1 failed'; exit {code}")
    assert res.returncode == code, res.stdout + res.stderr


def test_readme_without_command_fails(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    res = _run_copy(tmp_path, "true")
    assert res.returncode == 0
    (root / "README.md").write_text("# no command here\n")
    res = subprocess.run(["bash", str(root / ".ci" / "run")], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "no test command" in res.stderr
