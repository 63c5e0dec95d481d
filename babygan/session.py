"""The session: models loaded once, each photo aligned and encoded once, a run's provenance.

A ``Session`` holds what is expensive (the generator, the directions, the face describer,
every photo already aligned and encoded), so that a batch over many pairs loads each model
once and aligns/encodes each distinct photo once. Everything is loaded when first needed:
making a Session imports nothing heavy.

    session = Session("ffhq")
    dad, mum = session.parents([("dad.jpg", None), ("mum.jpg", None)])   # Parent each
    dad.dlatents                                                          # (L, w_dim) float32

The encoder is called in one place, :meth:`Session._encode`. What a session measures of a
child (``resemblance``, ``estimate``) it measures with its own models too.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from babygan import attributes, builtin, models
from babygan import resemblance as rs
from babygan.aging import AgeEditor
from babygan.align import Crop
from babygan.align_ahead import FaceSearchAhead
from babygan.anime.model import load_anime_model
from babygan.anime.stylize import AnimeStylizer
from babygan.backend import graph_store
from babygan.directions import LatentDirections, missing_directions_error, own_directions_dir
from babygan.edit_ranges import BUILTIN_RANGES, DEFAULT_RANGES, EditRanges
from babygan.encoder import Encoder
from babygan.encoder.identity_term import IdentityTerm
from babygan.encoder.mask import composite, masks_for
from babygan.encoder.settings import EncoderSettings, settings_for_model
from babygan.errors import BabyganError, ModelFileError
from babygan.latent import Age
from babygan.model_choice import choose_model, is_builtin
from babygan.parents import AlignedPhoto, Parent, PhotoKey, align_parent
from babygan.render import resize
from babygan.stylegan import Generator, load_generator, to_uint8
from babygan.utkface import CROP_SCALE

log = logging.getLogger("babygan")


def _registry_name(name: str) -> str | None:
    """The registry's file name for a model or file name, None for the built-in model and local files."""
    if is_builtin(name) or Path(name).expanduser().is_file():
        return None
    try:
        return models.lookup(name).name
    except ModelFileError:
        return None


class Session:
    """Models loaded once and photos remembered, for any number of predictions.

    model: registry name or path of the generator (official .pkl or our .npz), or "builtin";
    None: FFHQ when cached, else the built-in model (babygan.model_choice.choose_model).
    directions_dir: a folder of ``<name>.npy`` files used instead of the registry's (or the model's own).
    encoder: the encoder's settings, whole; or a dict of the fields chosen (None: none), the rest
    being the model's defaults (``babygan.encoder.settings.model_defaults``: the built-in model
    is encoded with the identity loss and its own E, FFHQ with pbaylies' recipe).
    aligned: the photos are aligned crops already (square): resized, not aligned.
    precision: "fp32" or "bf16" (see babygan/precision.py), for the generator.
    anime_model: the anime model file of ``model`` (babygan.anime); None: the built-in model's
    shipped one, when the model is the built-in one.
    store_graphs: keep the traced TensorFlow graphs of the generator, the encoder, the ager and
    dlib's network under ``$BABYGAN_HOME/graphs``, for later processes (babygan/backend/graph_store.py);
    None: unless $BABYGAN_STORE_GRAPHS is 0.
    faces_ahead: the photos' faces searched already, in another process (babygan/align_ahead.py:
    the CLI starts one before TensorFlow loads); None: searched when each photo is aligned.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        *,
        directions_dir: str | Path | None = None,
        encoder: EncoderSettings | Mapping[str, Any] | None = None,
        offline: bool = False,
        progress: bool = True,
        use_cache: bool = True,
        aligned: bool = False,
        precision: str = "fp32",
        anime_model: str | Path | None = None,
        store_graphs: bool | None = None,
        faces_ahead: FaceSearchAhead | None = None,
    ) -> None:
        self.model = choose_model(model)
        self.directions_dir = Path(directions_dir) if directions_dir is not None else None
        if self.directions_dir is not None and not self.directions_dir.is_dir():
            raise BabyganError(f"{self.directions_dir}: directions folder not found")
        # settings given whole are used as they are; otherwise the model's own defaults
        # (settings_for_model) under the fields the caller chose, settled once the model is known
        self._encoder_settings = encoder if isinstance(encoder, EncoderSettings) else None
        self._encoder_chosen = dict(encoder or {}) if self._encoder_settings is None else {}
        self.offline = offline
        self.progress = progress
        self.use_cache = use_cache
        self.aligned = aligned
        self.precision = precision
        self._generator: Generator | None = None
        self._encoder: Encoder | None = None  # built at the first encode
        self._directions: LatentDirections | None = None  # made with the generator
        # The two memos of parents(): each photo's alignment (or why it failed), and its encoding.
        self._aligned: dict[PhotoKey, AlignedPhoto | str] = {}
        self._parents: dict[PhotoKey, Parent] = {}
        self._describer: rs.Describer | None = None
        self._descriptors: dict[PhotoKey, rs.Descriptor] = {}
        self._attributes: attributes.AttributeModel | str | None = None  # str: why it is not available
        self._ager: AgeEditor | None = None
        self._identity_terms: dict[str, IdentityTerm] = {}  # by precision: the encoder's and the ager's
        self.anime_model = Path(anime_model).expanduser() if anime_model is not None else None
        self._anime: AnimeStylizer | None = None
        keep = graph_store.enabled() if store_graphs is None else store_graphs
        self.graphs = graph_store.GraphStore(models.babygan_home() / "graphs") if keep else None
        #: the photos' faces, searched by a second process while the backend started (the CLI's)
        self.faces_ahead = faces_ahead

    # -- generator and directions ----------------------------------------------

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            log.info("loading generator %s", self.model)
            path = models.resolve_model_file(self.model, offline=self.offline)
            G = load_generator(path, offline=self.offline, precision=self.precision, graphs=self.graphs)
            self._directions = self._directions_of(G, path)
            self._generator = G
        return self._generator

    @property
    def encoder(self) -> EncoderSettings:
        """The encoder's settings: as given, or the model's defaults under the chosen fields (an
        official pickle from the registry has none of its own: pbaylies' recipe, unloaded)."""
        if self._encoder_settings is None:
            if _registry_name(self.model) is not None:
                info, has_e = {}, False
            else:
                info, has_e = self.generator.info, self.generator.has_encoder
            self._encoder_settings = settings_for_model(info, has_e, **self._encoder_chosen)
        return self._encoder_settings

    @property
    def directions(self) -> LatentDirections:
        """The directions this run uses: --directions, else the model's own, else the registry's."""
        _ = self.generator  # the model's own folder is known once its file is read
        assert self._directions is not None  # set with the generator
        return self._directions

    def _directions_of(self, G: Generator, path: Path) -> LatentDirections:
        shape = (int(G.num_layers), int(G.w_dim))
        kw: dict[str, Any] = {"model": self.model, "shape": shape, "offline": self.offline}
        if self.directions_dir is not None:
            return LatentDirections("folder", self.directions_dir, **kw)
        own = own_directions_dir(G.info, path)
        return (
            LatentDirections("registry", None, **kw) if own is None else LatentDirections("model", own, **kw)
        )

    @property
    def edit_ranges(self) -> EditRanges:
        """The valid range of each edit for the model that runs (babygan/edit_ranges.py): the
        built-in model's own with its own directions, else babygan's defaults (age 0..80 years);
        ages in years: those its age calibration reaches, where its directions have one."""
        ranges = BUILTIN_RANGES if is_builtin(self.model) and self.directions_dir is None else DEFAULT_RANGES
        if self.directions_dir is None and _registry_name(self.model) is not None:
            return ranges  # the registry's directions (BabyGAN's) carry no calibration
        calibration = self.directions.age_calibration()
        if calibration is None:
            return ranges
        # the ages the model's calibration reaches (scripts/calibrate_ages.py measured them)
        return dataclasses.replace(ranges, age=calibration.years_range)

    @property
    def crop(self) -> Crop:
        """The crop the generator records (FFHQ's when none); photos are aligned so."""
        return Crop.from_dict(self.generator.info.get("crop"), f"{self.model}: the model's crop")

    def synthesize(
        self, dlatents: np.ndarray, *, noise: str = "const", seed: int | None = None
    ) -> np.ndarray:
        """``(N, L, w_dim)`` float32 -> ``uint8 (N, R, R, 3)`` at the generator's resolution."""
        kwargs: dict[str, Any] = {"noise": noise}
        if seed is not None:
            kwargs["seed"] = seed
        return to_uint8(self.generator.synthesis(np.asarray(dlatents, np.float32), **kwargs))

    def preflight(self, directions: Sequence[str] = ()) -> None:
        """Before a run: every file it needs from the registry present, or one error naming all.

        directions: the direction names the run will use (e.g. ``("age", "smile")``). The
        generator, the directions from the registry and the encoder's VGG16 weights and
        estimator are fetched (online) or, when missing offline, listed in one error with
        their sizes and where to save them. Directions of a model with its own (the built-in
        one) are checked against its folder, all missing ones named in one line.
        """

        names: list[str] = []
        model = _registry_name(self.model)
        if model is not None:
            names.append(model)
        wanted = [d.removesuffix(".npy") for d in directions]
        if wanted and self.directions_dir is None:
            # a registry model has no folder of its own: its directions are fetched with it
            own = None if model is not None else self.directions
            if own is not None and own.folder is not None:
                missing = own.missing(wanted)
                if missing:
                    raise missing_directions_error(self.model, own.folder, missing)
            else:
                names += [n for d in wanted if (n := _registry_name(f"{d}.npy")) is not None]
        hint = ""
        if self.encoder.perceptual == "vgg16":
            vgg16 = _registry_name(self.encoder.vgg16_weights)
            if vgg16 is not None:
                names.append(vgg16)
                hint = (
                    " (the VGG16 perceptual loss needs its file; or encode without it, with nothing "
                    "to download: --perceptual identity, or --perceptual pixel)"
                )
        if self.encoder.estimator:
            estimator = _registry_name(self.encoder.estimator)
            if estimator is not None:
                names.append(estimator)
        models.ensure_files(names, offline=self.offline, hint=hint)

    # -- anime -------------------------------------------------------------------

    @property
    def anime(self) -> AnimeStylizer:
        """The generator's anime model (babygan/anime), loaded once: ``anime_model``, else the
        built-in model's shipped one; a model with none is a one-line error."""
        if self._anime is None:
            path = self._anime_path()
            found = load_anime_model(path, self.generator)
            found = dataclasses.replace(found, generator=found.generator.with_precision(self.precision))
            self._anime = AnimeStylizer(self.generator, found)
        return self._anime

    def _anime_path(self) -> Path:
        if self.anime_model is not None:
            return self.anime_model
        train = "train one with scripts/train_anime.py and pass --anime-model"
        if not is_builtin(self.model):
            raise BabyganError(f"no anime model for {self.model}; {train}")
        path = builtin.builtin_anime_path()  # looked up here: tests replace it
        if not path.is_file():
            raise ModelFileError(f"babygan's anime model is not in this build (no {path}); {train}")
        return path

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
                "crop": self.crop.to_dict(),
                # what the file says of itself ("name" is taken: the name the model was asked by)
                **{new: G.info[k] for k, new in (("name", "title"), ("licence", "licence")) if k in G.info},
                "directions_from": self.directions.described(),
            },
            "directions": self.directions.provenance(),
            "encoder": self._encoder_record(),
        }

    def _encoder_record(self) -> dict[str, Any]:
        """The encoder's settings; an --init file also by its SHA-256."""
        record = dataclasses.asdict(self.encoder)
        if self.encoder.init_file is not None:
            path = Path(self.encoder.init_file).expanduser()
            record["init_sha256"] = models.sha256_file(path) if path.is_file() else None
        return record

    # -- parents ---------------------------------------------------------------

    def parents(
        self, photos: Sequence[tuple[str | Path, int | None]], *, stepping: threading.Event | None = None
    ) -> list[Parent]:
        """Align and encode the photos not seen before (new ones encoded together); remembered.

        photos: ``(path, face index or None)`` pairs. Every photo is aligned first, and if
        one fails its error is raised before any (slow) encode; the aligned ones are kept
        for later. A failure is remembered as its message, so a bad photo costs nothing twice.
        stepping: set once the encoder's step graph is ready (``Encoder.encode``); never set when
        nothing is encoded.
        """
        keys: list[PhotoKey] = [(Path(p).expanduser().resolve(), face) for p, face in photos]
        for key in dict.fromkeys(keys):
            if key not in self._aligned:
                try:
                    self._aligned[key] = self._align(*key)
                except BabyganError as exc:
                    self._aligned[key] = str(exc)
        ready: dict[PhotoKey, AlignedPhoto] = {}
        for key in keys:
            found = self._aligned[key]
            if isinstance(found, str):
                raise BabyganError(found)
            ready[key] = found
        new = [k for k in ready if k not in self._parents]
        if new:
            images = np.stack([ready[k].image for k in new])
            masks = self._masks(images, [ready[k].landmarks for k in new])
            w = self._encode(images, masks, stepping)
            for j, (key, wi) in enumerate(zip(new, w, strict=True)):
                a = ready[key]
                mask = None if masks is None else masks[j]
                self._parents[key] = Parent(key[0], a.sha256, a.face, a.faces_found, a.image, wi, mask)
        return [self._parents[key] for key in keys]

    def _align(self, path: Path, face: int | None) -> AlignedPhoto:
        return align_parent(
            path, face, resolution=int(self.generator.resolution), crop=self.crop,
            aligned=self.aligned, faces_ahead=self.faces_ahead,
        )  # fmt: skip

    def _masks(self, images: np.ndarray, landmarks: list[np.ndarray | None]) -> np.ndarray | None:
        """float32 (N, S, S) face masks with --face-mask (landmarks found when aligning the
        photo; looked for with dlib where not known), else None."""
        if not self.encoder.face_mask:
            return None
        return masks_for(images, self.encoder.mask_scale, landmarks)

    def _encode(
        self, images: np.ndarray, masks: np.ndarray | None = None, stepping: threading.Event | None = None
    ) -> np.ndarray:
        """uint8 (N, S, S, 3) aligned images -> (N, L, w_dim) float32: the one call into the encoder."""
        if self._encoder is None:
            settings = self.encoder
            identity = self.identity_term(settings.precision) if settings.perceptual == "identity" else None
            self._encoder = Encoder(
                self.generator, settings, offline=self.offline, identity=identity, graphs=self.graphs
            )
        if self.encoder.batch_size == 1 and len(images) > 1:
            # one photo at a time all the way (E's guess and the loss targets too, not only the
            # steps): a photo's code must not depend on which photos were new beside it (a batch
            # row's child is the same whichever rows its process ran before, here or on Ray)
            n = len(images)
            one = [(images[i : i + 1], None if masks is None else masks[i : i + 1]) for i in range(n)]
            return np.concatenate([self._encode(im, mk, stepping) for im, mk in one])
        w = self._encoder.encode_cached(
            images, masks=masks, use_cache=self.use_cache, progress=self.progress, stepping=stepping
        )
        return np.asarray(w, np.float32)

    def reconstructions(self, parents: Sequence[Parent]) -> np.ndarray:
        """uint8 (N, R, R, 3): the generator's image of each parent's dlatents; with --composite,
        merged into the aligned photo outside the face mask (the photo's hair and background)."""
        images = self.synthesize(np.stack([p.dlatents for p in parents]))
        if not self.encoder.composite:
            return images
        out = images.copy()
        for i, p in enumerate(parents):
            mask = p.mask
            if mask is None:  # encoded without --face-mask: the face is looked for now
                mask = masks_for(p.aligned[None], self.encoder.mask_scale)[0]
            out[i] = composite(images[i : i + 1], p.aligned[None], mask[None], self.encoder.composite_blur)[0]
        return out

    # -- measuring a child ------------------------------------------------------

    def describe_ahead(self, parents: Sequence[Parent]) -> None:
        """Have the command's dlib process (``faces_ahead``) start on the parents' descriptors
        now, for a later :meth:`resemblance`; nothing without one."""
        if self.faces_ahead is not None:
            for parent in parents:
                if (parent.path, parent.face) not in self._descriptors:
                    self.faces_ahead.describe_ahead(parent.aligned)

    def resemblance(self, child: np.ndarray, father: Parent, mother: Parent) -> dict[str, Any]:
        """Face-descriptor distances from ``child`` (uint8 (H, W, 3)) to each parent's aligned photo."""
        if self._describer is None:
            self._describer = rs.FaceDescriber() if self.faces_ahead is None else self.faces_ahead
        descs = []
        for who, parent in (("father", father), ("mother", mother)):
            key = (parent.path, parent.face)
            if key not in self._descriptors:
                self._descriptors[key] = self._describer.describe(parent.aligned, f"{who}'s aligned photo")
            descs.append(self._descriptors[key])
        return rs.resemblance(self._describer, child, descs[0], descs[1])

    def _attribute_model(self) -> attributes.AttributeModel | str:
        """The attribute network, loaded once; or why it is not available (said once)."""
        if self._attributes is None:
            try:
                self._attributes = attributes.AttributeModel.load(attributes.builtin_path())
            except (ImportError, BabyganError) as exc:
                log.warning("no age/gender estimate in the records: %s", exc)
                self._attributes = str(exc)
        return self._attributes

    def _attribute_crop(self, model: attributes.AttributeModel) -> Crop:
        """The crop the attribute network reads (the built-in model's when its JSON records
        none), never wider than the generator's."""
        ours, theirs = self.crop, model.crop or Crop(scale=CROP_SCALE)
        return theirs if theirs.scale < ours.scale else ours

    # -- ages -------------------------------------------------------------------

    def resolve_age(self, age: Age) -> Age:
        """``age`` with the coefficient it has on this model: years through the model's age
        calibration (babygan/aging.py) where its directions have one; raw coefficients as given."""
        calibration = self.directions.age_calibration()
        if not age.in_years or calibration is None:
            return age
        return age.with_coefficient(calibration.coefficient(age.value))

    @property
    def ager(self) -> AgeEditor | None:
        """What ages a blend while holding its likeness (generator, attribute network and dlib's
        descriptor network, built once); None when the attribute network is not available."""
        if self._ager is None:
            model = self._attribute_model()
            if isinstance(model, str):
                return None
            ratio = self._attribute_crop(model).scale / self.crop.scale
            self._ager = AgeEditor(
                self.generator, model, crop_ratio=ratio, precision=self.precision,
                identity=self.identity_term(self.precision), graphs=self.graphs,
            )  # fmt: skip
        return self._ager

    def identity_term(self, precision: str) -> IdentityTerm:
        """dlib's descriptor network as the encoder's identity loss and the ager's likeness hold
        (``babygan.encoder.identity_term.IdentityTerm``), loaded once per precision: both use
        the same one, so its file is read and its describe function traced once."""
        if precision not in self._identity_terms:
            ahead = self.faces_ahead  # its dlib process finds the landmarks, its models loaded
            find = None if ahead is None else ahead.find_landmarks
            self._identity_terms[precision] = IdentityTerm(precision, graphs=self.graphs, landmarks=find)
        return self._identity_terms[precision]

    def estimate(self, images: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """The attribute network's age and gender of each face (uint8 (S, S, 3), cropped as the
        generator's faces): ``{"age", "p_female", "gender", "attribute_model", "face_crop"}`` each,
        or ``{"unavailable": why}`` each when the network is not installed (said once)."""
        model = self._attribute_model()
        if isinstance(model, str):
            return [{"unavailable": model} for _ in images]
        ours = self.crop
        given = self._attribute_crop(model)
        faces = np.stack([resize(ours.inner(im, given), model.input_size) for im in images])
        ages, p_female = model.predict(faces)
        return [
            {
                "age": round(float(a), 1),
                "p_female": round(float(p), 3),
                "gender": "female" if p >= 0.5 else "male",
                "attribute_model": str(model.path),
                "face_crop": given.to_dict(),  # what the network was given
            }
            for a, p in zip(ages, p_female, strict=True)
        ]
