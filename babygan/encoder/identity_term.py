"""The encoder's identity term: dlib's face descriptor of the render against the target's.

Per target, once: dlib's 68 landmarks on the aligned image (never on a render), the 150 px
chip dlib would cut there (``babygan.identity.chip``) as a bilinear sampling plan at the
loss resolution, and the target's descriptor. In the loss, the render's chip is cut by
the same plan and the term is the Euclidean distance of the two descriptors (dlib: one
person within 0.6), times ``identity_weight``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from babygan.backend.graph_store import GraphStore

log = logging.getLogger("babygan")

#: aligned images are searched at this size: HOG needs faces of ~80 px (smaller images are
#: enlarged), and a 1024 px one costs 16x as much for landmarks the 256 px loss images do not need
_DETECT_SIZE = 256


def find_landmarks(image: np.ndarray) -> np.ndarray | None:
    """(68, 2) landmarks of the largest face in a uint8 (S, S, 3) aligned image (in its pixels), or None."""
    from PIL import Image

    from babygan.encoder.mask import detect_landmarks

    side = image.shape[0]
    if side == _DETECT_SIZE:
        return detect_landmarks(image)
    resample = Image.BICUBIC if side < _DETECT_SIZE else Image.LANCZOS
    lm = detect_landmarks(np.asarray(Image.fromarray(image).resize((_DETECT_SIZE, _DETECT_SIZE), resample)))
    return None if lm is None else (lm + 0.5) * side / _DETECT_SIZE - 0.5


def chip_transforms(
    images: np.ndarray, size: int, find: Callable[[np.ndarray], np.ndarray | None] = find_landmarks
) -> np.ndarray:
    """float64 (N, 2, 3) chip -> loss-image affines for uint8 (N, S, S, 3) aligned images,
    the loss images being ``size`` px (the same frame, rescaled). ``find``: ``find_landmarks``,
    or what does the same elsewhere."""
    from babygan.identity.chip import chip_transform, typical_transform

    out = []
    for i, image in enumerate(images):
        lm = find(image)
        if lm is None:
            log.warning(
                "encoder: no face found in aligned image %d; the identity term uses a typical chip", i
            )
            out.append(typical_transform(size))  # the FFHQ crop's typical chip
            continue
        scale = size / image.shape[0]
        out.append(chip_transform((lm + 0.5) * scale - 0.5))
    return np.stack(out)


class IdentityTerm:
    """dlib's descriptor network (loaded once) and what each target gives the loss."""

    def __init__(
        self,
        precision: str = "fp32",
        graphs: GraphStore | None = None,
        landmarks: Callable[[np.ndarray], np.ndarray | None] | None = None,
    ) -> None:
        """graphs: where the network's describe graph is looked up and kept (``GraphStore``).
        landmarks: what finds a target's landmarks (None: ``find_landmarks``, here; a command's
        ``align_ahead.FaceSearchAhead.find_landmarks``: the same, in its dlib process)."""
        from babygan.identity import IdentityNet

        self.find_landmarks = find_landmarks if landmarks is None else landmarks
        self.precision = precision
        self.net = IdentityNet(compute_dtype="bfloat16" if precision == "bf16" else "float32", graphs=graphs)

    def distance(self, render: Any, feats: dict[str, Any]) -> Any:
        """float32 (N,): descriptor distance of float (N, size, size, 3) renders (0..255) to their targets."""
        from keras import ops

        from babygan.identity.chip import crop_chips

        chips = crop_chips(render, feats["id_idx"], feats["id_wts"])
        d = self.net.descriptor(chips) - feats["id_desc"]
        # the tiny floor keeps the gradient of a zero distance finite
        return ops.sqrt(ops.sum(ops.square(d), axis=-1) + 1e-12)

    def targets(self, images: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
        """What the loss needs of each target: images uint8 (N, S, S, 3) aligned, targets uint8
        (N, size, size, 3) the same at the loss size. Returns numpy arrays: id_idx int32
        (N, P, 4) and id_wts float32 (N, P, 4) (the chip's sampling plan), id_desc float32 (N, 128)."""
        from keras import ops

        from babygan.identity.chip import crop_chips, sampling_plan

        size = targets.shape[1]
        idx, wts = sampling_plan(chip_transforms(images, size, self.find_landmarks), size, size)
        chips = ops.convert_to_numpy(crop_chips(targets.astype(np.float32), idx, wts))
        desc = self.net.describe(chips)
        return {"id_idx": idx, "id_wts": wts, "id_desc": desc}
