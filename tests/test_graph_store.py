"""The graph store: traced TensorFlow graphs kept on disk and run again, untraced, by later
processes (babygan/backend/graph_store.py), and XLA's kernels kept beside them (babygan.backend)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import shared_path

from babygan import backend
from babygan.backend.graph_store import GraphStore

pytestmark = pytest.mark.skipif(
    os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow", reason="the store keeps TensorFlow graphs"
)


@pytest.fixture
def toy():
    """A function closing over a constant tensor and a variable, and its captures by name."""
    import keras
    from keras import ops

    weights = ops.convert_to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))
    bias = keras.Variable(np.ones(3, np.float32))

    def fn(x, scale):
        return {"y": ops.matmul(x, weights) * scale + bias, "pair": (x, ops.sum(x))}

    return fn, (lambda: {"weights": weights, "bias": bias}), bias


def _graph_files(store: GraphStore) -> list:
    return sorted(store.folder.rglob("*.graph"))


def test_a_stored_graph_runs_again_without_its_python(tmp_path, toy):
    fn, captures, bias = toy
    x = np.array([[1.0, 2.0]], np.float32)
    first = GraphStore(tmp_path / "graphs")
    out = backend.jit(fn, store=first, owner="toy", captures=captures)(x, 2.0)
    assert first.saved == 1 and len(_graph_files(first)) == 1
    np.testing.assert_allclose(out["y"], [[13.0, 19.0, 25.0]])
    assert np.array_equal(out["pair"][0], x) and float(out["pair"][1]) == 3.0

    # A new store on the folder (a later process) runs the stored graph: a function whose
    # Python would give zeros gives what was stored, so nothing was traced.
    from keras import ops

    def never_traced(x, scale):
        return {"y": ops.zeros((1, 3)), "pair": (x, ops.sum(x) * 0)}

    later = GraphStore(tmp_path / "graphs")
    again = backend.jit(never_traced, store=later, owner="toy", captures=captures)
    out2 = again(x, 2.0)
    assert later.loaded == 1 and later.saved == 0
    assert np.array_equal(out2["y"], out["y"]) and float(out2["pair"][1]) == 3.0
    # variables are read live, not baked in
    bias.assign(np.zeros(3, np.float32))
    np.testing.assert_allclose(again(x, 2.0)["y"], [[12.0, 18.0, 24.0]])
    # a Python value is part of the graph: another one is another graph, traced and kept
    np.testing.assert_allclose(
        backend.jit(fn, store=later, owner="toy", captures=captures)(x, 3.0)["y"], [[18, 27, 36]]
    )
    assert later.saved == 1 and len(_graph_files(later)) == 2


def test_another_owner_or_shape_is_another_graph(tmp_path, toy):
    fn, captures, _ = toy
    store = GraphStore(tmp_path / "graphs")
    x = np.ones((1, 2), np.float32)
    backend.jit(fn, store=store, owner="toy", captures=captures)(x, 1.0)
    backend.jit(fn, store=store, owner="other model file", captures=captures)(x, 1.0)
    backend.jit(fn, store=store, owner="toy", captures=captures)(np.ones((4, 2), np.float32), 1.0)
    assert store.loaded == 0 and store.saved == 3 and len(_graph_files(store)) == 3


def test_a_graph_capturing_what_it_was_not_told_of_is_not_kept(tmp_path, toy):
    fn, _, _ = toy
    store = GraphStore(tmp_path / "graphs")
    out = backend.jit(fn, store=store, owner="toy")(np.ones((1, 2), np.float32), 1.0)
    np.testing.assert_allclose(out["y"], [[4.0, 6.0, 8.0]])  # traced and run as usual
    assert store.saved == 0 and not _graph_files(store)


def test_a_damaged_graph_file_is_traced_again_and_replaced(tmp_path, toy, caplog):
    fn, captures, _ = toy
    x = np.ones((1, 2), np.float32)
    backend.jit(fn, store=GraphStore(tmp_path / "graphs"), owner="toy", captures=captures)(x, 1.0)
    (path,) = _graph_files(GraphStore(tmp_path / "graphs"))
    path.write_bytes(path.read_bytes()[:200])
    store = GraphStore(tmp_path / "graphs")
    with caplog.at_level(logging.WARNING, logger="babygan"):
        out = backend.jit(fn, store=store, owner="toy", captures=captures)(x, 1.0)
    np.testing.assert_allclose(out["y"], [[4.0, 6.0, 8.0]])
    assert any(str(path) in r.getMessage() and "ignoring" in r.getMessage() for r in caplog.records)
    assert store.saved == 1 and path.read_bytes().startswith(b"babygan-graph")


@pytest.mark.parametrize("op", ["WriteFile", "AssignVariableOp"])
def test_a_graph_file_with_ops_babygan_never_uses_is_refused(tmp_path, toy, caplog, op):
    """A stored graph is code that runs: one holding ops babygan's graphs never use (files,
    Python callbacks), or stateful ops that its traced graph would not keep in order (it is
    traced without automatic control dependencies), is not registered, and the function is
    traced again instead."""
    from tensorflow.core.framework import function_pb2

    fn, captures, _ = toy
    x = np.ones((1, 2), np.float32)
    backend.jit(fn, store=GraphStore(tmp_path / "graphs"), owner="toy", captures=captures)(x, 1.0)
    (path,) = _graph_files(GraphStore(tmp_path / "graphs"))
    header, _, body = path.read_bytes().partition(b"\n")[2].partition(b"\n")
    library = function_pb2.FunctionDefLibrary.FromString(body)
    library.function[-1].node_def.add(name="sneaky", op=op)
    path.write_bytes(b"babygan-graph 1\n" + header + b"\n" + library.SerializeToString())
    store = GraphStore(tmp_path / "graphs")
    with caplog.at_level(logging.WARNING, logger="babygan"):
        out = backend.jit(fn, store=store, owner="toy", captures=captures)(x, 1.0)
    np.testing.assert_allclose(out["y"], [[4.0, 6.0, 8.0]])
    assert store.loaded == 0 and any(op in r.getMessage() for r in caplog.records)


def test_a_function_that_changes_state_is_not_kept_and_runs_in_order(tmp_path):
    """The store traces without automatic control dependencies; a function that writes a
    variable needs them (its read must follow its write), so it is not kept, and runs as an
    ordinary, ordered tf.function."""
    import keras
    from keras import ops

    total = keras.Variable(np.zeros(2, np.float32))

    def accumulate(x):
        total.assign_add(x)
        return ops.convert_to_tensor(total) * 2.0

    store = GraphStore(tmp_path / "graphs")
    step = backend.jit(accumulate, store=store, owner="accumulate", captures=lambda: {"total": total})
    for i in range(1, 4):
        np.testing.assert_allclose(step(np.ones(2, np.float32)), [2.0 * i, 2.0 * i])
    assert store.saved == 0 and not _graph_files(store)


def test_other_environments_graphs_are_pruned_once_unused(tmp_path, toy):
    """Graphs kept under another babygan, TensorFlow or Keras are never found again: their
    folder goes when a graph is next kept, once nothing used it for two weeks."""
    fn, captures, _ = toy
    x = np.ones((1, 2), np.float32)
    backend.jit(
        fn, store=GraphStore(tmp_path / "graphs", "an older babygan"), owner="toy", captures=captures
    )(x, 1.0)
    backend.jit(fn, store=GraphStore(tmp_path / "graphs", "another install"), owner="toy", captures=captures)(
        x, 1.0
    )
    old, recent = sorted((tmp_path / "graphs").iterdir(), key=lambda p: p.stat().st_mtime)
    long_ago = time.time() - 30 * 86400
    os.utime(old, (long_ago, long_ago))
    store = GraphStore(tmp_path / "graphs")
    backend.jit(fn, store=store, owner="toy", captures=captures)(x, 1.0)
    assert store.saved == 1 and not old.exists() and recent.exists()
    assert len(list((tmp_path / "graphs").iterdir())) == 2


def test_the_store_can_be_turned_off(monkeypatch):
    from babygan.session import Session

    assert Session("builtin", offline=True).graphs is not None
    monkeypatch.setenv("BABYGAN_STORE_GRAPHS", "0")
    assert Session("builtin", offline=True).graphs is None
    assert Session("builtin", offline=True, store_graphs=True).graphs is not None


def test_the_builtin_models_graphs_are_kept_and_change_no_child(tmp_path):
    """A session with the store runs the generator's, dlib's, the encoder's and the ager's
    graphs from their stored definitions, and a later session finds them all; the child is the
    same bit for bit as one made without the store."""
    from babygan import pipeline
    from babygan.aging import AgingSettings
    from babygan.latent import Age
    from babygan.session import Session

    photos = str(shared_path("faces", "obama.jpg")), str(shared_path("faces", "family_mother.jpg"))
    opts = pipeline.ChildOptions(
        age=Age.years(8), aging=AgingSettings(steps=3), estimate=False, resemblance=False
    )

    def child(store_graphs: bool) -> tuple[np.ndarray, Session]:
        session = Session(
            "builtin", offline=True, progress=False, use_cache=False, encoder={"iterations": 3},
            store_graphs=store_graphs,
        )  # fmt: skip
        return pipeline.predict(*photos, opts, session).children[0].dlatents, session

    plain, none = child(False)
    assert none.graphs is None
    first_w, first = child(True)
    assert first.graphs is not None and first.graphs.saved >= 4  # generator, dlib, encoder, ager
    later_w, later = child(True)
    assert later.graphs is not None
    assert later.graphs.loaded == first.graphs.saved and later.graphs.saved == 0
    assert np.array_equal(first_w, plain) and np.array_equal(later_w, plain)


def test_the_backend_keeps_xla_kernels_under_the_home(tmp_path):
    """A fresh process's ``backend.start`` points TensorFlow's persistent XLA cache at
    $BABYGAN_HOME/xla, unless the user's TF_XLA_FLAGS names a directory of its own."""
    code = "import os; from babygan import backend; backend.start(); print(os.environ.get('TF_XLA_FLAGS'))"
    env = {k: v for k, v in os.environ.items() if k != "TF_XLA_FLAGS"}
    env.update(BABYGAN_HOME=str(tmp_path / "home"), KERAS_BACKEND="tensorflow")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"--tf_xla_persistent_cache_directory={tmp_path / 'home' / 'xla'}"
    assert (tmp_path / "home" / "xla").is_dir()
    env["BABYGAN_STORE_GRAPHS"] = "0"  # no store, no kernels kept
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"
    del env["BABYGAN_STORE_GRAPHS"]
    mine = "--tf_xla_persistent_cache_directory=/somewhere/else"
    env["TF_XLA_FLAGS"] = mine
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == mine


class _Watched:
    """A threading.Event that says whether anyone waited on it."""

    def __init__(self) -> None:
        import threading

        self.inner, self.waiting = threading.Event(), threading.Event()

    def is_set(self) -> bool:
        return self.inner.is_set()

    def set(self) -> None:
        self.inner.set()

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        return self.inner.wait(timeout)


def test_tracing_after_holds_a_trace_until_the_event_but_not_a_stored_graph(tmp_path, toy):
    import threading

    from babygan.backend.graph_store import tracing_after

    fn, captures, _ = toy
    traced = []

    def counted(x, scale):
        traced.append(threading.current_thread().name)
        return fn(x, scale)

    x = np.ones((1, 2), np.float32)
    store = GraphStore(tmp_path / "graphs")
    event = _Watched()

    def warm():
        with tracing_after(event):  # type: ignore[arg-type]
            backend.jit(counted, store=store, owner="toy", captures=captures)(x, 1.0)

    thread = threading.Thread(target=warm, name="warm")
    thread.start()
    assert event.waiting.wait(60) and traced == []  # a graph to trace: it waits for the event
    event.set()
    thread.join(60)
    assert traced == ["warm"] and store.saved == 1

    # stored already: a later process's warm-up registers it at once, event or not
    later, unset = GraphStore(tmp_path / "graphs"), _Watched()
    with tracing_after(unset):  # type: ignore[arg-type]
        backend.jit(counted, store=later, owner="toy", captures=captures)(x, 1.0)
    assert later.loaded == 1 and traced == ["warm"] and not unset.waiting.is_set()


def test_prepare_makes_a_calls_graph_ready_without_running_it(tmp_path, toy):
    """``prepare`` traces and keeps (or looks up) the graph of a call; the call then runs it,
    untraced again (the encoder lets a warm-up thread's tracing start beside that first run)."""
    fn, captures, _ = toy
    traced: list[int] = []

    def counted(x, scale):
        traced.append(1)
        return fn(x, scale)

    x = np.array([[1.0, 2.0]], np.float32)
    store = GraphStore(tmp_path / "graphs")
    step = backend.jit(counted, store=store, owner="toy", captures=captures)
    step.prepare(x, 2.0)
    assert traced == [1] and store.saved == 1 and len(_graph_files(store)) == 1
    np.testing.assert_allclose(step(x, 2.0)["y"], [[13.0, 19.0, 25.0]])
    step.prepare(x, 2.0)
    assert traced == [1] and store.saved == 1
    later = GraphStore(tmp_path / "graphs")
    backend.jit(counted, store=later, owner="toy", captures=captures).prepare(x, 2.0)
    assert later.loaded == 1 and traced == [1]
