"""The files a run leaves: PNG / NPY / JSON per child, contact sheets, the sweep's GIF / MP4.

Every record starts with the same :func:`header` (version, parents, options, and the
session's provenance: model, directions, encoder). Images are written by babygan/render.py,
everything else through babygan/atomic.py (temporary file, then rename).
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babygan import __version__, render
from babygan.atomic import atomic_path, write_text_atomic
from babygan.errors import BabyganError

if TYPE_CHECKING:
    from babygan.pipeline import EditOptions, PredictResult, SweepResult
    from babygan.session import Parent

#: sheets are for looking at: their tiles are capped at this many pixels
SHEET_TILE_MAX = 512
SHEET_COLUMNS_MAX = 6
SWEEP_SHEET_COLUMNS = 5

_FRAME_NAME = re.compile(r"frame_\d+\.png")

log = logging.getLogger("babygan")


def header(
    father: Parent | None,
    mother: Parent | None,
    options: EditOptions | None,
    provenance: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The start of every record: version, the parents, the options, the session's provenance."""
    head: dict[str, Any] = {"babygan_version": __version__}
    if father is not None:
        head["father"] = father.to_json()
    if mother is not None:
        head["mother"] = mother.to_json()
    if options is not None:
        head["options"] = options.to_json()
    return {**head, **(provenance or {})}


def _sheet_tile(size: int) -> int:
    return min(size, SHEET_TILE_MAX)


def save_npy(path: Path, array: np.ndarray) -> Path:
    """float32 .npy, written atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, np.asarray(array, np.float32))
    return path


def _save_json(path: Path, record: dict[str, Any]) -> Path:
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return path


def write_prediction(result: PredictResult, output_dir: str | Path) -> dict[str, Any]:
    """Write child.png / .npy / .json (or child_01 ... for siblings) and sheet.png.

    Returns ``{"sheet": path, "children": [{"image", "dlatents", "json", "sheet"}, ...]}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = header(result.father, result.mother, result.options, result.provenance)
    crop = (result.provenance.get("model") or {}).get("crop")
    estimates = estimate_faces([c.image for c in result.children], crop)
    sheet_path = out / "sheet.png"
    written: dict[str, Any] = {"sheet": str(sheet_path.resolve()), "children": []}
    for child, estimate in zip(result.children, estimates, strict=True):
        paths = {
            "image": str((out / f"{child.name}.png").resolve()),
            "dlatents": str((out / f"{child.name}.npy").resolve()),
            "json": str((out / f"{child.name}.json").resolve()),
            "sheet": written["sheet"],
        }
        record = {
            **head,
            "child": {
                "name": child.name,
                "noise": child.noise,
                "noise_seed": child.noise_seed,
                "blend": "crossover" if child.crossover else result.options.style,
                "crossover": child.crossover,
                "size": int(child.image.shape[0]),
            },
            "resemblance": child.resemblance,
            "estimate": estimate,
            "outputs": paths,
        }
        render.save_png(paths["image"], child.image, record)
        save_npy(Path(paths["dlatents"]), child.dlatents)  # (L, w_dim)
        _save_json(Path(paths["json"]), record)
        written["children"].append(paths)
    tile = _sheet_tile(int(result.children[0].image.shape[0]))
    images = [result.father.aligned] + [c.image for c in result.children] + [result.mother.aligned]
    labels = ["father"] + [c.name.replace("_", " ") for c in result.children] + ["mother"]
    # One row (father | child | mother); many siblings wrap onto further rows.
    sheet = render.contact_sheet(images, labels, columns=min(len(images), SHEET_COLUMNS_MAX), tile=tile)
    render.save_png(sheet_path, sheet, {**head, "layout": labels})
    return written


# --------------------------------------------------------------------------- estimated age and gender


@functools.cache
def _attribute_model(path: Path) -> Any:
    """The attribute network at ``path`` (loaded once per process), or why it is not available."""
    try:
        from babygan.attributes import AttributeModel

        return AttributeModel.load(path)
    except (ImportError, BabyganError) as exc:
        log.warning("no age/gender estimate in the records: %s", exc)
        return str(exc)


def _attribute_crop(images: list[np.ndarray], model_scale: float, wanted: float) -> list[np.ndarray]:
    """Faces at the model's crop -> the attribute network's (tighter) crop: the central square
    ``wanted / model_scale`` of each side (both are the FFHQ square scaled about its centre)."""
    if wanted >= model_scale:
        return images
    out = []
    for im in images:
        side = im.shape[0]
        keep = max(1, round(side * wanted / model_scale))
        start = (side - keep) // 2
        out.append(im[start : start + keep, start : start + keep])
    return out


def estimate_faces(images: list[np.ndarray], crop: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The attribute network's age and gender of each face (uint8 (S, S, 3), cropped as ``crop``
    says, FFHQ's when None), for the records: ``{"age", "p_female", "gender", "attribute_model",
    "face_crop"}``, or ``{"unavailable": why}`` each when the network is not installed."""
    from babygan.attributes import builtin_path
    from babygan.utkface import CROP, crop_scale_of

    model = _attribute_model(builtin_path())
    if isinstance(model, str):
        return [{"unavailable": model} for _ in images]
    face_crop = dict(model.crop or CROP)
    model_scale, wanted = crop_scale_of(crop), crop_scale_of(face_crop)
    size = model.input_size
    from babygan.render import resize

    faces = np.stack([resize(im, size) for im in _attribute_crop(images, model_scale, wanted)])
    ages, p_female = model.predict(faces)
    face_crop["scale"] = min(wanted, model_scale)  # what the network was given
    return [
        {
            "age": round(float(a), 1),
            "p_female": round(float(p), 3),
            "gender": "female" if p >= 0.5 else "male",
            "attribute_model": str(model.path),
            "face_crop": face_crop,
        }
        for a, p in zip(ages, p_female, strict=True)
    ]


def write_sweep(
    result: SweepResult, output_dir: str | Path, *, gif: bool = False, mp4: bool = False, fps: float = 8.0
) -> dict[str, Any]:
    """Write frame_01.png ..., sheet.png (contact sheet), age_sweep.json/.npy, and the GIF / MP4 asked for."""
    out = Path(output_dir)
    if mp4:  # fail before writing anything
        render.require_mp4(out / "age_sweep.mp4")
    out.mkdir(parents=True, exist_ok=True)
    width = max(2, len(str(len(result.frames))))
    names = [f"frame_{i:0{width}d}.png" for i in range(1, len(result.frames) + 1)]
    head = header(result.father, result.mother, result.options, result.provenance)
    paths: dict[str, Any] = {"frames": []}
    for i, (name, frame, age) in enumerate(zip(names, result.frames, result.ages, strict=True)):
        meta = {**head, "frame": i + 1, "age_coeff": age.coefficient}
        if age.in_years:
            meta["age"] = age.value
        paths["frames"].append(str(render.save_png(out / name, frame, meta).resolve()))
    # An earlier, longer sweep into this folder left frames this one does not have: remove them,
    # so the folder holds one sweep (only our own frame_<digits>.png names are touched).
    for stale in out.glob("frame_*.png"):
        if _FRAME_NAME.fullmatch(stale.name) and stale.name not in names:
            stale.unlink()
    tile = _sheet_tile(int(result.frames[0].shape[0]))
    cols = min(len(result.frames), SWEEP_SHEET_COLUMNS)
    sheet = render.contact_sheet(result.frames, result.labels(), columns=cols, tile=tile)
    paths["sheet"] = str(render.save_png(out / "sheet.png", sheet, head).resolve())
    paths["dlatents"] = str(save_npy(out / "age_sweep.npy", result.dlatents).resolve())  # (T, L, w_dim)
    if gif:
        paths["gif"] = str(render.save_gif(out / "age_sweep.gif", result.frames, fps).resolve())
    if mp4:
        paths["mp4"] = str(render.save_mp4(out / "age_sweep.mp4", result.frames, fps).resolve())
    years = result.years
    record = {
        **head,
        "sweep": {
            "age_coeffs": [float(c) for c in result.coeffs],
            "ages": None if years is None else [float(a) for a in years],
            "fps": fps,
        },
        "outputs": paths,
    }
    paths["json"] = str((out / "age_sweep.json").resolve())  # paths is the record's "outputs" already
    _save_json(out / "age_sweep.json", record)
    return paths


def write_encoded(
    parents: Sequence[Parent],
    reconstructions: np.ndarray,
    output_dir: str | Path,
    provenance: dict[str, Any] | None = None,
) -> list[tuple[Path, Path]]:
    """``babygan encode``'s files: ``<stem>.npy`` (L, w_dim) float32 and ``<stem>_reconstruction.png``.

    reconstructions: uint8 (N, R, R, 3), the generator's render of each parent's dlatents.
    Returns ``[(npy, png), ...]`` in the order of ``parents``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for parent, image in zip(parents, reconstructions, strict=True):
        npy = save_npy(out / f"{parent.path.stem}.npy", parent.dlatents)
        meta = {**header(None, None, None, provenance), "photo": parent.to_json()}
        png = render.save_png(out / f"{parent.path.stem}_reconstruction.png", image, meta)
        written.append((npy, png))
    return written
