"""An uploaded photo's name and thumbnail, for the page (babygan/web/service.py)."""

from __future__ import annotations

import re

import numpy as np


def display_name(filename: str) -> str:
    """The last part of the uploaded file's name, printable and short."""
    base = re.split(r"[\\/]", filename or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return (base[:77] + "...") if len(base) > 80 else (base or "photo")


def size_mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def square_crop(image: np.ndarray, box: tuple[int, int, int, int], margin: float = 0.3) -> np.ndarray:
    """A square around a face box (widened by ``margin`` each side), clipped to the photo."""
    left, top, right, bottom = box
    side = max(right - left, bottom - top) * (1 + 2 * margin)
    cx, cy = (left + right) / 2, (top + bottom) / 2
    height, width = image.shape[:2]
    x0, y0 = max(int(cx - side / 2), 0), max(int(cy - side / 2), 0)
    x1, y1 = min(int(cx + side / 2), width), min(int(cy + side / 2), height)
    if x1 <= x0 or y1 <= y0:
        return image
    return np.ascontiguousarray(image[y0:y1, x0:x1])
