"""Edits out of range are errors, not noise (issue 28).

Every entry point (the CLI, a batch row, the Python API, the page's JSON API) is sent an
out-of-range age, an out-of-range shift and a NaN: each gets one line naming the field and
the allowed range, and nothing is written. The limits themselves, read from
``Session.edit_ranges``, still make a face dlib finds. All on the shipped built-in model,
offline, with obama.jpg and biden.jpg; the refusals come before any model loads, so only
the batch's good row and the limits encode (once, in the module's Session).
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import shared_path

from babygan import batch
from babygan.cli import main
from babygan.edit_ranges import BUILTIN_RANGES, DEFAULT_RANGES, EditRangeError, EditRanges
from babygan.latent import Age
from babygan.pipeline import ChildOptions, EditOptions, age_sweep, predict
from babygan.session import Session

NAN = float("nan")
CLI = ["--model", "builtin", "--offline", "--quiet", "--precision", "fp32"]
BUILTIN = "the built-in model's range"


@pytest.fixture(scope="module")
def parents() -> tuple[Path, Path]:
    return shared_path("faces", "obama.jpg"), shared_path("faces", "biden.jpg")


@pytest.fixture(scope="module")
def session() -> Session:
    """One Session for the module: each parent is aligned and encoded once, in memory."""
    return Session("builtin", offline=True, progress=False, precision="fp32")


def _fresh() -> Session:
    return Session("builtin", offline=True, progress=False, precision="fp32")


def _refused(call: Any, text: str) -> None:
    """``call()`` raises EditRangeError with a message starting ``text``."""
    with pytest.raises(EditRangeError) as caught:
        call()
    assert str(caught.value).startswith(text), str(caught.value)


def _faces(images: list[np.ndarray]) -> list[int]:
    """1 for each child where resemblance finds a face (dlib's HOG detector, then its CNN one)."""
    from babygan.resemblance import FaceDescriber

    describer = FaceDescriber()
    return [int(describer.describe(image).vector is not None) for image in images]


# --------------------------------------------------------------------------- the ranges


def test_one_place_knows_each_range_and_words_the_error() -> None:
    assert _fresh().edit_ranges == BUILTIN_RANGES  # its calibration's 0..80 years
    assert Session("ffhq").edit_ranges is DEFAULT_RANGES  # any other model: the defaults, for now
    assert DEFAULT_RANGES.age == (0.0, 80.0) and DEFAULT_RANGES.shift_range("gender") == (-10.0, 10.0)
    assert BUILTIN_RANGES.shift_range("gender") == (-5.0, 5.0) and BUILTIN_RANGES.shift_range("smile") == (
        -10,
        10,
    )
    ranges = EditRanges(age=(1.0, 50.0), source="a test's range")
    ranges.check_age(Age.years(1.0))  # the limits are allowed
    ranges.check_age(Age.years(50.0))
    for age, text in [
        (Age.years(50.01), "age: 50.01 is outside 1 to 50 years, a test's range"),
        (Age.years(-math.inf), "age: -inf is not a finite number; allowed: 1 to 50 years, a test's range"),
        (
            Age.coeff(NAN),
            "age_coeff: nan is not a finite number; allowed: -10 to 10 (a coefficient on the age",
        ),
    ]:
        with pytest.raises(EditRangeError) as caught:
            ranges.check_age(age)
        assert str(caught.value).startswith(text)
    with pytest.raises(EditRangeError) as caught:
        ranges.check(ChildOptions(shifts=(("smile", 10.5),)))
    err = caught.value
    assert (err.field, err.direction, err.value, err.span) == ("shift", "smile", 10.5, (-10.0, 10.0))
    assert err.message("--smile") == (
        "--smile: 10.5 is outside -10 to 10 (a coefficient on the smile direction), a test's range"
    )


def test_python_api_refuses_nan_at_once_and_out_of_range_before_any_photo_is_encoded(parents) -> None:
    dad, mum = parents
    for make, text in [
        (lambda: ChildOptions(age=NAN), "age: nan is not a finite number (years)"),
        (lambda: ChildOptions(age=Age.coeff(math.inf)), "age_coeff: inf is not a finite number"),
        (lambda: EditOptions(shifts=(("gender", NAN),)), "shift gender: nan is not a finite number"),
        (lambda: EditOptions(genes=NAN), "genes: nan is not a finite number; allowed: 0 to 1"),
        (lambda: ChildOptions(children=100), "children: 100 is outside 1 to 99 children"),
    ]:
        _refused(make, text)
    session = _fresh()
    for options, text in [
        (ChildOptions(age=1000), f"age: 1000 is outside 0 to 80 years, {BUILTIN}"),
        (ChildOptions(age=Age.coeff(-194)), "age_coeff: -194 is outside -6 to 6"),
        (ChildOptions(shifts=(("gender", 50.0),)), "shift gender: 50 is outside -5 to 5 (a coefficient on"),
    ]:
        _refused(lambda o=options: predict(dad, mum, o, session), text)
    ages = [Age.years(10), Age.years(1000)]
    _refused(lambda: age_sweep(dad, mum, EditOptions(), session, ages=ages), "age: 1000 is outside")
    # refused before any photo was aligned or encoded (the model file is read: its age
    # calibration says which years it reaches)
    assert not session._aligned and not session._parents


# --------------------------------------------------------------------------- the command line


def _error_line(result: Any) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--age", "1000"], f"Error: --age: 1000 is outside 0 to 80 years, {BUILTIN}"),
        (
            ["--age-coeff", "-194"],
            f"Error: --age-coeff: -194 is outside -6 to 6 (a coefficient on the age direction), {BUILTIN}",
        ),
        (
            ["--gender-shift", "50"],
            "Error: --gender-shift: 50 is outside -5 to 5 (a coefficient on the gender direction), "
            + BUILTIN,
        ),
        (["--age", "nan"], "Error: --age: nan is not a finite number (years)"),
        (["--shift", "beard=inf"], "Error: --shift beard: inf is not a finite number"),
        (["--genes", "nan"], "Error: --genes: nan is not a finite number; allowed: 0 to 1 (the share of"),
    ],
)
def test_cli_predict_names_the_option_and_writes_nothing(parents, tmp_path, args, text) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["predict", *map(str, parents), "-o", str(out), *CLI, *args])
    assert result.exit_code == 1, result.output
    assert _error_line(result).startswith(text)
    assert not out.exists()


def test_cli_age_sweep_and_batch_name_their_options(parents, tmp_path) -> None:
    out = tmp_path / "out"
    for args, text in [
        (["--ages", "1:1000:2"], "Error: --ages: 1000 is outside 0 to 80 years"),
        (["--coeffs", "-8:0:4"], "Error: --coeffs: -8 is outside -6 to 6"),
        (["--ages", "nan:50:3"], "Error: --ages: nan is not a finite number; allowed: 0 to 80 years"),
        (["--gender-shift", "-50"], "Error: --gender-shift: -50 is outside -5 to 5"),
    ]:
        result = CliRunner().invoke(main, ["age-sweep", *map(str, parents), "-o", str(out), *CLI, *args])
        assert result.exit_code == 1 and _error_line(result).startswith(text), result.output
    csv = tmp_path / "pairs.csv"
    csv.write_text("father,mother\n{},{}\n".format(*parents))
    result = CliRunner().invoke(main, ["batch", str(csv), "-o", str(out), *CLI, "--age", "1000"])
    assert result.exit_code == 1 and _error_line(result).startswith("Error: --age: 1000 is outside 0 to 80")
    # a range click parses itself is a usage error (exit 2)
    result = CliRunner().invoke(
        main, ["predict", *map(str, parents), "-o", str(out), *CLI, "--children", "100"]
    )
    assert result.exit_code == 2 and "100 is not in the range 1<=x<=99" in result.output
    assert not out.exists()


# --------------------------------------------------------------------------- a batch row


def test_a_batch_row_out_of_range_fails_alone(parents, session, tmp_path) -> None:
    csv = tmp_path / "pairs.csv"
    dad, mum = parents
    csv.write_text(
        "father,mother,name,genes,age,gender_shift\n"
        f"{dad},{mum},good,,,\n"
        f"{dad},{mum},old,,1000,\n"
        f"{dad},{mum},shifted,,,50\n"
        f"{dad},{mum},nan_age,,nan,\n"
        f"{dad},{mum},inf_genes,inf,,\n"
    )
    out = tmp_path / "out"
    rows = batch.run_batch(csv, out, ChildOptions(resemblance=False, estimate=False), session)
    assert [r.ok for r in rows] == [True, False, False, False, False]
    assert [r.error for r in rows[1:]] == [
        f"pairs.csv line 3, column age: 1000 is outside 0 to 80 years, {BUILTIN}",
        "pairs.csv line 4, column gender_shift: 50 is outside -5 to 5 (a coefficient on the gender "
        f"direction), {BUILTIN}",
        f"pairs.csv line 5, column age: nan is not a finite number; allowed: 0 to 80 years, {BUILTIN}",
        "pairs.csv line 6, column genes: inf is not a finite number; allowed: 0 to 1 (the share of the "
        "mother: 0 = all father, 1 = all mother)",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "good"]


# --------------------------------------------------------------------------- the page's API


def _asgi(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """One request through the ASGI app, in process (no server, no HTTP client library)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


def test_the_page_api_answers_400_naming_the_field(parents, session, tmp_path) -> None:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from babygan.web.app import create_app
    from babygan.web.service import WebService

    service = WebService(session, tmp_path / "work", directions=("age", "gender"))
    service.prepare()
    app = create_app(service)
    ids = [service.add_photo(p.read_bytes(), p.name)["id"] for p in parents]
    who = f'"father": {{"photo": "{ids[0]}"}}, "mother": {{"photo": "{ids[1]}"}}'
    for route, fields, text in [
        ("/api/predict", '"age": 1e9', f"age: 1e+09 is outside 0 to 80 years, {BUILTIN}"),
        ("/api/predict", '"shifts": {"gender": 50}', "shifts.gender: 50 is outside -5 to 5"),
        (
            "/api/predict",
            '"age": NaN',
            "age: nan is not a finite number; allowed: 0 to 80 years",
        ),  # json.loads takes NaN
        ("/api/sweep", '"shifts": {"gender": -Infinity}', "shifts.gender: -inf is not a finite number"),
    ]:
        status, answer = _asgi(app, "POST", route, f"{{{who}, {fields}}}".encode())
        assert status == 400 and answer["error"].startswith(text), answer
    assert list((tmp_path / "work" / "results").iterdir()) == []
    status, info = _asgi(app, "GET", "/api/info")
    # the sliders stay within the model's ranges: its 0 to 80 years, met with the page's own 0 to 60
    assert status == 200 and info["age"]["max"] == 60.0


# --------------------------------------------------------------------------- the limits themselves


def test_the_limits_still_make_a_face(parents, session) -> None:
    """Each limit of Session.edit_ranges (whatever they are set to) gives a child dlib finds, at 256 px."""
    ranges = session.edit_ranges
    ages = [Age.years(a) for a in ranges.age] + [Age.coeff(c) for c in ranges.age_coeff]
    sweep = age_sweep(*parents, EditOptions(), session, ages=ages)
    labels, children = [f"age {label}" for label in sweep.labels()], list(sweep.frames)
    for gender in ranges.shift_range("gender"):
        edit = EditOptions(shifts=(("gender", gender),))
        children.append(age_sweep(*parents, edit, session, ages=[Age.years(10)]).frames[0])  # the default age
        labels.append(f"gender {gender:+g}")
    found = dict(zip(labels, _faces(children), strict=True))
    assert found == dict.fromkeys(found, 1), found  # six limits, one face each
    assert len(found) == 6
