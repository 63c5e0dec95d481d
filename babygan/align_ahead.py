"""dlib's face search on a command's photos, in a second process while TensorFlow loads.

A cold ``predict`` spends about 2 s importing TensorFlow on one core and about 1 s finding the
parents' faces and landmarks (loading dlib's predictor, its HOG search) on one core, one after
the other; a 2-core CPU can do both at once. The import holds Python's GIL, and so does dlib
while it loads its models (its search releases it): a thread gained nothing, a process does.
``FaceSearchAhead(paths)`` starts ``python -m babygan.align_ahead PHOTO...`` (the CLI does so
before the backend starts); the Session asks it for each photo's faces
(``Session(faces_ahead=...)``) and crops them itself, so the aligned face is the one
``align.align_photo`` makes from the same file (the search is the same code, run elsewhere).

The child prints one JSON line per photo: its path, the file's size and modification time (a
photo changed since is searched again), and its faces or the error its search raised. Whatever
goes wrong with the child (it cannot start, dies, prints something else) is logged at debug
level and the photos are searched in this process as before.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("babygan")

#: how long a caller waits for the child's answers before searching itself
WAIT_SECONDS = 60.0


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _child_env() -> dict[str, str]:
    """This environment, with this babygan's folder first on PYTHONPATH where it is a source tree
    (a checkout, a worktree) rather than the interpreter's own site-packages, which would then
    come before the standard library."""
    import site

    here = Path(__file__).resolve().parents[1]
    sites = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    if any(Path(p).resolve() == here for p in sites if p):
        return dict(os.environ)
    path = os.pathsep.join(filter(None, [str(here), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


class FaceSearchAhead:
    """Photos' faces (``align.Face`` lists), found by a child process started at once.

    ``paths``: the photos; ``upsample`` and ``predictor`` as ``align.detect_faces`` takes them (the
    Session's own alignment uses the defaults). ``faces(path)`` waits for the child's answers;
    ``close()`` stops it if it still runs (a command that failed before asking).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        upsample: int = 1,
        predictor: str | os.PathLike[str] | None = None,
    ) -> None:
        self.paths = [Path(p).expanduser().resolve() for p in paths]
        self.upsample = int(upsample)
        self.predictor = None if predictor is None else str(predictor)
        self._answers: dict[Path, dict[str, Any]] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        command = [sys.executable, "-m", "babygan.align_ahead", "--upsample", str(self.upsample)]
        if self.predictor is not None:
            command += ["--predictor", self.predictor]
        command += ["--", *map(str, self.paths)]
        try:
            pipe = subprocess.PIPE
            self._proc = subprocess.Popen(
                command, stdout=pipe, stderr=pipe, stdin=subprocess.DEVNULL, env=_child_env()
            )
        except OSError as why:
            log.debug("face search ahead: could not start (%s); searching here", why)
            self._answers = {}

    def _collect(self) -> dict[Path, dict[str, Any]]:
        if self._answers is not None:
            return self._answers
        answers: dict[Path, dict[str, Any]] = {}
        proc, self._proc = self._proc, None
        assert proc is not None
        try:
            out, err = proc.communicate(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            log.debug("face search ahead: no answer in %.0f s; searching here", WAIT_SECONDS)
            out, err = b"", b""
        if proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            log.debug("face search ahead: exit %s (%s); searching here", proc.returncode, tail[0])
        else:
            try:
                for line in out.decode().splitlines():
                    answer = json.loads(line)
                    answers[Path(answer["path"])] = answer
            except (ValueError, KeyError, TypeError) as why:
                log.debug("face search ahead: unreadable answer (%s); searching here", why)
                answers = {}
        self._answers = answers
        return answers

    def faces(
        self,
        path: str | os.PathLike[str],
        *,
        upsample: int = 1,
        predictor: str | os.PathLike[str] | None = None,
    ) -> list[Any] | None:
        """The faces found on ``path`` (``align.Face``, left to right), or None where the child did
        not search this file as it is now with these settings (the caller searches itself).
        Raises the ``BabyganError`` the search raised there (no face, not a photo)."""
        from babygan.align import Face
        from babygan.errors import BabyganError

        path = Path(path).expanduser().resolve()
        wanted = None if predictor is None else str(predictor)
        if path not in self.paths or upsample != self.upsample or wanted != self.predictor:
            return None
        answer = self._collect().get(path)
        try:
            if answer is None or answer["stamp"] != _stamp(path):
                return None
        except OSError:
            return None
        if "error" in answer:
            raise BabyganError(answer["error"])
        return [
            Face(tuple(int(v) for v in f["box"]), np.array(f["landmarks"], np.float64).reshape(68, 2))
            for f in answer["faces"]
        ]

    def close(self) -> None:
        """Stop the child if it still runs; answers already read are kept."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.communicate()
            if self._answers is None:
                self._answers = {}


def _search(path: Path, upsample: int, predictor: str | None) -> dict[str, Any]:
    """One photo's answer: its faces as exact numbers (JSON keeps a float's every bit), or the error."""
    from babygan.align import find_faces
    from babygan.errors import BabyganError

    answer: dict[str, Any] = {"path": str(path)}
    try:
        answer["stamp"] = _stamp(path)
        _, faces = find_faces(path, upsample, predictor)
    except BabyganError as exc:
        answer["error"] = str(exc)
    else:
        answer["faces"] = [{"box": list(f.box), "landmarks": f.landmarks.tolist()} for f in faces]
    return answer


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m babygan.align_ahead", description=__doc__.splitlines()[0])
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--predictor", default=None)
    ap.add_argument("photos", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for path in args.photos:
        print(json.dumps(_search(path, args.upsample, args.predictor)), flush=True)


if __name__ == "__main__":
    main()
