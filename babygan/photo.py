"""Photos from disk as upright RGB arrays, and the pixels dlib finds landmarks on.

``load_photo`` guards against decompression bombs, applies the EXIF orientation and
turns every colour mode into ``uint8 (H, W, 3)`` RGB; ``detection_pixels`` gives dlib
its own JPEG decoding, as the FFHQ recipe's reference did (babygan/align.py uses both).
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from babygan.errors import BabyganError

log = logging.getLogger("babygan")

# Where the alpha channel of a transparent photo is composited (a cut-out portrait
# would otherwise show whatever colour hides under the transparent pixels).
BACKGROUND_RGB = (255, 255, 255)


def load_photo(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a photo as ``uint8 (H, W, 3)`` RGB, upright (EXIF orientation applied).

    Any Pillow mode is converted: grey, palette, CMYK, 16-bit grey (scaled, not
    clipped), float; transparent pixels are composited on white. Raises
    ``BabyganError`` naming the file when it is missing, empty, not an image,
    corrupt or truncated, or over Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``).
    """
    path = Path(path)
    if not path.exists():
        raise BabyganError(f"{path}: no such file")
    if path.is_dir():
        raise BabyganError(f"{path}: is a directory, not a photo")
    try:
        if path.stat().st_size == 0:
            raise BabyganError(f"{path}: file is empty")
        with warnings.catch_warnings():
            # Pillow only warns between 1x and 2x its limit (and raises beyond 2x, in open());
            # we refuse from 1x ourselves, from the header, before decoding any pixel.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                _check_pixel_limit(path, im.size)
                im.load()
                im = _upright(path, im)
                return _to_rgb(path, im)
    except BabyganError:
        raise
    except Image.DecompressionBombError as exc:
        raise BabyganError(
            f"{path}: image too large, refused as a possible decompression bomb ({exc})"
        ) from exc
    except UnidentifiedImageError as exc:
        raise BabyganError(f"{path}: not an image, or a format Pillow cannot read") from exc
    except PermissionError as exc:
        raise BabyganError(f"{path}: cannot read it ({exc.strerror})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Pillow reports broken data streams as OSError ("image file is truncated"),
        # SyntaxError (bad headers) or ValueError, depending on the format.
        raise BabyganError(f"{path}: corrupt or truncated image ({exc})") from exc


def _check_pixel_limit(path: Path, size: tuple[int, int]) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    width, height = size
    if limit is not None and width * height > limit:
        raise BabyganError(
            f"{path}: image too large ({width}x{height} = {width * height:,} pixels, over Pillow's "
            f"decompression-bomb limit of {int(limit):,}); downscale it first"
        )


def _upright(path: Path, im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag, so faces stand upright for dlib."""
    try:
        return ImageOps.exif_transpose(im)
    except Exception as exc:  # a malformed EXIF block must not cost the user the photo
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, exc)
        return im


def _to_rgb(path: Path, im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> ``uint8 (H, W, 3)`` RGB."""
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        # 16-bit / 32-bit grey: Pillow's convert("RGB") clips at 255 (a white photo), so rescale.
        grey = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and grey.max(initial=0) > 255):
            grey = grey / 257.0  # 0..65535 -> 0..255
        elif mode == "F" and grey.max(initial=0) <= 1.0:
            grey = grey * 255.0  # float photos in 0..1
        grey8 = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey8[:, :, None], 3, axis=2))
    try:
        if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
            rgba = im.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (*BACKGROUND_RGB, 255))
            rgb = Image.alpha_composite(background, rgba).convert("RGB")
        else:
            rgb = im.convert("RGB")
    except ValueError as exc:
        raise BabyganError(f"{path}: colour mode {mode} cannot be converted to RGB ({exc})") from exc
    return np.asarray(rgb, dtype=np.uint8).copy()


_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def detection_pixels(path: str | os.PathLike[str], image: np.ndarray) -> np.ndarray:
    """The pixels to find landmarks on: ``image`` itself, except for JPEGs.

    dlib's own JPEG decoder (libjpeg 9) and Pillow's (libjpeg-turbo) differ by up to
    ~40 levels in chroma, enough to move landmarks several pixels (and the crop with
    them). BabyGAN / pbaylies find landmarks on dlib's decoding and crop Pillow's, so
    we do the same to reproduce their crops exactly. ``image`` is ``load_photo(path)``;
    returns ``uint8 (H, W, 3)`` of the same shape (``image`` whenever dlib cannot help).
    """
    path = Path(path)
    try:
        with Image.open(path) as im:
            if im.format not in ("JPEG", "MPO") or im.mode not in ("RGB", "L"):
                return image
            orientation = im.getexif().get(0x0112, 1)  # the tag load_photo applied
        import dlib

        pixels = dlib.load_rgb_image(str(path))
    except (OSError, RuntimeError, ValueError, SyntaxError) as exc:
        # load_photo already read this file fine: fall back to its pixels.
        log.debug("%s: dlib cannot decode it (%s); finding landmarks on Pillow's pixels", path, exc)
        return image
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if method is not None:
        pixels = np.asarray(Image.fromarray(pixels).transpose(method))
    if pixels.shape != image.shape:
        return image
    return np.ascontiguousarray(pixels, dtype=np.uint8)
