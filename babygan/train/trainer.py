"""Train babygan's own StyleGAN (v1) generator: the loop, its compiled step, samples, export.

One compiled step (``babygan.backend.jit``) does a discriminator update and then a generator
update on a batch: non-saturating logistic loss, lazy R1 on the reals every ``r1_interval``
steps (a second compiled variant), DiffAugment on everything the discriminator sees, style
mixing, Adam (betas 0, 0.99), and the EMA generator update. All randomness is drawn on the
host from ``numpy.random.default_rng([seed, step])`` (so a resumed run draws exactly what an
uninterrupted one would), except the generator's per-pixel noise inputs, which are made
in-graph from a drawn seed (``augment.hash_normal``).

Arrays crossing the boundary: training images uint8 (N, R, R, 3); generated images float32
(N, R, R, 3) in ~[-1, 1]; samples uint8.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from keras import ops

from babygan import backend
from babygan.errors import BabyganError
from babygan.stylegan import network
from babygan.stylegan.config import GeneratorConfig
from babygan.stylegan.generator import Generator, to_uint8
from babygan.train import augment, checkpoint, discriminator
from babygan.train.config import TrainConfig
from babygan.train.data import sample_batch
from babygan.train.optim import adam_init, adam_update, ema_update

log = logging.getLogger("babygan")

# Metrics each step returns, in this order (r1 is NaN on steps without R1).
METRICS = ("d_loss", "g_loss", "r1", "real", "fake")


def _is_fixed(name: str) -> bool:
    """Generator parameters that are not trained: the stored noise inputs and dlatent_avg."""
    return name == "dlatent_avg" or name.endswith(".noise")


def init_generator(config: GeneratorConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Official StyleGAN (v1) initial parameters (unscaled, float32).

    Weights N(0, 1 / lrmul) (mapping: N(0, 100)), biases 0, noise strengths 0, the constant
    input 1, stored noise inputs N(0, 1), dlatent_avg 0.
    """
    rng = np.random.default_rng([seed, 0x6E4])
    params = {}
    for name, shape in config.param_shapes().items():
        if name.endswith(".weight"):
            std = 1.0 / config.mapping_lrmul if name.startswith("mapping.") else 1.0
            a = rng.standard_normal(shape) * std
        elif name.endswith(".noise"):
            a = rng.standard_normal(shape)
        elif name == "synthesis.const":
            a = np.ones(shape)
        else:  # biases, style biases, noise strengths, dlatent_avg
            a = np.zeros(shape)
        params[name] = a.astype(np.float32)
    return params


def init_state(config: TrainConfig) -> dict[str, Any]:
    """The whole training state at step 0 (nested dicts of numpy float32 arrays)."""
    gc = config.generator_config()
    g_all = init_generator(gc, config.seed)
    g = {k: v for k, v in g_all.items() if not _is_fixed(k)}
    d = discriminator.init_params(gc, config.seed)
    return {
        "G": g,
        "G_ema": {k: v.copy() for k, v in g.items()},
        "G_fixed": {k: v for k, v in g_all.items() if _is_fixed(k)},
        "D": d,
        "G_opt": adam_init(g, config.adam_beta1),
        "D_opt": adam_init(d, config.adam_beta1),
    }


class Trainer:
    """A training run: its settings, its state, and the compiled steps.

    ``Trainer(config)`` starts from the official initialisation; ``Trainer.resume(folder)``
    from a checkpoint. ``train(images, ...)`` runs until ``config.total_kimg`` thousand images
    have been shown (or a time limit), printing progress and writing samples and checkpoints.
    """

    def __init__(
        self,
        config: TrainConfig,
        state: dict[str, Any] | None = None,
        *,
        step: int = 0,
        nimg: int = 0,
        seconds: float = 0.0,
    ) -> None:
        self.config = config
        self.gconfig = config.generator_config()
        self.state = state if state is not None else init_state(config)
        self.step = step
        self.nimg = nimg
        self.seconds = seconds  # training time of earlier sessions, for the record
        self._steps: dict[bool, Callable[..., Any]] = {}
        self._render: Callable[..., Any] | None = None
        self._session_start = time.monotonic()
        self._session_base = seconds

    # ------------------------------------------------------------------ checkpoints

    @classmethod
    def resume(cls, folder: str | os.PathLike[str], total_kimg: float | None = None) -> Trainer:
        """The run saved in ``folder`` (``total_kimg`` may be raised to train on)."""
        state, meta = checkpoint.load_checkpoint(folder)
        for opt in ("G_opt", "D_opt"):
            if isinstance(state.get(opt), dict) and "v_log2" in state[opt]:
                logs = state[opt].pop("v_log2")
                state[opt]["v"] = {k: np.exp2(v.astype(np.float32)) for k, v in logs.items()}
            state.get(opt, {}).setdefault("m", {})
        config = TrainConfig.from_dict(meta["config"])
        if total_kimg is not None:
            config = replace(config, total_kimg=total_kimg)
        expected = init_state(config)
        flat_have, flat_want = checkpoint.flatten(state), checkpoint.flatten(expected)
        bad = [k for k in flat_want if k not in flat_have or flat_have[k].shape != flat_want[k].shape]
        if bad or set(flat_have) - set(flat_want):
            raise BabyganError(f"{folder}: checkpoint does not fit its own settings (e.g. {bad[:2]})")
        return cls(
            config, state, step=int(meta["step"]), nimg=int(meta["nimg"]), seconds=float(meta["seconds"])
        )

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write a checkpoint of the whole state into ``folder`` (atomic per file, meta last).

        Parameters, EMA and first moments are float32 as trained; Adam's second moments are
        stored as float16 log2 values (resuming changes sqrt(v) by about 1%)."""
        self.state = checkpoint.to_numpy(self.state)
        meta = {
            "config": self.config.to_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "seconds": self.seconds,
            "backend": backend.name(),
        }
        # Adam's second moments as float16 log2 (about 1% on sqrt(v)): a checkpoint of the default
        # 64 px run is 32 MB instead of 40, small enough to travel with the data to a GPU machine.
        stored = dict(self.state)
        for opt in ("G_opt", "D_opt"):
            with np.errstate(divide="ignore"):
                logs = {k: np.log2(v).astype(np.float16) for k, v in self.state[opt]["v"].items()}
            stored[opt] = {"m": self.state[opt]["m"], "t": self.state[opt]["t"], "v_log2": logs}
        return checkpoint.save_checkpoint(folder, stored, meta)

    # ------------------------------------------------------------------ the compiled step

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.config.mixed_precision else "float32"

    def _generate(self, g_params, z, mix, seed):
        """z float32 (2B, Z), mix float32 (B, L, 1) (1 = first latent), seed uint32 -> (B, R, R, 3)."""
        gc = self.gconfig
        w = network.mapping(g_params, z, gc)  # (2B, L, D)
        b = mix.shape[0]
        w = w[:b] * mix + w[b:] * (1.0 - mix)
        noises = [
            augment.hash_normal((b, h, wd, 1), seed, stream=i)
            for i, (h, wd) in enumerate(network.noise_shapes(gc))
        ]
        return network.synthesis(g_params, w, gc, noises, compute_dtype=self.compute_dtype)

    def _make_step(self, with_r1: bool) -> Callable[..., Any]:
        c, gc, dt = self.config, self.gconfig, self.compute_dtype
        gamma, interval = c.gamma, c.r1_interval
        adam = {"beta1": c.adam_beta1, "beta2": c.adam_beta2, "eps": c.adam_eps}
        vg = backend.value_and_grad
        d_net = discriminator.discriminator

        d_loss = discriminator.make_d_loss(gc, dt, with_r1=with_r1, gamma=gamma, interval=interval)

        def g_loss(g_params, d_params, z, mix, seed, aug):
            fakes = self._generate(g_params, z, mix, seed)
            fake = d_net(d_params, augment.augment(fakes, aug), gc, compute_dtype=dt)
            return ops.mean(ops.softplus(-fake)), None

        d_grad, g_grad = vg(d_loss), vg(g_loss)

        def step(state, reals_u8, z_d, mix_d, z_g, mix_g, seeds, aug_df, aug_dr, aug_g, ema_beta):
            reals = ops.cast(reals_u8, "float32") * (1.0 / 127.5) - 1.0  # uint8 -> [-1, 1]
            fakes = self._generate(state["G"], z_d, mix_d, seeds[0])
            (_, (dl, r1, real, fake)), grads = d_grad(state["D"], fakes, reals, aug_df, aug_dr)
            d_params, d_opt = adam_update(state["D"], grads, state["D_opt"], lr=c.d_lr, **adam)
            (gl, _), grads = g_grad(state["G"], d_params, z_g, mix_g, seeds[1], aug_g)
            g_params, g_opt = adam_update(state["G"], grads, state["G_opt"], lr=c.g_lr, **adam)
            new = {
                "G": g_params,
                "D": d_params,
                "G_ema": ema_update(state["G_ema"], g_params, ema_beta),
                "G_opt": g_opt,
                "D_opt": d_opt,
            }
            return new, ops.stack([dl, gl, r1, real, fake])

        return backend.jit(step)

    def _host_inputs(self, images: np.ndarray) -> tuple[Any, ...]:
        """The step's inputs for ``self.step``, drawn from default_rng([seed, step])."""
        c, gc = self.config, self.gconfig
        rng = np.random.default_rng([c.seed, self.step])
        b, layers = c.batch, gc.num_layers
        reals = sample_batch(images, rng, b, c.xflip)  # uint8 (B, R, R, 3)

        def latents():
            z = rng.standard_normal((2 * b, gc.latent_size), dtype=np.float32)
            cut = np.where(rng.random(b) < c.style_mixing, rng.integers(1, max(layers, 2), b), layers)
            mix = (np.arange(layers)[None, :] < cut[:, None]).astype(np.float32)[..., None]  # (B, L, 1)
            return z, mix

        z_d, mix_d = latents()
        z_g, mix_g = latents()
        seeds = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)
        augs = [augment.draw_params(rng, b, c.resolution, c.policy) for _ in range(3)]
        ema_nimg = c.ema_kimg * 1000.0
        if c.ema_rampup is not None:
            ema_nimg = min(ema_nimg, max(self.nimg, b) * c.ema_rampup)
        ema_beta = np.float32(0.5 ** (b / max(ema_nimg, 1e-8)))
        return reals, z_d, mix_d, z_g, mix_g, seeds, *augs, ema_beta

    def compile(self, images: np.ndarray) -> float:
        """Compile both step variants (with and without R1) by running each once on the current
        state and discarding the result (the step is a pure function); returns the seconds taken."""
        start = time.monotonic()
        variants = (True,) if self.config.r1_interval == 1 else (True, False)
        trained = {k: self.state[k] for k in ("G", "D", "G_ema", "G_opt", "D_opt")}
        for with_r1 in variants:
            if with_r1 not in self._steps:
                self._steps[with_r1] = self._make_step(with_r1)
                _, metrics = self._steps[with_r1](trained, *self._host_inputs(images))
                ops.convert_to_numpy(metrics)
        return time.monotonic() - start

    def train_step(self, images: np.ndarray) -> Any:
        """One D + G update on a batch drawn from ``images`` uint8 (N, R, R, 3) -> metrics (5,) tensor."""
        with_r1 = self.step % self.config.r1_interval == 0
        if with_r1 not in self._steps:
            self._steps[with_r1] = self._make_step(with_r1)
        trained = {k: self.state[k] for k in ("G", "D", "G_ema", "G_opt", "D_opt")}
        new, metrics = self._steps[with_r1](trained, *self._host_inputs(images))
        self.state = {**new, "G_fixed": self.state["G_fixed"]}
        self.step += 1
        self.nimg += self.config.batch
        return metrics

    # ------------------------------------------------------------------ the loop

    def train(
        self,
        images: np.ndarray,
        out_dir: str | os.PathLike[str] | None = None,
        *,
        minutes: float | None = None,
        max_steps: int | None = None,
        report_seconds: float = 30.0,
        sample_kimg: float = 50.0,
        checkpoint_minutes: float = 3.0,
        print_fn: Callable[[str], None] = print,
    ) -> dict[str, Any]:
        """Train until ``config.total_kimg`` (or ``minutes`` of wall time, or ``max_steps``).

        images: uint8 (N, R, R, 3) at the config's resolution. With ``out_dir``: progress
        lines go to ``out_dir/log.jsonl`` too, sample grids to ``out_dir/samples/``, and
        checkpoints to ``out_dir/checkpoint/`` (every ``checkpoint_minutes`` and at the end).
        Returns the last progress record.
        """
        images = self._check_images(images)
        out = Path(out_dir) if out_dir is not None else None
        total = int(self.config.total_kimg * 1000)
        start = time.monotonic()
        deadline = start + minutes * 60 if minutes is not None else math.inf
        last_ckpt = start
        self._session_start, self._session_base = start, self.seconds
        steps_done = 0
        pending: list[Any] = []
        mark = (time.monotonic(), self.nimg)
        next_sample = (math.floor(self.nimg / (sample_kimg * 1000)) + 1) * sample_kimg * 1000
        record: dict[str, Any] = {}
        if self.nimg < total:
            print_fn(f"compiled the training steps in {self.compile(images):.1f} s")
            mark = (time.monotonic(), self.nimg)
        while self.nimg < total and time.monotonic() < deadline:
            if max_steps is not None and steps_done >= max_steps:
                break
            pending.append(self.train_step(images))
            steps_done += 1
            now = time.monotonic()
            done = self.nimg >= total or now >= deadline or steps_done == max_steps
            if now - mark[0] >= report_seconds or done:
                record = self._report(pending, mark, print_fn, out)
                mark = (time.monotonic(), self.nimg)
                pending = []
            if out is not None and (self.nimg >= next_sample or done):
                self._write_samples(out)
                next_sample = (math.floor(self.nimg / (sample_kimg * 1000)) + 1) * sample_kimg * 1000
            if out is not None and (time.monotonic() - last_ckpt >= checkpoint_minutes * 60):
                last_ckpt = time.monotonic()
                self.seconds = self._session_base + last_ckpt - start
                self.save(out / "checkpoint")
        if pending:
            record = self._report(pending, mark, print_fn, out)
        if out is not None:
            self.seconds = self._session_base + time.monotonic() - start
            self.save(out / "checkpoint")
        return record

    def _check_images(self, images: np.ndarray) -> np.ndarray:
        r = self.config.resolution
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (r, r, 3):
            raise BabyganError(
                f"training images must be uint8 (N, {r}, {r}, 3), not {images.dtype} {images.shape}"
            )
        if len(images) == 0:
            raise BabyganError("no training images")
        return images

    def _report(
        self, pending: list[Any], mark: tuple[float, int], print_fn: Callable[[str], None], out: Path | None
    ) -> dict[str, Any]:
        values = (
            np.stack([np.asarray(ops.convert_to_numpy(m), np.float64) for m in pending]) if pending else None
        )
        now = time.monotonic()
        rate = (self.nimg - mark[1]) / max(now - mark[0], 1e-9)
        minutes = (self._session_base + now - self._session_start) / 60
        record: dict[str, Any] = {
            "kimg": self.nimg / 1000,
            "step": self.step,
            "images_per_s": rate,
            "minutes": minutes,
        }
        if values is not None:
            with np.errstate(all="ignore"):
                for i, name in enumerate(METRICS):
                    col = values[:, i]
                    col = col[~np.isnan(col)]
                    record[name] = float(col.mean()) if len(col) else float("nan")
        print_fn(
            f"kimg {record['kimg']:9.1f}  step {self.step:7d}  {minutes:6.1f} min  {rate:8.1f} img/s  "
            f"D {record.get('d_loss', math.nan):.3f}  G {record.get('g_loss', math.nan):.3f}  "
            f"R1 {record.get('r1', math.nan):.4f}  D(real) {record.get('real', math.nan):+.2f}  "
            f"D(fake) {record.get('fake', math.nan):+.2f}"
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
        return record

    # ------------------------------------------------------------------ samples and export

    def ema_params(self) -> dict[str, np.ndarray]:
        """The EMA generator's full parameter dict (with the fixed noise inputs), numpy float32."""
        params = {**checkpoint.to_numpy(self.state["G_ema"]), **checkpoint.to_numpy(self.state["G_fixed"])}
        return {k: params[k].astype(np.float32) for k in self.gconfig.param_shapes()}

    def render(self, z: np.ndarray, *, truncation_psi: float = 1.0) -> np.ndarray:
        """z float32 (N, Z) -> uint8 (N, R, R, 3) from the EMA generator (stored noise; no
        truncation unless ``truncation_psi`` < 1, toward the mean w of 4096 latents)."""
        if self._render is None:
            gc = self.gconfig

            def render(params, z, psi):
                w = network.mapping(params, z, gc)
                avg = params["dlatent_avg"]
                w = avg + (w - avg) * psi
                return network.synthesis(params, w, gc, compute_dtype=self.compute_dtype)

            self._render = backend.jit(render)
        params = self.ema_params()
        if truncation_psi != 1.0:
            params["dlatent_avg"] = self.mean_w()
        out = []
        for i in range(0, len(z), self.config.batch):
            chunk = np.asarray(z[i : i + self.config.batch], np.float32)
            images = self._render(params, chunk, np.float32(truncation_psi))
            out.append(to_uint8(np.asarray(ops.convert_to_numpy(images), np.float32)))
        return np.concatenate(out)

    def mean_w(self, n: int = 4096) -> np.ndarray:
        """The EMA mapping network's mean output over n fixed random z: (dlatent_size,) float32."""
        z = np.random.default_rng(12345).standard_normal((n, self.gconfig.latent_size), dtype=np.float32)
        params = checkpoint.to_numpy(self.state["G_ema"])
        w = [
            np.asarray(ops.convert_to_numpy(network.mapping(params, z[i : i + 1024], self.gconfig)))[:, 0]
            for i in range(0, n, 1024)
        ]
        return np.concatenate(w).mean(axis=0).astype(np.float32)

    def sample_grid(self, n: int = 32, seed: int = 2024) -> np.ndarray:
        """A contact sheet of n EMA-generator faces from fixed latents: uint8 (H, W, 3)."""
        from babygan.render import contact_sheet

        z = np.random.default_rng(seed).standard_normal((n, self.gconfig.latent_size), dtype=np.float32)
        faces = self.render(z)
        return contact_sheet(list(faces), columns=min(8, n), gap=2)

    def _write_samples(self, out: Path) -> Path:
        from babygan.render import save_png

        grid = self.sample_grid()
        meta = {"kimg": self.nimg / 1000, "step": self.step}
        path = save_png(out / "samples" / f"kimg{self.nimg // 1000:06d}.png", grid, meta)
        save_png(out / "samples.png", grid, meta)
        return path

    def export(
        self, path: str | os.PathLike[str], *, dataset: str = "", card: bool = True, info: dict | None = None
    ) -> Path:
        """Write the EMA generator in babygan's npz format (float16 storage; dlatent_avg = mean w
        of 4096 latents) and beside it ``<stem>.md``, a model card with the run's facts.
        ``info`` (``Generator.info``) records above all the ``crop`` parents must be aligned with."""
        params = self.ema_params()
        params["dlatent_avg"] = self.mean_w()
        digest = hashlib.sha256()
        for name in sorted(params):
            digest.update(name.encode())
            digest.update(params[name].tobytes())
        gen = Generator(self.gconfig, params, source_sha256=digest.hexdigest(), info=info)
        path = gen.save(path, storage="float16")
        if card:
            from babygan.atomic import write_text_atomic

            write_text_atomic(Path(path).with_suffix(".md"), self.model_card(Path(path), dataset))
        return Path(path)

    def model_card(self, path: Path, dataset: str = "") -> str:
        c, gc = self.config, self.gconfig
        size_mb = path.stat().st_size / 1e6 if path.exists() else float("nan")
        lines = [
            f"# {path.name}: babygan's own StyleGAN (v1) face generator",
            "",
            f"- architecture: StyleGAN v1 generator, {gc.resolution} px, {gc.num_layers} synthesis layers, "
            f"fmap_base {gc.fmap_base}, fmap_max {gc.fmap_max}, z/w {gc.latent_size}/{gc.dlatent_size}, "
            f"{gc.mapping_layers} mapping layers; {gc.num_params() / 1e6:.2f} M parameters; "
            f"file {size_mb:.1f} MB",
            "- weights: the exponential moving average of the trained generator "
            f"(half-life {c.ema_kimg:g} kimg)",
            f"- training: {self.nimg / 1000:.0f} kimg ({self.step} steps of batch {c.batch}), "
            f"{self.seconds / 60:.1f} min on the {backend.name()} backend, "
            f"{'bfloat16 convolutions' if c.mixed_precision else 'float32'}",
            "- recipe: non-saturating logistic loss, lazy R1 "
            f"(gamma {c.gamma:g}, every {c.r1_interval} steps), Adam lr {c.g_lr:g}/{c.d_lr:g} "
            f"betas ({c.adam_beta1:g}, {c.adam_beta2:g}), style mixing {c.style_mixing:g}, "
            f"DiffAugment {c.augment or 'off'}, x-flips {'on' if c.xflip else 'off'}, seed {c.seed}",
            f"- data: {dataset or 'not recorded'}",
            "- licence: trained on UTKFace, which is for non-commercial research only; so is this model",
            "",
            "Training settings (babygan.train.TrainConfig):",
            "",
            "```",
            json.dumps(c.to_dict(), indent=1, sort_keys=True),
            "```",
            "",
        ]
        return "\n".join(lines)
