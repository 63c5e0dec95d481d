"""The manifest of model files (``models/manifest.toml``): names, aliases, mirrors, sizes, hashes, licences.

Reading it is all this module does; babygan/models.py finds, fetches and verifies the files.
"""

from __future__ import annotations

import functools
import os
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from babygan.errors import ModelFileError

#: a TOML file of the same form whose entries are added to (or replace) the built-in ones
MANIFEST_ENV = "BABYGAN_MANIFEST"


@dataclass(frozen=True)
class ModelFile:
    """One entry of the manifest."""

    name: str
    kind: str
    urls: tuple[str, ...]
    licence: str
    description: str = ""
    size: int | None = None
    sha256: str = ""  # "" = unpinned
    sha256_bz2: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def pinned(self) -> bool:
        return bool(self.sha256)


_KNOWN_KEYS = {f for f in ModelFile.__dataclass_fields__}


def _manifest_text() -> str:
    # A source checkout reads models/manifest.toml directly; an installed wheel
    # carries the same file as package data.
    checkout = Path(__file__).resolve().parent.parent / "models" / "manifest.toml"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    return resources.files("babygan._manifest").joinpath("manifest.toml").read_text(encoding="utf-8")


def manifest() -> dict[str, ModelFile]:
    """All registry entries by file name, in manifest order.

    ``$BABYGAN_MANIFEST`` may name a TOML file of the same form whose entries are
    added to (or replace) the built-in ones: a private model, an internal mirror.
    """
    return _load_manifest(os.environ.get(MANIFEST_ENV) or None)


@functools.cache
def _load_manifest(extra: str | None) -> dict[str, ModelFile]:
    entries = _parse_manifest(_manifest_text(), "models/manifest.toml")
    if extra:
        try:
            text = Path(extra).read_text(encoding="utf-8")
        except OSError as exc:
            raise ModelFileError(f"{extra}: cannot read the extra manifest (${MANIFEST_ENV}): {exc}") from exc
        entries.update(_parse_manifest(text, extra))
    return entries


def _parse_manifest(text: str, source: str) -> dict[str, ModelFile]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ModelFileError(f"{source}: not a valid manifest: {exc}") from exc
    entries: dict[str, ModelFile] = {}
    for raw in data.get("file", []):
        unknown = set(raw) - _KNOWN_KEYS
        if unknown or "name" not in raw:
            where = raw.get("name", "?")
            raise ModelFileError(f"{source}: entry {where}: unknown keys {sorted(unknown)} or no name")
        entry = ModelFile(
            **{**raw, "urls": tuple(raw.get("urls", ())), "aliases": tuple(raw.get("aliases", ()))}
        )
        entries[entry.name] = entry
    return entries


def lookup(name: str) -> ModelFile:
    """The entry for a file name or alias; a clear error listing the known names otherwise."""
    entries = manifest()
    if name in entries:
        return entries[name]
    for entry in entries.values():
        if name in entry.aliases:
            return entry
    known = ", ".join(entries)
    raise ModelFileError(f"{name}: not a file path that exists, nor a known model name (known: {known})")
