#!/usr/bin/env python3
"""The README's pictures of the built-in model: a parents -> child sheet and an age-sweep strip.

    python scripts/make_readme_pictures.py FATHER MOTHER -o docs

The parents must be photos whose licence allows showing them (the README names them):
babygan's own pictures use Barack Obama's official 2012 portrait (The White House, public
domain) and NASA's portrait of Eileen Collins that ships in scikit-image
(``skimage.data.astronaut()``, public domain); give ``astronaut`` as a parent to use it.
Writes OUT/builtin-sheet.png (father | child | mother), OUT/builtin-age-sweep.png (a strip of
ages) and OUT/builtin-age-sweep.gif, all small, with the built-in model, offline; with
``--anime``, also OUT/builtin-anime-sheet.png: the father's photo and the child, each beside its
anime drawing and ANIME_TAKES other styles (seed ANIME_SEED), as `babygan anime --styles` and
`predict --anime` draw them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

# within the built-in model's age range (its age calibration: 0 to 60 years)
AGES = (3, 10, 20, 35, 50, 60)
TILE = 160
ANIME_TAKES = 3
ANIME_SEED = 1


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
    ap.add_argument("--anime", action="store_true", help="also the anime sheet (needs the anime model)")
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
        if args.anime:
            stylizer = session.anime
            dad = babygan.anime_photo(father, styles=ANIME_TAKES, seed=ANIME_SEED, session=session)
            kid = child.children[0]
            kid_anime = stylizer.render(kid.dlatents[None])[0]
            kid_takes = list(stylizer.takes(kid.dlatents, ANIME_TAKES, ANIME_SEED))
            styles = [f"style {k}" for k in range(1, ANIME_TAKES + 1)]
            tiles = [dad.photo.aligned, dad.image, *dad.takes, kid.image, kid_anime, *kid_takes]
            labels = ["father", "anime", *styles, "child", "anime", *styles]
            sheet = render.contact_sheet(tiles, labels, columns=2 + ANIME_TAKES, tile=TILE)
            render.save_png(out / "builtin-anime-sheet.png", sheet)
    names = ["builtin-sheet.png", "builtin-age-sweep.png", "builtin-age-sweep.gif"]
    for name in names + (["builtin-anime-sheet.png"] if args.anime else []):
        print(out / name, f"{(out / name).stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
