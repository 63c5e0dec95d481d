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
    #: float32 (S, S) in [0, 1]: the face mask the encoder's loss used (None without --face-mask)
    mask: np.ndarray | None = None

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
    landmarks: np.ndarray | None = None  # (68, 2) in the aligned image; None: not known (--aligned)


class Session:
    """Models loaded once and photos remembered, for any number of predictions.

    model: registry name or path of the generator (official .pkl or our .npz), or "builtin";
    None: FFHQ when cached, else the built-in model (babygan.model_choice.choose_model).
    directions_dir: a folder of ``<name>.npy`` files used instead of the registry's.
    encoder: the encoder's settings; None = its defaults.
    aligned: the photos are aligned crops already (square): resized, not aligned.
    precision: "fp32" or "bf16" (see babygan/precision.py), for the generator.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        directions_dir: str | Path | None = None,
        encoder: EncoderSettings | None = None,
        offline: bool = False,
        progress: bool = True,
        use_cache: bool = True,
        aligned: bool = False,
        precision: str = "fp32",
    ) -> None:
        from babygan.model_choice import choose_model

        self.model = choose_model(model)
        self._model_path: Path | None = None
        self._own_directions: Path | bool | None = False  # False: not looked up yet
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
            from babygan.models import resolve_model_file
            from babygan.stylegan import load_generator

            log.info("loading generator %s", self.model)
            self._model_path = resolve_model_file(self.model, offline=self.offline)
            G = load_generator(self._model_path, offline=self.offline, precision=self.precision)
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

    @property
    def own_directions(self) -> Path | None:
        """The model's own directions folder (its info names one: the built-in model), else None."""
        if self._own_directions is False:
            from babygan.model_choice import own_directions_dir

            G = self.generator
            path = self._model_path  # None: a generator given to the session, not read from a file
            self._own_directions = None if path is None else own_directions_dir(G.info, path)
        assert not isinstance(self._own_directions, bool)
        return self._own_directions

    def direction_names(self) -> list[str] | None:
        """The directions this run can use when they come from a folder (--directions or the
        model's own); None when they come from the registry."""
        from babygan.model_choice import direction_names

        folder = self.directions_dir or self.own_directions
        return None if folder is None else direction_names(folder)

    def _direction_path(self, name: str) -> Path:
        filename = name if name.endswith(".npy") else f"{name}.npy"
        if self.directions_dir is not None:
            path = self.directions_dir / filename
            if not path.is_file():
                raise ModelFileError(f"{path}: direction file not found in --directions folder")
            return path
        own = self.own_directions
        if own is not None:
            if not (own / filename).is_file():
                from babygan.model_choice import missing_directions_error

                raise missing_directions_error(self.model, own, [filename.removesuffix(".npy")])
            return own / filename
        from babygan.models import resolve_model_file

        return resolve_model_file(filename, offline=self.offline)

    def preflight(self, directions: Sequence[str] = ()) -> None:
        """Before a run: every file it needs from the registry present, or one error naming all.

        directions: the direction names the run will use (e.g. ``("age", "smile")``). The
        generator, the directions from the registry and the encoder's VGG16 weights and
        estimator are fetched (online) or, when missing offline, listed in one error with
        their sizes and where to save them. Directions of a model with its own (the built-in
        one) are checked against its folder, all missing ones named in one line.
        """
        from babygan import models
        from babygan.model_choice import is_builtin, missing_directions_error

        def registry_name(name: str) -> str | None:
            if is_builtin(name) or Path(name).expanduser().is_file():
                return None
            try:
                return models.lookup(name).name
            except ModelFileError:
                return None

        names: list[str] = []
        model = registry_name(self.model)
        if model is not None:
            names.append(model)
        wanted = [d.removesuffix(".npy") for d in directions]
        if wanted and self.directions_dir is None:
            own = None if model is not None else self.own_directions
            if own is not None:
                missing = [d for d in wanted if not (own / f"{d}.npy").is_file()]
                if missing:
                    raise missing_directions_error(self.model, own, missing)
            else:
                names += [n for d in wanted if (n := registry_name(f"{d}.npy")) is not None]
        hint = ""
        if self.encoder.perceptual == "vgg16":
            vgg16 = registry_name(self.encoder.vgg16_weights)
            if vgg16 is not None:
                names.append(vgg16)
                hint = (
                    " (the VGG16 perceptual loss needs its file; or encode without it, with nothing "
                    "to download: --perceptual identity, or --perceptual pixel)"
                )
        if self.encoder.estimator:
            estimator = registry_name(self.encoder.estimator)
            if estimator is not None:
                names.append(estimator)
        models.ensure_files(names, offline=self.offline, hint=hint)

    # -- provenance ------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        """What a run used, for its records: the model, the directions loaded so far, the encoder."""
        from babygan.model_choice import crop_of

        G = self.generator
        return {
            "model": {
                "name": self.model,
                "sha256": getattr(G, "source_sha256", None),
                "resolution": int(G.resolution),
                "num_layers": int(G.num_layers),
                "w_dim": int(G.w_dim),
                "crop": crop_of(G.info),
                # what the file says of itself ("name" is taken: the name the model was asked by)
                **{new: G.info[k] for k, new in (("name", "title"), ("licence", "licence")) if k in G.info},
                "directions_from": self._directions_source(),
            },
            "directions": {name: meta for name, (_, meta) in self._directions.items()},
            "encoder": self._encoder_record(),
        }

    def _encoder_record(self) -> dict[str, Any]:
        """The encoder's settings; an --init file also by its SHA-256."""
        record = dataclasses.asdict(self.encoder)
        if self.encoder.init_file is not None:
            from babygan.models import sha256_file

            path = Path(self.encoder.init_file).expanduser()
            record["init_sha256"] = sha256_file(path) if path.is_file() else None
        return record

    def _directions_source(self) -> str:
        if self.directions_dir is not None:
            return str(self.directions_dir)
        return "model" if self.own_directions is not None else "registry"

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
            images = np.stack([ready[k].image for k in new])
            masks = self._masks(images, [ready[k].landmarks for k in new])
            w = self._encode(images, masks)
            for j, (key, wi) in enumerate(zip(new, w, strict=True)):
                a = ready[key]
                mask = None if masks is None else masks[j]
                self._parents[key] = Parent(key[0], a.sha256, a.face, a.faces_found, a.image, wi, mask)
        return [self._parents[key] for key in keys]

    @property
    def crop_scale(self) -> float:
        """The scale of the FFHQ crop the generator records (1.0: FFHQ's own); photos are aligned so."""
        from babygan.model_choice import crop_scale

        return crop_scale(self.generator.info, self.model)

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
        found = align_photo(path, output_size=res, face=face, crop_scale=self.crop_scale)
        image = np.asarray(found.image, np.uint8)
        from babygan.encoder.mask import aligned_landmarks

        landmarks = aligned_landmarks(found.face.landmarks, res, self.crop_scale)  # align_photo's crop
        return _Aligned(image, sha256_file(path), int(found.index), int(found.num_faces), landmarks)

    def _masks(self, images: np.ndarray, landmarks: list[np.ndarray | None]) -> np.ndarray | None:
        """float32 (N, S, S) face masks with --face-mask (landmarks found when aligning the
        photo; looked for with dlib where not known), else None."""
        if not self.encoder.face_mask:
            return None
        from babygan.encoder.mask import masks_for

        return masks_for(images, self.encoder.mask_scale, landmarks)

    def _encode(self, images: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """uint8 (N, S, S, 3) aligned images -> (N, L, w_dim) float32: the one call into the encoder."""
        if self._encoder is None:
            from babygan.encoder import Encoder

            self._encoder = Encoder(self.generator, self.encoder, offline=self.offline)
        w = self._encoder.encode_cached(images, masks=masks, use_cache=self.use_cache, progress=self.progress)
        return np.asarray(w, np.float32)

    def reconstructions(self, parents: Sequence[Parent]) -> np.ndarray:
        """uint8 (N, R, R, 3): the generator's render of each parent's dlatents; with --composite,
        merged into the aligned photo outside the face mask (the photo's hair and background)."""
        images = self.render(np.stack([p.dlatents for p in parents]))
        if not self.encoder.composite:
            return images
        from babygan.encoder.mask import composite, masks_for

        out = images.copy()
        for i, p in enumerate(parents):
            mask = p.mask
            if mask is None:  # encoded without --face-mask: the face is looked for now
                mask = masks_for(p.aligned[None], self.encoder.mask_scale)[0]
            out[i] = composite(images[i : i + 1], p.aligned[None], mask[None], self.encoder.composite_blur)[0]
        return out

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
    from babygan.photo import load_photo
    from babygan.render import resize

    image = load_photo(path)
    h, w = image.shape[:2]
    if h != w:
        raise BabyganError(
            f"{path}: an aligned photo must be square, this one is {w}x{h} (drop --aligned to align it)"
        )
    return resize(image, size)
