#!/usr/bin/env python
"""Cost of the identity loss (dlib's face descriptor ResNet in keras.ops); prints JSON.

    python scripts/bench_identity.py                # descriptor forward+backward, batch 2
    python scripts/bench_identity.py --encoder      # also its share of one encoder iteration,
                                                    # at 64 px and at 1024 px (random FFHQ-size G)

The share is the difference between an encoder step with ``--perceptual identity`` and one
with ``--perceptual pixel`` (the same losses less the identity term), over the identity
step. Generators have random weights: the cost is that of trained ones. Seconds are
medians of timed repeats after a warm-up (tracing left out); the load average printed
beside each figure says how busy the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def _timed(fn, repeats: int) -> float:
    fn()  # warm-up: traces and compiles
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def descriptor_seconds(batch: int, repeats: int, compute_dtype: str) -> float:
    """Seconds of one forward + backward of the descriptor for ``batch`` chips."""
    import numpy as np
    from keras import ops

    from babygan import backend
    from babygan.identity import IdentityNet

    net = IdentityNet(compute_dtype=compute_dtype)
    chips = ops.convert_to_tensor(
        np.random.default_rng(0).uniform(0, 255, (batch, 150, 150, 3)).astype(np.float32)
    )

    def loss(x):
        d = net.descriptor(x)
        return ops.sum(ops.square(d)), d

    step = backend.jit(backend.value_and_grad(loss))
    return _timed(lambda: ops.convert_to_numpy(step(chips)[1]), repeats)


def encoder_step_seconds(resolution: int, perceptual: str, repeats: int) -> float:
    """Seconds of one Adam step of the encoder (batch 2) with a random generator."""
    import numpy as np

    from babygan.encoder import Encoder, EncoderSettings
    from babygan.stylegan import random_generator, to_uint8

    if resolution >= 1024:
        G = random_generator(resolution=resolution, fmap_base=8192, fmap_max=512, seed=0)
    else:
        G = random_generator(resolution=resolution, fmap_max=128, seed=0)
    w = G.mapping(np.random.RandomState(1).randn(2, G.z_dim).astype(np.float32), truncation_psi=0.7)
    images = to_uint8(G.synthesis(w))

    def run(iterations: int) -> float:
        settings = EncoderSettings(
            iterations=iterations, perceptual=perceptual, init="dlatent_avg", batch_size=2
        )
        enc = Encoder(G, settings)
        t0 = time.perf_counter()
        enc.encode(images, progress=False)
        return time.perf_counter() - t0

    run(1)  # builds and traces once in this process
    # a new Encoder traces again: the difference of two runs leaves that out, and small models
    # need many more steps than tracing's noise to show
    extra = 40 if resolution < 256 else 4
    short, long = (statistics.median(run(n) for _ in range(repeats)) for n in (2, 2 + extra))
    return (long - short) / extra


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", action="store_true", help="also the share of one encoder iteration")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from babygan import backend

    backend.start()
    out: dict[str, object] = {"backend": backend.name()}
    for dtype in ("float32", "bfloat16"):
        seconds = descriptor_seconds(2, args.repeats, dtype)
        out[f"descriptor_fwd_bwd_batch2_{dtype}_s"] = round(seconds, 4)
        out[f"loadavg_after_{dtype}"] = os.getloadavg()
    if args.encoder:
        for res in (64, 1024):
            ident = encoder_step_seconds(res, "identity", args.repeats)
            pixel = encoder_step_seconds(res, "pixel", args.repeats)
            out[f"encoder_step_{res}px_identity_s"] = round(ident, 4)
            out[f"encoder_step_{res}px_pixel_s"] = round(pixel, 4)
            out[f"identity_share_{res}px"] = round((ident - pixel) / ident, 3) if ident > 0 else None
            out[f"loadavg_after_{res}px"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
