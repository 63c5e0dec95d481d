"""Training images: read them from a UTKFace tar, an image folder or an array file; pack them small.

Everything returns ``uint8 (N, R, R, 3)`` RGB. ``pack`` writes a compact file (JPEG quality
95 per image inside an .npz, about 2.5 kB per 64 px face) that travels to a GPU machine;
``load_images`` reads it back, as it reads .npy / .npz arrays, folders of images and the
UTKFace tars (through ``babygan.utkface``: the FFHQ-recipe crop babygan aligns parents with,
or UTKFace's own crop).
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from babygan.atomic import atomic_path
from babygan.errors import BabyganError

Crop = Literal["aligned", "utkface"]
_PACK_FORMAT = "babygan-train-images-v1"
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _resize_all(images: np.ndarray, resolution: int, what: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise BabyganError(f"{what}: expected square RGB images (N, R, R, 3), got {images.shape}")
    if images.dtype != np.uint8:
        raise BabyganError(f"{what}: expected uint8 images, got {images.dtype}")
    if images.shape[1] == resolution:
        return images
    return np.stack(
        [
            np.asarray(Image.fromarray(im).resize((resolution, resolution), Image.Resampling.LANCZOS))
            for im in images
        ]
    )


def decode_image(
    data: bytes, resolution: int, what: str, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """An encoded image -> uint8 (R, R, 3) RGB, Lanczos-resized; ``box`` (left, top, right, bottom
    as fractions of the width and height) crops first, within the same resampling."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            if box is not None:
                w, h = im.size
                pixels = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
                return np.asarray(
                    im.resize((resolution, resolution), Image.Resampling.LANCZOS, box=pixels), np.uint8
                )
            if im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise BabyganError(f"{what}: not a readable image ({exc})") from exc


def _is_utkface_tar(path: Path) -> bool:
    try:
        with tarfile.open(path) as tar:
            for info in tar:
                if info.isfile():
                    return info.name.endswith(".jpg.chip.jpg")
    except (tarfile.TarError, OSError):
        return False
    return False


def load_images(
    path: str | os.PathLike[str], resolution: int, *, crop: Crop = "aligned", split: str = "train"
) -> np.ndarray:
    """Training images at ``resolution`` -> uint8 (N, R, R, 3).

    ``path``: a file from :func:`pack`; a ``.npy`` array or ``.npz`` with an ``images``
    array, uint8 (N, S, S, 3); a folder of image files; a UTKFace tar (``split`` "train"
    keeps babygan.utkface's held-out faces out; ``crop`` "aligned" = FFHQ recipe on the
    200 px faces, "utkface" = the archive's own crop). Other sizes are Lanczos-resized.
    """
    path = Path(path)
    if not path.exists():
        raise BabyganError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise BabyganError(f"{path}: no image files ({', '.join(_IMAGE_SUFFIXES)}) in the folder")
        return np.stack([decode_image(p.read_bytes(), resolution, str(p)) for p in files])
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            images = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise BabyganError(f"{path}: not a readable .npy array ({exc})") from exc
        return _resize_all(images, resolution, str(path))
    if suffix == ".npz":
        return _load_npz(path, resolution)
    if suffix == ".tar" and _is_utkface_tar(path):
        from babygan import utkface

        faces = (
            utkface.align_utkface(path, size=resolution, split=split, progress=True)  # type: ignore[arg-type]
            if crop == "aligned"
            else utkface.load_utkface(path, split=split, size=resolution)  # type: ignore[arg-type]
        )
        return faces.images
    raise BabyganError(f"{path}: not a training set (a packed .npz, .npy, image folder or UTKFace .tar)")


def _load_npz(path: Path, resolution: int) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" in z.files and str(z["format"]) == _PACK_FORMAT:
                blob, offsets = z["jpeg"], z["offsets"]
                return np.stack(
                    [
                        decode_image(
                            blob[offsets[i] : offsets[i + 1]].tobytes(), resolution, f"{path} image {i}"
                        )
                        for i in range(len(offsets) - 1)
                    ]
                )
            if "images" not in z.files:
                raise BabyganError(f"{path}: no 'images' array in the .npz")
            images = z["images"]
    except BabyganError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        raise BabyganError(f"{path}: not a readable .npz ({exc})") from exc
    return _resize_all(images, resolution, str(path))


def pack(path: str | os.PathLike[str], images: np.ndarray, quality: int = 95) -> Path:
    """Write uint8 (N, R, R, 3) images as one compact .npz (a JPEG per image); atomic."""
    images = _resize_all(np.asarray(images), np.asarray(images).shape[1], str(path))
    chunks = []
    for im in images:
        buf = io.BytesIO()
        Image.fromarray(im).save(buf, format="JPEG", quality=quality, subsampling=0)
        chunks.append(np.frombuffer(buf.getvalue(), np.uint8))
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in chunks])]).astype(np.int64)
    blob = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez(tmp, format=np.array(_PACK_FORMAT), jpeg=blob, offsets=offsets)
    return path


def sample_batch(images: np.ndarray, rng: np.random.Generator, batch: int, xflip: bool) -> np.ndarray:
    """``batch`` images drawn with replacement, half of them mirrored when ``xflip``: uint8 (B, R, R, 3)."""
    out = images[rng.integers(0, len(images), batch)]
    if xflip:
        flip = rng.random(batch) < 0.5
        out[flip] = out[flip, :, ::-1]
    return out
