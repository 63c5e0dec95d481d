"""Benchmark `predict` and a 19-frame age sweep with the full-size 1024 architecture (random weights).

Prints one JSON object. No download: the generator is the FFHQ architecture with random
weights, the directions are the real BabyGAN files where ../shared/directions has them
(random (18, 512) arrays otherwise), the parents are two real photos from ../shared/faces
(or scikit-image's astronaut and its mirror image).

The full default encode (EncoderSettings().iterations) takes long on a CPU, so by default it is timed
at a few iterations and extrapolated: per-iteration time from a warm run of
``--iterations-b`` steps, the one-off cost (graph tracing, the first step) from a cold run
of ``--iterations-a`` steps. ``--full`` runs the whole default encode instead.
``child_render_and_resemblance_s`` is the child once its parents are encoded: the blend, the
aging that keeps the likeness (its step traced on first use, then the default steps), the
render and the resemblance; the sweep's figure includes every frame's aging.

    python scripts/bench_predict.py [--perceptual pixel|vgg16] [--precision fp32|bf16] [--full]
    KERAS_BACKEND=jax python scripts/bench_predict.py ...
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BABYGAN_SHARED", REPO.parent / "shared"))


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _photos(folder: Path) -> tuple[Path, Path, str]:
    father, mother = SHARED / "faces" / "family_father.jpg", SHARED / "faces" / "family_mother.jpg"
    if father.is_file() and mother.is_file():
        return father, mother, "shared/faces family_father.jpg + family_mother.jpg"
    import skimage.data
    from PIL import Image

    face = np.ascontiguousarray(skimage.data.astronaut()[0:260, 120:380])
    Image.fromarray(face).save(folder / "a.png")
    Image.fromarray(np.ascontiguousarray(face[:, ::-1])).save(folder / "b.png")
    return folder / "a.png", folder / "b.png", "skimage astronaut + mirror"


def _directions(folder: Path, num_layers: int, w_dim: int) -> tuple[Path, str]:
    real = SHARED / "directions"
    if (real / "age.npy").is_file():
        return real, "shared/directions (BabyGAN's)"
    d = folder / "directions"
    d.mkdir()
    rng = np.random.default_rng(0)
    for name in ("age", "gender", "smile"):
        np.save(d / f"{name}.npy", rng.standard_normal((num_layers, w_dim)) * 0.1)
    return d, "random"


def _random_vgg16(path: Path) -> Path:
    """A randomly initialised Keras VGG16 (no top) saved in the legacy .h5 layout of the registry file."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    model = keras.applications.VGG16(include_top=False, weights=None)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--perceptual",
        choices=["pixel", "vgg16"],
        default="pixel",
        help="vgg16 needs the VGG16 weights in the cache (or a download)",
    )
    ap.add_argument("--iterations-a", type=int, default=2, help="cold encode run (includes tracing)")
    ap.add_argument("--iterations-b", type=int, default=4, help="warm encode run (per-iteration time)")
    ap.add_argument(
        "--default-iterations",
        type=int,
        default=None,
        help="the encode to extrapolate to (default: the encoder's default iterations)",
    )
    ap.add_argument(
        "--full", action="store_true", help="run the whole default encode instead of extrapolating"
    )
    ap.add_argument("--frames", type=int, default=19)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument(
        "--random-vgg16",
        action="store_true",
        help="with --perceptual vgg16: a randomly initialised VGG16 in the registry file's layout "
        "(the real file cannot be fetched offline; the cost is the same)",
    )
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_predict."))
    # a fresh cache: "new parents" must never be found in an earlier run's latent cache
    os.environ["BABYGAN_HOME"] = str(tmp / "home")
    from babygan import backend, outputs, pipeline
    from babygan.align import align_photo
    from babygan.encoder import Encoder, EncoderSettings
    from babygan.session import Session
    from babygan.stylegan import random_generator

    figures: dict[str, object] = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
        "python": sys.version.split()[0],
        "architecture": "StyleGAN FFHQ 1024 (18 layers), random weights",
        "perceptual": args.perceptual,
        "precision": args.precision,
        "keras_backend": backend.name(),
        # Other processes on the machine slow every figure: the load average says how busy it was.
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    t = time.perf_counter()
    G0 = random_generator(1024, fmap_base=8192, fmap_max=512, seed=0)
    model = G0.save(tmp / "ffhq-random.npz")
    num_layers, w_dim = G0.num_layers, G0.w_dim
    del G0
    figures["build_and_save_s"] = round(time.perf_counter() - t, 2)

    vgg16: dict[str, str] = {}
    if args.perceptual == "vgg16" and args.random_vgg16:
        vgg16 = {"vgg16_weights": str(_random_vgg16(tmp / "vgg16_random_notop.h5"))}
        figures["vgg16_weights"] = "random, registry layout"
    if args.default_iterations is None:
        args.default_iterations = EncoderSettings().iterations
    figures["encoder_iterations"] = args.default_iterations
    iters_a = args.default_iterations if args.full else args.iterations_a
    settings = EncoderSettings(
        iterations=iters_a, perceptual=args.perceptual, precision=args.precision, **vgg16
    )
    father, mother, figures["photos"] = _photos(tmp)
    directions, figures["directions"] = _directions(tmp, num_layers, w_dim)
    session = Session(
        model, directions_dir=directions, encoder=settings, progress=False, precision=args.precision
    )
    t = time.perf_counter()
    G = session.generator  # what a command pays: the model file read, its directions checked
    _ = G.runtime
    figures["load_generator_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    aligned = [align_photo(p, output_size=G.resolution).image for p in (father, mother)]
    figures["align_two_photos_s"] = round(time.perf_counter() - t, 2)

    t = time.perf_counter()
    session.parents([(father, None), (mother, None)])  # align + encode both (batch of 2), cold
    t_parents = time.perf_counter() - t
    figures[f"align_and_encode_cold_{iters_a}_iterations_s"] = round(t_parents, 2)

    if not args.full:
        settings_b = EncoderSettings(
            iterations=args.iterations_b, perceptual=args.perceptual, precision=args.precision, **vgg16
        )
        encoder = Encoder(G, settings_b)
        encoder.encode(np.stack(aligned), progress=False)  # compiles its step
        t = time.perf_counter()
        encoder.encode(np.stack(aligned), progress=False)
        t_b = time.perf_counter() - t
        per_it = t_b / args.iterations_b
        one_off = max(0.0, t_parents - figures["align_two_photos_s"] - iters_a * per_it)
        figures["encode_per_iteration_both_parents_s"] = round(per_it, 2)
        figures["encode_one_off_s"] = round(one_off, 2)
        encode_default = one_off + args.default_iterations * per_it
        figures["encode_default_extrapolated_s"] = round(encode_default, 1)
    else:
        encode_default = t_parents - figures["align_two_photos_s"]
        figures["encode_default_measured_s"] = round(encode_default, 1)

    opts = pipeline.ChildOptions()  # genes 0.5, age 10
    t = time.perf_counter()
    result = pipeline.predict(father, mother, opts, session)  # parents cached: blend, render, resemblance
    t_child = time.perf_counter() - t
    t = time.perf_counter()
    outputs.write_prediction(result, tmp / "out")
    t_write = time.perf_counter() - t
    figures["child_render_and_resemblance_s"] = round(t_child, 2)
    figures["write_outputs_s"] = round(t_write, 2)
    total = figures["load_generator_s"] + figures["align_two_photos_s"] + encode_default + t_child + t_write
    key = "predict_new_parents_measured_s" if args.full else "predict_new_parents_extrapolated_s"
    figures[key] = round(total, 1)

    ages = np.linspace(1, 50, args.frames)
    t = time.perf_counter()
    sweep = pipeline.age_sweep(father, mother, opts, session, ages=ages)
    t_sweep = time.perf_counter() - t
    t = time.perf_counter()
    outputs.write_sweep(sweep, tmp / "sweep", gif=True, fps=8)
    t_sweep_write = time.perf_counter() - t
    figures[f"age_sweep_{args.frames}_frames_render_s"] = round(t_sweep, 2)
    figures[f"age_sweep_{args.frames}_frames_write_gif_s"] = round(t_sweep_write, 2)
    figures[f"age_sweep_{args.frames}_frames_new_process_s"] = round(
        figures["load_generator_s"] + figures["align_two_photos_s"] + t_sweep + t_sweep_write, 1
    )
    figures["peak_rss_mb"] = round(_peak_rss_mb())
    figures["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
