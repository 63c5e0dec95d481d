"""Click options shared by the commands: predict, age-sweep, batch, generate (and encode)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

PHOTO = click.Path(exists=True, dir_okay=False, path_type=Path)


def model_option(help: str = "Generator: registry name, official StyleGAN .pkl or babygan .npz.") -> Callable:
    """``--model / -m`` (default ffhq)."""
    return click.option("--model", "-m", default="ffhq", show_default=True, help=help)


def offline_option(
    help: str = "Never download: fail with instructions if a file is missing.",
) -> Callable:
    """``--offline``."""
    return click.option("--offline", is_flag=True, help=help)


def quiet_option(help: str = "No progress bars.") -> Callable:
    """``--quiet / -q``."""
    return click.option("--quiet", "-q", is_flag=True, help=help)


# Named shift options: (option, direction name, help).
SHIFT_OPTIONS = (
    (
        "--gender-shift",
        "gender",
        "Move along the gender direction (BabyGAN's demo uses -2 .. 2).",
    ),
    ("--smile", "smile", "Move along the smile direction (BabyGAN's demo uses -1 .. 2)."),
    ("--angle-horizontal", "angle_horizontal", "Turn the head left/right."),
    ("--angle-vertical", "angle_vertical", "Tilt the head up/down."),
    ("--eyes-open", "eyes_open", "Open or close the eyes."),
)


def _apply(f: Callable, options: list[Callable]) -> Callable:
    for option in reversed(options):
        f = option(f)
    return f


def child_options(f: Callable) -> Callable:
    """The blend and shift options (predict, age-sweep, batch)."""
    opts = [
        click.option(
            "--genes",
            type=click.FloatRange(0.0, 1.0),
            default=0.5,
            show_default=True,
            help="Share of the mother: 0 = all father, 1 = all mother.",
        ),
        click.option(
            "--style",
            type=click.Choice(["default", "father", "mother"]),
            default="default",
            show_default=True,
            help="default: one ratio for every layer; father/mother: BabyGAN's per-layer curves "
            "('Father's photo' / 'Mother's photo').",
        ),
    ]
    opts += [
        click.option(opt, f"shift_{dest}", type=float, default=None, help=text)
        for opt, dest, text in SHIFT_OPTIONS
    ]
    opts += [
        click.option(
            "--shift",
            "extra_shifts",
            multiple=True,
            metavar="NAME=X",
            help="Any other direction, NAME.npy from --directions or the registry (repeatable).",
        ),
        click.option(
            "--layers",
            type=click.IntRange(0),
            default=8,
            show_default=True,
            help="Directions move the first N layers (BabyGAN: 8).",
        ),
        click.option(
            "--size",
            type=click.IntRange(1),
            default=None,
            help="Side of the written images in pixels (default: the model's resolution).",
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
    ]
    return _apply(f, opts)


def age_options(f: Callable) -> Callable:
    return _apply(
        f,
        [
            click.option(
                "--age",
                type=float,
                default=None,
                help="Target age in years (default 10, as BabyGAN); coefficient = 6 - age/5.",
            ),
            click.option(
                "--age-coeff",
                type=float,
                default=None,
                help="Raw coefficient on the age direction instead of --age (+4 = 10 y, -4 = 50 y).",
            ),
        ],
    )


def session_options(f: Callable) -> Callable:
    """Model, directions and encoder options."""
    return _apply(
        f,
        [
            model_option(),
            click.option(
                "--directions",
                "directions_dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=None,
                help="Folder of direction files (age.npy, gender.npy, ...) instead of the registry's.",
            ),
            click.option(
                "--iterations",
                type=click.IntRange(1),
                default=100,
                show_default=True,
                help="Encoder optimisation steps per photo.",
            ),
            click.option(
                "--lr",
                type=click.FloatRange(min=0, min_open=True),
                default=0.25,
                show_default=True,
                help="Encoder learning rate.",
            ),
            click.option(
                "--perceptual",
                type=click.Choice(["vgg16", "pixel"]),
                default="vgg16",
                show_default=True,
                help="Encoder loss: VGG16 features (+ pixel, MS-SSIM) or pixel only (no VGG16 file).",
            ),
            click.option(
                "--init",
                "encoder_init",
                type=click.Choice(["auto", "estimator", "dlatent_avg"]),
                default="auto",
                show_default=True,
                help="Encoder starting point.",
            ),
            click.option(
                "--estimator", default=None, help="ResNet estimator file (name or path) for --init."
            ),
            click.option(
                "--encoder-seed", type=int, default=0, show_default=True, help="Encoder's random seed."
            ),
            click.option(
                "--no-cache", is_flag=True, help="Encode again even if the photo's dlatents are cached."
            ),
            offline_option(),
            quiet_option(),
        ],
    )


def _parse_extra_shifts(values: tuple[str, ...]) -> list[tuple[str, float]]:
    out = []
    for text in values:
        name, sep, num = text.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out.append((name.strip().removesuffix(".npy"), float(num)))
        except ValueError:
            raise click.BadParameter(
                f"{text!r}: expected NAME=NUMBER, e.g. smile=1.5", param_hint="--shift"
            ) from None
    return out


def make_options(kw: dict[str, Any], *, children: int = 1, seed: int = 0, with_age: bool = True):
    """ChildOptions from the parsed click options (pops what it uses)."""
    from babygan.pipeline import ChildOptions

    shifts = [(dest, kw.pop(f"shift_{dest}")) for _, dest, _ in SHIFT_OPTIONS]
    shifts = [(n, v) for n, v in shifts if v is not None] + _parse_extra_shifts(kw.pop("extra_shifts"))
    age_kw: dict[str, Any] = {}
    if with_age:
        age, age_coeff = kw.pop("age"), kw.pop("age_coeff")
        if age is not None and age_coeff is not None:
            raise click.UsageError("give --age or --age-coeff, not both")
        if age is not None:
            age_kw["age"] = age
        if age_coeff is not None:
            age_kw["age_coeff"] = age_coeff
    return ChildOptions(
        genes=kw.pop("genes"),
        style=kw.pop("style"),
        shifts=tuple(shifts),
        layers=kw.pop("layers"),
        size=kw.pop("size"),
        face_father=kw.pop("face_father"),
        face_mother=kw.pop("face_mother"),
        children=children,
        seed=seed,
        **age_kw,
    )


def make_session(kw: dict[str, Any]):
    """A Session from the parsed click options (pops what it uses)."""
    from babygan.encoder.settings import EncoderSettings
    from babygan.pipeline import Session

    settings = EncoderSettings(
        iterations=kw.pop("iterations"),
        lr=kw.pop("lr"),
        perceptual=kw.pop("perceptual"),
        init=kw.pop("encoder_init"),
        estimator=kw.pop("estimator"),
        seed=kw.pop("encoder_seed"),
    )
    return Session(
        kw.pop("model"),
        directions_dir=kw.pop("directions_dir"),
        encoder=settings,
        offline=kw.pop("offline"),
        progress=not kw.pop("quiet"),
        use_cache=not kw.pop("no_cache"),
    )
