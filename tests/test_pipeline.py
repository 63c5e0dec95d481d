"""The pipeline's pieces without the CLI: options, children's dlatents, resemblance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from PIL import Image

from babygan import latent, outputs, pipeline, render
from babygan.errors import BabyganError
from babygan.latent import Age

L, D = 8, 6


class _Directions:
    """Stands in for a Session where only directions are needed (no generator, no TensorFlow)."""

    def __init__(self):
        rng = np.random.default_rng(3)
        self.dirs = {n: rng.standard_normal((L, D)).astype(np.float32) for n in ("age", "gender", "smile")}

    def direction(self, name):
        return self.dirs[name]


def _parents():
    rng = np.random.default_rng(0)
    return rng.standard_normal((L, D)).astype(np.float32), rng.standard_normal((L, D)).astype(np.float32)


def test_options_validation_and_json():
    opts = pipeline.ChildOptions(genes=0.2, age=Age.years(30), shifts=(("smile", 2.0),))
    assert opts.age.coefficient == 0.0
    j = opts.to_json()
    assert j["age"] == 30 and j["age_coeff"] == 0.0 and j["shifts"] == {"smile": 2.0}
    j = pipeline.ChildOptions(age=Age.coeff(-2.5)).to_json()
    assert j["age"] is None and j["age_coeff"] == -2.5
    assert pipeline.ChildOptions().age.coefficient == 4.0  # BabyGAN's default: 10 years
    with pytest.raises(BabyganError, match="genes: 2 is outside 0 to 1"):
        pipeline.ChildOptions(genes=2)
    with pytest.raises(BabyganError, match="unknown blend style"):
        pipeline.ChildOptions(style="aunt")
    with pytest.raises(BabyganError, match="children: 0 is outside 1 to 99 children"):
        pipeline.ChildOptions(children=0)
    with pytest.raises(BabyganError, match="--age or --age-coeff"):
        pipeline.ChildOptions(shifts=(("age", 1.0),))
    with pytest.raises(BabyganError, match="shifted twice"):
        pipeline.ChildOptions(shifts=(("smile", 1.0), ("smile", 2.0)))


def test_single_child_is_blend_plus_shifts_on_first_layers():
    dad, mum = _parents()
    s = _Directions()
    opts = pipeline.ChildOptions(
        genes=0.3, style="mother", age=Age.years(20), shifts=(("smile", -1.0),), layers=5
    )
    [(name, w, noise_seed, mask)] = pipeline.child_dlatents(dad, mum, opts, s)
    assert name == "child" and noise_seed is None and mask is None
    t = ((np.arange(1, L + 1) / L) ** 0.7)[:, None]  # the "mother" curve with genes 0.3
    expected = (1 - t) * dad + t * mum
    expected[:5] += 2.0 * s.dirs["age"][:5] - 1.0 * s.dirs["smile"][:5]  # age 20 -> coeff 2
    np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-6)


def test_siblings_are_crossovers_with_own_noise():
    dad, mum = _parents()
    s = _Directions()
    opts = pipeline.ChildOptions(genes=0.5, children=4, seed=5, age=Age.coeff(0.0))
    kids = pipeline.child_dlatents(dad, mum, opts, s)
    assert [k[0] for k in kids] == ["child_01", "child_02", "child_03", "child_04"]
    assert len({k[2] for k in kids}) == 4  # distinct noise seeds
    for _, w, _, layers in kids:
        for i, who in enumerate(layers):  # age coeff 0: every layer is one parent's, whole
            np.testing.assert_allclose(w[i], (mum if who == "mother" else dad)[i], atol=1e-6)
    masks = {tuple(k[3]) for k in kids}
    assert len(masks) > 1
    again = pipeline.child_dlatents(dad, mum, opts, s)
    for a, b in zip(kids, again, strict=True):
        np.testing.assert_array_equal(a[1], b[1])
        assert a[2] == b[2] and a[3] == b[3]
    other = pipeline.child_dlatents(dad, mum, opts.with_overrides(seed=6), s)
    assert [k[2] for k in other] != [k[2] for k in kids]


def test_sweep_labels():
    r = pipeline.SweepResult(
        None,
        None,
        [Age.years(1.0), Age.years(50.0)],
        np.zeros((2, L, D)),
        [],
        pipeline.EditOptions(),
    )
    assert r.labels() == ["1 y", "50 y"]
    r.ages = [Age.coeff(5.8), Age.coeff(-4.0)]
    assert r.labels() == ["+5.8", "-4"]
    assert latent.age_to_coeff(1.0) == pytest.approx(5.8)


def _sweep(n: int, size: int = 16) -> pipeline.SweepResult:
    """A written-out sweep needs no models: parents and frames made up."""
    rng = np.random.default_rng(n)
    parent = pipeline.Parent(
        Path("dad.png"), "0" * 64, 1, 1, np.zeros((size, size, 3), np.uint8), np.zeros((L, D), np.float32)
    )
    frames = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    ages = [Age.years(a) for a in np.linspace(1, 50, n)]
    return pipeline.SweepResult(
        parent, parent, ages, np.zeros((n, L, D), np.float32), frames, pipeline.EditOptions()
    )


def test_sweep_rerun_leaves_no_stale_frames(tmp_path):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "frame_notes.png").write_bytes(b"not ours")  # not frame_<digits>.png: left alone
    (out / "keep.txt").write_text("mine")
    outputs.write_sweep(_sweep(12), out)
    assert len(list(out.glob("frame_[0-9]*.png"))) == 12
    paths = outputs.write_sweep(_sweep(5), out)
    frames = sorted(p.name for p in out.glob("frame_[0-9]*.png"))
    assert frames == [f"frame_{i:02d}.png" for i in range(1, 6)]
    assert [Path(p).name for p in paths["frames"]] == frames
    assert (out / "frame_notes.png").read_bytes() == b"not ours" and (out / "keep.txt").is_file()
    record = json.loads((out / "age_sweep.json").read_text())
    assert len(record["sweep"]["ages"]) == 5 and record["outputs"]["json"] == paths["json"]


def test_sweep_mp4_unavailable_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "mp4_available", lambda: False)
    with pytest.raises(BabyganError, match=r"age_sweep\.mp4: writing MP4 needs imageio-ffmpeg"):
        outputs.write_sweep(_sweep(3), tmp_path / "sweep", mp4=True)
    assert not (tmp_path / "sweep").exists()


def test_face_describer_reuses_the_alignment_detector():
    from babygan import align
    from babygan import resemblance as rs

    assert rs.FaceDescriber()._detector is align._get_detector()


@pytest.mark.slow
def test_resemblance_on_real_faces():
    from babygan import resemblance as rs

    faces = shared_path("faces", "aligned-reference")
    load = lambda n: np.asarray(Image.open(faces / n).convert("RGB"))  # noqa: E731
    d = rs.FaceDescriber()
    # The same man (two photos of Obama) against another man: the same one is far closer.
    res = rs.resemblance(d, load("obama_01.png"), load("obama_small_01.png"), load("tom_cruise_01.png"))
    assert res["father"] < rs.SAME_PERSON_DISTANCE < res["mother"]
    assert res["closer_to"] == "father" and res["reason"] is None
    line = rs.describe_text(res)
    assert "father 0." in line and "closer to the father" in line
    # No face in the child: null distances and the reason, no crash.
    res = rs.resemblance(d, np.zeros((32, 32, 3), np.uint8), load("obama_01.png"), load("tom_cruise_01.png"))
    assert res["father"] is None and res["mother"] is None and res["closer_to"] is None
    assert res["reason"] == "no face detected in the child (32x32 px)"
    assert "father n/a" in rs.describe_text(res)


def test_a_soft_old_face_that_hog_misses_is_found_by_dlibs_cnn_detector():
    # The built-in model's 60-year-olds are soft: dlib's HOG detector missed a quarter of them
    # (64 samples), so predict said "no face detected in the child" of faces anyone sees at once.
    # tests/data/builtin_60_years.png is one of them (the built-in model's sample, our own).
    from babygan import resemblance as rs

    face = np.asarray(Image.open(Path(__file__).parent / "data" / "builtin_60_years.png").convert("RGB"))
    assert face.shape == (128, 128, 3)
    assert rs.FaceDescriber(cnn_fallback=False).describe(face, "child").vector is None
    d = rs.FaceDescriber()
    mirrored = np.ascontiguousarray(face[:, ::-1])
    res = rs.resemblance(d, face, face, mirrored)
    assert res["reason"] is None
    assert res["father"] == pytest.approx(0.0, abs=1e-9)
    assert res["mother"] < 0.4  # the same face mirrored (0.21): the box is on the face
    # At FFHQ's size the search runs on the image scaled down to CNN_SEARCH_SIZE, boxes scaled back.
    large = render.resize(face, 1024)
    assert rs.distance(d.describe(large), d.describe(face)) < 0.3
