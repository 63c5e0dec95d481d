"""``babygan batch PAIRS.csv``: many children in one process, models loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from babygan.batch import run_batch, summary_table
from babygan.cli.options import SessionOptions, child_options, output_dir_option, session_options

if TYPE_CHECKING:
    from babygan.batch import BatchRow
    from babygan.pipeline import ChildOptions


@click.command()
@click.argument("pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_dir_option(
    "Each pair goes to OUTPUT_DIR/<name>/; batch.json summarises the run.", default=Path("babygan-out")
)
@child_options()
@session_options
def batch(pairs: Path, output_dir: Path, options: ChildOptions, session: SessionOptions) -> None:
    """Predict a child for every row of PAIRS (a CSV file).

    Columns: father, mother (photo paths, relative to the CSV's folder) and, optional,
    name, genes, age, gender_shift (these override the options for that row). Each
    distinct photo is aligned and encoded once. A failing row is reported and the
    others still run; the exit code is 1 if any row failed.
    """

    def report(row: BatchRow) -> None:
        if row.ok:
            click.echo(f"ok      {row.name}")
        else:
            click.echo(f"FAILED  {row.name}: {row.error}", err=True)

    rows = run_batch(pairs, output_dir, options, session.open(), on_row=report)
    click.echo("")
    click.echo(summary_table(rows))
    failed = [r for r in rows if not r.ok]
    click.echo(f"\n{len(rows) - len(failed)} of {len(rows)} pairs done; summary: {output_dir / 'batch.json'}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(rows)} pairs failed (see above)")
