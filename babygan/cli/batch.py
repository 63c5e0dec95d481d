"""``babygan batch PAIRS.csv``: many children in one process, models loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from babygan.cli.options import age_options, child_options, make_options, make_session, session_options


@click.command()
@click.argument("pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output-dir",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("babygan-out"),
    show_default=True,
    help="Each pair goes to OUTPUT_DIR/<name>/; batch.json summarises the run.",
)
@child_options
@age_options
@session_options
def batch(pairs: Path, output_dir: Path, **kw: Any) -> None:
    """Predict a child for every row of PAIRS (a CSV file).

    Columns: father, mother (photo paths, relative to the CSV's folder) and, optional,
    name, genes, age, gender_shift (these override the options for that row). Each
    distinct photo is aligned and encoded once. A failing row is reported and the
    others still run; the exit code is 1 if any row failed.
    """
    from babygan import pipeline

    options = make_options(kw)
    session = make_session(kw)

    def report(row: pipeline.BatchRow) -> None:
        if row.ok:
            click.echo(f"ok      {row.name}")
        else:
            click.echo(f"FAILED  {row.name}: {row.error}", err=True)

    rows = pipeline.run_batch(pairs, output_dir, options, session, on_row=report)
    click.echo("")
    click.echo(pipeline.summary_table(rows))
    failed = [r for r in rows if not r.ok]
    click.echo(f"\n{len(rows) - len(failed)} of {len(rows)} pairs done; summary: {output_dir / 'batch.json'}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(rows)} pairs failed (see above)")
