"""Where the time of a 1024 px render goes: each piece of network.synthesis timed alone.

Builds the full FFHQ architecture with random weights and times, at every layer, on inputs
of that layer's shape and dtype, each piece compiled alone (backend.jit) and run
``--repeats`` times (the minimum is kept): the convolution (3x3, or the upsampling,
``backend.upsample_conv``), the blur (``backend.blur``), the layer epilogue as the render runs it
(noise, bias, leaky ReLU, instance norm, style, fused: ``network._fused_epilogue``), the
style dense layer, ToRGB, and the whole render through the Generator for comparison with the
sum. Alternatives are timed beside them (unless ``--no-alternatives``): the epilogue op by
op (noise + leaky ReLU, then ``network._adain``); ``conv_transpose`` itself; nearest
upsampling (``ops.repeat`` twice) + 3x3 conv, and the same as a 2x2 conv to four phases,
interleaved; the 3x3 conv with the noise as one more input channel; the instance-norm
statistics of an earlier version and a one-pass float32 mean; and the per-render kernel
preparation the renderer does once (``prepare_synthesis``).

Prints one JSON object with the load average at start and end.

    python scripts/bench_synthesis_stages.py [--precision fp32,bf16] [--batches 1,4] [--repeats 5]
    KERAS_BACKEND=jax python scripts/bench_synthesis_stages.py --pieces conv --batches 1
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _blocker() -> Callable[[Any], Any]:
    from babygan import backend

    if backend.name() == "jax":
        import jax

        return jax.block_until_ready
    return lambda out: out  # TensorFlow and PyTorch on the CPU return once computed


def _timer(repeats: int) -> Callable[..., float]:
    from babygan import backend

    block = _blocker()

    def best(fn: Callable[..., Any], *args: Any) -> float:
        f = backend.jit(fn)
        block(f(*args))  # trace / compile
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            block(f(*args))
            times.append(time.perf_counter() - t0)
        return min(times)

    return best


def _old_stats(t: Any) -> tuple[Any, Any]:
    """The previous version's statistics: two-stage mean corrected by its residual, the plain
    mean's gradient through stop_gradient (so the plain means are computed too)."""
    from keras import ops

    def careful(x: Any) -> Any:
        return ops.mean(ops.mean(x, axis=1, keepdims=True), axis=2, keepdims=True)

    def plain_with(x: Any, value: Any) -> Any:
        plain = ops.mean(x, axis=(1, 2), keepdims=True)
        return plain + ops.stop_gradient(value - plain)

    rough = careful(t)
    mean = plain_with(t, rough + careful(t - rough))
    square = ops.square(t - mean)
    return mean, ops.rsqrt(plain_with(square, careful(square)) + 1e-8)


def _phase_kernel(k3: Any) -> Any:
    """(3, 3, in, out) -> (2, 2, in, 4 out): the 2x2 kernels of the four output phases of
    nearest 2x upsampling followed by the 3x3 conv (output row 2i takes input rows i-1, i with
    weights k[0], k[1] + k[2]; row 2i + 1 takes rows i, i + 1 with k[0] + k[1], k[2])."""
    from keras import ops

    def rows(k: Any, phase: int) -> Any:
        pair = [k[0], k[1] + k[2]] if phase == 0 else [k[0] + k[1], k[2]]
        return ops.stack(pair, axis=0)

    phases = []
    for a in (0, 1):
        ka = rows(k3, a)  # (2, 3, in, out)
        for b in (0, 1):
            phases.append(ops.transpose(rows(ops.transpose(ka, (1, 0, 2, 3)), b), (1, 0, 2, 3)))
    return ops.concatenate(phases, axis=-1)  # phase order (0,0), (0,1), (1,0), (1,1)


def _pixel_shuffle_upsample_conv(x: Any, k2: Any) -> Any:
    """Nearest 2x upsampling + 3x3 conv as one 2x2 conv to four phases, then interleaved:
    4 taps per output pixel and no dilated input (XLA's CPU convolutions run a transposed conv
    over the zero-inflated input, 16 taps per pixel)."""
    from keras import ops

    n, h, w, _ = tuple(x.shape)
    out = int(k2.shape[-1]) // 4
    y = ops.conv(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), k2, padding="valid")  # (N, H+1, W+1, 4 out)
    parts = [
        y[:, a : a + h, b : b + w, (2 * a + b) * out : (2 * a + b + 1) * out] for a in (0, 1) for b in (0, 1)
    ]
    y = ops.reshape(ops.stack(parts, axis=3), (n, h, w, 2, 2, out))
    return ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (n, 2 * h, 2 * w, out))


def run(
    precision: str, batch: int, repeats: int, pieces: set[str], alternatives: bool, resolution: int = 1024
) -> dict[str, Any]:
    from keras import ops

    from babygan import backend
    from babygan.stylegan import Generator, network, random_generator

    G0 = random_generator(resolution=resolution, fmap_base=8192, fmap_max=512, seed=0)
    G = Generator(G0.config, G0.params, source_sha256="stages", minibatch=batch, precision=precision)
    c, dt = G.config, G.compute_dtype
    acc = "float32"
    best = _timer(repeats)
    rng = np.random.default_rng(0)

    def rand(shape: tuple[int, ...], dtype: str) -> Any:
        return ops.cast(rng.standard_normal(shape, dtype=np.float32), dtype)

    w = G.mapping(rng.standard_normal((batch, G.z_dim)), 0.7, 8)
    prep = G.runtime.prepared
    out: dict[str, Any] = {"precision": precision, "batch": batch, "backend": backend.name()}
    times: dict[str, dict[str, float]] = defaultdict(dict)  # piece -> res -> s per image

    def put(piece: str, res: int, seconds: float) -> None:
        times[piece][str(res)] = times[piece].get(str(res), 0.0) + seconds / batch

    if "render" in pieces:
        block = _blocker()
        G.synthesis(w)
        rounds = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            block(G.synthesis(w))
            rounds.append(time.perf_counter() - t0)
        out["render_s_per_image_min"] = round(min(rounds) / batch, 4)
        out["render_loadavg"] = _loadavg()
        if alternatives:
            p = G.runtime.params
            out["prepare_synthesis_s_per_render"] = round(
                best(lambda q: network.prepare_synthesis(q, c, compute_dtype=dt), p), 4
            )
    for layer in range(c.num_layers):
        res, ch = c.layer_resolution(layer), c.layer_channels(layer)
        if layer > 0 and "conv" in pieces:
            k = prep[f"layer{layer}.kernel"]
            if layer % 2:
                x = rand((batch, res, res, c.layer_channels(layer - 1)), dt)
                b = prep[f"layer{layer}.bias"]
                put("conv3x3", res, best(lambda x, k: ops.conv(x, k, padding="same"), x, k))
                if alternatives:
                    k1 = ops.concatenate([k, ops.zeros((3, 3, 1, ch), k.dtype)], axis=2)
                    noise = prep[f"layer{layer}.noise"]

                    def conv_noise_channel(x: Any, k1: Any, b: Any, noise: Any) -> Any:
                        noise = ops.broadcast_to(ops.cast(noise, x.dtype), (*tuple(x.shape)[:3], 1))
                        y = ops.conv(ops.concatenate([x, noise], axis=-1), k1, padding="same")
                        return ops.leaky_relu(backend.bias_add(y, ops.cast(b, y.dtype)), negative_slope=0.2)

                    put(
                        "alt_conv3x3_noise_channel_bias_lrelu", res, best(conv_noise_channel, x, k1, b, noise)
                    )
            else:
                x = rand((batch, res // 2, res // 2, c.layer_channels(layer - 1)), dt)
                put("upsample", res, best(backend.upsample_conv, x, k))
                if alternatives:
                    up = best(lambda x, k: ops.conv_transpose(x, k, 2, "same"), x, k)
                    put("alt_upsample_conv_transpose", res, up)
                    k3 = ops.cast(rand((3, 3, c.layer_channels(layer - 1), ch), "float32"), dt)

                    def repeat_conv(x: Any, k3: Any) -> Any:
                        x = ops.repeat(ops.repeat(x, 2, axis=1), 2, axis=2)
                        return ops.conv(x, k3, padding="same")

                    put("alt_upsample_repeat_conv", res, best(repeat_conv, x, k3))
                    k2 = _phase_kernel(k3)
                    put("alt_upsample_pixel_shuffle", res, best(_pixel_shuffle_upsample_conv, x, k2))
                if c.blur_filter is not None:
                    y = rand((batch, res, res, ch), dt)
                    taps = network._blur_taps(c)
                    put("blur", res, best(lambda y, taps=taps: backend.blur(y, taps), y))
        if "epilogue" in pieces:
            y = rand((batch, res, res, ch), dt if layer > 0 else acc)
            y32 = rand((batch, res, res, ch), acc)
            style = rand((batch, 1, 1, 2 * ch), acc)
            out_dt = acc if layer == c.num_layers - 1 else dt

            def fused(y: Any, s: Any, p: Any, layer: int = layer, out_dt: str = out_dt) -> Any:
                q = f"layer{layer}"
                return network._fused_epilogue(
                    y, p[f"{q}.noise"], p[f"{q}.noise_strength"], p[f"{q}.bias"], s, acc=acc, out_dtype=out_dt
                )

            put("epilogue_fused", res, best(fused, y, style, prep))

            def noise_lrelu(y: Any, p: Any, layer: int = layer) -> Any:
                shift = p[f"layer{layer}.noise"] * p[f"layer{layer}.noise_strength"]
                return ops.leaky_relu(y + shift, negative_slope=0.2)

            put("alt_unfused_noise_lrelu", res, best(noise_lrelu, y32, prep))
            put(
                "alt_unfused_instance_norm_style",
                res,
                best(lambda t, s, ch=ch: network._adain(t, s, ch)[0], y32, style),
            )

            def style_dense(w: Any, p: Any, layer: int = layer) -> Any:
                style = ops.matmul(w[:, layer], p[f"layer{layer}.style.weight"])
                return style + p[f"layer{layer}.style.bias"]

            put("style_dense", res, best(style_dense, w, prep))
            if alternatives:
                put("alt_instance_stats_previous", res, best(_old_stats, y32))

                def one_pass(t: Any) -> Any:
                    mean = ops.mean(t, axis=(1, 2), keepdims=True)
                    return mean, ops.mean(ops.square(t - mean), axis=(1, 2), keepdims=True)

                put("alt_instance_stats_one_pass", res, best(one_pass, y32))

                def previous_norm_style(t: Any, s: Any, ch: int = ch) -> Any:
                    mean, inv_std = _old_stats(t)
                    return (t - mean) * (inv_std * (s[..., :ch] + 1.0)) + s[..., ch:]

                put("alt_instance_norm_style_previous", res, best(previous_norm_style, y32, style))
    if "epilogue" in pieces:
        x = rand((batch, c.resolution, c.resolution, c.layer_channels(c.num_layers - 1)), acc)
        put(
            "torgb",
            c.resolution,
            best(lambda x, p: ops.conv(x, p["torgb.weight"], padding="same") + p["torgb.bias"], x, prep),
        )
    out["s_per_image"] = {
        piece: {
            **{r: round(s, 4) for r, s in sorted(by_res.items(), key=lambda kv: int(kv[0]))},
            "total": round(sum(by_res.values()), 4),
        }
        for piece, by_res in times.items()
    }
    main = [p for p in times if not p.startswith("alt_")]
    out["sum_of_pieces_s_per_image"] = round(sum(sum(times[p].values()) for p in main), 4)
    out["loadavg_end"] = _loadavg()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--precision", default="fp32,bf16")
    ap.add_argument("--batches", default="1,4")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pieces", default="render,conv,epilogue", help="render, conv, epilogue")
    ap.add_argument("--no-alternatives", action="store_true")
    ap.add_argument("--resolution", type=int, default=1024, help="smaller for a quick check of the script")
    args = ap.parse_args()
    from babygan import backend

    backend.start()
    report: dict[str, Any] = {"loadavg_start": _loadavg(), "xla_flags": os.environ.get("XLA_FLAGS", "")}
    for precision in args.precision.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            report[f"{precision}_batch{batch}"] = run(
                precision,
                batch,
                args.repeats,
                set(args.pieces.split(",")),
                not args.no_alternatives,
                args.resolution,
            )
    report["loadavg_end"] = _loadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
