"""The files a run leaves: PNG / NPY / JSON per child, contact sheets, the sweep's GIF / MP4.

Every record starts with the same :func:`header` (version, parents, options, and the
session's provenance: model, directions, encoder). Writers only write: what a child's
record says of it (resemblance, estimated age and gender) was measured by the pipeline.
Images are written by babygan/render.py, everything else through babygan/atomic.py
(temporary file, then rename).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babygan import __version__, render
from babygan.atomic import atomic_path, write_bytes_atomic
from babygan.models import sha256_file

if TYPE_CHECKING:
    from babygan.parents import Parent
    from babygan.pipeline import EditOptions, PredictResult, SweepResult

#: sheets are for looking at: their tiles are capped at this many pixels
SHEET_TILE_MAX = 512
SHEET_COLUMNS_MAX = 6
SWEEP_SHEET_COLUMNS = 5
#: frames per second of a sweep's GIF / MP4
SWEEP_FPS = 8.0

_FRAME_NAME = re.compile(r"frame_\d+\.png")

#: a batch row's last file: every file of the row with its size and SHA-256, and what made them
DONE_FILE = "done.json"


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


def npy_bytes(array: np.ndarray) -> bytes:
    """What :func:`save_npy` writes: a float32 .npy file's bytes."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, np.float32))
    return buffer.getvalue()


def _json_bytes(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, indent=2) + "\n").encode("utf-8")


def _save_json(path: Path, record: dict[str, Any]) -> Path:
    write_bytes_atomic(path, _json_bytes(record))
    return path


def write_prediction(result: PredictResult, output_dir: str | Path) -> dict[str, Any]:
    """Write child.png / .npy / .json (or child_01 ... for siblings) and sheet.png; with anime,
    child_anime.png (child_01_anime.png ...) beside each child.

    Returns ``{"sheet": path, "children": [{"image", "dlatents", "json", "sheet"[, "anime"]}, ...]}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, written = prediction_files(result, out.resolve())
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
    return written


def prediction_files(result: PredictResult, output_dir: Path) -> tuple[dict[str, bytes], dict[str, Any]]:
    """What :func:`write_prediction` writes into ``output_dir``, as bytes: ``({file name: bytes}
    in writing order, the paths it returns)``. ``output_dir`` is absolute (the records name it)
    and need not exist here: a batch's worker makes the bytes, its driver writes them."""
    out = Path(output_dir)
    head = header(result.father, result.mother, result.options, result.provenance)
    files: dict[str, bytes] = {}
    written: dict[str, Any] = {"sheet": str(out / "sheet.png"), "children": []}
    for child in result.children:
        names = {"image": f"{child.name}.png", "dlatents": f"{child.name}.npy", "json": f"{child.name}.json"}
        if child.anime is not None:
            names["anime"] = anime_name(child.name)
        paths = {**{k: str(out / n) for k, n in names.items()}, "sheet": written["sheet"]}
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
            "estimate": child.estimate,
            "aging": child.aging,
            **({} if child.anime is None else {"anime": result.anime}),  # which anime model, which take
            "outputs": paths,
        }
        files[names["image"]] = render.png_bytes(child.image, record)
        if child.anime is not None:  # the same size and metadata as the child's image
            files[names["anime"]] = render.png_bytes(child.anime, record)
        files[names["dlatents"]] = npy_bytes(child.dlatents)  # (L, w_dim)
        files[names["json"]] = _json_bytes(record)
        written["children"].append(paths)
    tile = _sheet_tile(int(result.children[0].image.shape[0]))
    images = [result.father.aligned] + [c.image for c in result.children] + [result.mother.aligned]
    labels = ["father"] + [c.name.replace("_", " ") for c in result.children] + ["mother"]
    # One row (father | child | mother); many siblings wrap onto further rows.
    sheet = render.contact_sheet(images, labels, columns=min(len(images), SHEET_COLUMNS_MAX), tile=tile)
    files["sheet.png"] = render.png_bytes(sheet, {**head, "layout": labels})
    return files, written


def anime_name(name: str) -> str:
    """The anime image's file beside ``name``'s: child -> child_anime.png, child_01 -> child_01_anime.png."""
    return f"{name}_anime.png"


def write_sweep(
    result: SweepResult,
    output_dir: str | Path,
    *,
    gif: bool = False,
    mp4: bool = False,
    fps: float = SWEEP_FPS,
) -> dict[str, Any]:
    """Write frame_01.png ..., sheet.png (contact sheet), age_sweep.json/.npy, and the GIF / MP4 asked for;
    with anime frames, also sheet_anime.png and age_sweep_anime.gif / .mp4 (the frames' codes drawn
    by the anime model)."""
    out = Path(output_dir)
    if mp4:  # fail before writing anything
        render.require_mp4(out / "age_sweep.mp4")
    anime = result.anime_frames
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
    if anime is not None:
        sheet = render.contact_sheet(anime, result.labels(), columns=cols, tile=tile)
        meta = {**head, "anime": result.anime}
        paths["anime_sheet"] = str(render.save_png(out / "sheet_anime.png", sheet, meta).resolve())
    savers = {"gif": render.save_gif, "mp4": render.save_mp4}
    for kind in [k for k, asked in (("gif", gif), ("mp4", mp4)) if asked]:
        paths[kind] = str(savers[kind](out / f"age_sweep.{kind}", result.frames, fps).resolve())
        if anime is not None:  # named after the sweep's own file
            paths[f"anime_{kind}"] = str(savers[kind](out / f"age_sweep_anime.{kind}", anime, fps).resolve())
    years = result.years
    record = {
        **head,
        "sweep": {
            "age_coeffs": [float(c) for c in result.coeffs],
            "ages": None if years is None else [float(a) for a in years],
            "fps": fps,
        },
        **({} if anime is None else {"anime": result.anime}),
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

    reconstructions: uint8 (N, R, R, 3), the generator's image of each parent's dlatents.
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


def write_done(folder: Path, files: Mapping[str, bytes], record: Mapping[str, Any]) -> None:
    """Write ``files`` (name -> bytes, in order) into ``folder``, each atomically, and then
    ``folder/done.json``: ``record`` and each file's size and SHA-256. It is written last, so a
    folder whose done.json checks out (:func:`read_done`) holds the whole of what was made."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        write_bytes_atomic(folder / name, data)
    listed = {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()}
    done = {"babygan_version": __version__, **record, "files": listed}
    write_bytes_atomic(folder / DONE_FILE, _json_bytes(done))


def read_done(folder: Path) -> dict[str, Any] | None:
    """``folder/done.json`` when every file it lists is there with its size and SHA-256, else None."""
    try:
        done = json.loads((folder / DONE_FILE).read_text(encoding="utf-8"))
        listed = done["files"]
        for name, expect in listed.items():
            path = folder / name
            if path.stat().st_size != expect["size"] or sha256_file(path) != expect["sha256"]:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # absent, unreadable or not ours: the row is not done
    return done if isinstance(done, dict) else None
