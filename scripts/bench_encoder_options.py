#!/usr/bin/env python
"""Adam vs L-BFGS, with and without the face mask, on the 128 px reference generator; prints JSON.

    python scripts/bench_encoder_options.py                  # Adam 100 vs L-BFGS 10, mask off/on
    python scripts/bench_encoder_options.py --adam 50 --lbfgs 5

Self-inversion: the target is the generator's own render of the reference dlatents
(../shared/reference/stylegan-ref-128.{pkl,npz}), so a perfect encoder reaches it exactly;
PSNR is measured on the whole image and inside the face mask. The loss is pbaylies' VGG16 +
pixel + MS-SSIM + L1 at 128 px. Without the registry's VGG16 file (no network here), a
randomly initialised VGG16 saved in the same legacy .h5 layout stands in: the same cost,
but its features are not ImageNet's. The random-weight generator draws no face, so the mask
is the face hull of a real photo (scikit-image's astronaut, aligned at 128 px, its dlib
landmarks carried into the crop), laid over the render.

Each configuration first runs one iteration to compile its step; the seconds are those of
the timed run after it. The load average before and after says whether the machine was busy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("BABYGAN_SHARED", REPO.parent / "shared"))


def _vgg16_file() -> tuple[str, str]:
    """(path, what it is): the registry's VGG16 weights when present, else a random stand-in."""
    from babygan.encoder.settings import VGG16_FILE
    from babygan.models import lookup, model_path

    real = model_path(lookup(VGG16_FILE))
    if real.is_file():
        return str(real), "the registry's ImageNet VGG16 weights"
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    path = Path(tempfile.mkdtemp()) / "random_vgg16_notop.h5"
    keras.utils.set_random_seed(0)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(
            f, keras.applications.VGG16(include_top=False, weights=None)
        )
    return str(path), "random VGG16 in the legacy .h5 layout (the registry file is absent): same cost"


def _astronaut_mask(size: int, scale: float):
    """float32 (size, size): the astronaut's face hull in her FFHQ-aligned crop."""
    import numpy as np
    import skimage.data
    from PIL import Image

    from babygan.align import align_photo
    from babygan.encoder.mask import aligned_landmarks, face_mask

    with tempfile.TemporaryDirectory() as tmp:
        photo = Path(tmp) / "astronaut.png"
        Image.fromarray(np.ascontiguousarray(skimage.data.astronaut()[0:260, 120:380])).save(photo)
        found = align_photo(photo, output_size=size)
    return face_mask(aligned_landmarks(found.face.landmarks, size), size, scale)


def _psnr(a, b, weight=None) -> float:
    import numpy as np

    diff = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if weight is None:
        mse = diff.mean()
    else:
        w = np.broadcast_to(weight[..., None], diff.shape)
        mse = (diff * w).sum() / w.sum()
    return round(float(10 * np.log10(255.0**2 / mse)), 2)


def load_reference():
    """(pickle path, its Generator in fp32, the reference arrays, the device line) of the 128 px
    reference generator in ../shared; exits with one line when it is absent."""
    import numpy as np

    from babygan import backend
    from babygan.stylegan import load_generator

    pkl = SHARED / "reference" / "stylegan-ref-128.pkl"
    if not pkl.is_file():
        sys.exit(f"{pkl}: the reference generator is absent (it lives in ../shared beside the checkout)")
    device = backend.start()
    return pkl, load_generator(pkl, precision="fp32"), np.load(pkl.with_suffix(".npz")), device


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--adam", type=int, default=100, help="Adam iterations")
    parser.add_argument("--lbfgs", type=int, default=10, help="L-BFGS iterations")
    parser.add_argument("--images", type=int, default=1, help="reference dlatents to invert")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    load_start = [round(x, 2) for x in os.getloadavg()]
    import numpy as np

    from babygan.encoder import Encoder, EncoderSettings
    from babygan.stylegan import to_uint8

    pkl, G, ref, device = load_reference()
    targets = to_uint8(G.synthesis(ref["dlatents"][: args.images]))  # uint8 (N, 128, 128, 3)
    vgg, vgg_note = _vgg16_file()
    base = EncoderSettings(
        perceptual="vgg16", vgg16_weights=vgg, init="dlatent_avg", batch_size=args.images, precision="fp32"
    )
    mask = _astronaut_mask(G.resolution, base.mask_scale)
    masks = np.broadcast_to(mask, (args.images, *mask.shape)).copy()

    runs = []
    for optimizer, iterations in (("adam", args.adam), ("lbfgs", args.lbfgs)):
        for face_mask in (False, True):
            settings = dataclasses.replace(
                base, optimizer=optimizer, iterations=iterations, face_mask=face_mask
            )
            encoder = Encoder(G, settings)
            warm = dataclasses.replace(settings, iterations=1)
            t0 = time.perf_counter()
            Encoder(G, warm).encode(targets, masks=masks, progress=False)  # compiles its step
            compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            result = encoder.encode(targets, masks=masks, progress=False)
            seconds = time.perf_counter() - t0
            recon = result.reconstructions
            runs.append(
                {
                    "optimizer": optimizer,
                    "iterations": iterations,
                    "iterations_run": result.iterations_run.tolist(),
                    "face_mask": face_mask,
                    "seconds": round(seconds, 1),
                    "first_call_seconds_incl_compile": round(compile_s, 1),
                    "psnr_start_db": _psnr(to_uint8(G.synthesis(result.initial_dlatents)), targets),
                    "psnr_db": _psnr(recon, targets),
                    "psnr_in_mask_db": _psnr(recon, targets, masks),
                    "psnr_outside_mask_db": _psnr(recon, targets, 1.0 - masks),
                    "loss_first": [round(float(x), 2) for x in result.loss_history[0]],
                    "loss_best": [round(float(x), 2) for x in result.best_loss],
                }
            )
            print(json.dumps(runs[-1]), file=sys.stderr)
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "device": device,
        "generator": f"{pkl.name}: {G.resolution} px, {G.num_layers} layers, random weights",
        "target": f"self-inversion of {args.images} reference dlatents (render with constant noise)",
        "loss": "VGG16 block3_conv3 0.4 + pixel logcosh 1.5 + MS-SSIM 200 + L1 0.5, at 128 px",
        "vgg16": vgg_note,
        "mask": f"astronaut's landmark hull x {base.mask_scale}, {float(mask.mean()):.0%} of the image",
        "start": "dlatent_avg",
        "load_average_start": load_start,
        "runs": runs,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
