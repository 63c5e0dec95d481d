"""The only package that knows which Keras backend runs: gradients, compilation, start-up.

Everything else in babygan is written with ``keras.ops`` and runs under TensorFlow (the
default), JAX or PyTorch, chosen with ``KERAS_BACKEND`` before Keras is imported. What
``keras.ops`` cannot express, a gradient and a compiled step, is one function per backend here;
``graph_store.py`` keeps TensorFlow's traced graphs for later processes.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.abc
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from babygan.backend import onednn
from babygan.backend.onednn import conv_same as conv_same

if TYPE_CHECKING:
    from babygan.backend.graph_store import GraphStore

log = logging.getLogger("babygan")

BACKENDS = ("tensorflow", "jax", "torch")

# Informational start-up lines TensorFlow (and jaxlib) print straight to file descriptor 2
# while they load, before any log setting applies: absl's preamble, I/W-level C++ logs, the
# CPU-feature hint, and the CUDA probe failing on a machine that simply has no GPU.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)"
    r"|[IW]\d{4} "
    r"|E\d{4} .*(cuInit|cuda_platform|cuda_dnn|cuda_fft|cuda_blas|Unable to register)"
    r"|To enable the following instructions:"
    r"|An NVIDIA GPU may be present on this machine, but a CUDA-enabled jaxlib is not installed"
    r"|\s*$)"
)


def name() -> str:
    """The Keras backend this process runs: "tensorflow", "jax" or "torch" (started here, as
    ``ensure_started`` does, where nothing has imported Keras yet)."""
    ensure_started()
    import keras

    return keras.backend.backend()


def start() -> str:
    """Import Keras and its backend without their start-up chatter; log one line naming both
    the backend and the device it runs on; return that line.

    ``BABYGAN_TF_VERBOSE=1`` shows everything the libraries print.
    """
    verbose = bool(os.environ.get("BABYGAN_TF_VERBOSE"))
    # 3, not 2: oneDNN logs at error level that it falls back to Eigen for int64 ops on CPUs
    # without AVX-512 ("oneDNN supports DT_INT64 only ..."), a note for TensorFlow's developers
    # that reached the terminal amid babygan's lines; real failures still raise in Python
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    onednn.prefer()
    if "keras" in sys.modules:
        devices = _devices()
    else:
        _keep_xla_kernels()
        # _devices imports keras and its backend, probes the devices
        with _collector_paused(), _optional_jax_refused():
            devices = _devices() if verbose else _without_chatter(_devices)
    where = f"GPU {', '.join(devices)}" if devices else "the CPU"
    line = f"Keras backend {name()}: running on {where}"
    log.info(line)
    return line


def _keep_xla_kernels() -> None:
    """Have TensorFlow keep the XLA kernels it compiles (``fuse``'s chains) under
    ``$BABYGAN_HOME/xla`` and reuse them in later processes: about 0.4 s of a cold command's
    first step. A kernel is found again by its function's name and HLO, so it pays only
    for graphs that every process runs under the same names: those of babygan's graph store
    (babygan/backend/graph_store.py). A directory the user gave in ``TF_XLA_FLAGS`` is kept."""
    from babygan.backend import graph_store
    from babygan.models import babygan_home

    flags = os.environ.get("TF_XLA_FLAGS", "")
    if "--tf_xla_persistent_cache_directory" in flags or not graph_store.enabled():
        return
    folder = babygan_home() / "xla"
    if any(c.isspace() for c in str(folder)):  # TF_XLA_FLAGS splits at spaces
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    os.environ["TF_XLA_FLAGS"] = f"{flags} --tf_xla_persistent_cache_directory={folder}".strip()


def _without_chatter(fn: Callable[[], list[str]]) -> list[str]:
    """``fn()`` with what is written to file descriptor 2 meanwhile held back, then every line
    of it but the libraries' start-up noise (``_NOISE``) passed on to stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            return fn()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines():
                if not _NOISE.match(line):
                    print(line, file=sys.stderr)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Import Keras and its backend with Python's cyclic garbage collector paused, then freeze
    what is alive (``gc.freeze``): later collections skip it.

    The import makes some 330,000 objects that live as long as the process (modules, classes,
    op registries). Collecting meanwhile only traverses them again and again as they pile up:
    0.6 s of TensorFlow's 3.0 s import on a 2-core CPU, and each later full collection (during
    tracing, say) would traverse them once more. What is garbage before the import is
    collected first, so it is freed rather than frozen. The collector is left as it was found.
    """
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


#: modules that import JAX only if it is installed (in try/except ImportError) and that babygan
#: never needs it from: TF Lite's JAX converter, Keras's Orbax checkpoint callback
_OPTIONAL_JAX_IMPORTERS = ("tensorflow.", "keras.src.callbacks.orbax_checkpoint")


class _NoOptionalJax(importlib.abc.MetaPathFinder):
    """Answers the modules in ``_OPTIONAL_JAX_IMPORTERS`` that JAX is not installed; any other
    importer of jax (Keras's JAX backend, the caller's code) finds it as usual."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname != "jax" and not fullname.startswith("jax."):
            return None
        frame = sys._getframe(1)
        while frame is not None and str(frame.f_globals.get("__name__", "")).startswith(
            ("importlib", "_frozen_importlib")
        ):
            frame = frame.f_back  # the import system's own frames, up to the importing module
        importer = "" if frame is None else str(frame.f_globals.get("__name__", ""))
        if importer.startswith(_OPTIONAL_JAX_IMPORTERS):
            raise ModuleNotFoundError(f"babygan does not offer jax to {importer}", name=fullname)
        return None


@contextlib.contextmanager
def _optional_jax_refused() -> Iterator[None]:
    """While Keras and its backend are imported, the modules that would import JAX only because
    it is installed find it missing.

    TensorFlow's ``tensorflow.lite.python.util`` (``from jax import jit``, for TF Lite's JAX
    converter) and Keras's Orbax checkpoint callback import JAX whenever it is installed: 0.5 s
    of a 3 s start wherever JAX is (babygan's test extra, or its jax extra run with the default
    backend), for features babygan never uses, and which stay unavailable in this process.
    Under ``KERAS_BACKEND=jax`` the backend imports JAX itself, untouched.
    """
    finder = _NoOptionalJax()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)


def ensure_started() -> None:
    """``start()`` unless this process has Keras already: the one place that starts the backend
    for babygan's commands and models (its device line is said once per process). The models
    call it before they first import Keras, so the Python API runs TensorFlow as the commands do:
    with oneDNN on CPUs with AVX2 only (``onednn.prefer``), without its start-up chatter."""
    if "keras" not in sys.modules:
        start()


def _devices() -> list[str]:
    """Names of the GPUs the backend sees (empty on a CPU-only machine). Imports Keras itself:
    ``start`` calls it to import Keras, so it must not go through ``name``."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [g.name for g in tf.config.list_physical_devices("GPU")]
    if backend == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform == "gpu"]
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def gpu_bf16() -> tuple[bool, str] | None:
    """(whether it has bfloat16 units, its name) for the backend's first GPU; None without one.

    bfloat16 units came with compute capability 8.0 (Ampere) on NVIDIA GPUs.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if not gpus:
            return None
        details = tf.config.experimental.get_device_details(gpus[0])
        cc = tuple(details.get("compute_capability", (0, 0)))
        return cc >= (8, 0), str(details.get("device_name", gpus[0].name))
    if backend == "jax":
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


def jit(
    fn: Callable[..., Any],
    *,
    store: GraphStore | None = None,
    owner: str = "",
    captures: Callable[[], Mapping[str, Any]] | None = None,
) -> Callable[..., Any]:
    """``fn`` compiled for the backend: a TF graph (no XLA), ``jax.jit``, or as is for PyTorch.

    TensorFlow's XLA measured 10-20x slower than graph mode on a 2-core CPU (its CPU
    convolutions skip oneDNN), so TensorFlow compiles graphs only. With a ``store``, the
    TensorFlow graph is looked up there before it is traced and kept there once traced
    (``owner`` and ``captures``: see ``GraphStore.function``); other backends ignore it.
    """
    backend = name()
    if backend == "tensorflow" and store is not None:
        return store.function(fn, owner, captures)
    if backend == "tensorflow":
        import tensorflow as tf

        # no AutoGraph: babygan's functions are plain keras.ops with no Python control flow on
        # tensors, and transpiling them took over half of a cold predict's first step (7 of 13 s)
        return tf.function(fn, jit_compile=False, autograph=False)
    if backend == "jax":
        import jax

        return jax.jit(fn)
    return fn


def fuse(
    forward: Callable[..., tuple[Any, Any]],
    backward: Callable[..., Any],
    finish: Callable[..., tuple[Any, ...]],
    static: tuple[str, ...] = (),
) -> Callable[..., Any]:
    """A chain of elementwise ops and reductions, with its gradient written out, run fused.

    ``forward(*tensors, **static) -> (output, saved)``: tensors may be None; ``saved`` is
    what ``backward(upstream, tensors, saved, **static) -> grads`` needs besides the inputs;
    ``finish(grads, tensors, **static)`` turns that into d loss / d each tensor (None for
    None). ``backward`` is fused; ``finish`` runs op by op, so that the graph drops the
    gradients nobody asks for. The result is ``f(*tensors, **static) -> output``,
    differentiable.

    Under TensorFlow, ``jit`` graphs run op by op, each elementwise op a pass over memory,
    and the automatic gradient of such a chain takes several times the forward's work: here
    the forward and the written-out backward are each compiled alone by XLA, which fuses
    them into a few loops, while the convolutions around them stay with oneDNN (XLA's CPU
    convolutions are slower, see ``jit``). Under JAX (whose ``jit`` fuses by itself) and
    PyTorch, the forward is differentiated as usual. The TensorFlow functions are made on
    the first call, so importing a module that fuses something does not import TensorFlow.
    """
    compiled: list[Callable[..., Any]] = []

    def plain(*tensors: Any, **kw: Any) -> Any:
        return forward(*tensors, **kw)[0]

    def make() -> Callable[..., Any]:
        if name() != "tensorflow":
            return plain
        import tensorflow as tf

        fwd = tf.function(forward, jit_compile=True, autograph=False)
        bwd = tf.function(backward, jit_compile=True, autograph=False)

        def call(*args: Any, **kw: Any) -> Any:
            if set(kw) != set(static):
                raise TypeError(f"{forward.__name__}: give exactly the keywords {static}, not {tuple(kw)}")
            given = [i for i, a in enumerate(args) if a is not None]

            def full(tensors: Any) -> tuple[Any, ...]:
                out: list[Any] = [None] * len(args)
                for i, t in zip(given, tensors, strict=True):
                    out[i] = t
                return tuple(out)

            @tf.custom_gradient
            def run(*tensors: Any) -> Any:
                out, saved = fwd(*full(tensors), **kw)

                def grad(upstream: Any) -> list[Any]:
                    grads = finish(bwd(upstream, full(tensors), saved, **kw), full(tensors), **kw)
                    return [grads[i] for i in given]

                return out, grad

            return run(*(tf.convert_to_tensor(args[i]) for i in given))

        return call

    def fused(*args: Any, **kw: Any) -> Any:
        if not compiled:
            compiled.append(make())
        return compiled[0](*args, **kw)

    fused.__doc__, fused.__name__ = forward.__doc__, getattr(forward, "__name__", "fused")
    return fused


def blur(x: Any, taps: tuple[float, ...]) -> Any:
    """x (N, H, W, C) filtered by outer(taps, taps) per channel, 'same' zero padding (the extra
    row after, as TensorFlow pads): StyleGAN's blur after each upsampling, in x's dtype.

    A depthwise convolution (oneDNN under TensorFlow, cuDNN or PyTorch's kernels elsewhere),
    except under JAX on a CPU, where XLA's depthwise convolution measured 60x slower than
    TensorFlow's (0.66 s against 0.011 s for a 1024 px render's blurs): there it is shifted,
    weighted sums along H then W, which XLA fuses into a loop or two.
    """
    import numpy as np
    from keras import ops

    f = np.asarray(taps, np.float64)
    before = (len(f) - 1) // 2
    after = len(f) - 1 - before
    if name() == "jax" and not _devices():
        for axis in (1, 2):
            size = int(x.shape[axis])
            pad = [(0, 0)] * 4
            pad[axis] = (before, after)
            padded = ops.pad(x, pad)
            total = None
            for k, tap in enumerate(f):
                index = [slice(None)] * 4
                index[axis] = slice(k, k + size)
                term = padded[tuple(index)] * ops.cast(tap, x.dtype)
                total = term if total is None else total + term
            x = total
        return x
    kernel = np.tile(np.outer(f, f)[:, :, None, None], (1, 1, int(x.shape[-1]), 1))
    kernel = ops.cast(kernel.astype(np.float32), x.dtype)
    if before == after:
        return ops.depthwise_conv(x, kernel, padding="same")
    return ops.depthwise_conv(ops.pad(x, ((0, 0), (before, after), (before, after), (0, 0))), kernel)


def upsample_conv(x: Any, kernel: Any) -> Any:
    """The stride-2 'same' transposed convolution that upsamples: x (N, H, W, in), kernel
    (4, 4, out, in) as ``keras.ops.conv_transpose`` takes it -> (N, 2H, 2W, out).

    ``conv_transpose`` (oneDNN under TensorFlow), except under JAX on a CPU, where XLA runs a
    transposed convolution over a zero-inflated input (0.44 s of a 1024 px render against
    TensorFlow's 0.065 s): there each of the four output phases takes two of the kernel's four
    taps per axis, so it is one 2x2 convolution to 4 x out channels, interleaved (0.12 s).
    """
    from keras import ops

    if not (name() == "jax" and not _devices()):
        banded = onednn.upsample_conv(x, kernel)
        return ops.conv_transpose(x, kernel, strides=2, padding="same") if banded is None else banded
    n, h, w, _ = tuple(x.shape)
    out = int(kernel.shape[2])
    k = ops.transpose(kernel, (0, 1, 3, 2))  # (4, 4, in, out)
    # output 2m takes inputs m - 1, m with taps 3, 1; output 2m + 1 takes m, m + 1 with taps 2, 0
    taps = ((3, 1), (2, 0))
    phases = [
        ops.stack([ops.stack([k[i, j] for j in taps[b]], axis=0) for i in taps[a]], axis=0)
        for a in (0, 1)
        for b in (0, 1)
    ]  # each (2, 2, in, out)
    y = ops.conv(ops.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0))), ops.concatenate(phases, axis=-1))
    parts = [
        y[:, a : a + h, b : b + w, (2 * a + b) * out : (2 * a + b + 1) * out] for a in (0, 1) for b in (0, 1)
    ]  # (N, H, W, out) each; y is (N, H + 1, W + 1, 4 out)
    y = ops.reshape(ops.stack(parts, axis=3), (n, h, w, 2, 2, out))
    return ops.reshape(ops.transpose(y, (0, 1, 3, 2, 4, 5)), (n, 2 * h, 2 * w, out))


def bias_add(x: Any, bias: Any) -> Any:
    """``x + bias``, bias (C,) over the last axis of x (same dtype).

    Under TensorFlow this is the BiasAdd op, which its graph optimiser fuses into the
    convolution (or depthwise convolution) before it as a oneDNN post-op, saving a pass over
    the activations; a plain add (AddV2) of a tensor argument is left unfused. Elsewhere the
    plain add, which XLA fuses by itself.
    """
    if name() == "tensorflow":
        import tensorflow as tf

        return tf.nn.bias_add(x, bias)
    return x + bias


def value_and_grad(fn: Callable[..., tuple[Any, Any]]) -> Callable[..., tuple[tuple[Any, Any], Any]]:
    """``fn(x, *args) -> (scalar loss, aux)`` -> ``g(x, *args) -> ((loss, aux), d loss / d x)``.

    ``x`` may be a tensor or a nested structure of tensors (a dict of parameters); the
    gradient has the same structure.
    """
    backend = name()
    if backend == "jax":
        import jax

        return jax.value_and_grad(fn, has_aux=True)
    if backend == "tensorflow":
        import tensorflow as tf

        def tf_grad(x, *args):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss, aux = fn(x, *args)
            return (loss, aux), tape.gradient(loss, x)

        return tf_grad

    import keras
    import torch

    def torch_grad(x, *args):
        leaves = [leaf.detach().requires_grad_(True) for leaf in keras.tree.flatten(x)]
        loss, aux = fn(keras.tree.pack_sequence_as(x, leaves), *args)
        grads = torch.autograd.grad(loss, leaves)
        # nothing that leaves the step may hold the graph (or numpy() refuses it)
        aux = keras.tree.map_structure(lambda a: a.detach() if isinstance(a, torch.Tensor) else a, aux)
        return (loss.detach(), aux), keras.tree.pack_sequence_as(x, list(grads))

    return torch_grad
