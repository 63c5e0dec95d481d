"""The CLI's skeleton: fast start, version, and one-line errors with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from babygan import __version__
from babygan.cli import main

HEAVY = ("tensorflow", "keras", "dlib", "scipy", "imageio")


def test_help_lists_only_built_commands_and_imports_nothing_heavy():
    code = (
        "import sys; from click.testing import CliRunner; from babygan.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); print(r.output); "
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "models" in out
    for listed in [line.split()[0] for line in out.split("Commands:")[1].splitlines() if line.strip()]:
        if listed == "HEAVY":
            break
        assert listed in main.commands  # every listed command is a real one


def test_version_from_console_script_and_module():
    assert CliRunner().invoke(main, ["--version"]).output.strip() == f"babygan, version {__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "babygan", "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"babygan, version {__version__}"


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True
    )


def test_the_executable_ends_without_pythons_teardown_after_its_exit_handlers():
    """`babygan` ends as Python's shutdown begins (threads joined, atexit handlers, streams
    flushed) and skips the teardown that follows (about 1.1 s of TensorFlow after a predict)."""
    code = """
        import atexit, sys, threading, time
        from pathlib import Path

        class TornDown:
            def __del__(self):
                sys.stdout.write("torn down\\n")
                sys.stdout.flush()

        keep = TornDown()
        atexit.register(lambda: print("atexit ran"))

        marker = Path(sys.argv[1])

        def late():  # work still running when the command returns is waited for
            time.sleep(0.3)
            marker.write_text("done")

        threading.Thread(target=late).start()
        from babygan.cli.entry import run

        sys.argv = ["babygan", "--version"]
        run()
    """
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        marker = Path(tmp) / "late.txt"
        proc = _python(code, str(marker))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [f"babygan, version {__version__}", "atexit ran"]
        assert marker.read_text() == "done"
        # the premise: the same script ended the ordinary way is torn down
        ordinary = _python(code.replace("run()", "sys.exit(0)"), str(Path(tmp) / "ordinary.txt"))
        assert "torn down" in ordinary.stdout


def test_the_executable_keeps_exit_statuses_and_error_lines():
    failed = subprocess.run(
        [sys.executable, "-m", "babygan", "models", "path", "no-such-model"], capture_output=True, text=True
    )
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("Error: no-such-model: not a file path that exists, nor a known model name")
    usage = subprocess.run([sys.executable, "-m", "babygan", "frobnicate"], capture_output=True, text=True)
    assert usage.returncode == 2
    assert "No such command 'frobnicate'" in usage.stderr
    message = _python("from babygan.cli.entry import quick_exit; quick_exit('babygan: gave up')")
    assert (message.returncode, message.stderr.strip()) == (1, "babygan: gave up")


def test_user_errors_are_one_line_with_exit_1():
    result = CliRunner().invoke(main, ["models", "path", "no-such-model"])
    assert result.exit_code == 1
    expected = "Error: no-such-model: not a file path that exists, nor a known model name"
    assert result.stderr.startswith(expected)
    assert len(result.stderr.strip().splitlines()) == 1


def test_unknown_command_is_a_usage_error():
    result = CliRunner().invoke(main, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_every_package_directory_is_listed_in_pyproject():
    """pyproject lists packages explicitly (models/ ships as babygan._manifest): a new
    sub-package that is not listed would be missing from an installed wheel."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(root).parts) for p in (root / "babygan").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def test_tensorflow_startup_chatter_is_hidden_but_the_device_is_said(tmp_path):
    """A real `babygan generate` process: no oneDNN/absl/CUDA-probe lines, one line naming the device."""
    from tiny_generator import tiny_generator

    model = tmp_path / "tiny.npz"
    tiny_generator().save(model)
    env = {**__import__("os").environ, "BABYGAN_HOME": str(tmp_path / "home")}
    env.pop("BABYGAN_TF_VERBOSE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "babygan", "generate", "-m", str(model), "--seeds", "0", "-o", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "seed0000.png").is_file()
    for noise in ("oneDNN", "absl::InitializeLog", "cuda drivers", "cuInit"):
        assert noise not in proc.stderr
    assert "babygan: Keras backend tensorflow: running on" in proc.stderr


def test_the_backend_is_imported_uncollected_and_frozen_leaving_the_collector_as_it_was():
    """Starting the backend freezes what its import made (later collections skip it), frees the
    garbage made before, and leaves the collector on, or off where the caller had turned it off."""
    code = textwrap.dedent(
        """
        import gc, sys, weakref
        if sys.argv[1] == "off":
            gc.disable()
        class Cycle:
            pass
        before = Cycle()
        before.me = before
        gone = weakref.ref(before)
        del before
        from babygan import backend
        backend.start()
        print(gc.get_freeze_count() > 100_000, gc.isenabled(), gone() is None)
        """
    )
    env = {**__import__("os").environ}
    env.pop("BABYGAN_TF_VERBOSE", None)
    for state, enabled in (("on", "True"), ("off", "False")):
        out = subprocess.run(
            [sys.executable, "-c", code, state], capture_output=True, text=True, check=True, env=env
        ).stdout.split()
        assert out == ["True", enabled, "True"], (state, out)


def test_the_tensorflow_backend_starts_without_importing_an_installed_jax():
    """TF Lite and Keras's Orbax callback import JAX whenever it is installed (0.5 s of the
    start); under the TensorFlow backend babygan refuses it to them, and to them only."""
    pytest.importorskip("jax")  # installed with the test extra
    code = textwrap.dedent(
        """
        import importlib, sys
        from babygan import backend
        backend.start()
        print("jax" in sys.modules, importlib.import_module("tensorflow.lite.python.util")._jit)
        import jax  # the caller's own import finds it
        print(jax.numpy.add(1, 2))
        """
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "None", "3"], out.stdout + out.stderr


def test_a_command_line_mistake_is_answered_before_tensorflow_loads():
    code = (
        "import sys; from click.testing import CliRunner; from babygan.cli import main; "
        "r = CliRunner().invoke(main, ['predict', 'only-one.jpg']); print(r.exit_code, r.output); "
        "print('TF', 'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("2 ")
    assert "TF False" in out


def test_file_system_errors_are_one_line_not_a_traceback(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = CliRunner().invoke(main, ["--models-dir", str(not_a_dir / "sub"), "models", "fetch", "age"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert lines == [f"Error: {not_a_dir / 'sub'}: Not a directory"]


def test_an_unwritable_output_dir_is_one_line_not_a_traceback(tmp_path):
    from tiny_generator import tiny_generator

    model = tmp_path / "tiny.npz"
    tiny_generator().save(model)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    args = ["generate", "-m", str(model), "--seeds", "0", "-o", str(not_a_dir / "out")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == f"Error: {not_a_dir / 'out'}: Not a directory"
