"""``babygan encode``: photos -> StyleGAN dlatents (<stem>.npy) and their images (<stem>_reconstruction.png).

The photos go through the same Session as ``predict`` (babygan/session.py): aligned (or only
resized with --aligned), encoded together, cached per aligned image.
"""

from __future__ import annotations

from pathlib import Path

import click

from babygan import outputs
from babygan.cli.options import (
    SessionOptions,
    encoding_options,
    face_option,
    output_dir_option,
    photos_argument,
)
from babygan.errors import BabyganError


@click.command()
@photos_argument
@output_dir_option("Where to write <stem>.npy and <stem>_reconstruction.png (created if needed).")
@click.option(
    "--aligned",
    is_flag=True,
    help="The photos are aligned crops already: only resize them to the model's resolution.",
)
@face_option()
@encoding_options
def encode(
    photos: tuple[Path, ...], output_dir: Path, aligned: bool, face: int | None, session: SessionOptions
) -> None:
    """Encode the faces of PHOTOS into the generator's dlatents (L, 512).

    Writes OUTPUT_DIR/<stem>.npy (float32) and OUTPUT_DIR/<stem>_reconstruction.png.
    All photos are optimised together in batches; results are cached per aligned image.
    """
    if aligned and face is not None:
        raise click.UsageError("--face and --aligned cannot be used together")
    stems = [p.stem for p in photos]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise BabyganError(
            f"{dupes[0]}: two photos share this name; their outputs would overwrite each other"
        )

    s = session.open(aligned=aligned)
    parents = s.parents([(p, face) for p in photos])
    reconstructions = s.reconstructions(parents)  # uint8 (N, R, R, 3), once each (--composite: merged)
    written = outputs.write_encoded(parents, reconstructions, output_dir, s.provenance())
    for photo, (npy, png) in zip(photos, written, strict=True):
        click.echo(f"{photo}: {npy} {png}")
