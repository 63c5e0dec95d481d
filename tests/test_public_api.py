"""The public Python API (babygan/__init__.py): its names exist, stay light, and README's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import REPO
from pipeline_fixtures import make_photos, make_tiny_model

import babygan
from babygan.encoder.settings import EncoderSettings


def test_every_public_name_exists():
    for name in babygan.__all__:
        assert getattr(babygan, name) is not None, name
    assert babygan.Session is __import__("babygan.session", fromlist=["Session"]).Session
    assert set(babygan.__all__) <= set(dir(babygan))


def test_import_babygan_loads_no_network_library():
    heavy = "{'keras', 'tensorflow', 'dlib', 'babygan.session'}"
    code = f"import babygan, sys; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_readme_example_runs_on_a_tiny_model(tmp_path: Path, monkeypatch):
    """README.md's "Use it from Python" lines, run as written on a tiny model and two photos."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Use it from Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    model, directions = make_tiny_model(tmp_path)
    dad, mum = make_photos(tmp_path)
    tiny = babygan.Session(
        model,
        directions_dir=directions,
        encoder=EncoderSettings(perceptual="pixel", iterations=2),
        progress=False,
    )
    monkeypatch.chdir(tmp_path)
    code = code.replace('babygan.Session("builtin")', "tiny").replace('"dad.jpg"', repr(str(dad)))
    code = code.replace('"mum.jpg"', repr(str(mum)))
    scope: dict = {"tiny": tiny}
    exec(compile(code, "README.md", "exec"), scope)
    assert (tmp_path / "out" / "child.png").is_file() and (tmp_path / "out" / "child.json").is_file()
    child = scope["result"].children[0]
    assert child.image.dtype == np.uint8 and child.estimate is not None
