"""The model registry against a real HTTP server on 127.0.0.1.

Each test writes a small extra manifest ($BABYGAN_MANIFEST) whose entries point at
the local server, so every failure mode of a real download is exercised without
the internet: success with progress, checksum mismatch, a truncated transfer, 404,
connection refused, mirror fallback, reuse of the cache, and repair of a corrupt file.
"""

from __future__ import annotations

import bz2
import collections
import hashlib
import http.server
import socket
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from babygan import models
from babygan.cli import main
from babygan.errors import ModelFileError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, big enough for a visible progress bar
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class FileServer:
    """A threaded HTTP server: routes map a path to (body, mode); hits count requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits[self.path] += 1
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, mode = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if mode == "truncate":
                    # Promise the whole body, send half, hang up.
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    srv = FileServer()
    yield srv
    srv.close()


def _refused_url() -> str:
    """A URL on a port nobody listens on (bound then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/gone.bin"


def write_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entries: list[dict]) -> None:
    lines = []
    for e in entries:
        lines.append("[[file]]")
        for key, value in e.items():
            if isinstance(value, list):
                lines.append(f"{key} = [" + ", ".join(f'"{v}"' for v in value) + "]")
            elif isinstance(value, int):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
    path = tmp_path / "extra-manifest.toml"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("BABYGAN_MANIFEST", str(path))


def entry(name: str, urls: list[str], sha256: str = PAYLOAD_SHA, **extra) -> dict:
    return {
        "name": name,
        "kind": "test",
        "size": len(PAYLOAD),
        "sha256": sha256,
        "licence": "test licence",
        "urls": urls,
        **extra,
    }


def leftovers(directory: Path) -> list[str]:
    """Files in the models dir other than complete ones and their hash stamps."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir())


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_fetch_success_shows_progress_and_licence(server, tmp_path, monkeypatch):
    server.routes["/w.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"])])

    result = run("models", "fetch", "w.bin")

    assert result.exit_code == 0, result.output
    path = models.models_dir() / "w.bin"
    assert path.read_bytes() == PAYLOAD
    assert result.stdout.strip() == str(path)
    assert "licence: test licence" in result.stderr
    assert "1.00MB" in result.stderr  # size announced before the download
    assert "100%" in result.stderr and "B/s" in result.stderr  # tqdm bar with bytes and rate
    listing = run("models", "list")
    row = next(line for line in listing.stdout.splitlines() if line.startswith("w.bin"))
    assert "present" in row and " ok " in row


def test_checksum_mismatch_deletes_and_names_both_hashes(server, tmp_path, monkeypatch):
    server.routes["/w.bin"] = (b"not the weights" * 1000, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"])])

    result = run("models", "fetch", "w.bin")

    got = hashlib.sha256(b"not the weights" * 1000).hexdigest()
    assert result.exit_code == 1
    assert f"expected sha256 {PAYLOAD_SHA}, got {got}" in result.stderr
    assert leftovers(models.models_dir()) == []


@pytest.mark.parametrize("pinned", [True, False], ids=["pinned", "unpinned"])
def test_truncated_transfer_is_refused(server, tmp_path, monkeypatch, pinned):
    server.routes["/w.bin"] = (PAYLOAD, "truncate")
    sha = PAYLOAD_SHA if pinned else ""
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"], sha256=sha)])

    result = run("models", "fetch", "w.bin")

    assert result.exit_code == 1
    assert "w.bin: could not download it" in result.stderr
    assert "cut short" in result.stderr or "checksum mismatch" in result.stderr
    assert leftovers(models.models_dir()) == []


def test_404_and_refused_connection_give_one_clear_error(server, tmp_path, monkeypatch):
    refused = _refused_url()
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/missing.bin", refused])])

    result = run("models", "fetch", "w.bin")

    assert result.exit_code == 1
    error = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error) == 1
    line = error[0]
    assert "w.bin: could not download it" in line
    assert f"{server.url}/missing.bin (HTTP 404)" in line
    assert f"{refused} (connection refused)" in line
    assert f"save it as {models.models_dir() / 'w.bin'}" in line
    assert leftovers(models.models_dir()) == []


def test_falls_back_to_the_next_mirror(server, tmp_path, monkeypatch):
    server.routes["/second/w.bin"] = (PAYLOAD, "ok")
    urls = [f"{server.url}/first/w.bin", f"{server.url}/second/w.bin"]
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", urls)])

    result = run("models", "fetch", "w.bin")

    assert result.exit_code == 0, result.output
    assert server.hits["/first/w.bin"] == 1 and server.hits["/second/w.bin"] == 1
    assert (models.models_dir() / "w.bin").read_bytes() == PAYLOAD


def test_babygan_mirror_is_tried_first(server, tmp_path, monkeypatch):
    server.routes["/mirror/w.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/official/w.bin"])])
    monkeypatch.setenv("BABYGAN_MIRROR", f"{server.url}/mirror/")

    path = models.fetch("w.bin", progress=False, echo=lambda _m: None)

    assert path.read_bytes() == PAYLOAD
    assert server.hits == {"/mirror/w.bin": 1}


def test_cached_file_is_reused_without_a_request(server, tmp_path, monkeypatch):
    server.routes["/w.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"], aliases=["wee"])])

    first = models.resolve_model_file("wee", echo=lambda _m: None)
    second = models.resolve_model_file("w.bin", echo=lambda _m: None)

    assert first == second
    assert server.hits["/w.bin"] == 1


def test_corrupt_cache_is_caught_by_verify_and_replaced_by_fetch(server, tmp_path, monkeypatch):
    server.routes["/w.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"])])
    assert run("models", "fetch", "w.bin").exit_code == 0
    path = models.models_dir() / "w.bin"
    with open(path, "r+b") as f:  # flip bytes in place, as a bad disk would
        f.seek(1000)
        f.write(b"\xff" * 16)

    verify = run("models", "verify", "w.bin")
    assert verify.exit_code == 1
    assert "w.bin: MISMATCH" in verify.stdout and f"expected sha256 {PAYLOAD_SHA}" in verify.stdout

    fetched = run("models", "fetch", "w.bin")
    assert fetched.exit_code == 0, fetched.output
    assert "does not match its sha256; downloading it again" in fetched.stderr
    assert path.read_bytes() == PAYLOAD
    assert run("models", "verify", "w.bin").stdout.strip() == "w.bin: ok"
    assert server.hits["/w.bin"] == 2


def test_bz2_mirror_is_decompressed_and_verified(server, tmp_path, monkeypatch):
    packed = bz2.compress(PAYLOAD)
    server.routes["/w.bin.bz2"] = (packed, "ok")
    write_manifest(
        tmp_path,
        monkeypatch,
        [entry("w.bin", [f"{server.url}/w.bin.bz2"], sha256_bz2=hashlib.sha256(packed).hexdigest())],
    )

    path = models.fetch("w.bin", progress=False, echo=lambda _m: None)

    assert path.read_bytes() == PAYLOAD
    assert leftovers(path.parent) == [".w.bin.sha256", "w.bin"]


def test_unpinned_file_is_accepted_and_shown_as_unpinned(server, tmp_path, monkeypatch):
    server.routes["/u.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("u.bin", [f"{server.url}/u.bin"], sha256="")])

    result = run("models", "fetch", "u.bin")
    assert result.exit_code == 0, result.output
    assert f"unpinned); downloaded file has sha256 {PAYLOAD_SHA}" in result.stderr
    row = next(line for line in run("models", "list").stdout.splitlines() if line.startswith("u.bin"))
    assert "unpinned" in row
    assert run("models", "verify", "u.bin").stdout.strip() == f"u.bin: unpinned, sha256 {PAYLOAD_SHA}"


def test_models_dir_option_and_path_command(server, tmp_path, monkeypatch):
    server.routes["/w.bin"] = (PAYLOAD, "ok")
    write_manifest(tmp_path, monkeypatch, [entry("w.bin", [f"{server.url}/w.bin"])])
    target = tmp_path / "my-models"

    result = run("--models-dir", str(target), "models", "fetch", "w.bin")
    assert result.exit_code == 0, result.output
    assert (target / "w.bin").read_bytes() == PAYLOAD
    assert run("--models-dir", str(target), "models", "path", "w.bin").stdout.strip() == str(target / "w.bin")


def test_path_command_for_the_real_registry():
    result = run("models", "path", "ffhq")
    assert result.exit_code == 0
    assert result.stdout.strip() == str(models.models_dir() / "karras2019stylegan-ffhq-1024x1024.pkl")


def test_offline_names_the_file_and_how_to_get_it():
    with pytest.raises(ModelFileError) as err:
        models.resolve_model_file("age", offline=True)
    message = str(err.value)
    assert message.startswith("age.npy: not in")
    assert "--offline" in message and "babygan models fetch age.npy" in message
    assert "raw.githubusercontent.com/tg-bomze/BabyGAN" in message


def test_unreachable_real_host_fails_cleanly(monkeypatch):
    """The real registry entry, with every URL replaced by a dead local port."""
    dead = _refused_url()
    monkeypatch.setattr(models, "_candidate_urls", lambda e: [dead])
    result = run("models", "fetch", "smile")
    assert result.exit_code == 1
    assert f"smile.npy: could not download it; tried {dead} (connection refused)" in result.stderr
    assert leftovers(models.models_dir()) == []


def test_local_path_is_accepted_and_unknown_names_are_explained(tmp_path):
    own = tmp_path / "my.pkl"
    own.write_bytes(b"x")
    assert models.resolve_model_file(own) == own
    with pytest.raises(ModelFileError, match=r"^nope: not a file path that exists, nor a known model name"):
        models.resolve_model_file("nope")
    with pytest.raises(ModelFileError, match=r"missing\.pkl: no such file"):
        models.resolve_model_file(tmp_path / "missing.pkl")


def test_fetch_without_names_is_a_usage_error():
    result = run("models", "fetch")
    assert result.exit_code == 2
    assert "--all" in result.output


def test_manifest_pins_the_known_hashes():
    """The hashes published in DESIGN.md and the directions README are the ones pinned."""
    m = models.manifest()
    assert m["karras2019stylegan-ffhq-1024x1024.pkl"].sha256.startswith("f277a437")
    assert m["age.npy"].sha256.startswith("14bc83a3")
    assert m["vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"].size == 58_889_256
    assert not m["vgg16_zhang_perceptual.pkl"].pinned
    for e in m.values():
        assert e.urls and e.licence
        assert all(u.startswith("https://") or u.endswith(".bz2") for u in e.urls)
        assert "drive" not in e.urls[0] or len(e.urls) == 1  # Google Drive only as the last resort
    assert "CC BY-NC 4.0" in m["karras2019stylegan-ffhq-1024x1024.pkl"].licence
