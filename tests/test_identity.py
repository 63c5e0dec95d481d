"""dlib's face descriptor network in keras.ops: the reader, parity with dlib's C++ on real
faces (fp32 and bf16), the differentiable chip, gradients, and the encoder's identity term.

Backend-neutral (keras.ops and babygan.backend only), so the file runs under JAX too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from babygan.errors import BabyganError, ModelFileError
from babygan.shipped_models import FACE_DESCRIPTOR, shipped_model_file

dlib = pytest.importorskip("dlib")

#: photos of ../shared/faces that hold exactly one face
ONE_FACE = ("biden.jpg", "obama.jpg", "tom_cruise.jpg", "family_child.jpg", "family_father.jpg")


@pytest.fixture(scope="module")
def net():
    from babygan.identity import IdentityNet

    return IdentityNet()


@pytest.fixture(scope="module")
def dlib_net():
    return dlib.face_recognition_model_v1(str(shipped_model_file(FACE_DESCRIPTOR)))


def dlib_chip(image: np.ndarray, landmarks: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """dlib's own 150 px chip (padding 0.25) from 68 landmarks: uint8 (150, 150, 3)."""
    points = [dlib.point(round(float(x)), round(float(y))) for x, y in landmarks]
    shape = dlib.full_object_detection(dlib.rectangle(*box), points)
    return np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))


def chips_of(images) -> np.ndarray:
    """dlib chips of the largest face in each image (images without a face are left out)."""
    from babygan.align import detect_faces

    out = []
    for image in images:
        faces = detect_faces(np.ascontiguousarray(image), 1)
        if faces:
            face = max(faces, key=lambda f: f.area)
            out.append(dlib_chip(image, face.landmarks, face.box))
    return np.stack(out)


def largest_difference(net, dlib_net, chips: np.ndarray, compute_dtype: str = "float32") -> float:
    from babygan.identity import IdentityNet

    if compute_dtype != "float32":
        net = IdentityNet(compute_dtype=compute_dtype)
    ours = net.describe(chips)
    ref = np.stack([np.asarray(dlib_net.compute_face_descriptor(c)) for c in chips])
    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    return float(np.abs(ours - ref).max())


# ----------------------------------------------------------------------------- the reader


def test_reader_reads_every_layer_of_dlibs_network():
    from babygan.identity.reader import read_dlib_resnet

    model = read_dlib_resnet(shipped_model_file(FACE_DESCRIPTOR))
    convs = [
        k for k in model.params if k.endswith("conv.weight") or k.endswith(("conv_a.weight", "conv_b.weight"))
    ]
    assert len(convs) == 29
    assert model.params["stem.conv.weight"].shape == (7, 7, 3, 32)
    assert model.params["unit13.conv_b.weight"].shape == (3, 3, 256, 256)
    assert model.params["fc.weight"].shape == (256, 128)
    # dlib's input_rgb_image_sized<150>: these means, then / 256
    np.testing.assert_allclose(model.mean_rgb, (122.782, 117.001, 104.298), atol=1e-4)


@pytest.mark.parametrize("damage", ["truncated", "renamed layer", "wrong filter count", "trailing bytes"])
def test_reader_refuses_a_damaged_file_in_one_line(tmp_path, damage):
    from babygan.identity.reader import read_dlib_resnet

    data = bytearray(shipped_model_file(FACE_DESCRIPTOR).read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "renamed layer":
        i = data.index(b"relu_")
        data[i : i + 5] = b"relx_"
    elif damage == "wrong filter count":
        # the stem's convolution: its name, its parameters, then num_filters = 32 (0x01 0x20)
        from babygan.identity.reader import _Bytes

        cursor = _Bytes(Path("x"), bytes(data))
        cursor.pos = data.index(b"con_") - 2  # its length: 0x01, then 5
        cursor.string(), cursor.tensor("stem")
        assert data[cursor.pos : cursor.pos + 2] == b"\x01\x20"
        data[cursor.pos + 1] = 0x21
    else:
        data += b"\x00"
    bad = tmp_path / "bad.dat"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as info:
        read_dlib_resnet(bad)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message


def test_describe_checks_its_chips(net):
    with pytest.raises(BabyganError, match="150, 150, 3"):
        net.describe(np.zeros((1, 64, 64, 3), np.uint8))


def test_bf16_kernels_cast_once_give_the_same_descriptors(net):
    """A bf16 net holds its convolutions' kernels in bfloat16 (cast once, not in every step of
    the encoder and the ager): the descriptors are those of float32 kernels cast in each run."""
    from keras import ops
    from keras.backend import standardize_dtype

    from babygan.identity import IdentityNet
    from babygan.identity.network import descriptor

    bf16 = IdentityNet(compute_dtype="bfloat16")
    kernels = [k for k, t in bf16.tensors.items() if len(t.shape) == 4]
    assert kernels and all(standardize_dtype(bf16.tensors[k].dtype) == "bfloat16" for k in kernels)
    chips = np.random.default_rng(0).uniform(0, 255, (2, 150, 150, 3)).astype(np.float32)
    cast_each_run = descriptor(net.tensors, chips, net.model.mean_rgb, compute_dtype="bfloat16")
    np.testing.assert_array_equal(
        ops.convert_to_numpy(bf16.descriptor(chips)), ops.convert_to_numpy(cast_each_run)
    )


# ----------------------------------------------------------------------------- parity with dlib


def test_descriptors_match_dlib_on_the_shared_faces(net, dlib_net):
    from babygan.photo import load_photo

    chips = chips_of([load_photo(shared_path("faces", name)) for name in ONE_FACE])
    assert len(chips) == len(ONE_FACE)
    fp32 = largest_difference(net, dlib_net, chips)
    bf16 = largest_difference(net, dlib_net, chips, "bfloat16")
    print(f"\nshared faces: largest descriptor difference fp32 {fp32:.2e}, bf16 {bf16:.2e}")
    assert fp32 < 1e-3
    assert bf16 < 2e-2  # bfloat16 keeps 8 bits of mantissa; dlib's own threshold is 0.6


def test_descriptors_match_dlib_on_200_utkface_faces(net, dlib_net):
    from babygan.utkface import UTKFaceArchive

    archive = UTKFaceArchive.open(shared_path("datasets", "utkface200.tar"))
    images = archive.read_images(range(min(200, len(archive))))
    chips = chips_of(images)
    assert len(chips) >= 150  # dlib finds most of these faces
    fp32 = largest_difference(net, dlib_net, chips)
    print(f"\nUTKFace: {len(chips)} faces, largest descriptor difference fp32 {fp32:.2e}")
    assert fp32 < 1e-3


def test_differentiable_chip_matches_dlibs_chip(net):
    """The chip cut by the sampling plan (what the encoder's loss cuts from a render) is the
    one dlib cuts: within one grey level on average, at the encoder's 256 px loss size."""
    from PIL import Image

    from babygan.align import detect_faces
    from babygan.identity.chip import chip_transform, crop_chips, sampling_plan

    diffs = []
    for name in ("obama_01.png", "family_mother_01.png", "tom_cruise_01.png"):
        path = shared_path("faces", "aligned-reference", name)
        image = np.asarray(Image.open(path).convert("RGB").resize((256, 256), Image.LANCZOS))
        face = max(detect_faces(image, 1), key=lambda f: f.area)
        idx, wts = sampling_plan(chip_transform(face.landmarks)[None], 256, 256)
        ours = np.asarray(crop_chips(image[None].astype(np.float32), idx, wts))[0]
        ref = dlib_chip(image, face.landmarks, face.box).astype(np.float64)
        diffs.append(np.abs(ours - ref).mean())
    print(f"\nchip: mean grey-level difference {max(diffs):.3f}")
    assert max(diffs) < 1.0


# ----------------------------------------------------------------------------- gradients and the encoder


def test_descriptor_gradient_is_finite(net):
    from keras import ops

    from babygan import backend

    chips = np.random.default_rng(0).uniform(0, 255, (2, 150, 150, 3)).astype(np.float32)

    def loss(x):
        d = net.descriptor(x)
        return ops.sum(ops.square(d)), d

    (value, _), grad = backend.value_and_grad(loss)(ops.convert_to_tensor(chips))
    grad = ops.convert_to_numpy(grad)
    assert np.isfinite(float(ops.convert_to_numpy(value)))
    assert grad.shape == chips.shape and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_identity_term_lowers_the_descriptor_distance_on_a_tiny_generator(optimizer):
    """Self-inversion with the identity term alone: the loss is identity_weight x the
    descriptor distance, and the optimisation lowers it."""
    from tiny_generator import tiny_generator

    from babygan.encoder import Encoder, EncoderSettings
    from babygan.stylegan import to_uint8

    G = tiny_generator(seed=0)
    w = G.mapping(np.random.RandomState(1).randn(2, G.z_dim).astype(np.float32), truncation_psi=0.7)
    images = to_uint8(G.synthesis(w))
    settings = EncoderSettings(
        iterations=8, lr=0.05, perceptual="identity", init="dlatent_avg", clip=5.0, optimizer=optimizer,
        pixel_weight=0.0, mssim_weight=0.0, l1_weight=0.0, identity_weight=1.0,
    )  # fmt: skip
    result = Encoder(G, settings).encode(images, progress=False)
    start, best = result.loss_history[0], result.best_loss
    assert np.all(np.isfinite(result.loss_history[0]))
    assert np.all(best < start), (start, best)


def test_identity_weight_is_in_the_cache_key_only_with_the_identity_loss():
    from babygan.encoder import EncoderSettings

    ident = EncoderSettings(perceptual="identity")
    assert ident.cache_key() != dataclasses.replace(ident, identity_weight=5.0).cache_key()
    pixel = EncoderSettings(perceptual="pixel")
    assert pixel.cache_key() == dataclasses.replace(pixel, identity_weight=5.0).cache_key()
    with pytest.raises(BabyganError, match="identity_weight"):
        EncoderSettings(identity_weight=-1.0)


def test_the_identity_loss_is_the_choice_for_models_with_their_own_info():
    from babygan.encoder.settings import settings_for_model

    assert settings_for_model({"name": "own", "crop": {"scale": 1.3}}).perceptual == "identity"
    assert settings_for_model({}).perceptual == "vgg16"
    own = settings_for_model({"name": "built-in"}, has_encoder=True, iterations=7)
    assert (own.perceptual, own.iterations, own.l1_weight) == ("identity", 7, 0.0)


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")
@pytest.mark.slow
def test_descriptor_and_gradient_under_jax():
    tests = [
        "tests/test_identity.py::test_descriptors_match_dlib_on_the_shared_faces",
        "tests/test_identity.py::test_descriptor_gradient_is_finite",
    ]
    env = {**os.environ, "KERAS_BACKEND": "jax", "BABYGAN_PRECISION": "fp32", "JAX_PLATFORMS": "cpu"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "2 passed" in run.stdout


@pytest.mark.parametrize(
    ("model", "chosen", "expected"),
    [
        ("own", {}, "identity"),  # babygan's own model: no VGG16 download
        ("own", {"perceptual": "vgg16"}, "vgg16"),  # asked for: kept
        ("ffhq", {}, "vgg16"),  # the official pickle keeps pbaylies' recipe (and is not loaded)
    ],
)
def test_the_session_encodes_babygans_own_models_with_the_identity_loss(tmp_path, model, chosen, expected):
    from babygan.session import Session
    from babygan.stylegan import random_generator

    if model == "own":
        G = random_generator(32, fmap_max=16, seed=0)
        G.info = {"crop": {"recipe": "ffhq", "scale": 0.7}, "name": "own"}
        model = str(G.save(tmp_path / "own.npz"))
    assert Session(model, encoder=chosen).encoder.perceptual == expected


@pytest.mark.parametrize(("args", "chosen"), [([], None), (["--perceptual", "vgg16"], "vgg16")])
def test_the_cli_passes_on_only_the_encoder_options_given(args, chosen):
    import click
    from click.testing import CliRunner

    from babygan.cli.options import encoding_options

    @click.command()
    @encoding_options
    def show(session):
        click.echo(repr(session.encoder.get("perceptual")))

    result = CliRunner().invoke(show, ["--model", "x.npz", *args])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == repr(chosen)


def test_the_identity_terms_target_is_dlibs_descriptor_of_the_aligned_photo(dlib_net):
    """What the encoder compares a render against: the descriptor of the aligned photo's face,
    as dlib's own pipeline measures it on the full 1024 px image (the term works at 256 px)."""
    from PIL import Image

    from babygan.align import detect_faces
    from babygan.encoder.identity_term import IdentityTerm

    image = np.asarray(Image.open(shared_path("faces", "aligned-reference", "obama_01.png")).convert("RGB"))
    small = np.asarray(Image.fromarray(image).resize((256, 256), Image.LANCZOS))
    ours = IdentityTerm().targets(image[None], small[None])["id_desc"][0]
    face = max(detect_faces(image, 0), key=lambda f: f.area)
    ref = np.asarray(dlib_net.compute_face_descriptor(dlib_chip(image, face.landmarks, face.box)))
    distance = float(np.linalg.norm(ours - ref))
    print(f"\nidentity target vs dlib at 1024 px: distance {distance:.3f}")
    assert distance < 0.1  # dlib's same-person threshold is 0.6
