"""``babygan predict FATHER MOTHER``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from babygan import outputs, pipeline
from babygan.cli.options import SessionOptions, child_options, output_dir_option, session_options
from babygan.cli.params import PHOTO
from babygan.resemblance import describe_text

if TYPE_CHECKING:
    from babygan.pipeline import ChildOptions


@click.command()
@click.argument("father", type=PHOTO)
@click.argument("mother", type=PHOTO)
@output_dir_option(
    "Where child.png, sheet.png, child.npy and child.json (and child_anime.png) go.",
    default=Path("babygan-out"),
)
@child_options(siblings=True)
@session_options
def predict(
    father: Path, mother: Path, output_dir: Path, options: ChildOptions, session: SessionOptions
) -> None:
    """Predict the child of FATHER and MOTHER (two photos, one face each).

    Aligns and encodes both faces (encodings are cached), blends them by --genes,
    ages the result (default 10 years) and applies any other shifts, then writes
    the child, a father | child | mother sheet, the dlatents and a JSON record.
    With --anime, also the child drawn by the model's anime model (child_anime.png).
    """

    result = pipeline.predict(father, mother, options, session.open())
    written = outputs.write_prediction(result, output_dir)
    for child, paths in zip(result.children, written["children"], strict=True):
        click.echo(f"{child.name}: {paths['image']}")
        if "anime" in paths:
            click.echo(f"  anime: {paths['anime']}")
        if child.resemblance is not None:
            click.echo(f"  {describe_text(child.resemblance)}")
    click.echo(f"sheet: {written['sheet']}")
    click.echo(f"record: {', '.join(p['json'] for p in written['children'])}")
