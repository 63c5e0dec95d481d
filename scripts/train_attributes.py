#!/usr/bin/env python3
"""Train babygan's age/gender attribute model on UTKFace (CPU, a few minutes) and save it.

    .venv/bin/python scripts/train_attributes.py                # -> babygan/builtin/attributes.keras
    .venv/bin/python scripts/train_attributes.py --epochs 3 -o /tmp/attr.keras

Faces: utkface200.tar aligned by the FFHQ recipe at babygan.utkface.CROP_SCALE (the
built-in GAN's crop), 64 px; the fixed held-out split (10 %, by file name) is kept out of
training and measured at the end. The aligned faces are cached under $BABYGAN_HOME/datasets.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    from babygan.attributes import INPUT_SIZE, builtin_path
    from babygan.utkface import CROP_SCALE

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "datasets" / "utkface200.tar")
    parser.add_argument("--output", "-o", type=Path, default=builtin_path())
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--size", type=int, default=INPUT_SIZE)
    parser.add_argument("--scale", type=float, default=CROP_SCALE, help="FFHQ-recipe crop scale")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from babygan.errors import BabyganError

    try:
        from babygan.attributes import train_attributes
        from babygan.backend import start as start_keras
        from babygan.utkface import align_utkface

        start_keras()
        start = time.perf_counter()
        faces = align_utkface(args.data, size=args.size, scale=args.scale, progress=True)
        print(f"aligned {len(faces)} faces in {time.perf_counter() - start:.0f} s", flush=True)
        train, holdout = faces.split("train"), faces.split("holdout")
        model, info = train_attributes(
            train,
            holdout,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rate=args.lr,
            input_size=args.size,
            seed=args.seed,
        )
        info["data"] = {"archive": args.data.name, "train": len(train), "holdout": len(holdout)}
        model.save(args.output)
    except BabyganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(info, indent=2))
    print(f"saved {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
