"""babygan: predict a child's face from two parents' photos with StyleGAN.

The few names a Python user needs (README.md, "Use it from Python")::

    import babygan
    session = babygan.Session("builtin")       # the models, each loaded once when first needed
    result = babygan.predict("dad.jpg", "mum.jpg", babygan.ChildOptions(genes=0.4, age=5), session)
    babygan.write_prediction(result, "out")    # child.png, sheet.png, child.npy, child.json
    anime = babygan.anime_photo("me.jpg", styles=3, session=session)   # a face as anime, 3 styles
    babygan.write_anime([anime], "out")        # me_anime.png, me_anime_1..3.png, me_anime_sheet.png

They are imported when first used, so ``import babygan`` (and ``babygan --help``) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that owns it
_PUBLIC = {
    "Session": "babygan.session",
    "Parent": "babygan.parents",
    "predict": "babygan.pipeline",
    "age_sweep": "babygan.pipeline",
    "ChildOptions": "babygan.pipeline",
    "EditOptions": "babygan.pipeline",
    "PredictResult": "babygan.pipeline",
    "SweepResult": "babygan.pipeline",
    "Age": "babygan.latent",
    "Crop": "babygan.align",
    "write_prediction": "babygan.outputs",
    "write_sweep": "babygan.outputs",
    "BabyganError": "babygan.errors",
    "EditRanges": "babygan.edit_ranges",
    "EditRangeError": "babygan.edit_ranges",
    "anime_photo": "babygan.anime.photo",
    "anime_clip": "babygan.anime.clip",
    "write_anime": "babygan.anime.photo",
    "AnimePhoto": "babygan.anime.photo",
    "AnimeClip": "babygan.anime.clip",
    "AnimeStylizer": "babygan.anime.stylize",
}

__all__ = [
    "Age",
    "AnimeClip",
    "AnimePhoto",
    "AnimeStylizer",
    "BabyganError",
    "ChildOptions",
    "Crop",
    "EditOptions",
    "EditRangeError",
    "EditRanges",
    "Parent",
    "PredictResult",
    "Session",
    "SweepResult",
    "__version__",
    "age_sweep",
    "anime_clip",
    "anime_photo",
    "predict",
    "write_anime",
    "write_prediction",
    "write_sweep",
]

if TYPE_CHECKING:
    from babygan.align import Crop
    from babygan.anime.clip import AnimeClip, anime_clip
    from babygan.anime.photo import AnimePhoto, anime_photo, write_anime
    from babygan.anime.stylize import AnimeStylizer
    from babygan.edit_ranges import EditRangeError, EditRanges
    from babygan.errors import BabyganError
    from babygan.latent import Age
    from babygan.outputs import write_prediction, write_sweep
    from babygan.parents import Parent
    from babygan.pipeline import ChildOptions, EditOptions, PredictResult, SweepResult, age_sweep, predict
    from babygan.session import Session


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'babygan' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
