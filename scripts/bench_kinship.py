"""Family likeness on real parent-child pairs: does the predicted child look like *this* family's child?

KinFaceW-II (``../shared/datasets/kinfacew2.tar``; research use only, never trained on): per
pair, a child is predicted from the pair's parent and a spouse drawn (fixed by --seed) from
the other relations' parents of the other sex, and scored by the rank of the true child
among the relation's other children by dlib's descriptor (babygan/kinship.py; 0.5 chance,
1.0 always nearest), beside the parent's own photo as the baseline. Rows: the parent's photo,
the blend with no age edit, the child at the default age, and the child at the true child's
age (as the attribute network reads the child's photo). Also the spread of the predicted
children (mean pairwise descriptor distance) against the real children's, and how far one
child moves between 5 and 20 years in an age sweep.

    python scripts/bench_kinship.py                      # all 1,000 pairs, the built-in model
    python scripts/bench_kinship.py --per-relation 50 --aging-steps 0 --out kin.json
    python scripts/bench_kinship.py --per-relation 25 --spouse self   # no stranger's half
    python scripts/bench_kinship.py --per-relation 25 --encoder-iterations 10 --aging-steps 10
    python scripts/bench_kinship.py --families FAMILIES/ --out families.json
    python scripts/bench_kinship.py --families FAMILIES/ --descriptor my_faces.py:describe

``--families DIR`` scores whole families instead (DIR/<family>/father, mother and child
photos, .jpg or .png; such as the team's held-back families): the child of the real father
and mother, ranked among all the families' children, beside both parents' own photos, their
encodings and their blend, at the default age and at 5 years (the rows of issue 24's table).
``--descriptor`` ranks them by a second face descriptor as well, one the caller brings
(``kinship.SecondDescriptor``): both columns of that table from one run.

Prints the load average with the figures. Photos dlib cannot align (or describe) are counted
and left out. Faces are described where dlib's HOG detector finds them, as in every figure
this benchmark gave before predict's resemblance also asked dlib's CNN detector: the pairs
scored stay the same ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from babygan import kinship, pipeline  # noqa: E402
from babygan.aging import AgingSettings  # noqa: E402
from babygan.atomic import write_text_atomic  # noqa: E402
from babygan.errors import BabyganError  # noqa: E402
from babygan.latent import Age  # noqa: E402

ROWS = (
    "parent photo",
    "encoded parent",
    "blend, no age edit",
    "child, default age",
    "child, true child's age",
)
#: not a face: the parents' photos' descriptors mixed half and half, what holding a child to
#: them would reach at best
MIXED = "parents' descriptors mixed"
#: the rows of ``--families``: what each family's true child is compared with
FAMILY_ROWS = (
    "father's photo",
    "mother's photo",
    "encoded father",
    "encoded mother",
    "blend, no age edit",
    "child, default age",
    "child at 5 years",
)


def _describe(describer, image: np.ndarray) -> np.ndarray:
    from babygan.render import resize

    d = describer.describe(resize(image, max(256, image.shape[0])))
    return np.full(128, np.nan) if d.vector is None else d.vector


def _photo(path: Path) -> np.ndarray:
    from babygan.photo import load_photo

    return load_photo(path)


def _describe_photo(describer, photo: np.ndarray, name: str) -> np.ndarray:
    """A family's photo as it is, of any shape (dlib finds its largest face)."""
    d = describer.describe(photo, name)
    return np.full(128, np.nan) if d.vector is None else d.vector


def _session_and_aging(args: argparse.Namespace):
    """The session (the model, offline) and the aging settings the options ask for."""
    from babygan import backend
    from babygan.session import Session

    backend.start()  # TensorFlow imported without its start-up chatter among the figures

    encoder = {"iterations": args.encoder_iterations} if args.encoder_iterations is not None else None
    session = Session(args.model, offline=True, progress=False, precision=args.precision, encoder=encoder)
    aging = AgingSettings(
        **{
            k: v
            for k, v in (
                ("steps", args.aging_steps),
                ("identity_weight", args.identity_weight),
                ("lr", args.aging_lr),
                ("prior_weight", args.prior_weight),
                ("anchor", args.anchor),
            )
            if v is not None
        }
    )
    return session, aging


def run(args: argparse.Namespace) -> dict:
    from babygan import align
    from babygan.resemblance import FaceDescriber

    images = kinship.extract(args.archive, args.work)
    pairs = kinship.read_pairs(images, args.per_relation)
    spouses = kinship.spouses(pairs, args.seed, pairing=args.spouse)
    session, aging = _session_and_aging(args)
    describer = FaceDescriber(cnn_fallback=False)  # HOG only: as every earlier figure was found
    res = int(session.generator.resolution)
    n = len(pairs)
    desc = {row: np.full((n, 128), np.nan) for row in ROWS}
    real_child = np.full((n, 128), np.nan)
    child_age = np.full(n, np.nan)
    read = {row: np.full(n, np.nan) for row in ROWS[2:]}
    desc[MIXED] = np.full((n, 128), np.nan)
    sweep_dist = []
    failed: dict[str, int] = {}
    start = time.time()
    for i, (pair, spouse) in enumerate(zip(pairs, spouses, strict=True)):
        real_child[i] = _describe(describer, _photo(pair.child))
        desc["parent photo"][i] = _describe(describer, _photo(pair.parent))
        try:
            aligned = align.align_photo(pair.child, output_size=res, crop_scale=session.crop.scale).image
            est = session.estimate([aligned])[0]
            child_age[i] = est.get("age", np.nan)
        except BabyganError:
            failed["child not aligned"] = failed.get("child not aligned", 0) + 1
        dad, mum = (pair.parent, spouse) if pair.parent_role == "father" else (spouse, pair.parent)
        ages = {
            "blend, no age edit": Age.coeff(0.0),
            "child, default age": pipeline.ChildOptions().age,
            # the true child's age as the attribute network reads the photo, within the model's range
            "child, true child's age": Age.years(float(np.clip(child_age[i], *session.edit_ranges.age)))
            if np.isfinite(child_age[i])
            else None,
        }
        for row, age in ages.items():
            if age is None:
                continue
            opts = pipeline.ChildOptions(age=age, resemblance=False, aging=aging)
            try:
                result = pipeline.predict(dad, mum, opts, session)
            except BabyganError as exc:
                failed[str(exc).split(": ")[-1]] = failed.get(str(exc).split(": ")[-1], 0) + 1
                break
            if row == "blend, no age edit":
                parent = result.father if pair.parent_role == "father" else result.mother
                desc["encoded parent"][i] = _describe(describer, session.synthesize(parent.dlatents[None])[0])
                desc[MIXED][i] = 0.5 * (desc["parent photo"][i] + _describe(describer, _photo(spouse)))
            child = result.children[0]
            desc[row][i] = _describe(describer, child.image)
            read[row][i] = (child.estimate or {}).get("age", np.nan)
        if i < args.sweep_pairs and np.isfinite(desc["child, default age"][i]).all():
            sweep = pipeline.age_sweep(dad, mum, pipeline.EditOptions(aging=aging), session, ages=[5.0, 20.0])
            a, b = (_describe(describer, f) for f in sweep.frames)
            if np.isfinite(a).all() and np.isfinite(b).all():
                sweep_dist.append(float(np.linalg.norm(a - b)))
        if (i + 1) % 20 == 0 or i + 1 == n:
            print(f"  {i + 1}/{n} pairs, {time.time() - start:.0f} s", file=sys.stderr, flush=True)

    relations = np.array([p.relation for p in pairs])
    scores = {}
    for row in (*ROWS, MIXED):
        scores[row] = np.full(n, np.nan)
        for rel in kinship.RELATIONS:
            sel = relations == rel
            if sel.any():  # the pool: every child of the relation that has a descriptor
                scores[row][sel] = kinship.ranks(desc[row][sel], real_child[sel])
    # every row over the same pairs: those scored in all of them
    common = np.all([np.isfinite(v) for v in scores.values()], axis=0)
    table: dict[str, dict[str, float]] = {}
    for row, sc in scores.items():
        table[row] = {rel: float(np.mean(sc[common & (relations == rel)])) for rel in kinship.RELATIONS}
        table[row]["overall"] = float(np.mean(sc[common]))
        table[row]["scored"] = int(common.sum())
    real_spread = kinship.spread(real_child)
    ok = np.isfinite(child_age)
    return {
        "pairs": n,
        "per_relation": args.per_relation,
        "seed": args.seed,
        "spouse": args.spouse,
        "model": session.model,
        "precision": args.precision,
        "aging": dataclasses.asdict(aging),
        "rank": table,
        "spread": {
            "real children": real_spread,
            **{row: kinship.spread(desc[row]) for row in ROWS[1:]},
        },
        "read_age": {
            "child, default age": float(np.nanmean(read["child, default age"])),
            "default age requested": pipeline.ChildOptions().age.value,
            "true child's age: mean |read - requested|": float(
                np.nanmean(
                    np.abs(
                        read["child, true child's age"][ok] - np.clip(child_age[ok], *session.edit_ranges.age)
                    )
                )
            ),
        },
        "sweep_5_vs_20_distance": {
            "pairs": len(sweep_dist),
            "mean": float(np.mean(sweep_dist)) if sweep_dist else None,
        },
        "failed": failed,
        "seconds": round(time.time() - start, 1),
        "load_average": os.getloadavg(),
    }


def run_families(args: argparse.Namespace) -> dict:
    """``--families``: each family's child from its real father and mother, ranked among all the
    families' children by dlib's descriptor (and by ``--descriptor``'s, where given), beside the
    parents' photos, encodings and blend."""
    from babygan.resemblance import FaceDescriber

    families = kinship.read_families(args.families)
    second = kinship.SecondDescriptor(args.descriptor) if args.descriptor else None
    session, aging = _session_and_aging(args)
    describer = FaceDescriber(cnn_fallback=False)  # HOG only: as every earlier figure was found
    n = len(families)
    desc = {row: np.full((n, 128), np.nan) for row in FAMILY_ROWS}
    real_child = np.full((n, 128), np.nan)
    ages = {
        "blend, no age edit": Age.coeff(0.0),
        "child, default age": pipeline.ChildOptions().age,
        "child at 5 years": Age.years(5.0),
    }
    read = {row: np.full(n, np.nan) for row in ages if row != "blend, no age edit"}
    failed: dict[str, str] = {}
    # the second descriptor's vectors, by row, None where there is none (as NaN rows for dlib's)
    other: dict[str, list] = {row: [None] * n for row in (*FAMILY_ROWS, "real child")}

    def describe_second(row: str, i: int, image: np.ndarray, what: str) -> None:
        if second is not None:
            other[row][i] = second(image, what)

    start = time.time()
    for i, family in enumerate(families):
        for row, path in (("real child", family.child), ("father's photo", family.father),
                          ("mother's photo", family.mother)):  # fmt: skip
            photo = _photo(path)
            vector = _describe_photo(describer, photo, path.name)
            if row == "real child":
                real_child[i] = vector
            else:
                desc[row][i] = vector
            describe_second(row, i, photo, f"{family.name}/{path.name}")
        for row, age in ages.items():
            opts = pipeline.ChildOptions(age=age, resemblance=False, aging=aging)
            try:
                result = pipeline.predict(family.father, family.mother, opts, session)
            except BabyganError as exc:
                failed[family.name] = str(exc)
                break
            if row == "blend, no age edit":
                for role, parent in (("father", result.father), ("mother", result.mother)):
                    image = session.synthesize(parent.dlatents[None])[0]
                    desc[f"encoded {role}"][i] = _describe(describer, image)
                    describe_second(f"encoded {role}", i, image, f"{family.name}: the encoded {role}")
            child = result.children[0]
            desc[row][i] = _describe(describer, child.image)
            describe_second(row, i, child.image, f"{family.name}: {row}")
            if row in read:
                read[row][i] = (child.estimate or {}).get("age", np.nan)
        print(f"  {i + 1}/{n} families, {time.time() - start:.0f} s", file=sys.stderr, flush=True)

    table = _family_table(desc, real_child)
    extra = {}
    if second is not None:
        vectors = {row: second.stack(v) for row, v in other.items()}
        children = vectors.pop("real child")
        extra["second_descriptor"] = {
            "spec": second.spec,
            "rank": _family_table(vectors, children),
            "spread": {
                "real children": kinship.spread(children),
                **{row: kinship.spread(vectors[row]) for row in ages},
            },
        }
    return {
        "families": n,
        "model": session.model,
        "precision": args.precision,
        "aging": dataclasses.asdict(aging),
        "rank": table,
        "spread": {
            "real children": kinship.spread(real_child),
            **{row: kinship.spread(desc[row]) for row in ages},
        },
        "read_age": {
            "child, default age": float(np.nanmean(read["child, default age"])),
            "default age requested": pipeline.ChildOptions().age.value,
            "child at 5 years": float(np.nanmean(read["child at 5 years"])),
        },
        **extra,
        "failed": failed,
        "seconds": round(time.time() - start, 1),
        "load_average": os.getloadavg(),
    }


def _family_table(desc: dict[str, np.ndarray], children: np.ndarray) -> dict[str, dict[str, float]]:
    """Each row's mean rank over the families scored in every row (descriptors (N, D), NaN rows
    where there is none)."""
    scores = {row: kinship.ranks(desc[row], children) for row in FAMILY_ROWS}
    common = np.all([np.isfinite(v) for v in scores.values()], axis=0)  # every row over the same families
    return {
        row: {"overall": float(np.mean(sc[common])), "scored": int(common.sum())}
        for row, sc in scores.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=str(ROOT.parent / "shared" / "datasets" / "kinfacew2.tar"))
    ap.add_argument(
        "--work",
        default=str(
            Path(os.environ.get("BABYGAN_HOME", Path.home() / ".cache" / "babygan"))
            / "datasets"
            / "kinfacew2"
        ),
    )
    ap.add_argument(
        "--per-relation", type=int, default=None, help="the first N pairs of each relation (default all 250)"
    )
    ap.add_argument("--seed", type=int, default=0, help="the spouse pairing")
    ap.add_argument(
        "--spouse",
        choices=kinship.PAIRINGS,
        default="other",
        help="other: a parent of another family (the issue's pairing); self: the parent itself",
    )
    ap.add_argument("--model", default="builtin")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--aging-steps", type=int, default=None, help="0: the calibrated direction alone")
    ap.add_argument(
        "--encoder-iterations",
        type=int,
        default=None,
        help="the encoder's steps per photo (default: the model's)",
    )
    ap.add_argument("--aging-lr", type=float, default=None)
    ap.add_argument("--identity-weight", type=float, default=None)
    ap.add_argument("--prior-weight", type=float, default=None)
    ap.add_argument("--anchor", choices=("blend", "parents"), default=None)
    ap.add_argument(
        "--sweep-pairs", type=int, default=40, help="pairs whose 5 and 20 year frames are compared"
    )
    ap.add_argument(
        "--families",
        help="score the families of this folder (DIR/<family>/father, mother, child photos) instead",
    )
    ap.add_argument(
        "--descriptor",
        help="with --families: also rank by this face descriptor, MODULE:FUNCTION or FILE.py:FUNCTION "
        "(a function of a uint8 (H, W, 3) RGB image returning a vector, or None: no face)",
    )
    ap.add_argument("--out", help="write the figures as JSON here too")
    args = ap.parse_args()
    if args.descriptor and not args.families:
        sys.exit("bench_kinship: --descriptor scores whole families: give --families DIR too")
    print(f"load average before: {os.getloadavg()}", file=sys.stderr)
    try:
        report = run_families(args) if args.families else run(args)
    except BabyganError as exc:
        sys.exit(f"bench_kinship: {exc}")
    columns = ("overall",) if args.families else (*kinship.RELATIONS, "overall")
    tables = [("dlib", report["rank"])]
    if "second_descriptor" in report:
        tables.append((report["second_descriptor"]["spec"], report["second_descriptor"]["rank"]))
    for name, table in tables:
        print(f"by {name}:\n{'':28s}" + "".join(f"{r:>12s}" for r in columns) + "  scored")
        for row, scores in table.items():
            print(f"{row:28s}" + "".join(f"{scores[r]:12.3f}" for r in columns) + f"  {scores['scored']}")
    print(json.dumps({k: v for k, v in report.items() if k != "rank"}, indent=1))
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
