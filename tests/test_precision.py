"""--precision: what auto picks and says, bf16 through the CLI, and the bf16 encoder's fidelity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from babygan import precision
from babygan.errors import BabyganError


def _cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nflags\t\t: fpu sse2 avx2 {flags}\n\nprocessor\t: 1\nflags\t\t: fpu\n")
    return path


def test_cpu_bf16_flags_are_read_from_cpuinfo(tmp_path):
    assert precision.cpu_bf16_flags(_cpuinfo(tmp_path, "avx512f avx512_bf16")) == ["avx512_bf16"]
    assert precision.cpu_bf16_flags(_cpuinfo(tmp_path, "amx_bf16 amx_tile")) == ["amx_bf16"]
    assert precision.cpu_bf16_flags(_cpuinfo(tmp_path, "avx512f")) == []
    assert precision.cpu_bf16_flags(tmp_path / "absent") == []


@pytest.mark.parametrize(
    ("flags", "chosen", "words"),
    [
        ("avx512_bf16", "bf16", "AVX512_BF16"),
        ("amx_bf16", "bf16", "AMX_BF16"),
        ("avx2", "fp32", "no bfloat16"),
    ],
)
def test_auto_follows_the_cpu(monkeypatch, tmp_path, flags, chosen, words):
    from babygan import backend

    monkeypatch.setattr(backend, "gpu_bf16", lambda: None)
    info, read = _cpuinfo(tmp_path, flags), precision.cpu_bf16_flags
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: read(info))
    got, reason = precision.resolve_precision("auto")
    assert got == chosen and words in reason


@pytest.mark.parametrize(("flags", "warned"), [("avx2", True), ("avx512_bf16", False), ("amx_bf16", False)])
def test_bf16_asked_for_where_it_does_not_pay_is_warned_of(monkeypatch, tmp_path, caplog, flags, warned):
    """On a CPU without bfloat16 instructions bf16 is slower than fp32 and less exact (Eigen's
    kernels): an explicit --precision bf16 is kept, with a warning that says so; where the CPU
    has them, nothing is said."""
    import logging

    from babygan import backend
    from babygan.cli import options

    monkeypatch.setattr(backend, "gpu_bf16", lambda: None)
    info, read = _cpuinfo(tmp_path, flags), precision.cpu_bf16_flags
    monkeypatch.setattr(precision, "cpu_bf16_flags", lambda: read(info))
    with caplog.at_level(logging.INFO, logger="babygan"):
        assert options.resolve_precision("bf16") == "bf16"
        assert options.resolve_precision("fp32") == "fp32"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if warned:
        assert warnings == [
            "precision: bf16 (as asked, but the CPU has no bfloat16 instructions: "
            "bf16 runs slower there than fp32, and less exactly)"
        ]
    else:
        assert not caplog.records
    monkeypatch.setattr(backend, "gpu_bf16", lambda: (False, "Tesla T4"))
    assert "Tesla T4 lacks bf16 units" in precision.resolve_precision("bf16")[1]


def test_explicit_and_environment_choices(monkeypatch):
    assert precision.resolve_precision("fp32") == ("fp32", "as asked")
    monkeypatch.setenv("BABYGAN_PRECISION", "bf16")
    assert precision.resolve_precision(None)[0] == "bf16"
    with pytest.raises(BabyganError, match="choose one of fp32, bf16, auto"):
        precision.resolve_precision("fp16")
    monkeypatch.setenv("BABYGAN_PRECISION", "half")
    with pytest.raises(BabyganError, match="'half'"):
        precision.resolve_precision(None)


def test_generate_in_bf16_really_runs_bf16_and_stays_close(tmp_path):
    """The CLI with --precision bf16 renders what fp32 renders, within bf16 rounding, and not
    the very same pixels. An explicit choice is not announced (only what ``auto`` chose is
    logged; test_auto_follows_the_cpu checks those words), so the images are the evidence."""
    from click.testing import CliRunner
    from PIL import Image

    from babygan.cli import main
    from babygan.stylegan import random_generator

    model = random_generator(32, fmap_max=16, seed=2).save(tmp_path / "tiny.npz")
    runner = CliRunner()
    out = {}
    for prec in ("fp32", "bf16"):
        res = runner.invoke(
            main,
            ["generate", "-m", str(model), "--seeds", "0-1", "--precision", prec, "-o", str(tmp_path / prec)],
        )
        assert res.exit_code == 0, res.output
        out[prec] = np.stack([np.asarray(Image.open(tmp_path / prec / f"seed000{i}.png")) for i in (0, 1)])
    diff = np.abs(out["bf16"].astype(int) - out["fp32"].astype(int))
    assert diff.max() > 0  # it really ran in bf16
    assert diff.mean() < 3.0  # grey levels: the same images to the eye


@pytest.mark.slow
def test_bf16_encoder_self_inverts_within_half_a_db_of_fp32():
    """Mean self-inversion PSNR over 8 images and 2 seeds: bf16 ends within 0.5 dB of fp32.

    Per image, a non-convex 100-step descent lands a dB or two apart from the smallest change
    (fp32 with another seed does too), so the comparison is of means, as a user would judge it.
    """
    from babygan.encoder import Encoder, EncoderSettings
    from babygan.stylegan import random_generator, to_uint8

    G = random_generator(resolution=32, fmap_max=16, seed=0)
    w = G.mapping(np.random.RandomState(1).randn(8, G.z_dim).astype(np.float32), truncation_psi=0.5)
    images = to_uint8(G.synthesis(w))
    settings = EncoderSettings(iterations=100, lr=0.05, perceptual="pixel", init="dlatent_avg", batch_size=8)
    psnr = {}
    for prec in ("fp32", "bf16"):
        runs = []
        for seed in (0, 1):
            encoder = Encoder(G, dataclasses.replace(settings, precision=prec, seed=seed))
            result = encoder.encode(images, progress=False)
            mse = np.mean((result.reconstructions.astype(np.float64) - images) ** 2, axis=(1, 2, 3))
            runs.append(10 * np.log10(255.0**2 / mse))
        psnr[prec] = float(np.mean(runs))
    print(f"mean self-inversion PSNR: fp32 {psnr['fp32']:.2f} dB, bf16 {psnr['bf16']:.2f} dB")
    assert psnr["bf16"] > psnr["fp32"] - 0.5, psnr
