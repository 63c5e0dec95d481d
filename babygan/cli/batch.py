"""``babygan batch PAIRS.csv``: many children in one process, models loaded once; or on Ray workers."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from babygan.batch import run_batch, summary_table
from babygan.cli.options import SessionOptions, child_options, output_dir_option, session_options

if TYPE_CHECKING:
    from babygan.batch import BatchRow
    from babygan.pipeline import ChildOptions

#: exit status after Ctrl-C, as a shell reports a process stopped by SIGINT
_INTERRUPTED = 130


@click.command()
@click.argument("pairs", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@output_dir_option(
    "Each pair goes to OUTPUT_DIR/<name>/; batch.json summarises the run.", default=Path("babygan-out")
)
@click.option(
    "--resume",
    is_flag=True,
    help="Keep the rows already done (their done.json checks out: files, photos, options, model "
    "and encoder settings) and run the rest.",
)
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="local",
    default=None,
    metavar="[ADDRESS]",
    help="Run the rows on Ray workers (the ray extra): alone, a Ray instance started here; "
    "ADDRESS (host:port, or auto) joins that cluster. Write it after PAIRS, or as --ray=ADDRESS.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="With --ray: worker processes, each loading the models once "
    "[default: the cluster's GPUs, else its CPUs, divided by what one worker takes].",
)
@click.option(
    "--cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
    help="With --ray: CPUs Ray reserves for each worker.",
)  # fmt: skip
@click.option(
    "--gpus-per-worker",
    type=click.FloatRange(min=0),
    default=None,
    help="With --ray: GPUs for each worker [default: 1 where the cluster has GPUs, else 0].",
)
@child_options()
@session_options
def batch(
    pairs: Path,
    output_dir: Path,
    resume: bool,
    ray_address: str | None,
    workers: int | None,
    cpus_per_worker: float,
    gpus_per_worker: float | None,
    options: ChildOptions,
    session: SessionOptions,
) -> None:
    """Predict a child for every row of PAIRS (a CSV file).

    Columns: father, mother (photo paths, relative to the CSV's folder) and, optional,
    name, genes, age, gender_shift, anime (true/false/yes/no/1/0; these override the
    options for that row; a row with anime also gets child_anime.png). Each
    distinct photo is aligned and encoded once, on its own (--batch-size 1 unless given,
    so that a row's child does not depend on which rows ran before it, here or with --ray).
    A failing row is reported and the others still run; the exit code is 1 if any row
    failed. Ctrl-C stops after writing batch.json; --resume then finishes the job.
    """
    ray_options = {"workers": workers, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker}
    ctx = click.get_current_context()
    if ray_address is None:
        given = [f"--{n.replace('_', '-')}" for n in ray_options if _typed(ctx, n)]
        if given:
            raise click.UsageError(f"{', '.join(given)} only with --ray")
    bar = _Progress(enabled=not session.quiet)
    # One photo per encoder batch unless asked: a photo optimised beside another comes out a
    # little different (up to 0.09 in the built-in model's dlatents) from one optimised alone,
    # so with batches a row's child would depend on which rows its process ran before.
    # quiet: the batch shows its own bar, not one per photo encoded.
    session = dataclasses.replace(session, encoder={"batch_size": 1, **session.encoder}, quiet=True)
    settings = {
        "model": session.model,
        "directions": session.directions_dir,
        "encoder": session.encoder,
        "precision": session.precision,
        # only when given: the done.json of rows made before --anime-model existed still check out
        **({"anime_model": str(session.anime_model.resolve())} if session.anime_model is not None else {}),
    }
    run: dict[str, Any] = {"resume": resume, "settings": settings, "on_start": bar.start, "on_row": bar.row}
    try:
        if ray_address is None:
            rows = run_batch(pairs, output_dir, options, session.open(), **run)
        else:
            from babygan.distributed.ray_batch import run_batch_ray

            rows = run_batch_ray(
                pairs, output_dir, options, session.open, address=ray_address, **ray_options, **run
            )
    except KeyboardInterrupt:
        bar.close()
        click.echo(
            f"\ninterrupted: {bar.done} of {bar.total} pairs done ({output_dir / 'batch.json'}); "
            "run the same command with --resume to finish",
            err=True,
        )
        ctx.exit(_INTERRUPTED)
    bar.close()
    click.echo("")
    click.echo(summary_table(rows))
    failed = [r for r in rows if not r.ok]
    click.echo(f"\n{len(rows) - len(failed)} of {len(rows)} pairs done; summary: {output_dir / 'batch.json'}")
    if failed:
        raise click.ClickException(f"{len(failed)} of {len(rows)} pairs failed (see above)")


def _typed(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT


class _Progress:
    """One bar for the batch (rows done, failed, rows/s) on stderr, and a line per row."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self.total = self.done = self.failed = 0
        self._bar: Any = None

    def start(self, rows: Sequence[BatchRow]) -> None:
        from tqdm import tqdm

        self.total = len(rows)
        self._bar = tqdm(
            total=self.total, desc="batch", unit="row", disable=not self.enabled, file=sys.stderr
        )

    def row(self, row: BatchRow) -> None:
        from tqdm import tqdm

        if row.ok:
            self.done += 1
            tqdm.write(f"ok      {row.name}", file=sys.stdout)
        else:
            self.failed += 1
            tqdm.write(f"FAILED  {row.name}: {row.error}", file=sys.stderr)
        if self._bar is not None:
            self._bar.set_postfix(failed=self.failed, refresh=False)
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
