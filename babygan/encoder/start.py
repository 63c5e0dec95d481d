"""An --init .npy file: earlier dlatents the encoder goes on from."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from babygan.errors import BabyganError, first_line
from babygan.stylegan import Generator


def load_init_file(path: Path, G: Generator) -> np.ndarray:
    """The (L, w_dim) float32 start in an --init .npy file: (L, w_dim), (1, L, w_dim), or one
    w_dim vector for every layer; a one-line BabyganError naming the file otherwise."""
    shape = (int(G.num_layers), int(G.w_dim))
    if not path.is_file():
        raise BabyganError(f"{path}: init file not found")
    try:
        arr = np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as exc:
        raise BabyganError(f"{path}: not a readable .npy file ({first_line(exc)})") from exc
    if arr.shape in ((1, *shape), (1, shape[1])):
        arr = arr[0]
    if arr.shape == (shape[1],):
        arr = np.broadcast_to(arr, shape)
    if arr.shape != shape or not np.issubdtype(arr.dtype, np.floating):
        raise BabyganError(
            f"{path}: init dlatents must be floats of shape {shape} (or one {shape[1]}-vector), "
            f"got {arr.dtype} {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise BabyganError(f"{path}: init dlatents hold NaN or infinite values")
    return np.ascontiguousarray(arr, np.float32)
