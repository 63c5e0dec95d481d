#!/usr/bin/env python3
"""Train babygan's built-in face model (StyleGAN v1) in chunks that resume: made for a GPU
machine that runs one command for at most 10 minutes.

    # once, where ../shared is: pack the aligned UTKFace training faces (held-out faces left out)
    # into one small file, 25 MB at 64 px, in the git-ignored babygan-out/
    python scripts/train_builtin.py ../shared/datasets/utkface200.tar --pack babygan-out/data/utkface64.npz

    # on the GPU machine, the same command again and again: each run resumes from OUT/checkpoint,
    # trains for --minutes (or until --kimg), saves, and exports the EMA generator so far
    KERAS_BACKEND=jax python scripts/train_builtin.py babygan-out/data/utkface64.npz \
        --out babygan-out/train64 --kimg 3000 --minutes 8.5 --export babygan-out/train64/builtin64.npz

    # the built-in model's CPU recipe at 128 px, grown from the shipped 64 px model (GROWN_128 in
    # babygan/train/config.py; see models/builtin.md): the same command starts and resumes it
    python scripts/train_builtin.py ../shared/datasets/utkface200.tar --resolution 128 \
        --pack babygan-out/data/utkface128.npz
    python scripts/train_builtin.py babygan-out/data/utkface128.npz --resolution 128 \
        --grow-from babygan/builtin/babygan-utkface64.npz --out babygan-out/ae128 --max-minutes 170

Progress lines show thousands of images shown (kimg), images/s and the losses; sample grids
go to OUT/samples.png (latest) and OUT/samples/; OUT/log.jsonl keeps every progress record.
Runs under JAX by default (KERAS_BACKEND); the settings of a run are fixed by its first chunk
(later chunks may only change --kimg, and --ae-kimg while stage 1 runs; --grow-from is read by
the first chunk only).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="training faces: a packed .npz, .npy, image folder or a UTKFace .tar")
    p.add_argument(
        "--out",
        default="babygan-out/train",
        help="run folder: checkpoint/, samples, log (default %(default)s)",
    )
    p.add_argument(
        "--recipe",
        choices=("autoencoder", "gan"),
        default="autoencoder",
        help="autoencoder: E + synthesis on reconstruction, then adversarial sharpening (the CPU "
        "recipe of the shipped model; default); gan: StyleGAN from scratch (a GPU's work)",
    )
    p.add_argument(
        "--holdout", default=None, help="autoencoder: held-out faces (packed .npz) evaluated as it trains"
    )
    p.add_argument(
        "--ae-kimg",
        type=float,
        default=None,
        help="autoencoder: length of stage 1 (default: its config's); on resuming, retunes it while it runs",
    )
    p.add_argument(
        "--holdout-faces", type=int, default=None, help="autoencoder: evaluate only the first N of --holdout"
    )
    p.add_argument(
        "--grow-from",
        default=None,
        help="autoencoder, new run: start from this model (a model file with E, e.g. "
        "babygan/builtin/babygan-utkface128.npz, or a checkpoint folder) grown by a block to --resolution; "
        "at 128 px the recipe's defaults are GROWN_128 (babygan/train/config.py)",
    )
    p.add_argument("--fade-kimg", type=float, default=None, help="autoencoder --grow-from: fade-in length")
    p.add_argument(
        "--perceptual-weight", type=float, default=None, help="autoencoder: dlib-network perceptual term"
    )
    p.add_argument("--identity-weight", type=float, default=None, help="autoencoder: dlib descriptor term")
    p.add_argument("--adv-weight", type=float, default=None, help="autoencoder: adversarial term in stage 2")
    p.add_argument(
        "--labels",
        default=None,
        help="autoencoder --export: the UTKFace tar the faces came from (ages and genders for the "
        "directions; default: DATA when it is that tar)",
    )
    p.add_argument(
        "--from-stage1",
        action="store_true",
        help="autoencoder --export: finish the checkpoint saved at the end of stage 1 (OUT/stage1)",
    )
    p.add_argument(
        "--ship", action="store_true", help="autoencoder --export: also put the model into babygan/builtin/"
    )
    p.add_argument("--resolution", type=int, default=64, help="64 or 128 (default %(default)s)")
    p.add_argument(
        "--kimg",
        type=float,
        default=None,
        help="train until this many thousand images (default: the recipe's)",
    )
    p.add_argument(
        "--minutes",
        "--max-minutes",
        type=float,
        default=None,
        help="stop this session after so many minutes, saving first (the same command resumes)",
    )
    p.add_argument(
        "--resume",
        choices=("auto", "yes", "no"),
        default="auto",
        help="auto: resume from OUT/checkpoint when there is one (default); yes: it must be there; "
        "no: it must not",
    )
    p.add_argument(
        "--export", default=None, help="at the end of each chunk, write the EMA generator here (+ .md card)"
    )
    p.add_argument(
        "--pack", default=None, help="only write the training faces to this compact .npz, then stop"
    )
    p.add_argument(
        "--split",
        choices=("train", "holdout"),
        default="train",
        help="which faces of a UTKFace .tar: the training split (default) or the held-out one (--holdout)",
    )
    p.add_argument(
        "--crop",
        choices=("aligned", "utkface"),
        default="aligned",
        help="for a UTKFace .tar: FFHQ-recipe crop (as parents are aligned; default) or UTKFace's own",
    )
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--fmap-base", type=int, default=None)
    p.add_argument("--fmap-max", type=int, default=None)
    p.add_argument("--latent", type=int, default=None, help="z and w size")
    p.add_argument("--mapping-layers", type=int, default=None)
    p.add_argument("--lr", type=float, default=None, help="G and D learning rate")
    p.add_argument("--gamma", type=float, default=None, help="R1 gamma (default 0.0002 * res^2 / batch)")
    p.add_argument("--fp32", action="store_true", help="no bfloat16 (default: bf16 convolutions)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample-kimg", type=float, default=100.0, help="a sample grid every so many kimg")
    p.add_argument("--report-seconds", type=float, default=20.0, help="a progress line every so many seconds")
    p.add_argument("--max-steps", type=int, default=None, help="stop after so many steps (for measuring)")
    return p.parse_args(argv)


def _settings(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "resolution": args.resolution,
        "batch": args.batch,
        "fmap_base": args.fmap_base,
        "fmap_max": args.fmap_max,
        "latent_size": args.latent,
        "dlatent_size": args.latent,
        "mapping_layers": args.mapping_layers,
        "g_lr": args.lr,
        "d_lr": args.lr,
        "r1_gamma": args.gamma,
        "total_kimg": args.kimg,
        "seed": args.seed,
    }
    if args.fp32:
        given["mixed_precision"] = False
    return {k: v for k, v in given.items() if v is not None}


def _autoencoder_settings(args: argparse.Namespace) -> dict[str, object]:
    given = {
        "resolution": args.resolution,
        "batch": args.batch,
        "fmap_base": args.fmap_base,
        "fmap_max": args.fmap_max,
        "dlatent_size": args.latent,
        "lr": args.lr,
        "d_lr": args.lr,
        "r1_gamma": args.gamma,
        "ae_kimg": args.ae_kimg,
        "total_kimg": args.kimg,
        "fade_kimg": args.fade_kimg,
        "perceptual_weight": args.perceptual_weight,
        "identity_weight": args.identity_weight,
        "adv_weight": args.adv_weight,
        "seed": args.seed,
    }
    if args.fp32:
        given["mixed_precision"] = False
    chosen = {k: v for k, v in given.items() if v is not None}
    if args.grow_from:
        from babygan.train.config import GROWN_128

        base = dict(GROWN_128) if args.resolution == 128 else {"fade_kimg": 10.0}
        chosen = {**base, **chosen, "grown_from": str(args.grow_from)}
    return chosen


def _new_autoencoder(args: argparse.Namespace):
    """A new autoencoder run: from scratch, or grown from ``--grow-from``."""
    from babygan.train.autoencoder import AutoencoderTrainer
    from babygan.train.config import AutoencoderConfig

    config = AutoencoderConfig(**_autoencoder_settings(args))  # type: ignore[arg-type]
    if not args.grow_from:
        return AutoencoderTrainer(config)
    from babygan.train.grow import grown_state

    print(f"growing {args.grow_from} to {config.resolution} px (fade-in over {config.fade_kimg:g} kimg)")
    return AutoencoderTrainer(config, grown_state(args.grow_from, config))


def _open_run(args: argparse.Namespace, ckpt: Path, resume, start):
    """The run in ``ckpt`` resumed (``resume(ckpt, total_kimg=...)``), or a new one (``start()``),
    as --resume allows; a one-line error otherwise."""
    from babygan.errors import BabyganError
    from babygan.train.checkpoint import has_checkpoint

    if has_checkpoint(ckpt) and args.resume != "no":
        trainer = resume(ckpt, total_kimg=args.kimg)
        print(f"resumed {ckpt} at kimg {trainer.nimg / 1000:.1f} (step {trainer.step})")
        return trainer
    if args.resume == "yes":
        raise BabyganError(f"{ckpt}: no checkpoint to resume")
    if has_checkpoint(ckpt):
        raise BabyganError(f"{ckpt}: a checkpoint is already there (--resume no refuses to overwrite it)")
    return start()


def _run_autoencoder(args: argparse.Namespace, images, out: Path) -> int:
    from babygan.errors import BabyganError
    from babygan.train import load_images
    from babygan.train.autoencoder import AutoencoderTrainer

    holdout = load_images(args.holdout, args.resolution) if args.holdout else None
    if holdout is not None and args.holdout_faces:
        holdout = holdout[: args.holdout_faces]
    ckpt = out / "checkpoint"
    trainer = _open_run(
        args, ckpt, lambda folder, total_kimg: AutoencoderTrainer.resume(folder, total_kimg, args.ae_kimg),
        lambda: _new_autoencoder(args),
    )  # fmt: skip
    c = trainer.config
    if c.resolution != args.resolution:
        raise BabyganError(f"{ckpt}: the run is {c.resolution} px, not {args.resolution}")
    if args.grow_from and trainer.nimg > 0:
        print(f"--grow-from is read by a new run only: continuing the run in {ckpt}")
    grown = f", grown from {c.grown_from} (fade {c.fade_kimg:g} kimg)" if c.grown_from else ""
    print(
        f"autoencoder recipe: {c.resolution} px, batch {c.batch}, fmap {c.fmap_base}/{c.fmap_max}, "
        f"w {c.dlatent_size}, {'bf16' if c.mixed_precision else 'fp32'}, stage 1 to {c.ae_kimg:g} kimg, "
        f"adversarial to {c.total_kimg:g} kimg; weights: MS-SSIM {c.msssim_weight:g}, face perceptual "
        f"{c.perceptual_weight:g}, identity {c.identity_weight:g}, adversarial {c.adv_weight:g}{grown}"
    )
    trainer.train(
        images,
        out,
        holdout=holdout,
        minutes=args.minutes,
        max_steps=args.max_steps,
        report_seconds=args.report_seconds,
        eval_kimg=args.sample_kimg,
        print_fn=lambda line: print(line, flush=True),
    )
    print(f"saved {ckpt} at kimg {trainer.nimg / 1000:.1f}; samples in {out / 'samples.png'}")
    if args.export:
        if args.from_stage1:
            trainer = AutoencoderTrainer.resume(out / "stage1")
            print(f"finishing the stage-1 checkpoint (kimg {trainer.nimg / 1000:.1f})")
        _finish_autoencoder(args, trainer)
    return 0


def _finish_autoencoder(args: argparse.Namespace, trainer) -> None:
    """Fit the z -> W+ map and the directions, write the model, its directions and a report."""
    import json

    from babygan.atomic import write_text_atomic
    from babygan.attributes import AttributeModel
    from babygan.builtin import BUILTIN_LICENCE
    from babygan.directions_fit import save_directions
    from babygan.errors import BabyganError
    from babygan.model_choice import ship_builtin
    from babygan.train.finish import finish
    from babygan.utkface import CROP, align_utkface

    tar = args.labels or (args.data if str(args.data).endswith(".tar") else None)
    if tar is None:
        raise BabyganError("--export needs --labels UTKFACE.tar (the faces' ages and genders)")
    size = trainer.config.resolution
    train_faces = align_utkface(tar, size=size, split="train")
    holdout = align_utkface(tar, size=size, split="holdout")
    scorer = AttributeModel.load()
    info = {"crop": CROP, "name": "babygan built-in (UTKFace)", "licence": BUILTIN_LICENCE}
    t0 = time.monotonic()
    G, directions, report = finish(trainer, train_faces, holdout, scorer.predict, info)
    report["finish_minutes"] = round((time.monotonic() - t0) / 60, 1)
    dest = Path(args.export)
    model = G.save(dest / f"babygan-utkface{size}.npz", storage="float16")
    save_directions(directions, dest / "directions")
    write_text_atomic(dest / "finish.json", json.dumps(report, indent=1) + "\n")
    print(
        f"wrote {model} ({model.stat().st_size / 1e6:.1f} MB), directions ({report['directions']['chosen']}) "
        f"and {dest / 'finish.json'}: held-out PSNR of E alone {report['holdout_E_alone']['psnr']:.2f} dB"
    )
    if args.ship:
        print(f"shipped {ship_builtin(model, dest / 'directions')}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from babygan.errors import BabyganError
    from babygan.train import TrainConfig, load_images, pack

    try:
        t0 = time.monotonic()
        images = load_images(args.data, args.resolution, crop=args.crop, split=args.split)
        print(f"{args.data}: {len(images)} faces at {args.resolution} px ({time.monotonic() - t0:.1f} s)")
        if args.pack:
            path = pack(args.pack, images)
            print(f"packed into {path} ({path.stat().st_size / 1e6:.1f} MB)")
            return 0

        out = Path(args.out)
        os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(out / "jax-cache"))
        from babygan import backend

        backend.start()  # logs the backend and its device
        if args.recipe == "autoencoder":
            return _run_autoencoder(args, images, out)
        from babygan.train import Trainer

        ckpt = out / "checkpoint"
        trainer = _open_run(args, ckpt, Trainer.resume, lambda: Trainer(TrainConfig(**_settings(args))))  # type: ignore[arg-type]
        c = trainer.config
        if c.resolution != args.resolution:
            raise BabyganError(f"{ckpt}: the run is {c.resolution} px, not {args.resolution}")
        g = trainer.gconfig
        print(
            f"config: {c.resolution} px, batch {c.batch}, fmap {c.fmap_base}/{c.fmap_max}, "
            f"z/w {c.latent_size}, mapping {c.mapping_layers}, G {g.num_params() / 1e6:.2f} M params, "
            f"gamma {c.gamma:g}, {'bf16' if c.mixed_precision else 'fp32'}, "
            f"augment {c.augment or 'none'}, total {c.total_kimg:g} kimg"
        )
        trainer.train(
            images,
            out,
            minutes=args.minutes,
            max_steps=args.max_steps,
            report_seconds=args.report_seconds,
            sample_kimg=args.sample_kimg,
            print_fn=lambda line: print(line, flush=True),
        )
        print(f"saved {ckpt} at kimg {trainer.nimg / 1000:.1f}; samples in {out / 'samples.png'}")
        if args.export:
            from babygan.align import Crop
            from babygan.utkface import CROP_SCALE

            # the crop parents must be aligned with: the training faces' own (UTKFace's crop has none)
            aligned = Crop(scale=CROP_SCALE).to_dict()
            info = {"crop": aligned} if args.crop == "aligned" else {"crop": {"recipe": "utkface"}}
            info.update(name="babygan built-in (UTKFace)", licence="UTKFace: non-commercial research only")
            dataset = f"{Path(args.data).name}: {len(images)} faces"
            path = trainer.export(args.export, dataset=dataset, info=info)
            print(f"exported the EMA generator to {path} ({path.stat().st_size / 1e6:.1f} MB) and its card")
    except BabyganError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
