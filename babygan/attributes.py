"""Age and gender of a face: a small Keras CNN trained on UTKFace, shipped in the package.

One network, two heads: ``age`` (years, a regression trained with an L1 loss) and
``p_female`` (a sigmoid). It reads ``INPUT_SIZE`` px RGB faces cropped the way babygan's
built-in model is trained (``babygan.align.Crop``: the FFHQ recipe at a tighter scale),
so it scores generated faces and aligned parents as they come. Images of any size are
resized inside ``predict``. The weights (``babygan/builtin/attributes.keras``) and a small
JSON beside them (crop, input size, held-out figures) ship with babygan; UTKFace is for
non-commercial research, and so is this model.

```
from babygan.attributes import AttributeModel
model = AttributeModel.load()                 # the shipped file (or a path)
ages, p_female = model.predict(images)        # uint8 (N, S, S, 3) -> float32 (N,), (N,)
```
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babygan.align import Crop
from babygan.atomic import atomic_path, write_text_atomic
from babygan.backend import ensure_started
from babygan.errors import BabyganError, ModelFileError, first_line

if TYPE_CHECKING:
    from babygan.utkface import FaceSet

log = logging.getLogger("babygan")

INPUT_SIZE = 64
OUTPUT_NAMES = ("age", "p_female")
# Where the age head starts (UTKFace's mean age is ~33).
_AGE_BIAS = 33.0
# age L1 (years) / this + gender cross-entropy: both terms start near 1.
_AGE_LOSS_SCALE = 10.0


def builtin_path() -> Path:
    """The shipped attribute model file."""
    return Path(__file__).resolve().parent / "builtin" / "attributes.keras"


def info_path(model_path: str | os.PathLike[str]) -> Path:
    """The JSON beside a model file (``attributes.keras`` -> ``attributes.json``)."""
    return Path(model_path).with_suffix(".json")


# --------------------------------------------------------------------------- network


def build_network(input_size: int = INPUT_SIZE, seed: int = 0) -> Any:
    """The untrained two-headed CNN (about 0.33 M parameters, ~1.4 MB as a .keras file).

    Input: float (N, S, S, 3) RGB in 0..255. Outputs: ``age`` (N, 1) years,
    ``p_female`` (N, 1) in [0, 1].
    """
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.RandomFlip("horizontal", seed=seed, name="flip")(inputs)  # training only
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(x)
    for i, channels in enumerate((24, 48, 96, 192)):
        x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        if i == 2:  # one more at 16 px, where faces' parts are a few pixels across
            x = layers.Conv2D(channels, 3, padding="same", use_bias=False, name=f"conv{i}b")(x)
            x = layers.BatchNormalization(name=f"bn{i}b")(x)
            x = layers.ReLU(name=f"relu{i}b")(x)
        if i < 3:
            x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    x = layers.Dense(128, activation="relu", name="features")(x)
    age = layers.Dense(1, bias_initializer=keras.initializers.Constant(_AGE_BIAS), name="age")(x)
    p_female = layers.Dense(1, activation="sigmoid", name="p_female")(x)
    return keras.Model(inputs, {"age": age, "p_female": p_female}, name="babygan_attributes")


# --------------------------------------------------------------------------- model


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """``uint8 (N, S, S, 3)`` -> ``uint8 (N, size, size, 3)`` (Lanczos, as align_image shrinks)."""
    from PIL import Image

    images = np.asarray(images)
    if images.shape[1:3] == (size, size):
        return images
    return np.stack(
        [np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.LANCZOS)) for im in images]
    )


@dataclass
class AttributeModel:
    """A loaded attribute network and what its JSON says (``info``: crop, input size, figures)."""

    network: Any
    path: Path | None = None
    info: dict[str, Any] | None = None

    @property
    def input_size(self) -> int:
        return int(self.network.input_shape[1])

    @property
    def crop(self) -> Crop | None:
        """The crop the network was trained on, if its JSON records one."""
        spec = (self.info or {}).get("crop")
        return None if spec is None else Crop.from_dict(spec, str(info_path(self.path or builtin_path())))

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> AttributeModel:
        """Load the shipped model (``path=None``) or a ``.keras`` file; its ``.json`` is read when present.

        Raises ``ModelFileError`` naming the file when it is missing, not a Keras file, or
        not a two-headed age/gender network.
        """
        path = builtin_path() if path is None else Path(path)
        if not path.is_file():
            raise ModelFileError(f"{path}: no such attribute model file")
        ensure_started()
        import keras

        try:
            network = keras.models.load_model(str(path), compile=False)
        except Exception as exc:  # Keras raises many kinds for a bad file
            raise ModelFileError(f"{path}: not a Keras attribute model ({first_line(exc)[:200]})") from exc
        _check_network(path, network)
        info = None
        meta = info_path(path)
        if meta.is_file():
            try:
                info = json.loads(meta.read_text())
            except (OSError, ValueError) as exc:
                raise ModelFileError(f"{meta}: unreadable model information ({first_line(exc)})") from exc
            if not isinstance(info, dict):
                raise ModelFileError(f"{meta}: model information is not a JSON object")
        return cls(network=network, path=path, info=info)

    def predict(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``uint8 (N, S, S, 3)`` RGB faces -> ``(ages float32 (N,) years, p_female float32 (N,))``.

        Faces should be cropped as ``self.crop`` says; any S is resized to ``input_size``.
        """
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}")
        if len(images) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        import keras

        ages, p_female = [], []
        for start in range(0, len(images), batch_size):
            chunk = resize_images(images[start : start + batch_size], self.input_size)
            out = self.network(chunk.astype(np.float32), training=False)
            ages.append(keras.ops.convert_to_numpy(out["age"]).reshape(-1))
            p_female.append(keras.ops.convert_to_numpy(out["p_female"]).reshape(-1))
        return np.concatenate(ages).astype(np.float32), np.concatenate(p_female).astype(np.float32)

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.predict(images)

    def save(self, dest: str | os.PathLike[str]) -> Path:
        """Write the network (``dest``, a ``.keras`` file) and its JSON beside it, atomically."""

        dest = Path(dest)
        if dest.suffix != ".keras":
            raise BabyganError(f"{dest}: attribute models are saved in Keras' format; name it <name>.keras")
        network = self.network
        if getattr(network, "optimizer", None) is not None:
            # Save the weights alone (no optimizer state: a third of the size).
            network = build_network(self.input_size)
            network.set_weights(self.network.get_weights())
        with atomic_path(dest) as tmp:
            network.save(str(tmp))
        if self.info is not None:
            write_text_atomic(info_path(dest), json.dumps(self.info, indent=2) + "\n")
        self.path = dest
        return dest


def _check_network(path: Path, network: Any) -> None:
    try:
        shape = tuple(network.input_shape)
        outputs = network.output
        names = set(outputs) if isinstance(outputs, dict) else set()
    except (AttributeError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: not a single-input attribute network ({first_line(exc)})") from exc
    if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
        raise ModelFileError(f"{path}: takes input {shape}, not square RGB images")
    if names != set(OUTPUT_NAMES):
        raise ModelFileError(f"{path}: outputs {sorted(names) or 'unnamed'}, expected age and p_female")


# --------------------------------------------------------------------------- training


def evaluate(model: AttributeModel, faces: FaceSet) -> dict[str, float]:
    """Held-out figures: ``age_mae`` (years), ``gender_accuracy`` (p_female > 0.5 vs label), ``n``."""
    ages, p_female = model.predict(faces.images)
    return {
        "age_mae": float(np.mean(np.abs(ages - faces.ages.astype(np.float32)))),
        "gender_accuracy": float(np.mean((p_female > 0.5) == (faces.genders == 1))),
        "n": len(faces),
    }


def train_attributes(
    train: FaceSet,
    holdout: FaceSet | None = None,
    *,
    epochs: int = 16,
    batch_size: int = 64,
    learning_rate: float = 3e-3,
    input_size: int = INPUT_SIZE,
    seed: int = 0,
    verbose: int = 2,
) -> tuple[AttributeModel, dict[str, Any]]:
    """Train the two-headed network on ``train`` (uint8 faces with ``ages``/``genders``).

    Adam with a cosine-decaying rate, horizontal flips; loss = age L1 / 10 + gender
    cross-entropy. Returns the model (its ``info`` filled: crop, input size, training
    settings and time, held-out figures when ``holdout`` is given) and that info.
    """
    import keras

    if len(train) == 0:
        raise BabyganError("no training faces")
    images = resize_images(train.images, input_size).astype(np.float32)
    targets = {
        "age": train.ages.astype(np.float32)[:, None],
        "p_female": train.genders.astype(np.float32)[:, None],
    }
    network = build_network(input_size, seed)
    steps = epochs * math.ceil(len(images) / batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(steps, 1))
    network.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss={"age": "mean_absolute_error", "p_female": "binary_crossentropy"},
        loss_weights={"age": 1.0 / _AGE_LOSS_SCALE, "p_female": 1.0},
        metrics={"age": ["mean_absolute_error"], "p_female": ["binary_accuracy"]},
    )
    start = time.perf_counter()
    network.fit(images, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    seconds = time.perf_counter() - start
    info: dict[str, Any] = {
        "format": "babygan-attributes-1",
        "input_size": input_size,
        "crop": None if train.crop is None else train.crop.to_dict(),
        "licence": "trained on UTKFace: non-commercial research only",
        "training": {
            "faces": len(train),
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "seconds": round(seconds, 1),
            "parameters": int(network.count_params()),
        },
    }
    model = AttributeModel(network=network, info=info)
    if holdout is not None and len(holdout):
        info["holdout"] = evaluate(model, holdout)
    return model, info
