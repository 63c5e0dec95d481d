"""Click parameter types: ranges and lists parsed at the command line, so command bodies get values.

``--seeds 0-7`` -> ``SeedList``, ``--ages 1:50:19`` / ``--coeffs -4:4:0.5`` -> ``AgeRange``,
``--shift NAME=X`` -> ``Shift``, ``--init auto|...|FILE.npy`` -> ``EncoderInit``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from babygan.encoder.settings import INIT_CHOICES
from babygan.errors import BabyganError
from babygan.latent import Age, parse_range
from babygan.stylegan.sampling import parse_seeds

PHOTO = click.Path(exists=True, dir_okay=False, path_type=Path)


class SeedList(click.ParamType):
    """``0-7``, ``1,5,9`` or a mix -> ``list[int]``."""

    name = "seeds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value

        try:
            return parse_seeds(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


class AgeRange(click.ParamType):
    """``FROM:TO:N`` ages in years (N values), or ``FROM:TO:STEP`` raw coefficients -> ``tuple[Age, ...]``."""

    def __init__(self, in_years: bool) -> None:
        self.in_years = in_years
        self.name = "ages" if in_years else "coeffs"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[Age, ...]:
        if isinstance(value, tuple):
            return value

        try:
            values = parse_range(str(value), count=self.in_years)
        except BabyganError as exc:
            self.fail(str(exc), param, ctx)
        make = Age.years if self.in_years else Age.coeff
        return tuple(make(float(v)) for v in values)


class Shift(click.ParamType):
    """``NAME=X`` -> ``(name, x)``: a move along NAME.npy."""

    name = "NAME=X"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, float]:
        if isinstance(value, tuple):
            return value
        name, sep, num = str(value).partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            return name.strip().removesuffix(".npy"), float(num)
        except ValueError:
            self.fail(f"{value!r}: expected NAME=NUMBER, e.g. smile=1.5", param, ctx)


class EncoderInit(click.ParamType):
    """``auto``, ``estimator``, ``dlatent_avg`` or a path to a ``.npy`` file of dlatents."""

    name = "auto|estimator|dlatent_avg|FILE.npy"

    def get_metavar(self, *args: Any, **kwargs: Any) -> str:
        return f"[{self.name}]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:

        text = str(value)
        if text in INIT_CHOICES:
            return text
        if not text.endswith(".npy"):
            self.fail(f"{text!r}: choose one of {', '.join(INIT_CHOICES)}, or a FILE.npy", param, ctx)
        if not Path(text).expanduser().is_file():
            self.fail(f"{text}: init file not found", param, ctx)
        return str(Path(text).expanduser().resolve())
