"""The anime options of the commands that make children (babygan/anime): ``--anime`` /
``--anime-seed`` with the child options (babygan/cli/options.py adds them to its group;
``--anime-model`` is options.anime_model_option, with the session options)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click


def anime_click_options() -> list[Callable]:
    """``--anime``, ``--anime-seed`` (popped by :func:`anime_values`)."""
    return [
        click.option(
            "--anime",
            is_flag=True,
            help="Also draw each child through the model's anime model: child_anime.png beside "
            "child.png (age-sweep: sheet_anime.png and an _anime GIF / MP4).",
        ),
        click.option(
            "--anime-seed",
            type=click.IntRange(min=0),
            default=None,
            help="With --anime: the anime style of this seed instead of the face's own (the default take).",
        ),
    ]


def anime_values(kw: dict[str, Any]) -> dict[str, Any]:
    """EditOptions' ``anime`` and ``anime_seed`` from the raw option values (popped from ``kw``)."""
    anime, seed = kw.pop("anime"), kw.pop("anime_seed")
    if seed is not None and not anime:
        raise click.UsageError("--anime-seed only with --anime")
    return {"anime": anime, "anime_seed": seed}
