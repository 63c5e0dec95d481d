"""The Generator: numpy in, numpy out, over the keras.ops networks; plus our safe file format."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from babygan.atomic import atomic_path
from babygan.backend.graph_store import GraphStore
from babygan.errors import ModelFileError
from babygan.precision import check_precision, compute_dtype
from babygan.stylegan.config import GeneratorConfig

NoiseMode = Literal["const", "random"]

NPZ_FORMAT = "babygan-stylegan1"
NPZ_VERSION = 1
_META_KEY = "__babygan_meta__"


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float (N, H, W, C) in [-1, 1] -> uint8 (N, H, W, C), as the official convert.

    (x + 1) * 127.5 rounded half up, clipped to [0, 255] (the official code adds 0.5 and
    truncates with a saturating cast, which is the same).
    """
    x = np.asarray(images, dtype=np.float32) * np.float32(127.5) + np.float32(128.0)
    return np.clip(np.floor(x), 0, 255).astype(np.uint8)


def truncate(w: np.ndarray, dlatent_avg: np.ndarray, psi: float, cutoff: int | None) -> np.ndarray:
    """The truncation trick: layers < cutoff move toward dlatent_avg by psi; others are kept.

    w float32 (N, L, D). psi 1.0 or cutoff None/<= 0 = no truncation (w returned as is),
    like the official G_style.
    """
    if psi == 1 or cutoff is None or cutoff <= 0:
        return w
    coefs = np.where(np.arange(w.shape[1]) < cutoff, np.float32(psi), np.float32(1.0)).astype(np.float32)
    avg = dlatent_avg.astype(np.float32)
    # official tflib.lerp(a, b, t) = a + (b - a) * t, applied to every layer
    return (avg + (w - avg) * coefs[None, :, None]).astype(np.float32)


def _default_minibatch(config: GeneratorConfig) -> int:
    # Bound the largest activation of a minibatch to about 2**25 floats (128 MB).
    per_image = max(
        config.layer_resolution(i) ** 2 * config.layer_channels(i) for i in range(config.num_layers)
    )
    return int(np.clip(2**25 // per_image, 1, 64))


class _Runtime:
    """A generator's parameters as backend tensors and its compiled functions (built on first use)."""

    def __init__(
        self, config: GeneratorConfig, params: dict[str, np.ndarray], dtype: str, graphs: GraphStore | None
    ) -> None:
        from babygan import backend

        backend.ensure_started()  # before Keras is first imported (the Python API's first model)
        from keras import ops

        from babygan.stylegan import image_encoder, network

        def jit(fn: Any, what: str) -> Any:
            # the weights are arguments: the architecture and the dtype make the graph
            return backend.jit(fn, store=graphs, owner=f"generator {what}\n{config!r}\n{dtype}")

        self.params = {n: ops.convert_to_tensor(a) for n, a in params.items()}
        self.encode = jit(lambda p, x: image_encoder.encode(p, x, config, compute_dtype=dtype), "encode")
        self.mapping = jit(lambda p, z: network.mapping(p, z, config), "mapping")
        # The weights are fixed here: scale, transpose and cast the kernels once, not per render.
        prepare = jit(lambda p: network.prepare_synthesis(p, config, compute_dtype=dtype), "prepare")
        self.prepared = prepare(self.params)
        self.synthesis_stored_noise = jit(
            lambda p, w: network.synthesis_prepared(p, w, config, None, compute_dtype=dtype), "synthesis"
        )
        self.synthesis = jit(
            lambda p, w, noises: network.synthesis_prepared(p, w, config, noises, compute_dtype=dtype),
            "synthesis with noises",
        )


class Generator:
    """A StyleGAN (v1) generator. Build it with ``load_generator`` or ``random_generator``.

    Attributes: ``config`` (GeneratorConfig), ``params`` (name -> float32 array, our NHWC
    layout, unscaled as stored officially), ``resolution``, ``num_layers``, ``z_dim``,
    ``w_dim``, ``dlatent_avg`` (w_dim,) float32 (a linear-mapping model: (num_layers, w_dim)),
    ``has_encoder`` (the file carries E, see ``encode_faces``), ``source_sha256``, ``precision``
    ("fp32" or "bf16": the compute precision of synthesis; arrays in and out are float32),
    ``info`` (what the model file says of itself, JSON-safe: e.g. ``{"crop": {"recipe": "ffhq",
    "scale": 0.7}, "name": ..., "licence": ...}``; empty for official pickles), ``graphs``
    (where its compiled functions' traced graphs are looked up and kept, or None).
    """

    def __init__(
        self,
        config: GeneratorConfig,
        params: dict[str, np.ndarray],
        *,
        source_sha256: str,
        minibatch: int | None = None,
        precision: str = "fp32",
        info: dict[str, Any] | None = None,
        graphs: GraphStore | None = None,
    ) -> None:
        expected = config.param_shapes()
        missing = [n for n in expected if n not in params]
        extra = [n for n in params if n not in expected]
        if missing or extra:
            raise ValueError(
                f"parameters do not fit the config: missing {missing[:3]}, unexpected {extra[:3]}"
            )
        for name, shape in expected.items():
            if tuple(params[name].shape) != shape:
                raise ValueError(f"{name}: shape {params[name].shape}, expected {shape}")
        self.config = config
        self.params = {n: np.ascontiguousarray(params[n], dtype=np.float32) for n in expected}
        self.source_sha256 = source_sha256
        self.minibatch = minibatch or _default_minibatch(config)
        self.precision = check_precision(precision)
        self.info: dict[str, Any] = dict(info or {})
        self.graphs = graphs
        self._runtime: _Runtime | None = None

    def with_precision(self, precision: str) -> Generator:
        """The same weights computing in another precision ("fp32" or "bf16"); self when unchanged."""
        if precision == self.precision:
            return self
        return self._copy(precision, self.graphs)

    def with_graphs(self, graphs: GraphStore | None) -> Generator:
        """The same generator whose compiled functions use the graph store ``graphs``; self when unchanged."""
        if graphs is self.graphs:
            return self
        return self._copy(self.precision, graphs)

    def _copy(self, precision: str, graphs: GraphStore | None) -> Generator:
        return Generator(
            self.config,
            self.params,
            source_sha256=self.source_sha256,
            minibatch=self.minibatch,
            precision=precision,
            info=self.info,
            graphs=graphs,
        )

    # ------------------------------------------------------------------ sizes

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def z_dim(self) -> int:
        return self.config.latent_size

    @property
    def w_dim(self) -> int:
        return self.config.dlatent_size

    @property
    def num_channels(self) -> int:
        return self.config.num_channels

    @property
    def dlatent_avg(self) -> np.ndarray:
        return self.params["dlatent_avg"]  # (w_dim,) or, linear mapping, (num_layers, w_dim) float32

    @property
    def has_encoder(self) -> bool:
        """Whether the model carries E, its own image encoder (babygan's built-in model does)."""
        return self.config.image_encoder

    def __repr__(self) -> str:
        return (
            f"Generator(resolution={self.resolution}, num_layers={self.num_layers}, z_dim={self.z_dim}, "
            f"w_dim={self.w_dim}, source_sha256={self.source_sha256[:12]!r})"
        )

    @property
    def compute_dtype(self) -> str:
        """ "float32" or "bfloat16": the dtype network.synthesis computes in for this generator."""
        return compute_dtype(self.precision)

    @property
    def runtime(self) -> _Runtime:
        """Backend tensors and compiled functions, built on first use (Keras is imported then)."""
        if self._runtime is None:
            self._runtime = _Runtime(self.config, self.params, self.compute_dtype, self.graphs)
        return self._runtime

    @property
    def tensors(self) -> dict[str, Any]:
        """The parameters as backend tensors, for network.mapping / network.synthesis in a caller's graph."""
        return self.runtime.params

    @property
    def prepared(self) -> dict[str, Any]:
        """``network.prepare_synthesis`` of the parameters in this generator's compute dtype, made
        once: for network.synthesis_prepared in a caller's graph that never changes the weights."""
        return self.runtime.prepared

    # ------------------------------------------------------------------ numpy API

    def mapping(
        self, z: np.ndarray, truncation_psi: float = 1.0, truncation_cutoff: int | None = 8
    ) -> np.ndarray:
        """z float (N, z_dim) -> w float32 (N, num_layers, w_dim).

        Truncation (psi toward ``dlatent_avg`` for layers < cutoff) as the official G_style;
        the default psi 1.0 means none.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (N, {self.z_dim}), not {z.shape}")
        from keras import ops

        rt = self.runtime
        out = [ops.convert_to_numpy(rt.mapping(rt.params, z[i : i + 1024])) for i in range(0, len(z), 1024)]
        w = np.concatenate(out) if out else np.zeros((0, self.num_layers, self.w_dim), np.float32)
        return truncate(w, self.dlatent_avg, truncation_psi, truncation_cutoff)

    def synthesis(self, w: np.ndarray, noise: NoiseMode = "const", seed: int | None = None) -> np.ndarray:
        """w float (N, num_layers, w_dim) -> images float32 (N, H, W, C), raw output (~[-1, 1] when trained).

        ``noise="const"``: the stored per-layer noise (official ``randomize_noise=False``).
        ``noise="random"``: fresh noise; with a ``seed`` image i of the batch always gets the
        same noise (drawn from ``numpy.random.default_rng([seed, i])``), whatever the minibatch.
        Large batches run in minibatches of ``self.minibatch``.
        """
        w = self._check_w(w)
        if noise not in ("const", "random"):
            raise ValueError(f"noise must be 'const' or 'random', not {noise!r}")
        if noise == "random" and seed is None:
            seed = int(np.random.SeedSequence().entropy % (2**63))
        from keras import ops

        rt = self.runtime
        out = []
        for start in range(0, len(w), self.minibatch):
            chunk = w[start : start + self.minibatch]
            if noise == "const" or not self.config.use_noise:
                images = rt.synthesis_stored_noise(rt.prepared, chunk)
            else:
                images = rt.synthesis(rt.prepared, chunk, self._random_noise(seed, start, len(chunk)))
            out.append(ops.convert_to_numpy(images))
        if not out:
            r = self.resolution
            return np.zeros((0, r, r, self.num_channels), np.float32)
        return np.concatenate(out)

    def run(
        self,
        z: np.ndarray,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = 8,
        noise: NoiseMode = "const",
        seed: int | None = None,
    ) -> np.ndarray:
        """z (N, z_dim) -> images float32 (N, H, W, C): mapping, truncation, synthesis."""
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise=noise, seed=seed)

    def encode_faces(self, faces: np.ndarray) -> np.ndarray:
        """E's codes of aligned faces: uint8 (N, R, R, 3) at this model's crop and size -> w float32
        (N, num_layers, w_dim). Only for a model that carries E (``has_encoder``)."""
        if not self.has_encoder:
            raise ValueError("this model carries no image encoder")
        faces = np.asarray(faces)
        r = self.resolution
        if faces.ndim != 4 or faces.shape[1:] != (r, r, 3):
            raise ValueError(f"faces must have shape (N, {r}, {r}, 3), not {faces.shape}")
        from keras import ops

        rt = self.runtime
        x = faces.astype(np.float32) / np.float32(127.5) - np.float32(1.0)  # uint8 -> [-1, 1]
        out = [ops.convert_to_numpy(rt.encode(rt.params, x[i : i + 64])) for i in range(0, len(x), 64)]
        return (
            np.concatenate(out).astype(np.float32)
            if out
            else np.zeros((0, self.num_layers, self.w_dim), np.float32)
        )

    def _check_w(self, w: np.ndarray) -> np.ndarray:
        w = np.asarray(w, dtype=np.float32)
        if w.ndim != 3 or w.shape[1:] != (self.num_layers, self.w_dim):
            raise ValueError(f"w must have shape (N, {self.num_layers}, {self.w_dim}), not {w.shape}")
        return w

    def _random_noise(self, seed: int, start: int, n: int) -> list[np.ndarray]:
        from babygan.stylegan.network import noise_shapes

        shapes = noise_shapes(self.config)
        per_image = []
        for i in range(start, start + n):
            rng = np.random.default_rng([seed, i])
            per_image.append([rng.standard_normal((h, wd, 1), dtype=np.float32) for h, wd in shapes])
        return [np.stack([img[k] for img in per_image]) for k in range(len(shapes))]

    # ------------------------------------------------------------------ our file format

    def save(
        self, path: str | os.PathLike[str], *, storage: Literal["float32", "float16"] = "float32"
    ) -> Path:
        """Write our safe format: an .npz of arrays plus the config as JSON (no pickle).

        ``storage="float16"`` halves the file (the built-in model ships so); reading gives float32.
        """
        path = Path(path)
        meta = {
            "format": NPZ_FORMAT,
            "version": NPZ_VERSION,
            "config": self.config.to_dict(),
            "source_sha256": self.source_sha256,
            "info": self.info,
        }
        arrays = {n: a.astype(storage) for n, a in self.params.items()}
        arrays[_META_KEY] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        return path


def read_npz(path: str | os.PathLike[str]) -> tuple[GeneratorConfig, dict[str, np.ndarray], dict[str, Any]]:
    """Read our format -> (config, params, meta). Never unpickles; one-line ModelFileError on problems."""
    path = Path(path)
    name = path.name
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _META_KEY not in npz.files:
                raise ModelFileError(f"{name}: not a babygan generator file (no metadata)")
            meta = json.loads(npz[_META_KEY].tobytes().decode("utf-8"))
            if meta.get("format") != NPZ_FORMAT or meta.get("version") != NPZ_VERSION:
                raise ModelFileError(f"{name}: not a babygan generator file of a known version")
            config = GeneratorConfig.from_dict(meta["config"])
            expected = config.param_shapes()
            names = [n for n in npz.files if n != _META_KEY]
            missing = [n for n in expected if n not in names]
            extra = [n for n in names if n not in expected]
            if missing or extra:
                raise ModelFileError(
                    f"{name}: arrays do not fit its config (missing {missing[:3]}, unexpected {extra[:3]})"
                )
            params = {}
            for n, shape in expected.items():
                a = npz[n]
                if a.dtype not in (np.float32, np.float16) or a.shape != shape:
                    raise ModelFileError(
                        f"{name}: array {n} is {a.dtype} {a.shape}, expected float32 or float16 {shape}"
                    )
                params[n] = a.astype(np.float32)
    except ModelFileError:
        raise
    except OSError as exc:
        raise ModelFileError(f"{name}: cannot read: {exc}") from exc
    except Exception as exc:  # zip/JSON/config errors: a corrupt or foreign file
        raise ModelFileError(
            f"{name}: not a valid babygan generator file ({type(exc).__name__}: {exc})"
        ) from exc
    return config, params, meta
