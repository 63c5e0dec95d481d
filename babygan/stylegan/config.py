"""The architecture of a StyleGAN (v1) generator, and the names and shapes of its parameters.

One frozen dataclass describes everything that changes the network's shape; the
official ``static_kwargs`` map onto it (see ``legacy.py``), and our npz format stores
it as JSON. ``param_shapes()`` is the single list of parameters a generator of that
architecture has: conversion and loading both check against it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

MAPPING_KINDS = ("stylegan", "linear")
# E, the image encoder a model may carry: widths min(ENCODER_WIDTH_MAX, ENCODER_WIDTH_BASE // res)
ENCODER_PREFIX = "encoder."
ENCODER_WIDTH_BASE = 4096
ENCODER_WIDTH_MAX = 128
ENCODER_HIDDEN = 512
# Training-only parameters of a model grown by a block (babygan.train.grow): the previous top
# resolution's ToRGB and E's FromRGB, faded out as the new block fades in (progressive GAN).
FADE_TORGB = "synthesis.torgb_prev"
FADE_FROMRGB = ENCODER_PREFIX + "fromrgb_prev"


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture hyper-parameters; defaults are those of the released FFHQ 1024 model."""

    resolution: int = 1024
    num_channels: int = 3
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    latent_size: int = 512
    dlatent_size: int = 512
    mapping_layers: int = 8
    mapping_fmaps: int = 512
    mapping_lrmul: float = 0.01
    normalize_latents: bool = True
    use_noise: bool = True
    # True / False / "auto" (= fused transposed conv for the blocks of 128 px and up).
    fused_scale: bool | str = "auto"
    # Low-pass filter applied after each upsampling; None = no blur.
    blur_filter: tuple[float, ...] | None = (1.0, 2.0, 1.0)
    # "stylegan": the official mapping network (z -> one w for every layer). "linear": one
    # affine map z -> W+ (a w per layer), fitted to an encoder's codes; dlatent_avg is then
    # (num_layers, dlatent_size), the codes' mean per layer. babygan's built-in model has it.
    mapping_kind: str = "stylegan"
    # Whether the file carries E, the image encoder trained with it (``encoder.*`` parameters).
    image_encoder: bool = False

    def __post_init__(self) -> None:
        log2 = round(math.log2(self.resolution)) if self.resolution > 0 else 0
        if self.resolution < 4 or 2**log2 != self.resolution:
            raise ValueError(f"resolution must be a power of two >= 4, not {self.resolution}")
        if self.fused_scale not in (True, False, "auto"):
            raise ValueError(f"fused_scale must be True, False or 'auto', not {self.fused_scale!r}")
        if self.blur_filter is not None:
            object.__setattr__(self, "blur_filter", tuple(float(v) for v in self.blur_filter))
        if self.mapping_kind not in MAPPING_KINDS:
            raise ValueError(f"mapping_kind must be one of {MAPPING_KINDS}, not {self.mapping_kind!r}")
        for name in ("latent_size", "dlatent_size", "mapping_layers", "mapping_fmaps", "num_channels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1")

    # ------------------------------------------------------------------ derived sizes

    @property
    def resolution_log2(self) -> int:
        return round(math.log2(self.resolution))

    @property
    def num_layers(self) -> int:
        """Synthesis layers = dlatent vectors per image (18 at 1024 px)."""
        return self.resolution_log2 * 2 - 2

    def nf(self, stage: int) -> int:
        """Feature maps at a stage, exactly as the official code computes them."""
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def layer_resolution(self, layer: int) -> int:
        return 2 ** (layer // 2 + 2)

    def layer_channels(self, layer: int) -> int:
        return self.nf(layer // 2 + 1)

    def fused(self, res_log2: int) -> bool:
        """Whether the block producing 2**res_log2 pixels upsamples with the fused transposed conv."""
        if self.fused_scale == "auto":
            return 2**res_log2 >= 128
        return bool(self.fused_scale)

    # ------------------------------------------------------------------ parameters

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every parameter of our format, name -> shape (NHWC layouts), in a stable order."""
        shapes: dict[str, tuple[int, ...]] = {}
        if self.mapping_kind == "linear":
            shapes["mapping.linear.weight"] = (self.latent_size, self.num_layers * self.dlatent_size)
            shapes["mapping.linear.bias"] = (self.num_layers * self.dlatent_size,)
            shapes["dlatent_avg"] = (self.num_layers, self.dlatent_size)
        else:
            fan_in = self.latent_size
            for i in range(self.mapping_layers):
                fmaps = self.dlatent_size if i == self.mapping_layers - 1 else self.mapping_fmaps
                shapes[f"mapping.dense{i}.weight"] = (fan_in, fmaps)
                shapes[f"mapping.dense{i}.bias"] = (fmaps,)
                fan_in = fmaps
            shapes["dlatent_avg"] = (self.dlatent_size,)
        shapes["synthesis.const"] = (1, 4, 4, self.nf(1))
        prev = self.nf(1)
        for layer in range(self.num_layers):
            ch = self.layer_channels(layer)
            res = self.layer_resolution(layer)
            p = f"synthesis.layer{layer}"
            if layer > 0:
                shapes[f"{p}.conv.weight"] = (3, 3, prev, ch)
            if self.use_noise:
                shapes[f"{p}.noise"] = (1, res, res, 1)
                shapes[f"{p}.noise_strength"] = (ch,)
            shapes[f"{p}.bias"] = (ch,)
            shapes[f"{p}.style.weight"] = (self.dlatent_size, 2 * ch)
            shapes[f"{p}.style.bias"] = (2 * ch,)
            prev = ch
        shapes["synthesis.torgb.weight"] = (1, 1, prev, self.num_channels)
        shapes["synthesis.torgb.bias"] = (self.num_channels,)
        if self.image_encoder:
            shapes.update(self.encoder_param_shapes())
        return shapes

    def encoder_width(self, res: int) -> int:
        """Feature maps E uses at a resolution of ``res`` pixels."""
        return min(ENCODER_WIDTH_MAX, ENCODER_WIDTH_BASE // res)

    def encoder_param_shapes(self) -> dict[str, tuple[int, ...]]:
        """E's parameters (``babygan.stylegan.image_encoder``), name with the ``encoder.`` prefix -> shape."""
        nf = self.encoder_width
        top = self.resolution
        shapes: dict[str, tuple[int, ...]] = {
            "fromrgb.weight": (1, 1, self.num_channels, nf(top)),
            "fromrgb.bias": (nf(top),),
        }
        res = top
        while res > 4:
            shapes[f"b{res}.conv0.weight"] = (3, 3, nf(res), nf(res))
            shapes[f"b{res}.conv0.bias"] = (nf(res),)
            shapes[f"b{res}.conv1.weight"] = (3, 3, nf(res), nf(res // 2))
            shapes[f"b{res}.conv1.bias"] = (nf(res // 2),)
            res //= 2
        shapes["b4.conv.weight"] = (3, 3, nf(4), nf(4))
        shapes["b4.conv.bias"] = (nf(4),)
        shapes["b4.dense0.weight"] = (16 * nf(4), ENCODER_HIDDEN)
        shapes["b4.dense0.bias"] = (ENCODER_HIDDEN,)
        shapes["b4.dense1.weight"] = (ENCODER_HIDDEN, self.num_layers * self.dlatent_size)
        shapes["b4.dense1.bias"] = (self.num_layers * self.dlatent_size,)
        return {ENCODER_PREFIX + k: v for k, v in shapes.items()}

    def fade_param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The fade-in's extra parameters (never in a model file): the ToRGB of the layer before
        the last block (half resolution) and E's FromRGB into its second block."""
        if self.resolution < 8:
            raise ValueError("a model of 4 px has no block to fade in")
        half_channels = self.layer_channels(self.num_layers - 3)
        return {
            f"{FADE_TORGB}.weight": (1, 1, half_channels, self.num_channels),
            f"{FADE_TORGB}.bias": (self.num_channels,),
            f"{FADE_FROMRGB}.weight": (1, 1, self.num_channels, self.encoder_width(self.resolution // 2)),
            f"{FADE_FROMRGB}.bias": (self.encoder_width(self.resolution // 2),),
        }

    def num_params(self, *, include_noise: bool = False) -> int:
        return sum(
            math.prod(s)
            for n, s in self.param_shapes().items()
            if include_noise or not (n.endswith(".noise") or n == "dlatent_avg")
        )

    # ------------------------------------------------------------------ (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blur_filter"] = list(self.blur_filter) if self.blur_filter is not None else None
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        return from_known_fields(cls, data, "config keys")


def from_known_fields(cls: Any, data: dict[str, Any], what: str = "settings") -> Any:
    """``cls(**data)`` for a dataclass, refusing keys it does not have (a ValueError naming them)."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} {unknown}")
    return cls(**data)
