"""Benchmark the StyleGAN generator: speed and peak memory at full FFHQ size, and load times.

Prints one JSON object. Each part runs in its own process so peak RSS is its own:

  speed     the full 1024 FFHQ architecture with random weights (no download): seconds per
            image for mapping + synthesis after warm-up, at batch 1 and batch 4, peak RSS,
            once per precision (fp32 and bf16 side by side)
  fidelity  at 1024 px, the largest difference of fp32 and bf16 renders from a float64
            evaluation of the same network (x the image's std), and bf16's PSNR against fp32
            (peak-to-peak 2, the [-1, 1] range: clipped to it as a PNG shows, and unclipped)
  fidelity_builtin
            the same on real faces, with the built-in model: its renders of real photos
            (encoded by its E) and of 32 samples
  load      load times: the reference pickle (first load = unpickle + convert + cache write,
            then from the converted cache in a fresh process), a saved full-size npz, and a
            full-size official-format pickle written with tests/official_pickle.py

    python scripts/bench_generator.py [--parts speed,fidelity,fidelity_builtin,load] [--repeats 3]
        [--precision fp32,bf16] [--batches 1,4] [--fidelity-batches 1,4]
    KERAS_BACKEND=jax python scripts/bench_generator.py --parts speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = (
    Path(os.environ.get("BABYGAN_SHARED", REPO.parent / "shared")) / "reference" / "stylegan-ref-128.pkl"
)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _full_size(precision: str = "fp32"):
    from babygan.stylegan import Generator, random_generator

    G = random_generator(resolution=1024, fmap_base=8192, fmap_max=512, seed=0)
    return Generator(G.config, G.params, source_sha256=G.source_sha256, minibatch=4, precision=precision)


def part_speed(repeats: int, precision: str, batches: list[int]) -> dict:
    import numpy as np

    from babygan import backend

    t0 = time.perf_counter()
    G = _full_size(precision)
    import babygan

    result: dict = {
        "babygan": str(Path(babygan.__file__).parent),
        "build_s": round(time.perf_counter() - t0, 2),
        "precision": precision,
        "backend": backend.name(),
    }
    for batch in batches:
        z = np.random.RandomState(batch).randn(batch, G.z_dim)
        t0 = time.perf_counter()
        G.synthesis(G.mapping(z, 0.7, 8))  # warm-up: traces (and compiles) for this batch size
        warmup = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(repeats):
            c0, t0 = _cpu_s(), time.perf_counter()
            images = G.synthesis(G.mapping(z, 0.7, 8))
            times.append((time.perf_counter() - t0) / batch)
            cpu.append((_cpu_s() - c0) / batch)
        assert images.shape == (batch, 1024, 1024, 3)
        result[f"batch{batch}"] = {
            "warmup_s": round(warmup, 2),
            "s_per_image_median": round(statistics.median(times), 3),
            "s_per_image_min": round(min(times), 3),
            # CPU seconds (all threads) per image: less sensitive to other processes than wall time
            "cpu_s_per_image_median": round(statistics.median(cpu), 3),
            "peak_rss_mb_so_far": round(_peak_rss_mb()),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    return result


def _psnr(a, b, peak: float) -> float:
    import numpy as np

    return round(float(10 * np.log10(peak**2 / np.mean((a.astype(np.float64) - b) ** 2))), 1)


def _fidelity(G, w, what: dict) -> dict:
    """fp32 and bf16 renders of w by G against G's float64 evaluation."""
    import numpy as np
    from keras import ops

    from babygan.stylegan import network

    params64 = {n: ops.convert_to_tensor(a.astype(np.float64)) for n, a in G.params.items()}
    t0 = time.perf_counter()
    ref = ops.convert_to_numpy(
        network.synthesis(params64, w.astype(np.float64), G.config, compute_dtype="float64")
    )
    float64_s = time.perf_counter() - t0
    fp32 = G.with_precision("fp32").synthesis(w)
    bf16 = G.with_precision("bf16").synthesis(w)
    std = float(ref.std())

    def clip(a: np.ndarray) -> np.ndarray:
        return np.clip(a, -1.0, 1.0)

    return {
        **what,
        "resolution": G.resolution,
        "float64_eval_s": round(float64_s, 1),
        "output_std": round(std, 3),
        "output_range": [round(float(ref.min()), 2), round(float(ref.max()), 2)],
        "fraction_outside_unit_range": round(float(np.mean(np.abs(ref) > 1)), 3),
        "fp32_maxdiff_over_std": float(f"{np.abs(fp32 - ref).max() / std:.3g}"),
        "fp32_meandiff_over_std": float(f"{np.abs(fp32 - ref).mean() / std:.3g}"),
        "bf16_maxdiff_over_std": float(f"{np.abs(bf16 - ref).max() / std:.3g}"),
        # PSNR, peak-to-peak 2 (the [-1, 1] range a PNG shows): on the images clipped to [-1, 1]
        # as a user sees them, and on the raw outputs (random weights leave that range)
        "bf16_psnr_vs_fp32_clipped_db": _psnr(clip(bf16), clip(fp32), 2.0),
        "bf16_psnr_vs_fp32_unclipped_db": _psnr(bf16, fp32, 2.0),
        "fp32_psnr_vs_float64_clipped_db": _psnr(clip(fp32), clip(ref), 2.0),
        # the earlier figure: the image's own spread (4 std) as the peak-to-peak range
        "bf16_psnr_vs_fp32_spread_db": _psnr(bf16, fp32, 4 * std),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def part_fidelity(batch: int) -> dict:
    """fp32 and bf16 renders against float64, at 1024 px, for ``batch`` images (random weights)."""
    import numpy as np

    G = _full_size()
    w = G.mapping(np.random.RandomState(11).randn(batch, G.z_dim), 0.7, 8)
    return _fidelity(G, w, {"model": "FFHQ architecture, random weights", "batch": batch})


def part_fidelity_builtin(samples: int) -> dict:
    """The same on real faces: the built-in model's renders of E's codes of the aligned real
    photos in ../shared/faces, and of ``samples`` random samples (z at psi 1)."""
    import numpy as np

    from babygan.align import Crop, align_photo
    from babygan.builtin import builtin_model_file
    from babygan.stylegan import load_generator

    G = load_generator(builtin_model_file())
    faces_dir = REFERENCE.parent.parent / "faces"
    names = ["obama.jpg", "biden.jpg", "tom_cruise.jpg", "family_father.jpg", "family_mother.jpg"]
    scale = Crop.from_dict(G.info.get("crop")).scale
    faces = np.stack(
        [align_photo(faces_dir / n, output_size=G.resolution, crop_scale=scale).image for n in names]
    )
    encoded = _fidelity(G, G.encode_faces(faces), {"model": "built-in", "images": f"E's codes of {names}"})
    w = G.mapping(np.random.RandomState(11).randn(samples, G.z_dim), 1.0)
    sampled = _fidelity(G, w, {"model": "built-in", "images": f"{samples} samples, psi 1"})
    return {"real_photos_encoded": encoded, "samples": sampled}


def _timed(fn) -> tuple[object, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 3)


def part_load(step: str, path: str) -> dict:
    import numpy as np

    from babygan.stylegan import load_generator

    G, seconds = _timed(lambda: load_generator(path))
    rss_after_load = _peak_rss_mb()
    # then what a command pays before its first image: TensorFlow import, graph build and trace
    w = np.tile(G.dlatent_avg, (1, G.num_layers, 1))
    _, first = _timed(lambda: G.synthesis(w))
    return {
        "step": step,
        "load_s": seconds,
        "then_first_image_s": first,
        "resolution": G.resolution,
        "peak_rss_mb_after_load": round(rss_after_load),
        "peak_rss_mb": round(_peak_rss_mb()),
    }


def part_prepare_full(workdir: str) -> dict:
    """A full-size npz, and an official-format pickle as large as the released one.

    The released file holds (G, D, Gs) with G and D full size too (310 MiB); here G and D
    are independent copies of Gs's arrays, which gives a file of about that size.
    """
    sys.path.insert(0, str(REPO / "tests"))
    from official_pickle import dumps, official_gs

    from babygan.stylegan import Generator

    G = _full_size()
    npz, npz_s = _timed(lambda: G.save(Path(workdir) / "full.npz"))

    def copy() -> Generator:
        return Generator(G.config, {k: v.copy() for k, v in G.params.items()}, source_sha256="copy")

    def write() -> Path:
        path = Path(workdir) / "full.pkl"
        path.write_bytes(dumps((official_gs(copy()), official_gs(copy()), official_gs(G))))
        return path

    pkl, pkl_s = _timed(write)
    return {
        "npz_bytes": npz.stat().st_size,
        "pkl_bytes": pkl.stat().st_size,
        "save_npz_s": npz_s,
        "write_pkl_s": pkl_s,
    }


def _child(args: list[str], env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], env=env, check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="speed,fidelity,fidelity_builtin,load")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="fp32,bf16", help="precisions to time, comma-separated")
    ap.add_argument("--batches", default="1,4", help="batch sizes the speed part times")
    ap.add_argument("--fidelity-batches", default="1,4")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "speed":
            res = part_speed(int(rest[0]), rest[1], [int(b) for b in rest[2].split(",")])
        elif kind == "fidelity":
            res = part_fidelity(int(rest[0]))
        elif kind == "fidelity_builtin":
            res = part_fidelity_builtin(int(rest[0]))
        elif kind == "load":
            res = part_load(rest[0], rest[1])
        else:
            res = part_prepare_full(rest[0])
        print(json.dumps(res))
        return

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    report: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
        },
    }
    parts = args.parts.split(",")
    if "speed" in parts:
        for precision in args.precision.split(","):
            report[f"speed_1024_{precision}"] = _child(
                ["speed", str(args.repeats), precision, args.batches], env
            )
    if "fidelity" in parts:
        batches = [int(b) for b in args.fidelity_batches.split(",")]
        report["fidelity_1024"] = [_child(["fidelity", str(b)], env) for b in batches]
    if "fidelity_builtin" in parts:
        report["fidelity_builtin"] = _child(["fidelity_builtin", "32"], env)
    if "load" in parts:
        with tempfile.TemporaryDirectory() as home:
            env_l = {**env, "BABYGAN_HOME": home}
            loads = {}
            if REFERENCE.is_file():
                loads["reference_pkl_first"] = _child(["load", "convert", str(REFERENCE)], env_l)
                loads["reference_pkl_cached"] = _child(["load", "cached", str(REFERENCE)], env_l)
            loads["full_prepare"] = _child(["prepare", home], env_l)
            loads["full_npz"] = _child(["load", "npz", str(Path(home) / "full.npz")], env_l)
            loads["full_pkl_first"] = _child(["load", "convert", str(Path(home) / "full.pkl")], env_l)
            loads["full_pkl_cached"] = _child(["load", "cached", str(Path(home) / "full.pkl")], env_l)
            report["load"] = loads
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
