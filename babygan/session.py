"""The session: models loaded once, each photo aligned and encoded once, a run's provenance.

A ``Session`` holds what is expensive (the generator, the directions, the face describer,
every photo already aligned and encoded), so that a batch over many pairs loads each model
once and aligns/encodes each distinct photo once. Everything is loaded when first needed:
making a Session imports nothing heavy.

    session = Session("ffhq")
    dad, mum = session.parents([("dad.jpg", None), ("mum.jpg", None)])   # Parent each
    dad.dlatents                                                          # (L, w_dim) float32

The encoder is called in one place, :meth:`Session._encode`.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babygan import latent
from babygan.errors import BabyganError, ModelFileError

if TYPE_CHECKING:
    from babygan.encoder import Encoder
    from babygan.encoder.settings import EncoderSettings
    from babygan.resemblance import Descriptor, FaceDescriber
    from babygan.stylegan import Generator

log = logging.getLogger("babygan")

#: a photo as the session knows it: its resolved path and the face asked for (None: the largest)
PhotoKey = tuple[Path, int | None]


@dataclass(frozen=True)
class Parent:
    """One parent photo, aligned and encoded."""

    path: Path
    sha256: str
    face: int  # which face of the photo, 1-based from the left (the largest unless one was asked for)
    faces_found: int
    aligned: np.ndarray  # uint8 (S, S, 3), S = the generator's resolution
    dlatents: np.ndarray  # (L, w_dim) float32

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "face": self.face,
            "faces_found": self.faces_found,
        }


@dataclass(frozen=True)
class _Aligned:
    image: np.ndarray  # uint8 (S, S, 3)
    sha256: str  # of the photo file
    face: int
    faces_found: int


class Session:
    """Models loaded once and photos remembered, for any number of predictions.

    model: registry name or path of the generator (official .pkl or our .npz).
    directions_dir: a folder of ``<name>.npy`` files used instead of the registry's.
    encoder: the encoder's settings; None = its defaults.
    aligned: the photos are aligned crops already (square): resized, not aligned.
    precision: "fp32" or "bf16" (see babygan/precision.py), for the generator.
    """

    def __init__(
        self,
        model: str | Path = "ffhq",
        *,
        directions_dir: str | Path | None = None,
        encoder: EncoderSettings | None = None,
        offline: bool = False,
        progress: bool = True,
        use_cache: bool = True,
        aligned: bool = False,
        precision: str = "fp32",
    ) -> None:
        self.model = str(model)
        self.directions_dir = Path(directions_dir) if directions_dir is not None else None
        if self.directions_dir is not None and not self.directions_dir.is_dir():
            raise BabyganError(f"{self.directions_dir}: directions folder not found")
        if encoder is None:
            from babygan.encoder.settings import EncoderSettings

            encoder = EncoderSettings()
        self.encoder = encoder
        self.offline = offline
        self.progress = progress
        self.use_cache = use_cache
        self.aligned = aligned
        self.precision = precision
        self._generator: Generator | None = None
        self._encoder: Encoder | None = None  # built at the first encode
        self._directions: dict[str, tuple[np.ndarray, dict[str, str]]] = {}
        # The two memos of parents(): each photo's alignment (or why it failed), and its encoding.
        self._aligned: dict[PhotoKey, _Aligned | str] = {}
        self._parents: dict[PhotoKey, Parent] = {}
        self._describer: FaceDescriber | None = None
        self._descriptors: dict[PhotoKey, Descriptor] = {}

    # -- generator -------------------------------------------------------------

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            from babygan.stylegan import load_generator

            log.info("loading generator %s", self.model)
            G = load_generator(self.model, offline=self.offline, precision=self.precision)
            # Build the networks now, eagerly: built first inside the encoder's compiled step,
            # their constants would belong to that step's graph and fail on later use.
            _ = getattr(G, "nets", None)
            self._generator = G
        return self._generator

    def render(self, dlatents: np.ndarray, *, noise: str = "const", seed: int | None = None) -> np.ndarray:
        """``(N, L, w_dim)`` float32 -> ``uint8 (N, R, R, 3)`` at the generator's resolution."""
        from babygan.stylegan import to_uint8

        kwargs: dict[str, Any] = {"noise": noise}
        if seed is not None:
            kwargs["seed"] = seed
        return to_uint8(self.generator.synthesis(np.asarray(dlatents, np.float32), **kwargs))

    # -- directions ------------------------------------------------------------

    def direction(self, name: str) -> np.ndarray:
        """The named direction, checked against the generator: ``(L, w_dim)`` float32."""
        if name not in self._directions:
            path = self._direction_path(name)
            try:
                arr = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ModelFileError(f"{path}: not a readable .npy direction file ({exc})") from exc
            G = self.generator
            arr = latent.check_direction(arr, int(G.num_layers), int(G.w_dim), name=str(path))
            from babygan.models import cached_sha256  # a model file: hashed once, remembered across runs

            self._directions[name] = (arr, {"path": str(path), "sha256": cached_sha256(path)})
        return self._directions[name][0]

    def _direction_path(self, name: str) -> Path:
        filename = name if name.endswith(".npy") else f"{name}.npy"
        if self.directions_dir is not None:
            path = self.directions_dir / filename
            if not path.is_file():
                raise ModelFileError(f"{path}: direction file not found in --directions folder")
            return path
        from babygan.models import resolve_model_file

        return resolve_model_file(filename, offline=self.offline)

    # -- provenance ------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        """What a run used, for its records: the model, the directions loaded so far, the encoder."""
        G = self.generator
        return {
            "model": {
                "name": self.model,
                "sha256": getattr(G, "source_sha256", None),
                "resolution": int(G.resolution),
                "num_layers": int(G.num_layers),
                "w_dim": int(G.w_dim),
            },
            "directions": {name: meta for name, (_, meta) in self._directions.items()},
            "encoder": dataclasses.asdict(self.encoder),
        }

    # -- parents ---------------------------------------------------------------

    def parents(self, photos: Sequence[tuple[str | Path, int | None]]) -> list[Parent]:
        """Align and encode the photos not seen before (new ones encoded together); remembered.

        photos: ``(path, face index or None)`` pairs. Every photo is aligned first, and if
        one fails its error is raised before any (slow) encode; the aligned ones are kept
        for later. A failure is remembered as its message, so a bad photo costs nothing twice.
        """
        keys: list[PhotoKey] = [(Path(p).expanduser().resolve(), face) for p, face in photos]
        for key in dict.fromkeys(keys):
            if key not in self._aligned:
                try:
                    self._aligned[key] = self._align(*key)
                except BabyganError as exc:
                    self._aligned[key] = str(exc)
        ready: dict[PhotoKey, _Aligned] = {}
        for key in keys:
            found = self._aligned[key]
            if isinstance(found, str):
                raise BabyganError(found)
            ready[key] = found
        new = [k for k in ready if k not in self._parents]
        if new:
            w = self._encode(np.stack([ready[k].image for k in new]))
            for key, wi in zip(new, w, strict=True):
                a = ready[key]
                self._parents[key] = Parent(key[0], a.sha256, a.face, a.faces_found, a.image, wi)
        return [self._parents[key] for key in keys]

    def _align(self, path: Path, face: int | None) -> _Aligned:
        """The photo at the generator's resolution: FFHQ-aligned, or resized when ``aligned``."""
        from babygan.models import sha256_file

        if not path.is_file():
            raise BabyganError(f"{path}: no such file")
        res = int(self.generator.resolution)
        if self.aligned:
            if face is not None:
                raise BabyganError(f"{path}: an aligned photo holds one face; no face {face} to choose")
            return _Aligned(_load_aligned(path, res), sha256_file(path), 1, 1)
        from babygan.align import align_photo

        log.info("aligning %s", path.name)
        found = align_photo(path, output_size=res, face=face)
        image = np.asarray(found.image, np.uint8)
        return _Aligned(image, sha256_file(path), int(found.index), int(found.num_faces))

    def _encode(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, S, S, 3) aligned images -> (N, L, w_dim) float32: the one call into the encoder."""
        if self._encoder is None:
            from babygan.encoder import Encoder

            self._encoder = Encoder(self.generator, self.encoder, offline=self.offline)
        w = self._encoder.encode_cached(images, use_cache=self.use_cache, progress=self.progress)
        return np.asarray(w, np.float32)

    # -- resemblance -----------------------------------------------------------

    def resemblance(self, child: np.ndarray, father: Parent, mother: Parent) -> dict[str, Any]:
        """Face-descriptor distances from ``child`` (uint8 (H, W, 3)) to each parent's aligned photo."""
        from babygan import resemblance as rs

        if self._describer is None:
            self._describer = rs.FaceDescriber()
        descs = []
        for who, parent in (("father", father), ("mother", mother)):
            key = (parent.path, parent.face)
            if key not in self._descriptors:
                self._descriptors[key] = self._describer.describe(parent.aligned, f"{who}'s aligned photo")
            descs.append(self._descriptors[key])
        return rs.resemblance(self._describer, child, descs[0], descs[1])


def _load_aligned(path: Path, size: int) -> np.ndarray:
    """An already aligned photo as uint8 (size, size, 3); it must be square (resized with Lanczos)."""
    from babygan.align import load_photo
    from babygan.render import resize

    image = load_photo(path)
    h, w = image.shape[:2]
    if h != w:
        raise BabyganError(
            f"{path}: an aligned photo must be square, this one is {w}x{h} (drop --aligned to align it)"
        )
    return resize(image, size)
