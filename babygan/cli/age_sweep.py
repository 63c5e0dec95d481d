"""``babygan age-sweep FATHER MOTHER``: the same child across ages, as frames, a sheet, a GIF or MP4."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from babygan import outputs, pipeline, render
from babygan.cli.options import SessionOptions, child_options, output_dir_option, session_options
from babygan.cli.params import PHOTO, AgeRange
from babygan.latent import DEFAULT_SWEEP_AGES
from babygan.outputs import SWEEP_FPS

if TYPE_CHECKING:
    from babygan.latent import Age


@click.command("age-sweep")
@click.argument("father", type=PHOTO)
@click.argument("mother", type=PHOTO)
@output_dir_option("Where the frames and files go.", default=Path("babygan-out/age-sweep"))
@click.option(
    "--ages",
    type=AgeRange(in_years=True),
    default=None,
    metavar="FROM:TO:N",
    help=f"Ages in years, N frames from FROM to TO (default {DEFAULT_SWEEP_AGES}).",
)
@click.option(
    "--coeffs",
    type=AgeRange(in_years=False),
    default=None,
    metavar="FROM:TO:STEP",
    help="Raw age coefficients instead of --ages, e.g. BabyGAN's -4:4:0.5.",
)
@click.option("--gif", is_flag=True, help="Also write age_sweep.gif (loops forever).")
@click.option(
    "--mp4", is_flag=True, help="Also write age_sweep.mp4 (needs imageio-ffmpeg: pip install 'babygan[mp4]')."
)
@click.option(
    "--fps",
    type=click.FloatRange(0.1, 60.0),
    default=SWEEP_FPS,
    show_default=True,
    help="Frames per second of the GIF / MP4.",
)
@child_options(age=False)
@session_options
def age_sweep(
    father: Path,
    mother: Path,
    output_dir: Path,
    ages: tuple[Age, ...] | None,
    coeffs: tuple[Age, ...] | None,
    gif: bool,
    mp4: bool,
    fps: float,
    options: pipeline.EditOptions,
    session: SessionOptions,
) -> None:
    """Show the child of FATHER and MOTHER across ages with the same latents (encoded once).

    Writes frame_01.png ..., sheet.png (a contact sheet), age_sweep.npy/.json and,
    with --gif / --mp4, an animation. With --anime, also the frames drawn by the model's
    anime model: sheet_anime.png and, with --gif / --mp4, age_sweep_anime.gif / .mp4.
    """
    if ages is not None and coeffs is not None:
        raise click.UsageError("give --ages or --coeffs, not both")
    if mp4:  # fail before the slow encode
        render.require_mp4(output_dir / "age_sweep.mp4")
    steps = coeffs or ages or AgeRange(in_years=True).convert(DEFAULT_SWEEP_AGES, None, None)
    result = pipeline.age_sweep(father, mother, options, session.open(), ages=steps)
    paths = outputs.write_sweep(result, output_dir, gif=gif, mp4=mp4, fps=fps)
    click.echo(f"{len(paths['frames'])} frames: {Path(paths['frames'][0]).parent}")
    for key in ("sheet", "gif", "mp4", "anime_sheet", "anime_gif", "anime_mp4", "json"):
        if key in paths:
            click.echo(f"{key}: {paths[key]}")
