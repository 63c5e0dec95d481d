"""``babygan align``: FFHQ-aligned face crops of photos, as PNG files (and landmarks as JSON)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from babygan import align as aligner
from babygan import render
from babygan.atomic import atomic_path
from babygan.cli.options import face_option, output_dir_option, photos_argument
from babygan.errors import BabyganError
from babygan.stylegan import load_generator

if TYPE_CHECKING:
    from babygan.align import AlignedFace, Crop


@click.command()
@photos_argument
@output_dir_option("Where to write <stem>.png (created if needed).")
@click.option(
    "--size",
    default=None,
    type=click.IntRange(min=1),
    help="Side of the square crop, in pixels (default: the --model's resolution, else 1024).",
)
@click.option(
    "--model",
    "-m",
    default=None,
    help="Crop as this model records (name, path or `builtin`; e.g. the built-in model's tighter "
    "crop) at its resolution. Default: FFHQ's crop.",
)
@face_option()
@click.option("--all-faces", is_flag=True, help="Write every face: <stem>_01.png, <stem>_02.png ...")
@click.option("--landmarks", is_flag=True, help="Also write <stem>.json: box and 68 points of each face.")
@click.option(
    "--upsample",
    default=1,
    show_default=True,
    type=click.IntRange(min=0),
    help="Times dlib doubles the photo to find small faces.",
)
@click.option(
    "--predictor",
    help="dlib 68-point landmark model: a path or registry name "
    "(default: the copy inside face_recognition_models).",
)
def align(
    photos: tuple[Path, ...],
    output_dir: Path,
    size: int | None,
    model: str | None,
    face: int | None,
    all_faces: bool,
    landmarks: bool,
    upsample: int,
    predictor: str | None,
) -> None:
    """Crop the face in each PHOTO the way FFHQ was made (the encoder's input).

    A photo that fails (no face, unreadable...) is reported and the rest still run;
    the exit code is 1 if any failed. Nothing is written for a failed photo.
    """
    if face is not None and all_faces:
        raise click.UsageError("--face and --all-faces cannot be used together")

    crop = aligner.FFHQ_CROP
    if model is not None:
        G = load_generator(model)
        crop = aligner.Crop.from_dict(G.info.get("crop"), f"{model}: the model's crop")
        size = size or int(G.resolution)
    size = size or 1024
    aligner.load_predictor(predictor)  # a bad model file fails once, before any photo

    written_by: dict[Path, Path] = {}  # output file -> the photo it was written for
    failed = 0
    for photo in photos:
        try:
            if all_faces:
                results = aligner.align_photo_all(
                    photo, size, upsample=upsample, predictor=predictor, crop_scale=crop.scale
                )
                names = [f"{photo.stem}_{r.index:02d}.png" for r in results]
            else:
                results = [
                    aligner.align_photo(
                        photo, size, face, upsample=upsample, predictor=predictor, crop_scale=crop.scale
                    )
                ]
                names = [f"{photo.stem}.png"]
            outputs = [output_dir / n for n in names]
            json_path = output_dir / f"{photo.stem}.json"
            planned = [*outputs, json_path] if landmarks else outputs
            for out in planned:
                if out in written_by:
                    raise BabyganError(
                        f"{photo}: would overwrite {out}, written for {written_by[out]} in this run; "
                        "rename one of the photos"
                    )
            _write(results, outputs, json_path if landmarks else None, size, crop)
        except (BabyganError, OSError) as exc:
            failed += 1
            click.echo(f"Error: {exc}", err=True)
            continue
        for out in planned:
            written_by[out] = photo
        for result, out in zip(results, outputs, strict=True):
            click.echo(f"{photo} -> {out} (face {result.index} of {result.num_faces})")
    if failed:
        raise BabyganError(f"{failed} of {len(photos)} photos failed")


def _write(
    results: list[AlignedFace], outputs: list[Path], json_path: Path | None, size: int, crop: Crop
) -> None:
    """PNG per face (and one JSON per photo): all written to temporaries first and renamed
    together at the end, so a failure part-way leaves none of this photo's files."""

    with contextlib.ExitStack() as renames:
        for result, out in zip(results, outputs, strict=True):
            tmp = renames.enter_context(atomic_path(out))
            render.write_png(tmp, result.image)
        if json_path is not None:
            first = results[0]
            header = {
                "source": str(first.source),
                "num_faces": first.num_faces,
                "output_size": size,
                "crop": crop.to_dict(),
            }
            faces = [
                json.dumps({"index": r.index, "file": out.name, **r.face.to_json()})
                for r, out in zip(results, outputs, strict=True)
            ]
            # One face per line: readable, and still one json.load() away.
            text = json.dumps(header)[:-1] + ', "faces": [\n ' + ",\n ".join(faces) + "\n]}\n"
            renames.enter_context(atomic_path(json_path)).write_text(text, encoding="utf-8")
