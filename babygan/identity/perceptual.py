"""A perceptual distance on dlib's face network: LPIPS's recipe on the one trained face network
babygan runs, and its identity distance from the same pass.

LPIPS (Zhang et al. 2018) compares two images by the feature maps a trained network makes of
them: at each tapped depth the features are unit-normalised across channels, the squared
difference is summed over channels and averaged over the map, and the depths are summed. LPIPS
then weighs each channel with weights learned on human judgements; there are none for this
network, so every channel weighs 1 (their "baseline" variant). The depths are dlib's stem and
the last unit at each of its four sizes (``network.FEATURE_UNITS``).

The network reads 150 px chips. The faces it measures here are all aligned by one recipe
(``babygan.align``, the model's crop), so the chip is the same square for every image: the
chip dlib cuts on a typical aligned face (``chip.typical_transform``; its placement varies by
about 1 % of the side between faces, and the descriptors of the two chips are 0.08-0.23 apart
on FFHQ-aligned faces, against 0.6 for one person), resampled by two fixed matrices. dlib's
per-image chip would need landmarks of every render, which are neither differentiable nor
cheap, and would move between the two images being compared. Part of the typical chip may fall
outside a tight crop (the built-in model's 0.7 crop ends above the chin): it is black in both
images, as dlib leaves it.

Images cross in the generator's range: float (N, R, R, 3) in [-1, 1]; ``measure`` takes uint8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from babygan.identity.chip import fixed_chip_matrices
from babygan.identity.net import IdentityNet

Tensor = Any
_EPS = 1e-10  # inside the rsqrt: a map of zeros (ReLU) normalises to zeros with a finite gradient


class FacePerceptual:
    """The distances between faces of ``resolution`` px aligned at ``crop_scale``.

    ``compute_dtype="bfloat16"`` runs the network's convolutions in bfloat16 (the norms,
    differences and results stay float32). ``net``: an IdentityNet to share (its dtype wins).
    """

    def __init__(
        self, resolution: int, crop_scale: float = 1.0, *, compute_dtype: str = "float32",
        net: IdentityNet | None = None,
    ) -> None:  # fmt: skip
        self.net = net or IdentityNet(compute_dtype=compute_dtype)
        self.resolution = resolution
        self.crop_scale = crop_scale
        self.halvings, rows, cols = fixed_chip_matrices(resolution, crop_scale)
        self._rows, self._cols = rows, cols  # float32 (150, S) numpy: constants of any graph
        self._compiled: Any = None

    def chips(self, images: Tensor) -> Tensor:
        """float (N, R, R, 3) in [-1, 1] -> float32 (N, 150, 150, 3) chips in 0..255 (differentiable)."""
        from keras import ops

        x = (ops.cast(images, "float32") + 1.0) * 127.5
        for _ in range(self.halvings):
            x = ops.average_pool(x, 2, 2, padding="valid")
        x = ops.einsum("ph,nhwc->npwc", self._rows, x)
        return ops.einsum("qw,npwc->npqc", self._cols, x)

    def features(self, images: Tensor) -> tuple[list[Tensor], Tensor]:
        """float (N, R, R, 3) in [-1, 1] -> (the tapped maps, each unit-normalised across channels,
        float32 (N, h, w, c); descriptors float32 (N, 128))."""
        from keras import ops

        from babygan.identity.network import features

        maps, desc = features(
            self.net.tensors,
            self.chips(images),
            self.net.model.mean_rgb,
            compute_dtype=self.net.compute_dtype,
        )
        return [m * ops.rsqrt(ops.sum(ops.square(m), axis=-1, keepdims=True) + _EPS) for m in maps], desc

    def distances(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """float (N, R, R, 3) images and targets in [-1, 1] -> (perceptual distance float32 (N,),
        identity distance float32 (N,): Euclidean between dlib descriptors, one person within 0.6).

        One pass through the network for both; the targets get no gradient.
        """
        from keras import ops

        n = ops.shape(images)[0]
        maps, desc = self.features(ops.concatenate([images, ops.stop_gradient(targets)], axis=0))
        perceptual = 0.0
        for m in maps:
            perceptual = perceptual + ops.mean(ops.sum(ops.square(m[:n] - m[n:]), axis=-1), axis=(1, 2))
        # the tiny floor keeps the gradient of a zero distance finite
        identity = ops.sqrt(ops.sum(ops.square(desc[:n] - desc[n:]), axis=-1) + 1e-12)
        return perceptual, identity

    def measure(
        self, images: np.ndarray, targets: np.ndarray, batch: int = 32
    ) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, R, R, 3) images against uint8 targets -> (perceptual, identity) float64 (N,) each."""
        from keras import ops

        from babygan import backend

        a, b = np.asarray(images), np.asarray(targets)
        r = self.resolution
        if a.shape != b.shape or a.ndim != 4 or a.shape[1:] != (r, r, 3):
            raise ValueError(f"images and targets must both be (N, {r}, {r}, 3), not {a.shape} and {b.shape}")
        if self._compiled is None:
            self._compiled = backend.jit(lambda x, y: self.distances(x, y))
        out_p, out_i = [], []
        for i in range(0, len(a), batch):
            x = a[i : i + batch].astype(np.float32) / 127.5 - 1.0
            y = b[i : i + batch].astype(np.float32) / 127.5 - 1.0
            p, d = self._compiled(x, y)
            out_p.append(np.asarray(ops.convert_to_numpy(p), np.float64))
            out_i.append(np.asarray(ops.convert_to_numpy(d), np.float64))
        if not out_p:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(out_p), np.concatenate(out_i)
