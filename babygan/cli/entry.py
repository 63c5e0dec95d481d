"""The ``babygan`` executable (and ``python -m babygan``): the click group, then a quick exit.

Once a command has run, every file it made is already written and renamed into place, yet
Python's own shutdown would still tear TensorFlow down piece by piece (its thread pools,
oneDNN's kernel caches, the traced graphs): about 1.1 s of a 15 s cold ``predict`` on a
2-core CPU (``scripts/bench_cold_predict.py``), after which nothing is left to do. So the
process ends the way Python's shutdown begins (non-daemon threads joined, ``atexit``
handlers run, the standard streams flushed) and then stops at once, skipping the teardown.

Tests and Python callers use :data:`babygan.cli.main` (the group itself) and are not affected.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Sequence
from typing import NoReturn

from babygan.cli import main


def run(args: Sequence[str] | None = None) -> NoReturn:
    """Run ``babygan`` with ``args`` (default ``sys.argv[1:]``) and end the process with its
    exit status. A command that fails with a Python traceback (a bug) ends as Python ends."""
    try:
        main.main(args=None if args is None else list(args))
        code: int | str | None = 0  # click's standalone mode always exits; this is a fallback
    except SystemExit as exc:
        code = exc.code
    quick_exit(code)


def quick_exit(code: int | str | None) -> NoReturn:
    """End the process with ``code`` (as ``sys.exit`` reads it) without Python's teardown."""
    shutdown = getattr(threading, "_shutdown", None)
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if shutdown is None or run_exit_handlers is None:  # not CPython: the ordinary way
        sys.exit(code)
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message"): the message on stderr, status 1
        print(code, file=sys.stderr)
        status = 1
    shutdown()  # what Python does first: wait for the non-daemon threads (executors included)
    run_exit_handlers()  # then the atexit handlers (logging's, Ray's, temporary folders')
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (| head) or stream: nothing more to say
            pass
    os._exit(status)
