"""Encoder settings: one frozen dataclass whose fields decide the result (and the cache key)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from babygan.errors import BabyganError
from babygan.precision import PRECISIONS

#: registry name of the Keras VGG16 ImageNet weights without the classifier
VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

PERCEPTUAL_CHOICES = ("vgg16", "pixel", "identity")
#: where the optimisation starts; besides these, ``init`` may name a ``.npy`` file of dlatents
INIT_CHOICES = ("auto", "estimator", "dlatent_avg")
OPTIMIZER_CHOICES = ("adam", "lbfgs")

# Fields that change how the work is scheduled, or what is done with a result, but not
# the dlatents themselves: every image's loss (and so its gradient and optimiser state)
# is independent of the others in its batch, so the batch size is left out of the cache
# key; the composite only touches the written reconstruction, never the dlatents.
_NOT_IN_KEY = {"batch_size", "composite", "composite_blur"}
# Fields that matter only when another one is on (or has a given value): left out of the
# key otherwise, so that e.g. --mask-scale without --face-mask keeps the cached results.
_ONLY_WITH = {
    "mask_scale": lambda s: s.face_mask,
    "early_stopping": lambda s: s.optimizer == "adam",
    "early_stopping_threshold": lambda s: s.optimizer == "adam" and s.early_stopping,
    "early_stopping_patience": lambda s: s.optimizer == "adam" and s.early_stopping,
    "average_best_loss": lambda s: s.optimizer == "adam",
    "lr": lambda s: s.optimizer == "adam",
    "decay_rate": lambda s: s.optimizer == "adam",
    "decay_percent": lambda s: s.optimizer == "adam" and s.decay_rate != 1.0,
    "identity_weight": lambda s: s.perceptual == "identity",
}


@dataclass(frozen=True)
class EncoderSettings:
    """How an aligned photo is turned into dlatents (pbaylies' encoder, BabyGAN's defaults).

    Loss weights are those of BabyGAN's notebook; each term is computed per image at
    ``loss_size`` px (or the generator's own resolution when it is smaller), on
    images in the 0..255 range as pbaylies does.
    """

    #: 60 steps at a constant 0.05 invert the 128 px reference generator's own renders a little
    #: better (15.70 dB mean PSNR over 40 images) than pbaylies' 100 at 0.25 decayed x0.9 every
    #: 4% (15.60 dB), in 60% of the time (scripts/bench_encoder_schedules.py); BabyGAN's
    #: notebook ran the latter: iterations=100, lr=0.25, decay_rate=0.9
    iterations: int = 60
    lr: float = 0.05
    #: the learning rate is multiplied by ``decay_rate`` every ``decay_percent`` % of the iterations
    decay_rate: float = 1.0
    decay_percent: float = 4.0
    #: "vgg16": VGG16 block3_conv3 features + pixel + MS-SSIM + L1; "pixel": the same without VGG16;
    #: "identity": pixel + MS-SSIM + L1 + dlib's face descriptor distance (no download needed)
    perceptual: str = "vgg16"
    vgg_weight: float = 0.4
    #: with perceptual="identity": weight of the Euclidean distance between dlib's 128-D face
    #: descriptors of the target and the render (one person: within 0.6)
    identity_weight: float = 100.0
    pixel_weight: float = 1.5
    mssim_weight: float = 200.0
    #: weight of mean |w - dlatent_avg|, multiplied by 512 as in pbaylies' encoder (so 0.5 x 512)
    l1_weight: float = 0.5
    #: stochastic clipping: after each step, values outside [-clip, clip] are re-drawn from N(0, 1)
    clip: float = 2.0
    loss_size: int = 256
    seed: int = 0
    batch_size: int = 2
    #: "auto": the estimator when one is available for the generator, else dlatent_avg
    init: str = "auto"
    #: estimator file (name or path); None: the registry's one for FFHQ, when init allows
    estimator: str | None = None
    #: VGG16 weights (registry name or local path)
    vgg16_weights: str = VGG16_FILE
    #: "fp32" or "bf16": compute precision of the generator and VGG16 in the optimisation step
    #: (losses and Adam's state stay float32)
    precision: str = "fp32"
    #: "adam": ``iterations`` Adam steps (above); "lbfgs": scipy's L-BFGS-B on each image's
    #: dlatents for at most ``iterations`` iterations, bounded to [-clip, clip] (lr is unused)
    optimizer: str = "adam"
    #: the losses look only at the face: the hull of dlib's 68 landmarks in the aligned
    #: image, scaled by ``mask_scale`` about its centre (pbaylies: grabcut, face_mask=True)
    face_mask: bool = False
    mask_scale: float = 1.2
    #: the written reconstruction keeps the aligned photo outside the face mask, the mask's
    #: edge blurred by ``composite_blur`` px (at 1024 px; scaled with the resolution).
    #: Only the written image changes: not in the cache key.
    composite: bool = False
    composite_blur: float = 8.0
    #: Adam stops an image once the running average of its loss decrease (each step:
    #: avg = avg / 2 + decrease) has stayed under ``threshold`` for more than ``patience`` steps
    early_stopping: bool = False
    early_stopping_threshold: float = 0.5
    early_stopping_patience: int = 10
    #: Adam: on each new best loss, best = a x previous best + (1 - a) x these dlatents, and the
    #: optimisation continues from that average too (pbaylies' average_best_loss); 0 = off
    average_best_loss: float = 0.0
    #: sharpen the target at the loss resolution with PIL's DETAIL filter (pbaylies' sharpen_input)
    sharpen_input: bool = False
    #: optimise one w_dim vector shared by every layer (pbaylies' tile_dlatents)
    tile_dlatents: bool = False

    def __post_init__(self) -> None:
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise BabyganError(
                f"perceptual={self.perceptual!r}: choose one of {', '.join(PERCEPTUAL_CHOICES)}"
            )
        if not self.identity_weight >= 0:
            raise BabyganError(f"identity_weight={self.identity_weight}: must be >= 0")
        if self.init not in INIT_CHOICES and not self.init.endswith(".npy"):
            raise BabyganError(
                f"init={self.init!r}: choose one of {', '.join(INIT_CHOICES)}, or a .npy file of dlatents"
            )
        if self.optimizer not in OPTIMIZER_CHOICES:
            raise BabyganError(f"optimizer={self.optimizer!r}: choose one of {', '.join(OPTIMIZER_CHOICES)}")
        if not self.mask_scale > 0:
            raise BabyganError(f"mask_scale={self.mask_scale}: must be positive")
        if self.composite_blur < 0:
            raise BabyganError(f"composite_blur={self.composite_blur}: must be >= 0")
        if self.early_stopping_patience < 0:
            raise BabyganError(f"early_stopping_patience={self.early_stopping_patience}: must be >= 0")
        if not 0.0 <= self.average_best_loss < 1.0:
            raise BabyganError(f"average_best_loss={self.average_best_loss}: must be in [0, 1)")
        if self.iterations < 1:
            raise BabyganError(f"iterations={self.iterations}: must be at least 1")
        if self.batch_size < 1:
            raise BabyganError(f"batch_size={self.batch_size}: must be at least 1")
        if self.lr <= 0:
            raise BabyganError(f"lr={self.lr}: must be positive")
        if not 0 < self.decay_rate <= 1:
            raise BabyganError(f"decay_rate={self.decay_rate}: must be in (0, 1]")
        if not 0 < self.decay_percent <= 100:
            raise BabyganError(f"decay_percent={self.decay_percent}: must be in (0, 100]")
        if self.precision not in PRECISIONS:
            raise BabyganError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.loss_size < 16:
            raise BabyganError(f"loss_size={self.loss_size}: must be at least 16")

    @property
    def init_file(self) -> str | None:
        """The .npy file ``init`` names, or None when it is one of INIT_CHOICES."""
        return None if self.init in INIT_CHOICES else self.init

    @property
    def decay_steps(self) -> int:
        """Iterations between two learning-rate decays (4% of 100 -> every 4 steps); with
        ``decay_rate`` 1 the rate stays constant."""
        return max(1, round(self.decay_percent * 0.01 * self.iterations))

    def learning_rate(self, step: int) -> float:
        """Staircase exponential decay; ``step`` counts from 1, as TF1's incremented global step did."""
        return self.lr * self.decay_rate ** (step // self.decay_steps)

    def cache_key(self) -> str:
        """A hex digest of every field that decides the dlatents (not batch_size, not the composite).

        An init file counts by its content, which the encoder adds beside this key (its
        path does not enter: the same file moved keeps its results).
        """
        fields = {
            k: v
            for k, v in dataclasses.asdict(self).items()
            if k not in _NOT_IN_KEY and _ONLY_WITH.get(k, lambda _s: True)(self)
        }
        if self.init_file is not None:
            fields["init"] = "file"
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


#: The defaults a model that carries its own E (the built-in model) is encoded with, where the
#: user did not choose: E's first guess is close already, so a few small steps finish it,
#: unpulled toward the average, with the identity loss (no VGG16 download; see settings_for_model).
OWN_ENCODER_DEFAULTS: dict[str, Any] = {
    "perceptual": "identity",
    "iterations": 20,
    "lr": 0.03,
    "l1_weight": 0.0,
}


def model_defaults(info: dict | None, has_encoder: bool) -> dict[str, Any]:
    """The encoder settings a model is best encoded with, where they differ from pbaylies'
    (``EncoderSettings()``, kept for the official FFHQ pickles): a model with its own info
    (babygan's own) uses the identity loss; one that also carries E, ``OWN_ENCODER_DEFAULTS``."""
    if has_encoder:
        return dict(OWN_ENCODER_DEFAULTS)
    return {"perceptual": "identity"} if info else {}


def settings_for_model(info: dict | None, has_encoder: bool = False, **chosen: Any) -> EncoderSettings:
    """EncoderSettings for a model: its :func:`model_defaults`, then what the caller ``chosen``."""
    return EncoderSettings(**{**model_defaults(info, has_encoder), **chosen})
