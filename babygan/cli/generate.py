"""``babygan generate``: images from seeds with a StyleGAN generator."""

from __future__ import annotations

from pathlib import Path

import click

from babygan import render
from babygan.cli.options import model_option, offline_option, output_dir_option, precision_option
from babygan.cli.params import SeedList
from babygan.outputs import save_npy
from babygan.stylegan import load_generator
from babygan.stylegan.sampling import generate_from_seeds


@click.command()
@model_option("Registry name (see `babygan models list`) or path to an official .pkl or a babygan .npz.")
@click.option(
    "--seeds",
    type=SeedList(),
    default="0-7",
    show_default=True,
    help="Seeds: a range 0-7, a list 1,5,9, or both.",
)
@click.option("--truncation-psi", type=float, default=0.7, show_default=True, help="1.0 = no truncation.")
@click.option(
    "--truncation-cutoff", type=int, default=8, show_default=True, help="Truncate the layers below this one."
)
@click.option(
    "--noise",
    type=click.Choice(["const", "random"]),
    default="const",
    show_default=True,
    help="const: the model's stored noise; random: fresh noise drawn from each image's seed.",
)
@output_dir_option("Where seedNNNN.png (and .npy) go.", default=Path("babygan-out/generate"))
@click.option(
    "--save-latents",
    is_flag=True,
    help="Also write seedNNNN.npy: the (layers, 512) float32 dlatents.",
)
@offline_option("Never download; fail if the model is not already here.")
@precision_option
def generate(
    model: str,
    seeds: list[int],
    truncation_psi: float,
    truncation_cutoff: int,
    noise: str,
    output_dir: Path,
    save_latents: bool,
    offline: bool,
    precision: str,
) -> None:
    """Generate images from seeds, as the official StyleGAN scripts do (z = RandomState(seed).randn)."""

    G = load_generator(model, offline=offline, precision=precision)
    written = 0
    for seed, w, image in generate_from_seeds(
        G, seeds, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise=noise
    ):
        meta = {
            "seed": seed,
            "truncation_psi": truncation_psi,
            "truncation_cutoff": truncation_cutoff,
            "noise": noise,
            "model_sha256": G.source_sha256,
        }
        render.save_png(output_dir / f"seed{seed:04d}.png", image, meta)
        if save_latents:
            save_npy(output_dir / f"seed{seed:04d}.npy", w)  # (L, w_dim)
        written += 1
    click.echo(f"wrote {written} image{'s' if written != 1 else ''} to {output_dir}")
