#!/usr/bin/env python
"""Where one encoder iteration's time goes at 1024 px: each piece of the step timed alone.

The generator is the full FFHQ architecture with random weights (the cost is that of the
trained weights); VGG16 is randomly initialised (the real file cannot be fetched offline;
the cost is the same). At batch ``--batch`` (default 2, two parents), each piece is compiled
alone (``backend.jit``) and timed ``--repeats`` times (the minimum is kept):

  synthesis_forward           render 1024 px from W+ (the step's forward pass)
  synthesis_forward_backward  the same with d(sum of the 256 px image)/dW+ (what the step needs)
  downsample_forward_backward the 1024 -> 256 area average and its gradient
  vgg16_forward_backward      VGG16 block3_conv3 of a 256 px image and d/d image
  pixel_msssim_forward_backward   logcosh + MS-SSIM at 256 px and d/d image
  adam_update                 Adam + stochastic clipping on (N, 18, 512)
  whole_step                  the encoder's compiled step (all of the above at once)

Prints one JSON object with the load average at start and end.

    python scripts/bench_encoder_step.py [--batch 2] [--precision fp32|bf16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import _random_vgg16


def _best(fn: Any, args: tuple, repeats: int) -> float:
    from keras import ops

    def run() -> None:
        out = fn(*args)
        leaf = out
        while isinstance(leaf, tuple | list):
            leaf = leaf[-1]
        ops.convert_to_numpy(leaf)  # waits for the result

    run()  # trace
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append(time.perf_counter() - t0)
    return round(min(times), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    start_load = [round(x, 2) for x in os.getloadavg()]

    from babygan import backend

    backend.start()  # as the commands run TensorFlow (oneDNN on AVX2-only CPUs), before Keras
    import keras
    from keras import ops

    from babygan.encoder import EncoderSettings
    from babygan.encoder.images import caffe_preprocess
    from babygan.encoder.perceptual import logcosh_per_image, msssim_loss_per_image, vgg16_features
    from babygan.encoder.step import make_adam_step, make_loss
    from babygan.stylegan import network, random_generator

    G = random_generator(resolution=1024, fmap_base=8192, fmap_max=512, seed=0).with_precision(args.precision)
    n, size, dtype = args.batch, 256, G.compute_dtype
    rng = np.random.default_rng(0)
    w = ops.convert_to_tensor(np.tile(G.dlatent_avg, (n, G.num_layers, 1)).astype(np.float32))
    params = G.prepared  # as the encoder: the kernels made once
    target = ops.convert_to_tensor(rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32))
    big = ops.convert_to_tensor(rng.uniform(0, 255, (n, 1024, 1024, 3)).astype(np.float32))
    mask = ops.ones((n, size, size, 1))

    keras.utils.set_random_seed(0)
    vgg_file = _random_vgg16(Path(tempfile.mkdtemp()) / "random_vgg16_notop.h5")
    vgg = vgg16_features(vgg_file, size, precision=args.precision)
    target_feat = ops.cast(vgg(caffe_preprocess(target), training=False), "float32")

    def render(w: Any, params: Any) -> Any:
        img = (network.synthesis_prepared(params, w, G.config, compute_dtype=dtype) + 1.0) * 127.5
        return ops.average_pool(img, 4, 4, padding="valid")

    def render_sum(w: Any, params: Any) -> tuple[Any, Any]:
        return ops.sum(render(w, params)), ()

    def down_sum(x: Any) -> tuple[Any, Any]:
        return ops.sum(ops.average_pool(x, 4, 4, padding="valid")), ()

    def vgg_loss(x: Any) -> tuple[Any, Any]:
        feat = vgg(caffe_preprocess(x), training=False)
        return ops.sum(logcosh_per_image(target_feat, feat)), ()

    def image_loss(x: Any) -> tuple[Any, Any]:
        per = 1.5 * logcosh_per_image(target, x) + 200.0 * msssim_loss_per_image(target, x)
        return ops.sum(per), ()

    pieces: dict[str, float] = {}
    pieces["synthesis_forward"] = _best(backend.jit(render), (w, params), args.repeats)
    pieces["synthesis_forward_backward"] = _best(
        backend.jit(backend.value_and_grad(render_sum)), (w, params), args.repeats
    )
    pieces["downsample_forward_backward"] = _best(
        backend.jit(backend.value_and_grad(down_sum)), (big,), args.repeats
    )
    pieces["vgg16_forward_backward"] = _best(
        backend.jit(backend.value_and_grad(vgg_loss)), (target * 0.9,), args.repeats
    )
    pieces["pixel_msssim_forward_backward"] = _best(
        backend.jit(backend.value_and_grad(image_loss)), (target * 0.9,), args.repeats
    )

    def adam_only(w: Any, g: Any) -> tuple[Any, Any, Any]:
        m = 0.1 * g
        v = 0.001 * ops.square(g)
        w_new = w - 0.25 * m / (ops.sqrt(v) + 1e-8)
        return ops.where(ops.abs(w_new) > 2.0, w, w_new), m, v

    pieces["adam_update"] = _best(backend.jit(adam_only), (w, w), args.repeats)

    settings = EncoderSettings(perceptual="vgg16", precision=args.precision)
    step = make_adam_step(make_loss(G, settings, size, vgg), float(settings.clip))
    draws = ops.convert_to_tensor(rng.standard_normal(tuple(w.shape)).astype(np.float32))
    zeros = ops.zeros_like(w)
    step_args = (w, zeros, zeros, np.float32(1), np.float32(0.25), params, target, target_feat, mask, draws)
    pieces["whole_step"] = _best(step, step_args, args.repeats)
    parts = [k for k in pieces if k not in ("whole_step", "synthesis_forward")]
    print(
        json.dumps(
            {
                "what": f"one encoder iteration at 1024 px, batch {n}, VGG16 + pixel + MS-SSIM + L1, "
                f"{args.precision}",
                "backend": backend.name(),
                "seconds_min_of_repeats": pieces,
                "sum_of_pieces_s": round(sum(pieces[k] for k in parts), 4),
                "load_average_at_start": start_load,
                "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
