"""``babygan models``: list, fetch, verify and locate the registry's files."""

from __future__ import annotations

import click

from babygan import models as model_files


@click.group()
def models() -> None:
    """Model files: list, fetch, verify, path."""


def _state(status: model_files.FileStatus) -> tuple[str, str]:
    if not status.present:
        return "absent", "-"
    if not status.entry.pinned:
        return "present", f"unpinned (sha256 {status.sha256[:12]}...)"
    return "present", "ok" if status.verified else "MISMATCH"


@models.command("list")
def list_models() -> None:
    """Every known file: name, size, licence, present, verified."""
    from babygan.texttable import text_table

    rows = []
    for entry in model_files.manifest().values():
        present, verified = _state(model_files.file_status(entry))
        size = model_files.human_size(entry.size)
        rows.append((entry.name, ",".join(entry.aliases) or "-", size, present, verified, entry.licence))
    rows.append(_builtin_row())
    click.echo(text_table(("NAME", "ALIASES", "SIZE", "PRESENT", "VERIFIED", "LICENCE"), rows))
    click.echo(f"\nmodels directory: {model_files.models_dir()}")


def _builtin_row() -> tuple[str, ...]:
    """babygan's own model: shipped in the package (its directions folder counted in its size)."""
    from babygan import builtin

    path = builtin.builtin_model_path()
    if not path.is_file():
        return (builtin.BUILTIN_FILE, builtin.BUILTIN, "-", "not in this build", "-", builtin.BUILTIN_LICENCE)
    folder = path.parent / builtin.BUILTIN_DIRECTIONS
    extra = sum(p.stat().st_size for p in folder.glob("*") if p.is_file()) if folder.is_dir() else 0
    size = model_files.human_size(path.stat().st_size + extra)
    return (builtin.BUILTIN_FILE, builtin.BUILTIN, size, "shipped", "-", builtin.BUILTIN_LICENCE)


@models.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Fetch every file in the model_files.")
@click.option("--force", is_flag=True, help="Download again even when a verified copy is present.")
def fetch(names: tuple[str, ...], fetch_all: bool, force: bool) -> None:
    """Download NAMES (file names or aliases) into the models directory, verified."""
    if fetch_all:
        names = tuple(model_files.manifest())
    if not names:
        raise click.UsageError("name at least one file, or pass --all (see `babygan models list`)")
    from babygan.cli import os_error_text

    failed = []
    for name in names:
        if name == "builtin":
            from babygan.builtin import builtin_model_file

            try:
                click.echo(f"{builtin_model_file()} (ships with babygan: nothing to fetch)")
            except model_files.ModelFileError as exc:
                click.echo(f"Error: {exc}", err=True)
                failed.append(name)
            continue
        try:
            path = model_files.fetch(name, force=force, echo=lambda m: click.echo(m, err=True))
        except (model_files.ModelFileError, OSError) as exc:
            text = os_error_text(exc) if isinstance(exc, OSError) else str(exc)
            click.echo(f"Error: {text}", err=True)
            failed.append(name)
            continue
        click.echo(f"{path}")
    if failed:
        raise SystemExit(1)


@models.command("verify")
@click.argument("names", nargs=-1)
def verify(names: tuple[str, ...]) -> None:
    """Re-hash the files present (or NAMES) and compare them with the model_files."""
    bad = 0
    for status in model_files.verify(names or None):
        if not status.present:
            if names:
                click.echo(f"{status.entry.name}: absent ({status.path})")
                bad += 1
            continue
        if not status.entry.pinned:
            click.echo(f"{status.entry.name}: unpinned, sha256 {status.sha256}")
        elif status.verified:
            click.echo(f"{status.entry.name}: ok")
        else:
            click.echo(
                f"{status.entry.name}: MISMATCH: expected sha256 {status.entry.sha256}, got {status.sha256} "
                f"({status.path}); `babygan models fetch {status.entry.name}` replaces it"
            )
            bad += 1
    if bad:
        raise SystemExit(1)


@models.command("path")
@click.argument("name")
def path(name: str) -> None:
    """Print where NAME lives in the models directory (present or not)."""
    if name == "builtin":
        from babygan.builtin import builtin_model_path

        click.echo(str(builtin_model_path()))
        return
    click.echo(str(model_files.model_path(model_files.lookup(name))))
