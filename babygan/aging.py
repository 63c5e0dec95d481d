"""Ages in years that keep the child who they are.

A linear age direction moves every face towards one generic child: the further the move, the
more of the parents' likeness it throws away. babygan ages a face in two parts:

- :class:`AgeCalibration`: years <-> coefficient on a model's age direction, measured (the
  attribute network's mean reading of faces moved along the direction) and kept beside the
  direction as ``age_calibration.json``. Directions without one (BabyGAN's published
  ``age.npy``) keep BabyGAN's own mapping, ``coeff = 6 - years / 5``.
- :class:`AgeEditor`: from the calibrated linear edit, a few Adam steps on the edited layers
  pull the attribute network's reading of the render to the requested age while holding
  dlib's face descriptor of the render at the descriptor of the un-aged blend (the face the
  parents make). Both networks are differentiable keras.ops / Keras models here, so the step
  is one compiled function on every backend.

Arrays: dlatents float32 ``(N, L, w_dim)``; ages float years ``(N,)``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babygan import latent
from babygan.atomic import write_text_atomic
from babygan.backend.graph_store import GraphStore
from babygan.errors import BabyganError, ModelFileError

log = logging.getLogger("babygan")

CALIBRATION_FILE = "age_calibration.json"
CALIBRATION_FORMAT = "babygan-age-calibration-1"
#: ages outside any calibration: BabyGAN's age slider spanned about 0..60, and the attribute
#: network was trained on 0..116; a child predictor has no use for more
DEFAULT_YEARS_RANGE = (0.0, 80.0)
# the attribute network's error scale (held-out MAE ~6 years): the age loss counts in 5-year units
_AGE_UNIT = 5.0
ANCHORS = ("blend", "parents")


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class AgeCalibration:
    """Measured years along one model's age direction.

    coeffs: float (K,) increasing coefficients on the direction (positive = younger);
    years: float (K,) the attribute network's mean reading of faces moved by each, decreasing
    (made so by :meth:`measure`); layers: how many layers the edit moved; years_range: the
    ages ``--age`` accepts for this model (what the edit reaches, requested against read).
    """

    coeffs: tuple[float, ...]
    years: tuple[float, ...]
    layers: int = latent.DEFAULT_EDIT_LAYERS
    years_range: tuple[float, float] = DEFAULT_YEARS_RANGE
    source: str = ""

    def __post_init__(self) -> None:
        c, y = np.asarray(self.coeffs, np.float64), np.asarray(self.years, np.float64)
        if c.ndim != 1 or c.shape != y.shape or len(c) < 2:
            raise BabyganError("an age calibration needs two or more (coefficient, years) points")
        if not (np.all(np.isfinite(c)) and np.all(np.isfinite(y))):
            raise BabyganError("an age calibration holds non-finite values")
        if np.any(np.diff(c) <= 0) or np.any(np.diff(y) >= 0):
            raise BabyganError("an age calibration's years must fall as its coefficients rise")
        lo, hi = (float(v) for v in self.years_range)
        if not lo < hi:
            raise BabyganError(f"an age calibration's range {self.years_range} is empty")

    def coefficient(self, years: float) -> float:
        """The coefficient whose edit the attribute network reads as ``years``: linear between
        measured points, and the end coefficient past either end (where the direction has
        stopped moving the reading, going further only breaks the face; the refinement of
        :class:`AgeEditor` goes the rest of the way)."""
        c = np.asarray(self.coeffs, np.float64)
        y = np.asarray(self.years, np.float64)
        return float(np.interp(float(years), y[::-1], c[::-1]))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": CALIBRATION_FORMAT, **d, "coeffs": list(d["coeffs"]), "years": list(d["years"])}

    @classmethod
    def from_json(cls, data: Any, source: str) -> AgeCalibration:
        if not isinstance(data, dict) or data.get("format") != CALIBRATION_FORMAT:
            raise ModelFileError(f"{source}: not a {CALIBRATION_FORMAT} file")
        try:
            return cls(
                coeffs=tuple(float(v) for v in data["coeffs"]),
                years=tuple(float(v) for v in data["years"]),
                layers=int(data.get("layers", latent.DEFAULT_EDIT_LAYERS)),
                years_range=tuple(float(v) for v in data.get("years_range", DEFAULT_YEARS_RANGE)),  # type: ignore[arg-type]
                source=str(data.get("source", "")),
            )
        except (KeyError, TypeError, ValueError, BabyganError) as exc:
            raise ModelFileError(f"{source}: a broken age calibration ({exc})") from None

    @classmethod
    def load(cls, folder: Path) -> AgeCalibration | None:
        """The calibration kept in a directions folder, or None when it has none."""
        path = Path(folder) / CALIBRATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{path}: unreadable age calibration ({exc})") from None
        return cls.from_json(data, str(path))

    def save(self, folder: Path) -> Path:
        path = Path(folder) / CALIBRATION_FILE
        write_text_atomic(path, json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def measure(
        cls,
        synthesize: Callable[[np.ndarray], np.ndarray],
        direction: np.ndarray,
        read_age: Callable[[np.ndarray], np.ndarray],
        w: np.ndarray,
        coeffs: Sequence[float] = tuple(np.arange(-8.0, 8.01, 0.5)),
        layers: int = latent.DEFAULT_EDIT_LAYERS,
        source: str = "",
    ) -> AgeCalibration:
        """Move faces ``w`` (N, L, D) along ``direction`` by each coefficient, read their ages.

        ``synthesize``: (N, L, D) -> uint8 (N, R, R, 3); ``read_age``: uint8 faces -> years (N,).
        The readings are made monotone (a later coefficient never reads older than an earlier
        one: where the direction saturates, the flat run keeps only its first point).
        """
        pts = []
        for c in sorted(float(v) for v in coeffs):
            moved = latent.apply_direction(w, direction, c, layers, name="age")
            pts.append((c, float(np.mean(read_age(synthesize(moved))))))
        # where the direction has stopped moving the reading (under 0.5 years a step at either
        # end), going further only breaks the face: the calibration ends there
        while len(pts) > 2 and pts[0][1] - pts[1][1] < 0.5:
            pts.pop(0)
        while len(pts) > 2 and pts[-2][1] - pts[-1][1] < 0.5:
            pts.pop()
        kept = [pts[0]]
        for c, y in pts[1:]:
            if y < kept[-1][1] - 1e-3:
                kept.append((c, y))
        if len(kept) < 2:
            raise BabyganError("the age direction does not move the attribute network's reading")
        return cls(tuple(c for c, _ in kept), tuple(y for _, y in kept), layers, source=source)


def coefficient(calibration: AgeCalibration | None, age: latent.Age) -> float:
    """The start coefficient of ``age``: raw as given, or years through the calibration
    (BabyGAN's ``6 - years / 5`` for directions that have none)."""
    if not age.in_years:
        return age.coefficient
    return latent.age_to_coeff(age.value) if calibration is None else calibration.coefficient(age.value)


# --------------------------------------------------------------------------- editor


@dataclass(frozen=True)
class AgingSettings:
    """How an age in years is reached.

    steps: Adam steps after the calibrated linear edit (0: the linear edit alone);
    lr: their learning rate on the coordinates of :attr:`AgeEditor.basis`; identity_weight: how
    strongly the render's face descriptor is held at the anchor's (per unit of dlib distance; an
    age error of 5 years counts 1); prior_weight: the cost of moving (mean squared coordinate),
    which keeps the face near what the model draws; anchor: the descriptor held, "blend" (of
    the un-aged blend's render) or "parents" (the parents' photos' descriptors, mixed by genes).
    """

    steps: int = 20
    lr: float = 0.15
    identity_weight: float = 2.0
    prior_weight: float = 1.0
    anchor: str = "parents"

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise BabyganError(f"aging steps={self.steps}: must be >= 0")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise BabyganError(f"aging lr={self.lr}: must be a positive number")
        if self.anchor not in ANCHORS:
            raise BabyganError(f"aging anchor={self.anchor!r}: choose one of {', '.join(ANCHORS)}")
        for name in ("identity_weight", "prior_weight"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise BabyganError(f"aging {name}={value}: must be >= 0")


class AgeEditor:
    """Ages blends while holding who they are; owns its compiled step (built on first use).

    generator: a babygan Generator; attributes: an ``AttributeModel`` (its Keras network is
    differentiated); crop_ratio: the attribute network's crop side over the generator's
    (1.0: the same crop; the FFHQ model's faces are wider, so its renders are cropped to the
    network's tighter square first).
    """

    def __init__(
        self,
        generator: Any,
        attributes: Any,
        *,
        crop_ratio: float = 1.0,
        precision: str = "fp32",
        identity: Any | None = None,
        graphs: GraphStore | None = None,
    ) -> None:
        """identity: an ``IdentityTerm`` at ``precision`` (a session shares one with its encoder);
        None: loaded on first use. graphs: where the step's traced graph is looked up and kept
        (``babygan.backend.graph_store``); None: traced in every process."""
        if identity is not None and identity.precision != precision:
            raise BabyganError(f"the identity term runs in {identity.precision}, the editor in {precision}")
        self.G = generator
        self.attributes = attributes
        self.crop_ratio = float(crop_ratio)
        self.precision = precision
        self._identity: Any | None = identity
        self.graphs = graphs
        self._step: Callable[..., Any] | None = None
        self._warm: set[int] = set()  # the batch sizes whose step has run once
        # The directions a refinement may move a face along, float32 (K, L * D). A model with a
        # linear mapping (babygan's own) moves within the span of its training faces' codes (the
        # mapping's K principal components, scaled so a unit step is one standard deviation);
        # others (None) move one w shared by the edited layers, as W-space edits do. Free steps
        # in every value of W+ found the attribute network's blind spots instead: blotches it
        # reads as the asked age (seen on the built-in model's sweeps).
        weight = generator.params.get("mapping.linear.weight")
        self.basis: np.ndarray | None = None if weight is None else np.asarray(weight, np.float32)

    # the identity term: dlib's descriptor network and, per anchor, its chip plan
    @property
    def identity(self) -> Any:
        if self._identity is None:
            from babygan.encoder.identity_term import IdentityTerm

            self._identity = IdentityTerm(self.precision)
        return self._identity

    @property
    def loss_size(self) -> int:
        """The side the step looks at renders (the generator's, area-averaged to at most 256)."""
        return min(int(self.G.resolution), 256)

    def _build_step(self) -> Callable[..., Any]:
        from keras import ops

        from babygan import backend
        from babygan.stylegan import network

        G, identity, size = self.G, self.identity, self.loss_size
        factor = int(G.resolution) // size
        config, dtype = G.config, G.compute_dtype
        num_layers, w_dim = int(G.num_layers), int(G.w_dim)
        net = self.attributes.network
        in_size = int(net.input_shape[1])
        keep = max(1, round(size * min(self.crop_ratio, 1.0)))
        top = (size - keep) // 2

        def loss(
            x: Any, params: Any, start: Any, basis: Any, mask: Any, target: Any, feats: Any
        ) -> tuple[Any, Any]:
            if basis is None:  # one w for every edited layer
                delta = ops.expand_dims(x, 1)
            else:
                delta = ops.reshape(ops.matmul(x, basis), (-1, num_layers, w_dim))
            w = start + delta * mask
            img = network.synthesis_prepared(params, w, config, compute_dtype=dtype)
            img = (img + 1.0) * 127.5  # float32 (N, R, R, 3), 0..255
            if factor > 1:
                img = ops.average_pool(img, factor, factor, padding="valid")
            face = img[:, top : top + keep, top : top + keep, :]
            if keep != in_size:
                face = ops.image.resize(face, (in_size, in_size), interpolation="bilinear", antialias=True)
            read = ops.reshape(net(ops.clip(face, 0.0, 255.0), training=False)["age"], (-1,))
            err = (read - target) / _AGE_UNIT
            age_term = ops.where(ops.abs(err) < 1.0, 0.5 * ops.square(err), ops.abs(err) - 0.5)  # Huber
            prior = feats["prior"] * ops.mean(ops.square(x), axis=-1)
            per_image = age_term + feats["weight"] * identity.distance(img, feats) + prior
            return ops.sum(per_image), (per_image, read, w)

        grad_fn = backend.value_and_grad(loss)
        beta1, beta2, eps = 0.9, 0.999, 1e-8

        def step(x, m, v, t, lr, params, start, basis, mask, target, feats):
            (_, (per_image, read, w)), g = grad_fn(x, params, start, basis, mask, target, feats)
            m = beta1 * m + (1.0 - beta1) * g
            v = beta2 * v + (1.0 - beta2) * ops.square(g)
            lr_t = lr * ops.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
            return x - lr_t * m / (ops.sqrt(v) + eps), m, v, per_image, read, w

        return backend.jit(step, store=self.graphs, owner=self._graph_owner(), captures=self._graph_captures)

    def _graph_owner(self) -> str:
        """What the step's graph is made of besides the call (a GraphStore key): the generator's
        and the attribute network's files, dlib's, the crop and the precision."""
        from babygan.attributes import builtin_path
        from babygan.encoder.cache import file_identity
        from babygan.identity import default_model_path

        attributes = file_identity(self.attributes.path or builtin_path())
        parts = [
            "age editor step",
            self.G.source_sha256,
            str(self.G.compute_dtype),
            f"attributes {attributes}",
            f"identity {file_identity(default_model_path())}",
            f"crop {self.crop_ratio!r}",
            self.precision,
        ]
        return "\n".join(parts)

    def _graph_captures(self) -> dict[str, Any]:
        """The tensors and variables the step closes over: dlib's network and the attribute network's."""
        named = {f"identity/{k}": t for k, t in self.identity.net.tensors.items()}
        named.update({f"attributes/{i}": v for i, v in enumerate(self.attributes.network.weights)})
        return named

    def warm(self, n: int) -> None:
        """Pay the one-off costs of the step for ``n`` faces now (at each of :meth:`batches`'
        sizes): its tracing, the graph optimisation of its first run and the kernels' set-up
        (about 2 s on a 2-core CPU), by one step on zeros; and those of :meth:`anchors`' graphs
        (the render of ``n`` blends, the descriptors of their chips). The same graphs run later,
        so no result changes. ``pipeline.predict`` does this in a second thread while the photos
        are aligned and encoded. Once per batch size."""
        from babygan.identity.chip import CHIP_SIZE

        if n < 1 or self.is_warm(n):
            return
        points = CHIP_SIZE * CHIP_SIZE
        for size in dict.fromkeys(self.batches(n)):
            if size in self._warm:
                continue
            zeros = {
                "id_idx": np.zeros((size, points, 4), np.int32),
                "id_wts": np.zeros((size, points, 4), np.float32),
                "id_desc": np.zeros((size, 128), np.float32),
            }
            start = np.zeros((size, int(self.G.num_layers), int(self.G.w_dim)), np.float32)
            self.edit(start, [0.0] * size, AgingSettings(steps=0), latent.DEFAULT_EDIT_LAYERS, zeros)
        self.G.synthesis(np.zeros((n, int(self.G.num_layers), int(self.G.w_dim)), np.float32))
        self.identity.net.describe(np.zeros((n, CHIP_SIZE, CHIP_SIZE, 3), np.float32))

    def is_warm(self, n: int) -> bool:
        """Whether the step has run for ``n`` faces (at each of :meth:`batches`' sizes, by
        :meth:`warm` or an edit)."""
        return all(size in self._warm for size in self.batches(n))

    def batches(self, n: int) -> list[int]:
        """The batch sizes in which :meth:`edit` refines ``n`` faces: at most the generator's
        minibatch at a time, its bound on the largest activation. The step's gradient keeps
        every layer's activations, about 0.6 GB a face at 1024 px, so a 19-frame sweep in one
        batch would take about 13 GB there; on the built-in 128 px model (minibatch 32) a sweep
        is one batch."""
        k = max(1, int(self.G.minibatch))
        return [k] * (n // k) + ([n % k] if n % k else [])

    def anchors(
        self, blends: np.ndarray, parents: tuple[np.ndarray, np.ndarray, float] | None = None
    ) -> dict[str, np.ndarray]:
        """What the identity term holds each face to: the chip plan of the render of ``blends``
        (N, L, D), the un-aged faces, and a descriptor: the blend render's, or with ``parents``
        (father's and mother's aligned photos, uint8 (S, S, 3) each, and the mother's share)
        the parents' photos' descriptors mixed by that share."""
        from babygan.stylegan import to_uint8

        images = to_uint8(self.G.synthesis(np.asarray(blends, np.float32)))
        size = self.loss_size
        targets = images if images.shape[1] == size else _area_down(images, size)
        feats = self.identity.targets(images, targets)
        if parents is not None:
            father, mother, share = parents
            photos = np.stack([father, mother])
            small = photos if photos.shape[1] == size else _area_down(photos, size)
            desc = self.identity.targets(photos, small)["id_desc"]  # (2, 128)
            mixed = (1.0 - float(share)) * desc[0] + float(share) * desc[1]
            feats["id_desc"] = np.repeat(mixed[None].astype(np.float32), len(images), axis=0)
        return feats

    def edit(
        self,
        start: np.ndarray,
        years: Sequence[float],
        settings: AgingSettings,
        layers: int,
        anchors: dict[str, np.ndarray],
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Refine ``start`` (N, L, D), the calibrated linear edit of N blends, to ``years`` (N,)
        while holding the descriptors of ``anchors`` (:meth:`anchors` of the blends): returns
        (dlatents float32 (N, L, D), the attribute network's reading of each, float32 (N,)).
        The dlatents kept are each face's lowest loss over the steps; only ``layers`` move.
        Each face is refined on its own (its loss and Adam's state are its own), in the batches
        of :meth:`batches`. ``progress``: a tqdm bar (stderr), as the encoder shows; on FFHQ a
        sweep's aging takes minutes on a CPU."""
        start = np.asarray(start, np.float32)
        n = start.shape[0]
        target = np.asarray(years, np.float32).reshape(n)
        sizes = self.batches(n)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=(settings.steps + 1) * len(sizes), desc="age", unit="it", leave=False)
        out_w, out_read, lo = [], [], 0
        try:
            for size in sizes:
                part = slice(lo, lo + size)
                held = {k: np.asarray(v)[part] for k, v in anchors.items()}
                w, read = self._edit_batch(start[part], target[part], settings, layers, held, bar, n)
                out_w.append(w)
                out_read.append(read)
                lo += size
        finally:
            if bar is not None:
                bar.close()
        return np.concatenate(out_w), np.concatenate(out_read)

    def _edit_batch(
        self,
        start: np.ndarray,
        target: np.ndarray,
        settings: AgingSettings,
        layers: int,
        anchors: dict[str, np.ndarray],
        bar: Any,
        faces: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`edit` of one batch: start float32 (B, L, D), target float32 (B,); ``bar`` a
        tqdm bar or None, ``faces`` the whole edit's count (for the bar)."""
        from keras import ops

        n, num_layers, w_dim = start.shape
        feats = {k: ops.convert_to_tensor(v) for k, v in anchors.items()}
        feats["weight"] = ops.convert_to_tensor(np.float32(settings.identity_weight))
        feats["prior"] = ops.convert_to_tensor(np.float32(settings.prior_weight))
        idx = latent.layer_indices(num_layers, layers)
        mask = np.zeros((1, num_layers, 1), np.float32)
        mask[:, idx] = 1.0
        if self._step is None:
            self._step = self._build_step()
        basis = self.basis
        x = ops.zeros((n, w_dim if basis is None else basis.shape[0]), "float32")
        m, v = ops.zeros_like(x), ops.zeros_like(x)
        best_w, best_loss = start.copy(), np.full(n, np.inf)
        best_read = np.full(n, np.nan, np.float32)
        args = (
            self.G.prepared, ops.convert_to_tensor(start),
            None if basis is None else ops.convert_to_tensor(basis),
            ops.convert_to_tensor(mask), ops.convert_to_tensor(target), feats,
        )  # fmt: skip
        lr = ops.convert_to_tensor(np.float32(settings.lr))
        for t in range(1, settings.steps + 2):  # the last pass only scores the last update
            step = ops.convert_to_tensor(np.float32(t))
            x, m, v, per_image, read, w = self._step(x, m, v, step, lr, *args)
            per_image = ops.convert_to_numpy(per_image)
            better = per_image < best_loss
            best_loss = np.where(better, per_image, best_loss)
            best_w[better] = ops.convert_to_numpy(w)[better]
            best_read[better] = ops.convert_to_numpy(read)[better]
            if bar is not None:
                bar.set_postfix(children=faces, read=f"{float(np.nanmean(best_read)):.1f}y", refresh=False)
                bar.update(1)
        self._warm.add(n)
        return best_w, best_read


def _area_down(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, R, R, 3) -> (N, size, size, 3) by area averaging (R a multiple of size)."""
    n, r = images.shape[:2]
    k = r // size
    x = images.reshape(n, size, k, size, k, 3).astype(np.float32).mean(axis=(2, 4))
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)
