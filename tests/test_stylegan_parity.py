"""Parity with the official StyleGAN code: ../shared/reference/stylegan-ref-128.{pkl,npz}.

The reference arrays were computed by NVlabs' implementation from the pickle; ours must
match to float32 rounding: max|diff| <= 1e-3 x the reference array's std.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import shared_path

from babygan.stylegan import Generator, legacy, load_generator

TOL = 1e-3


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(shared_path("reference", "stylegan-ref-128.npz")) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def G() -> Generator:
    # Built directly (no cache dir involved: module fixtures run before the per-test BABYGAN_HOME).
    config, params = legacy.load_official(shared_path("reference", "stylegan-ref-128.pkl"))
    return Generator(config, params, source_sha256="reference")


def _close(ours: np.ndarray, reference: np.ndarray) -> float:
    assert ours.shape == reference.shape
    return float(np.abs(ours - reference).max() / reference.std())


def _nhwc(a: np.ndarray) -> np.ndarray:
    return a.transpose(0, 2, 3, 1)


def test_architecture_matches_the_reference_description(G: Generator) -> None:
    info = json.loads(shared_path("reference", "stylegan-ref-128.json").read_text())
    assert (G.resolution, G.num_layers, G.z_dim, G.w_dim) == (128, 12, 512, 512)
    assert info["num_layers"] == G.num_layers
    assert G.config.fmap_base == info["fmap_base"] and G.config.fmap_max == info["fmap_max"]
    # the first upsampling at 128 px takes the fused transposed-conv path, as in the FFHQ model
    assert G.config.fused(7) and not G.config.fused(6)


def test_every_reference_variable_is_mapped_exactly_once(G: Generator) -> None:
    """The names in NVlabs' pickle, read straight from its Network states, against the table the
    reader uses: each official variable is named once, each of our parameters comes from exactly
    one of them, and only the lod counters and the unused lower ToRGB layers are dropped."""
    obj = legacy.safe_unpickle(shared_path("reference", "stylegan-ref-128.pkl"))
    gs = obj[2] if isinstance(obj, tuple) else obj
    names = [f"Gs/{name}" for name, _ in gs.state["variables"]]
    values = {f"Gs/{name}": value for name, value in gs.state["variables"]}
    for part in ("mapping", "synthesis"):
        for name, value in gs.state["components"][part].state["variables"]:
            names.append(f"{part}/{name}")
            values[f"{part}/{name}"] = value
    assert len(names) == len(set(names))
    table = legacy.official_name_table(G.config)
    assert sorted(names) == sorted(table)
    ours = [mapped for mapped, _ in table.values() if mapped is not None]
    assert len(ours) == len(set(ours))  # no two official variables feed one parameter
    assert sorted(ours) == sorted(G.params)  # and every parameter is fed
    dropped = [name for name, (mapped, _) in table.items() if mapped is None]
    unused = re.compile(r"(Gs|synthesis)/lod|synthesis/ToRGB_lod[1-9][0-9]*/(weight|bias)")
    assert dropped and all(unused.fullmatch(name) for name in dropped), dropped
    for name, (mapped, transform) in table.items():
        if mapped is not None:
            np.testing.assert_array_equal(transform(np.asarray(values[name])), G.params[mapped], err_msg=name)


def test_dlatent_avg(G: Generator, ref: dict[str, np.ndarray]) -> None:
    assert G.dlatent_avg.dtype == np.float32
    np.testing.assert_array_equal(G.dlatent_avg, ref["dlatent_avg"])


def test_mapping_dlatents(G: Generator, ref: dict[str, np.ndarray]) -> None:
    w = G.mapping(ref["z"], truncation_psi=1.0)
    assert w.dtype == np.float32
    assert _close(w, ref["dlatents"]) <= TOL


@pytest.mark.parametrize(
    ("key", "psi", "cutoff"),
    [("images_psi07", 0.7, 8), ("images_psi10", 1.0, 8), ("images_psi05_cut4", 0.5, 4)],
)
def test_full_generator_images(
    G: Generator, ref: dict[str, np.ndarray], key: str, psi: float, cutoff: int
) -> None:
    w = G.mapping(ref["z"], truncation_psi=psi, truncation_cutoff=cutoff)
    images = G.synthesis(w, noise="const")
    assert images.shape == (4, 128, 128, 3) and images.dtype == np.float32
    assert _close(images, _nhwc(ref[key])) <= TOL


def test_synthesis_from_given_dlatents(G: Generator, ref: dict[str, np.ndarray]) -> None:
    images = G.synthesis(ref["synth_w"], noise="const")
    assert _close(images, _nhwc(ref["synth_images"])) <= TOL


def test_network_function_on_backend_tensors_matches(G: Generator, ref: dict[str, np.ndarray]) -> None:
    # the same pure function the encoder and the trainer call inside their compiled steps
    from keras import ops

    from babygan.stylegan import network

    images = ops.convert_to_numpy(network.synthesis(G.tensors, ref["synth_w"], G.config))
    assert _close(images, _nhwc(ref["synth_images"])) <= TOL


def backend_has_gpu() -> bool:
    from babygan import backend

    return backend.gpu_bf16() is not None


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    # images in [-1, 1] terms: peak-to-peak 2, as a user sees the rendered PNG
    return float(10 * np.log10(4.0 / np.mean((a.astype(np.float64) - b) ** 2)))


def test_bf16_renders_within_40_db_of_fp32(G: Generator, ref: dict[str, np.ndarray]) -> None:
    from babygan.precision import cpu_bf16_flags

    fp32 = G.synthesis(ref["synth_w"])
    bf16 = G.with_precision("bf16").synthesis(ref["synth_w"])
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    # random weights give outputs far outside [-1, 1]; judge against the output's own spread.
    # A CPU without bfloat16 instructions (where `auto` never picks bf16) computes TensorFlow's
    # bf16 convolutions with Eigen, oneDNN on or off: 34.9 dB on an AVX2 AMD EPYC
    floor = 40.0 if cpu_bf16_flags() or backend_has_gpu() else 33.0
    scale = float(fp32.std())
    assert _psnr(bf16 / scale, fp32 / scale) >= floor
    assert not np.array_equal(bf16, fp32)  # it really computed in bf16


def test_random_noise_changes_the_image_as_much_as_the_official_code(
    G: Generator, ref: dict[str, np.ndarray]
) -> None:
    w = ref["synth_w"]
    a = G.synthesis(w, noise="random", seed=1)
    b = G.synthesis(w, noise="random", seed=2)
    diff = float(np.abs(a - b).max())
    official = float(ref["randomized_noise_pair_maxdiff"])
    assert diff > 0.1 * official  # the noise path matters, at the official scale
    assert diff < 10 * official
    np.testing.assert_array_equal(a, G.synthesis(w, noise="random", seed=1))  # reproducible by seed


def test_load_generator_converts_caches_and_keeps_parity(ref: dict[str, np.ndarray], tmp_path) -> None:
    from babygan import models

    pkl = shared_path("reference", "stylegan-ref-128.pkl")
    G1 = load_generator(pkl)
    assert G1.source_sha256 == models.sha256_file(pkl)
    assert (models.cache_dir("converted") / f"{G1.source_sha256}.npz").is_file()
    G2 = load_generator(pkl)  # from the converted cache this time
    assert G2 is not G1 and G2.source_sha256 == G1.source_sha256
    images = G2.synthesis(ref["synth_w"])
    assert _close(images, _nhwc(ref["synth_images"])) <= TOL
    assert load_generator(pkl, precision="bf16").precision == "bf16"
