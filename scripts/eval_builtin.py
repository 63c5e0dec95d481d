#!/usr/bin/env python3
"""The built-in model's quality figures on held-out UTKFace faces, as its model card lists them.

    python scripts/eval_builtin.py MODEL.npz ../shared/datasets/utkface200.tar -o babygan-out/eval \
        [--samples 2000] [--face-samples 1000] [--directions DIR]

Writes OUT/quality.json (dlib face rate, Fréchet distance in dlib's descriptor space against
held-out faces and its real-vs-real floor, requested vs estimated age when DIR has age.npy)
and OUT/samples.png (a grid of 32 samples). Prints the JSON with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a babygan generator (.npz) or registry name")
    ap.add_argument("utkface", help="utkface200.tar (its held-out split is used)")
    ap.add_argument("-o", "--out", default="babygan-out/eval")
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--face-samples", type=int, default=1000)
    ap.add_argument("--real", type=int, default=2000, help="held-out real faces to compare with (at most)")
    ap.add_argument("--directions", help="folder with the model's age.npy: adds the age table")
    ap.add_argument(
        "--refine",
        type=int,
        default=20,
        help="a model with its own E: held-out reconstruction by E alone and by E + this many "
        "optimisation steps at the model's default encoder settings (0: E alone)",
    )
    ap.add_argument("--refine-faces", type=int, default=32, help="held-out faces for --refine")
    args = ap.parse_args(argv)

    from babygan import backend, quality, render
    from babygan.align import Crop
    from babygan.errors import BabyganError
    from babygan.stylegan import load_generator
    from babygan.utkface import align_utkface

    try:
        backend.start()
        t0 = time.perf_counter()
        G = load_generator(args.model)
        real = align_utkface(
            args.utkface,
            size=G.resolution,
            scale=Crop.from_dict(G.info.get("crop"), args.model).scale,
            split="holdout",
        )
        figures = quality.model_quality(
            G, real.images[: args.real], samples=args.samples, face_samples=args.face_samples
        )
        if args.directions:
            import numpy as np

            from babygan.attributes import AttributeModel

            attributes = AttributeModel.load()
            age = np.load(Path(args.directions) / "age.npy")
            figures["age_response"] = quality.age_response(G, age, lambda x: attributes.predict(x)[0])
        if G.has_encoder:
            figures["reconstruction"] = _reconstruction(G, real.images[: args.refine_faces], args.refine)
        out = Path(args.out)
        grid = quality.sample_images(G, 32, seed=1, truncation_psi=0.7)
        render.save_png(out / "samples.png", render.contact_sheet(list(grid)))
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        text = json.dumps(figures, indent=1)
        from babygan.atomic import write_text_atomic

        write_text_atomic(out / "quality.json", text)
        print(text)
    except BabyganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


def _reconstruction(G, faces, refine: int) -> dict:
    """PSNR (dB, uint8, peak 255) and MS-SSIM of held-out faces: E alone, E + ``refine`` steps."""
    from babygan.encoder import Encoder
    from babygan.encoder.settings import settings_for_model
    from babygan.stylegan import to_uint8
    from babygan.train.autoencoder import reconstruction_quality

    figures = {"E": reconstruction_quality(to_uint8(G.synthesis(G.encode_faces(faces))), faces)}
    if refine:
        settings = settings_for_model(G.info, G.has_encoder, iterations=refine)
        t0 = time.perf_counter()
        result = Encoder(G, settings, offline=True).encode(faces, progress=False)
        figures[f"E+{refine}"] = reconstruction_quality(result.reconstructions, faces)
        figures[f"E+{refine}"]["seconds_per_face"] = round((time.perf_counter() - t0) / len(faces), 2)
        figures["settings"] = {
            k: getattr(settings, k) for k in ("perceptual", "iterations", "lr", "l1_weight")
        }
    return figures


if __name__ == "__main__":
    sys.exit(main())
