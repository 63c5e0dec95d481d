"""The trainers learn: tiny models, a few dozen steps, in-process under this process's backend.

tests/test_train.py checks the plumbing (files, resumes, exports); these check that training
does what it is for: the parameters move, the discriminator learns to tell the real images
from the generated ones, the autoencoder's reconstructions of a fixed set of faces get much
better, a resumed run continues exactly like an uninterrupted one, and a damaged checkpoint
is a one-line error. tests/test_backends.py runs this file under JAX as well.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from keras import ops

from babygan import backend
from babygan.errors import BabyganError
from babygan.stylegan import image_encoder, network
from babygan.train import discriminator
from babygan.train.autoencoder import AutoencoderTrainer, reconstruction_loss
from babygan.train.checkpoint import flatten
from babygan.train.config import AutoencoderConfig, TrainConfig
from babygan.train.trainer import Trainer

TINY = {"resolution": 16, "fmap_base": 64, "fmap_max": 32, "batch": 4, "mixed_precision": False}
PLAIN = {"augment": "", "xflip": False}  # what the discriminator sees is exactly the batch


def _faces(n: int = 4, size: int = 16) -> np.ndarray:
    """Smooth two-colour images with a disc in each (not noise): uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.35, 0.65, 3)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (r * 0.6) ** 2)[..., None]
        out.append(np.where(disc, rng.integers(0, 256, 3), rng.integers(0, 256, 3)))
    return np.asarray(out, np.uint8)


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x), np.float64)


def _gan(**kw) -> Trainer:
    # R1 on every step: one compiled step variant, not two
    return Trainer(
        TrainConfig(**TINY, latent_size=16, dlatent_size=16, mapping_layers=2, r1_interval=1, **kw)
    )


def _ae(**kw) -> AutoencoderTrainer:
    return AutoencoderTrainer(AutoencoderConfig(**{**TINY, "dlatent_size": 16, **kw}))


@functools.cache
def _compiled_d(gc):
    return backend.jit(lambda params, images: discriminator.discriminator(params, images, gc))


def _margin(d_params, reals_u8: np.ndarray, fakes: np.ndarray, gc) -> float:
    """Mean D(real) - mean D(fake) on fixed batches (float32, no augmentation)."""
    reals = reals_u8.astype(np.float32) / 127.5 - 1.0
    d = _compiled_d(gc)
    return float(_np(d(d_params, reals)).mean() - _np(d(d_params, fakes)).mean())


def _moved(before: dict, after: dict) -> list[str]:
    a, b = flatten(before), flatten(after)
    return [k for k in a if not np.array_equal(a[k], np.asarray(ops.convert_to_numpy(b[k])))]


# ---------------------------------------------------------------------- the GAN trainer


def test_gan_parameters_move() -> None:
    tr = _gan()
    faces = _faces()
    before = {k: flatten(tr.state[k]) for k in ("G", "D", "G_fixed")}
    for _ in range(2):
        tr.train_step(faces)
    for part in ("G", "D"):
        after = flatten(tr.state[part])
        moved = [k for k in before[part] if not np.array_equal(before[part][k], _np(after[k]))]
        # every weight of both networks is trained (biases and noise strengths start at 0
        # and may move too, but every weight must)
        weights = [k for k in before[part] if k.endswith("weight")]
        assert weights and set(weights) <= set(moved), sorted(set(weights) - set(moved))[:5]
    assert not _moved(before["G_fixed"], tr.state["G_fixed"])  # the stored noise stays


def test_gan_discriminator_learns_to_separate_real_from_fake() -> None:
    # the generator barely moves (a tiny lr), so D faces one fixed fake distribution
    tr = _gan(g_lr=1e-9, d_lr=0.005, r1_gamma=0.0, **PLAIN)
    faces = _faces()
    gc = tr.gconfig
    z = np.random.default_rng(7).standard_normal((8, 16)).astype(np.float32)
    mix = np.ones((4, gc.num_layers, 1), np.float32)
    fakes = _np(tr._generate(tr.state["G"] | tr.state["G_fixed"], z, mix, np.uint32(1))).astype(np.float32)
    start = _margin(tr.state["D"], faces, fakes, gc)
    metrics = [_np(tr.train_step(faces)) for _ in range(30)]
    end = _margin(tr.state["D"], faces, fakes, gc)
    assert end > start + 2.0, (start, end)
    d_loss = [m[0] for m in metrics]
    assert np.mean(d_loss[-5:]) < 0.5 * np.mean(d_loss[:5]), d_loss


def test_gan_truncated_checkpoint_part_is_one_line_error(tmp_path: Path) -> None:
    tr = _gan()
    tr.save(tmp_path / "ck")
    _truncate_a_part(tmp_path / "ck")
    with pytest.raises(BabyganError, match=r"state-\d+-\d+\.npz: unreadable checkpoint part") as info:
        Trainer.resume(tmp_path / "ck")
    assert "\n" not in str(info.value)


def _truncate_a_part(folder: Path) -> None:
    part = sorted(folder.glob("state-*.npz"))[0]
    data = part.read_bytes()
    part.write_bytes(data[: len(data) // 2])


# ---------------------------------------------------------------------- the autoencoder recipe


@functools.cache
def _compiled_recon(gc, msssim_weight: float):
    def run(params, x):
        recon = network.synthesis(params, image_encoder.encode(params, x, gc), gc)
        return recon, reconstruction_loss(recon, x, msssim_weight)[0]

    return backend.jit(run)


def _reconstruct(tr: AutoencoderTrainer, faces: np.ndarray) -> tuple[np.ndarray, float]:
    """E and G as trained (not the EMA), float32: (reconstructions of ``faces``, their mean loss)."""
    params = {**tr.state["E"], **tr.state["G"], **tr.state["G_fixed"]}
    x = faces.astype(np.float32) / 127.5 - 1.0
    recon, loss = _compiled_recon(tr.gconfig, tr.config.msssim_weight)(params, x)
    return _np(recon).astype(np.float32), float(_np(loss).mean())


def test_autoencoder_parameters_move_and_reconstructions_improve() -> None:
    tr = _ae(lr=0.005, **PLAIN)
    faces = _faces()
    before = {k: flatten(tr.state[k]) for k in ("E", "G", "D")}
    _, start = _reconstruct(tr, faces)
    for _ in range(40):
        tr.train_step(faces)
    _, end = _reconstruct(tr, faces)
    assert end < 0.5 * start, (start, end)
    for part in ("E", "G"):
        weights = [k for k in before[part] if k.endswith("weight")]
        moved = _moved({k: before[part][k] for k in weights}, tr.state[part])
        assert weights and set(moved) == set(weights)
    assert not _moved(before["D"], tr.state["D"])  # stage 1: D is not trained yet


def test_autoencoder_adversarial_stage_trains_the_discriminator() -> None:
    # stage 2 from the second step; E and G held still (lr 0) so D faces fixed reconstructions
    tr = _ae(lr=0.0, d_lr=0.005, ae_kimg=0.001, total_kimg=1.0, r1_gamma=0.0, **PLAIN)
    faces = _faces()
    tr.train_step(faces)
    assert tr.adversarial
    recon, _ = _reconstruct(tr, faces)
    start = _margin(tr.state["D"], faces, recon, tr.gconfig)
    for _ in range(30):
        tr.train_step(faces)
    end = _margin(tr.state["D"], faces, recon, tr.gconfig)
    assert end > start + 2.0, (start, end)


def test_autoencoder_resume_continues_exactly(tmp_path: Path) -> None:
    faces = _faces()
    # stage 1 for 3 steps, then stage 2 (with R1, and augmentation): the resume crosses both
    kw = {"ae_kimg": 0.012, "total_kimg": 1.0, "r1_interval": 1, "augment": "color,translation,cutout"}
    whole = _ae(**kw)
    for _ in range(6):
        whole.train_step(faces)
    first = _ae(**kw)
    first._steps = whole._steps  # it only writes the checkpoint; the resumed run compiles its own
    for _ in range(2):
        first.train_step(faces)
    first.save(tmp_path / "ck")
    resumed = AutoencoderTrainer.resume(tmp_path / "ck")
    assert (resumed.step, resumed.nimg) == (2, 8)
    for _ in range(4):
        resumed.train_step(faces)
    a, b = flatten(whole.state), flatten(resumed.state)
    assert set(a) == set(b)
    differ = [k for k in a if not np.array_equal(_np(a[k]), _np(b[k]))]
    assert not differ, differ[:5]
    assert _moved(first.state["D"], whole.state["D"])  # stage 2 happened after the save


def test_autoencoder_truncated_checkpoint_part_is_one_line_error(tmp_path: Path) -> None:
    tr = _ae()
    tr.save(tmp_path / "ck")
    _truncate_a_part(tmp_path / "ck")
    with pytest.raises(BabyganError, match=r"state-\d+-\d+\.npz: unreadable checkpoint part") as info:
        AutoencoderTrainer.resume(tmp_path / "ck")
    assert "\n" not in str(info.value)
