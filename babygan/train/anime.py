"""Tune an anime model from a base face model: a copy of its synthesis, fine-tuned adversarially on
anime faces with its coarse layers frozen (Toonify's layer swap; GANs N' Roses' many styles).

Frozen (bit-identical to the base): the mapping, ``dlatent_avg``, the constant input, every
synthesis layer below ``swap_layer`` and every stored noise input. The coarse layers draw the
layout (pose, face shape, hair outline), so one code draws the same layout in the photo model
and in the anime model. Trained: the synthesis layers from ``swap_layer`` on (convolution, bias,
noise strength, style) and the ToRGB, against a discriminator from ``babygan.train.discriminator``
(fresh), with lazy R1, DiffAugment (``babygan.train.augment``) and an EMA of the trained layers.

The fakes are drawn from the base's own code distribution, its mapping of z ~ N(0, I), in pairs
that share their coarse layers (``anime_layers.mix_styles``): a face in its own style and in
another, as ``babygan anime`` draws its takes. Beside the adversarial loss two terms hold the
tuning (``babygan.train.anime_layers``): ``structure_weight`` holds each fake's coarse layout to the
base's image of the same code (grey, 8 x 8, standardised: no colour or line style changes it), and
``style_weight`` asks the two takes of a face to differ at least as much as the base's do. Both
are there because adversarial tuning of this model alone collapsed, in earlier runs, first into
one image for every code, then (with the structure term) into one style for every face.

All randomness is drawn on the host from ``numpy.random.default_rng([seed, step])``, and a
checkpoint holds the whole state in float32 (``babygan.train.checkpoint``), so a resumed run
draws and computes what an uninterrupted one would.

Arrays crossing the boundary: training images uint8 (N, R, R, 3); codes float32 (N, L, w_dim);
rendered images uint8 (N, R, R, 3).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from keras import ops

from babygan import backend
from babygan.errors import BabyganError
from babygan.stylegan import network
from babygan.stylegan.config import GeneratorConfig, from_known_fields
from babygan.stylegan.generator import Generator, to_uint8
from babygan.train import augment, checkpoint, discriminator
from babygan.train.anime_layers import (
    check_swap_layer,
    default_swap_layer,
    mix_styles,
    structure_maps,
    style_gap,
    trained_names,
)
from babygan.train.config import augment_policy
from babygan.train.data import sample_batch
from babygan.train.optim import adam_init, adam_update, ema_update

RECIPE = "anime"
# What each step returns, in this order (r1 is NaN on steps without R1, structure and style when
# their weight is 0).
METRICS = ("d_loss", "g_adv", "structure", "style", "r1", "real", "fake")


@dataclass(frozen=True)
class AnimeConfig:
    """Every setting of an anime tuning run (saved in its checkpoints). The resolution and the
    architecture are the base model's."""

    swap_layer: int = 0  # first tuned layer; 0 = default_swap_layer(base) (the first at 16 px)
    batch: int = 16
    g_lr: float = 0.002  # StyleGAN2's; at 0.0002 (tuned noise) the faces became noise textures
    tune_noise: bool = False  # tuned, the noise strengths grew 2-4x while the convolutions moved 1 %
    d_lr: float = 0.002
    adam_beta1: float = 0.0
    adam_beta2: float = 0.99
    adam_eps: float = 1e-8
    r1_gamma: float | None = None  # None = 0.0002 * resolution**2 / batch (StyleGAN2-ADA)
    r1_interval: int = 16
    structure_weight: float = 1.0  # the layout term beside the adversarial loss (0 = off)
    style_weight: float = 1.0  # the takes-differ term (anime_layers.style_gap); 0 = off, no mixing
    ema_kimg: float = 2.0  # half-life of the EMA, thousands of images (ramped up: <= 10 % of those seen)
    augment: str = "color,translation,cutout"
    xflip: bool = True
    mixed_precision: bool = True  # bfloat16 convolutions
    total_kimg: float = 60.0  # ~1 hour on a 2-core CPU at ~16 images/s (retune from log.jsonl)
    crop_side: float = 0.75  # how the anime faces are cut (babygan.train.anime_data.AnimeCrop)
    crop_centre_y: float = 0.42
    #: (kimg, g_lr, d_lr) for each change of rates on a resume (AnimeTrainer.change_rates), in order
    rate_changes: tuple[tuple[float, float, float], ...] = ()
    base_sha256: str = ""  # set by AnimeTrainer.start: the base model file's
    base_name: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch < 2 or self.batch % 2:
            raise ValueError(f"batch must be an even number >= 2, not {self.batch}")
        for name in ("g_lr", "d_lr", "ema_kimg", "total_kimg"):
            if float(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.r1_interval < 1 or min(self.structure_weight, self.style_weight, self.swap_layer) < 0:
            raise ValueError("r1_interval must be >= 1, structure_weight, style_weight and swap_layer >= 0")
        augment_policy(self.augment)  # validates it
        # read back from JSON as lists: kept as tuples, so that a resumed run's settings compare equal
        object.__setattr__(self, "rate_changes", tuple(tuple(float(v) for v in c) for c in self.rate_changes))

    def gamma(self, resolution: int) -> float:
        return float(self.r1_gamma) if self.r1_gamma is not None else 0.0002 * resolution**2 / self.batch

    @property
    def policy(self) -> tuple[str, ...]:
        return augment_policy(self.augment)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnimeConfig:
        return from_known_fields(cls, data, "anime training settings")


def init_state(gconfig: GeneratorConfig, config: AnimeConfig, base_params: dict[str, Any]) -> dict[str, Any]:
    """The state at step 0 (nested dicts of numpy float32): ``base`` (every parameter of the base,
    never changed), ``G`` / ``G_ema`` (the tuned ones, starting as the base's), ``D``, Adam states."""
    base = {n: np.array(base_params[n], np.float32) for n in gconfig.param_shapes()}
    g = {n: base[n].copy() for n in trained_names(gconfig, config.swap_layer, config.tune_noise)}
    d = discriminator.init_params(gconfig, config.seed)
    return {
        "base": base,
        "G": g,
        "G_ema": {k: v.copy() for k, v in g.items()},
        "D": d,
        "G_opt": adam_init(g, config.adam_beta1),
        "D_opt": adam_init(d, config.adam_beta1),
    }


class AnimeTrainer:
    """An anime tuning run: settings, state, compiled steps, loop, samples, export.

    ``AnimeTrainer.start(base, config)`` begins from a base Generator, ``AnimeTrainer.resume(folder)``
    from a checkpoint; ``train(images, out_dir, ...)`` runs to ``config.total_kimg`` (or a time
    limit); ``export(path, base)`` writes the EMA model with ``babygan.anime.model.save_anime_model``.
    """

    def __init__(
        self, config: AnimeConfig, gconfig: GeneratorConfig, state: dict[str, Any], *, step: int = 0,
        nimg: int = 0, seconds: float = 0.0,
    ) -> None:  # fmt: skip
        self.config = config
        self.gconfig = gconfig
        check_swap_layer(gconfig, config.swap_layer)
        self.state = state
        self.step = step
        self.nimg = nimg
        self.seconds = seconds  # training time of earlier sessions, for the record
        self._steps: dict[bool, Callable[..., Any]] = {}
        self._render: Callable[..., Any] | None = None

    @classmethod
    def start(cls, base: Generator, config: AnimeConfig | None = None) -> AnimeTrainer:
        """A new run tuning ``base`` (any babygan generator; its E, if it has one, is not used)."""
        config = config or AnimeConfig()
        gconfig = replace(base.config, image_encoder=False)
        swap = check_swap_layer(gconfig, config.swap_layer or default_swap_layer(gconfig))
        config = replace(
            config, swap_layer=swap, base_sha256=base.source_sha256,
            base_name=config.base_name or str(base.info.get("name", "")),
        )  # fmt: skip
        return cls(config, gconfig, init_state(gconfig, config, base.params))

    @classmethod
    def resume(
        cls, folder: str | os.PathLike[str], total_kimg: float | None = None, base: Generator | None = None
    ) -> AnimeTrainer:
        """The run saved in ``folder`` (``total_kimg`` retunes its length); with ``base``, checks that
        the run tunes that model."""
        state, meta = checkpoint.load_checkpoint(folder)
        if meta.get("recipe") != RECIPE:
            raise BabyganError(f"{folder}: not a checkpoint of an anime tuning run")
        try:
            config = AnimeConfig.from_dict({"style_weight": 0.0, **meta["config"]})  # older runs: none
            gconfig = GeneratorConfig.from_dict(meta["generator_config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BabyganError(f"{folder}: checkpoint settings unreadable ({exc})") from exc
        if base is not None and base.source_sha256 != config.base_sha256:
            raise BabyganError(
                f"{folder}: the run tunes another model (sha256 {config.base_sha256[:12]}), "
                f"not this base ({base.source_sha256[:12]})"
            )
        if total_kimg is not None:
            config = replace(config, total_kimg=total_kimg)
        zeros = {n: np.zeros(s, np.float32) for n, s in gconfig.param_shapes().items()}
        want = checkpoint.flatten(init_state(gconfig, config, zeros))
        have = checkpoint.flatten(state)
        bad = [k for k in want if k not in have or have[k].shape != want[k].shape]
        if bad or set(have) - set(want):
            raise BabyganError(f"{folder}: checkpoint does not fit its own settings (e.g. {bad[:2]})")
        return cls(
            config, gconfig, state, step=int(meta["step"]), nimg=int(meta["nimg"]),
            seconds=float(meta["seconds"]),
        )  # fmt: skip

    def change_rates(self, g_lr: float | None = None, d_lr: float | None = None) -> None:
        """Go on with other learning rates; the change and its kimg are kept in ``config.rate_changes``."""
        g_lr = self.config.g_lr if g_lr is None else float(g_lr)
        d_lr = self.config.d_lr if d_lr is None else float(d_lr)
        if (g_lr, d_lr) == (self.config.g_lr, self.config.d_lr):
            return
        changes = (*self.config.rate_changes, (self.nimg / 1000.0, g_lr, d_lr))
        try:
            self.config = replace(self.config, g_lr=g_lr, d_lr=d_lr, rate_changes=changes)
        except ValueError as exc:
            raise BabyganError(f"learning rates: {exc}") from None
        self._steps = {}  # the compiled steps hold the old rates

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """The whole state, float32 (exact resumes), atomically per file, meta.json last."""
        self.state = checkpoint.to_numpy(self.state)
        meta = {
            "recipe": RECIPE,
            "config": self.config.to_dict(),
            "generator_config": self.gconfig.to_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "seconds": self.seconds,
            "backend": backend.name(),
        }
        return checkpoint.save_checkpoint(folder, self.state, meta)

    # ------------------------------------------------------------------ the compiled step

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.config.mixed_precision else "float32"

    def _make_step(self, with_r1: bool) -> Callable[..., Any]:
        c, gc, dt = self.config, self.gconfig, self.compute_dtype
        adam = {"beta1": c.adam_beta1, "beta2": c.adam_beta2, "eps": c.adam_eps}
        d_net = discriminator.discriminator
        weight, style_weight, swap = c.structure_weight, c.style_weight, c.swap_layer
        nan = np.float32(np.nan)

        def fakes_of(g, base, z):
            w = network.mapping(base, z, gc)  # the base's own codes
            if style_weight > 0:
                w = mix_styles(w, swap)  # rows k and B/2 + k: one face, two styles
            return network.synthesis({**base, **g}, w, gc, compute_dtype=dt), w

        def g_loss(g, base, d_params, z, aug):
            fakes, w = fakes_of(g, base, z)
            adv = ops.mean(ops.softplus(-d_net(d_params, augment.augment(fakes, aug), gc, compute_dtype=dt)))
            structure = style = ops.convert_to_tensor(nan)
            total = adv
            if weight > 0 or style_weight > 0:
                photo = ops.stop_gradient(network.synthesis(base, w, gc, compute_dtype=dt))
            if weight > 0:
                structure = ops.mean(ops.abs(structure_maps(fakes) - structure_maps(photo)))
                total = total + weight * structure
            if style_weight > 0:
                style = style_gap(fakes, photo)
                total = total + style_weight * style
            return total, (adv, structure, style)

        d_loss = discriminator.make_d_loss(
            gc, dt, with_r1=with_r1, gamma=c.gamma(gc.resolution), interval=c.r1_interval
        )
        d_grad, g_grad = backend.value_and_grad(d_loss), backend.value_and_grad(g_loss)

        def step(state, base, reals_u8, z_d, z_g, aug_df, aug_dr, aug_g, ema_beta):
            reals = ops.cast(reals_u8, "float32") * (1.0 / 127.5) - 1.0  # uint8 -> [-1, 1]
            fakes, _ = fakes_of(state["G"], base, z_d)
            (_, (dl, r1, real, fake)), grads = d_grad(state["D"], fakes, reals, aug_df, aug_dr)
            d_params, d_opt = adam_update(state["D"], grads, state["D_opt"], lr=c.d_lr, **adam)
            (_, (adv, structure, style)), grads = g_grad(state["G"], base, d_params, z_g, aug_g)
            g_params, g_opt = adam_update(state["G"], grads, state["G_opt"], lr=c.g_lr, **adam)
            new = {
                "G": g_params,
                "G_ema": ema_update(state["G_ema"], g_params, ema_beta),
                "D": d_params,
                "G_opt": g_opt,
                "D_opt": d_opt,
            }
            return new, ops.stack([dl, adv, structure, style, r1, real, fake])

        return backend.jit(step)

    def _host_inputs(self, images: np.ndarray) -> tuple[Any, ...]:
        """The step's inputs for ``self.step``, drawn from default_rng([seed, step])."""
        c, gc = self.config, self.gconfig
        rng = np.random.default_rng([c.seed, self.step])
        b = c.batch
        reals = sample_batch(images, rng, b, c.xflip)  # uint8 (B, R, R, 3)
        z_d = rng.standard_normal((b, gc.latent_size), dtype=np.float32)
        z_g = rng.standard_normal((b, gc.latent_size), dtype=np.float32)
        augs = [augment.draw_params(rng, b, gc.resolution, c.policy) for _ in range(3)]
        ema_nimg = min(c.ema_kimg * 1000.0, max(self.nimg, b) * 0.1)
        ema_beta = np.float32(0.5 ** (b / max(ema_nimg, 1e-8)))
        return reals, z_d, z_g, *augs, ema_beta

    def train_step(self, images: np.ndarray) -> Any:
        """One D + G update on a batch drawn from ``images`` uint8 (N, R, R, 3) -> metrics (7,) tensor
        (``METRICS``)."""
        with_r1 = self.step % self.config.r1_interval == 0
        if with_r1 not in self._steps:
            self._steps[with_r1] = self._make_step(with_r1)
        trained = {k: self.state[k] for k in ("G", "G_ema", "D", "G_opt", "D_opt")}
        new, metrics = self._steps[with_r1](trained, self.state["base"], *self._host_inputs(images))
        self.state = {**new, "base": self.state["base"]}
        self.step += 1
        self.nimg += self.config.batch
        return metrics

    # ------------------------------------------------------------------ the loop

    def check_images(self, images: np.ndarray) -> np.ndarray:
        r = self.gconfig.resolution
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (r, r, 3) or not len(images):
            raise BabyganError(
                f"training images must be uint8 (N, {r}, {r}, 3), N > 0, not {images.dtype} {images.shape}"
            )
        return images

    def train(
        self, images: np.ndarray, out_dir: str | os.PathLike[str] | None = None, *,
        sample_codes: np.ndarray | None = None, minutes: float | None = None, max_steps: int | None = None,
        report_seconds: float = 30.0, sample_kimg: float = 5.0, checkpoint_minutes: float = 3.0,
        print_fn: Callable[[str], None] = print,
    ) -> dict[str, Any]:  # fmt: skip
        """Train until ``config.total_kimg`` (or ``minutes`` of wall time, or ``max_steps``).

        With ``out_dir``: progress records in ``log.jsonl``, every ``sample_kimg`` a sheet of
        ``sample_codes`` (float32 (n, L, w_dim); default ``self.sample_codes()``) drawn by the
        base (top row) and by the anime model (below) in ``samples.png`` and ``samples/``,
        checkpoints in ``checkpoint/`` (every ``checkpoint_minutes`` and at the end).
        Returns the last progress record.
        """
        images = self.check_images(images)
        out = Path(out_dir) if out_dir is not None else None
        codes = self.sample_codes() if sample_codes is None else np.asarray(sample_codes, np.float32)
        total = int(self.config.total_kimg * 1000)
        start = last_ckpt = time.monotonic()
        deadline = start + minutes * 60 if minutes is not None else math.inf
        base_seconds = self.seconds
        pending: list[Any] = []
        steps_done = 0
        mark = (start, self.nimg)
        every = sample_kimg * 1000
        next_sample = (math.floor(self.nimg / every) + 1) * every
        record: dict[str, Any] = {}
        while self.nimg < total and time.monotonic() < deadline:
            if max_steps is not None and steps_done >= max_steps:
                break
            pending.append(self.train_step(images))
            steps_done += 1
            now = time.monotonic()
            done = self.nimg >= total or now >= deadline or steps_done == max_steps
            if now - mark[0] >= report_seconds or done:
                self.seconds = base_seconds + now - start
                record = self._report(pending, mark, print_fn, out)
                pending, mark = [], (time.monotonic(), self.nimg)
            if out is not None and (self.nimg >= next_sample or done):
                self.write_samples(out, codes)
                next_sample = (math.floor(self.nimg / every) + 1) * every
            if out is not None and time.monotonic() - last_ckpt >= checkpoint_minutes * 60:
                last_ckpt = time.monotonic()
                self.seconds = base_seconds + last_ckpt - start
                self.save(out / "checkpoint")
        if pending:
            record = self._report(pending, mark, print_fn, out)
        if out is not None:
            self.seconds = base_seconds + time.monotonic() - start
            self.save(out / "checkpoint")
        return record

    def _report(self, pending, mark, print_fn, out) -> dict[str, Any]:
        values = np.stack([np.asarray(ops.convert_to_numpy(m), np.float64) for m in pending])
        rate = (self.nimg - mark[1]) / max(time.monotonic() - mark[0], 1e-9)
        record: dict[str, Any] = {
            "kimg": self.nimg / 1000, "step": self.step, "images_per_s": rate, "minutes": self.seconds / 60,
        }  # fmt: skip
        with np.errstate(all="ignore"):
            for i, name in enumerate(METRICS):
                col = values[:, i][~np.isnan(values[:, i])]
                record[name] = float(col.mean()) if len(col) else float("nan")
        print_fn(
            f"kimg {record['kimg']:7.2f}  step {self.step:6d}  {record['minutes']:6.1f} min  "
            f"{rate:6.1f} img/s  "
            f"D {record['d_loss']:.3f}  G {record['g_adv']:.3f}  structure {record['structure']:.3f}  "
            f"style {record['style']:.3f}  "
            f"R1 {record['r1']:.4f}  D(real) {record['real']:+.2f}  D(fake) {record['fake']:+.2f}"
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    # ------------------------------------------------------------------ using the model

    def anime_params(self) -> dict[str, np.ndarray]:
        """The anime model: the base's parameters with the tuned ones' EMA (numpy float32)."""
        return {**checkpoint.to_numpy(self.state["base"]), **checkpoint.to_numpy(self.state["G_ema"])}

    def base_params(self) -> dict[str, np.ndarray]:
        return dict(checkpoint.to_numpy(self.state["base"]))

    def sample_codes(self, n: int = 8, seed: int = 2024) -> np.ndarray:
        """The base's codes of n fixed z: float32 (n, L, w_dim)."""
        z = np.random.default_rng(seed).standard_normal((n, self.gconfig.latent_size), dtype=np.float32)
        base = self.base_params()
        return np.asarray(ops.convert_to_numpy(network.mapping(base, z, self.gconfig)), np.float32)

    def render(self, w: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """Codes float32 (N, L, w_dim) through ``params`` (``anime_params()`` or ``base_params()``),
        stored noise -> uint8 (N, R, R, 3)."""
        if self._render is None:
            gc = self.gconfig
            self._render = backend.jit(lambda p, x: network.synthesis(p, x, gc, compute_dtype="float32"))
        out = [
            to_uint8(np.asarray(ops.convert_to_numpy(self._render(params, w[i : i + 32])), np.float32))
            for i in range(0, len(w), 32)
        ]
        return np.concatenate(out)

    def sample_sheet(self, codes: np.ndarray) -> np.ndarray:
        """The base's images of ``codes`` (n, L, w_dim) in the top row, the anime model's below:
        uint8 (H, W, 3)."""
        from babygan.render import contact_sheet

        codes = np.asarray(codes, np.float32)
        rows = [*self.render(codes, self.base_params()), *self.render(codes, self.anime_params())]
        return contact_sheet(rows, columns=len(codes), gap=2)

    def write_samples(self, out: str | os.PathLike[str], codes: np.ndarray) -> Path:
        from babygan.render import save_png

        out = Path(out)
        sheet = self.sample_sheet(codes)
        meta = {"kimg": self.nimg / 1000, "step": self.step, "rows": "base model, anime model"}
        save_png(out / "samples.png", sheet, meta)
        return save_png(out / "samples" / f"kimg{self.nimg:09d}.png", sheet, meta)

    def export(
        self, path: str | os.PathLike[str], base: Generator, *, info: dict[str, Any] | None = None
    ) -> Path:
        """Write the EMA anime model for ``base`` (the model this run tunes) with
        ``babygan.anime.model.save_anime_model``: atomic, float16; its info records the run."""
        from babygan.anime.model import save_anime_model

        if base.source_sha256 != self.config.base_sha256:
            raise BabyganError(
                f"{path}: this run tunes another model (sha256 {self.config.base_sha256[:12]}), "
                f"not the base given ({base.source_sha256[:12]})"
            )
        c = self.config
        record = {
            "name": "babygan anime (anime96)",
            "training": {
                "kimg": self.nimg / 1000, "steps": self.step, "minutes": round(self.seconds / 60, 1),
                "backend": backend.name(), "settings": c.to_dict(),
            },
            **(info or {}),
        }  # fmt: skip
        return save_anime_model(path, base, self.anime_params(), swap_layer=c.swap_layer, info=record)
