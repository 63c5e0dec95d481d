"""dlib's model files as shipped inside the PyPI package face_recognition_models (no download).

The package finds its files with ``pkg_resources``, which setuptools 81 removed and which a
Python 3.12+ virtual environment does not have at all; importing the package there fails. So
the files are located from the package's import spec, without running its ``__init__``.

    shipped_model_file(LANDMARKS_68)     # -> Path of shape_predictor_68_face_landmarks.dat
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from babygan.errors import ModelFileError

PACKAGE = "face_recognition_models"
#: dlib's 68-point landmark model: the FFHQ crop, face masks, the identity loss's chip
LANDMARKS_68 = "shape_predictor_68_face_landmarks.dat"
#: dlib's 5-point landmark model: the chip that ``resemblance`` describes
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
#: dlib's face recognition ResNet: the 128-D descriptor
FACE_DESCRIPTOR = "dlib_face_recognition_resnet_model_v1.dat"
#: dlib's CNN (MMOD) face detector: where the HOG detector misses a soft or old face
CNN_FACE_DETECTOR = "mmod_human_face_detector.dat"


def shipped_model_file(name: str) -> Path:
    """The path of ``name`` inside face_recognition_models' ``models/`` folder.

    Raises ``ModelFileError`` naming the file when the package is not installed or lacks it.
    """
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ModelFileError(f"{name}: the package {PACKAGE} is not installed; `pip install {PACKAGE}`")
    for folder in folders:
        path = Path(folder) / "models" / name
        if path.is_file():
            return path
    raise ModelFileError(
        f"{Path(folders[0]) / 'models' / name}: no such file in the installed {PACKAGE}; "
        f"reinstall it (`pip install --force-reinstall {PACKAGE}`)"
    )
