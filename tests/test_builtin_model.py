"""The shipped built-in model (babygan/builtin/babygan-utkface128.npz) on real photos, offline.

These run the real model the package ships, not a stand-in: what a user gets from
`babygan predict father.jpg mother.jpg` on a fresh machine with no network.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path
from PIL import Image

from babygan import align, attributes, resemblance
from babygan.builtin import builtin_model_path
from babygan.cli import main

FAST = ["--quiet", "--precision", "fp32"]


@pytest.fixture(scope="module")
def G():
    from babygan.stylegan import load_generator

    return load_generator(builtin_model_path())


def _faces_found(image: np.ndarray) -> int:
    import dlib

    return len(dlib.get_frontal_face_detector()(np.ascontiguousarray(image), 1))


def test_the_model_ships_with_its_encoder_map_and_directions(G):
    path = builtin_model_path()
    assert path.stat().st_size < 25e6
    assert G.has_encoder and G.config.mapping_kind == "linear"
    assert G.info["crop"] == {"recipe": "ffhq", "scale": 0.7}
    folder = path.parent / G.info["directions"]
    for name in ("age", "gender"):
        d = np.load(folder / f"{name}.npy")
        assert d.shape == (G.num_layers, G.w_dim) and np.isfinite(d).all()


def test_predict_offline_with_no_model_named_writes_a_face(tmp_path, monkeypatch):
    dad = shared_path("faces", "family_father.jpg")
    mum = shared_path("faces", "family_mother.jpg")
    out = tmp_path / "out"

    def searched_here(*args, **kwargs):
        raise AssertionError("dlib's models were loaded in this process, not in the command's second one")

    # the command finds the faces in a second process while TensorFlow loads, and that process
    # does the command's later dlib work too: landmarks, descriptors (babygan/align_ahead.py)
    monkeypatch.setattr(align, "find_faces", searched_here)
    monkeypatch.setattr(align, "_get_detector", searched_here)
    monkeypatch.setattr(align, "load_predictor", searched_here)
    monkeypatch.setattr(resemblance, "FaceDescriber", searched_here)
    # the ager's attribute network (0.3 s of Keras loading) loads beside the encoding
    loaded_in: list[str] = []
    load = attributes.AttributeModel.load.__func__

    def load_noting_thread(cls, *args, **kwargs):
        loaded_in.append(threading.current_thread().name)
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(attributes.AttributeModel, "load", classmethod(load_noting_thread))
    res = CliRunner().invoke(main, ["predict", str(dad), str(mum), "-o", str(out), "--offline", *FAST])
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert len(loaded_in) == 1 and loaded_in[0].startswith("babygan-warm"), loaded_in
    record = json.loads((out / "child.json").read_text())
    assert record["model"]["name"] == "builtin"
    assert record["encoder"]["perceptual"] == "identity"  # no VGG16 download
    child = np.asarray(Image.open(out / "child.png").convert("RGB"))
    assert child.shape[0] >= 256  # shown at a size people can see, the model's 128 px upscaled
    assert _faces_found(child) == 1


def test_samples_are_faces(G):
    from babygan.stylegan import to_uint8

    z = np.random.default_rng(3).standard_normal((12, G.z_dim)).astype(np.float32)
    faces = to_uint8(G.run(z))
    big = [np.asarray(Image.fromarray(f).resize((256, 256), Image.Resampling.LANCZOS)) for f in faces]
    assert sum(_faces_found(f) == 1 for f in big) >= 10


def test_bf16_draws_the_same_faces(G):
    """bf16 (the CLI's default on CPUs with bfloat16 units) renders real faces within 50 dB of
    fp32, PSNR over the [-1, 1] range a PNG shows (measured: 60 dB)."""
    w = G.mapping(np.random.default_rng(4).standard_normal((8, G.z_dim)).astype(np.float32))
    fp32 = np.clip(G.synthesis(w), -1, 1).astype(np.float64)
    bf16 = np.clip(G.with_precision("bf16").synthesis(w), -1, 1)
    assert not np.array_equal(bf16, fp32)  # it really computed in bf16
    assert 10 * np.log10(4.0 / np.mean((bf16 - fp32) ** 2)) >= 50.0


def test_E_reconstructs_held_out_faces_far_better_than_the_average(G):
    from babygan.align import align_image, detect_faces
    from babygan.stylegan import to_uint8
    from babygan.utkface import UTKFaceArchive

    # 32 held-out faces (never trained on), aligned as the model's training faces were
    archive = UTKFaceArchive.open(shared_path("datasets", "utkface200.tar"))
    faces = []
    for image in archive.read_images(archive.select("holdout")[:40]):
        found = detect_faces(image, upsample=0)
        if found:
            r = G.resolution
            faces.append(align_image(image, found[0].landmarks, r, 4 * r, crop_scale=G.info["crop"]["scale"]))
    faces = np.stack(faces[:32])

    def psnr(w: np.ndarray) -> float:
        err = (to_uint8(G.synthesis(w)).astype(np.float64) - faces) ** 2
        return float(np.mean(10 * np.log10(255.0**2 / err.mean(axis=(1, 2, 3)))))

    avg = np.broadcast_to(G.dlatent_avg, (len(faces), G.num_layers, G.w_dim))
    assert psnr(G.encode_faces(faces)) > psnr(avg) + 4.0


def test_age_sweep_estimated_ages_rise_with_the_requested_ones(tmp_path):
    from babygan.attributes import AttributeModel

    dad = shared_path("faces", "family_father.jpg")
    mum = shared_path("faces", "family_mother.jpg")
    out = tmp_path / "sweep"
    res = CliRunner().invoke(
        main,
        ["age-sweep", str(dad), str(mum), "--ages", "3:45:4", "-o", str(out), "--offline", *FAST],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    frames = sorted(out.glob("frame_*.png"))
    assert len(frames) == 4
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in frames])
    ages, _ = AttributeModel.load().predict(images)
    assert np.all(np.diff(ages) > 0), ages
