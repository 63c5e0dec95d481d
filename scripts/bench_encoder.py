#!/usr/bin/env python
"""Speed and memory of the encoder at 1024 px on this machine; prints JSON.

    python scripts/bench_encoder.py                 # s/iteration + peak RSS, batch 1 and 2
    python scripts/bench_encoder.py --full          # also a whole default encode of two parents

Every measurement runs in a fresh child process, so its peak RSS (ru_maxrss) is its own.
The generator is the full FFHQ architecture with random weights
(``random_generator(1024, fmap_base=8192, fmap_max=512)``): the cost is the same as
with the trained weights. The VGG16 weights file cannot be downloaded here, so a
randomly initialised VGG16 is saved in the same legacy .h5 layout and used instead
(again the same cost as the real file). Seconds per iteration are the difference
between a long and a short run divided by the extra iterations, so tracing and
setup are left out; the full encode's time includes everything after the generator
is built (tracing, VGG16 build, 100 iterations, the final render).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _setup(batch: int, perceptual: str):
    import numpy as np

    from babygan.stylegan import random_generator, to_uint8

    G = random_generator(resolution=1024, fmap_base=8192, fmap_max=512, seed=0)
    w = G.mapping(np.random.RandomState(1).randn(batch, G.z_dim).astype(np.float32), truncation_psi=0.7)
    targets = to_uint8(G.synthesis(w))  # uint8 (batch, 1024, 1024, 3): stand-ins for aligned parents
    vgg = ""
    if perceptual == "vgg16":
        import h5py
        import keras
        from keras.src.legacy.saving import legacy_h5_format

        vgg = str(Path(tempfile.mkdtemp()) / "random_vgg16_notop.h5")
        keras.utils.set_random_seed(0)
        with h5py.File(vgg, "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(
                f, keras.applications.VGG16(include_top=False, weights=None)
            )
    return G, targets, vgg


def encode(G, images, settings: object, progress: bool = False):
    """One fresh Encoder's optimisation (a new compiled step each time, as a fresh process has)."""
    from babygan.encoder import Encoder

    return Encoder(G, settings).encode(images, progress=progress)


def child_speed(batch: int, short: int, long: int, perceptual: str) -> dict:
    from babygan.encoder import EncoderSettings

    G, targets, vgg = _setup(batch, perceptual)
    kw = {"perceptual": perceptual, "batch_size": batch, "init": "dlatent_avg"}
    if vgg:
        kw["vgg16_weights"] = vgg
    t0 = time.perf_counter()
    encode(G, targets, EncoderSettings(iterations=1, **kw), progress=False)  # traces the step
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    encode(G, targets, EncoderSettings(iterations=short, **kw), progress=False)
    t_short = time.perf_counter() - t0
    t0 = time.perf_counter()
    encode(G, targets, EncoderSettings(iterations=long, **kw), progress=False)
    t_long = time.perf_counter() - t0
    per_iter = (t_long - t_short) / (long - short)
    return {
        "batch": batch,
        "perceptual": perceptual,
        "seconds_per_iteration": round(per_iter, 3),
        "seconds_per_iteration_per_image": round(per_iter / batch, 3),
        "first_call_seconds_incl_tracing": round(first, 1),
        "iterations_timed": [short, long],
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def child_full(perceptual: str, iterations: int) -> dict:
    from babygan.encoder import EncoderSettings

    G, targets, vgg = _setup(2, perceptual)
    kw = {"perceptual": perceptual, "iterations": iterations}
    if vgg:
        kw["vgg16_weights"] = vgg
    t0 = time.perf_counter()
    result = encode(G, targets, EncoderSettings(**kw), progress=False)
    seconds = time.perf_counter() - t0
    return {
        "what": f"whole default encode of two parents ({iterations} iterations, batch 2, {perceptual})",
        "seconds": round(seconds, 1),
        "loss_first": [round(float(x), 2) for x in result.loss_history[0]],
        "loss_best": [round(float(x), 2) for x in result.best_loss],
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def _run_child(args: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {
            "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"rc {proc.returncode}"
        }
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--perceptual", default="vgg16", choices=["vgg16", "pixel"])
    parser.add_argument("--short", type=int, default=2, help="iterations of the short timed run")
    parser.add_argument("--long", type=int, default=6, help="iterations of the long timed run")
    parser.add_argument("--batches", default="1,2", help="batch sizes to time")
    parser.add_argument("--full", action="store_true", help="also time a whole default encode of two parents")
    parser.add_argument("--full-iterations", type=int, default=100)
    args = parser.parse_args()

    if args.child:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        kind, *rest = args.child
        if kind == "speed":
            out = child_speed(int(rest[0]), int(rest[1]), int(rest[2]), rest[3])
        else:
            out = child_full(rest[0], int(rest[1]))
        print(json.dumps(out))
        return

    import platform

    report: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or 'cpu'}",
        "device": "CPU",
        "generator": "random_generator(1024, fmap_base=8192, fmap_max=512): FFHQ layout, random weights",
        "vgg16": "random VGG16 in the legacy .h5 layout (same cost as the real weights)",
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    for batch in (int(b) for b in args.batches.split(",")):
        report["runs"].append(
            _run_child(["speed", str(batch), str(args.short), str(args.long), args.perceptual])
        )
    if args.full:
        report["full"] = _run_child(["full", args.perceptual, str(args.full_iterations)])
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
