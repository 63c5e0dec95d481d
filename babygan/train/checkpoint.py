"""Checkpoints (the whole training state, resumable) and the export of the EMA generator.

A checkpoint is a folder of .npz parts, each at most ``PART_BYTES`` (so that each part is
small enough to be copied off a GPU machine on its own), plus ``meta.json`` naming the parts,
the training settings and the progress. Each part is written atomically, and ``meta.json``
last, so an interrupted save leaves the previous checkpoint readable.

State layout (nested dicts of float32 arrays): ``G`` / ``G_ema`` / ``D`` trainable
parameters, ``G_fixed`` (the generator's stored noise inputs and ``dlatent_avg``, not
trained), ``G_opt`` / ``D_opt`` Adam moments and step count.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from babygan.atomic import atomic_path, write_text_atomic
from babygan.errors import BabyganError

CHECKPOINT_FORMAT = "babygan-train-checkpoint"
CHECKPOINT_VERSION = 1
PART_BYTES = 15 * 2**20


def to_numpy(tree: Any) -> Any:
    """A state of backend tensors (nested dicts) as numpy arrays, the same nesting."""
    if isinstance(tree, dict):
        return {k: to_numpy(v) for k, v in tree.items()}
    from keras import ops  # here, so that reading a checkpoint needs no backend

    return np.asarray(ops.convert_to_numpy(tree))


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, np.ndarray]:
    """{"G": {"a": x}} -> {"G/a": x} (numpy float32 / int arrays)."""
    flat: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "/"))
        else:
            flat[name] = np.asarray(value)
    return flat


def unflatten(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, leaf = name.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def save_checkpoint(folder: str | os.PathLike[str], state: dict[str, Any], meta: dict[str, Any]) -> Path:
    """Write ``state`` (nested dicts of arrays) and ``meta`` (JSON-able) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    flat = flatten(state)
    parts: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sorted(flat):
        nbytes = flat[name].nbytes
        if parts[-1] and size + nbytes > PART_BYTES:
            parts.append({})
            size = 0
        parts[-1][name] = flat[name]
        size += nbytes
    step = int(meta.get("step", 0))
    names = []
    for i, arrays in enumerate(parts):
        name = f"state-{step:08d}-{i:02d}.npz"
        with atomic_path(folder / name) as tmp, open(tmp, "wb") as f:
            np.savez(f, **{k.replace("/", ":"): v for k, v in arrays.items()})
        names.append(name)
    full = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "parts": names, **meta}
    write_text_atomic(folder / "meta.json", json.dumps(full, indent=1, sort_keys=True))
    for old in folder.glob("state-*.npz"):  # the previous checkpoint's parts
        if old.name not in names:
            old.unlink(missing_ok=True)
    return folder


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state, meta) of a checkpoint folder; a one-line BabyganError naming the file on problems."""
    folder = Path(folder)
    meta_path = folder / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as exc:
        raise BabyganError(f"{meta_path}: no checkpoint here") from exc
    except (OSError, ValueError) as exc:
        raise BabyganError(f"{meta_path}: unreadable checkpoint metadata ({exc})") from exc
    if meta.get("format") != CHECKPOINT_FORMAT or meta.get("version") != CHECKPOINT_VERSION:
        raise BabyganError(f"{meta_path}: not a babygan training checkpoint of a known version")
    flat: dict[str, np.ndarray] = {}
    for name in meta["parts"]:
        path = folder / name
        try:
            with np.load(path, allow_pickle=False) as z:
                flat.update({k.replace(":", "/"): z[k] for k in z.files})
        except FileNotFoundError as exc:
            raise BabyganError(f"{path}: checkpoint part missing") from exc
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            # a part cut short (a copy interrupted) is not a zip file any more: np.load raises BadZipFile
            raise BabyganError(f"{path}: unreadable checkpoint part ({exc})") from exc
    return unflatten(flat), meta


def has_checkpoint(folder: str | os.PathLike[str]) -> bool:
    return (Path(folder) / "meta.json").is_file()
