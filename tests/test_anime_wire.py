"""Anime children through the commands: predict, age-sweep, batch, serve and the Python API.

On the tiny 32 px pipeline model (tests/pipeline_fixtures.py) and a tiny anime model written
with ``save_anime_model`` from it: its fine layers (from SWAP on) perturbed, so that the anime
model draws the same code differently from the photo model.
"""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pipeline_fixtures import FAST_ENCODER, make_photos, make_tiny_model

from babygan import render
from babygan.aging import AgingSettings
from babygan.cli import main
from babygan.models import sha256_file

#: the tiny model's 8 W+ layers: 0-3 shared with the photo model, 4-7 the anime model's own
SWAP = 4
#: no likeness-held aging: the attribute network and dlib's descriptor are not what is tested here
NO_AGING = ["--aging-steps", "0"]


def make_tiny_anime_model(model: Path, path: Path) -> Path:
    """An anime model for ``model``: its base's weights, the fine layers' (>= SWAP) and ToRGB's
    perturbed (a fine-tuning stand-in), written by babygan.anime.model.save_anime_model."""
    from babygan.anime.model import save_anime_model
    from babygan.stylegan import load_generator

    base = load_generator(model)
    rng = np.random.default_rng(7)
    params = {}
    for name, value in base.params.items():
        fine = name.startswith("synthesis.torgb.") or any(
            name.startswith(f"synthesis.layer{i}.") for i in range(SWAP, base.num_layers)
        )
        if fine and not name.endswith(".noise"):
            value = value + rng.standard_normal(value.shape).astype(np.float32) * (np.std(value) + 0.1)
        params[name] = value
    return save_anime_model(path, base, params, swap_layer=SWAP, info={"name": "tiny-anime"})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("anime-tiny")
    model, directions = make_tiny_model(folder)
    dad, mum = make_photos(folder)
    anime = make_tiny_anime_model(model, folder / "tiny-anime.npz")
    return {
        "folder": folder,
        "model": model,
        "directions": directions,
        "dad": dad,
        "mum": mum,
        "anime": anime,
    }


def _run(args: list[Any], expect: int = 0) -> Any:
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def _model_args(tiny: dict[str, Path], anime: bool = True) -> list[Any]:
    extra = ["--anime-model", tiny["anime"]] if anime else []
    return ["--model", tiny["model"], "--directions", tiny["directions"], *FAST_ENCODER, *NO_AGING, *extra]


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _one_error_line(output: str, message: str) -> None:
    """The command's error is one line (beside its log lines) and says ``message``."""
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in output, output


def _session(tiny: dict[str, Path], anime: bool = True) -> Any:
    from babygan.session import Session

    return Session(
        tiny["model"], directions_dir=tiny["directions"], encoder={"perceptual": "pixel", "iterations": 2},
        progress=False, offline=True, anime_model=tiny["anime"] if anime else None,
    )  # fmt: skip


# --------------------------------------------------------------------------- predict


@pytest.mark.slow
def test_predict_anime_writes_the_childs_code_drawn_by_the_anime_model(tiny, tmp_path) -> None:
    out = tmp_path / "out"
    res = _run(
        ["predict", tiny["dad"], tiny["mum"], "-o", out, "--size", "48", "--anime", *_model_args(tiny)]
    )
    assert "anime:" in res.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["child.json", "child.npy", "child.png", "child_anime.png", "sheet.png"]
    child, anime = _image(out / "child.png"), _image(out / "child_anime.png")
    assert anime.shape == child.shape == (48, 48, 3) and not np.array_equal(anime, child)
    # the child's final code (after blend, aging and shifts), drawn by the anime model: the default take
    w = np.load(out / "child.npy")
    expected = render.resize(_session(tiny).anime.render(w[None])[0], 48)
    assert np.array_equal(anime, expected)
    record = json.loads((out / "child.json").read_text())
    assert record["options"]["anime"] is True and record["options"]["anime_seed"] is None
    assert record["anime"]["sha256"] == sha256_file(tiny["anime"]) and record["anime"]["name"] == "tiny-anime"
    assert record["anime"]["take"] == "default" and record["anime"]["seed"] is None
    assert record["outputs"]["anime"] == str((out / "child_anime.png").resolve())
    assert render.read_png_metadata(out / "child_anime.png") == render.read_png_metadata(out / "child.png")

    # siblings, in the style of one seed: child_01_anime.png ..., the seed in the record
    kids = tmp_path / "kids"
    _run(["predict", tiny["dad"], tiny["mum"], "-o", kids, "--children", "2", "--anime", "--anime-seed", "3",
          *_model_args(tiny)])  # fmt: skip
    for name in ("child_01", "child_02"):
        assert (kids / f"{name}_anime.png").is_file()
        record = json.loads((kids / f"{name}.json").read_text())
        assert record["anime"]["take"] == "style" and record["anime"]["seed"] == 3
    # without --anime, no anime file and no anime in the record
    plain = tmp_path / "plain"
    _run(["predict", tiny["dad"], tiny["mum"], "-o", plain, *_model_args(tiny)])
    assert not (plain / "child_anime.png").exists()
    assert "anime" not in json.loads((plain / "child.json").read_text())["options"]


@pytest.mark.slow
def test_anime_without_an_anime_model_is_one_line_and_writes_nothing(tiny, tmp_path) -> None:
    without = _model_args(tiny, anime=False)
    cases = [
        (["predict", tiny["dad"], tiny["mum"], "--anime", *without], "no anime model"),
        (["age-sweep", tiny["dad"], tiny["mum"], "--anime", *without], "no anime model"),
        # a plain generator file is not an anime model
        (
            ["predict", tiny["dad"], tiny["mum"], "--anime", *_model_args(tiny, anime=False),
             "--anime-model", tiny["model"]],
            "tiny.npz: not an anime model",
        ),
    ]  # fmt: skip
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        res = _run([*args, "-o", out], expect=1)
        _one_error_line(res.output, message)
        assert not out.exists()
    csv = tmp_path / "pairs.csv"
    csv.write_text(f"father,mother,anime\n{tiny['dad']},{tiny['mum']},yes\n")
    res = _run(["batch", csv, "-o", tmp_path / "batch", *_model_args(tiny, anime=False)], expect=1)
    _one_error_line(res.output, "no anime model")  # before any row runs
    assert not (tmp_path / "batch").exists()
    res = _run(["predict", tiny["dad"], tiny["mum"], "--anime-seed", "2", *_model_args(tiny)], expect=2)
    assert "--anime-seed only with --anime" in res.output


# --------------------------------------------------------------------------- age sweep


@pytest.mark.slow
def test_age_sweep_anime_writes_the_anime_sweep(tiny, tmp_path) -> None:
    out = tmp_path / "sweep"
    _run(["age-sweep", tiny["dad"], tiny["mum"], "-o", out, "--ages", "1:40:4", "--gif", "--anime",
          *_model_args(tiny)])  # fmt: skip
    with Image.open(out / "age_sweep.gif") as plain, Image.open(out / "age_sweep_anime.gif") as anime:
        assert anime.n_frames == plain.n_frames == 4 and anime.size == plain.size
        anime.seek(0)
        plain.seek(0)
        assert not np.array_equal(np.asarray(anime.convert("RGB")), np.asarray(plain.convert("RGB")))
    assert (out / "sheet_anime.png").is_file()
    record = json.loads((out / "age_sweep.json").read_text())
    assert record["anime"]["sha256"] == sha256_file(tiny["anime"])
    assert record["outputs"]["anime_gif"] == str((out / "age_sweep_anime.gif").resolve())


# --------------------------------------------------------------------------- batch


def test_the_anime_column_is_read_and_checked(tmp_path) -> None:
    from babygan import batch

    csv = tmp_path / "pairs.csv"
    csv.write_text(
        "father,mother,name,anime\n"
        "dad.jpg,mum.jpg,a,yes\n"
        "dad.jpg,mum.jpg,b,\n"
        "dad.jpg,mum.jpg,c,FALSE\n"
        "dad.jpg,mum.jpg,d,1\n"
        "dad.jpg,mum.jpg,e,maybe\n"
    )
    rows = batch.read_pairs(csv)
    assert [r.overrides.get("anime") for r in rows[:4]] == [True, None, False, True]
    assert all(r.ok is None for r in rows[:4])
    assert rows[4].ok is False
    assert (
        rows[4].error == "pairs.csv line 6: anime='maybe' is not one of true, false, yes, no, 1, 0 (or empty)"
    )
    from babygan.pipeline import ChildOptions

    base = ChildOptions(anime=True, anime_seed=5)
    assert batch._row_options(base, rows[2].overrides).anime is False
    assert batch._row_options(base, rows[1].overrides).anime is True  # empty: the command's
    assert "anime" not in batch._row_options(base, rows[2].overrides).to_json()


@pytest.mark.slow
def test_batch_writes_anime_children_only_for_those_rows(tiny, tmp_path) -> None:
    csv = tmp_path / "pairs.csv"
    dad, mum = tiny["dad"], tiny["mum"]
    csv.write_text(
        f"father,mother,name,anime\n{dad},{mum},a,yes\n{dad},{mum},b,\n{mum},{dad},c,no\n{dad},{mum},d,x\n"
    )
    out = tmp_path / "out"
    res = _run(["batch", csv, "-o", out, *_model_args(tiny)], expect=1)  # row d fails
    assert "pairs.csv line 5: anime='x' is not one of" in res.output
    assert (out / "a" / "child_anime.png").is_file()
    assert not (out / "b" / "child_anime.png").exists() and not (out / "c" / "child_anime.png").exists()
    assert not (out / "d").exists()
    done = json.loads((out / "a" / "done.json").read_text())
    assert "child_anime.png" in done["files"] and done["inputs"]["options"]["anime"] is True
    assert json.loads((out / "a" / "child.json").read_text())["anime"]["sha256"] == sha256_file(tiny["anime"])
    # --resume keeps the rows done, anime or not
    res = _run(["batch", csv, "-o", out, "--resume", *_model_args(tiny)], expect=1)
    summary = {r["name"]: r for r in json.loads((out / "batch.json").read_text())}
    assert [summary[n]["ok"] for n in "abcd"] == [True, True, True, False]


# --------------------------------------------------------------------------- the Python API


@pytest.mark.slow
def test_python_api_predict_with_anime_returns_the_anime_child(tiny) -> None:
    import babygan

    options = babygan.ChildOptions(
        anime=True, aging=AgingSettings(steps=0), resemblance=False, estimate=False
    )
    result = babygan.predict(tiny["dad"], tiny["mum"], options, _session(tiny))
    child = result.children[0]
    assert child.anime is not None and child.anime.dtype == np.uint8
    assert child.anime.shape == child.image.shape == (256, 256, 3)  # a 32 px model's child, shown at 256
    assert not np.array_equal(child.anime, child.image)
    assert result.anime is not None and result.anime["swap_layer"] == SWAP
    plain = babygan.predict(tiny["dad"], tiny["mum"], babygan.ChildOptions(aging=AgingSettings(steps=0),
                            resemblance=False, estimate=False), _session(tiny))  # fmt: skip
    assert plain.children[0].anime is None and plain.anime is None


# --------------------------------------------------------------------------- serve


def _asgi(app: Any, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI app, in process: (status, body bytes). ASGI spec 2.4: a file
    is sent whole (under 2.4 Starlette streams it while it waits for a disconnect, which this
    ``receive`` reports at once)."""
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"}, "http_version": "1.1",
        "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def _post(app: Any, path: str, payload: Any) -> tuple[int, Any]:
    status, body = _asgi(app, "POST", path, json.dumps(payload).encode())
    return status, json.loads(body)


def _png(app: Any, url: str) -> np.ndarray:
    status, body = _asgi(app, "GET", url)
    assert status == 200
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


@pytest.mark.slow
def test_serve_anime_switch_and_another_style(tiny, tmp_path) -> None:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from babygan.web.app import create_app
    from babygan.web.service import WebService

    session = _session(tiny)
    encoded: list[int] = []
    real_encode = session._encode

    def counting(images: np.ndarray, masks: Any = None, stepping: Any = None) -> np.ndarray:
        encoded.append(len(images))
        return real_encode(images, masks, stepping)

    session._encode = counting  # type: ignore[method-assign]
    service = WebService(session, tmp_path / "work", directions=("age",), anime=True)
    service.prepare()
    app = create_app(service)
    status, info = _asgi(app, "GET", "/api/info")
    assert status == 200 and json.loads(info)["anime"] is True
    ids = [service.add_photo(p.read_bytes(), p.name)["id"] for p in (tiny["dad"], tiny["mum"])]
    who = {"father": {"photo": ids[0]}, "mother": {"photo": ids[1]}}

    status, plain = _post(app, "/api/predict", who)
    assert status == 200 and "anime" not in plain["children"][0]
    status, first = _post(app, "/api/predict", {**who, "anime": True})
    assert status == 200, first
    child, anime = _png(app, first["children"][0]["url"]), _png(app, first["children"][0]["anime"])
    assert anime.shape == child.shape and not np.array_equal(anime, child)
    assert sum(encoded) == 2  # both parents, once

    # another style: the same child (its code kept by the service), no encode, the seed's style
    styles = {}
    for seed in (1, 2, 1):
        status, answer = _post(app, "/api/anime", {"run": first["run"], "seed": seed})
        assert status == 200 and answer["seed"] == seed, answer
        image = _png(app, answer["children"][0]["anime"])
        assert image.shape == child.shape
        if seed in styles:
            assert np.array_equal(image, styles[seed])  # the same seed: the same image
        styles[seed] = image
    assert not np.array_equal(styles[1], styles[2]) and not np.array_equal(styles[1], anime)
    assert sum(encoded) == 2
    # the style take of a seed is the one predict draws with that anime_seed
    status, seeded = _post(app, "/api/predict", {**who, "anime": True, "anime_seed": 2})
    assert np.array_equal(_png(app, seeded["children"][0]["anime"]), styles[2])
    status, default = _post(app, "/api/anime", {"run": first["run"], "seed": None})
    assert status == 200 and np.array_equal(_png(app, default["children"][0]["anime"]), anime)

    for payload, code, message in [
        ({"run": plain["run"], "seed": 1}, 404, "no anime child to restyle"),
        ({"run": "../etc", "seed": 1}, 400, "run: expected a run"),
        ({"run": first["run"], "seed": -1}, 400, "seed: expected a whole number >= 0"),
        ({"run": first["run"], "seed": "x"}, 400, "seed: expected a whole number >= 0"),
    ]:
        status, answer = _post(app, "/api/anime", payload)
        assert (status, message in answer["error"]) == (code, True), answer
    status, answer = _post(app, "/api/predict", {**who, "anime": "yes"})
    assert status == 400 and "anime: expected true or false" in answer["error"]


@pytest.mark.slow
def test_serve_without_an_anime_model_offers_no_switch(tiny, tmp_path) -> None:
    pytest.importorskip("starlette", reason="the web extra is not installed")
    from babygan.errors import BabyganError
    from babygan.web.app import create_app
    from babygan.web.service import WebService

    service = WebService(_session(tiny, anime=False), tmp_path / "work", directions=("age",))
    service.prepare()  # no anime model: no switch, and the page still works
    app = create_app(service)
    assert json.loads(_asgi(app, "GET", "/api/info")[1])["anime"] is False
    ids = [service.add_photo(p.read_bytes(), p.name)["id"] for p in (tiny["dad"], tiny["mum"])]
    status, answer = _post(app, "/api/predict", {"father": {"photo": ids[0]}, "mother": {"photo": ids[1]},
                                                 "anime": True})  # fmt: skip
    assert status == 400 and "has no anime model" in answer["error"]
    required = WebService(_session(tiny, anime=False), tmp_path / "work2", directions=("age",), anime=True)
    with pytest.raises(BabyganError, match="no anime model"):
        required.prepare()  # --anime-model given (or required) and none loads: serve fails at start


# --------------------------------------------------------------------------- the page, in a browser


@pytest.mark.slow
def test_browser_anime_switch_and_another_style(tiny, tmp_path) -> None:
    """The page: the anime switch shows the anime child beside the child; "another style"
    changes it and leaves the child as it is."""
    import os

    from test_serve import Server, _chrome

    driver = _chrome(tmp_path / "profile", tmp_path / "chromedriver.log")  # skips without a browser
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    env = {**os.environ, "BABYGAN_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    args = ["--model", str(tiny["model"]), "--directions", str(tiny["directions"]),
            "--anime-model", str(tiny["anime"]), "--perceptual", "pixel", "--iterations", "2",
            "--quiet", "--offline"]  # fmt: skip
    server = Server(args, env, tiny["folder"])
    try:

        def wait(condition: Any, what: str, seconds: float = 90) -> Any:
            try:
                return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition())
            except TimeoutException:
                message = driver.find_element(By.ID, "message").text
                raise AssertionError(f"timed out waiting for {what}; page message: {message!r}") from None

        driver.get(server.url)
        wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"), "the page")
        assert driver.find_element(By.ID, "anime-switch").is_displayed()
        driver.find_element(By.ID, "anime").click()
        driver.find_element(By.ID, "father-file").send_keys(str(tiny["dad"]))
        driver.find_element(By.ID, "mother-file").send_keys(str(tiny["mum"]))
        anime = driver.find_element(By.ID, "anime-image")
        wait(lambda: anime.get_attribute("data-anime-seed") == "default", "the anime child")
        child_src = driver.find_element(By.ID, "child-image").get_attribute("src")
        before = anime.get_attribute("src")
        driver.find_element(By.ID, "another-style").click()
        wait(lambda: anime.get_attribute("data-anime-seed") == "0", "another style")
        assert anime.get_attribute("src") != before
        assert driver.find_element(By.ID, "child-image").get_attribute("src") == child_src  # the same child
    finally:
        driver.quit()
        server.stop()
