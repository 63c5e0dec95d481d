"""What an encoding returns: the dlatents of the lowest loss seen and how it got there."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from babygan.stylegan import Generator


@dataclass(frozen=True)
class EncodeResult:
    """What :meth:`Encoder.encode` found for a batch of N aligned images."""

    dlatents: np.ndarray  # (N, L, w_dim) float32: the dlatents of the lowest loss seen
    #: (T, N) float32, the loss of each iterate. Adam: T = iterations, the dlatents going into
    #: each step; L-BFGS: T = iterations + 1, the start and the point after each iteration.
    #: NaN once an image has stopped (early stopping, or L-BFGS converged).
    loss_history: np.ndarray
    init: str  # where it started: "estimator:<file>", "model-encoder", "dlatent_avg", "file:<name>", "given"
    initial_dlatents: np.ndarray  # (N, L, w_dim) float32: where the optimisation started
    iterations_run: np.ndarray  # (N,) int: the Adam steps / L-BFGS iterations each image ran
    generator: Generator | None = field(default=None, repr=False, compare=False)  # G of ``dlatents``

    @cached_property
    def reconstructions(self) -> np.ndarray:
        """uint8 (N, R, R, 3): the generator's render of ``dlatents``, rendered on first use."""
        from babygan.stylegan import to_uint8

        assert self.generator is not None
        return to_uint8(self.generator.synthesis(self.dlatents, noise="const"))

    @property
    def best_loss(self) -> np.ndarray:
        """(N,) float32: the lowest loss seen (that of the returned dlatents, unless
        ``average_best_loss`` blended them with the earlier best)."""
        return np.nanmin(self.loss_history, axis=0)
