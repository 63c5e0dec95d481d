"""The encoder's first guess: a ResNet50 that predicts (L, w_dim) dlatents from an image.

Trained the pbaylies way, on pairs (generated image, its dlatents) sampled from the
generator itself. Saved as a Keras ``.keras`` file; the model takes Caffe-style
preprocessed images (BGR, ImageNet means subtracted), as keras' ResNet50 and pbaylies'
finetuned_resnet.h5 do.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from babygan.encoder.images import caffe_preprocess, resize_uint8
from babygan.encoder.settings import EncoderSettings
from babygan.errors import BabyganError, ModelFileError, first_line

log = logging.getLogger("babygan")

#: the registry's estimator for the FFHQ generator, and that generator's file name
FFHQ_ESTIMATOR = "finetuned_resnet.h5"
FFHQ_GENERATOR = "karras2019stylegan-ffhq-1024x1024.pkl"


def estimator_input_size(G: Any) -> int:
    """The estimator's image size for G: 256 (pbaylies), G's resolution when smaller, at least 32."""
    return int(max(32, min(256, G.resolution)))


def _preprocess(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, S, S, 3) RGB -> float32 (N, size, size, 3) BGR minus the ImageNet means."""
    return caffe_preprocess(resize_uint8(images, size).astype(np.float32))


def build_estimator(G: Any, *, seed: int = 0) -> Any:
    """An untrained ResNet50 (random weights) with a head predicting (L, w_dim) dlatents.

    The head's bias starts at G's dlatent_avg, so before any training the guess is
    the same start the optimiser would otherwise use.
    """
    import keras

    keras.utils.set_random_seed(seed)
    size = estimator_input_size(G)
    trunk = keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    avg = np.tile(np.asarray(G.dlatent_avg, np.float32), G.num_layers)
    head = keras.layers.Dense(
        G.num_layers * G.w_dim,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3, seed=seed),
        bias_initializer=keras.initializers.Constant(avg),
        name="dlatents",
    )
    out = keras.layers.Reshape((G.num_layers, G.w_dim), name="dlatents_2d")(head(trunk.output))
    return keras.Model(trunk.input, out, name="babygan_estimator")


def sample_pairs(
    G: Any, count: int, *, seed: int, truncation_psi: float = 1.0, batch: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (uint8 (count, R, R, 3) images, (count, L, w_dim) float32 dlatents) from G."""
    from babygan.stylegan import to_uint8

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((count, G.z_dim)).astype(np.float32)
    dlatents, images = [], []
    for lo in range(0, count, batch):
        w = np.asarray(G.mapping(z[lo : lo + batch], truncation_psi=truncation_psi), np.float32)
        dlatents.append(w)
        images.append(to_uint8(G.synthesis(w, noise="const")))
    return np.concatenate(images), np.concatenate(dlatents)


def train_estimator(
    G: Any,
    samples: int,
    epochs: int,
    batch_size: int = 16,
    seed: int = 0,
    *,
    lr: float = 1e-3,
    truncation_psi: float = 1.0,
    progress: bool = True,
    recalibrate_samples: int = 512,
) -> Any:
    """Train a ResNet50 estimator on ``samples`` (image, dlatents) pairs drawn from G.

    Mean squared error on the dlatents, Adam; returns the Keras model (save it with
    :func:`save_estimator`). Deterministic for a seed on the same machine.
    """
    import keras

    if samples < 2 or epochs < 1 or batch_size < 1:
        raise BabyganError(
            f"train-estimator: need samples >= 2, epochs >= 1, batch size >= 1 (got {samples}, "
            f"{epochs}, {batch_size})"
        )
    images, dlatents = sample_pairs(G, samples, seed=seed, truncation_psi=truncation_psi)
    model = build_estimator(G, seed=seed)
    x = _preprocess(images, estimator_input_size(G))
    steps = epochs * -(-samples // batch_size)
    # No XLA: compiling ResNet50's training step with it takes minutes on a CPU. For a
    # handful of steps, tracing the graph at all (about a minute on 2 cores) costs more
    # than it saves: run eagerly.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=lr),
        loss="mse",
        jit_compile=False,
        run_eagerly=steps <= 16,
    )
    model.fit(x, dlatents, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=2 if progress else 0)
    recalibrate_batchnorm(model, x[:recalibrate_samples])
    return model


def recalibrate_batchnorm(model: Any, x: np.ndarray, chunk: int = 32) -> None:
    """Set every BatchNorm layer's moving mean and variance to their average over ``x``.

    After a short training the moving averages (momentum 0.99) still remember the
    untrained network, and inference with them is far off what training saw. Here each
    chunk's statistics are averaged with equal weight (momentum k / (k + 1) for chunk k).
    """
    import keras

    bn = keras.layers.BatchNormalization
    layers = [layer for layer in model._flatten_layers() if isinstance(layer, bn)]
    saved = [layer.momentum for layer in layers]
    try:
        for k, lo in enumerate(range(0, len(x), chunk)):
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(x[lo : lo + chunk], training=True)
    finally:
        for layer, momentum in zip(layers, saved, strict=True):
            layer.momentum = momentum


def check_estimator_dest(dest: str | Path) -> Path:
    """``dest`` as a Path, or a BabyganError unless it is named <something>.keras (Keras' format)."""
    dest = Path(dest)
    if dest.suffix != ".keras":
        raise BabyganError(f"{dest}: estimator files are saved in Keras' format; name it <something>.keras")
    return dest


def save_estimator(model: Any, dest: str | Path) -> Path:
    """Write the estimator to ``dest`` (a ``.keras`` file), atomically."""
    from babygan.atomic import atomic_path

    dest = check_estimator_dest(dest)
    with atomic_path(dest) as tmp:
        model.save(tmp)
    return dest


def load_estimator(path: str | Path) -> Any:
    """A Keras estimator model from ``path`` (.keras, or a legacy .h5 such as finetuned_resnet.h5).

    A file Keras cannot read raises ModelFileError naming it. The caller keeps the model
    (an ``Encoder`` loads its estimator once).
    """
    import keras

    try:
        return keras.models.load_model(str(path), compile=False)
    except Exception as exc:  # Keras raises many kinds; the user needs one line naming the file
        text = first_line(exc)
        raise ModelFileError(
            f"{path}: Keras {keras.__version__} cannot load this estimator ({text[:200]})"
        ) from exc


def check_estimator(model: Any, G: Any, path: str | Path) -> None:
    """Raise ModelFileError unless the model maps square RGB images to G's (L, w_dim) dlatents."""
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[-1] != 3 or out_shape[1:] != (G.num_layers, G.w_dim):
        raise ModelFileError(
            f"{path}: estimator maps {in_shape} -> {out_shape}, but this generator needs "
            f"(None, S, S, 3) -> (None, {G.num_layers}, {G.w_dim})"
        )


def predict_dlatents(model: Any, images: np.ndarray) -> np.ndarray:
    """uint8 (N, S, S, 3) aligned images -> (N, L, w_dim) float32 guesses."""
    size = int(model.input_shape[1] or 256)
    x = _preprocess(images, size)
    return np.asarray(model(x, training=False), np.float32)


def _is_ffhq(G: Any) -> bool:
    from babygan.models import lookup

    try:
        return getattr(G, "source_sha256", None) == lookup(FFHQ_GENERATOR).sha256
    except ModelFileError:
        return False


def _auto_path(G: Any) -> Path | None:
    """The registry's estimator for the FFHQ generator when it is already in the models dir.

    Never downloaded implicitly (330 MB).
    """
    if not _is_ffhq(G):
        return None
    from babygan.models import lookup, model_path

    path = model_path(lookup(FFHQ_ESTIMATOR))
    return path if path.is_file() else None


def estimator_path(G: Any, settings: EncoderSettings, *, offline: bool = False) -> Path | None:
    """The estimator file the settings ask for, or None for dlatent_avg; loads nothing.

    - init "dlatent_avg", or a .npy file: None.
    - an explicit ``settings.estimator``: that file (resolved, fetched by registry name).
    - init "auto"/"estimator" for the FFHQ generator: finetuned_resnet.h5 when it is
      already in the models dir.
    - init "estimator" with nothing available: an error.

    In "auto" mode the file may still fail to load; :func:`choose_estimator` then says None.
    """
    if settings.init == "dlatent_avg" or settings.init_file is not None:
        return None
    if settings.estimator:
        from babygan.models import resolve_model_file

        return resolve_model_file(settings.estimator, offline=offline)
    path = _auto_path(G)
    if path is None and settings.init == "estimator" and not getattr(G, "has_encoder", False):
        raise BabyganError(
            "init=estimator: no estimator for this generator; pass one (--estimator FILE, made with "
            "`babygan train-estimator`) or use the default init"
        )
    return path


def choose_estimator(G: Any, settings: EncoderSettings, *, offline: bool = False) -> tuple[Any, Path] | None:
    """The estimator to start from, loaded, as (model, path), or None for dlatent_avg.

    The file is :func:`estimator_path`'s. An explicit estimator (or init "estimator") must
    load and fit G, else an error; in "auto" mode a file Keras cannot load gives a logged
    note and None.
    """
    path = estimator_path(G, settings, offline=offline)
    if path is None:
        return None
    try:
        model = load_estimator(path)
        check_estimator(model, G, path)
    except ModelFileError as exc:
        if settings.estimator or settings.init == "estimator":
            raise
        log.warning("encoder: not using the estimator: %s; starting from dlatent_avg", exc)
        return None
    return model, path
