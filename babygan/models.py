"""The registry of model files: where they live, how they are fetched and verified.

Every file the pipeline downloads is listed in ``models/manifest.toml`` with its
mirrors, size, SHA-256 and licence. Files are fetched by name (or alias) into the
models directory, written to a temporary file and renamed only once the hash
matches, and re-verified when reused (a small ``.sha256`` stamp beside each file
records the hash for its size and mtime, so re-verification costs nothing unless
the file changed). Wherever a name is accepted, a local path is accepted too.

Downloads use pooch (its HTTP downloader, its file hash, its bz2 decompressor) with a
tqdm progress bar, into a temporary file renamed by babygan.atomic; the directories come
from platformdirs.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from babygan.atomic import atomic_path
from babygan.builtin import builtin_model_file
from babygan.errors import ModelFileError
from babygan.registry import ModelFile, lookup, manifest

__all__ = [
    "ModelFileError",
    "cache_dir",
    "cached_sha256",
    "ensure_files",
    "fetch",
    "lookup",
    "resolve_model_file",
    "sha256_file",
]

log = logging.getLogger("babygan")

HOME_ENV = "BABYGAN_HOME"
MIRROR_ENV = "BABYGAN_MIRROR"
#: seconds to wait for a server to connect or send the next bytes
DOWNLOAD_TIMEOUT = 30.0

_models_dir_override: Path | None = None


# --------------------------------------------------------------------------- directories


def babygan_home() -> Path:
    """$BABYGAN_HOME, else the platform's user cache dir (e.g. ~/.cache/babygan)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("babygan", appauthor=False))


def use_models_dir(path: str | os.PathLike[str] | None) -> None:
    """Override where model files live for this process (the CLI's --models-dir)."""
    global _models_dir_override
    _models_dir_override = Path(path).expanduser() if path is not None else None


def models_dir() -> Path:
    """Where downloaded model files are kept: --models-dir, else $BABYGAN_HOME/models."""
    if _models_dir_override is not None:
        return _models_dir_override
    return babygan_home() / "models"


def cache_dir(kind: str) -> Path:
    """A per-purpose cache folder under the babygan home (``converted``, ``latents``...), created."""
    path = babygan_home() / kind
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_path(entry: ModelFile) -> Path:
    """Where the entry's file lives in the models directory (whether present or not)."""
    return models_dir() / entry.name


# --------------------------------------------------------------------------- hashing


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _stamp_path(path: Path) -> Path:
    """Where a file's hash stamp lives: beside it in the models dir, else under the home.

    Files elsewhere (the user's own model, a read-only share) are never written beside.
    """
    path = Path(path).absolute()
    if path.parent == models_dir().absolute():
        return path.with_name(f".{path.name}.sha256")
    key = hashlib.sha1(str(path).encode()).hexdigest()
    return babygan_home() / "hashes" / f"{key}.sha256"


def _file_signature(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def cached_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of any file, re-hashed only when its size or mtime changed.

    The hash is remembered across processes in a small stamp file, so a 300 MB
    model is hashed once, not at every start.
    """
    path = Path(path)
    stamp = _stamp_path(path)
    signature = _file_signature(path)
    with contextlib.suppress(OSError, ValueError):
        recorded_signature, digest = stamp.read_text().rsplit(" ", 1)
        if recorded_signature == signature and len(digest) == 64:
            return digest
    digest = sha256_file(path)
    with contextlib.suppress(OSError), atomic_path(stamp) as tmp:
        tmp.write_text(f"{signature} {digest}")
    return digest


def _forget_stamp(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        _stamp_path(path).unlink()


# --------------------------------------------------------------------------- status


@dataclass(frozen=True)
class FileStatus:
    entry: ModelFile
    path: Path
    present: bool
    sha256: str | None  # of the file present, None when absent

    @property
    def verified(self) -> bool | None:
        """True/False against the pinned hash; None when absent or unpinned."""
        if not self.present or not self.entry.pinned:
            return None
        return self.sha256 == self.entry.sha256


def file_status(entry: ModelFile, *, rehash: bool = False) -> FileStatus:
    """Whether the entry's file is present and whether it matches its pinned hash."""
    path = model_path(entry)
    if not path.is_file():
        return FileStatus(entry, path, False, None)
    if rehash:
        _forget_stamp(path)
    return FileStatus(entry, path, True, cached_sha256(path))


def verify(names: Iterable[str] | None = None) -> list[FileStatus]:
    """Re-hash (ignoring stamps) every present file, or the named ones."""
    entries = [lookup(n) for n in names] if names else list(manifest().values())
    return [file_status(e, rehash=True) for e in entries]


# --------------------------------------------------------------------------- fetching


def _candidate_urls(entry: ModelFile) -> list[str]:
    urls = list(entry.urls)
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        urls.insert(0, f"{mirror.rstrip('/')}/{entry.name}")
    return urls


def _describe_failure(exc: BaseException) -> str:
    """A short reason for one failed URL, without the library's stack of wrappers."""
    import requests

    if isinstance(exc, _ChecksumMismatch):
        return str(exc)
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in str(exc):
        return "transfer cut short by the server"
    if isinstance(exc, requests.Timeout):
        return f"no answer within {DOWNLOAD_TIMEOUT:.0f} s"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        if "refused" in text.lower():
            return "connection refused"
        if any(s in text for s in ("Name or service not known", "Failed to resolve", "NameResolution")):
            return "host not found (offline?)"
        return "could not connect"
    return f"{type(exc).__name__}: {exc}"


class _ChecksumMismatch(Exception):
    pass


def _progress_bar(name: str, stream=None):
    from tqdm import tqdm

    class _Bar(tqdm):
        # pooch tests the bar with bool(); tqdm's bool is ambiguous before the total is known.
        def __bool__(self) -> bool:
            return True

    return _Bar(
        desc=name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        miniters=1,
        file=stream if stream is not None else sys.stderr,
        leave=True,
        dynamic_ncols=False,
        ncols=100,
    )


def _download(url: str, target: Path, label: str, progress: bool) -> None:
    """Stream ``url`` into ``target`` with pooch's HTTP downloader (and our progress bar)."""
    import pooch

    bar = _progress_bar(label) if progress else False
    try:
        pooch.HTTPDownloader(progressbar=bar, timeout=DOWNLOAD_TIMEOUT)(url, str(target), None)
    finally:
        if bar:
            bar.close()


def _check_sha256(path: Path, expected: str, when: str = "") -> None:
    """Raise _ChecksumMismatch naming both hashes unless ``path`` hashes to ``expected`` ("" = unpinned)."""
    import pooch

    if expected:
        got = pooch.file_hash(str(path), alg="sha256")
        if got != expected:
            raise _ChecksumMismatch(f"checksum mismatch{when}: expected sha256 {expected}, got {got}")


def _fetch_from(url: str, entry: ModelFile, dest: Path, progress: bool) -> None:
    """Download ``url`` (a .bz2 one is decompressed) into ``dest``, renamed there only once verified."""
    import pooch

    pooch.get_logger().setLevel(logging.WARNING)  # our own messages say what pooch would
    with atomic_path(dest) as tmp:
        if not url.endswith(".bz2"):
            _download(url, tmp, entry.name, progress)
            _check_sha256(tmp, entry.sha256)
            return
        archive = tmp.with_name(f"{tmp.name}.bz2")
        try:
            _download(url, archive, f"{entry.name}.bz2", progress)
            _check_sha256(archive, entry.sha256_bz2)
            pooch.Decompress(method="bzip2", name=tmp.name)(str(archive), "download", None)
        finally:
            archive.unlink(missing_ok=True)
        _check_sha256(tmp, entry.sha256, " after decompressing")


def human_size(size: int | None) -> str:
    """1048576 -> "1.00MB": tqdm's formatter in powers of 1024, the units of the download bar."""
    if size is None:
        return "size unknown"
    from tqdm import tqdm

    return tqdm.format_sizeof(size, "B", divisor=1024)


def fetch(
    name: str,
    *,
    force: bool = False,
    progress: bool = True,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """Make sure the named file is in the models dir and matches its hash; return its path.

    A present file whose hash matches is reused without any request. A present
    file that does not match is replaced. Mirrors are tried in order
    ($BABYGAN_MIRROR first); the first good download wins. When every mirror
    fails, a ModelFileError names the file, each URL with its reason, and
    where to put the file by hand. Nothing partial is left in the cache.
    """
    entry = lookup(name)
    say = echo or (lambda msg: print(msg, file=sys.stderr))
    dest = model_path(entry)
    if dest.is_file() and not force:
        status = file_status(entry)
        if status.verified or not entry.pinned:
            return dest
        say(f"{entry.name}: cached file does not match its sha256; downloading it again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        dest.unlink()
        _forget_stamp(dest)

    say(f"Fetching {entry.name} ({human_size(entry.size)}, licence: {entry.licence})")
    failures: list[str] = []
    for url in _candidate_urls(entry):
        try:
            _fetch_from(url, entry, dest, progress)
        except Exception as exc:  # every failure of one mirror is reported, then the next is tried
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            reason = _describe_failure(exc)
            failures.append(f"{url} ({reason})")
            say(f"{entry.name}: {url} failed: {reason}")
            continue
        digest = cached_sha256(dest)
        if not entry.pinned:
            say(f"{entry.name}: no published sha256 (unpinned); downloaded file has sha256 {digest}")
        return dest
    raise ModelFileError(
        f"{entry.name}: could not download it; tried {'; '.join(failures)}. "
        f"Download it by hand and save it as {dest}, or pass its path instead of the name"
    )


def resolve_model_file(
    name_or_path: str | os.PathLike[str],
    *,
    offline: bool = False,
    echo: Callable[[str], None] | None = None,
) -> Path:
    """A local file for a registry name/alias or a path; fetched into the cache if needed.

    A path that exists is returned as is (never hashed against the registry: it
    may be a file of the user's own). With ``offline=True`` a missing file is an
    error that says how to fetch it instead of a download.
    """
    text = str(name_or_path)
    if text == "builtin":  # babygan's own model: shipped in the package, never fetched
        return builtin_model_file()
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate
    try:
        entry = lookup(text)
    except ModelFileError:
        if os.sep in text or candidate.suffix:
            raise ModelFileError(f"{text}: no such file") from None
        raise
    dest = model_path(entry)
    if offline:
        if not dest.is_file():
            raise ModelFileError(
                f"{entry.name}: not in {dest.parent} and --offline is set; run "
                f"`babygan models fetch {entry.name}` when online, or download it from "
                f"{entry.urls[0]} and save it as {dest}"
            )
        status = file_status(entry)
        if status.verified is False:
            raise ModelFileError(
                f"{dest}: sha256 {status.sha256} does not match the expected {entry.sha256}; "
                f"run `babygan models fetch {entry.name}` to replace it"
            )
        return dest
    return fetch(entry.name, echo=echo)


def _where(entry: ModelFile) -> str:
    return f"{entry.name} ({human_size(entry.size)}, from {entry.urls[0]})" if entry.urls else entry.name


def ensure_files(
    names: Sequence[str],
    *,
    offline: bool = False,
    hint: str = "",
    echo: Callable[[str], None] | None = None,
) -> None:
    """Make sure every named registry file is in the models dir before a run starts.

    Offline, the files missing are named in one error, each with its size and URL, with
    where to save them; online they are fetched, and those that cannot be are named in
    one error likewise. ``hint`` ends the message (e.g. how to do without one file).
    One missing file keeps :func:`resolve_model_file`'s message for it.
    """
    entries = list({e.name: e for e in (lookup(n) for n in names)}.values())
    missing = [e for e in entries if not model_path(e).is_file()]
    if not missing:
        return
    if not offline:
        failed = []
        for entry in missing:
            try:
                fetch(entry.name, echo=echo)
            except ModelFileError as exc:
                if len(missing) == 1:
                    raise ModelFileError(f"{exc}{hint}") from exc
                failed.append(entry)
        if failed:
            raise ModelFileError(
                f"{len(failed)} model files could not be downloaded: "
                f"{'; '.join(_where(e) for e in failed)}. Save them by hand in {models_dir()}{hint}"
            )
        return
    if len(missing) == 1:
        try:
            resolve_model_file(missing[0].name, offline=True)
        except ModelFileError as exc:
            raise ModelFileError(f"{exc}{hint}") from exc
        return
    fetch_names = " ".join(e.name for e in missing)
    total = sum(e.size or 0 for e in missing)
    raise ModelFileError(
        f"{len(missing)} model files are missing ({human_size(total)} in all) and --offline is set: "
        f"{'; '.join(_where(e) for e in missing)}. Run `babygan models fetch {fetch_names}` when online, "
        f"or save them by hand in {models_dir()}{hint}"
    )
