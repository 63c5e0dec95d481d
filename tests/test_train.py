"""babygan.train: the StyleGAN-from-scratch recipe (`--recipe gan`) of the trainer.

The training run itself goes through ``scripts/train_builtin.py`` under JAX on the CPU, in
subprocesses (this process runs TensorFlow's Keras): a tiny model trains a few steps, saves,
resumes where it stopped and exports. The pieces (augmentation, discriminator, checkpoint
files, data, settings) are checked here in-process, under whichever backend this process has.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from babygan.errors import BabyganError
from babygan.train import TrainConfig, load_images, pack
from babygan.train import checkpoint as ckpt

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "train_builtin.py"
TINY = ["--recipe", "gan", "--resolution", "16", "--batch", "4", "--fmap-base", "64", "--fmap-max", "16"]
TINY += ["--latent", "16", "--mapping-layers", "2", "--report-seconds", "0"]


def _script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=300
    )


def _tiny_faces(n: int = 24, size: int = 16) -> np.ndarray:
    """Smooth colour blobs (not pure noise), uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.3, 0.7, 3)
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < (r * 0.5) ** 2)[..., None]
        out.append(np.where(blob, rng.integers(0, 256, 3), rng.integers(0, 256, 3)))
    return np.asarray(out, np.uint8)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Two chunks of one tiny run: 3 steps, then resumed to 40 images (10 steps) and exported."""
    d = tmp_path_factory.mktemp("train")
    faces = d / "faces.npy"
    np.save(faces, _tiny_faces())
    env = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "BABYGAN_HOME": str(d / "home"),
        "JAX_COMPILATION_CACHE_DIR": str(d / "jax-cache"),  # the second chunk compiles nothing
        "PYTHONUNBUFFERED": "1",
    }
    out = d / "run"
    first = _script([str(faces), "--out", str(out), *TINY, "--kimg", "0.04", "--max-steps", "3"], env)
    assert first.returncode == 0, first.stderr[-3000:]
    meta_first = json.loads((out / "checkpoint" / "meta.json").read_text())
    gen = d / "gen.npz"
    second = _script([str(faces), "--out", str(out), *TINY, "--kimg", "0.04", "--export", str(gen)], env)
    assert second.returncode == 0, second.stderr[-3000:]
    return SimpleNamespace(dir=d, out=out, first=first, second=second, meta_first=meta_first, gen=gen)


@pytest.mark.slow
def test_training_steps_have_finite_losses(run: SimpleNamespace) -> None:
    records = [json.loads(line) for line in (run.out / "log.jsonl").read_text().splitlines()]
    assert records, run.first.stdout
    for rec in records:
        for key in ("d_loss", "g_loss", "real", "fake", "images_per_s"):
            assert np.isfinite(rec[key]), rec
    assert any(np.isfinite(rec["r1"]) for rec in records)  # step 0 has R1
    assert "img/s" in run.first.stdout and "compiled the training steps" in run.first.stdout
    assert (run.out / "samples.png").is_file()


@pytest.mark.slow
def test_checkpoint_resumes_at_the_same_step(run: SimpleNamespace) -> None:
    assert run.meta_first["step"] == 3 and run.meta_first["nimg"] == 12
    assert "resumed" in run.second.stdout and "(step 3)" in run.second.stdout
    meta = json.loads((run.out / "checkpoint" / "meta.json").read_text())
    assert meta["step"] == 10 and meta["nimg"] == 40
    state, meta2 = ckpt.load_checkpoint(run.out / "checkpoint")
    assert meta2["config"]["resolution"] == 16
    assert float(state["G_opt"]["t"]) == 10.0
    assert all(v.dtype == np.float16 for v in state["D_opt"]["v_log2"].values())  # Adam's v, stored small
    assert not list((run.out / "checkpoint").glob("state-00000003-*"))  # old parts removed


@pytest.mark.slow
def test_export_loads_and_renders(run: SimpleNamespace) -> None:
    from babygan.stylegan import load_generator

    G = load_generator(run.gen)
    assert (G.resolution, G.z_dim, G.num_layers) == (16, 16, 6)
    images = G.run(np.random.default_rng(1).standard_normal((2, 16)))
    assert images.shape == (2, 16, 16, 3) and np.all(np.isfinite(images))
    card = run.gen.with_suffix(".md").read_text()
    assert "non-commercial" in card and "10 steps of batch 4" in card
    # the file says how parents must be cropped for it (babygan aligns them so)
    from babygan.utkface import CROP

    assert G.info["crop"] == CROP and "UTKFace" in G.info["licence"]


def test_script_bad_data_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "faces.npy"
    np.save(bad, np.zeros((2, 16, 16), np.uint8))
    res = _script([str(bad), "--out", str(tmp_path / "run"), *TINY], {**os.environ, "KERAS_BACKEND": "jax"})
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "faces.npy" in res.stderr


# ---------------------------------------------------------------------- pieces, in-process


def test_config_checks_and_defaults() -> None:
    c = TrainConfig(resolution=64, batch=64)
    assert c.gamma == pytest.approx(0.0002 * 64 * 64 / 64)
    assert c.policy == ("color", "translation", "cutout")
    assert TrainConfig.from_dict(c.to_dict()) == c
    for bad in ({"batch": 3}, {"augment": "rotate"}, {"resolution": 48}, {"g_lr": 0}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)  # type: ignore[arg-type]


def test_host_inputs_depend_on_seed_and_step_only() -> None:
    from babygan.train.trainer import Trainer

    config = TrainConfig(resolution=16, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16, batch=4)
    faces = _tiny_faces()
    a, b = Trainer(config), Trainer(config)
    a.step = b.step = 7
    for x, y in zip(a._host_inputs(faces), b._host_inputs(faces), strict=True):
        if isinstance(x, dict):
            assert all(np.array_equal(x[k], y[k]) for k in x)
        else:
            assert np.array_equal(x, y)
    b.step = 8
    assert not np.array_equal(a._host_inputs(faces)[1], b._host_inputs(faces)[1])
    mix = a._host_inputs(faces)[2]  # (B, L, 1): ones, then (if mixed) zeros
    assert mix.shape == (4, 6, 1) and np.all(mix[:, 0] == 1) and np.all(np.diff(mix[..., 0], axis=1) <= 0)


def test_augment_translation_cutout_and_colour() -> None:
    from keras import ops

    from babygan.train import augment

    x = np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)).astype(np.float32)
    shifted = np.asarray(
        ops.convert_to_numpy(augment.augment(x, {"shift": np.array([[1, -2], [0, 0]], np.int32)}))
    )
    assert np.allclose(shifted[0, 1:, :-2], x[0, :-1, 2:]) and np.all(shifted[0, 0] == 0)
    assert np.all(shifted[0, :, -2:] == 0) and np.allclose(shifted[1], x[1])
    cut = np.asarray(
        ops.convert_to_numpy(augment.augment(x, {"cutout": np.array([[4, 4], [0, 0]], np.int32)}))
    )
    assert np.all(cut[0, 3:6, 3:6] == 0) and np.allclose(cut[0, 0], x[0, 0])
    assert np.all(cut[1, :2, :2] == 0) and np.allclose(cut[1, 4:], x[1, 4:])
    params = augment.draw_params(np.random.default_rng(0), 2, 8, ("color",))
    params.update(brightness=np.zeros((2, 1, 1, 1), np.float32), saturation=np.ones((2, 1, 1, 1), np.float32))
    params["contrast"] = np.ones((2, 1, 1, 1), np.float32)
    same = np.asarray(ops.convert_to_numpy(augment.augment(x, params)))
    assert np.allclose(same, x, atol=1e-6)
    assert augment.draw_params(np.random.default_rng(0), 2, 8, ()) == {}


def test_hash_normal_is_standard_normal_and_deterministic() -> None:
    from keras import ops

    from babygan.train.augment import hash_normal

    def draw(seed: int, stream: int) -> np.ndarray:
        return np.asarray(ops.convert_to_numpy(hash_normal((64, 33), np.uint32(seed), stream)))

    a = draw(5, 0)
    assert a.shape == (64, 33) and a.dtype == np.float32
    assert abs(a.mean()) < 0.1 and abs(a.std() - 1) < 0.1
    assert np.array_equal(a, draw(5, 0))
    assert abs(np.corrcoef(a.ravel(), draw(5, 1).ravel())[0, 1]) < 0.1
    assert abs(np.corrcoef(a.ravel(), draw(6, 0).ravel())[0, 1]) < 0.1


def test_discriminator_shapes_and_minibatch_stddev() -> None:
    from keras import ops

    from babygan.stylegan.config import GeneratorConfig
    from babygan.train import discriminator as D

    gc = GeneratorConfig(resolution=16, fmap_base=64, fmap_max=16, latent_size=16, dlatent_size=16)
    params = D.init_params(gc, seed=1)
    assert {k: v.shape for k, v in params.items()} == D.param_shapes(gc)
    x = np.random.default_rng(0).uniform(-1, 1, (4, 16, 16, 3)).astype(np.float32)
    logits = np.asarray(ops.convert_to_numpy(D.discriminator(params, x, gc)))
    assert logits.shape == (4,) and np.all(np.isfinite(logits)) and np.all(np.abs(logits) < 20)
    # the stddev feature makes one image's score depend on the others in its group
    y = x.copy()
    y[1] = 0
    other = np.asarray(ops.convert_to_numpy(D.discriminator(params, y, gc)))
    assert not np.isclose(other[0], logits[0])


def test_checkpoint_parts_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ckpt, "PART_BYTES", 1000)
    state = {
        "G": {"a": np.arange(300, dtype=np.float32), "b": np.ones((2, 3), np.float32)},
        "t": np.float32(3),
    }
    ckpt.save_checkpoint(tmp_path / "c", state, {"step": 5})
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    assert len(meta["parts"]) == 2
    back, meta = ckpt.load_checkpoint(tmp_path / "c")
    assert meta["step"] == 5 and np.array_equal(back["G"]["a"], state["G"]["a"]) and float(back["t"]) == 3
    ckpt.save_checkpoint(tmp_path / "c", state, {"step": 6})
    assert sorted(p.name[:14] for p in (tmp_path / "c").glob("state-*")) == ["state-00000006"] * 2
    with pytest.raises(BabyganError, match=r"meta\.json"):
        ckpt.load_checkpoint(tmp_path / "nothing")


def test_pack_and_load_images(tmp_path: Path) -> None:
    faces = _tiny_faces(5, 32)
    path = pack(tmp_path / "faces.npz", faces)
    back = load_images(path, 32)
    assert back.shape == faces.shape and np.abs(back.astype(int) - faces).mean() < 4  # JPEG q95
    assert load_images(path, 16).shape == (5, 16, 16, 3)
    np.save(tmp_path / "a.npy", faces)
    assert np.array_equal(load_images(tmp_path / "a.npy", 32), faces)
    with pytest.raises(BabyganError, match=r"b\.npy"):
        np.save(tmp_path / "b.npy", faces.astype(np.float32))
        load_images(tmp_path / "b.npy", 32)
    with pytest.raises(BabyganError, match="missing"):
        load_images(tmp_path / "missing", 32)
