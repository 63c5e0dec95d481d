"""fp32 or bf16: what ``--precision auto`` picks on this machine, and why.

bf16 runs the networks' convolutions and dense layers in bfloat16 (see
``babygan.stylegan.network``); arrays in and out stay float32. The Python API defaults to
fp32 so that library results are exact unless asked otherwise; the CLI defaults to auto.
"""

from __future__ import annotations

import os
from pathlib import Path

from babygan import backend
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


def bf16_caveat() -> str | None:
    """Why bf16 does not pay on this machine (None where it does): a GPU without bfloat16
    units, or a CPU without bfloat16 instructions. On such a CPU TensorFlow's bf16 kernels are
    Eigen's: dlib's descriptor, forward and backward at batch 2, took 0.248 s against 0.058 s in
    fp32, and the built-in model's render is 34.9 dB from fp32 against over 40 dB where the
    CPU has them (2-core AMD EPYC with AVX2; README, bf16)."""
    gpu = backend.gpu_bf16()
    if gpu is not None:
        fast, gpu_name = gpu
        return None if fast else f"{gpu_name} lacks bf16 units: bf16 runs slower there than fp32"
    if cpu_bf16_flags():
        return None
    return "the CPU has no bfloat16 instructions: bf16 runs slower there than fp32, and less exactly"


def resolve_precision(requested: str | None = None) -> tuple[str, str]:
    """ "fp32" | "bf16" | "auto" (None: $BABYGAN_PRECISION, else auto) -> (chosen, one-line reason).

    auto picks bf16 on a GPU with bfloat16 units (compute capability 8.0 and up) or a CPU
    with AMX or AVX512-BF16, fp32 elsewhere.
    """
    requested = requested or os.environ.get(ENV_VAR) or "auto"
    if requested == "fp32":
        return requested, "as asked"
    if requested == "bf16":
        caveat = bf16_caveat()
        return requested, "as asked" if caveat is None else f"as asked, but {caveat}"
    if requested != "auto":
        raise BabyganError(f"precision {requested!r}: choose one of {', '.join(CHOICES)}")

    gpu = backend.gpu_bf16()
    if gpu is not None:
        fast, gpu_name = gpu
        return (
            ("bf16", f"{gpu_name} has bfloat16 units") if fast else ("fp32", f"{gpu_name} lacks bf16 units")
        )
    flags = cpu_bf16_flags()
    if flags:
        return "bf16", f"the CPU has {' and '.join(f.upper() for f in flags)}"
    return "fp32", "the CPU has no bfloat16 instructions"
