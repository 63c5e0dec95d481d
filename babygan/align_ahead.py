"""dlib's work for a command, in a second process: the photos' faces while TensorFlow loads,
then the landmarks and descriptors the command asks for.

A cold ``predict`` spends about 2 s importing TensorFlow on one core and about 1 s finding the
parents' faces and landmarks (loading dlib's predictor, its HOG search) on one core, one after
the other; a 2-core CPU can do both at once. The import holds Python's GIL, and so does dlib
while it loads its models (its search releases it): a thread gained nothing, a process does.
``FaceSearchAhead(paths)`` starts ``python -m babygan.align_ahead PHOTO...`` (the CLI does so
before the backend starts); the Session asks it for each photo's faces
(``Session(faces_ahead=...)``) and crops them itself, so the aligned face is the one
``align.align_photo`` makes from the same file (the search is the same code, run elsewhere).

The command needs dlib again later: the identity loss's landmarks of the aligned photos and of
the blend's render (``identity_term.find_landmarks``), and the descriptors of the child and its
parents (``resemblance.FaceDescriber``). Loading those models here cost 0.8 s of every command
(the HOG detector 0.27 s, the 68-point predictor 0.43 s, the descriptor network 0.1 s, measured
on the 2-core Xeon), while the child holds them loaded already; so the child stays, and answers
``find_landmarks`` and ``describe`` with the same functions on the same pixels (the same numbers,
every bit: JSON keeps a float's every bit).

The child prints one JSON line per photo: its path, the file's size and modification time (a
photo changed since is searched again), and its faces or the error its search raised. Then it
answers requests read from its stdin, a JSON line each (``{"id", "kind", "image"}``), with a line
holding the same ``id``, until its stdin closes. Whatever goes wrong with the child (it cannot
start, dies, prints something else, does not answer) is logged at debug level, and the work is
done in this process as before.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from babygan.resemblance import Descriptor

log = logging.getLogger("babygan")

#: how long a caller waits for one of the child's answers before doing the work itself
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


def _pack(image: np.ndarray) -> dict[str, Any]:
    """A uint8 (H, W, 3) image as JSON: its shape and its bytes in base64."""
    image = np.ascontiguousarray(image, np.uint8)
    return {"shape": list(image.shape), "data": base64.b64encode(image.tobytes()).decode()}


def _image_key(image: np.ndarray) -> tuple[bytes, tuple[int, ...]]:
    """What tells an image's describe request sent ahead from another's: its pixels and shape."""
    return np.ascontiguousarray(image, np.uint8).tobytes(), tuple(image.shape)


def _unpack(spec: dict[str, Any]) -> np.ndarray:
    shape = tuple(int(v) for v in spec["shape"])
    return np.frombuffer(base64.b64decode(spec["data"]), np.uint8).reshape(shape)


class FaceSearchAhead:
    """Photos' faces (``align.Face`` lists), found by a child process started at once, which
    then answers the command's other dlib work (``find_landmarks``, ``describe``).

    ``paths``: the photos; ``upsample`` and ``predictor`` as ``align.detect_faces`` takes them (the
    Session's own alignment uses the defaults). ``faces(path)`` waits for the child's answer;
    ``close()`` stops the child (the CLI calls it when the command ends). Thread-safe.
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
        self._lock = threading.Condition()  # guards what the reader thread fills
        self._writing = threading.Lock()  # one request at a time on the child's stdin
        self._answers: dict[Path, dict[str, Any]] = {}  # the faces, by photo
        self._replies: dict[int, dict[str, Any]] = {}  # answers to requests, by id
        self._ended = False  # the child's output closed (it exited, failed or was stopped)
        self._said_why = False
        self._next_id = 0
        self._ahead: dict[tuple[bytes, tuple[int, ...]], int] = {}  # describe requests sent early
        self._here_describer: Any = None  # resemblance.FaceDescriber, where the child cannot answer
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (the child's, until close())
        command = [sys.executable, "-m", "babygan.align_ahead", "--upsample", str(self.upsample)]
        if self.predictor is not None:
            command += ["--predictor", self.predictor]
        command += ["--", *map(str, self.paths)]
        try:
            pipe = subprocess.PIPE
            self._proc = subprocess.Popen(
                command, stdin=pipe, stdout=pipe, stderr=self._stderr, env=_child_env()
            )
        except OSError as why:
            log.debug("face search ahead: could not start (%s); searching here", why)
            self._ended = self._said_why = True
            self._stderr.close()
            return
        reader = threading.Thread(target=self._read, args=(self._proc,), name="babygan-ahead", daemon=True)
        self._reader = reader
        reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        """The reader thread: files each line the child prints, until its output ends."""
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                try:
                    answer = json.loads(line)
                    key = int(answer["id"]) if "id" in answer else Path(answer["path"])
                except (ValueError, KeyError, TypeError) as why:
                    log.debug("face search ahead: unreadable answer (%s); searching here", why)
                    self._said_why = True
                    proc.kill()
                    break
                with self._lock:
                    if isinstance(key, Path):
                        self._answers[key] = answer
                    else:
                        self._replies[key] = answer
                    self._lock.notify_all()
        except (OSError, ValueError):  # its output closed under it: nothing more comes
            pass
        finally:
            with self._lock:
                self._ended = True
                self._lock.notify_all()

    def _wait(self, ready: Callable[[], Any]) -> Any:
        """``ready()``'s first value that is not None, or None once the child can give none."""
        deadline = time.monotonic() + WAIT_SECONDS
        with self._lock:
            while True:
                got = ready()
                if got is not None:
                    return got
                left = deadline - time.monotonic()
                if self._ended or left <= 0:
                    break
                self._lock.wait(left)
        if not self._ended:
            log.debug("face search ahead: no answer in %.0f s; searching here", WAIT_SECONDS)
            self._said_why = True
            self.close()
        self._say_why()
        return None

    def _say_why(self) -> None:
        """Log once why the child gave no answer (its exit status and last line on stderr)."""
        proc = self._proc
        if self._said_why or proc is None:
            return
        self._said_why = True
        try:
            code = proc.wait(timeout=5)
            self._stderr.seek(0)
            lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        except (subprocess.TimeoutExpired, OSError, ValueError):
            code, lines = proc.returncode, []
        log.debug("face search ahead: exit %s (%s); searching here", code, (lines or ["no message"])[-1])

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
        answer = self._wait(lambda: self._answers.get(path))
        try:
            if answer is None or answer["stamp"] != _stamp(path):
                return None
            if "error" in answer:
                raise BabyganError(answer["error"])
            return [
                Face(tuple(int(v) for v in f["box"]), np.array(f["landmarks"], np.float64).reshape(68, 2))
                for f in answer["faces"]
            ]
        except (OSError, KeyError, TypeError, ValueError):
            return None

    # -- requests -------------------------------------------------------------

    def _send(self, kind: str, image: np.ndarray) -> int | None:
        """Ask the child for ``kind`` of ``image``; the request's id, or None where it cannot be asked."""
        with self._lock:
            proc = self._proc
            if proc is None or self._ended or proc.stdin is None:
                return None
            rid, self._next_id = self._next_id, self._next_id + 1
        line = json.dumps({"id": rid, "kind": kind, "image": _pack(image)}).encode() + b"\n"
        # not under self._lock: a write the pipe makes wait must not keep the reader from filing
        # the child's answers (the child answers before it reads on)
        with self._writing:
            try:
                proc.stdin.write(line)
                proc.stdin.flush()
            except (OSError, ValueError):  # it has gone: its output ends too
                return None
        return rid

    def _reply(self, rid: int | None) -> dict[str, Any] | None:
        if rid is None:
            self._say_why()
            return None
        reply = self._wait(lambda: self._replies.pop(rid, None))
        if reply is not None and "error" in reply:
            log.debug("face search ahead: %s; done here", reply["error"])
            return None
        return reply

    def find_landmarks(self, image: np.ndarray) -> np.ndarray | None:
        """``identity_term.find_landmarks(image)`` (uint8 (S, S, 3) -> (68, 2) or None), done by
        the child; here where it cannot answer."""
        from babygan.encoder.identity_term import find_landmarks

        reply = self._reply(self._send("landmarks", image))
        try:
            if reply is not None:
                found = reply["landmarks"]
                return None if found is None else np.array(found, np.float64).reshape(68, 2)
        except (KeyError, TypeError, ValueError):
            pass
        return find_landmarks(image)

    def describe_ahead(self, image: np.ndarray) -> None:
        """Have the child start on ``describe(image, ...)`` now, for a later call to collect."""
        key = _image_key(image)
        if key not in self._ahead:
            rid = self._send("describe", image)
            if rid is not None:
                self._ahead[key] = rid

    def describe(self, image: np.ndarray, what: str = "image") -> Descriptor:
        """``resemblance.FaceDescriber().describe(image, what)``, done by the child (here where it
        cannot answer, or found no face: the reason then names ``what``)."""
        from babygan.resemblance import Descriptor, FaceDescriber

        rid = self._ahead.pop(_image_key(image), None)
        reply = self._reply(self._send("describe", image) if rid is None else rid)
        try:
            if reply is not None and reply["vector"] is not None:
                return Descriptor(np.array(reply["vector"], np.float64).reshape(128))
        except (KeyError, TypeError, ValueError):
            pass
        if self._here_describer is None:
            self._here_describer = FaceDescriber()
        return self._here_describer.describe(image, what)

    def close(self) -> None:
        """Stop the child; answers already read are kept, and later work is done here."""
        with self._lock:
            proc, self._proc = self._proc, None
            self._ended = True
            self._lock.notify_all()
        if proc is not None:
            proc.kill()
            proc.wait()
            if self._reader is not None:
                self._reader.join(5)  # it reads to the end of the child's output, then returns
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):  # a request the child never read
                        pipe.close()
            self._stderr.close()


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


def _answer(request: dict[str, Any], describer: Any) -> dict[str, Any]:
    """The child's answer to one request (its error, where the work raised one)."""
    from babygan.encoder.identity_term import find_landmarks

    rid = request.get("id")
    try:
        image = _unpack(request["image"])
        if request["kind"] == "landmarks":
            found = find_landmarks(image)
            return {"id": rid, "landmarks": None if found is None else found.tolist()}
        if request["kind"] == "describe":
            vector = describer.describe(image).vector
            return {"id": rid, "vector": None if vector is None else vector.tolist()}
        return {"id": rid, "error": f"unknown request {request['kind']!r}"}
    except Exception as exc:  # the parent does this work itself, and sees the real error there
        return {"id": rid, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m babygan.align_ahead", description=__doc__.splitlines()[0])
    ap.add_argument("--upsample", type=int, default=1)
    ap.add_argument("--predictor", default=None)
    ap.add_argument("photos", nargs="+", type=Path)
    args = ap.parse_args(argv)
    for path in args.photos:
        print(json.dumps(_search(path, args.upsample, args.predictor)), flush=True)
    from babygan.resemblance import FaceDescriber

    describer = FaceDescriber()  # loaded while the parent still starts TensorFlow
    for line in sys.stdin:
        print(json.dumps(_answer(json.loads(line), describer)), flush=True)


if __name__ == "__main__":
    main()
