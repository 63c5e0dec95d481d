"""`babygan generate` through click's CliRunner, on a tiny generator saved in our npz format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from official_pickle import stack_global_payload, write_official_pickle
from PIL import Image
from tiny_generator import tiny_generator

from babygan.cli import main
from babygan.stylegan import Generator, to_uint8
from babygan.stylegan.sampling import parse_seeds


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator(seed=11)


@pytest.fixture
def model(G: Generator, tmp_path: Path) -> Path:
    return G.save(tmp_path / "tiny.npz")


def _run(*args: str):
    return CliRunner().invoke(main, ["generate", *args])


def test_generate_writes_images_and_latents(G: Generator, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(
        "--model", str(model), "--seeds", "0-3", "--truncation-psi", "0.7", "-o", str(out), "--save-latents"
    )
    assert result.exit_code == 0, result.output
    assert "wrote 4 images" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        f"seed{s:04d}.{ext}" for s in range(4) for ext in ("npy", "png")
    ]
    for s in range(4):
        img = Image.open(out / f"seed{s:04d}.png")
        assert img.mode == "RGB" and img.size == (32, 32)
        w = np.load(out / f"seed{s:04d}.npy")
        assert w.shape == (G.num_layers, G.w_dim) and w.dtype == np.float32
    # seed s -> z = RandomState(s).randn(1, z_dim), as the official scripts
    z = np.random.RandomState(2).randn(1, G.z_dim)
    w2 = G.mapping(z, truncation_psi=0.7, truncation_cutoff=8)
    np.testing.assert_allclose(np.load(out / "seed0002.npy"), w2[0], atol=1e-6)
    expected = to_uint8(G.synthesis(w2))[0]
    got = np.asarray(Image.open(out / "seed0002.png"))
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_generate_seed_list_and_options(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "list"
    result = _run(
        "-m",
        str(model),
        "--seeds",
        "1,5,9",
        "--truncation-psi",
        "1.0",
        "--noise",
        "random",
        "--output-dir",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["seed0001.png", "seed0005.png", "seed0009.png"]
    again = tmp_path / "again"
    assert (
        _run(
            "-m", str(model), "--seeds", "5", "--truncation-psi", "1.0", "--noise", "random", "-o", str(again)
        ).exit_code
        == 0
    )
    # random noise is drawn from each image's own seed: reproducible
    np.testing.assert_array_equal(
        np.asarray(Image.open(out / "seed0005.png")), np.asarray(Image.open(again / "seed0005.png"))
    )


def test_generate_from_official_pickle(G: Generator, tmp_path: Path) -> None:
    pkl = write_official_pickle(tmp_path / "net.pkl", G)
    out = tmp_path / "pkl"
    result = _run("-m", str(pkl), "--seeds", "0-1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.png"))) == 2


@pytest.mark.parametrize("seeds", ["abc", "3-1", "1,,2", "-4", "99999999999"])
def test_bad_seeds(model: Path, tmp_path: Path, seeds: str) -> None:
    result = _run("-m", str(model), "--seeds", seeds, "-o", str(tmp_path / "x"))
    assert result.exit_code == 2
    assert "--seeds" in result.output
    assert not (tmp_path / "x").exists()


def test_wrong_model_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pkl"
    text.write_text("not a model")
    result = _run("-m", str(text), "--seeds", "0", "-o", str(tmp_path / "o1"))
    assert result.exit_code == 1
    assert result.output.strip() == "Error: notes.pkl: not a network pickle (unknown file format)"
    result = _run("-m", str(tmp_path / "missing.pkl"), "--seeds", "0", "-o", str(tmp_path / "o2"))
    assert result.exit_code == 1 and "no such file" in result.output
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(stack_global_payload("os", "system", (f"touch {marker}",)))
    result = _run("-m", str(evil), "--seeds", "0", "-o", str(tmp_path / "o3"))
    assert result.exit_code == 1
    assert "refuses to load: the pickle references os.system" in result.output
    assert not marker.exists()
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def test_parse_seeds() -> None:
    assert parse_seeds("0-7") == list(range(8))
    assert parse_seeds("1,5,9") == [1, 5, 9]
    assert parse_seeds("0-2, 10") == [0, 1, 2, 10]
    with pytest.raises(ValueError, match="not a list of seeds"):
        parse_seeds("")
