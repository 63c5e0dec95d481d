"""``babygan serve``: the server starts, answers, survives bad input, predicts, and a real
browser (Debian's headless Chromium, driven by Selenium) uploads two photos, moves the
age slider and sees a new child.

One server runs for the module (a subprocess, as a user starts it: ``python -m babygan
serve``) on a tiny 32 px generator with pixel-loss, two-step encoding, bound to 127.0.0.1
on a free port. The last test stops it and checks that its temporary folder is gone.
"""

from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, shared_path
from PIL import Image
from pipeline_fixtures import make_photos, make_tiny_model

from babygan.errors import BabyganError

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
START_TIMEOUT = 120  # s: TensorFlow's import and the tiny model's first build, on 2 busy cores
REQUEST_TIMEOUT = 60
UPLOAD_LIMIT_MB = 1


# --------------------------------------------------------------------------- no server needed


def test_without_the_web_extra_one_line_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from babygan.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # find_spec() then reports it missing
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0] and "[web]" in lines[0], result.output


def test_serve_module_imports_nothing_heavy() -> None:
    code = (
        "import sys, babygan.cli, babygan.cli.serve, babygan.web; "
        "print([m for m in ('tensorflow', 'keras', 'dlib', 'starlette', 'uvicorn') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_loopback_addresses() -> None:
    from babygan.web.server import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "example.org"))


def test_a_busy_port_is_a_one_line_error() -> None:
    from babygan.web.server import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(BabyganError, match=f"cannot listen on 127.0.0.1:{port}"):
            bind("127.0.0.1", port)


def test_predict_parameters_are_checked(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from babygan.edit_ranges import DEFAULT_RANGES
    from babygan.web.service import Photo, WebError, WebService

    service = WebService(SimpleNamespace(edit_ranges=DEFAULT_RANGES), tmp_path)  # type: ignore[arg-type]
    service.directions = ["age", "gender"]
    photo = Photo("0123456789abcdef", "dad.jpg", tmp_path / "x", (10, 10), [(0, 0, 5, 5)], 1)
    service._photos[photo.id] = photo
    good = {"father": {"photo": photo.id, "face": None}, "mother": {"photo": photo.id, "face": 1}}
    _, _, options = service._parse({**good, "age": 30, "shifts": {"gender": 1.5}, "children": 2})
    assert options.shifts == (("gender", 1.5),) and options.children == 2 and options.face_mother == 1
    for bad, message in [
        ({**good, "father": {"photo": "../../etc"}}, "unknown photo"),
        ({**good, "mother": {"photo": photo.id, "face": 2}}, "no face 2"),
        ({**good, "genes": "lots"}, "genes: expected a number"),
        ({**good, "genes": 3}, "genes"),
        ({**good, "age": float("nan")}, "age: nan is not a finite number; allowed: 0 to 80 years"),
        ({**good, "age": 1e9}, "age: 1e\\+09 is outside 0 to 80 years"),
        ({**good, "shifts": {"gender": 11}}, "shifts.gender: 11 is outside -10 to 10"),
        ({**good, "shifts": {"beard": 1}}, "unknown direction 'beard'"),
        ({**good, "children": 1000}, "siblings: between 1 and"),
        ({**good, "style": "aunt"}, "style"),
        ([1, 2], "expected a JSON object"),
    ]:
        with pytest.raises(WebError, match=message):
            service._parse(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the server


class Server:
    """A ``babygan serve`` subprocess and a tiny HTTP client for it (bounded waits everywhere)."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "babygan", "serve", "--host", "127.0.0.1", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=cwd,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout.put), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()
        self.url = self._expect(r"serving on (http://\S+)")
        self.workdir = Path(self._expect(r"temporary files in (\S+)"))

    @staticmethod
    def _pump(stream: Any, put: Any) -> None:
        for line in stream:
            put(line)

    def _expect(self, pattern: str) -> str:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            match = re.search(pattern, line)
            if match:
                return match.group(1)
        self.kill()
        raise AssertionError(f"babygan serve did not print {pattern!r}; stderr:\n{''.join(self.stderr)}")

    def request(
        self, path: str, data: bytes | None = None, content_type: str = "application/octet-stream"
    ) -> tuple[int, bytes, dict[str, str]]:
        url = path if path.startswith("http") else self.url + path.lstrip("/")
        req = urllib.request.Request(url, data=data)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as resp:
                return resp.status, resp.read(), dict(resp.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)

    def api(
        self, path: str, payload: Any = None, *, raw: bytes | None = None, name: str = ""
    ) -> tuple[int, Any]:
        if raw is not None:
            status, body, _ = self.request(f"{path}?name={urllib.request.quote(name)}", raw)
        elif payload is not None:
            status, body, _ = self.request(path, json.dumps(payload).encode(), "application/json")
        else:
            status, body, _ = self.request(path)
        return status, json.loads(body)

    def upload(self, path: Path) -> dict[str, Any]:
        status, answer = self.api("/api/photo", raw=path.read_bytes(), name=path.name)
        assert status == 200, answer
        return answer

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        for pump in self._pumps:
            pump.join(timeout=5)
        return self.proc.returncode

    def printed(self) -> str:
        """What it printed on stdout since the lines _expect() read."""
        lines = []
        while not self.stdout.empty():
            lines.append(self.stdout.get_nowait())
        return "".join(lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("serve-tiny")
    model, directions = make_tiny_model(folder)
    dad, mum = make_photos(folder)
    return {"folder": folder, "model": model, "directions": directions, "dad": dad, "mum": mum}


@pytest.fixture(scope="module")
def server(tiny: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serve-home")
    env = {**os.environ, "BABYGAN_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    for var in ("BABYGAN_MIRROR", "BABYGAN_MODELS_DIR", "BABYGAN_MANIFEST"):
        env.pop(var, None)
    args = [
        "--model", str(tiny["model"]), "--directions", str(tiny["directions"]),
        "--perceptual", "pixel", "--iterations", "2", "--quiet", "--offline",
        "--max-upload-mb", str(UPLOAD_LIMIT_MB),
    ]  # fmt: skip
    srv = Server(args, env, tiny["folder"])
    yield srv
    srv.stop()


def _params(dad: dict[str, Any], mum: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"father": {"photo": dad["id"], "face": None}, "mother": {"photo": mum["id"], "face": None}, **kw}


def _png(srv: Server, url: str) -> np.ndarray:
    status, body, _ = srv.request(url)
    assert status == 200
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


@pytest.mark.slow
def test_server_starts_and_answers(server: Server) -> None:
    status, page, headers = server.request("/")
    assert (
        status == 200
        and b"<title>babygan</title>" in page
        and headers["content-type"].startswith("text/html")
    )
    assert server.request("/static/app.js")[0] == 200
    status, info = server.api("/api/info")
    assert status == 200
    assert info["resolution"] == 32
    assert [d["name"] for d in info["directions"]] == ["gender", "smile"]  # age has its own slider
    assert info["max_upload_bytes"] == UPLOAD_LIMIT_MB * 2**20
    assert server.api("/api/status") == (200, {"stage": None, "seconds": 0.0, "queued": 0})
    assert server.workdir.is_dir()


@pytest.mark.slow
def test_bad_input_gets_a_clear_message_and_the_server_stays_up(server: Server, tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    Image.new("RGB", (200, 200), (128, 128, 128)).save(blank)
    bomb = tmp_path / "bomb.png"  # ~90 Mpx of one colour: a few kB of PNG, over Pillow's limit
    Image.new("1", (10_000, 9_000)).save(bomb)
    cases = [
        (b"these are my holiday notes", "notes.txt", 400, "notes.txt: not an image"),
        (b"", "empty.jpg", 400, "empty.jpg: the file is empty"),
        (blank.read_bytes(), "wall.png", 400, "wall.png: no face found"),
        (bomb.read_bytes(), "bomb.png", 400, "bomb.png: image too large"),
        (os.urandom(UPLOAD_LIMIT_MB * 2**20 + 1000), "big.jpg", 413, "over the upload limit of 1.0 MB"),
    ]
    for data, name, code, message in cases:
        status, answer = server.api("/api/photo", raw=data, name=name)
        assert (status, message in answer.get("error", "")) == (code, True), (name, answer)
        assert str(server.workdir) not in answer["error"]  # the user's file name, not our copy's
    status, body, _ = server.request("/api/predict", b"{not json", "application/json")
    assert status == 400 and b"not valid JSON" in body
    unknown = {"father": {"photo": "0" * 16}, "mother": {"photo": "1" * 16}}
    status, answer = server.api("/api/predict", unknown)
    assert status == 404 and "upload it again" in answer["error"]
    assert server.request("/files/r00001/../../etc/passwd")[0] == 404
    assert server.api("/api/info")[0] == 200 and server.proc.poll() is None


@pytest.mark.slow
def test_predict_sliders_siblings_downloads_and_gif(server: Server, tiny: dict[str, Path]) -> None:
    dad, mum = server.upload(tiny["dad"]), server.upload(tiny["mum"])
    assert server.upload(tiny["dad"])["id"] == dad["id"]  # the same bytes: the same photo
    status, first = server.api("/api/predict", _params(dad, mum, age=10))
    assert status == 200, first
    child = _png(server, first["children"][0]["url"])
    assert child.shape == (256, 256, 3)  # a 32 px model's child, shown at 256 px
    # A slider move predicts from the cached latents: a different child (that no encode runs
    # is checked in process: test_a_slider_move_encodes_nothing).
    status, older = server.api("/api/predict", _params(dad, mum, age=50, shifts={"gender": 1.0}))
    assert status == 200 and older["run"] != first["run"]
    assert not np.array_equal(_png(server, older["children"][0]["url"]), child)
    status, kids = server.api("/api/predict", _params(dad, mum, children=3, seed=4))
    assert [c["name"] for c in kids["children"]] == ["child_01", "child_02", "child_03"]
    status, _, headers = server.request(kids["sheet"] + "?download=1")
    assert status == 200 and "attachment" in headers["content-disposition"]
    # Concurrent requests queue behind one lock; each gets its answer.
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda a: server.api("/api/predict", _params(dad, mum, age=a)), (5, 15, 25, 35))
        )
    assert [s for s, _ in answers] == [200] * 4 and len({a["run"] for _, a in answers}) == 4
    status, sweep = server.api("/api/sweep", _params(dad, mum))
    assert status == 200, sweep
    status, gif, _ = server.request(sweep["gif"])
    assert gif[:4] == b"GIF8" and Image.open(io.BytesIO(gif)).n_frames == 19


def test_a_slider_move_encodes_nothing(tiny: dict[str, Path], tmp_path: Path) -> None:
    """The web service encodes each photo once: later predictions with other sliders reuse it.
    Its start-up warms the aging step, so the first child has nothing left to trace."""
    from babygan.session import Session
    from babygan.web.service import WebService

    session = Session(
        tiny["model"], directions_dir=tiny["directions"], encoder={"perceptual": "pixel", "iterations": 2},
        progress=False, offline=True,
    )  # fmt: skip
    encoded: list[int] = []
    real_encode = session._encode

    def counting(images: np.ndarray, masks: Any = None, stepping: Any = None) -> np.ndarray:
        encoded.append(len(images))
        return real_encode(images, masks, stepping)

    session._encode = counting  # type: ignore[method-assign]
    service = WebService(session, tmp_path / "work", directions=("age", "gender"))
    service.prepare()
    assert session.ager is not None and session.ager.is_warm(1)
    dad = service.add_photo(tiny["dad"].read_bytes(), "dad.png")
    mum = service.add_photo(tiny["mum"].read_bytes(), "mum.png")
    first = service.predict(_params(dad, mum, age=10))
    assert sum(encoded) == 2  # both parents, once
    older = service.predict(_params(dad, mum, age=50, shifts={"gender": 1.0}))
    assert sum(encoded) == 2 and older["run"] != first["run"]


@pytest.mark.slow
def test_a_group_photo_offers_its_faces(server: Server, tiny: dict[str, Path]) -> None:
    group = server.upload(shared_path("faces", "group_2_faces.jpg"))
    assert [f["index"] for f in group["faces"]] == [1, 2]
    for face in group["faces"]:
        status, thumb, _ = server.request(face["thumb"])
        assert status == 200 and Image.open(io.BytesIO(thumb)).size[0] <= 96
    mum = server.upload(tiny["mum"])
    params = _params(group, mum)
    params["father"]["face"] = 2
    status, answer = server.api("/api/predict", params)
    assert status == 200 and answer["faces"]["father"] == 2


def _chrome(profile: Path, log: Path) -> Any:
    """Headless Debian Chromium through Debian's chromedriver: no browser download, no network
    beyond 127.0.0.1; skips (saying why) where either is not installed."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(
            f"no browser: {CHROMIUM} and {CHROMEDRIVER} are needed (.ci/install-browser installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-proxy-server", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={profile}", "--window-size=1200,900",
    ):  # fmt: skip
        options.add_argument(arg)
    # Both paths given: Selenium Manager (which could download a driver) is never asked.
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER), log_output=str(log)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


def _save_screenshot(driver: Any, tmp_path: Path) -> None:
    """Always into tmp_path; also to $BABYGAN_SERVE_SCREENSHOT (e.g. docs/serve.png), made small."""
    shot = tmp_path / "serve.png"
    driver.save_screenshot(str(shot))
    target = os.environ.get("BABYGAN_SERVE_SCREENSHOT")
    if target:
        path = REPO / target  # an absolute target stays as it is
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(shot).convert("RGB")
        image.save(path, optimize=True)
        if path.stat().st_size > 300_000:  # README images stay small: 256 colours are plenty for a page
            image.quantize(colors=256).save(path, optimize=True)


@pytest.mark.slow
def test_browser_uploads_two_photos_moves_age_and_sees_a_new_child(server: Server, tmp_path: Path) -> None:
    father = shared_path("faces", "family_father.jpg")
    mother = shared_path("faces", "family_mother.jpg")
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _chrome(tmp_path / "profile", tmp_path / "chromedriver.log")
    try:

        def wait(condition: Any, what: str, seconds: float = 60) -> Any:
            try:
                return WebDriverWait(driver, seconds, poll_frequency=0.2).until(lambda d: condition())
            except TimeoutException:
                message = driver.find_element(By.ID, "message").text
                raise AssertionError(f"timed out waiting for {what}; page message: {message!r}") from None

        driver.get(server.url)
        wait(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute("data-ready"), "the page")
        # A file that is not an image: a message in the page, and the page still works.
        notes = tmp_path / "notes.txt"
        notes.write_text("not a photo")
        driver.find_element(By.ID, "father-file").send_keys(str(notes))
        wait(lambda: "not an image" in driver.find_element(By.ID, "message").text, "the error message")

        driver.find_element(By.ID, "father-file").send_keys(str(father))
        driver.find_element(By.ID, "mother-file").send_keys(str(mother))
        image = driver.find_element(By.ID, "child-image")
        first = wait(lambda: image.get_attribute("data-run"), "the first child", 90)
        assert not driver.find_element(By.ID, "message").is_displayed()
        before = _png(server, image.get_attribute("src"))

        age = driver.find_element(By.ID, "age")
        assert age.get_attribute("value") == "10"
        age.send_keys(Keys.ARROW_RIGHT * 5)  # the keyboard moves a focused range input one step a key
        assert age.get_attribute("value") == "15"
        wait(
            lambda: image.get_attribute("data-age") == "15" and image.get_attribute("data-run") != first,
            "the child at 15",
        )
        after = _png(server, image.get_attribute("src"))
        assert after.shape == before.shape and not np.array_equal(after, before)
        assert (
            driver.find_element(By.ID, "download-child")
            .get_attribute("href")
            .endswith("child.png?download=1")
        )
        _save_screenshot(driver, tmp_path)
    finally:
        driver.quit()


# Keep last: it stops the module's server.
@pytest.mark.slow
def test_stopping_removes_the_temporary_folder(server: Server, tiny: dict[str, Path]) -> None:
    server.upload(tiny["dad"])  # something in the folder
    assert any(server.workdir.rglob("*.upload"))
    assert server.stop() == 0
    assert not server.workdir.exists()
    assert "babygan: stopped" in server.printed()
    assert "Traceback" not in "".join(server.stderr)
