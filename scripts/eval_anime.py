#!/usr/bin/env python3
"""An anime model's figures (issue 26) on held-out UTKFace photos, with its base model.

    python scripts/eval_anime.py babygan-out/anime/babygan-anime.npz --base builtin \
        -o babygan-out/eval-anime [-n 100] [--match 50] [--takes 4] [--own-psi 0.7 0.5] \
        [--utkface ../shared/datasets/utkface200.tar] [--anime ../shared/datasets/anime96.tar] \
        [--cascade ../shared/detectors/lbpcascade_animeface.xml]

The photos are the first N held-out faces of utkface200.tar (babygan.utkface's split), aligned
with the base model's crop at its size, as ``babygan align --model builtin`` aligns a photo (and
as scripts/eval_builtin.py gets them); E (the base's encoder) and the base's default refinement
give their codes, as `babygan anime` makes them (--no-refine: E's guess alone; E's guess is
judged beside them anyway); the anime model draws each code (the default take: the photo's own
code in every layer).

- (a) anime-face rate: the share of images in which OpenCV's anime-face cascade finds a face
  (babygan.anime.judge, settings of ../shared/detectors/README.md), given a border of --margin
  (the cascade needs the whole head; without the border it finds 1.5 % of real anime faces cut
  to the training frame; the rates without it are reported too), for the anime outputs, the
  photos, the base model's own drawings of the codes, and N held-out real anime faces (cut and
  sized as the training faces, and as they come, 96 px); the default take also at each
  --own-psi (its fine layers pulled toward the average code, ``AnimeStylizer(own_psi=...)``),
  with its layout figures;
- (b) layout: correlation of the 8 x 8 grey structure of each photo and its output, and the
  match-back rate: for each of --match photos, is its own output the most correlated of the
  --match outputs (chance 1 / match); the base's drawings give the ceiling;
- (c) styles: --takes takes of each of --takes-photos photos (``AnimeStylizer.takes``, as
  ``babygan anime --styles`` draws them), mean pairwise pixel L1 and structure distance
  between takes of one photo against those between different photos' outputs;
- (d) a clip: --clip-photo made into a 3-second 25 fps clip by a slow zoom and pan, through
  ``babygan anime``'s clip route; frame count and fps in and out, and the mean frame-to-frame
  change of the output against the input's.

Writes OUT/figures.json and OUT/sheet.png (rows: photo, base, anime, the takes); prints the
figures with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout, uninstalled

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the anime model (.npz from scripts/train_anime.py, or 'builtin')")
    ap.add_argument(
        "--base", default="builtin", help="the face model it was tuned from (default %(default)s)"
    )
    ap.add_argument("--utkface", default=str(SHARED / "datasets" / "utkface200.tar"), help="held-out photos")
    ap.add_argument("--anime", default=str(SHARED / "datasets" / "anime96.tar"), help="real anime faces")
    ap.add_argument(
        "--cascade", default=str(SHARED / "detectors" / "lbpcascade_animeface.xml"), help="OpenCV cascade"
    )
    ap.add_argument(
        "--margin",
        type=float,
        default=None,
        help="the border the cascade is given, a share of the side on each side (default: "
        "babygan.anime.judge.FRAME_MARGIN, 0.3); the rates without one are reported too",
    )
    ap.add_argument("-o", "--out", default="babygan-out/eval-anime", help="figures.json and sheet.png")
    ap.add_argument("-n", "--photos", type=int, default=100, help="held-out photos (and real anime faces)")
    ap.add_argument("--match", type=int, default=50, help="photos in the match-back test")
    ap.add_argument("--takes", type=int, default=4, help="style takes per photo")
    ap.add_argument("--takes-photos", type=int, default=25, help="photos given --takes takes each")
    ap.add_argument("--seed", type=int, default=0, help="the takes' style codes")
    ap.add_argument(
        "--no-refine",
        action="store_true",
        help="judge E's feed-forward codes only (default: also the codes `babygan anime` draws, E and "
        "the model's default refinement, and those are the headline figures)",
    )
    ap.add_argument(
        "--own-psi",
        type=float,
        nargs="*",
        default=[1.0, 0.5],
        help="also judge the default take with its fine layers pulled toward the average code by "
        "these (AnimeStylizer's own_psi; the headline uses the shipped setting)",
    )
    ap.add_argument(
        "--clip-photo",
        default=str(SHARED / "faces" / "obama.jpg"),
        help="a photo made into a 3-second clip (zoom and pan) for the clip figure; '' skips it",
    )
    args = ap.parse_args(argv)
    bad = [psi for psi in args.own_psi if not 0 <= psi <= 1]
    if bad:
        ap.error(f"--own-psi {bad[0]:g}: must be in 0..1")
    return args


def _takes(stylizer, codes, n_takes: int, seed: int):
    """uint8 (P, T, R, R, 3): each code's T takes, as ``babygan anime --styles T --seed S`` draws them."""
    import numpy as np

    return np.stack([stylizer.takes(w, n_takes, seed) for w in codes])


def _refined_codes(base, photos):
    """(N, L, w_dim) codes of aligned photos uint8 (N, S, S, 3) as `babygan anime` makes them: the
    base Generator's own encoder settings (E's guess, then its default refinement), no cache, one
    photo at a time."""
    import numpy as np

    from babygan.encoder import Encoder
    from babygan.encoder.settings import settings_for_model

    encoder = Encoder(base, settings_for_model(base.info, base.has_encoder), offline=True)
    return np.concatenate(
        [encoder.encode(photos[i : i + 1], progress=False).dlatents for i in range(len(photos))]
    )


def make_clip(photo: Path, path: Path, *, seconds: float = 3.0, fps: float = 25.0, size: int = 320) -> Path:
    """A clip of a real face: a slow zoom and pan over ``photo`` (uint8 frames, MP4), so the face
    moves in the frame as in a handheld shot."""
    import numpy as np
    from PIL import Image

    from babygan import render
    from babygan.photo import load_photo

    image = Image.fromarray(load_photo(photo))
    W, H = image.size
    frames = []
    n = round(seconds * fps)
    for t in range(n):
        a = t / max(n - 1, 1)
        side = min(W, H) * (0.95 - 0.15 * a)  # zoom in by about a sixth
        cx = W / 2 + 0.04 * W * np.sin(2 * np.pi * a)  # drift left and right
        cy = H / 2 + 0.02 * H * a
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        frames.append(np.asarray(image.resize((size, size), Image.Resampling.BICUBIC, box=box)))
    return render.save_mp4(path, frames, fps)


def frame_change(frames) -> float:
    """Mean absolute change between consecutive frames, on [0, 255], at 128 px (any input size)."""
    import numpy as np

    from babygan import render

    small = np.stack([render.resize(f, 128) for f in frames]).astype(np.float32)
    return float(np.abs(np.diff(small, axis=0)).mean())


def clip_figures(model: str, base: str, photo: Path, out: Path) -> dict:
    """The clip figure: a 3-second 25 fps clip of ``photo`` through ``babygan anime``'s clip route;
    frame counts, fps and the frame-to-frame change of output against input."""
    from babygan.anime.clip import anime_clip, open_clip
    from babygan.session import Session

    clip_path = make_clip(photo, out / "clip.mp4")
    session = Session(base, anime_model=model, progress=False)
    result = anime_clip(clip_path, session)
    source = open_clip(clip_path)
    inputs = list(source.frames())
    change_in, change_out = frame_change(inputs), frame_change(result.frames)
    return {
        "photo": photo.name,
        "frames_in": len(inputs),
        "frames_out": len(result.frames),
        "fps_in": source.fps,
        "fps_out": result.fps,
        "faces_found": result.faces_found,
        "change_in": round(change_in, 3),
        "change_out": round(change_out, 3),
        "change_ratio": round(change_out / change_in, 3) if change_in else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.margin is None:
        from babygan.anime.judge import FRAME_MARGIN

        args.margin = FRAME_MARGIN

    from babygan import backend, render
    from babygan.align import Crop
    from babygan.anime import judge
    from babygan.anime.model import load_anime_model
    from babygan.anime.stylize import AnimeStylizer
    from babygan.atomic import write_text_atomic
    from babygan.builtin import builtin_anime_path
    from babygan.errors import BabyganError
    from babygan.stylegan import load_generator
    from babygan.stylegan.generator import to_uint8
    from babygan.train.anime_data import AnimeCrop, load_anime_faces
    from babygan.utkface import align_utkface

    try:
        t0 = time.perf_counter()
        backend.start()
        framed = judge.AnimeFaceCascade(args.cascade, margin=args.margin)
        bare = judge.AnimeFaceCascade(args.cascade)
        base = load_generator(args.base)
        model_path = builtin_anime_path() if args.model == "builtin" else Path(args.model)
        anime = load_anime_model(model_path, base)
        if not base.has_encoder:
            raise BabyganError(f"{args.base}: the base has no encoder E to give the photos' codes")
        r = base.resolution
        scale = Crop.from_dict(base.info.get("crop"), str(args.base)).scale
        photos = align_utkface(args.utkface, size=r, scale=scale, split="holdout").images[: args.photos]
        settings = anime.info.get("training", {}).get("settings", {})
        crop = AnimeCrop(settings.get("crop_side", 0.75), settings.get("crop_centre_y", 0.42))
        real = load_anime_faces(args.anime, r, crop=crop, split="holdout")[: args.photos]
        real96 = load_anime_faces(args.anime, 96, crop=AnimeCrop(1.0, 0.5), split="holdout")[: args.photos]

        e_codes = base.encode_faces(photos)  # (N, L, w_dim): E's feed-forward guess
        codes = e_codes if args.no_refine else _refined_codes(base, photos)  # as `babygan anime`
        drawn = to_uint8(base.synthesis(codes, noise="const"))
        e_outputs = to_uint8(anime.generator.synthesis(e_codes, noise="const"))
        # the refined codes' layout with E's guess from the swap layer on (E's guess lies nearer the
        # codes the anime model was tuned on than the refinement's)
        stylizer = AnimeStylizer(base, anime)
        e_styled = stylizer.mix(codes, e_codes)
        e_styled_outputs = to_uint8(anime.generator.synthesis(e_styled, noise="const"))
        outputs = stylizer.render(codes)  # the default take, as `babygan anime` draws it
        # the default take at other settings of its fine layers' pull toward the average code
        own_psi = {psi: AnimeStylizer(base, anime, own_psi=psi).render(codes) for psi in args.own_psi}
        p = min(args.takes_photos, len(codes))
        takes = _takes(stylizer, codes[:p], args.takes, args.seed)
        m = min(args.match, len(photos))
        flat_takes = takes.reshape(-1, r, r, 3)

        def rates(cascade) -> dict:
            return {
                "anime_outputs": cascade.face_rate(outputs),
                "anime_outputs_of_e_guess": cascade.face_rate(e_outputs),
                "anime_outputs_layout_refined_style_e_guess": cascade.face_rate(e_styled_outputs),
                **{f"anime_outputs_own_psi_{psi:g}": cascade.face_rate(im) for psi, im in own_psi.items()},
                "anime_takes": cascade.face_rate(flat_takes),
                "photos": cascade.face_rate(photos),
                "base_drawings": cascade.face_rate(drawn),
                f"real_anime_{r}px_as_trained": cascade.face_rate(real),
                "real_anime_96px_as_cut": cascade.face_rate(real96),
                "real_anime_faces": len(real),
            }

        figures = {
            "model": str(args.model),
            "base": str(args.base),
            "swap_layer": anime.swap_layer,
            "photos": len(photos),
            "codes": "E's guess" if args.no_refine else "E and the default refinement (as `babygan anime`)",
            "own_psi": stylizer.own_psi,
            "cascade_margin": args.margin,
            # the headline: the cascade given a border (judge.FRAME_MARGIN); without it, it misses
            # even real anime faces cut to the training frame
            "anime_face_rate": rates(framed),
            "anime_face_rate_no_margin": rates(bare),
            "layout_photo_vs_anime": judge.layout_agreement(photos[:m], outputs[:m]),
            "layout_photo_vs_base": judge.layout_agreement(photos[:m], drawn[:m]),
            **{
                f"layout_photo_vs_anime_own_psi_{psi:g}": judge.layout_agreement(photos[:m], im[:m])
                for psi, im in own_psi.items()
            },
            "styles": judge.diversity(takes, outputs[:p]),
        }
        out = Path(args.out)
        if args.clip_photo:
            figures["clip"] = clip_figures(str(model_path), args.base, Path(args.clip_photo), out)
        k = min(8, p)
        if k:
            variants = [own_psi[psi] for psi in args.own_psi]
            rows = [
                im
                for i in range(k)
                for im in (photos[i], drawn[i], outputs[i], *(v[i] for v in variants), *takes[i])
            ]
            columns = ["photo", "base", "anime", *(f"own psi {psi:g}" for psi in args.own_psi), "takes"]
            sheet = render.contact_sheet(rows, columns=3 + len(variants) + args.takes, gap=2)
            render.save_png(out / "sheet.png", sheet, {"columns": ", ".join(columns)})
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
        text = json.dumps(figures, indent=1)
        write_text_atomic(out / "figures.json", text + "\n")
        print(text)
    except BabyganError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
