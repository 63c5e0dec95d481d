"""A cold offline ``babygan predict`` with the built-in model: wall time, and where it goes.

Each run is a new process with an empty BABYGAN_HOME (no cached encodings), offline, no
``--model``: what a newcomer's first command costs. With ``--later`` every run finds what an
earlier, unmeasured run left in its home (traced graphs, XLA kernels, file hashes: see
babygan/backend/graph_store.py) except the photos' encodings: a cold command on new photos, after
the first one. ``--profile`` runs one more under cProfile and prints the stages' cumulative
times.

    python scripts/bench_cold_predict.py --runs 3
    python scripts/bench_cold_predict.py --runs 3 --later
    python scripts/bench_cold_predict.py --runs 1 --profile

Prints the load average with the figures: measure on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACES = ROOT.parent / "shared" / "faces"

#: the stages of a predict, as functions whose cumulative time cProfile reports
STAGES = {
    "import babygan.cli (click, numpy)": "cli/__init__.py:<module>",
    "start the backend (TensorFlow import)": "backend/__init__.py:start",
    "load the generator": "generator.py:load_generator",
    "align the photos": "align.py:align_photo",
    "encode (E, then the refinement steps)": "encoder.py:encode_cached",
    "age the child (likeness held)": "aging.py:edit",
    "its anchors (blend render, dlib landmarks)": "aging.py:anchors",
    "render": "session.py:synthesize",
    "resemblance (dlib)": "session.py:resemblance",
    "estimate (attribute network)": "session.py:estimate",
    "write the files": "outputs.py:write_prediction",
}


def predict_command(out: Path, extra: list[str]) -> list[str]:
    photos = [str(FACES / "obama.jpg"), str(FACES / "family_mother.jpg")]
    return [*photos, "-o", str(out), "--offline", "--quiet", *extra]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--later", action="store_true", help="runs find what an earlier run kept, no encodings")
    ap.add_argument("extra", nargs="*", help="more predict options, after --")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("babygan")
    print(f"load average before: {os.getloadavg()}")
    kept = None  # --later: the home every run starts from (a copy, so each run finds the same)
    if args.later:
        kept = Path(tempfile.mkdtemp(prefix="babygan-home-"))
        env = {**os.environ, "BABYGAN_HOME": str(kept)}
        subprocess.run([str(exe), "predict", *predict_command(kept / "out", args.extra)], env=env, check=True)
        shutil.rmtree(kept / "out")
        shutil.rmtree(kept / "latents")
        print(f"an unmeasured run kept: {', '.join(sorted(p.name for p in kept.iterdir()))}")
    times = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            if kept is not None:
                shutil.copytree(kept, home, dirs_exist_ok=True)
            env = {**os.environ, "BABYGAN_HOME": home}
            t0 = time.perf_counter()
            subprocess.run(
                [str(exe), "predict", *predict_command(Path(home) / "out", args.extra)], env=env, check=True
            )
            times.append(time.perf_counter() - t0)
            print(f"cold predict: {times[-1]:.2f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    if times:
        print(f"median {sorted(times)[len(times) // 2]:.2f} s over {len(times)} runs")
    if args.profile:
        with tempfile.TemporaryDirectory() as home:
            if kept is not None:
                shutil.copytree(kept, home, dirs_exist_ok=True)
            env = {**os.environ, "BABYGAN_HOME": home}
            prof = Path(home) / "predict.prof"
            argv = ["babygan", "predict", *predict_command(Path(home) / "out", args.extra)]
            code = f"import sys; from babygan.cli import main; sys.argv = {argv!r}; main()"
            script = Path(home) / "predict.py"
            script.write_text(code + "\n")
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "cProfile", "-o", str(prof), str(script)]
            subprocess.run(cmd, env=env, check=False)
            print(f"profiled run: {time.perf_counter() - t0:.2f} s")
            stats = pstats.Stats(str(prof))
            for what, key in STAGES.items():
                file, func = key.split(":")
                found = [
                    (v[3], k)
                    for k, v in stats.stats.items()
                    if k[0].endswith(file) and k[2] == func  # type: ignore[attr-defined]
                ]
                total = sum(t for t, _ in found)
                print(f"  {what:45s} {total:6.2f} s")
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
