"""A run's latent directions: where they come from, which exist, each loaded and checked once.

Three places, decided once when the generator is known:

- ``folder``: the user's ``--directions DIR``;
- ``model``: the model's own folder, named by its ``info["directions"]`` beside the file
  (babygan's built-in model; see babygan/model_choice.py);
- ``registry``: BabyGAN's published directions (``<name>.npy`` in models/manifest.toml).

:class:`LatentDirections` is what ``babygan.pipeline.Directions`` asks for: ``direction(name)``
gives ``(L, w_dim)`` float32, or one line naming what is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from babygan import latent, models
from babygan.aging import AgeCalibration
from babygan.errors import ModelFileError

Source = Literal["folder", "model", "registry"]


def own_directions_dir(info: dict[str, Any] | None, model_path: Path) -> Path | None:
    """The model's own directions folder (``info["directions"]``, relative to the model
    file), or None when it names none (then the registry's directions apply)."""
    name = (info or {}).get("directions")
    if name is None:
        return None
    rel = Path(str(name))
    if not isinstance(name, str) or not name or rel.is_absolute() or ".." in rel.parts:
        raise ModelFileError(
            f"{model_path.name}: its directions entry {name!r} is not a folder name beside it"
        )
    folder = model_path.parent / rel
    if not folder.is_dir():
        raise ModelFileError(f"{model_path.name}: its directions folder {folder} is missing")
    return folder


def direction_names(folder: Path) -> list[str]:
    """The directions a folder holds (``<name>.npy``), sorted."""
    return sorted(p.stem for p in folder.glob("*.npy"))


def missing_directions_error(model: str, folder: Path, missing: list[str]) -> ModelFileError:
    """One line naming the directions a model lacks and those it has."""
    have = ", ".join(direction_names(folder)) or "none"
    names = ", ".join(missing)
    what = "direction" if len(missing) == 1 else "directions"
    return ModelFileError(
        f"{names}: the model {Path(model).name} has no {names} {what} (it has: {have}); "
        "leave that option out, or give --directions DIR"
    )


class LatentDirections:
    """The directions one generator can use, each ``(L, w_dim)`` float32, loaded once.

    source: where they come from; folder: the folder for "folder" and "model" (None for
    "registry"); model: the model's name, for messages; shape: ``(L, w_dim)`` of the generator.
    """

    def __init__(
        self,
        source: Source,
        folder: Path | None,
        *,
        model: str,
        shape: tuple[int, int],
        offline: bool = False,
    ) -> None:
        if (folder is None) != (source == "registry"):
            raise ValueError(f"directions from {source!r} take {'no' if folder is None else 'a'} folder")
        self.source: Source = source
        self.folder = folder
        self.model = model
        self.shape = shape
        self.offline = offline
        self._loaded: dict[str, tuple[np.ndarray, dict[str, str]]] = {}
        self._calibration: tuple[AgeCalibration | None] | None = None  # read once

    def age_calibration(self) -> AgeCalibration | None:
        """Years <-> coefficient measured on the age direction, kept beside it in the folder
        (``age_calibration.json``); None where there is none (the registry's BabyGAN files)."""
        if self._calibration is None:
            self._calibration = (None if self.folder is None else AgeCalibration.load(self.folder),)
        return self._calibration[0]

    def names(self) -> list[str] | None:
        """The directions a folder holds; None for the registry's (fetched by name when used)."""
        return None if self.folder is None else direction_names(self.folder)

    def missing(self, names: list[str]) -> list[str]:
        """Those of ``names`` a folder lacks (none for the registry: it fetches them)."""
        if self.folder is None:
            return []
        return [n for n in names if not (self.folder / f"{n.removesuffix('.npy')}.npy").is_file()]

    def path(self, name: str) -> Path:
        """The file of direction ``name``; one line naming what is missing."""
        filename = name if name.endswith(".npy") else f"{name}.npy"
        if self.source == "registry":
            return models.resolve_model_file(filename, offline=self.offline)
        assert self.folder is not None  # "folder" and "model" have one (checked in __init__)
        path = self.folder / filename
        if not path.is_file():
            if self.source == "folder":
                raise ModelFileError(f"{path}: direction file not found in --directions folder")
            raise missing_directions_error(self.model, self.folder, [filename.removesuffix(".npy")])
        return path

    def direction(self, name: str) -> np.ndarray:
        """The named direction, checked against the generator: ``(L, w_dim)`` float32."""
        if name not in self._loaded:
            path = self.path(name)
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ModelFileError(f"{path}: not a readable .npy direction file ({exc})") from exc
            arr = latent.check_direction(arr, self.shape[0], self.shape[1], name=str(path))
            # a model file: hashed once, remembered across runs
            self._loaded[name] = (arr, {"path": str(path), "sha256": models.cached_sha256(path)})
        return self._loaded[name][0]

    def provenance(self) -> dict[str, dict[str, str]]:
        """The directions loaded so far: ``{name: {"path", "sha256"}}``."""
        return {name: meta for name, (_, meta) in self._loaded.items()}

    def described(self) -> str:
        """Where they come from, for the records: the folder given, "model" or "registry"."""
        return str(self.folder) if self.source == "folder" else self.source
