"""Click options shared by the commands, each group handing the command one ready-built object.

- ``@child_options(...)`` -> ``options``: a ``ChildOptions`` (or ``EditOptions`` for a sweep);
- ``@session_options`` / ``@encoding_options`` -> ``session``: a :class:`SessionOptions`
  (``session.open()`` makes the ``Session``);
- ``@precision_option`` -> ``precision``: "fp32" or "bf16", resolved once and logged;
- ``output_dir_option(...)`` -> ``output_dir``: a Path.

The decorators stack in any order: whichever of ``options`` / ``session`` is built second
tells the session which directions the command will use. Defaults are the library's own
(the option dataclasses' fields, babygan.latent's constants), never typed again here.

Ranges (``--seeds 0-7``, ``--ages 1:50:19``, ``--coeffs -4:4:0.5``) are parameter types, so
a command body receives parsed values. Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from babygan import latent
from babygan.aging import AgingSettings
from babygan.cli.anime_options import anime_click_options, anime_values
from babygan.cli.encoder_options import ENCODER_FIELDS, encoder_click_options
from babygan.cli.params import Shift
from babygan.edit_ranges import CHILDREN
from babygan.latent import Age
from babygan.model_choice import choose_model
from babygan.pipeline import ChildOptions, EditOptions
from babygan.precision import CHOICES, ENV_VAR
from babygan.precision import resolve_precision as resolve
from babygan.session import Session

log = logging.getLogger("babygan")

# --------------------------------------------------------------------------- plumbing


def _apply(f: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        f = option(f)
    return f


def _building(target: str, options: list[Callable], build: Callable[[dict[str, Any]], Any]) -> Callable:
    """A decorator adding ``options`` to a command whose body then gets one keyword,
    ``target`` = ``build(kw)``; ``build`` pops the raw option values it uses from ``kw``."""

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def body(*args: Any, **kw: Any) -> Any:
            kw[target] = build(kw)
            _link(kw)
            return f(*args, **kw)

        return _apply(body, options)

    return decorate


def _link(kw: dict[str, Any]) -> None:
    """Once both ``session`` and child ``options`` are built (in whichever order the decorators
    stack), the session learns the directions the options move along, to check them up front."""
    session, options = kw.get("session"), kw.get("options")
    if isinstance(session, SessionOptions) and isinstance(options, EditOptions):
        kw["session"] = dataclasses.replace(session, directions=_directions_used(options))


def _default(cls: type, name: str) -> Any:
    """The default of dataclass ``cls``'s field ``name``: the library's, shown by ``--help``."""
    (f,) = (f for f in dataclasses.fields(cls) if f.name == name)
    return f.default


def output_dir_option(help: str, *, default: Path | None = None) -> Callable:
    """``--output-dir / -o`` -> ``output_dir``: a folder (created when needed); required without a default."""
    return click.option(
        "--output-dir",
        "-o",
        type=click.Path(file_okay=False, path_type=Path),
        required=default is None,
        default=default,
        show_default=default is not None,
        help=help,
    )


#: ``PHOTOS...``: one or more photo files (a missing one is reported per photo, not by click)
photos_argument = click.argument("photos", nargs=-1, required=True, type=click.Path(path_type=Path))


def face_option(
    help: str = "Which face of each photo, counted from the left (default: the largest).",
) -> Callable:
    """``--face N`` -> ``face``: 1-based from the left, None = the largest."""
    return click.option("--face", type=click.IntRange(min=1), default=None, help=help)


def model_option(help: str = "Generator: registry name, official StyleGAN .pkl or babygan .npz.") -> Callable:
    """``--model / -m``: the name or path given, else FFHQ when cached and the built-in model
    otherwise (babygan.model_choice, which says in one line which model runs)."""
    return click.option(
        "--model",
        "-m",
        default=None,
        callback=_choose_model,
        help=f"{help} `builtin`: babygan's own model. Default: ffhq when it is in the cache, else builtin.",
    )


def _choose_model(ctx: click.Context, param: click.Parameter, value: str | None) -> str:

    return choose_model(value)


def anime_model_option(
    help: str = "Anime model file of --model (default: the built-in model's own; "
    "scripts/train_anime.py makes one for another model).",
) -> Callable:
    """``--anime-model PATH`` -> ``anime_model``: a Path or None (put into SessionOptions.anime_model)."""
    return click.option(
        "--anime-model", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help
    )


def offline_option(help: str = "Never download: fail with instructions if a file is missing.") -> Callable:
    """``--offline``."""
    return click.option("--offline", is_flag=True, help=help)


def quiet_option(help: str = "No progress bars.") -> Callable:
    """``--quiet / -q``."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


# --------------------------------------------------------------------------- precision


def _precision_click_option() -> Callable:

    return click.option(
        "--precision",
        type=click.Choice(CHOICES),
        default="auto",
        envvar=ENV_VAR,
        show_default=True,
        show_envvar=True,
        help="Networks in float32 or bfloat16; auto: bf16 where the GPU or CPU has bfloat16 units.",
    )


def resolve_precision(requested: str) -> str:
    """fp32 / bf16 / auto -> fp32 / bf16; what auto chose is logged, with the reason."""

    chosen, reason = resolve(requested)
    if requested == "auto":  # an explicit choice is not news, unless it costs here
        log.info("precision: %s (%s)", chosen, reason)
    elif reason != "as asked":
        log.warning("precision: %s (%s)", chosen, reason)
    return chosen


def precision_option(f: Callable) -> Callable:
    """``--precision`` -> ``precision``: "fp32" or "bf16", resolved for this machine."""
    return _building(
        "precision", [_precision_click_option()], lambda kw: resolve_precision(kw.pop("precision"))
    )(f)


# --------------------------------------------------------------------------- child options

# Named shift options: (option, direction name, help).
SHIFT_OPTIONS = (
    ("--gender-shift", "gender", "Move along the gender direction (BabyGAN's demo uses -2 .. 2)."),
    ("--smile", "smile", "Move along the smile direction (BabyGAN's demo uses -1 .. 2)."),
    ("--angle-horizontal", "angle_horizontal", "Turn the head left/right."),
    ("--angle-vertical", "angle_vertical", "Tilt the head up/down."),
    ("--eyes-open", "eyes_open", "Open or close the eyes."),
)


def child_options(*, age: bool = True, siblings: bool = False) -> Callable:
    """The blend and edit options -> ``options``: a ChildOptions (an EditOptions without ``age``).

    age: with ``--age`` / ``--age-coeff``; siblings: with ``--children`` / ``--seed``.
    """
    opts = [
        click.option(
            "--genes",
            type=click.FloatRange(0.0, 1.0),
            default=_default(EditOptions, "genes"),
            show_default=True,
            help="Share of the mother: 0 = all father, 1 = all mother.",
        ),
        click.option(
            "--style",
            type=click.Choice(latent.STYLES),
            default=_default(EditOptions, "style"),
            show_default=True,
            help="default: one ratio for every layer; father/mother: BabyGAN's per-layer curves "
            "('Father's photo' / 'Mother's photo').",
        ),
        *(
            click.option(opt, f"shift_{dest}", type=float, default=None, help=text)
            for opt, dest, text in SHIFT_OPTIONS
        ),
        click.option(
            "--shift",
            "extra_shifts",
            type=Shift(),
            multiple=True,
            help="Any other direction, NAME.npy from --directions or the registry (repeatable).",
        ),
        click.option(
            "--layers",
            type=click.IntRange(0),
            default=_default(EditOptions, "layers"),
            show_default=True,
            help="Directions move the first N layers (BabyGAN: 8).",
        ),
        click.option(
            "--size",
            type=click.IntRange(1),
            default=None,
            help="Side of the written images in pixels (default: the model's resolution, at least 256).",
        ),
        click.option(
            "--face-father",
            type=click.IntRange(1),
            default=None,
            help="Which face of the father's photo, counted from the left (default: the largest).",
        ),
        click.option(
            "--face-mother",
            type=click.IntRange(1),
            default=None,
            help="Which face of the mother's photo (default: the largest).",
        ),
        click.option(
            "--aging-steps",
            type=click.IntRange(0),
            default=AgingSettings().steps,
            show_default=True,
            help="Ages in years: steps that bring the child to the age while holding its likeness "
            "(the attribute network's age, dlib's face descriptor); 0: the age direction alone.",
        ),
        click.option(
            "--likeness-weight",
            type=click.FloatRange(min=0),
            default=AgingSettings().identity_weight,
            show_default=True,
            help="How strongly aging holds the face descriptor (an age error of 5 years counts 1).",
        ),
        *anime_click_options(),
    ]
    if age:
        opts += [
            click.option(
                "--age",
                type=float,
                default=None,
                help=f"Target age in years (default {latent.DEFAULT_AGE_YEARS:g}): as the attribute network "
                "reads it, on a model with an age calibration (built-in); else coeff = 6 - age/5.",
            ),
            click.option(
                "--age-coeff",
                type=float,
                default=None,
                help="Raw coefficient on the age direction instead of --age (+4 = 10 y, -4 = 50 y).",
            ),
        ]
    if siblings:
        opts += [
            click.option(
                "--children",
                type=click.IntRange(*CHILDREN),
                default=_default(ChildOptions, "children"),
                show_default=True,
                help="Siblings: each a random per-layer crossover of the parents, with its own noise.",
            ),
            click.option(
                "--seed",
                type=int,
                default=_default(ChildOptions, "seed"),
                show_default=True,
                help="Seed for siblings' crossover and noise.",
            ),
        ]
    return _building("options", opts, functools.partial(_build_child_options, age=age, siblings=siblings))


def _build_child_options(kw: dict[str, Any], *, age: bool, siblings: bool) -> EditOptions:
    named = [(dest, kw.pop(f"shift_{dest}")) for _, dest, _ in SHIFT_OPTIONS]
    shifts = tuple((n, v) for n, v in named if v is not None) + tuple(kw.pop("extra_shifts"))
    edit = EditOptions(
        genes=kw.pop("genes"),
        style=kw.pop("style"),
        shifts=shifts,
        layers=kw.pop("layers"),
        size=kw.pop("size"),
        face_father=kw.pop("face_father"),
        face_mother=kw.pop("face_mother"),
        aging=AgingSettings(steps=kw.pop("aging_steps"), identity_weight=kw.pop("likeness_weight")),
        **anime_values(kw),
    )
    if not age:
        return edit
    years, coeff = kw.pop("age"), kw.pop("age_coeff")
    if years is not None and coeff is not None:
        raise click.UsageError("give --age or --age-coeff, not both")
    extra: dict[str, Any] = {}
    if years is not None:
        extra["age"] = Age.years(years)
    elif coeff is not None:
        extra["age"] = Age.coeff(coeff)
    if siblings:
        extra["children"], extra["seed"] = kw.pop("children"), kw.pop("seed")
    return ChildOptions(**{f.name: getattr(edit, f.name) for f in dataclasses.fields(edit)}, **extra)


# --------------------------------------------------------------------------- session and encoder


#: ``click.Context.meta`` key of the command's FaceSearchAhead (babygan/align_ahead.py)
FACES_AHEAD = "babygan.faces_ahead"


@dataclass(frozen=True)
class SessionOptions:
    """What a Session is made of, as the command line gave it."""

    model: str
    directions_dir: Path | None
    encoder: dict[str, Any]  # the encoder settings given on the command line (and the precision)
    use_cache: bool
    offline: bool
    quiet: bool
    precision: str  # "fp32" or "bf16", resolved
    #: the directions the command will use (age and its shifts): checked by open() up front
    directions: tuple[str, ...] = ()
    #: the anime model file (``--anime-model``; None: the built-in model's own), for Session.anime
    anime_model: Path | None = None

    def open(self, *, aligned: bool = False) -> Session:
        """The Session, once every file the run needs is here (fetched, or all named in one error);
        with the photos' faces searched ahead where the command started that (cli/__init__.py)."""
        ctx = click.get_current_context(silent=True)
        ahead = None if ctx is None or aligned else ctx.meta.get(FACES_AHEAD)

        session = Session(
            self.model,
            directions_dir=self.directions_dir,
            encoder=self.encoder,
            offline=self.offline,
            progress=not self.quiet,
            use_cache=self.use_cache,
            aligned=aligned,
            precision=self.precision,
            anime_model=self.anime_model,
            faces_ahead=ahead,
        )
        session.preflight(self.directions)
        return session


def _build_session_options(kw: dict[str, Any], *, anime_model: bool = False) -> SessionOptions:
    """anime_model: the group has --anime-model, taken from ``kw`` (encoding_options has none:
    ``babygan anime`` adds its own, which stays for the command)."""

    precision = resolve_precision(kw.pop("precision"))
    values = {name: kw.pop(f"encoder_{name}") for name in ENCODER_FIELDS}
    # only what the user typed: the session fills in the rest with the model's own defaults
    # (babygan.encoder.settings.model_defaults: the built-in model needs no VGG16)
    ctx = click.get_current_context(silent=True)
    chosen = {
        name: value
        for name, value in values.items()
        if ctx is None or ctx.get_parameter_source(f"encoder_{name}") is not ParameterSource.DEFAULT
    }
    return SessionOptions(
        model=kw.pop("model"),
        directions_dir=kw.pop("directions_dir", None),
        encoder={**chosen, "precision": precision},
        use_cache=not kw.pop("no_cache"),
        offline=kw.pop("offline"),
        quiet=kw.pop("quiet"),
        precision=precision,
        anime_model=kw.pop("anime_model") if anime_model else None,
    )


def _directions_used(options: EditOptions) -> tuple[str, ...]:
    """The directions a command's child options move along: age, then each shift."""
    return ("age", *(name for name, _ in options.shifts))


def _session_decorator(*, directions: bool) -> Callable:
    def decorate(f: Callable) -> Callable:
        opts = [model_option()]
        if directions:
            opts.append(
                click.option(
                    "--directions",
                    "directions_dir",
                    type=click.Path(file_okay=False, path_type=Path),
                    default=None,
                    help="Folder of direction files (age.npy, gender.npy, ...) instead of the registry's.",
                )
            )
            opts.append(anime_model_option())  # the commands that make children
        opts += encoder_click_options()
        opts += [
            click.option(
                "--no-cache", is_flag=True, help="Encode again even if the photo's dlatents are cached."
            ),
            _precision_click_option(),
            offline_option(),
            quiet_option(),
        ]
        build = functools.partial(_build_session_options, anime_model=directions)
        return _building("session", opts, build)(f)

    return decorate


#: model, directions, anime model, encoder, precision, --offline, --quiet -> ``session``: SessionOptions
session_options = _session_decorator(directions=True)
#: the same without --directions (``babygan encode``)
encoding_options = _session_decorator(directions=False)
