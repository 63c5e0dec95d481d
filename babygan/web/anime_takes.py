"""The page's anime child: the switch's parameters, and "another style" without encoding again.

A prediction made with the anime switch on leaves its children's final codes here, by run;
"another style" draws the same codes through the session's anime model with the next seed's
style code (``pipeline.anime_images``), so the child stays the same face. Only the runs whose
folders the service keeps are remembered.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from babygan import pipeline, render
from babygan.errors import BabyganError
from babygan.outputs import anime_name
from babygan.session import Session


class AnimeRequestError(BabyganError):
    """A bad anime field in a request (the service answers 400, or 404 for an unknown run)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def anime_params(params: Mapping[str, Any]) -> tuple[bool, int | None]:
    """A request's ``"anime"`` (true/false, default false) and ``"anime_seed"`` (null: the
    default take, else a whole number >= 0)."""
    anime = params.get("anime", False)
    if not isinstance(anime, bool):
        raise AnimeRequestError(f"anime: expected true or false, got {anime!r}")
    return anime, style_seed(params.get("anime_seed"), "anime_seed")


def style_seed(value: Any, what: str) -> int | None:
    """None, or a whole number >= 0 (a JSON number or its text)."""
    if value is None:
        return None
    number = None
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number != int(number) or number < 0:
        raise AnimeRequestError(f"{what}: expected a whole number >= 0, got {value!r}")
    return int(number)


class AnimeTakes:
    """The final codes of the last runs' children, to draw them again in another anime style."""

    def __init__(self) -> None:
        # run -> (image side in pixels, [(child name, (L, w_dim) float32 code)])
        self._runs: dict[str, tuple[int, list[tuple[str, np.ndarray]]]] = {}

    def keep(self, run: str, size: int, children: Sequence[tuple[str, np.ndarray]]) -> None:
        self._runs[run] = (int(size), [(name, np.asarray(w, np.float32)) for name, w in children])

    def forget_all_but(self, runs: Iterable[str]) -> None:
        """Drop the runs whose folders are gone."""
        kept = set(runs)
        for run in [r for r in self._runs if r not in kept]:
            del self._runs[run]

    def draw(self, session: Session, run: str, folder: Path, seed: int | None) -> list[tuple[str, Path]]:
        """Each child of ``run`` drawn by the anime model with the style of ``seed`` (None: the
        default take: ``<child>_anime.png``, as predict wrote it), written into ``folder`` as
        ``<child>_anime_s<seed>.png``; returns ``[(child name, path)]``.
        The same seed gives the same images (take k depends only on the seed)."""
        if run not in self._runs:
            raise AnimeRequestError(f"run {run}: no anime child to restyle (predict with anime on)", 404)
        size, children = self._runs[run]
        codes = np.stack([w for _, w in children])  # (N, L, w_dim)
        images = pipeline.anime_images(session, codes, seed, size)  # uint8 (N, size, size, 3)
        record = pipeline.anime_record(session, seed)
        written = []
        for (name, _), image in zip(children, images, strict=True):
            file = anime_name(name) if seed is None else f"{name}_anime_s{seed}.png"
            written.append((name, render.save_png(folder / file, image, {"child": name, "anime": record})))
        return written
