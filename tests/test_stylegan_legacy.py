"""Reading official-format pickles: forms, numpy names, damaged files, wrong networks, and security.

What these tests cannot catch: the pickles here are written by tests/official_pickle.py from
babygan's own ``legacy.official_name_table``, so a wrong name or layout in that table would be
written and read back the same way and pass. The judge of the official names and layouts is
tests/test_stylegan_parity.py, against a pickle and outputs made by NVlabs' own code
(../shared/reference).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from official_pickle import (
    dumps,
    global_payload,
    nested_payload,
    official_gs,
    stack_global_payload,
    write_official_pickle,
)
from tiny_generator import tiny_generator

from babygan.errors import ModelFileError
from babygan.stylegan import Generator, legacy, load_generator


@pytest.fixture(scope="module")
def G() -> Generator:
    return tiny_generator(seed=3)


@pytest.mark.parametrize("form", ["tuple", "gs"])
@pytest.mark.parametrize("numpy_names", [1, 2])
def test_official_pickle_loads_exactly(G: Generator, tmp_path: Path, form: str, numpy_names: int) -> None:
    path = write_official_pickle(tmp_path / "net.pkl", G, form=form, numpy_names=numpy_names)
    marker = b"numpy.core.multiarray" if numpy_names == 1 else b"numpy._core.multiarray"
    assert marker in path.read_bytes()
    loaded = load_generator(path)
    assert loaded.config == G.config
    assert set(loaded.params) == set(G.params)
    for name, value in G.params.items():
        np.testing.assert_array_equal(loaded.params[name], value, err_msg=name)
    z = np.random.RandomState(0).randn(3, G.z_dim)
    np.testing.assert_array_equal(loaded.run(z, 0.7, 8), G.run(z, 0.7, 8))


def test_build_module_src_is_never_executed(G: Generator, tmp_path: Path) -> None:
    # The helper's build_module_src raises if run; put a file-writing statement in as well.
    gs = official_gs(G)
    marker = tmp_path / "ran.txt"
    gs._state["build_module_src"] = f"open({str(marker)!r}, 'w').write('ran')\n"
    path = write_official_pickle(tmp_path / "net.pkl", G, gs=gs)
    load_generator(path)
    assert not marker.exists()


def _check_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelFileError) as info:
        load_generator(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path.name}: ")
    for fragment in fragments:
        assert fragment in message
    return message


def test_truncated_pickle(G: Generator, tmp_path: Path) -> None:
    data = write_official_pickle(tmp_path / "full.pkl", G).read_bytes()
    for cut in (len(data) // 3, len(data) - 1):
        path = tmp_path / f"cut{cut}.pkl"
        path.write_bytes(data[:cut])
        _check_error(path, "truncated")


def test_corrupt_pickle(G: Generator, tmp_path: Path) -> None:
    data = bytearray(write_official_pickle(tmp_path / "full.pkl", G).read_bytes())
    data[2:40] = b"\xff" * 38  # opcodes replaced by garbage
    path = tmp_path / "corrupt.pkl"
    path.write_bytes(bytes(data))
    _check_error(path, "corrupt")


def test_empty_and_foreign_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    _check_error(empty, "empty")
    text = tmp_path / "notes.pkl"
    text.write_text("hello, this is not a network\n")
    _check_error(text, "not a network pickle")
    png = tmp_path / "photo.pkl"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    _check_error(png, "not a network pickle")


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such file"):
        load_generator(tmp_path / "nope.pkl")


def test_stylegan2_pickle_is_refused(G: Generator, tmp_path: Path) -> None:
    gs = official_gs(G)
    gs._state["build_func_name"] = "G_main"
    gs._state["components"]["synthesis"]._state["build_func_name"] = "G_synthesis_stylegan2"
    path = write_official_pickle(tmp_path / "sg2.pkl", G, gs=gs)
    _check_error(path, "not a StyleGAN v1 generator", "G_main")


def test_unknown_static_kwargs_are_refused(G: Generator, tmp_path: Path) -> None:
    path = write_official_pickle(tmp_path / "odd.pkl", G, gs=official_gs(G, extra_kwargs={"fmap_min": 4}))
    _check_error(path, "not a StyleGAN v1 generator", "fmap_min")


def test_unsupported_variant_is_refused(G: Generator, tmp_path: Path) -> None:
    path = write_official_pickle(
        tmp_path / "nostyle.pkl", G, gs=official_gs(G, extra_kwargs={"use_styles": False})
    )
    _check_error(path, "use_styles")


def test_known_harmless_kwargs_are_accepted(G: Generator, tmp_path: Path) -> None:
    extra = {"label_size": 0, "structure": "linear", "truncation_psi": 0.5, "randomize_noise": True}
    path = write_official_pickle(tmp_path / "ok.pkl", G, gs=official_gs(G, extra_kwargs=extra))
    assert load_generator(path).config == G.config


def test_missing_and_extra_variables_are_refused(G: Generator, tmp_path: Path) -> None:
    gs = official_gs(G)
    synth = gs._state["components"]["synthesis"]._state
    synth["variables"] = [(n, v) for n, v in synth["variables"] if n != "8x8/Conv1/bias"]
    _check_error(write_official_pickle(tmp_path / "missing.pkl", G, gs=gs), "missing", "8x8/Conv1/bias")
    gs = official_gs(G)
    gs._state["components"]["mapping"]._state["variables"].append(
        ("LabelConcat/weight", np.ones((1, 32), "f4"))
    )
    _check_error(write_official_pickle(tmp_path / "extra.pkl", G, gs=gs), "unexpected", "LabelConcat")


def test_wrong_shape_is_refused(G: Generator, tmp_path: Path) -> None:
    gs = official_gs(G)
    synth = gs._state["components"]["synthesis"]._state
    synth["variables"] = [
        (n, v[..., :-1].copy() if n == "8x8/Conv0_up/weight" else v) for n, v in synth["variables"]
    ]
    _check_error(write_official_pickle(tmp_path / "shape.pkl", G, gs=gs), "8x8/Conv0_up/weight", "shape")


def test_network_mid_growing_is_refused(G: Generator, tmp_path: Path) -> None:
    gs = official_gs(G)
    gs._state["variables"] = [(n, np.float32(1.5) if n == "lod" else v) for n, v in gs._state["variables"]]
    _check_error(write_official_pickle(tmp_path / "lod.pkl", G, gs=gs), "lod")


def test_other_objects_are_not_generators(tmp_path: Path) -> None:
    path = tmp_path / "dict.pkl"
    path.write_bytes(pickle.dumps({"a": np.zeros(3, np.float32)}, protocol=4))
    _check_error(path, "not a StyleGAN v1 generator")


# ------------------------------------------------------------------ security

_DANGEROUS = [
    ("os", "system", lambda marker: (f"touch {marker}",)),
    ("posix", "system", lambda marker: (f"touch {marker}",)),
    ("builtins", "eval", lambda marker: (f"open({str(marker)!r}, 'w').write('x')",)),
    ("builtins", "exec", lambda marker: (f"open({str(marker)!r}, 'w').write('x')",)),
    ("subprocess", "Popen", lambda marker: (["touch", str(marker)],)),
    ("builtins", "open", lambda marker: (str(marker), "w")),
]


@pytest.mark.parametrize(("module", "name", "args"), _DANGEROUS, ids=[f"{m}.{n}" for m, n, _ in _DANGEROUS])
@pytest.mark.parametrize("how", ["GLOBAL", "GLOBAL-proto2", "STACK_GLOBAL", "nested-in-network"])
def test_malicious_pickles_are_refused_before_running(
    G: Generator, tmp_path: Path, module: str, name: str, args, how: str
) -> None:
    marker = tmp_path / "pwned"
    a = args(marker)
    if how == "GLOBAL":
        data = global_payload(module, name, a)
    elif how == "GLOBAL-proto2":
        data = global_payload(module, name, a, protocol=2)
    elif how == "STACK_GLOBAL":
        data = stack_global_payload(module, name, a)
    else:
        data = nested_payload(G, module, name, a)
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    message = _check_error(path, f"refuses to load: the pickle references {module}.{name}", "could run code")
    assert "Traceback" not in message
    assert not marker.exists()
    with pytest.raises(ModelFileError):  # the library entry point refuses too
        legacy.load_official(path)
    assert not marker.exists()


def test_payload_is_live_with_a_plain_unpickler(tmp_path: Path) -> None:
    # Shows the payloads above are real: the standard unpickler would run them.
    marker = tmp_path / "proof"
    pickle.loads(stack_global_payload("builtins", "open", (str(marker), "w"))).close()
    assert marker.exists()


def test_numpy_object_arrays_cannot_smuggle_callables(tmp_path: Path) -> None:
    # exec, not print: Ray (imported by other tests of the run) replaces builtins.print
    arr = np.array([exec], dtype=object)
    path = tmp_path / "objarr.pkl"
    path.write_bytes(dumps(arr))
    _check_error(path, "refuses to load", "builtins.exec")
