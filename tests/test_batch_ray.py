"""`babygan batch --ray` on a real Ray cluster: the local batch's files, bit for bit, with a worker
killed mid-run, a batch stopped and resumed, and bad rows reported.

One cluster for the module (`ray start --head` on 127.0.0.1, free ports, 2 CPUs, no dashboard),
stopped in a finaliser. The records name the batch's folder, so every run writes into the same
folder and the local batch's files are moved aside first: then the files compare byte for byte.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, shared_path

from babygan.batch import run_batch
from babygan.cli import main
from babygan.outputs import DONE_FILE
from babygan.pipeline import ChildOptions
from babygan.session import Session

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'babygan[ray]')")
from babygan.distributed.ray_batch import RayWorkers  # noqa: E402  (needs ray)

pytestmark = pytest.mark.slow

# The built-in model with a short encode; the CLI's batch adds batch_size 1 and the precision
# to what was typed, and records these settings in each row's done.json.
CLI_FAST = ["--model", "builtin", "--iterations", "2", "--perceptual", "pixel"]
CLI_FAST += ["--precision", "fp32", "--offline", "--quiet"]
ENCODER = {"batch_size": 1, "iterations": 2, "perceptual": "pixel", "precision": "fp32"}
SETTINGS = {"model": "builtin", "directions": None, "encoder": ENCODER, "precision": "fp32"}
OPEN_SESSION = functools.partial(
    Session, "builtin", encoder=ENCODER, offline=True, progress=False, precision="fp32"
)
ROWS = [  # (name, father, mother): six good rows, a missing photo and a photo without a face
    ("a", "family_father.jpg", "family_mother.jpg"),
    ("b", "tom_cruise.jpg", "obama_small.jpg"),
    ("c", "ffhq/00000.png", "ffhq/00001.png"),
    ("d", "ffhq/00002.png", "missing.jpg"),
    ("e", "ffhq/00003.png", "no_face_dogs.jpg"),
    ("f", "family_father.jpg", "ffhq/00001.png"),
    ("g", "ffhq/00004.png", "family_mother.jpg"),
    ("h", "obama_small.jpg", "ffhq/00002.png"),
]
GOOD = ["a", "b", "c", "f", "g", "h"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ours(temp_dir: Path) -> list[int]:
    """PIDs of the processes of our cluster (their command lines name its temp dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(temp_dir) in (proc / "cmdline").read_bytes().decode(
                errors="replace"
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _stop_cluster(proc: subprocess.Popen, temp_dir: Path) -> None:
    """`ray start --block` and its processes (one process group), then any worker of ours left."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 10  # workers leave by themselves once their raylet is gone
    while _ours(temp_dir) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in _ours(temp_dir):  # still there (they have sessions of their own): by PID
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A Ray head on 127.0.0.1 with 2 CPUs; this process is its driver. Its workers import this
    checkout's babygan and keep their latent cache in a folder of their own."""
    # Ray's socket paths must stay under 108 characters: a short temp dir
    temp_dir = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))
    unset = ("BABYGAN_MIRROR", "BABYGAN_MODELS_DIR", "BABYGAN_MANIFEST")
    env = {
        **{k: v for k, v in os.environ.items() if k not in unset},
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "BABYGAN_HOME": str(tmp_path_factory.mktemp("ray-home")),
        "BABYGAN_PRECISION": "fp32",
        "RAY_USAGE_STATS_ENABLED": "0",
        # a private cluster on 127.0.0.1: no token (Ray would take the user's ~/.ray/auth_token)
        "RAY_AUTH_MODE": "disabled",
    }
    port = _free_port()
    ports = ["--ray-client-server-port", "--dashboard-port", "--dashboard-agent-listen-port"]
    ports += ["--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port"]
    ports += ["--node-manager-port", "--object-manager-port"]
    args = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block"]
    args += ["--node-ip-address", "127.0.0.1", "--port", str(port), "--num-cpus", "2"]
    args += ["--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", str(temp_dir)]
    for opt in ports:
        args += [opt, str(_free_port())]
    log = open(temp_dir / "ray-start.log", "w")  # noqa: SIM115  (closed in the finaliser)
    proc = subprocess.Popen(args, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")  # this process is the cluster's driver
    # module fixtures run outside conftest's per-test home: this process's cache is its own too
    # (not the workers': they encode every photo themselves)
    patch.setenv("BABYGAN_HOME", str(tmp_path_factory.mktemp("driver-home")))
    patch.setenv("BABYGAN_PRECISION", "fp32")
    for name in unset:
        patch.delenv(name, raising=False)
    try:
        address = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                ray.init(address=address, log_to_driver=False, logging_level="ERROR")
                break
            except (ConnectionError, RuntimeError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        ray.shutdown()
        patch.undo()
        _stop_cluster(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def pool(cluster):
    """Two workers for the module's library runs, started at once (their models load while the
    local batch runs). Half a CPU each, so that Ray has a CPU left for a worker of the CLI's."""
    with RayWorkers(OPEN_SESSION, workers=2, cpus_per_worker=0.5) as workers:
        workers._grow(2)
        yield workers


@pytest.fixture(scope="module")
def batch(tmp_path_factory, pool):
    """The pairs CSV, and the local batch's files (moved to ``local``) for every run to equal."""
    base = tmp_path_factory.mktemp("batch")
    faces = shared_path("faces")
    lines = ["father,mother,name"] + [f"{faces / f},{faces / m},{n}" for n, f, m in ROWS]
    csv = base / "pairs.csv"
    csv.write_text("\n".join(lines) + "\n")
    out = base / "out"
    res = CliRunner().invoke(main, ["batch", str(csv), "-o", str(out), *CLI_FAST])
    assert res.exit_code == 1 and "2 of 8 pairs failed" in res.output, res.output + repr(res.exception)
    out.rename(base / "local")
    return {"csv": csv, "out": out, "local": base / "local"}


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_same_files(got: Path, want: Path, *, skip: tuple[str, ...] = ()) -> None:
    a, b = _files(got), _files(want)
    assert sorted(a) == sorted(b)
    differ = [name for name in a if name not in skip and a[name] != b[name]]
    assert not differ, f"files differ from the local batch's: {differ}"


def _summary(folder: Path) -> list[dict]:
    return json.loads((folder / "batch.json").read_text())


def test_ray_batch_equals_the_local_batch(batch, pool):
    out = batch["out"]
    shutil.rmtree(out, ignore_errors=True)
    rows = run_batch(batch["csv"], out, ChildOptions(), runner=pool.rows, settings=SETTINGS)
    assert [r.name for r in rows if r.ok] == GOOD
    # the bad rows are reported as the local batch reports them, and the others finish
    by_name = {r.name: r for r in rows}
    assert by_name["d"].error == f"{shared_path('faces') / 'missing.jpg'}: no such file"
    assert by_name["e"].error.endswith("no_face_dogs.jpg: no face found")
    assert str(shared_path("faces")) in by_name["e"].error  # not the worker's copy of the photo
    # every file bit for bit: child.npy/.png/.json, sheet.png, done.json and batch.json
    _assert_same_files(out, batch["local"])
    assert sorted(p.name for p in (out / "a").iterdir()) == [
        "child.json", "child.npy", "child.png", DONE_FILE, "sheet.png",
    ]  # fmt: skip
    assert not (out / "d").exists() and not (out / "e").exists()


def test_stopped_and_resumed_ends_as_one_run(batch, pool):
    out = batch["out"]
    shutil.rmtree(out, ignore_errors=True)
    ended: list[str] = []

    def ctrl_c_after_three(row):
        ended.append(row.name)
        if len(ended) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(
            batch["csv"], out, ChildOptions(), runner=pool.rows, settings=SETTINGS, on_row=ctrl_c_after_three
        )
    summary = {r["name"]: r for r in _summary(out)}  # written on the way out
    done = [n for n in ended if summary[n]["ok"]]
    assert set(ended) == {n for n, r in summary.items() if r["ok"] is not None}
    assert all(r["error"].startswith("not done") for r in summary.values() if r["ok"] is None)
    assert not [p for p in out.rglob("*") if ".part" in p.name]  # nothing half-written
    assert [n for n in GOOD if (out / n / DONE_FILE).exists()] == sorted(done)
    stamps = {n: (out / n / DONE_FILE).stat().st_mtime_ns for n in done}

    again: list[str] = []
    rows = run_batch(
        batch["csv"],
        out,
        ChildOptions(),
        runner=pool.rows,
        settings=SETTINGS,
        resume=True,
        on_row=lambda r: again.append(r.name),
    )
    assert sorted(r.name for r in rows) == sorted(again)  # every row reported once
    assert {n: (out / n / DONE_FILE).stat().st_mtime_ns for n in done} == stamps  # kept, not run again
    _assert_same_files(out, batch["local"])


def test_cli_resumes_a_local_batch_on_ray(batch, cluster):
    """`--resume --ray`: the local batch's finished rows are kept (their done.json checks out on
    this path too), and the rows that failed run again, on a worker the CLI starts."""
    out = batch["out"]
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(batch["local"], out)
    (out / "batch.json").unlink()
    args = ["batch", str(batch["csv"]), "-o", str(out), "--resume", f"--ray={cluster}", "--workers", "1"]
    res = CliRunner().invoke(main, [*args, *CLI_FAST])
    assert res.exit_code == 1 and "2 of 8 pairs failed" in res.output, res.output + repr(res.exception)
    assert "FAILED  e: " in res.output and "no_face_dogs.jpg: no face found" in res.output
    _assert_same_files(out, batch["local"])


def test_a_killed_worker_loses_no_row(batch, pool):
    out = batch["out"]
    shutil.rmtree(out, ignore_errors=True)
    ended: list[str] = []
    killed: list[int] = []

    def kill_after_first_row(row):
        ended.append(row.name)
        if not killed and row.worker:
            # its next row is already on its way to it: the worker dies mid-row
            pid = int(row.worker.split()[-1])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    rows = run_batch(
        batch["csv"], out, ChildOptions(), runner=pool.rows, settings=SETTINGS, on_row=kill_after_first_row
    )
    assert killed
    assert Counter(ended) == Counter(n for n, _, _ in ROWS)  # each row ended once
    assert [r.name for r in rows if r.ok] == GOOD
    assert sum(r.retries for r in rows) == 1  # the killed worker's row, started again once
    (retried,) = [r for r in rows if r.retries]
    assert retried.worker is not None and int(retried.worker.split()[-1]) != killed[0]
    _assert_same_files(out, batch["local"], skip=("batch.json",))
    got = [{**r, "retries": 0} for r in _summary(out)]
    assert got == _summary(batch["local"])
