"""fp32 or bf16: what ``--precision auto`` picks on this machine, and why.

bf16 runs the networks' convolutions and dense layers in bfloat16 (see
``babygan.stylegan.network``); arrays in and out stay float32. The Python API defaults to
fp32 so that library results are exact unless asked otherwise; the CLI defaults to auto.
"""

from __future__ import annotations

import os
from pathlib import Path

from babygan.errors import BabyganError

PRECISIONS = ("fp32", "bf16")
CHOICES = (*PRECISIONS, "auto")
ENV_VAR = "BABYGAN_PRECISION"
_CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


def compute_dtype(precision: str) -> str:
    """ "fp32" -> "float32", "bf16" -> "bfloat16"; a clear error for anything else."""
    check_precision(precision)
    return "bfloat16" if precision == "bf16" else "float32"


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BabyganError(f"precision {precision!r}: choose one of {', '.join(CHOICES)}")
    return precision


def cpu_bf16_flags(cpuinfo: str | os.PathLike[str] = "/proc/cpuinfo") -> list[str]:
    """The CPU's bfloat16 instruction sets (AMX, AVX512-BF16) named in ``cpuinfo``; [] where unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return []
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
    return [f for f in _CPU_BF16_FLAGS if f in flags]


def _gpu_has_bf16() -> tuple[bool, str] | None:
    """(bf16 units?, GPU name) for the backend's first GPU; None on a CPU-only machine."""
    from babygan import backend

    which = backend.name()
    if which == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details = tf.config.experimental.get_device_details(gpus[0])
        cc = details.get("compute_capability", (0, 0))
        return tuple(cc) >= (8, 0), str(details.get("device_name", gpus[0].name))
    if which == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        if not gpus:
            return None
        cc = str(getattr(gpus[0], "compute_capability", "0"))
        return float(cc) >= 8.0, gpus[0].device_kind
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(0) >= (8, 0), torch.cuda.get_device_name(0)


def resolve_precision(requested: str | None = None) -> tuple[str, str]:
    """ "fp32" | "bf16" | "auto" (None: $BABYGAN_PRECISION, else auto) -> (chosen, one-line reason).

    auto picks bf16 on a GPU with bfloat16 units (compute capability 8.0 and up) or a CPU
    with AMX or AVX512-BF16, fp32 elsewhere.
    """
    requested = requested or os.environ.get(ENV_VAR) or "auto"
    if requested in PRECISIONS:
        return requested, "as asked"
    if requested != "auto":
        raise BabyganError(f"precision {requested!r}: choose one of {', '.join(CHOICES)}")
    gpu = _gpu_has_bf16()
    if gpu is not None:
        fast, gpu_name = gpu
        return (
            ("bf16", f"{gpu_name} has bfloat16 units") if fast else ("fp32", f"{gpu_name} lacks bf16 units")
        )
    flags = cpu_bf16_flags()
    if flags:
        return "bf16", f"the CPU has {' and '.join(f.upper() for f in flags)}"
    return "fp32", "the CPU has no bfloat16 instructions"
