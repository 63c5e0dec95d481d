"""TrainConfig: every setting of a training run of babygan's own StyleGAN (v1) face model."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from babygan.stylegan.config import GeneratorConfig, from_known_fields

AUGMENTATIONS = ("color", "translation", "cutout")


def augment_policy(text: str) -> tuple[str, ...]:
    """A DiffAugment policy "color,translation,cutout" ("" = none) -> its names; unknown ones refused."""
    names = tuple(p for p in text.split(",") if p)
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentations {unknown} (known: {', '.join(AUGMENTATIONS)})")
    return names


@dataclass(frozen=True)
class TrainConfig:
    """Architecture and optimisation settings; the defaults are the recommended 64 px run.

    The generator is the StyleGAN (v1) architecture babygan renders (``GeneratorConfig``);
    the discriminator mirrors it (same ``fmap_base`` / ``fmap_max``). Learning rates are for
    the equalized-lr parametrisation (the mapping network's 0.01 lr multiplier is built in).
    """

    resolution: int = 64
    fmap_base: int = 4096
    fmap_max: int = 128  # 2.3 M generator parameters at 64 px: a 9 MB export, a 40 MB checkpoint
    latent_size: int = 256
    dlatent_size: int = 256
    mapping_layers: int = 4
    batch: int = 64
    g_lr: float = 0.0025
    d_lr: float = 0.0025
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    adam_eps: float = 1e-8
    # R1 gamma; None = 0.0002 * resolution**2 / batch (the StyleGAN2-ADA heuristic).
    r1_gamma: float | None = None
    r1_interval: int = 16  # lazy R1: every N discriminator steps, weighted by N
    ema_kimg: float = 10.0  # half-life of the EMA generator, in thousands of images
    ema_rampup: float | None = 0.05  # EMA half-life <= this fraction of the images seen so far
    style_mixing: float = 0.9  # probability that an image mixes two latents
    augment: str = "color,translation,cutout"  # DiffAugment policy ("" = none)
    xflip: bool = True  # random horizontal flips of the real images
    mixed_precision: bool = True  # convolutions in bfloat16 (losses, R1 and parameters in float32)
    total_kimg: float = 3000.0
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator_config()  # validates the resolution
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be an even number >= 2, not {self.batch}")
        augment_policy(self.augment)  # validates it
        for name in ("g_lr", "d_lr", "ema_kimg", "total_kimg"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.r1_interval < 1:
            raise ValueError("r1_interval must be >= 1")
        if not 0.0 <= self.style_mixing <= 1.0:
            raise ValueError("style_mixing must be in [0, 1]")

    @property
    def gamma(self) -> float:
        if self.r1_gamma is not None:
            return float(self.r1_gamma)
        return 0.0002 * self.resolution**2 / self.batch

    @property
    def policy(self) -> tuple[str, ...]:
        return augment_policy(self.augment)

    def generator_config(self) -> GeneratorConfig:
        return GeneratorConfig(
            resolution=self.resolution,
            fmap_base=self.fmap_base,
            fmap_max=self.fmap_max,
            latent_size=self.latent_size,
            dlatent_size=self.dlatent_size,
            mapping_layers=self.mapping_layers,
            mapping_fmaps=self.dlatent_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_known_fields(cls, data, "training settings")


@dataclass(frozen=True)
class AutoencoderConfig:
    """The built-in model's CPU recipe: an autoencoder whose decoder is the StyleGAN synthesis
    network, then adversarial sharpening.

    Stage 1 (until ``ae_kimg`` thousand images): E (face -> W+) and the synthesis network are
    trained jointly on reconstruction alone (multi-scale L1 + MS-SSIM). Stage 2 (until
    ``total_kimg``): the discriminator joins, on reconstructions and on decodes of codes
    blended between two faces (what a child prediction draws), with the non-saturating loss
    weighted ``adv_weight`` beside the reconstruction loss, lazy R1 and DiffAugment.

    The reconstruction loss may add a perceptual distance on dlib's face network and the
    distance of dlib's descriptors (``perceptual_weight``, ``identity_weight``; faces cut by the
    typical chip of ``crop_scale``, babygan.identity.perceptual). A run grown from a smaller
    model (babygan.train.grow) fades its new blocks in over the first ``fade_kimg``.
    """

    resolution: int = 64
    fmap_base: int = 4096
    fmap_max: int = 128
    dlatent_size: int = 256
    batch: int = 32
    lr: float = 0.002  # E and G (Adam beta1 0.9: a regression, not a GAN)
    d_lr: float = 0.002
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_eps: float = 1e-8
    msssim_weight: float = 1.0
    perceptual_weight: float = 0.0
    identity_weight: float = 0.0
    crop_scale: float = 0.7  # the training faces' crop (babygan.utkface.CROP_SCALE), for the face network
    adv_weight: float = 0.1
    r1_gamma: float = 0.05
    r1_interval: int = 16
    augment: str = "color,translation,cutout"  # DiffAugment for what D sees in stage 2
    xflip: bool = True
    ema_kimg: float = 2.0
    mixed_precision: bool = True
    ae_kimg: float = 100.0
    total_kimg: float = 112.0
    fade_kimg: float = 0.0  # > 0: grown from a model of half the resolution, faded in over this
    grown_from: str = ""  # what it was grown from (a record only)
    seed: int = 0

    def __post_init__(self) -> None:
        self.generator_config()
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be an even number >= 2, not {self.batch}")
        if not 0 < self.ae_kimg <= self.total_kimg:
            raise ValueError("ae_kimg must be > 0 and <= total_kimg")
        if not 0 <= self.fade_kimg <= self.ae_kimg:
            raise ValueError("fade_kimg must be >= 0 and <= ae_kimg (the fade ends within stage 1)")
        if min(self.perceptual_weight, self.identity_weight, self.msssim_weight, self.adv_weight) < 0:
            raise ValueError("loss weights must be >= 0")
        augment_policy(self.augment)  # validates it

    @property
    def policy(self) -> tuple[str, ...]:
        return augment_policy(self.augment)

    def generator_config(self) -> GeneratorConfig:
        # no mapping network is trained: the model's z -> W+ map is fitted to E's codes afterwards
        return GeneratorConfig(
            resolution=self.resolution,
            fmap_base=self.fmap_base,
            fmap_max=self.fmap_max,
            latent_size=self.dlatent_size,
            dlatent_size=self.dlatent_size,
            mapping_layers=1,
            mapping_fmaps=self.dlatent_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AutoencoderConfig:
        return from_known_fields(cls, data, "training settings")


#: The 128 px recipe: the shipped 64 px model grown by a block (``--grow-from``), trained about
#: 3 hours on a 2-core CPU. Stage lengths are estimates from the 64 px run's measured speed (stage
#: 1 37 images/s, stage 2 10.5) and the multiply-adds per image at 128 px (G 2.3 G against 1.16,
#: E 0.86 against 0.58, D as G, dlib's network 0.25 G per chip on the reconstruction and its
#: target): about 2x the work per image, so ~15 images/s in stage 1 (55 kimg, ~61 min) and
#: ~4.8 in stage 2 (30 kimg, ~104 min). Retune from the images/s of log.jsonl: a stage's kimg =
#: its images/s x its minutes x 0.06 (``--ae-kimg`` / ``--kimg`` on resuming).
GROWN_128 = {
    "resolution": 128,
    "ae_kimg": 55.0,
    "total_kimg": 85.0,
    "fade_kimg": 10.0,
    "perceptual_weight": 0.1,
    "identity_weight": 0.1,
    "adv_weight": 0.1,
    "r1_gamma": 0.1,  # 0.0002 x 128^2 / 32 (the 64 px run used 2x its heuristic, 0.05)
    "ema_kimg": 2.0,
}
