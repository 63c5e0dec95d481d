"""Grow a trained autoencoder model by one block: 64 px -> 128 px, as progressive GANs grow.

The source is a model file that carries E (the 64 px model; the shipped ``babygan-utkface128.npz``
was grown from it) or an autoencoder checkpoint folder (its EMA networks). The grown model keeps
every trained parameter and adds:

- synthesis: the two layers of the new resolution (fresh, StyleGAN's initialisation) and a
  new ToRGB; W+ gains those two layers' codes;
- E: a FromRGB at the new size and a block that downsamples into the old FromRGB's place
  (fresh); its output layer gains the two new layers' codes, initialised as copies of the
  old last layer's (``b4.dense1`` columns repeated), so a new layer starts with the code of
  the layer below it;
- the fade-in (``GeneratorConfig.fade_param_shapes``): the old ToRGB and FromRGB are kept as
  ``synthesis.torgb_prev`` / ``encoder.fromrgb_prev``. While ``fade_alpha`` < 1 the image is
  the old ToRGB's, nearest-upsampled, blended with the new block's, and E's first block is
  blended with the old FromRGB reading the 2x2-averaged image. At alpha 0 the grown
  autoencoder is exactly the small one: up(G_small(E_small(down(x)))).

Why a fade rather than a near-identity new block: each synthesis layer ends in an instance
norm and a style, which remove every image's own per-channel mean and spread; no choice of
weights makes two such layers pass an image through unchanged for every face. The fade is
exact at alpha 0 for any weights, and the trainer ramps alpha to 1 over ``fade_kimg``.

Arrays: parameter dicts name -> float32 numpy arrays, the names of ``GeneratorConfig``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from babygan.errors import BabyganError
from babygan.stylegan import image_encoder
from babygan.stylegan.config import ENCODER_PREFIX, FADE_FROMRGB, FADE_TORGB, GeneratorConfig
from babygan.stylegan.generator import read_npz
from babygan.train import checkpoint
from babygan.train.autoencoder import init_state
from babygan.train.config import AutoencoderConfig
from babygan.train.optim import adam_init
from babygan.train.trainer import init_generator

#: the fields of GeneratorConfig a grown model must share with its run's settings
_SHAPE_FIELDS = (
    "num_channels",
    "fmap_base",
    "fmap_decay",
    "fmap_max",
    "dlatent_size",
    "use_noise",
    "blur_filter",
)


def read_source(source: str | os.PathLike[str]) -> tuple[GeneratorConfig, dict[str, np.ndarray]]:
    """A trained model to grow -> (its config, with E; synthesis, noise and ``encoder.*`` params).

    ``source``: a babygan model file carrying E, or an autoencoder checkpoint folder (its EMA
    networks; a grown run only once its fade is over). One-line BabyganError otherwise.
    """
    path = Path(source)
    if path.is_dir():
        state, meta = checkpoint.load_checkpoint(path)
        if meta.get("recipe") != "autoencoder":
            raise BabyganError(f"{path}: not a checkpoint of the autoencoder recipe")
        config = AutoencoderConfig.from_dict(meta["config"])
        if config.fade_kimg > 0 and int(meta["nimg"]) < config.fade_kimg * 1000:
            raise BabyganError(
                f"{path}: its own new block is still fading in; train it past {config.fade_kimg:g} kimg"
            )
        gc = replace(config.generator_config(), image_encoder=True)
        params = {**state["E_ema"], **state["G_ema"], **state["G_fixed"]}
    else:
        gc, params, _ = read_npz(path)  # a one-line ModelFileError when it is not a model file
        if not gc.image_encoder:
            raise BabyganError(f"{path.name}: carries no image encoder E; only an autoencoder model can grow")
    keep = [n for n in gc.param_shapes() if n.startswith(("synthesis.", ENCODER_PREFIX))]
    return gc, {n: np.asarray(params[n], np.float32) for n in keep}


def grow_params(
    config: GeneratorConfig, params: dict[str, np.ndarray], seed: int = 0
) -> tuple[GeneratorConfig, dict[str, np.ndarray]]:
    """(config, params) of a trained model with E -> those of the model one block larger, with the
    fade-in parameters (synthesis, noise, ``encoder.*`` and ``fade_param_shapes``; float32)."""
    big = replace(config, resolution=config.resolution * 2, image_encoder=True)
    fresh = {**init_generator(big, seed), **image_encoder.init_params(big, seed)}
    old_layers, top = config.num_layers, big.resolution
    new_names = {"synthesis.torgb.weight", "synthesis.torgb.bias"}
    new_names |= {
        n
        for n in fresh
        if n.startswith(tuple(f"synthesis.layer{i}." for i in range(old_layers, big.num_layers)))
    }
    new_names |= {n for n in fresh if n.startswith((f"{ENCODER_PREFIX}fromrgb.", f"{ENCODER_PREFIX}b{top}."))}
    grown: dict[str, np.ndarray] = {}
    for name in big.param_shapes():
        if not name.startswith(("synthesis.", ENCODER_PREFIX)):
            continue  # the mapping is fitted afresh when the run is finished
        if name in new_names:
            grown[name] = fresh[name]
        elif name.startswith(f"{ENCODER_PREFIX}b4.dense1."):
            grown[name] = _repeat_last_layer(params[name], old_layers, big.num_layers)
        else:
            grown[name] = params[name]
        if grown[name].shape != big.param_shapes()[name]:
            raise BabyganError(
                f"cannot grow {name}: {grown[name].shape}, expected {big.param_shapes()[name]}"
            )
    for suffix in ("weight", "bias"):  # the old ToRGB and FromRGB fade out
        grown[f"{FADE_TORGB}.{suffix}"] = params[f"synthesis.torgb.{suffix}"]
        grown[f"{FADE_FROMRGB}.{suffix}"] = params[f"{ENCODER_PREFIX}fromrgb.{suffix}"]
    return big, {k: np.asarray(v, np.float32) for k, v in grown.items()}


def _repeat_last_layer(a: np.ndarray, old_layers: int, new_layers: int) -> np.ndarray:
    """E's output weights (H, L*D) or bias (L*D,) -> (H, L'*D) / (L'*D,): the new layers' codes
    are the last old layer's (the equalized-lr scale depends on the fan-in H only)."""
    lead = a.shape[:-1]
    per_layer = a.reshape(*lead, old_layers, -1)
    extra = np.repeat(per_layer[..., -1:, :], new_layers - old_layers, axis=-2)
    return np.concatenate([per_layer, extra], axis=-2).reshape(*lead, -1)


def grown_state(source: str | os.PathLike[str], config: AutoencoderConfig) -> dict[str, Any]:
    """The training state at step 0 of a run with ``config`` grown from ``source``: E, G and their
    EMA from the grown model, fresh Adam moments and discriminator (nested dicts of float32)."""
    small, params = read_source(source)
    big, grown = grow_params(small, params, config.seed)
    want = config.generator_config()
    if want.resolution != big.resolution or any(getattr(want, f) != getattr(big, f) for f in _SHAPE_FIELDS):
        raise BabyganError(
            f"{source}: a {small.resolution} px model with fmap {small.fmap_base}/{small.fmap_max} and w "
            f"{small.dlatent_size} grows to {big.resolution} px with the same, not to {config.resolution} px "
            f"with fmap {config.fmap_base}/{config.fmap_max} and w {config.dlatent_size}"
        )
    if config.fade_kimg <= 0:
        grown = {k: v for k, v in grown.items() if not k.startswith((FADE_TORGB, FADE_FROMRGB))}
    state = init_state(config)  # the run's names and shapes; E, G and G_fixed replaced below
    wanted = {k: v.shape for part in ("E", "G", "G_fixed") for k, v in state[part].items()}
    bad = sorted(set(wanted) ^ set(grown)) + [k for k in wanted if k in grown and grown[k].shape != wanted[k]]
    if bad:
        raise BabyganError(f"{source}: the grown model does not fit the run's settings (e.g. {bad[:2]})")
    for part in ("E", "G", "G_fixed"):
        state[part] = {k: grown[k] for k in state[part]}
    state["E_ema"] = {k: v.copy() for k, v in state["E"].items()}
    state["G_ema"] = {k: v.copy() for k, v in state["G"].items()}
    state["EG_opt"] = adam_init({**state["E"], **state["G"]}, config.adam_beta1)
    return state
