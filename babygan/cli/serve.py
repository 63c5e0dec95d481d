"""``babygan serve``: a local web page to try babygan (needs the ``web`` extra)."""

from __future__ import annotations

import logging

import click

from babygan.cli.options import SessionOptions, session_options
from babygan.errors import BabyganError
from babygan.web import require_web, server
from babygan.web.service import WebService

log = logging.getLogger("babygan")

#: directions offered as sliders when they come from the registry (age first; it is required);
#: from a folder (--directions, or the model's own), the service offers what it holds
REGISTRY_DIRECTIONS = ("age", "gender", "smile", "angle_horizontal", "angle_vertical", "eyes_open")


def _need_web_extra(ctx: click.Context, param: click.Parameter, value: object) -> None:
    """Say how to install the web extra before anything else is parsed or loaded (--help still works)."""
    if ctx.resilient_parsing:
        return

    try:
        require_web()
    except BabyganError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command()
# Eager and hidden: runs while the command line is parsed, before the session's options are
# built (which may start TensorFlow), so a missing extra costs nothing and prints one line.
@click.option(
    "--_need-web", is_flag=True, hidden=True, expose_value=False, is_eager=True, callback=_need_web_extra
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Anything but this machine's loopback lets others use the page "
    "(and upload photos to it): you get a warning.",
)
@click.option(
    "--port", "-p", type=click.IntRange(0, 65535), default=7860, show_default=True, help="0: any free port."
)
@click.option(
    "--max-upload-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=20.0,
    show_default=True,
    help="Largest photo the page accepts.",
)
@session_options
def serve(host: str, port: int, max_upload_mb: float, session: SessionOptions) -> None:
    """Start a web page to try babygan: drop two photos, move sliders, download the child.

    One process holds the models; requests queue behind each other. Photos and results
    live in a temporary folder, removed when the server stops (Ctrl+C).
    """
    import shutil
    import tempfile
    from pathlib import Path

    if not server.is_loopback(host):
        log.warning(
            "listening on %s: anyone who can reach this machine can use the page and upload photos to it",
            host,
        )
    sock = server.bind(host, port)  # a busy port fails before the models load
    try:
        opened = session.open()
        workdir = Path(tempfile.mkdtemp(prefix="babygan-serve-"))
        try:
            service = WebService(
                opened,
                workdir,
                directions=REGISTRY_DIRECTIONS,
                max_upload_bytes=int(max_upload_mb * 2**20),
                # --anime-model given: it must load; else the switch is offered where the model has one
                anime=True if session.anime_model is not None else None,
            )
            service.prepare()

            def ready(url: str) -> None:
                click.echo(f"babygan: serving on {url} (Ctrl+C to stop)")
                click.echo(f"babygan: temporary files in {workdir} (removed when it stops)")

            server.run(service, sock, on_ready=ready)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    finally:
        sock.close()
    click.echo("babygan: stopped")
