#!/usr/bin/env python3
"""The built-in model's quality figures on held-out UTKFace faces, as its model card lists them.

    python scripts/eval_builtin.py MODEL.npz ../shared/datasets/utkface200.tar -o babygan-out/eval \
        [--samples 2000] [--face-samples 1000] [--directions DIR]

Any model: the held-out faces are aligned with the model's own crop at its own resolution.
Writes OUT/quality.json and OUT/samples.png (a grid of 32 samples); prints the JSON with the
load average, then a table of the figures against issue 25's targets:

- detail: Laplacian-variance and high-frequency-share ratios (babygan.quality.detail_ratios)
  of samples, and of E's reconstructions of the held-out faces, against those faces;
- dlib face rate of ``--face-samples`` samples (enlarged to 160 px), Fréchet distance in dlib's
  descriptor space of ``--samples`` samples against the held-out faces, and its real-vs-real floor;
- a model with E: PSNR / MS-SSIM of E alone on the held-out faces and of E + the model's
  default refinement on ``--refine-faces`` of them, and the face-network perceptual and identity
  distances of E's reconstructions (babygan.identity.perceptual);
- requested vs estimated age when DIR has age.npy.
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
        default=None,
        help="a model with its own E: held-out reconstruction by E alone and by E + this many "
        "optimisation steps at the model's default encoder settings (default: the model's default "
        "number; 0: E alone)",
    )
    ap.add_argument("--refine-faces", type=int, default=32, help="held-out faces for --refine")
    args = ap.parse_args(argv)

    from babygan import backend, quality, render
    from babygan.align import Crop
    from babygan.atomic import write_text_atomic
    from babygan.errors import BabyganError
    from babygan.stylegan import load_generator
    from babygan.utkface import align_utkface

    try:
        backend.start()
        t0 = time.perf_counter()
        G = load_generator(args.model)
        scale = Crop.from_dict(G.info.get("crop"), args.model).scale
        real = align_utkface(args.utkface, size=G.resolution, scale=scale, split="holdout")
        figures = {"model": str(args.model)}
        figures.update(
            quality.model_figures(
                G, real.images[: args.real], samples=args.samples, face_samples=args.face_samples,
                crop_scale=scale, refine_faces=args.refine_faces, refine=args.refine,
            )
        )  # fmt: skip
        if args.directions:
            import numpy as np

            from babygan.attributes import AttributeModel

            attributes = AttributeModel.load()
            age = np.load(Path(args.directions) / "age.npy")
            figures["age_response"] = quality.age_response(G, age, lambda x: attributes.predict(x)[0])
        out = Path(args.out)
        grid = quality.sample_images(G, 32, seed=1, truncation_psi=0.7)
        render.save_png(out / "samples.png", render.contact_sheet(list(grid)))
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        text = json.dumps(figures, indent=1)
        write_text_atomic(out / "quality.json", text)
        print(text)
        print(quality.summary_table(figures))
    except BabyganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
