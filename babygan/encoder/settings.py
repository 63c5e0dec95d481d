"""Encoder settings: one frozen dataclass whose fields decide the result (and the cache key)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from babygan.errors import BabyganError
from babygan.precision import PRECISIONS

#: registry name of the Keras VGG16 ImageNet weights without the classifier
VGG16_FILE = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"

PERCEPTUAL_CHOICES = ("vgg16", "pixel")
INIT_CHOICES = ("auto", "estimator", "dlatent_avg")

# Fields that change how the work is scheduled but not what each image's result is:
# every image's loss (and so its gradient and Adam state) is independent of the
# others in its batch, so the batch size is left out of the cache key.
_NOT_IN_KEY = {"batch_size"}


@dataclass(frozen=True)
class EncoderSettings:
    """How an aligned photo is turned into dlatents (pbaylies' encoder, BabyGAN's defaults).

    Loss weights are those of BabyGAN's notebook; each term is computed per image at
    ``loss_size`` px (or the generator's own resolution when it is smaller), on
    images in the 0..255 range as pbaylies does.
    """

    iterations: int = 100
    lr: float = 0.25
    #: the learning rate is multiplied by ``decay_rate`` every ``decay_percent`` % of the iterations
    decay_rate: float = 0.9
    decay_percent: float = 4.0
    #: "vgg16": VGG16 block3_conv3 features + pixel + MS-SSIM + L1; "pixel": the same without VGG16
    perceptual: str = "vgg16"
    vgg_weight: float = 0.4
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

    def __post_init__(self) -> None:
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise BabyganError(
                f"perceptual={self.perceptual!r}: choose one of {', '.join(PERCEPTUAL_CHOICES)}"
            )
        if self.init not in INIT_CHOICES:
            raise BabyganError(f"init={self.init!r}: choose one of {', '.join(INIT_CHOICES)}")
        if self.iterations < 1:
            raise BabyganError(f"iterations={self.iterations}: must be at least 1")
        if self.batch_size < 1:
            raise BabyganError(f"batch_size={self.batch_size}: must be at least 1")
        if self.lr <= 0:
            raise BabyganError(f"lr={self.lr}: must be positive")
        if self.precision not in PRECISIONS:
            raise BabyganError(f"precision={self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if self.loss_size < 16:
            raise BabyganError(f"loss_size={self.loss_size}: must be at least 16")

    @property
    def decay_steps(self) -> int:
        """Iterations between two learning-rate decays (4% of 100 -> every 4 steps)."""
        return max(1, round(self.decay_percent * 0.01 * self.iterations))

    def learning_rate(self, step: int) -> float:
        """Staircase exponential decay; ``step`` counts from 1, as TF1's incremented global step did."""
        return self.lr * self.decay_rate ** (step // self.decay_steps)

    def cache_key(self) -> str:
        """A hex digest of every field that decides the result (not batch_size)."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k not in _NOT_IN_KEY}
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
