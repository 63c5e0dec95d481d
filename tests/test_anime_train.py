"""Tuning an anime model (babygan.train.anime): what a user would notice, on tiny models.

A tiny 32 px base (8 layers, linear mapping, with E) is tuned a few steps on smooth colour
blobs, float32: only the layers from swap_layer on move (the coarse layers, the mapping and the
stored noise stay the base's, bit for bit); the exported file loads for its base and is refused
for another in one line; a run stopped and resumed ends where an uninterrupted one does; bad
inputs are one-line errors. Also the anime-face reader's crop and split, the judge's measures
(the same layout measure as the trainer's), and scripts/eval_anime.py on the tiny models.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, shared_path
from keras import ops
from PIL import Image

from babygan.anime import judge
from babygan.anime.model import load_anime_model
from babygan.anime.stylize import OWN_PSI
from babygan.errors import BabyganError, ModelFileError
from babygan.train.anime import AnimeConfig, AnimeTrainer, structure_maps, trained_names
from babygan.train.anime_data import AnimeCrop, load_anime_faces
from babygan.train.anime_layers import mix_styles, style_gap
from babygan.train.checkpoint import flatten
from babygan.utkface import CROP, holdout_score

SMALL = {"batch": 4, "mixed_precision": False, "r1_interval": 2, "total_kimg": 1.0}


def _base(seed: int = 0, sha: str | None = None):
    """A tiny base like the built-in model: linear z -> W+ mapping, its own E; 32 px, 8 layers."""
    from tiny_generator import tiny_generator

    from babygan.stylegan import Generator

    g = tiny_generator(seed=seed, mapping_kind="linear", image_encoder=True)
    params = dict(g.params)
    z = np.random.default_rng(seed).standard_normal((256, g.z_dim), dtype=np.float32)
    params["dlatent_avg"] = g.mapping(z).mean(axis=0)  # (L, w_dim), as a linear mapping's
    info = {"name": "tiny", "crop": CROP}  # the built-in model's crop
    return Generator(g.config, params, source_sha256=sha or f"tiny-base-{seed}", info=info)


def _blobs(n: int = 16, size: int = 32) -> np.ndarray:
    """Smooth two-colour images with a disc in each: uint8 (n, size, size, 3)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = []
    for _ in range(n):
        cy, cx, r = rng.uniform(0.35, 0.65, 3)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (r * 0.6) ** 2)[..., None]
        out.append(np.where(disc, rng.integers(0, 256, 3), rng.integers(0, 256, 3)))
    return np.asarray(out, np.uint8)


def _np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


@pytest.fixture(scope="module")
def base():
    return _base()


@pytest.fixture(scope="module")
def tuned(base):
    """A run of 4 steps (R1 on steps 0 and 2), its compiled steps shared with the other tests."""
    trainer = AnimeTrainer.start(base, AnimeConfig(**SMALL))
    faces = _blobs()
    metrics = [_np(trainer.train_step(faces)) for _ in range(4)]
    return trainer, faces, metrics


def test_a_few_steps_change_only_the_layers_from_swap_layer(base, tuned):
    trainer, _, metrics = tuned
    assert trainer.config.swap_layer == 4  # the first layer at 16 px of a 32 px model
    # D, G, structure, style, real, fake
    assert all(np.isfinite(m[[0, 1, 2, 3, 5, 6]]).all() for m in metrics)
    assert np.isfinite(metrics[0][4]) and np.isnan(metrics[1][4])  # lazy R1: every 2nd step
    assert all(0.0 <= m[3] <= 1.0 for m in metrics)  # the style gap
    tuned_names = set(trained_names(trainer.gconfig, 4))
    assert "synthesis.layer4.conv.weight" in tuned_names and "synthesis.torgb.weight" in tuned_names
    assert not any(n.endswith(".noise") or "layer3." in n for n in tuned_names)
    # the noise strengths stay the base's unless asked for (tuned, they grew into noise textures)
    assert not any(n.endswith(".noise_strength") for n in tuned_names)
    with_noise = set(trained_names(trainer.gconfig, 4, tune_noise=True))
    assert with_noise - tuned_names == {f"synthesis.layer{i}.noise_strength" for i in range(4, 8)}
    params = trainer.anime_params()
    assert set(params) == {n for n in base.params if not n.startswith("encoder.")}
    frozen = [n for n in params if n not in tuned_names]
    assert "mapping.linear.weight" in frozen and "synthesis.layer3.style.weight" in frozen
    assert [n for n in frozen if not np.array_equal(params[n], base.params[n])] == []
    moved = [n for n in tuned_names if not np.array_equal(params[n], base.params[n])]
    assert set(moved) >= {f"synthesis.layer{i}.conv.weight" for i in range(4, 8)} | {"synthesis.torgb.weight"}
    # the anime model draws the base's codes differently from the base, in the same frame
    codes = trainer.sample_codes(4)
    drawn, anime = trainer.render(codes, trainer.base_params()), trainer.render(codes, params)
    assert drawn.shape == anime.shape == (4, 32, 32, 3) and drawn.dtype == np.uint8
    assert not np.array_equal(drawn, anime)


def test_the_export_loads_for_its_base_and_is_refused_for_another(base, tuned, tmp_path):
    trainer, _, _ = tuned
    path = trainer.export(tmp_path / "anime.npz", base, info={"note": "test"})
    anime = load_anime_model(path, base)
    assert anime.swap_layer == 4 and anime.base_sha256 == base.source_sha256
    assert anime.info["training"]["settings"]["swap_layer"] == 4 and anime.info["note"] == "test"
    assert not anime.generator.has_encoder
    # stored as float16: the frozen layers are the base's, rounded so
    for name in ("mapping.linear.weight", "synthesis.layer0.style.weight", "synthesis.const"):
        assert np.array_equal(
            anime.generator.params[name], base.params[name].astype(np.float16).astype(np.float32)
        )
    other = _base(seed=1)
    with pytest.raises(ModelFileError, match="tuned from another model") as err:
        load_anime_model(path, other)
    assert "\n" not in str(err.value)
    with pytest.raises(BabyganError, match="tunes another model") as err:
        trainer.export(tmp_path / "other.npz", other)
    assert "\n" not in str(err.value) and not (tmp_path / "other.npz").exists()


def test_a_stopped_and_resumed_run_ends_as_an_uninterrupted_one(base, tuned, tmp_path):
    whole, faces, _ = tuned  # 4 steps
    first = AnimeTrainer.start(base, AnimeConfig(**SMALL))
    first._steps = whole._steps  # the same compiled (pure) steps: only the state differs
    for _ in range(2):
        first.train_step(faces)
    first.save(tmp_path / "ck")
    resumed = AnimeTrainer.resume(tmp_path / "ck", base=base)
    assert (resumed.step, resumed.nimg, resumed.config) == (2, 8, first.config)
    resumed._steps = whole._steps
    for _ in range(2):
        resumed.train_step(faces)
    a, b = flatten(_to_np(whole.state)), flatten(_to_np(resumed.state))
    assert set(a) == set(b)
    assert [k for k in a if not np.array_equal(a[k], b[k])] == []
    # another base, or a checkpoint of another recipe, is refused in one line
    with pytest.raises(BabyganError, match="tunes another model"):
        AnimeTrainer.resume(tmp_path / "ck", base=_base(seed=1))
    assert AnimeTrainer.resume(tmp_path / "ck", total_kimg=2.0).config.total_kimg == 2.0


def test_lower_rates_on_a_resume_are_used_and_recorded(base, tuned, tmp_path):
    whole, faces, _ = tuned
    whole.save(tmp_path / "ck")  # after 4 steps, 16 images
    slow = AnimeTrainer.resume(tmp_path / "ck", base=base)
    rates = (AnimeConfig().g_lr / 100, AnimeConfig().d_lr / 100)
    slow.change_rates(*rates)
    assert slow.config.rate_changes == ((0.016, *rates),)
    fast = AnimeTrainer.resume(tmp_path / "ck", base=base)
    before = _to_np(fast.state["G"])["synthesis.layer4.conv.weight"]
    slow.train_step(faces)
    fast.train_step(faces)
    moved = {
        name: np.abs(_to_np(t.state["G"])["synthesis.layer4.conv.weight"] - before).max()
        for name, t in (("slow", slow), ("fast", fast))
    }
    assert 0 < moved["slow"] < moved["fast"] / 10  # Adam's step is the rate: a hundredth of it
    slow.save(tmp_path / "ck2")  # the change survives a save, and a resumed config compares equal
    again = AnimeTrainer.resume(tmp_path / "ck2", base=base)
    assert again.config == slow.config and (again.config.g_lr, again.config.d_lr) == rates
    with pytest.raises(BabyganError, match="g_lr must be > 0") as err:  # one line, run unchanged
        again.change_rates(g_lr=-1.0)
    assert "\n" not in str(err.value) and again.config == slow.config


def _to_np(tree):
    return {k: _to_np(v) for k, v in tree.items()} if isinstance(tree, dict) else _np(tree)


def test_bad_inputs_are_one_line_errors(base, tuned, tmp_path):
    trainer, _, _ = tuned
    for swap in (8, 9):
        with pytest.raises(BabyganError, match=r"swap_layer must be an integer in 1\.\.7") as err:
            AnimeTrainer.start(base, AnimeConfig(**{**SMALL, "swap_layer": swap}))
        assert "\n" not in str(err.value)
    with pytest.raises(BabyganError, match=r"uint8 \(N, 32, 32, 3\)"):
        trainer.train(np.zeros((4, 64, 64, 3), np.uint8))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w") as tar:
        data = b"no faces here"
        info = tarfile.TarInfo("anime/readme.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(BabyganError, match="no images") as err:
        load_anime_faces(empty, 32)
    assert str(err.value).startswith(str(empty)) and "\n" not in str(err.value)
    (tmp_path / "not.tar").write_text("hello")
    with pytest.raises(BabyganError, match="not a readable tar"):
        load_anime_faces(tmp_path / "not.tar", 32)
    with pytest.raises(BabyganError, match="no such file"):
        load_anime_faces(tmp_path / "missing.tar", 32)
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck" / "meta.json").write_text("{}")
    with pytest.raises(BabyganError, match="not a babygan training checkpoint"):
        AnimeTrainer.resume(tmp_path / "ck")


def _anime_tar(path: Path, n: int, size: int = 96) -> list[str]:
    """A tar of n JPEGs whose grey level rises from the top row (0) to the bottom (255)."""
    ramp = np.repeat(np.linspace(0, 255, size)[:, None], size, axis=1)
    image = np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    names = [f"anime96/{i}.jpg" for i in range(n)]
    with tarfile.open(path, "w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    return names


def test_anime_faces_are_cut_where_the_photo_faces_sit_and_split_by_name(tmp_path):
    assert AnimeCrop().box() == pytest.approx((0.125, 0.045, 0.875, 0.795))
    assert AnimeCrop(side=0.9, centre_y=0.42).box()[1] == 0.0  # moved inside, not shrunk
    names = _anime_tar(tmp_path / "a.tar", 300)
    train = load_anime_faces(tmp_path / "a.tar", 32)
    held = load_anime_faces(tmp_path / "a.tar", 32, split="holdout")
    expected = sum(holdout_score(n) < 0.02 for n in names)
    assert expected > 0 and (len(train), len(held)) == (300 - expected, expected)
    assert train.shape[1:] == (32, 32, 3) and train.dtype == np.uint8
    column = train[0, :, 16, 0].astype(float)
    assert column[0] == pytest.approx(0.045 * 255, abs=8) and column[-1] == pytest.approx(0.795 * 255, abs=8)


def test_fakes_come_in_pairs_of_one_face_in_two_styles_and_the_gap_measures_collapse():
    w = np.random.default_rng(0).standard_normal((4, 8, 5)).astype(np.float32)
    mixed = _np(mix_styles(ops.convert_to_tensor(w), 3))
    np.testing.assert_array_equal(mixed[:2], w[:2])  # the faces as they are
    np.testing.assert_array_equal(mixed[2:, :3], w[:2, :3])  # the same faces' coarse layers ...
    np.testing.assert_array_equal(mixed[2:, 3:], w[2:, 3:])  # ... in the other codes' styles
    photos = np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 3)).astype(np.float32)
    collapsed = np.concatenate([photos[:2], photos[:2]])  # each face's two takes one image

    def gap(fakes):
        return float(_np(style_gap(ops.convert_to_tensor(fakes), ops.convert_to_tensor(photos))))

    assert gap(photos) == pytest.approx(0.0, abs=0.005)  # apart as much as the base's (up to its eps)
    assert gap(collapsed) == pytest.approx(1.0)
    assert 0.3 < gap((photos + collapsed) / 2) < 0.7  # half as far apart
    assert gap(photos * 2) == pytest.approx(0.0, abs=1e-6)  # further apart is not asked for


def test_without_the_style_term_fakes_are_not_mixed_and_older_runs_resume_without_it(base, tuned, tmp_path):
    trainer, faces, _ = tuned
    plain = AnimeTrainer.start(base, AnimeConfig(**SMALL, style_weight=0.0))
    m = _np(plain.train_step(faces))
    assert np.isnan(m[3]) and np.isfinite(m[2])  # no style gap, the structure term still there
    trainer.save(tmp_path / "ck")
    meta = json.loads((tmp_path / "ck" / "meta.json").read_text())
    del meta["config"]["style_weight"]  # a run saved before the term existed
    (tmp_path / "ck" / "meta.json").write_text(json.dumps(meta))
    assert AnimeTrainer.resume(tmp_path / "ck", base=base).config.style_weight == 0.0
    with pytest.raises(ValueError, match="style_weight"):
        AnimeConfig(style_weight=-1.0)


def test_the_layout_measure_is_the_trainers_and_behaves():
    faces = _blobs(6)
    trained = _np(structure_maps(ops.convert_to_tensor(faces.astype(np.float32) / 127.5 - 1.0)))
    np.testing.assert_allclose(trained, judge.structure(faces), atol=1e-4)
    same = judge.layout_agreement(faces, faces)
    assert same["correlation"] == pytest.approx(1.0, abs=1e-3) and same["match_back"] == 1.0
    recoloured = 255 - faces  # a negative keeps the layout, inverted: correlation -1
    assert judge.layout_agreement(faces, recoloured)["correlation"] < -0.99
    takes = np.stack([faces[:3], np.roll(faces[:3], 1, axis=3)], axis=1)  # colours swapped, same layout
    d = judge.diversity(takes, faces[:3])
    assert d["takes"] == 2 and d["takes_pixel_l1"] > 0 and d["takes_structure"] < d["photos_structure"]


def test_the_cascade_finds_real_anime_faces_and_not_blobs():
    cascade = judge.AnimeFaceCascade(shared_path("detectors", "lbpcascade_animeface.xml"))
    real = load_anime_faces(
        shared_path("datasets", "anime96.tar"), 96, crop=AnimeCrop(1.0, 0.5), split="holdout"
    )
    assert cascade.face_rate(real[:40]) > 0.4
    assert cascade.face_rate(_blobs(8)) == 0.0
    with pytest.raises(BabyganError, match="cascade file not found"):
        judge.AnimeFaceCascade("missing.xml")


def test_the_cascade_needs_a_border_around_faces_cut_to_babygans_frame():
    """Real anime faces cut as the anime model is trained on them (the photos' tight frame, 128
    px): the cascade, looking for whole heads, misses nearly all of them unless given a border."""
    path = shared_path("detectors", "lbpcascade_animeface.xml")
    bare, framed = judge.AnimeFaceCascade(path), judge.AnimeFaceCascade(path, margin=judge.FRAME_MARGIN)
    tight = load_anime_faces(
        shared_path("datasets", "anime96.tar"), 128, crop=AnimeCrop(0.75, 0.42), split="holdout"
    )[:60]
    assert bare.face_rate(tight) < 0.1 and framed.face_rate(tight) > 0.45
    assert framed.face_rate(_blobs(8)) == 0.0
    with pytest.raises(BabyganError, match="margin"):
        judge.AnimeFaceCascade(path, margin=-0.1)


def test_eval_script_prints_the_figures_on_tiny_models(base, tuned, tmp_path, monkeypatch, capsys):
    import importlib.util

    from babygan import utkface
    from babygan.stylegan import load_generator
    from babygan.utkface import FaceSet

    cascade = shared_path("detectors", "lbpcascade_animeface.xml")
    base.save(tmp_path / "base.npz")
    on_disk = load_generator(tmp_path / "base.npz")
    model = AnimeTrainer.start(on_disk, AnimeConfig(**SMALL)).export(tmp_path / "anime.npz", on_disk)
    names = _anime_tar(tmp_path / "a.tar", 300)
    assert any(holdout_score(n) < 0.02 for n in names)
    photos = _blobs(12)

    def aligned(path, size, scale, split):  # UTKFace's held-out faces, without dlib and the archive
        assert (size, scale, split) == (32, 0.7, "holdout")
        zeros = np.zeros(12)
        return FaceSet(
            images=photos, ages=zeros, genders=zeros, races=zeros, names=[f"{i}" for i in range(12)]
        )

    monkeypatch.setattr(utkface, "align_utkface", aligned)
    spec = importlib.util.spec_from_file_location("eval_anime", REPO / "scripts" / "eval_anime.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = [str(model), "--base", str(tmp_path / "base.npz"), "--utkface", "x.tar", "--anime"]
    args += [str(tmp_path / "a.tar"), "--cascade", str(cascade), "-o", str(tmp_path / "ev"), "-n", "10"]
    assert script.main([*args, "--match", "8", "--takes", "3", "--takes-photos", "4"]) == 0
    figures = json.loads((tmp_path / "ev" / "figures.json").read_text())
    assert figures["layout_photo_vs_anime"]["n"] == 8 and figures["styles"]["takes"] == 3
    assert set(figures["anime_face_rate"]) >= {
        "anime_outputs", "anime_outputs_of_e_guess", "photos", "real_anime_32px_as_trained",
        "anime_outputs_own_psi_1", "anime_outputs_own_psi_0.5",
    }  # fmt: skip
    assert figures["own_psi"] == OWN_PSI and figures["layout_photo_vs_anime_own_psi_0.5"]["n"] == 8
    assert figures["codes"].startswith("E and the default refinement")
    assert (
        figures["cascade_margin"] == judge.FRAME_MARGIN and "photos" in figures["anime_face_rate_no_margin"]
    )
    assert len(figures["load_average"]) == 3 and (tmp_path / "ev" / "sheet.png").is_file()
    assert "match_back" in capsys.readouterr().out


@pytest.mark.heavy
def test_the_training_script_runs_in_chunks_exports_and_refuses_to_ship_a_foreign_base(base, tmp_path):
    """scripts/train_anime.py on the tiny base: 2 steps, then resumed to 16 images and exported;
    --ship refuses a base that is not the shipped one (two TensorFlow subprocesses: heavy)."""
    import os
    import subprocess
    import sys

    base.save(tmp_path / "base.npz")
    _anime_tar(tmp_path / "a.tar", 40)
    out = tmp_path / "run"
    args = [sys.executable, str(REPO / "scripts" / "train_anime.py"), str(tmp_path / "a.tar"), "--base"]
    args += [str(tmp_path / "base.npz"), "--out", str(out), "--batch", "4", "--fp32", "--kimg", "0.016"]
    args += ["--report-seconds", "0", "--sample-kimg", "0.008"]
    env = {**os.environ, "BABYGAN_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}

    def run(*more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*args, *more], env=env, capture_output=True, text=True, timeout=600)

    first = run("--max-steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "layers 4-7 + ToRGB tuned" in first.stdout and "kimg    0.01" in first.stdout, first.stdout
    assert len(list((out / "data").glob("*.npz"))) == 1  # the cut faces, reused by the next chunk
    second = run("--export", str(tmp_path / "anime.npz"), "--ship")
    assert second.returncode == 1 and "resumed" in second.stdout, second.stdout + second.stderr[-3000:]
    assert "--ship: the base must be the shipped built-in model" in second.stderr.splitlines()[-1]
    meta = json.loads((out / "checkpoint" / "meta.json").read_text())
    assert meta["nimg"] == 16 and meta["config"]["swap_layer"] == 4
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert records[-1]["kimg"] == 0.016 and all(np.isfinite(r["d_loss"]) for r in records)
    assert (out / "samples.png").is_file() and len(list((out / "samples").glob("*.png"))) == 2
    from babygan.stylegan import load_generator

    assert load_anime_model(tmp_path / "anime.npz", load_generator(tmp_path / "base.npz")).swap_layer == 4
