"""``babygan anime PHOTO_OR_CLIP...``: faces as anime, in many styles (babygan/anime)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from babygan.anime.clip import is_clip, output_name
from babygan.anime.stylize import MAX_STYLES
from babygan.cli.options import (
    SessionOptions,
    anime_model_option,
    encoding_options,
    face_option,
    output_dir_option,
)
from babygan.cli.params import PHOTO
from babygan.errors import BabyganError


@click.command()
@click.argument("inputs", metavar="PHOTO_OR_CLIP...", nargs=-1, required=True, type=PHOTO)
@output_dir_option(
    "Where <stem>_anime.png (a clip: <stem>_anime.mp4, or .gif for a GIF) and the styles go.",
    default=Path("babygan-out"),
)
@click.option(
    "--styles",
    type=int,
    default=None,
    help=f"Also draw each photo's face in N other styles (1 to {MAX_STYLES}): <stem>_anime_1.png ... "
    "and <stem>_anime_sheet.png. A clip is drawn in one style (--styles 1: --seed's).",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Seed of the styles: the same seed, the same takes (photos: default 0). A clip: drawn in "
    "this seed's style (default: the face's own, the plain anime rendering).",
)
@face_option("Which face of each photo, counted from the left (default: the largest).")
@anime_model_option()
@encoding_options
def anime(
    inputs: tuple[Path, ...],
    output_dir: Path,
    styles: int | None,
    seed: int | None,
    face: int | None,
    anime_model: Path | None,
    session: SessionOptions,
) -> None:
    """Draw the face of each photo, or of every frame of each clip, as anime.

    Photos are aligned and encoded as predict's parents are (cached), then drawn by the model's
    anime model: the face's own code gives <stem>_anime.png, random style codes in the fine
    layers the other styles. Clips (.mp4 .mov .webm .avi .mkv .gif) keep their frame count and
    fps; each frame's face is coded by the model's E and smoothed over time.
    """
    from babygan.anime.clip import anime_clip
    from babygan.anime.photo import anime_photo, write_anime

    if styles is not None and not 1 <= styles <= MAX_STYLES:
        raise BabyganError(f"--styles {styles}: must be from 1 to {MAX_STYLES}")
    clips = [p for p in inputs if is_clip(p)]
    if clips and styles is not None and styles > 1:
        raise BabyganError(
            f"{clips[0]}: a clip is drawn in one style; --styles {styles} is for photos "
            "(for a clip: --styles 1 or --seed S)"
        )
    names = [output_name(p) if is_clip(p) else f"{p.stem}_anime.png" for p in inputs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise BabyganError(f"{output_dir / twice[0]}: two inputs would write this file (inputs share a name)")

    s = dataclasses.replace(session, anime_model=anime_model).open()
    results = []
    for path in inputs:
        if is_clip(path):
            style = seed if seed is not None else (0 if styles == 1 else None)
            results.append(anime_clip(path, s, style_seed=style))
        else:
            results.append(anime_photo(path, styles=styles or 0, seed=seed or 0, face=face, session=s))
    written = write_anime(results, output_dir)  # all or nothing
    for path, result, paths in zip(inputs, results, written, strict=True):
        if is_clip(path):
            click.echo(result.summary(paths[0]))
        else:
            extra = f" (+ {len(paths) - 2} styles, sheet {paths[-1]})" if len(paths) > 1 else ""
            click.echo(f"{path}: {paths[0]}{extra}")
