"""IdentityNet: dlib's face descriptor network loaded once, on the running Keras backend.

Own one per process (the encoder holds one when its loss has an identity term):

    net = IdentityNet()                      # reads the file shipped in face_recognition_models
    net.describe(chips)                      # uint8/float (N, 150, 150, 3) RGB -> float32 (N, 128)
    net.descriptor(chips_tensor)             # the same inside a traced, differentiated function
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from babygan.backend.graph_store import GraphStore
from babygan.errors import BabyganError
from babygan.identity.reader import CHIP_SIZE, DlibResNet, read_dlib_resnet
from babygan.shipped_models import FACE_DESCRIPTOR, shipped_model_file


def default_model_path() -> Path:
    """dlib_face_recognition_resnet_model_v1.dat as shipped in face_recognition_models (no download)."""
    return shipped_model_file(FACE_DESCRIPTOR)


class IdentityNet:
    """dlib's face recognition ResNet v1 as a keras.ops network; its arrays live on the backend.

    ``compute_dtype="bfloat16"`` runs its convolutions in bfloat16 (the descriptor stays float32).
    ``graphs``: where :meth:`describe`'s traced graph is looked up and kept (babygan/backend/graph_store.py).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        compute_dtype: str = "float32",
        graphs: GraphStore | None = None,
    ) -> None:
        from babygan import backend

        backend.ensure_started()  # before Keras is first imported
        from keras import ops

        from babygan.identity.network import COMPUTE_DTYPES, stride_one_kernels

        if compute_dtype not in COMPUTE_DTYPES:
            raise BabyganError(f"compute_dtype={compute_dtype!r}: choose one of {', '.join(COMPUTE_DTYPES)}")
        self.path = Path(path) if path is not None else default_model_path()
        self.model: DlibResNet = read_dlib_resnet(self.path)
        self.compute_dtype = compute_dtype
        self.graphs = graphs
        self.tensors = {k: ops.convert_to_tensor(v) for k, v in self.model.params.items()}
        if compute_dtype != "float32":  # the convolutions' kernels cast once, not in every run
            self.tensors = {
                k: ops.cast(t, compute_dtype) if k.endswith(".weight") and len(t.shape) == 4 else t
                for k, t in self.tensors.items()
            }
        elif backend.onednn.flips_pay(compute_dtype):  # the stride-1 kernels' flips, made once
            self.tensors.update(
                {f"{k}_flipped": backend.onednn.flip(self.tensors[k]) for k in stride_one_kernels()}
            )

    def descriptor(self, chips: Any) -> Any:
        """float (N, 150, 150, 3) RGB tensors in 0..255 -> float32 (N, 128); traceable and differentiable."""
        from babygan.identity.network import descriptor

        return descriptor(self.tensors, chips, self.model.mean_rgb, compute_dtype=self.compute_dtype)

    @cached_property
    def _compiled(self) -> Callable[[Any, Any], Any]:
        from babygan import backend
        from babygan.identity.network import descriptor
        from babygan.models import cached_sha256

        mean, dtype = self.model.mean_rgb, self.compute_dtype

        def fn(params: Any, chips: Any) -> Any:
            return descriptor(params, chips, mean, compute_dtype=dtype)

        if self.graphs is None:
            return backend.jit(fn)
        # the weights are arguments; the file's mean colour and the dtype are in the graph
        owner = f"dlib descriptor\n{cached_sha256(self.path.resolve())}\n{dtype}"
        return backend.jit(fn, store=self.graphs, owner=owner)

    def describe(self, chips: Any, batch_size: int = 16) -> np.ndarray:
        """uint8 or float (N, 150, 150, 3) RGB chips (0..255) -> float32 (N, 128) descriptors."""
        from keras import ops

        arr = np.asarray(chips)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise BabyganError(f"face chips must be (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) RGB, got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)):
            raise BabyganError("face chips must hold finite numbers (0..255)")
        arr = arr.astype(np.float32)
        out = [
            ops.convert_to_numpy(self._compiled(self.tensors, ops.convert_to_tensor(arr[i : i + batch_size])))
            for i in range(0, len(arr), batch_size)
        ]
        return np.concatenate(out, axis=0).astype(np.float32) if out else np.zeros((0, 128), np.float32)


def describe(chips: Any, net: IdentityNet | None = None) -> np.ndarray:
    """uint8 or float (N, 150, 150, 3) RGB face chips -> float32 (N, 128) dlib face descriptors.

    ``net``: the caller's IdentityNet; None loads one for this call (keep one to call again).
    """
    return (net or IdentityNet()).describe(chips)
