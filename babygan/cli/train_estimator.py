"""``babygan train-estimator``: train the encoder's ResNet50 first-guess network on a generator's samples."""

from __future__ import annotations

from pathlib import Path

import click

from babygan.cli.options import model_option, offline_option, precision_option, quiet_option
from babygan.encoder.estimator import check_estimator_dest, save_estimator
from babygan.encoder.estimator import train_estimator as train
from babygan.stylegan import load_generator


@click.command("train-estimator")
@model_option()
@click.option(
    "--samples",
    default=2000,
    show_default=True,
    type=click.IntRange(min=2),
    help="(image, dlatents) pairs drawn from the generator.",
)
@click.option(
    "--epochs", default=10, show_default=True, type=click.IntRange(min=1), help="Passes over the samples."
)
@click.option(
    "--batch-size", default=16, show_default=True, type=click.IntRange(min=1), help="Training batch size."
)
@click.option(
    "--lr",
    default=1e-3,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Adam learning rate.",
)
@click.option(
    "--truncation-psi",
    default=1.0,
    show_default=True,
    type=float,
    help="Truncation of the sampled dlatents (1: none).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the samples and the weights.")
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to save the estimator (a .keras file).",
)
@offline_option("Never download; fail when the generator file is missing.")
@quiet_option("No per-epoch lines.")
@precision_option
def train_estimator(
    model: str,
    samples: int,
    epochs: int,
    batch_size: int,
    lr: float,
    truncation_psi: float,
    seed: int,
    output: Path,
    offline: bool,
    quiet: bool,
    precision: str,
) -> None:
    """Train a ResNet50 that guesses a face's dlatents, for `babygan encode --estimator`."""

    check_estimator_dest(output)  # before the long training, not after
    G = load_generator(model, offline=offline, precision=precision)
    net = train(
        G, samples, epochs, batch_size, seed, lr=lr, truncation_psi=truncation_psi, progress=not quiet
    )
    save_estimator(net, output)
    click.echo(f"{output}: estimator for {model} ({samples} samples, {epochs} epochs)")
