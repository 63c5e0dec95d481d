#!/usr/bin/env python3
"""The README's pictures of the built-in model: a parents -> child sheet and an age-sweep strip.

    python scripts/make_readme_pictures.py FATHER MOTHER -o docs

The parents must be photos whose licence allows showing them (the README names them):
babygan's own pictures use Barack Obama's official 2012 portrait (The White House, public
domain) and NASA's portrait of Eileen Collins that ships in scikit-image
(``skimage.data.astronaut()``, public domain); give ``astronaut`` as a parent to use it.
Writes OUT/builtin-sheet.png (father | child | mother), OUT/builtin-age-sweep.png (a strip of
ages), OUT/builtin-age-sweep.gif and OUT/builtin-anime.png (each parent's photo and the child,
drawn by the shipped anime model in its own style and ANIME_STYLES others), all small, with the
built-in model, offline.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

# within the built-in model's age range (its age calibration: 0 to 50 years)
AGES = (3, 10, 20, 30, 40, 50)
TILE = 160
ANIME_STYLES, ANIME_SEED = 3, 7


def _photo(name: str, folder: Path) -> Path:
    if name != "astronaut":
        return Path(name)
    import skimage.data
    from PIL import Image

    path = folder / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("father")
    ap.add_argument("mother")
    ap.add_argument("-o", "--out", default="docs")
    args = ap.parse_args(argv)

    import babygan
    from babygan import latent, render

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        father, mother = _photo(args.father, Path(tmp)), _photo(args.mother, Path(tmp))
        session = babygan.Session("builtin", offline=True, progress=False)
        child = babygan.predict(father, mother, babygan.ChildOptions(), session)
        images = [child.father.aligned, child.children[0].image, child.mother.aligned]
        sheet = render.contact_sheet(images, ["father", "child", "mother"], columns=3, tile=TILE)
        render.save_png(out / "builtin-sheet.png", sheet)
        ages = [latent.Age.years(a) for a in AGES]
        sweep = babygan.age_sweep(father, mother, babygan.EditOptions(), session, ages=ages)
        strip = render.contact_sheet(
            sweep.frames, [f"{a} y" for a in AGES], columns=len(AGES), tile=TILE // 2 * 2
        )
        render.save_png(out / "builtin-age-sweep.png", strip)
        frames = [render.resize(f, TILE) for f in sweep.frames]
        render.save_gif(out / "builtin-age-sweep.gif", frames, fps=2.0)
        render.save_png(out / "builtin-anime.png", _anime_sheet(session, father, mother, child.children[0]))
    names = ("builtin-sheet.png", "builtin-age-sweep.png", "builtin-age-sweep.gif", "builtin-anime.png")
    for name in names:
        print(out / name, f"{(out / name).stat().st_size / 1e3:.0f} kB")
    return 0


def _anime_sheet(session, father: Path, mother: Path, child) -> np.ndarray:
    """Rows father, mother, child: the face (aligned photo or the child) | its anime take | the
    takes in ANIME_STYLES style codes of ANIME_SEED (the same codes in every row)."""
    import babygan
    from babygan import render

    stylizer = session.anime
    rows = []
    for photo in (father, mother):
        made = babygan.anime_photo(photo, styles=ANIME_STYLES, seed=ANIME_SEED, session=session)
        rows.append([made.photo.aligned, made.image, *made.takes])
    # the child's code, drawn as the parents' are (the default take, then the same style codes)
    w = child.dlatents
    rows.append([child.image, stylizer.render(w[None])[0], *stylizer.takes(w, ANIME_STYLES, ANIME_SEED)])
    labels = ["face", "anime", *(f"style {k + 1}" for k in range(ANIME_STYLES))]
    cells = [render.resize(im, TILE) for row in rows for im in row]
    return render.contact_sheet(cells, labels * len(rows), columns=len(labels), tile=TILE)


if __name__ == "__main__":
    sys.exit(main())
