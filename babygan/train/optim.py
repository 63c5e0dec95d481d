"""Adam in keras.ops over dicts of parameters, and the exponential moving average of a generator."""

from __future__ import annotations

from typing import Any

import numpy as np
from keras import ops


def adam_init(params: dict[str, Any], beta1: float = 0.0) -> dict[str, Any]:
    """Zero moments shaped like ``params`` (numpy float32) and a step count; no first moment if beta1 is 0."""
    return {
        "m": {k: np.zeros(np.shape(v), np.float32) for k, v in params.items()} if beta1 > 0 else {},
        "v": {k: np.zeros(np.shape(v), np.float32) for k, v in params.items()},
        "t": np.zeros((), np.float32),
    }


def adam_update(
    params: dict[str, Any],
    grads: dict[str, Any],
    state: dict[str, Any],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One bias-corrected Adam step (StyleGAN uses beta1 0, beta2 0.99) -> (params, state)."""
    t = state["t"] + 1.0
    corr1 = 1.0 - ops.power(beta1, t) if beta1 > 0 else 1.0
    step = lr * ops.sqrt(1.0 - ops.power(beta2, t)) / corr1
    new_p, new_m, new_v = {}, {}, {}
    for k, p in params.items():
        g = grads[k]
        m = beta1 * state["m"][k] + (1.0 - beta1) * g if beta1 > 0 else g
        v = beta2 * state["v"][k] + (1.0 - beta2) * ops.square(g)
        new_p[k] = p - step * m / (ops.sqrt(v) + eps)
        if beta1 > 0:
            new_m[k] = m
        new_v[k] = v
    return new_p, {"m": new_m, "v": new_v, "t": t}


def ema_update(ema: dict[str, Any], params: dict[str, Any], beta) -> dict[str, Any]:
    """ema <- params + (ema - params) * beta, for every parameter."""
    return {k: params[k] + (ema[k] - params[k]) * beta for k in ema}
