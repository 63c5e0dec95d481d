"""The built-in model's CPU recipe: E + StyleGAN synthesis as an autoencoder, then adversarial sharpening.

A GAN from scratch needs millions of images, days on a 2-core CPU; an autoencoder whose
decoder is the synthesis network learns faces from a few tens of thousands. Stage 1 trains
E and G on reconstruction; stage 2 adds the discriminator so that G draws sharper faces,
while the reconstruction term keeps each person (``AutoencoderConfig``).

One compiled step per variant (``babygan.backend.jit``): stage 1; stage 2 without and with
lazy R1. All randomness is drawn on the host from ``numpy.random.default_rng([seed, step])``,
so a resumed run draws what an uninterrupted one would. Checkpoints as the GAN trainer's
(``babygan.train.checkpoint``): E, G (trainable synthesis), their EMA, G_fixed (the stored
noise inputs), D and the Adam states.

A run grown from a smaller model (``babygan.train.grow``, ``config.fade_kimg`` > 0) carries the
fade-in's extra parameters in E and G and blends its new blocks in as ``fade_alpha`` goes
from 0 to 1 over ``fade_kimg``; it is finished only once the fade is over.

Arrays crossing the boundary: training images uint8 (N, R, R, 3); codes float32
(N, num_layers, dlatent_size); reconstructions float32 in ~[-1, 1] or uint8.
"""

from __future__ import annotations

import json
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
from babygan.encoder.perceptual import msssim_loss_per_image
from babygan.errors import BabyganError
from babygan.quality import reconstruction_quality
from babygan.stylegan import image_encoder, network
from babygan.stylegan.config import ENCODER_PREFIX
from babygan.stylegan.generator import to_uint8
from babygan.train import augment, checkpoint, discriminator
from babygan.train.config import AutoencoderConfig
from babygan.train.data import sample_batch
from babygan.train.optim import adam_init, adam_update, ema_update
from babygan.train.trainer import init_generator

METRICS = ("recon", "l1", "msssim", "lpips", "identity", "d_loss", "g_adv", "r1")
_TRAINED = ("E", "G", "E_ema", "G_ema", "D", "EG_opt", "D_opt")


def init_state(config: AutoencoderConfig) -> dict[str, Any]:
    """The training state at step 0 (nested dicts of numpy float32 arrays)."""
    gc = config.generator_config()
    g_all = init_generator(gc, config.seed)
    # a constant input of ones is a constant map: instance norm would divide by sqrt(1e-8)
    g_all["synthesis.const"] = np.random.default_rng([config.seed, 0xC0]).standard_normal(
        g_all["synthesis.const"].shape, dtype=np.float32
    )
    g = {k: v for k, v in g_all.items() if k.startswith("synthesis.") and not k.endswith(".noise")}
    fixed = {k: v for k, v in g_all.items() if k.endswith(".noise")}
    e = image_encoder.init_params(gc, config.seed)
    if config.fade_kimg > 0:  # the grown run's fade-in parameters (babygan.train.grow sets them)
        rng = np.random.default_rng([config.seed, 0xFADE])
        for name, shape in gc.fade_param_shapes().items():
            value = rng.standard_normal(shape) if name.endswith(".weight") else np.zeros(shape)
            (e if name.startswith(ENCODER_PREFIX) else g)[name] = value.astype(np.float32)
    d = discriminator.init_params(gc, config.seed)
    return {
        "E": e,
        "G": g,
        "E_ema": {k: v.copy() for k, v in e.items()},
        "G_ema": {k: v.copy() for k, v in g.items()},
        "G_fixed": fixed,
        "D": d,
        "EG_opt": adam_init({**e, **g}, config.adam_beta1),
        "D_opt": adam_init(d, 0.0),
    }


def reconstruction_loss(fakes: Any, reals: Any, msssim_weight: float) -> tuple[Any, Any, Any]:
    """Per-image (total, multi-scale L1, 1 - MS-SSIM) of float (N, R, R, 3) batches in [-1, 1] -> 3 x (N,)."""
    l1 = 0.0
    a, b = fakes, reals
    for k in range(3):  # full size, 1/2 and 1/4: coarse shapes weigh as much as detail
        if k:
            a = ops.average_pool(a, 2, 2, padding="valid")
            b = ops.average_pool(b, 2, 2, padding="valid")
        l1 = l1 + ops.mean(ops.abs(a - b), axis=(1, 2, 3)) / 3.0
    ms = msssim_loss_per_image((fakes + 1.0) * 127.5, (reals + 1.0) * 127.5)
    return l1 + msssim_weight * ms, l1, ms


class AutoencoderTrainer:
    """A run of the autoencoder recipe: settings, state, compiled steps, loop, evaluation.

    ``AutoencoderTrainer(config)`` starts fresh, ``AutoencoderTrainer.resume(folder)`` from
    a checkpoint; ``train(images, out_dir, ...)`` runs to ``config.total_kimg`` (or a time limit).
    """

    def __init__(
        self, config: AutoencoderConfig, state: dict[str, Any] | None = None, *, step: int = 0,
        nimg: int = 0, seconds: float = 0.0, stage_seconds: dict[str, float] | None = None,
    ) -> None:  # fmt: skip
        self.config = config
        self.gconfig = config.generator_config()
        self.state = state if state is not None else init_state(config)
        self.step = step
        self.nimg = nimg
        self.seconds = seconds
        self.stage_seconds = dict(stage_seconds or {"autoencoder": 0.0, "adversarial": 0.0})
        self._steps: dict[tuple[bool, bool], Callable[..., Any]] = {}
        self._encode_render: Callable[..., Any] | None = None
        self._face: Any = None  # babygan.identity.perceptual.FacePerceptual, when a weight asks for it

    # ------------------------------------------------------------------ checkpoints

    @classmethod
    def resume(
        cls, folder: str | os.PathLike[str], total_kimg: float | None = None, ae_kimg: float | None = None
    ) -> AutoencoderTrainer:
        """The run saved in ``folder``; ``total_kimg`` / ``ae_kimg`` retune the stage lengths (stage 1
        may only be lengthened or shortened while it runs, and not below the fade)."""
        state, meta = checkpoint.load_checkpoint(folder)
        if meta.get("recipe") != "autoencoder":
            raise BabyganError(f"{folder}: not a checkpoint of the autoencoder recipe")
        try:
            config = AutoencoderConfig.from_dict(meta["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BabyganError(f"{folder}: checkpoint settings unreadable ({exc})") from exc
        if ae_kimg is not None and ae_kimg != config.ae_kimg:
            if int(meta["nimg"]) >= min(ae_kimg, config.ae_kimg) * 1000 or ae_kimg < config.fade_kimg:
                at = int(meta["nimg"]) / 1000
                raise BabyganError(
                    f"{folder}: stage 1 cannot end at {ae_kimg:g} kimg (the run is at {at:g} kimg, "
                    f"stage 1 to {config.ae_kimg:g}, fade {config.fade_kimg:g})"
                )
            config = replace(config, ae_kimg=ae_kimg, total_kimg=max(config.total_kimg, ae_kimg))
        if total_kimg is not None:
            config = replace(config, total_kimg=max(total_kimg, config.ae_kimg))
        flat_have, flat_want = checkpoint.flatten(state), checkpoint.flatten(init_state(config))
        bad = [k for k in flat_want if k not in flat_have or flat_have[k].shape != flat_want[k].shape]
        if bad or set(flat_have) - set(flat_want):
            raise BabyganError(f"{folder}: checkpoint does not fit its own settings (e.g. {bad[:2]})")
        return cls(
            config, state, step=int(meta["step"]), nimg=int(meta["nimg"]), seconds=float(meta["seconds"]),
            stage_seconds=meta.get("stage_seconds"),
        )  # fmt: skip

    def save(self, folder: str | os.PathLike[str]) -> Path:
        self.state = checkpoint.to_numpy(self.state)
        meta = {
            "recipe": "autoencoder",
            "config": self.config.to_dict(),
            "step": self.step,
            "nimg": self.nimg,
            "seconds": self.seconds,
            "stage_seconds": self.stage_seconds,
            "backend": backend.name(),
        }
        return checkpoint.save_checkpoint(folder, self.state, meta)

    # ------------------------------------------------------------------ the compiled steps

    @property
    def compute_dtype(self) -> str:
        return "bfloat16" if self.config.mixed_precision else "float32"

    @property
    def adversarial(self) -> bool:
        """Whether the next step is of stage 2."""
        return self.nimg >= self.config.ae_kimg * 1000

    @property
    def fade_alpha(self) -> float:
        """How far a grown run's new blocks have faded in: 0 at the start, 1 after ``fade_kimg``
        (and always 1 for a run that was not grown)."""
        if self.config.fade_kimg <= 0:
            return 1.0
        return min(1.0, self.nimg / (self.config.fade_kimg * 1000))

    def _fade(self, alpha: Any) -> Any:
        """What E and the synthesis get as ``fade_alpha``: None unless the run is grown."""
        return alpha if self.config.fade_kimg > 0 else None

    def _encode(self, e_params: Any, images: Any, alpha: Any) -> Any:
        return image_encoder.encode(
            e_params, images, self.gconfig, compute_dtype=self.compute_dtype, fade_alpha=self._fade(alpha)
        )

    def _decode(self, g_params: Any, fixed: Any, w: Any, alpha: Any) -> Any:
        return network.synthesis(
            {**g_params, **fixed}, w, self.gconfig, compute_dtype=self.compute_dtype,
            fade_alpha=self._fade(alpha),
        )  # fmt: skip

    def face_measure(self) -> Any:
        """dlib's face network for the perceptual and identity terms, loaded once (FacePerceptual)."""
        if self._face is None:
            from babygan.identity.perceptual import FacePerceptual

            c = self.config
            self._face = FacePerceptual(c.resolution, c.crop_scale, compute_dtype=self.compute_dtype)
        return self._face

    def _make_step(self, adversarial: bool, with_r1: bool) -> Callable[..., Any]:
        c, gc, dt = self.config, self.gconfig, self.compute_dtype
        vg = backend.value_and_grad
        d_net = discriminator.discriminator
        adam = {"beta1": c.adam_beta1, "beta2": c.adam_beta2, "eps": c.adam_eps}
        nan = np.float32(np.nan)

        face = self.face_measure() if c.perceptual_weight > 0 or c.identity_weight > 0 else None

        def fakes_of(eg, fixed, reals, mix, alpha):
            w = self._encode(eg, reals, alpha)
            recon = self._decode(eg, fixed, w, alpha)
            if not adversarial:
                return recon, None
            # codes blended between two faces of the batch: what a child prediction decodes
            blend = self._decode(eg, fixed, w * mix + ops.roll(w, 1, axis=0) * (1.0 - mix), alpha)
            return recon, blend

        def eg_loss(eg, fixed, d_params, reals, mix, aug, alpha):
            recon, blend = fakes_of(eg, fixed, reals, mix, alpha)
            total, l1, ms = reconstruction_loss(recon, reals, c.msssim_weight)
            lp = idd = ops.convert_to_tensor(nan)
            if face is not None:  # dlib's network: one pass for both terms
                lp_n, id_n = face.distances(recon, reals)
                total = total + c.perceptual_weight * lp_n + c.identity_weight * id_n
                lp, idd = ops.mean(lp_n), ops.mean(id_n)
            loss = ops.mean(total)
            g_adv = ops.convert_to_tensor(nan)
            if adversarial:
                fakes = ops.concatenate([recon, blend], axis=0)
                g_adv = ops.mean(
                    ops.softplus(-d_net(d_params, augment.augment(fakes, aug), gc, compute_dtype=dt))
                )
                loss = loss + c.adv_weight * g_adv
            return loss, (ops.mean(total), ops.mean(l1), ops.mean(ms), lp, idd, g_adv, ops.stop_gradient(
                ops.concatenate([recon, blend], axis=0) if adversarial else recon))  # fmt: skip

        d_loss = discriminator.make_d_loss(gc, dt, with_r1=with_r1, gamma=c.r1_gamma, interval=c.r1_interval)

        eg_grad, d_grad = vg(eg_loss), vg(d_loss)

        def step(state, fixed, reals_u8, reals2_u8, mix, aug_g, aug_df, aug_dr, ema_beta, alpha):
            reals = ops.cast(reals_u8, "float32") * (1.0 / 127.5) - 1.0
            eg = {**state["E"], **state["G"]}
            (_, (recon, l1, ms, lp, idd, g_adv, fakes)), grads = eg_grad(
                eg, fixed, state["D"], reals, mix, aug_g, alpha
            )
            eg, eg_opt = adam_update(eg, grads, state["EG_opt"], lr=c.lr, **adam)
            e = {k: eg[k] for k in state["E"]}
            g = {k: eg[k] for k in state["G"]}
            d_params, d_opt = state["D"], state["D_opt"]
            d_l, r1 = ops.convert_to_tensor(nan), ops.convert_to_tensor(nan)
            if adversarial:  # D sees this step's fakes (detached) against fresh reals
                reals2 = ops.cast(reals2_u8, "float32") * (1.0 / 127.5) - 1.0
                (_, (d_l, r1, _, _)), grads = d_grad(d_params, fakes, reals2, aug_df, aug_dr)
                d_params, d_opt = adam_update(
                    d_params, grads, d_opt, lr=c.d_lr, beta1=0.0, beta2=c.adam_beta2, eps=c.adam_eps
                )
            new = {
                "E": e,
                "G": g,
                "E_ema": ema_update(state["E_ema"], e, ema_beta),
                "G_ema": ema_update(state["G_ema"], g, ema_beta),
                "D": d_params,
                "EG_opt": eg_opt,
                "D_opt": d_opt,
            }
            return new, ops.stack([recon, l1, ms, lp, idd, d_l, g_adv, r1])

        return backend.jit(step)

    def _host_inputs(self, images: np.ndarray) -> tuple[Any, ...]:
        c = self.config
        rng = np.random.default_rng([c.seed, self.step])
        b = c.batch
        reals = sample_batch(images, rng, b, c.xflip)
        reals2 = sample_batch(images, rng, 2 * b, c.xflip)
        mix = rng.uniform(0.0, 1.0, (b, 1, 1)).astype(np.float32)
        aug_g = augment.draw_params(rng, 2 * b, c.resolution, c.policy)
        aug_df = augment.draw_params(rng, 2 * b, c.resolution, c.policy)
        aug_dr = augment.draw_params(rng, 2 * b, c.resolution, c.policy)
        ema_nimg = min(c.ema_kimg * 1000.0, max(self.nimg, b) * 0.1)
        ema_beta = np.float32(0.5 ** (b / max(ema_nimg, 1e-8)))
        return reals, reals2, mix, aug_g, aug_df, aug_dr, ema_beta, np.float32(self.fade_alpha)

    def train_step(self, images: np.ndarray) -> Any:
        """One update on a batch drawn from ``images`` uint8 (N, R, R, 3) -> metrics (8,) tensor."""
        adversarial = self.adversarial
        key = (adversarial, adversarial and self.step % self.config.r1_interval == 0)
        if key not in self._steps:
            self._steps[key] = self._make_step(*key)
        trained = {k: self.state[k] for k in _TRAINED}
        new, metrics = self._steps[key](trained, self.state["G_fixed"], *self._host_inputs(images))
        self.state = {**new, "G_fixed": self.state["G_fixed"]}
        self.step += 1
        self.nimg += self.config.batch
        return metrics

    # ------------------------------------------------------------------ the loop

    def train(
        self, images: np.ndarray, out_dir: str | os.PathLike[str] | None = None, *,
        holdout: np.ndarray | None = None, minutes: float | None = None, max_steps: int | None = None,
        report_seconds: float = 30.0, eval_kimg: float = 5.0, checkpoint_minutes: float = 3.0,
        print_fn: Callable[[str], None] = print,
    ) -> dict[str, Any]:  # fmt: skip
        """Train until ``config.total_kimg`` (or ``minutes``, or ``max_steps``).

        With ``out_dir``: progress records in ``log.jsonl``, a grid of held-out faces and their
        reconstructions in ``samples.png``, checkpoints in ``checkpoint/``. ``holdout`` uint8
        faces are evaluated (PSNR, MS-SSIM of E alone) every ``eval_kimg``.
        """
        r = self.config.resolution
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (r, r, 3) or not len(images):
            raise BabyganError(
                f"training images must be uint8 (N, {r}, {r}, 3), not {images.dtype} {images.shape}"
            )
        out = Path(out_dir) if out_dir is not None else None
        total = int(self.config.total_kimg * 1000)
        start = last_ckpt = time.monotonic()
        deadline = start + minutes * 60 if minutes is not None else math.inf
        base_seconds = self.seconds
        pending: list[Any] = []
        steps_done = 0
        mark = (time.monotonic(), self.nimg)
        next_eval = (math.floor(self.nimg / (eval_kimg * 1000)) + 1) * eval_kimg * 1000
        record: dict[str, Any] = {}
        while self.nimg < total and time.monotonic() < deadline:
            if max_steps is not None and steps_done >= max_steps:
                break
            t0 = time.monotonic()
            stage = "adversarial" if self.adversarial else "autoencoder"
            if out is not None and stage == "adversarial" and not (out / "stage1").exists():
                self.save(out / "stage1")  # stage 1 alone, kept to compare with stage 1 + 2
            pending.append(self.train_step(images))
            steps_done += 1
            if steps_done > 1:  # the first step of a process compiles
                self.stage_seconds[stage] += time.monotonic() - t0
            now = time.monotonic()
            done = self.nimg >= total or now >= deadline or steps_done == max_steps
            if now - mark[0] >= report_seconds or done:
                self.seconds = base_seconds + now - start
                record = self._report(pending, mark, print_fn, out)
                pending, mark = [], (time.monotonic(), self.nimg)
            if out is not None and holdout is not None and (self.nimg >= next_eval or done):
                quality = self.evaluate(holdout)
                quality.update(kimg=self.nimg / 1000, step=self.step)
                print_fn(f"held-out: PSNR {quality['psnr']:.2f} dB, MS-SSIM {quality['msssim']:.4f}")
                self._log(out, {"eval": quality})
                self._write_samples(out, holdout[:16])
                next_eval = (math.floor(self.nimg / (eval_kimg * 1000)) + 1) * eval_kimg * 1000
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

    def _log(self, out: Path | None, record: dict[str, Any]) -> None:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _report(self, pending, mark, print_fn, out) -> dict[str, Any]:
        values = np.stack([np.asarray(ops.convert_to_numpy(m), np.float64) for m in pending])
        now = time.monotonic()
        rate = (self.nimg - mark[1]) / max(now - mark[0], 1e-9)
        record: dict[str, Any] = {
            "kimg": self.nimg / 1000, "step": self.step, "images_per_s": rate, "minutes": self.seconds / 60,
        }  # fmt: skip
        with np.errstate(all="ignore"):
            for i, name in enumerate(METRICS):
                col = values[:, i][~np.isnan(values[:, i])]
                record[name] = float(col.mean()) if len(col) else float("nan")
        c = self.config
        if c.fade_kimg > 0:
            record["fade_alpha"] = self.fade_alpha
        face = (
            f", face {record['lpips']:.3f}, id {record['identity']:.3f}"
            if c.perceptual_weight or c.identity_weight
            else ""
        )
        fade = f"  fade {self.fade_alpha:.2f}" if c.fade_kimg > 0 and self.fade_alpha < 1 else ""
        print_fn(
            f"kimg {record['kimg']:7.1f}  step {self.step:6d}  {record['minutes']:6.1f} min  "
            f"{rate:6.1f} img/s  "
            f"recon {record['recon']:.4f} (L1 {record['l1']:.4f}, 1-MS-SSIM {record['msssim']:.4f}{face})  "
            f"D {record['d_loss']:.3f}  G adv {record['g_adv']:.3f}  R1 {record['r1']:.4f}{fade}"
        )
        self._log(out, record)
        return record

    # ------------------------------------------------------------------ using the model

    def ema_params(self) -> dict[str, np.ndarray]:
        """E's and the synthesis network's EMA parameters with the stored noise inputs (numpy float32)."""
        return {
            **checkpoint.to_numpy(self.state["E_ema"]),
            **checkpoint.to_numpy(self.state["G_ema"]),
            **checkpoint.to_numpy(self.state["G_fixed"]),
        }

    def encode_render(self, faces: np.ndarray, *, chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """uint8 faces (N, R, R, 3) -> (codes float32 (N, L, D), reconstructions float32 (N, R, R, 3))."""
        if self._encode_render is None:
            gc, dt = self.gconfig, self.compute_dtype

            def run(params, faces_u8, alpha):
                x = ops.cast(faces_u8, "float32") * (1.0 / 127.5) - 1.0
                w = self._encode(params, x, alpha)
                return w, network.synthesis(params, w, gc, compute_dtype=dt, fade_alpha=self._fade(alpha))

            self._encode_render = backend.jit(run)
        params = self.ema_params()
        alpha = np.float32(self.fade_alpha)
        codes, recons = [], []
        for i in range(0, len(faces), chunk):
            w, img = self._encode_render(params, np.asarray(faces[i : i + chunk], np.uint8), alpha)
            codes.append(np.asarray(ops.convert_to_numpy(w), np.float32))
            recons.append(np.asarray(ops.convert_to_numpy(img), np.float32))
        return np.concatenate(codes), np.concatenate(recons)

    def evaluate(self, faces: np.ndarray) -> dict[str, float]:
        """E alone on ``faces`` uint8: mean PSNR (dB, uint8 images, peak 255) and MS-SSIM."""
        _, recon = self.encode_render(faces)
        return reconstruction_quality(to_uint8(recon), faces)

    def _write_samples(self, out: Path, faces: np.ndarray) -> Path:
        from babygan.render import contact_sheet, save_png

        _, recon = self.encode_render(faces)
        rows = [f for pair in zip(faces, to_uint8(recon), strict=True) for f in pair]
        grid = contact_sheet(rows, columns=8, gap=2)
        return save_png(out / "samples.png", grid, {"kimg": self.nimg / 1000, "step": self.step})
