"""Model files that ship inside the babygan package (trained by babygan itself), and where they are.

- ``attributes.keras`` (+ ``attributes.json``): the age / gender network of
  ``babygan.attributes``, trained on UTKFace (non-commercial research only);
- ``babygan-utkface128.npz`` and its directions folder ``babygan-utkface128/``: babygan's own
  face model (``--model builtin``; see babygan/model_choice.py), once trained;
- ``babygan-anime.npz``: its anime model (``babygan.anime``; ``scripts/train_anime.py``),
  tuned on crawled anime faces (research use only).
"""

from __future__ import annotations

from pathlib import Path

from babygan.errors import ModelFileError

#: the name users type for the built-in model
BUILTIN = "builtin"
#: the generator file inside babygan/builtin/
BUILTIN_FILE = "babygan-utkface128.npz"
#: its directions folder, beside it
BUILTIN_DIRECTIONS = "babygan-utkface128"
BUILTIN_LICENCE = "trained on UTKFace: non-commercial research only"
#: where to get the other model when this build has no built-in one
FFHQ = "ffhq"


def builtin_dir() -> Path:
    """The package folder for shipped model files (``babygan/builtin``)."""
    return Path(__file__).resolve().parent


def builtin_model_path() -> Path:
    """Where the built-in generator lives in this build (present or not). Tests replace this."""
    return builtin_dir() / BUILTIN_FILE


def builtin_present() -> bool:
    return builtin_model_path().is_file()


def builtin_model_file() -> Path:
    """The built-in generator's file, or a one-line error saying it is not in this build."""
    path = builtin_model_path()
    if not path.is_file():
        raise ModelFileError(
            f"{BUILTIN}: babygan's built-in face model is not in this build (no {path}); "
            f"use NVIDIA's FFHQ model instead: `babygan models fetch {FFHQ}`, then --model {FFHQ} "
            "(or no --model)"
        )
    return path


#: the anime model tuned from the built-in model (``babygan.anime``), inside babygan/builtin/
BUILTIN_ANIME_FILE = "babygan-anime.npz"


def builtin_anime_path() -> Path:
    """Where the built-in model's anime model lives in this build (present or not). Tests replace this."""
    return builtin_dir() / BUILTIN_ANIME_FILE
