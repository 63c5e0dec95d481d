"""scipy's L-BFGS-B on one image's dlatents, with the encoder's compiled loss and gradient
(``--optimizer lbfgs``; ``Encoder._run_lbfgs`` runs it image by image)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from babygan.errors import BabyganError


def minimize_one(
    value_and_grad: Callable[..., Any],
    params: Any,
    start: np.ndarray,
    target: Any,
    target_feat: Any,
    mask: Any,
    *,
    iterations: int,
    clip: float,
    bar: Any = None,
    image: int = 1,
) -> tuple[np.ndarray, list[float], int]:
    """One image's L-BFGS-B from ``start`` (L', w_dim) float32, every value bounded to
    [-clip, clip]: (the lowest-loss point evaluated, the losses of the start and of each
    iteration, the iterations run). ``value_and_grad(w, params, target, target_feat, mask)``
    is the encoder's; ``image`` (1-based) names the image in errors and on the tqdm ``bar``."""
    from keras import ops
    from scipy.optimize import Bounds, minimize

    shape = (1, *start.shape)
    lowest: list[tuple[float, np.ndarray]] = []  # [(loss, x)] of the best point evaluated
    losses: list[float] = []

    def fun(x: np.ndarray) -> tuple[float, np.ndarray]:
        w = ops.convert_to_tensor(x.reshape(shape).astype(np.float32))
        (total, _), grad = value_and_grad(w, params, target, target_feat, mask)
        f = float(ops.convert_to_numpy(total))
        if not math.isfinite(f):
            raise BabyganError(f"encoder: the loss became {f} in L-BFGS (image {image})")
        if not losses:
            losses.append(f)  # the start's
        if not lowest or f < lowest[0][0]:
            lowest[:] = [(f, x.copy())]
        return f, np.asarray(ops.convert_to_numpy(grad), np.float64).ravel()

    def callback(intermediate_result: Any) -> None:
        losses.append(float(intermediate_result.fun))
        if bar is not None:
            bar.update(1)
            bar.set_postfix(image=f"{image}", loss=f"{losses[-1]:.2f}")

    res = minimize(
        fun,
        start.ravel().astype(np.float64),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(-clip, clip),
        callback=callback,
        options={"maxiter": iterations, "maxfun": 2 * iterations + 10},
    )
    if bar is not None and res.nit < iterations:
        bar.update(iterations - int(res.nit))
    return lowest[0][1].reshape(start.shape).astype(np.float32), losses, int(res.nit)
