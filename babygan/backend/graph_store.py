"""Traced TensorFlow graphs kept on disk, so that a new process skips Python's tracing.

On a 2-core CPU, a cold ``predict`` spent over 5 s of Python tracing the encoder's and the
ager's steps (about 4,000 ops each, near 1 ms of Python per op): more than a third of the
command. TensorFlow runs a function from its ``FunctionDef`` alone, without the Python that
built it, so the store keeps each traced step's definition (with the functions it calls)
under ``$BABYGAN_HOME/graphs``, and a later process registers it with the runtime and calls
it directly. The runtime then optimises and runs it exactly as it would the traced graph.

A stored graph is found by a key made of everything that shapes it: its owner's description
of what the function closes over (model file hashes, settings, precision), the call's
structure with each tensor's dtype and shape and each Python value, the TensorFlow and Keras
versions, the devices, Keras' dtype settings, and the text of babygan's own source. A change
to any of them is a new key, so an old graph is never run. Whatever the store cannot use (a
damaged file, a function it cannot register) is logged once, and the function is traced as
usual. Under JAX and PyTorch nothing is stored: ``jax.jit`` and eager PyTorch have no such
Python cost to save.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("babygan")

_MAGIC = b"babygan-graph 1\n"
_SCALARS = (bool, int, float, str, type(None))
_UNSEEN = object()  # a call signature not looked up yet
#: days after which another environment's graphs are removed (babygan upgraded, say)
PRUNE_DAYS = 14.0
#: ops a stored graph may not hold: babygan's graphs compute, and a file that reads or writes
#: files or calls back into Python is not one babygan wrote
REFUSED_OPS = frozenset(
    {"PyFunc", "PyFuncStateless", "EagerPyFunc", "ReadFile", "WriteFile", "MatchingFiles",
     "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
     "ShardedFilename", "PrintV2", "Print", "DeleteFile", "ImmutableConst"}
)  # fmt: skip


#: set to 0 to trace every graph in every process and keep nothing (the store's way out)
ENV_VAR = "BABYGAN_STORE_GRAPHS"


_turns = threading.local()  # .after: (event, timeout) of tracing_after, in this thread


@contextlib.contextmanager
def tracing_after(event: threading.Event, timeout: float = 120.0) -> Iterator[None]:
    """In this thread, a graph the store does not hold yet is traced only once ``event`` is set
    (or ``timeout`` seconds have passed); one it holds is registered at once. Tracing is Python
    holding the GIL: a warm-up thread tracing beside the main thread's own Python (the encoder's
    tracing) only takes turns with it, while beside TensorFlow running a graph, which releases
    the GIL, it costs the main thread little."""
    previous = getattr(_turns, "after", None)
    _turns.after = (event, timeout)
    try:
        yield
    finally:
        _turns.after = previous


def enabled() -> bool:
    """Whether graphs are kept across processes by default: unless $BABYGAN_STORE_GRAPHS is 0."""
    return os.environ.get(ENV_VAR, "1").strip() != "0"


class _Unsupported(Exception):
    """An argument or output of a kind the store does not keep (the call is traced as usual)."""


def source_digest() -> str:
    """SHA-256 of the text of babygan's Python files (a stored graph is babygan's code, traced)."""
    root = Path(__file__).resolve().parents[1]  # the babygan package, not only babygan.backend
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _describe_call(args: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """The canonical text of a call (its structure, each tensor's dtype and shape, each Python
    value) and its tensors in the order TensorFlow flattens them (dicts by sorted key).
    numpy arrays and scalars are tensors to ``tf.function``; Python values are baked into
    the graph, so they are part of the text."""
    import tensorflow as tf

    tensors: list[Any] = []

    def walk(x: Any) -> str:
        if isinstance(x, dict):
            if not all(isinstance(k, str) for k in x):
                raise _Unsupported("a dict with keys that are not strings")
            return "{" + ",".join(f"{k!r}:{walk(x[k])}" for k in sorted(x)) + "}"
        if type(x) in (tuple, list):
            inner = ",".join(walk(v) for v in x)
            return f"({inner})" if isinstance(x, tuple) else f"[{inner}]"
        if isinstance(x, tf.Variable):
            raise _Unsupported("a variable argument")
        if isinstance(x, (np.ndarray, np.generic)) or tf.is_tensor(x):
            tensors.append(x)
            dtype = x.dtype.name if tf.is_tensor(x) else np.dtype(x.dtype).name
            return f"<{dtype}{tuple(x.shape)}>"
        if isinstance(x, _SCALARS):
            return f"{type(x).__name__}:{x!r}"
        raise _Unsupported(f"an argument of type {type(x).__name__}")

    return walk(args), tensors


def _output_layout(outputs: Any, count: list[int]) -> Any:
    """A JSON layout of a traced function's outputs: nested lists and dicts of tensor indices."""
    import tensorflow as tf

    if isinstance(outputs, dict):
        return {"dict": {k: _output_layout(outputs[k], count) for k in sorted(outputs)}}
    if type(outputs) in (tuple, list):
        return {type(outputs).__name__: [_output_layout(v, count) for v in outputs]}
    if tf.is_tensor(outputs):
        count[0] += 1
        return count[0] - 1
    if outputs is None:
        return None
    raise _Unsupported(f"an output of type {type(outputs).__name__}")


def _rebuild(layout: Any, flat: list[Any]) -> Any:
    if layout is None or isinstance(layout, int):
        return None if layout is None else flat[layout]
    ((kind, inner),) = layout.items()
    if kind == "dict":
        return {k: _rebuild(v, flat) for k, v in inner.items()}
    items = [_rebuild(v, flat) for v in inner]
    return tuple(items) if kind == "tuple" else items


def _capture_tensor(value: Any) -> Any:
    """What a traced function captures for ``value``: a variable's resource handle, else the tensor."""
    import tensorflow as tf

    inner = getattr(value, "value", None)  # a Keras variable wraps a tf.Variable under TensorFlow
    if isinstance(inner, tf.Variable):
        value = inner
    if isinstance(value, tf.Variable):
        return value.handle
    return value


#: the stateful ops a stored graph may hold: variable reads (a captured variable), and calls of
#: the functions beside it in its library (each checked itself)
_STATEFUL_ALLOWED = frozenset({"ReadVariableOp", "PartitionedCall", "StatefulPartitionedCall"})


def _state_ops(graph: Any) -> set[str]:
    """The ops of a GraphDef or FunctionDefLibrary (its functions too) that keep or change
    state, besides ``_STATEFUL_ALLOWED``: ops whose order its traced graph does not fix."""
    from tensorflow.python.framework import op_def_registry

    library = getattr(graph, "library", graph)
    functions = list(library.function)
    names = {f.signature.name for f in functions}
    nodes = [*getattr(graph, "node", ()), *(n for f in functions for n in f.node_def)]
    found = set()
    for op in {n.op for n in nodes} - _STATEFUL_ALLOWED - names:
        op_def = op_def_registry.get(op)
        if op_def is None or op_def.is_stateful:
            found.add(op)
    return found


def _rename_functions(functions: list[Any], suffix: str) -> dict[str, str]:
    """Give every function a name of its own (processes number traced functions alike) and
    point every call at the new names; returns old name -> new name."""
    names = {f.signature.name: f"{f.signature.name}__bg{suffix}" for f in functions}

    def fix(attr: Any) -> None:
        if attr.HasField("func") and attr.func.name in names:
            attr.func.name = names[attr.func.name]
        if attr.HasField("list"):
            for fn in attr.list.func:
                if fn.name in names:
                    fn.name = names[fn.name]

    for f in functions:
        f.signature.name = names[f.signature.name]
        for node in f.node_def:
            for attr in node.attr.values():
                fix(attr)
    return names


class GraphStore:
    """A folder of traced graphs (``$BABYGAN_HOME/graphs``); hands out functions that use it.

    ``environment``: extra text for every key (tests); the TensorFlow and Keras versions,
    the devices and babygan's source are added when the first graph is looked up.
    """

    def __init__(self, folder: str | Path, environment: str = "") -> None:
        self.folder = Path(folder)
        self._extra = environment
        self._environment: str | None = None
        self.loaded = 0  # graphs this store read back (for tests and the benchmark)
        self.saved = 0  # graphs it wrote
        self.registering = threading.Lock()  # two functions of a process may share callees

    def environment(self) -> str:
        """What every key holds besides the owner's and the call's: settled once per store."""
        if self._environment is None:
            import keras
            import tensorflow as tf

            devices = [d.name for d in tf.config.list_logical_devices()]
            parts = [
                f"tensorflow {tf.__version__}",
                f"keras {keras.__version__}",
                f"floatx {keras.config.floatx()}",
                f"policy {keras.config.dtype_policy().name}",
                f"devices {devices}",
                f"babygan {source_digest()}",
                self._extra,
            ]
            self._environment = "\n".join(parts)
        return self._environment

    def path(self, key: str) -> Path:
        """Where the graph of ``key`` is kept: in this environment's own folder, so that what an
        older babygan, TensorFlow or Keras kept can be told apart and pruned."""
        digest = hashlib.sha256(self.environment().encode()).hexdigest()[:16]
        return self.folder / digest / f"{key}.graph"

    def used(self, path: Path) -> None:
        """Note that a graph of ``path``'s environment was used now (what :meth:`prune` spares)."""
        with contextlib.suppress(OSError):
            os.utime(path.parent)

    def prune(self, keep: Path, days: float = PRUNE_DAYS) -> None:
        """Remove the other environments' folders that nothing used for ``days`` days (graphs of
        an older babygan, TensorFlow or Keras: no key will ever find them again)."""
        cutoff = time.time() - days * 86400
        with contextlib.suppress(OSError):
            for folder in self.folder.iterdir():
                if folder.is_dir() and folder != keep.parent and folder.stat().st_mtime < cutoff:
                    shutil.rmtree(folder, ignore_errors=True)

    def function(
        self,
        fn: Callable[..., Any],
        owner: str,
        captures: Callable[[], Mapping[str, Any]] | None = None,
    ) -> Callable[..., Any]:
        """``fn`` as a graph function that is looked up here before it is traced, and kept
        here once traced.

        owner: text naming everything ``fn`` closes over that shapes its graph (model file
        hashes, settings, precision); two functions with the same owner text and call must
        build the same graph. captures: the tensors and variables ``fn`` closes over, by
        name; a graph that captures anything not named here is not kept.
        """
        return StoredFunction(fn, self, owner, captures)


class _Loaded:
    """A registered stored graph: called with the call's tensors, then its captures."""

    def __init__(self, name: str, n_out: int, layout: Any, captures: list[Any]) -> None:
        self.name, self.n_out, self.layout, self.captures = name, n_out, layout, captures
        self.ran = False  # whether a call has succeeded (the first one may find it unrunnable)

    def __call__(self, tensors: list[Any]) -> Any:
        import tensorflow as tf
        from tensorflow.python.eager import context

        flat = [tf.convert_to_tensor(t) for t in tensors] + self.captures
        out = context.context().call_function(self.name.encode(), flat, self.n_out)
        return _rebuild(self.layout, list(out))


class StoredFunction:
    """A ``tf.function`` (no AutoGraph, no XLA: see ``backend.jit``) whose traced graphs are
    looked up in, and added to, a :class:`GraphStore`. One per function and owner; each
    call signature is looked up once per object."""

    def __init__(
        self,
        fn: Callable[..., Any],
        store: GraphStore,
        owner: str,
        captures: Callable[[], Mapping[str, Any]] | None,
    ) -> None:
        import tensorflow as tf

        self._traced = tf.function(fn, jit_compile=False, autograph=False)
        # What the store keeps is traced without automatic control dependencies: babygan's
        # graphs only compute (their one stateful op reads variables, see _state_ops), and the
        # pass that orders stateful ops took a tenth of a cold command's tracing. A graph that
        # holds other stateful ops is not kept, and runs from ``_traced``, ordered.
        self._pure = tf.function(
            fn, jit_compile=False, autograph=False, experimental_attributes={"_disable_acd": True}
        )
        self._store, self._owner, self._captures = store, owner, captures
        self._loaded: dict[str, _Loaded | None] = {}  # by call text; None: traced here
        self._first_calls = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        try:
            text, tensors = _describe_call(args)
        except _Unsupported as why:
            log.debug("graph store: %s; traced", why)
            return self._traced(*args)
        loaded = self._loaded.get(text, _UNSEEN)
        if loaded is None:
            return self._traced(*args)
        if isinstance(loaded, _Loaded) and loaded.ran:
            return loaded(tensors)
        if loaded is _UNSEEN:
            self._await_turn(text)  # outside the lock: the thread it waits for may call this too
        # a first call: one thread looks the graph up and runs it first (a warm-up thread and
        # the main one may meet here), the other waits for it
        with self._first_calls:
            return self._first_call(text, args, tensors)

    def prepare(self, *args: Any) -> None:
        """Have the graph of this call ready, looked up or traced (and kept), without running
        it. Its first run (graph optimisation, XLA compiling) is TensorFlow's C++ with the GIL
        released, so a caller can let another thread's tracing start beside it (``encode``)."""
        try:
            text, tensors = _describe_call(args)
        except _Unsupported:
            return
        if text in self._loaded:
            return
        self._await_turn(text)
        with self._first_calls:
            if text not in self._loaded:
                key = self._key(text)
                self._loaded[text] = self._load(key) or self._trace_and_keep(key, args, tensors)

    def _first_call(self, text: str, args: tuple[Any, ...], tensors: list[Any]) -> Any:
        loaded = self._loaded.get(text, _UNSEEN)
        if loaded is None:
            return self._traced(*args)
        if isinstance(loaded, _Loaded) and loaded.ran:
            return loaded(tensors)
        key = self._key(text)
        if loaded is _UNSEEN:
            # Traced here, the graph runs from its stored definition all the same: every
            # process then runs the same functions under the same names, which XLA's
            # persistent cache of the fused parts knows again (babygan.backend.start)
            loaded = self._load(key) or self._trace_and_keep(key, args, tensors)
            self._loaded[text] = loaded
            if loaded is None:
                return self._traced(*args)
        try:
            out = loaded(tensors)
        except Exception as why:  # a graph this runtime cannot run: trace it (a real error recurs there)
            log.warning("graph store: a stored graph failed (%s); tracing it instead", why)
            self._loaded[text] = None
            return self._traced(*args)
        loaded.ran = True
        return out

    def _await_turn(self, text: str) -> None:
        """Wait for this thread's ``tracing_after`` event when the call's graph must be traced."""
        after = getattr(_turns, "after", None)
        if after is None or after[0].is_set() or self._store.path(self._key(text)).is_file():
            return
        event, timeout = after
        event.wait(timeout)

    def _key(self, call: str) -> str:
        text = f"{self._store.environment()}\n{self._owner}\n{call}"
        return hashlib.sha256(text.encode()).hexdigest()[:40]

    def _named_captures(self) -> dict[str, Any]:
        return {} if self._captures is None else dict(self._captures())

    def _load(self, key: str) -> _Loaded | None:
        """The stored graph of ``key``, registered; None when there is none or it is unusable."""
        path = self._store.path(key)
        if not path.is_file():
            return None
        try:
            loaded = self._register(path.read_bytes())
        except Exception as why:  # a damaged or foreign file: traced instead, and replaced
            log.warning("graph store: ignoring %s (%s)", path, why)
            return None
        self._store.loaded += 1
        self._store.used(path)
        log.debug("graph store: loaded %s", path.name)
        return loaded

    def _trace_and_keep(self, key: str, args: tuple[Any, ...], tensors: list[Any]) -> _Loaded | None:
        """Trace the call (without running it), keep its graph in the store and register it;
        None when the graph is of a kind the store does not keep."""
        try:
            payload = self._serialise(key, args, tensors)
        except _Unsupported as why:
            log.debug("graph store: not kept (%s)", why)
            return None
        from babygan.atomic import write_bytes_atomic

        path = self._store.path(key)
        try:
            write_bytes_atomic(path, payload)
            if not self._store.saved:
                self._store.prune(path)
            self._store.saved += 1
        except OSError as why:  # this process still runs it from memory
            log.warning("graph store: could not write %s (%s)", path, why)
        try:
            return self._register(payload)
        except Exception as why:  # the runtime refuses the definition: the traced function runs
            log.warning("graph store: could not register a traced graph (%s)", why)
            return None

    def _register(self, payload: bytes) -> _Loaded:
        """Register a stored graph's functions with TensorFlow's runtime (raises on a bad payload)."""
        from tensorflow.core.framework import function_pb2
        from tensorflow.python.eager import context

        if not payload.startswith(_MAGIC):
            raise ValueError("not a babygan graph file")
        header, _, body = payload[len(_MAGIC) :].partition(b"\n")
        meta = json.loads(header)
        library = function_pb2.FunctionDefLibrary.FromString(body)
        refused = {n.op for f in library.function for n in f.node_def} & REFUSED_OPS
        if refused:
            raise ValueError(f"it holds ops babygan's graphs never use ({', '.join(sorted(refused))})")
        stateful = _state_ops(library)
        if stateful:
            raise ValueError(f"it holds stateful ops ({', '.join(sorted(stateful))})")
        named = self._named_captures()
        captures = [_capture_tensor(named[n]) for n in meta["captures"]]
        ctx = context.context()
        with self._store.registering:
            for f in library.function:  # callees first, the function itself last
                if not ctx.has_function(f.signature.name):
                    ctx.add_function_def(f)
        return _Loaded(meta["name"], int(meta["outputs"]), meta["layout"], captures)

    def _serialise(self, key: str, args: tuple[Any, ...], tensors: list[Any]) -> bytes:
        import tensorflow as tf
        from tensorflow.core.framework import function_pb2

        cf = self._pure.get_concrete_function(*args)  # the graph just traced: no second trace
        graph_def = cf.graph.as_graph_def()
        stateful = _state_ops(graph_def)
        if stateful:
            raise _Unsupported(f"it holds stateful ops ({', '.join(sorted(stateful))})")
        main = function_pb2.FunctionDef()
        main.CopyFrom(cf.function_def)
        inputs = list(cf.inputs)
        captured = list(cf.captured_inputs)
        if len(inputs) != len(tensors) + len(captured) or len(main.signature.input_arg) != len(inputs):
            raise _Unsupported("its inputs are not the call's tensors and its captures")
        for graph_input, given in zip(inputs, tensors, strict=False):
            same = graph_input.dtype == tf.as_dtype(given.dtype)
            if not same or tuple(graph_input.shape) != tuple(given.shape):
                raise _Unsupported("an input's dtype or shape differs from the call's")
        named = self._named_captures()
        by_id = {id(_capture_tensor(v)): n for n, v in named.items()}
        names = []
        for c in captured:
            if id(c) not in by_id:
                what = f"{c.dtype.name}{tuple(c.shape)}"
                raise _Unsupported(f"it captures a tensor it was not told of ({what})")
            names.append(by_id[id(c)])
        count = [0]
        layout = _output_layout(cf.structured_outputs, count)
        if count[0] != len(main.signature.output_arg):
            raise _Unsupported("its outputs are not its structured outputs")
        main_name = main.signature.name
        callees = [f for f in graph_def.library.function if f.signature.name != main_name]
        functions = [*callees, main]
        renamed = _rename_functions(functions, key[:16])
        library = function_pb2.FunctionDefLibrary(function=functions)
        meta = {"name": renamed[main_name], "outputs": count[0], "layout": layout, "captures": names}
        return _MAGIC + json.dumps(meta).encode() + b"\n" + library.SerializeToString()
