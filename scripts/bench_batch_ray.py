"""Benchmark `babygan batch` on this machine: the local batch against `--ray` with 1 and 2 workers.

Each run is a whole command in a fresh process with an empty cache (models loaded, every photo
aligned and encoded, a local Ray instance started and stopped for `--ray`), over the same pairs
of real photos from ../shared/faces, with the built-in model. Prints rows per minute, the load
average before and after each run (other work on the machine skews the figures: run it idle),
whether every run's child.npy equals the local batch's, a Markdown table for the README, and
one JSON object.

    python scripts/bench_batch_ray.py [--pairs 20] [--workers 1,2] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BABYGAN_SHARED", REPO.parent / "shared"))
#: photos of one face each (../shared/faces/README.md)
PHOTOS = [
    "family_father.jpg", "family_mother.jpg", "family_child.jpg", "obama.jpg", "biden.jpg",
    "obama_small.jpg", "tom_cruise.jpg", "alex_rgba.png",
    *(f"ffhq/0000{i}.png" for i in range(5)),
]  # fmt: skip


def _pairs_csv(folder: Path, n: int) -> Path:
    faces = SHARED / "faces"
    missing = [p for p in PHOTOS if not (faces / p).is_file()]
    if missing:
        sys.exit(f"bench_batch_ray: {faces} lacks {', '.join(missing)}")
    pairs = list(itertools.combinations(PHOTOS, 2))[:n]
    if len(pairs) < n:
        sys.exit(f"bench_batch_ray: at most {len(pairs)} pairs from {len(PHOTOS)} photos")
    lines = ["father,mother,name"] + [
        f"{faces / f},{faces / m},pair{i:02d}" for i, (f, m) in enumerate(pairs)
    ]
    csv = folder / "pairs.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def _run(label: str, csv: Path, folder: Path, extra: list[str], precision: str) -> dict:
    out = folder / label.replace(" ", "_")
    env = {
        **os.environ,
        "BABYGAN_HOME": str(folder / f"home_{out.name}"),  # an empty cache: every photo encoded
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    cmd = [sys.executable, "-m", "babygan", "batch", str(csv), "-o", str(out), "--model", "builtin"]
    cmd += ["--precision", precision, "--offline", "--quiet", *extra]
    load_before = os.getloadavg()
    start = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    load_after = os.getloadavg()
    rows = json.loads((out / "batch.json").read_text()) if (out / "batch.json").is_file() else []
    done = sum(1 for r in rows if r["ok"])
    if res.returncode != 0 or done != len(rows):
        print(res.stdout[-2000:], res.stderr[-2000:], file=sys.stderr)
    return {
        "run": label,
        "command": " ".join(["babygan", *cmd[3:]]),
        "exit_code": res.returncode,
        "rows": len(rows),
        "rows_done": done,
        "seconds": round(seconds, 1),
        "rows_per_minute": round(60.0 * done / seconds, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
        "out": out,
    }


def _same_children(a: Path, b: Path) -> bool:
    names = sorted(p.relative_to(a) for p in a.glob("*/child.npy"))
    return (
        bool(names)
        and names == sorted(p.relative_to(b) for p in b.glob("*/child.npy"))
        and all((a / n).read_bytes() == (b / n).read_bytes() for n in names)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--workers", default="1,2", help="comma-separated --ray worker counts")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",") if w]
    with tempfile.TemporaryDirectory(prefix="bench-batch-ray-") as tmp:
        folder = Path(tmp)
        csv = _pairs_csv(folder, args.pairs)
        runs = [_run("local", csv, folder, [], args.precision)]
        for n in workers:
            label = f"ray {n} worker" + ("s" if n > 1 else "")
            runs.append(_run(label, csv, folder, ["--ray", "--workers", str(n)], args.precision))
        for r in runs:
            r["same_child_npy_as_local"] = _same_children(r.pop("out"), folder / "local")
    print(f"| run | rows/min | seconds ({args.pairs} pairs) | load avg before -> after (1 min) |")
    print("| --- | --- | --- | --- |")
    for r in runs:
        print(
            f"| {r['run']} | {r['rows_per_minute']} | {r['seconds']} | "
            f"{r['load_before'][0]} -> {r['load_after'][0]} |"
        )
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    print(
        json.dumps(
            {"machine": machine, "pairs": args.pairs, "precision": args.precision, "runs": runs}, indent=2
        )
    )


if __name__ == "__main__":
    main()
