"""The ``babygan`` command: a click group whose commands live in this package.

Command modules must stay cheap to import: Keras, dlib and friends are imported
inside the command functions, so ``babygan --help`` answers at once.
"""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path

import click

from babygan import __version__, backend
from babygan.align_ahead import FaceSearchAhead
from babygan.cli import age_sweep, batch, encode, generate, predict, serve, train_estimator
from babygan.cli import align as align_cmd
from babygan.cli import anime as anime_cmd
from babygan.cli import models as models_cmd
from babygan.cli.learn_directions import learn_directions
from babygan.cli.options import FACES_AHEAD, SHIFT_OPTIONS
from babygan.edit_ranges import EditRangeError
from babygan.errors import BabyganError
from babygan.models import use_models_dir

# Commands that run the networks: once their arguments are parsed, the Keras backend is
# started first (babygan/backend), without its start-up chatter.
# serve too: resolving --precision, before its body, imports TensorFlow.
_NETWORK_COMMANDS = {
    "generate",
    "encode",
    "train-estimator",
    "predict",
    "age-sweep",
    "batch",
    "serve",
    "anime",
}


# Commands whose photos' faces are searched in a second process while the backend starts
# (babygan/align_ahead.py): their photo arguments.
_SEARCH_AHEAD = {"predict": ("father", "mother"), "age-sweep": ("father", "mother")}


class _Group(click.Group):
    """Turns a BabyganError or OSError anywhere below into ``Error: <message>`` and exit 1;
    an edit out of range is named by its option (``--age``, ``--ages``...)."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except EditRangeError as exc:
            raise click.ClickException(exc.message(option_name(exc, ctx.invoked_subcommand))) from exc
        except BabyganError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:  # an unwritable folder, a full disk...: the path and the reason
            raise click.ClickException(os_error_text(exc)) from exc


def option_name(exc: EditRangeError, command: str | None) -> str:
    """The option that set the edit ``exc`` refuses, as ``command`` spells it."""
    if exc.field == "shift":
        named = {dest: opt for opt, dest, _ in SHIFT_OPTIONS}
        return named.get(exc.direction or "", f"--shift {exc.direction}")
    if command == "age-sweep" and exc.field in ("age", "age_coeff"):
        return "--ages" if exc.field == "age" else "--coeffs"
    return "--" + exc.field.replace("_", "-")  # --age, --age-coeff, --genes, --children


def os_error_text(exc: OSError) -> str:
    """``"/path: Permission denied"`` rather than a traceback."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="babygan")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="BABYGAN_MODELS_DIR",
    help="Where model files are kept (default: $BABYGAN_HOME/models, else the user cache dir).",
)
def main(models_dir: Path | None) -> None:
    """Predict a child's face from photos of two parents, with StyleGAN."""
    _log_to_stderr()
    if models_dir is not None:
        use_models_dir(models_dir)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (click's test runner swaps it)."""

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def _log_to_stderr() -> None:
    """Library warnings and notes (logger "babygan") go to stderr, one line each."""
    logger = logging.getLogger("babygan")
    if not any(getattr(h, "_babygan", False) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("babygan: %(message)s"))
        handler._babygan = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _backend_first(command: click.Command) -> None:
    """Start the backend (babygan.backend.ensure_started) before the command's own body and
    its options' building (after its arguments parse, so a typo or --help answers at once);
    the photos' face search first, beside it, where the command has photos."""
    body = command.callback
    assert body is not None
    photos = _SEARCH_AHEAD.get(command.name or "", ())

    @functools.wraps(body)
    def run(*args, **kwargs):
        if photos:
            ctx = click.get_current_context()
            search = FaceSearchAhead([kwargs[name] for name in photos])
            ctx.meta[FACES_AHEAD] = search  # SessionOptions.open hands it to the Session
            ctx.call_on_close(search.close)
        backend.ensure_started()
        return body(*args, **kwargs)

    command.callback = run


for _command in (
    models_cmd.models,
    align_cmd.align,
    predict.predict,
    age_sweep.age_sweep,
    batch.batch,
    generate.generate,
    encode.encode,
    anime_cmd.anime,
    train_estimator.train_estimator,
    learn_directions,
    serve.serve,
):
    main.add_command(_command)
for _name in _NETWORK_COMMANDS:
    _backend_first(main.commands[_name])
