"""The encoder's click options, one per ``EncoderSettings`` field (babygan/encoder/settings.py):
types, choices and defaults come from the dataclass itself; help shows each model's default where
the model decides it. babygan/cli/options.py builds them into the session options."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import click

from babygan.cli.params import EncoderInit
from babygan.encoder import settings

# The encoder's options: EncoderSettings field -> (option, help). Types, choices and defaults
# come from the dataclass itself (babygan/encoder/settings.py).
ENCODER_FIELDS = {
    "iterations": ("--iterations", "Encoder optimisation steps per photo."),
    "lr": ("--lr", "Encoder learning rate (Adam)."),
    "decay_rate": (
        "--decay-rate",
        "The learning rate is multiplied by this every --decay-percent of the iterations "
        "(BabyGAN: --iterations 100 --lr 0.25 --decay-rate 0.9).",
    ),
    "decay_percent": ("--decay-percent", "Learning-rate decay period, % of the iterations."),
    "perceptual": (
        "--perceptual",
        "Encoder loss: vgg16 = VGG16 features + pixel + MS-SSIM (needs the VGG16 weights file); "
        "pixel = pixel + MS-SSIM only; identity = pixel + MS-SSIM + dlib's face descriptor "
        "distance (nothing to download).",
    ),
    "identity_weight": (
        "--identity-weight",
        "With --perceptual identity: weight of the face descriptor distance (same person < 0.6).",
    ),
    "init": (
        "--init",
        "Encoder start: the estimator's guess (auto: when one is available), dlatent_avg, "
        "or FILE.npy, earlier dlatents (L, 512) to go on from.",
    ),
    "estimator": ("--estimator", "Estimator file (name or path; .keras from `babygan train-estimator`)."),
    "seed": ("--encoder-seed", "Seed of the encoder's stochastic clipping."),
    "batch_size": ("--batch-size", "Photos the encoder optimises together."),
    "optimizer": (
        "--optimizer",
        "adam: --iterations Adam steps; lbfgs: L-BFGS-B for at most --iterations iterations "
        "(pbaylies' fast recipe: a handful, e.g. 10).",
    ),
    "face_mask": ("--face-mask/--no-face-mask", "Encoder loss on the face only (dlib's landmark hull)."),
    "mask_scale": ("--mask-scale", "Face mask: the landmark hull scaled by this about its centre."),
    "composite": (
        "--composite/--no-composite",
        "encode: the written reconstruction keeps the aligned photo outside the face.",
    ),
    "composite_blur": ("--composite-blur", "Blur of the composite's mask edge, px at 1024 px."),
    "early_stopping": (
        "--early-stopping/--no-early-stopping",
        "Adam stops a photo once its loss stops falling (see the threshold and patience).",
    ),
    "early_stopping_threshold": (
        "--early-stopping-threshold",
        "Early stopping: running loss decrease under this...",
    ),
    "early_stopping_patience": ("--early-stopping-patience", "...for more than this many steps."),
    "average_best_loss": (
        "--average-best-loss",
        "Adam: each new best dlatents = A x previous best + (1 - A) x new (pbaylies: 0.25); 0 = off.",
    ),
    "sharpen_input": ("--sharpen-input/--no-sharpen-input", "Sharpen the photo for the encoder's loss."),
    "tile_dlatents": (
        "--tile-dlatents/--no-tile-dlatents",
        "Optimise one 512-vector shared by every layer.",
    ),
}


def encoder_click_options() -> list[Callable]:
    """One click option per encoder setting, ``--iterations`` -> ``encoder_iterations`` ..."""

    kinds: dict[str, Any] = {
        "iterations": click.IntRange(min=1),
        "lr": click.FloatRange(min=0, min_open=True),
        "decay_rate": click.FloatRange(0.0, 1.0, min_open=True),
        "decay_percent": click.FloatRange(0.0, 100.0, min_open=True),
        "perceptual": click.Choice(settings.PERCEPTUAL_CHOICES),
        "identity_weight": click.FloatRange(min=0),
        "init": EncoderInit(),
        "estimator": str,
        "seed": int,
        "batch_size": click.IntRange(min=1),
        "optimizer": click.Choice(settings.OPTIMIZER_CHOICES),
        "mask_scale": click.FloatRange(min=0, min_open=True),
        "composite_blur": click.FloatRange(min=0),
        "early_stopping_threshold": float,
        "early_stopping_patience": click.IntRange(min=0),
        "average_best_loss": click.FloatRange(0.0, 1.0, max_open=True),
    }
    defaults = {f.name: f.default for f in dataclasses.fields(settings.EncoderSettings)}
    options = []
    for name, (opt, text) in ENCODER_FIELDS.items():
        kind: dict[str, Any] = {} if "/" in opt else {"type": kinds[name]}  # on/off pairs are flags
        # where the model decides (settings.model_defaults), help says each model's; the value stays
        own = settings.OWN_ENCODER_DEFAULTS.get(name)
        kind["show_default"] = True if own is None else f"{defaults[name]} for FFHQ, {own} for builtin"
        options.append(click.option(opt, f"encoder_{name}", default=defaults[name], help=text, **kind))
    return options
