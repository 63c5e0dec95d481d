"""load_generator (official pickle or our npz, by registry name or path) and random_generator."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from babygan.backend.graph_store import GraphStore
from babygan.errors import ModelFileError
from babygan.stylegan.config import GeneratorConfig
from babygan.stylegan.generator import Generator, read_npz

log = logging.getLogger("babygan")


def _kind(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise ModelFileError(f"{path.name}: the file is empty")
    if head.startswith(b"PK"):
        return "npz"
    # Anything else goes to the restricted unpickler, which names what it refuses.
    return "pickle"


def load_generator(
    name_or_path: str | os.PathLike[str],
    offline: bool = False,
    *,
    precision: str = "fp32",
    graphs: GraphStore | None = None,
) -> Generator:
    """An official StyleGAN v1 pickle (tuple or lone Gs) or our .npz, by registry name or path.

    The first load of an official pickle converts it and stores the result as
    ``cache_dir("converted") / f"{sha256}.npz"``; later loads (any process) read that
    instead of unpickling. Each call reads the file: hold on to the Generator (a
    ``Session`` does) rather than loading again. ``precision``: "fp32" or "bf16".
    ``graphs``: where its compiled functions' traced graphs are looked up and kept.
    """
    from babygan import models

    path = models.resolve_model_file(name_or_path, offline=offline)
    try:
        kind = _kind(path)
        sha = models.cached_sha256(path.resolve())  # remembered across processes
    except OSError as exc:
        raise ModelFileError(f"{path.name}: cannot read: {exc.strerror or exc}") from exc
    return _load_uncached(path, kind, sha).with_precision(precision).with_graphs(graphs)


def _load_uncached(path: Path, kind: str, sha: str) -> Generator:
    from babygan import models
    from babygan.stylegan import legacy

    if kind == "npz":
        config, params, meta = read_npz(path)
        return Generator(config, params, source_sha256=sha, info=meta.get("info"))

    converted = models.cache_dir("converted") / f"{sha}.npz"
    if converted.is_file():
        try:
            config, params, meta = read_npz(converted)
            if meta.get("source_sha256") == sha:
                return Generator(config, params, source_sha256=sha)
        except ModelFileError as exc:  # a damaged cache entry is rebuilt, not fatal
            log.warning("%s; converting %s again", exc, path.name)
    config, params = legacy.load_official(path)
    G = Generator(config, params, source_sha256=sha)
    try:
        G.save(converted)
    except OSError as exc:  # a read-only cache only costs speed
        log.warning("could not cache the converted weights in %s: %s", converted, exc)
    return G


def random_generator(
    resolution: int = 32,
    fmap_base: int = 64,
    fmap_max: int = 16,
    seed: int = 0,
    *,
    latent_size: int = 512,
    dlatent_size: int = 512,
    mapping_layers: int = 8,
    mapping_fmaps: int | None = None,
    minibatch: int | None = None,
    **config_kwargs: object,
) -> Generator:
    """A generator with random weights drawn as the official initialisers do, so images are not degenerate.

    Weights ~ N(0, 1/lrmul) (equalized lr: mapping 100, synthesis 1), the constant input
    ~ N(0, 1); unlike the untrained official init, biases, noise strengths and styles get
    small random values so every path (noise included) affects the output. ``dlatent_avg``
    is the mean mapping output of 512 random z, as training would track it.
    The tiny default (32 px, 16 feature maps) is for tests; ``random_generator(1024,
    fmap_base=8192, fmap_max=512)`` is the full FFHQ architecture (26.2 M parameters).
    """
    config = GeneratorConfig(
        resolution=resolution,
        fmap_base=fmap_base,
        fmap_max=fmap_max,
        latent_size=latent_size,
        dlatent_size=dlatent_size,
        mapping_layers=mapping_layers,
        mapping_fmaps=mapping_fmaps if mapping_fmaps is not None else dlatent_size,
        **config_kwargs,  # type: ignore[arg-type]
    )
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in config.param_shapes().items():
        if name.startswith("mapping.") and name.endswith(".weight"):
            a = rng.standard_normal(shape) / config.mapping_lrmul
        elif name.endswith(".noise") or name == "synthesis.const" or name.endswith(".weight"):
            a = rng.standard_normal(shape)
        elif name.startswith("mapping.") and name.endswith(".bias"):
            a = rng.standard_normal(shape) * 0.1 / config.mapping_lrmul
        elif name.endswith(".noise_strength"):
            a = rng.uniform(0.05, 0.3, shape)
        elif name == "dlatent_avg":
            a = np.zeros(shape)
        else:  # biases
            a = rng.standard_normal(shape) * 0.1
        params[name] = a.astype(np.float32)
    G = Generator(config, params, source_sha256=f"random-{seed}", minibatch=minibatch)
    z = np.random.RandomState(seed).randn(512, config.latent_size)
    G.params["dlatent_avg"] = G.mapping(z)[:, 0].mean(axis=0).astype(np.float32)
    return G
