#!/usr/bin/env python
"""Encoder schedules (iterations, learning rate, decay) by self-inversion on the reference generator.

    python scripts/bench_encoder_schedules.py                     # pbaylies' 100 at 0.25 vs the default
    python scripts/bench_encoder_schedules.py --drawn 20 --seed 5  # 24 targets
    python scripts/bench_encoder_schedules.py --configs '[{"iterations": 30, "lr": 0.05}]'

The targets are the 128 px reference generator's (../shared/reference/stylegan-ref-128.pkl)
renders of its four reference dlatents and of ``--drawn`` more drawn at psi 1 (``--seed``;
``--no-reference``: the drawn ones only), so a perfect encoder reaches each exactly.
Each configuration overrides fields of ``EncoderSettings`` (VGG16 +
pixel + MS-SSIM + L1, from dlatent_avg, fp32); PSNR (peak 255, on the uint8 images a user
sees) of the re-render against its target, per image and on average. Without the registry's
VGG16 file (no network here) a randomly initialised VGG16 in the same layout stands in, as in
``bench_encoder_options.py``. Prints JSON lines, one per configuration, then a summary with the
load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

#: pbaylies' (and BabyGAN's) schedule, then babygan's default
DEFAULT_CONFIGS = [{"iterations": 100, "lr": 0.25, "decay_rate": 0.9}, {}]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=json.dumps(DEFAULT_CONFIGS), help="JSON list of field overrides")
    ap.add_argument("--drawn", type=int, default=4, help="targets drawn at psi 1 besides the reference ones")
    ap.add_argument("--seed", type=int, default=5, help="seed of the drawn targets")
    ap.add_argument("--no-reference", action="store_true", help="only drawn targets")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from bench_encoder_options import _psnr, _vgg16_file, load_reference

    load_start = [round(x, 2) for x in os.getloadavg()]
    import numpy as np

    from babygan.encoder import Encoder, EncoderSettings
    from babygan.stylegan import to_uint8

    pkl, G, ref, device = load_reference()
    drawn = G.mapping(np.random.RandomState(args.seed).randn(args.drawn, G.z_dim), truncation_psi=1.0)
    w = drawn if args.no_reference else np.concatenate([ref["synth_w"], drawn])
    targets = to_uint8(G.synthesis(w))  # uint8 (N, 128, 128, 3)
    vgg, vgg_note = _vgg16_file()
    base = EncoderSettings(perceptual="vgg16", vgg16_weights=vgg, init="dlatent_avg", precision="fp32")
    runs = []
    for overrides in json.loads(args.configs):
        settings = dataclasses.replace(base, **overrides)
        t0 = time.perf_counter()
        result = Encoder(G, settings).encode(targets, progress=False)
        seconds = time.perf_counter() - t0
        psnr = [_psnr(result.reconstructions[i : i + 1], targets[i : i + 1]) for i in range(len(targets))]
        runs.append(
            {
                "iterations": settings.iterations,
                "lr": settings.lr,
                "decay_rate": settings.decay_rate,
                "decay_percent": settings.decay_percent,
                "psnr_mean_db": round(float(np.mean(psnr)), 2),
                "psnr_db": psnr,
                "seconds_incl_compile": round(seconds, 1),
            }
        )
        print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "device": device,
                "generator": f"{pkl.name}: {G.resolution} px, random weights",
                "targets": f"its renders of {'no' if args.no_reference else 'the 4'} reference dlatents "
                f"+ {args.drawn} drawn at psi 1 (seed {args.seed})",
                "vgg16": vgg_note,
                "load_average_start": load_start,
                "runs": runs,
                "load_average_end": [round(x, 2) for x in os.getloadavg()],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
