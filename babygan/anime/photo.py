"""A photo's face as anime: the default take (its own code through the anime model) and styles.

    result = anime_photo("me.jpg", styles=3, seed=0, session=session)
    write_anime([result], "out")   # me_anime.png, me_anime_1.png .. me_anime_3.png, me_anime_sheet.png

The photo is aligned and encoded by the session as a parent is (the encoding is cached); the
images are written at a child's size (the model's resolution, at least 256 px) with a record in
their PNG text. :func:`write_anime` writes any mix of photo and clip results together: every
file goes to a temporary name first and all are renamed only once all are written, so a run
that fails leaves nothing new behind.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from babygan import render
from babygan.anime.stylize import check_styles
from babygan.atomic import atomic_path
from babygan.errors import BabyganError

if TYPE_CHECKING:
    from babygan.parents import Parent
    from babygan.session import Session

#: sheets' tiles are capped at this many pixels, at most this many to a row (as predict's)
SHEET_TILE_MAX = 512
SHEET_COLUMNS_MAX = 6


@dataclass
class AnimePhoto:
    """One photo's face drawn as anime."""

    photo: Parent  # the aligned, encoded photo (``photo.dlatents`` (L, w_dim) is what was drawn)
    image: np.ndarray  # uint8 (size, size, 3): the default take, the face's own code
    takes: list[np.ndarray]  # uint8 (size, size, 3) each: take k = style code k of ``seed``
    seed: int
    record: dict[str, Any] = field(default_factory=dict)  # provenance: model, anime model, encoder

    @property
    def stem(self) -> str:
        return f"{self.photo.path.stem}_anime"

    def files(self) -> dict[str, Callable[[Path], Any]]:
        """``{file name: write(path)}``: ``<stem>_anime.png``, with takes ``<stem>_anime_<k>.png``
        and ``<stem>_anime_sheet.png`` (aligned photo | anime | style 1 ...)."""
        head = {**self.record, "photo": self.photo.to_json()}
        out: dict[str, Callable[[Path], Any]] = {
            f"{self.stem}.png": _png(self.image, {**head, "anime": {"take": "own", "seed": None}})
        }
        if not self.takes:
            return out
        for k, take in enumerate(self.takes, start=1):
            out[f"{self.stem}_{k}.png"] = _png(take, {**head, "anime": {"take": k, "seed": self.seed}})
        images = [self.photo.aligned, self.image, *self.takes]
        labels = ["photo", "anime", *(f"style {k}" for k in range(1, len(self.takes) + 1))]
        tile = min(int(self.image.shape[0]), SHEET_TILE_MAX)
        cols = min(len(images), SHEET_COLUMNS_MAX)
        sheet = render.contact_sheet(images, labels, columns=cols, tile=tile)
        out[f"{self.stem}_sheet.png"] = _png(sheet, {**head, "layout": labels, "seed": self.seed})
        return out


def _png(image: np.ndarray, metadata: dict[str, Any]) -> Callable[[Path], None]:
    return lambda path: render.write_png(path, image, metadata)


def anime_record(session: Session) -> dict[str, Any]:
    """What the records say of a run: the session's provenance and the anime model used."""
    anime = session.anime.anime
    return {
        **session.provenance(),
        "anime_model": {
            "path": None if anime.path is None else str(anime.path),
            "swap_layer": anime.swap_layer,
            "base_sha256": anime.base_sha256,
            **{k: anime.info[k] for k in ("name", "licence") if k in anime.info},
        },
    }


def anime_photo(
    photo: str | Path,
    *,
    styles: int = 0,
    seed: int = 0,
    face: int | None = None,
    size: int | None = None,
    session: Session | None = None,
) -> AnimePhoto:
    """Align and encode the face of ``photo`` (cached, as a parent's), and draw it as anime.

    styles: how many other styles (0..16), take k from style code k of ``seed``, so the same
    seed gives the same takes and more takes keep the first ones. face: which face of the photo
    (1-based from the left; None: the largest). size: side of the images (default: the model's
    resolution, at least 256 px). One-line BabyganErrors: no face, styles out of range, no anime
    model for the session's model.
    """
    from babygan.pipeline import SHOWN_MIN
    from babygan.session import Session

    styles = check_styles(styles)
    session = session or Session()
    stylizer = session.anime  # the anime model, or why there is none, before the slow encode
    (parent,) = session.parents([(photo, face)])
    size = size or max(stylizer.resolution, SHOWN_MIN)
    own = stylizer.render(parent.dlatents[None])[0]  # uint8 (S, S, 3)
    takes = [render.resize(t, size) for t in stylizer.takes(parent.dlatents, styles, seed)]
    return AnimePhoto(parent, render.resize(own, size), takes, seed, anime_record(session))


class _Writable(Protocol):
    def files(self) -> dict[str, Callable[[Path], Any]]: ...


def write_anime(results: Sequence[_Writable], output_dir: str | Path) -> list[list[Path]]:
    """Write every file of ``results`` (AnimePhoto / AnimeClip) into ``output_dir``, all or
    nothing: each to a temporary name, all renamed once all are written. Returns each result's
    paths (the first: its anime image or clip)."""
    out = Path(output_dir)
    plan: dict[str, Callable[[Path], Any]] = {}
    names: list[list[str]] = []
    for result in results:
        files = result.files()
        for name, write in files.items():
            if name in plan:
                raise BabyganError(f"{out / name}: two inputs would write this file (inputs share a name)")
            plan[name] = write
        names.append(list(files))
    made = not out.exists()
    try:
        # every atomic_path renames when the stack closes cleanly, and removes its file on an error
        with contextlib.ExitStack() as stack:
            for name, write in plan.items():
                write(stack.enter_context(atomic_path(out / name)))
    except BaseException:
        if made:  # the folder this run made, empty again
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return [[out / name for name in group] for group in names]
