#!/usr/bin/env python3
"""Tune an anime model from babygan's face model (Toonify-style layer swap), in chunks that resume.

    # the same command again and again: each run resumes from OUT/checkpoint, trains for at most
    # --max-minutes (or until --kimg), saves, and with --export writes the EMA anime model so far
    python scripts/train_anime.py ../shared/datasets/anime96.tar \
        --base babygan/builtin/babygan-utkface64.npz --out babygan-out/anime --max-minutes 55 \
        --export babygan-out/anime/babygan-anime.npz

    # once finished (OUT/checkpoint at --kimg), put it into the package: babygan/builtin/babygan-anime.npz
    python scripts/train_anime.py ../shared/datasets/anime96.tar --base builtin --out babygan-out/anime --ship

What is tuned and why: babygan/train/anime.py (``AnimeConfig`` holds every setting and its
default); how the anime faces are cut to sit where the base's photo faces sit:
babygan/train/anime_data.py. The first chunk prepares the faces once (OUT/data/*.npz, reused by
later chunks) and fixes the run's settings; later chunks may change only --kimg. Progress lines
show kimg, images/s, the discriminator's loss, the generator's adversarial loss, the structure
term and R1; OUT/log.jsonl keeps them; OUT/samples.png (and OUT/samples/) shows fixed codes drawn
by the base model (top row) and by the anime model (below). Runs under TensorFlow by default
(KERAS_BACKEND=jax works too). On a 2-core CPU expect roughly 15 images/s at 64 px (an earlier
adversarial tuning of the built-in model ran at 19 without the layout term's extra base render):
the default 60 kimg is then about 70 minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

SAMPLE_PHOTOS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "data",
        help="anime faces: a tar or folder of images (anime96.tar; cut and resized here), or a .npz "
        "this script prepared before (OUT/data/*.npz, used as it is)",
    )
    p.add_argument(
        "--base",
        default="builtin",
        help="the face model to tune from: a babygan generator file or 'builtin' (default %(default)s)",
    )
    p.add_argument(
        "--out", default="babygan-out/anime", help="run folder: checkpoint/, data/, samples, log.jsonl"
    )
    p.add_argument(
        "--kimg", type=float, default=None, help="train until this many thousand images (default: 60)"
    )
    p.add_argument(
        "--max-minutes",
        "--minutes",
        dest="minutes",
        type=float,
        default=None,
        help="stop this chunk after so many minutes, saving first (the same command resumes)",
    )
    p.add_argument(
        "--resume",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: resume from OUT/checkpoint when there is one (default); yes: it must be there; "
        "no: it must not",
    )
    p.add_argument(
        "--export", default=None, help="at the end of the chunk, write the EMA anime model to this .npz"
    )
    p.add_argument(
        "--ship",
        action="store_true",
        help="at the end of a finished run, write the anime model into the package "
        "(babygan/builtin/babygan-anime.npz); the base must be the shipped built-in model",
    )
    p.add_argument(
        "--sample-photos",
        default=None,
        help="a UTKFace tar: the sample sheets draw E's codes of its first held-out faces (aligned "
        "as the base's photos) instead of codes of the base's mapping",
    )
    g = p.add_argument_group(
        "settings of a new run (fixed by its first chunk; the rates may change on a resume)"
    )
    g.add_argument(
        "--swap-layer",
        type=int,
        default=None,
        help="first tuned synthesis layer; the layers below stay the base's (default: the first at "
        "16 px, layer 4 of a 64 px model)",
    )
    g.add_argument("--batch", type=int, default=None, help="images per step (default 16)")
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help="generator learning rate (default 0.002); on a resume, changes it from there on",
    )
    g.add_argument(
        "--d-lr",
        type=float,
        default=None,
        help="discriminator learning rate (default 0.002); on a resume, changes it from there on",
    )
    g.add_argument("--gamma", type=float, default=None, help="R1 gamma (default 0.0002 * res^2 / batch)")
    g.add_argument(
        "--structure-weight",
        type=float,
        default=None,
        help="weight of the layout term holding each fake to the base's image of its code (default 1; 0 off)",
    )
    g.add_argument(
        "--style-weight",
        type=float,
        default=None,
        help="weight of the term asking two styles of one face to differ as the base's do (default 1; 0 off)",
    )
    g.add_argument("--ema-kimg", type=float, default=None, help="EMA half-life in kimg (default 2)")
    g.add_argument("--crop-side", type=float, default=None, help="anime crop: square side, share (0.75)")
    g.add_argument("--crop-y", type=float, default=None, help="anime crop: centre height, share (0.42)")
    g.add_argument(
        "--tune-noise", action="store_true", help="tune the noise strengths too (default: the base's)"
    )
    g.add_argument("--no-xflip", action="store_true", help="no random mirroring of the anime faces")
    g.add_argument("--fp32", action="store_true", help="no bfloat16 (default: bf16 convolutions)")
    g.add_argument("--seed", type=int, default=None)
    p.add_argument("--sample-kimg", type=float, default=5.0, help="a sample sheet every so many kimg")
    p.add_argument("--report-seconds", type=float, default=30.0, help="a progress line every so many seconds")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0, help="a checkpoint every so many minutes")
    p.add_argument("--max-steps", type=int, default=None, help="stop after so many steps (for measuring)")
    return p.parse_args(argv)


def _settings(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "swap_layer": args.swap_layer,
        "batch": args.batch,
        "g_lr": args.lr,
        "d_lr": args.d_lr,
        "r1_gamma": args.gamma,
        "structure_weight": args.structure_weight,
        "style_weight": args.style_weight,
        "ema_kimg": args.ema_kimg,
        "crop_side": args.crop_side,
        "crop_centre_y": args.crop_y,
        "tune_noise": True if args.tune_noise else None,
        "total_kimg": args.kimg,
        "seed": args.seed,
        "base_name": str(args.base),
    }
    if args.fp32:
        given["mixed_precision"] = False
    if args.no_xflip:
        given["xflip"] = False
    return {k: v for k, v in given.items() if v is not None}


def _open_run(args: argparse.Namespace, base, ckpt: Path):
    from babygan.errors import BabyganError
    from babygan.train.anime import AnimeConfig, AnimeTrainer
    from babygan.train.checkpoint import has_checkpoint

    if has_checkpoint(ckpt) and args.resume != "no":
        trainer = AnimeTrainer.resume(ckpt, total_kimg=args.kimg, base=base)
        print(f"resumed {ckpt} at kimg {trainer.nimg / 1000:.2f} (step {trainer.step})")
        before = (trainer.config.g_lr, trainer.config.d_lr)
        trainer.change_rates(args.lr, args.d_lr)
        if (trainer.config.g_lr, trainer.config.d_lr) != before:
            now = (trainer.config.g_lr, trainer.config.d_lr)
            print(f"learning rates G {before[0]:g} / D {before[1]:g} -> G {now[0]:g} / D {now[1]:g}")
        ignored = sorted(set(_settings(args)) - {"total_kimg", "base_name", "g_lr", "d_lr"})
        if ignored:
            print(f"ignored {', '.join(ignored)}: a run's settings are fixed by its first chunk")
        return trainer
    if args.resume == "yes":
        raise BabyganError(f"{ckpt}: no checkpoint to resume")
    if has_checkpoint(ckpt):
        raise BabyganError(f"{ckpt}: a checkpoint is already there (--resume no refuses to overwrite it)")
    try:
        config = AnimeConfig(**_settings(args))  # type: ignore[arg-type]
    except ValueError as exc:
        raise BabyganError(f"settings: {exc}") from exc
    return AnimeTrainer.start(base, config)


def _faces(args: argparse.Namespace, trainer, out: Path):
    """The training faces uint8 (N, R, R, 3): the prepared .npz given, or the tar/folder cut once
    into OUT/data/ and reused."""
    from babygan.train import load_images, pack
    from babygan.train.anime_data import AnimeCrop, load_anime_faces

    c, r = trainer.config, trainer.gconfig.resolution
    data = Path(args.data)
    if data.suffix.lower() == ".npz":
        return load_images(data, r)
    cache = out / "data" / f"{data.stem}-{r}px-side{c.crop_side:g}-y{c.crop_centre_y:g}-train.npz"
    if cache.is_file():
        return load_images(cache, r)
    t0 = time.monotonic()
    crop = AnimeCrop(side=c.crop_side, centre_y=c.crop_centre_y)
    faces = load_anime_faces(data, r, crop=crop, split="train")
    pack(cache, faces)
    print(f"{data}: {len(faces)} training faces cut and packed into {cache} ({time.monotonic() - t0:.0f} s)")
    return faces


def _sample_codes(args: argparse.Namespace, base):
    """E's codes of the first held-out UTKFace faces (--sample-photos), or None (mapping samples)."""
    if not args.sample_photos:
        return None
    from babygan.align import Crop
    from babygan.errors import BabyganError
    from babygan.utkface import align_utkface

    if not base.has_encoder:
        raise BabyganError(f"{args.base}: --sample-photos needs a base with its own encoder E")
    scale = Crop.from_dict(base.info.get("crop"), str(args.base)).scale
    faces = align_utkface(args.sample_photos, size=base.resolution, scale=scale, split="holdout")
    return base.encode_faces(faces.images[:SAMPLE_PHOTOS])


def _ship(trainer, base) -> Path:
    from babygan.builtin import builtin_anime_path, builtin_model_path
    from babygan.errors import BabyganError
    from babygan.models import cached_sha256

    shipped = builtin_model_path()
    if not shipped.is_file() or cached_sha256(shipped) != base.source_sha256:
        raise BabyganError(f"--ship: the base must be the shipped built-in model ({shipped})")
    total = trainer.config.total_kimg
    if trainer.nimg < total * 1000:
        raise BabyganError(
            f"--ship: the run is at {trainer.nimg / 1000:.2f} of {total:g} kimg; ship a finished run "
            "(or end it here with --kimg)"
        )
    return trainer.export(builtin_anime_path(), base)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from babygan.errors import BabyganError

    try:
        out = Path(args.out)
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "jax-cache"))
        from babygan import backend
        from babygan.stylegan import load_generator

        backend.start()  # logs the backend and its device
        base = load_generator(args.base)
        trainer = _open_run(args, base, out / "checkpoint")
        c, gc = trainer.config, trainer.gconfig
        faces = _faces(args, trainer, out)
        codes = _sample_codes(args, base)
        print(
            f"anime tuning of {c.base_name or args.base} ({gc.resolution} px, {gc.num_layers} layers): "
            f"layers {c.swap_layer}-{gc.num_layers - 1} + ToRGB tuned, 0-{c.swap_layer - 1} and the mapping "
            f"frozen; {len(faces)} anime faces, batch {c.batch}, lr G {c.g_lr:g} / D {c.d_lr:g}, gamma "
            f"{c.gamma(gc.resolution):g}, structure {c.structure_weight:g}, style {c.style_weight:g}, "
            f"EMA {c.ema_kimg:g} kimg, "
            f"{'bf16' if c.mixed_precision else 'fp32'}, to {c.total_kimg:g} kimg"
        )
        trainer.train(
            faces, out, sample_codes=codes, minutes=args.minutes, max_steps=args.max_steps,
            report_seconds=args.report_seconds, sample_kimg=args.sample_kimg,
            checkpoint_minutes=args.checkpoint_minutes, print_fn=lambda line: print(line, flush=True),
        )  # fmt: skip
        print(
            f"saved {out / 'checkpoint'} at kimg {trainer.nimg / 1000:.2f}; samples in {out / 'samples.png'}"
        )
        if args.export:
            path = trainer.export(args.export, base)
            print(f"exported the EMA anime model to {path} ({path.stat().st_size / 1e6:.1f} MB)")
        if args.ship:
            print(f"shipped {_ship(trainer, base)}")
    except BabyganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
