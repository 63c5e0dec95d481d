"""Calibrate a model's age direction in years, and report requested against read ages.

Faces (the model's own samples at truncation 0.7) are moved along the model's age direction
by coefficients -8..8 and read by the attribute network; the mean reading per coefficient
is the calibration (babygan/aging.py ``AgeCalibration``), written as ``age_calibration.json``
into the model's directions folder (or --out). Then every requested age is made as
``predict`` makes it (calibrated edit + likeness-held refinement) from the samples, and the
table requested vs read is printed; ``years_range`` is the span where the reading stays
within the issue's bounds (3 years up to 18, 5 years above) and the child's resemblance finds a
face (dlib's HOG detector, then its CNN one) in at least 80 % of the children (MIN_FACE_RATE).

    python scripts/calibrate_ages.py                       # the built-in model, in place
    python scripts/calibrate_ages.py --model m.npz --out dirs/ --samples 128
    python scripts/calibrate_ages.py --check-only --check-samples 16    # keep it, check the range
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babygan.aging import AgeCalibration, AgingSettings  # noqa: E402
from babygan.latent import Age  # noqa: E402

#: an age is in range only where the child's resemblance still finds a face in this share of the
#: children (the 64 px model drew old faces poorly: HOG found 0.81-0.88 of them from 40 to 60
#: years, 0.59-0.75 above)
MIN_FACE_RATE = 0.8


def face_rate(images: np.ndarray, describer: Any) -> float:
    """The share of uint8 (N, R, R, 3) faces in which ``resemblance`` finds a face (dlib's HOG
    detector, then its CNN detector), once they are enlarged to at least 256 px."""
    from babygan.render import resize

    size = max(256, images.shape[1])
    return float(np.mean([describer.describe(resize(im, size)).vector is not None for im in images]))


def bound(years: float) -> float:
    """The issue's tolerance: 3 years over 3..18, 5 above."""
    return 3.0 if years <= 18 else 5.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--samples", type=int, default=256, help="faces the calibration averages over")
    ap.add_argument("--check-samples", type=int, default=32, help="faces each requested age is made from")
    ap.add_argument("--ages", default="0,1,2,3,5,7,10,12,15,18,22,26,30,35,40,45,50,55,60,65,70,75,80")
    ap.add_argument("--out", help="folder for age_calibration.json (default: the model's directions folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--check-only",
        action="store_true",
        help="keep the folder's calibration: only check the requested ages and rewrite years_range",
    )
    args = ap.parse_args()

    from babygan.pipeline import EditOptions, age_children
    from babygan.resemblance import FaceDescriber
    from babygan.session import Session
    from babygan.stylegan import to_uint8

    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    t0 = time.time()
    session = Session(args.model, offline=True, progress=False)
    G = session.generator
    directions = session.directions
    folder = Path(args.out) if args.out else directions.folder
    if folder is None:
        raise SystemExit(f"{args.model}: its directions come from the registry; give --out DIR")
    direction = directions.direction("age")
    z = np.random.default_rng(args.seed).standard_normal((args.samples, G.z_dim)).astype(np.float32)
    w = G.mapping(z, truncation_psi=0.7)

    def read_age(images: np.ndarray) -> np.ndarray:
        return np.array([e["age"] for e in session.estimate(list(images))])

    def synthesize(x: np.ndarray) -> np.ndarray:
        return to_uint8(G.synthesis(x))

    if args.check_only:
        kept = AgeCalibration.load(folder)
        if kept is None:
            raise SystemExit(f"{folder}: no age_calibration.json to check; run without --check-only")
        calibration = kept
    else:
        calibration = AgeCalibration.measure(
            synthesize,
            direction,
            read_age,
            w,
            source=f"{args.samples} samples of {args.model} at truncation 0.7, read by the attribute network",
        )
        print(f"calibration measured in {time.time() - t0:.0f} s", file=sys.stderr)

    # requested vs read, as predict makes each age: a new session reads the calibration saved
    calibration.save(folder)
    session = Session(args.model, directions_dir=args.out, offline=True, progress=False)
    checked = w[: args.check_samples]
    opts = EditOptions()
    describer = FaceDescriber()
    rows = []
    for years in (float(a) for a in args.ages.split(",")):
        age = session.resolve_age(Age.years(years))
        start = checked.copy()
        start[:, : opts.layers] += np.float32(age.coefficient) * direction[: opts.layers]
        for method, steps in (("direction", 0), ("likeness-held", AgingSettings().steps)):
            o = dataclasses.replace(opts, aging=AgingSettings(steps=steps))
            out, _ = age_children(session, start, checked, [age] * len(checked), o)
            images = synthesize(out)
            reads = read_age(images)
            row = {"requested": years, "method": method, "coefficient": round(age.coefficient, 3)}
            row.update(read_mean=round(float(reads.mean()), 2), read_sd=round(float(reads.std()), 2))
            row["face_rate"] = round(face_rate(images, describer), 3)
            rows.append(row)
        print(json.dumps(rows[-2:]), file=sys.stderr, flush=True)
    held = [r for r in rows if r["method"] == "likeness-held"]
    within = [
        r["requested"]
        for r in held
        if abs(r["read_mean"] - r["requested"]) <= bound(r["requested"]) and r["face_rate"] >= MIN_FACE_RATE
    ]
    lo = hi = None
    if within:  # the widest run of consecutive requested ages within bounds
        ages = [r["requested"] for r in held]
        best: list[float] = []
        cur: list[float] = []
        for a in ages:
            cur = [*cur, a] if a in within else []
            best = cur if len(cur) > len(best) else best
        lo, hi = best[0], best[-1]
    if lo is not None and hi is not None and lo < hi:
        calibration = dataclasses.replace(calibration, years_range=(lo, hi))
    path = calibration.save(folder)
    print(f"{'requested':>10s} {'coeff':>8s} {'direction':>10s} {'held':>10s} {'faces':>6s}")
    for a, b in zip(rows[::2], rows[1::2], strict=True):
        cells = f"{a['requested']:10.0f} {a['coefficient']:8.2f} {a['read_mean']:10.1f}"
        print(f"{cells} {b['read_mean']:10.1f} {b['face_rate']:6.2f}")
    report = {"written": str(path), "years_range": calibration.years_range, "rows": rows}
    report.update(seconds=round(time.time() - t0, 1), load_average=os.getloadavg())
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
