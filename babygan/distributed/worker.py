"""The worker side of ``babygan batch --ray``: a Ray actor holding one Session (no Ray import here).

The driver (babygan/distributed/ray_batch.py) makes :class:`RowWorker` a Ray actor; each worker
process runs rows with :func:`babygan.batch.run_row`, from photo bytes the driver sends.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babygan import __version__, backend
from babygan.atomic import write_bytes_atomic
from babygan.batch import BatchRow, RowOutcome, run_row
from babygan.pipeline import ChildOptions
from babygan.session import Session

_PREFIX = "babygan-ray-"

#: makes a worker's Session (called on the worker): ``Session``, a lambda, ``SessionOptions.open``
SessionOpener = Callable[[], Session]


class RowWorker:
    """One worker process (a Ray actor): a Session for every row it runs.

    The photos it is sent are kept in a private folder, named by their SHA-256, so that the
    Session's memo and the encoder's cache see a photo sent twice as one photo. The folder is
    removed by ``close``; a worker killed first leaves it, and the next worker on that machine
    removes it (its name holds the process id).
    """

    def __init__(self, open_session: SessionOpener) -> None:
        self._open = open_session
        self._session: Session | None = None
        _remove_orphans()
        self._dir = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")).resolve()
        self.name = f"{socket.gethostname()} {os.getpid()}"

    def ready(self) -> dict[str, Any]:
        """Start the backend, open the Session and load the generator; who this worker is."""
        backend.ensure_started()
        if self._session is None:
            self._session = self._open()
        _ = self._session.generator
        return {"worker": self.name, "pid": os.getpid(), "babygan": __version__}

    def run(
        self, row: BatchRow, options: ChildOptions, output_dir: Path, father: bytes, mother: bytes
    ) -> RowOutcome:
        if self._session is None:
            self.ready()
        assert self._session is not None
        photos = (self._keep(row.father, father), self._keep(row.mother, mother))
        outcome = run_row(row, options, self._session, output_dir, photos)
        outcome.worker = self.name
        return outcome

    def _keep(self, original: Path, data: bytes) -> Path:
        path = self._dir / f"{hashlib.sha256(data).hexdigest()}{Path(original).suffix.lower()}"
        if not path.is_file():
            write_bytes_atomic(path, data)
        return path

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


def _remove_orphans() -> None:
    """Remove the photo folders of this user's workers that are gone (killed before ``close``)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        pid = folder.name.removeprefix(_PREFIX).split("-")[0]
        try:
            if not pid.isdigit() or folder.stat().st_uid != os.getuid():
                continue
            os.kill(int(pid), 0)  # raises when no such process: that worker is gone
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue
