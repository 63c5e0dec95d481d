"""Which face model runs: FFHQ, babygan's built-in model, or a file the user names.

The built-in model ships inside the package, in ``babygan/builtin/``:

- ``babygan-utkface128.npz``: the generator in babygan's npz format; its ``info`` records
  its crop (``{"recipe": "ffhq", "scale": 0.7}``), name and licence, and
  ``"directions": "babygan-utkface128"``, the folder (beside the npz, relative to it)
  holding its own latent directions;
- ``babygan-utkface128/``: ``age.npy``, ``gender.npy`` (and ``directions.json``) from
  ``babygan learn-directions``.

Any babygan npz may carry ``info["directions"]`` the same way; a model without it (the
official FFHQ pickle) uses BabyGAN's published directions from the registry.

The name ``builtin`` is accepted wherever a model is (``--model builtin``). With no model
named, :func:`choose_model` takes FFHQ when it is in the models directory and the built-in
model otherwise, and says in one line which runs and how to get the other.
:func:`ship_builtin` puts a trained generator and its directions into the package folder.

Nothing heavy is imported here; only the registry (babygan.models) is used. A model's own
directions are read by babygan/directions.py, its crop by babygan.align.Crop.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from babygan import builtin, models
from babygan.builtin import BUILTIN, BUILTIN_DIRECTIONS, BUILTIN_LICENCE, builtin_model_file
from babygan.directions import direction_names
from babygan.errors import BabyganError, ModelFileError
from babygan.stylegan import load_generator

log = logging.getLogger("babygan")

#: the registry name of NVIDIA's FFHQ generator
FFHQ = "ffhq"


def is_builtin(model: str | os.PathLike[str]) -> bool:
    return str(model) == BUILTIN


# --------------------------------------------------------------------------- the default


def ffhq_cached() -> bool:
    """Whether the FFHQ generator is in the models directory (not re-hashed here)."""
    return models.model_path(models.lookup(FFHQ)).is_file()


def choose_model(
    requested: str | os.PathLike[str] | None, *, say: Callable[[str], None] | None = None
) -> str:
    """The model to run: ``requested`` as given, or, for None, ``"ffhq"`` or ``"builtin"``.

    ``--model builtin`` on a build without the file fails at once, in one line. With no
    model named: FFHQ when it is in the cache, else the built-in model when this build has
    it, else FFHQ (downloaded on first use, or named in the missing-files error offline).
    The choice is said once, in one line (``say``, default: the babygan logger).
    """
    if requested is not None:
        if is_builtin(requested):
            builtin_model_file()
        return str(requested)
    say = say or log.info
    ffhq = models.lookup(FFHQ)
    size = models.human_size(ffhq.size)
    if ffhq_cached():
        other = f"; babygan's own model: --model {BUILTIN}" if builtin.builtin_present() else ""
        say(f"model: FFHQ ({ffhq.name}, from the cache; {ffhq.licence}){other}")
        return FFHQ
    if builtin.builtin_present():
        say(
            f"model: babygan's built-in model ({BUILTIN_LICENCE}); for NVIDIA's FFHQ model "
            f"({size}): `babygan models fetch {FFHQ}`"
        )
        return BUILTIN
    say(
        f"model: FFHQ, not in {models.models_dir()} yet: `babygan models fetch {FFHQ}` ({size}; a run "
        "online fetches it), or --model FILE; this build has no built-in model"
    )
    return FFHQ


# --------------------------------------------------------------------------- shipping


def ship_builtin(generator: str | os.PathLike[str], directions: str | os.PathLike[str]) -> Path:
    """Put a trained generator (babygan npz) and its directions folder into babygan/builtin/.

    The generator is written again with ``info`` completed (crop kept, ``name``,
    ``licence`` and ``directions`` set); ``*.npy`` and ``directions.json`` of ``directions``
    are copied into ``babygan/builtin/babygan-utkface128/``. Returns the model's path.
    """

    src = Path(directions)
    names = direction_names(src) if src.is_dir() else []
    if "age" not in names:
        raise BabyganError(f"{src}: no age.npy (make it with `babygan learn-directions`)")
    G = load_generator(generator)
    if "crop" not in G.info:
        raise ModelFileError(f"{generator}: records no crop; export it with its crop (babygan.align.Crop)")
    G.info = {
        **G.info,
        "name": G.info.get("name", "babygan built-in (UTKFace)"),
        "licence": G.info.get("licence", BUILTIN_LICENCE),
        "directions": BUILTIN_DIRECTIONS,
    }
    dest = builtin.builtin_model_path()
    folder = dest.parent / BUILTIN_DIRECTIONS
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(src / f"{name}.npy", folder / f"{name}.npy")
    if (src / "directions.json").is_file():
        shutil.copyfile(src / "directions.json", folder / "directions.json")
    G.save(dest, storage="float16")
    log.info("shipped %s with directions %s", dest, json.dumps(names))
    return dest
