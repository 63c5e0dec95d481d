"""``babygan batch``: read a CSV of parent pairs, predict each in one session, summarise.

A failing row is reported on the row and the others still run; the models load once and
each distinct photo is aligned and encoded once (one babygan/session.py Session).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babygan.atomic import write_text_atomic
from babygan.edit_ranges import EditRangeError, EditRanges
from babygan.errors import BabyganError
from babygan.latent import Age
from babygan.outputs import write_prediction
from babygan.pipeline import ChildOptions, predict
from babygan.session import Session
from babygan.texttable import text_table

log = logging.getLogger("babygan")

BATCH_COLUMNS = ("father", "mother", "name", "genes", "age", "gender_shift")
_NUMBER_COLUMNS = ("genes", "age", "gender_shift")


@dataclass
class BatchRow:
    line: int  # line number in the CSV (the header is line 1)
    name: str
    father: Path
    mother: Path
    overrides: dict[str, float] = field(default_factory=dict)
    ok: bool | None = None
    error: str | None = None
    outputs: dict[str, Any] | None = None
    resemblance: dict[str, Any] | None = None

    def fail(self, message: str) -> None:
        self.ok, self.error = False, message

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "name": self.name,
            "father": str(self.father),
            "mother": str(self.mother),
            "ok": self.ok,
            "error": self.error,
            "overrides": self.overrides,
            "outputs": self.outputs,
            "resemblance": self.resemblance,
        }


def read_pairs(csv_path: str | Path) -> list[BatchRow]:
    """Parse a pairs CSV (columns father, mother; optional name, genes, age, gender_shift).

    Relative photo paths are resolved against the CSV's folder. Row names default to
    ``<father stem>+<mother stem>`` and are made unique. A malformed file raises;
    a bad value in a row is kept on the row as its error.
    """
    csv_path = Path(csv_path)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise BabyganError(f"{csv_path}: cannot read ({exc.strerror or exc})") from exc
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in ("father", "mother") if c not in header]
    if missing:
        raise BabyganError(
            f"{csv_path}: missing column(s) {', '.join(missing)} (header: {', '.join(header)})"
        )
    unknown = [c for c in header if c not in BATCH_COLUMNS]
    if unknown:
        raise BabyganError(
            f"{csv_path}: unknown column(s) {', '.join(unknown)}; known: {', '.join(BATCH_COLUMNS)}"
        )
    rows: list[BatchRow] = []
    used: set[str] = set()  # output folder names taken by earlier rows
    for line, raw in enumerate(reader, start=2):
        rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if any(rec.values()):
            rows.append(_read_row(csv_path, line, rec, used))
    if not rows:
        raise BabyganError(f"{csv_path}: no pairs in the file")
    return rows


def _read_row(csv_path: Path, line: int, rec: dict[str, str], used: set[str]) -> BatchRow:
    where = f"{csv_path.name} line {line}"
    father = csv_path.parent / Path(rec.get("father", "")).expanduser()
    mother = csv_path.parent / Path(rec.get("mother", "")).expanduser()
    name = rec.get("name") or f"{father.stem}+{mother.stem}"
    name = "".join(ch if ch.isalnum() or ch in "+-_." else "_" for ch in name)
    # The name is a folder under OUTPUT_DIR: "." / ".." would write beside batch.json or
    # outside it, and a leading dot hides the folder.
    bad_name = not name or name.startswith(".")
    if not bad_name:
        name = _unique_name(name, used)
        used.add(name)
    row = BatchRow(line, name, father, mother)
    if bad_name:
        row.fail(f"{where}: name {name!r} cannot be a folder name (empty, or starts with '.')")
    for col in _NUMBER_COLUMNS:
        if rec.get(col):
            try:
                row.overrides[col] = float(rec[col])
            except ValueError:
                row.fail(f"{where}: {col}={rec[col]!r} is not a number")
    if not rec.get("father") or not rec.get("mother"):
        row.fail(f"{where}: father and mother are both required")
    return row


def _unique_name(name: str, used: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3`` ... : the first not in ``used`` (rows x, x_2, x -> x, x_2, x_3)."""
    if name not in used:
        return name
    n = 2
    while f"{name}_{n}" in used:
        n += 1
    return f"{name}_{n}"


def _check_row(csv_path: Path, row: BatchRow, ranges: EditRanges) -> None:
    """The row's own numbers within the model's ranges, or an error naming the line and column."""
    checks: dict[str, Callable[[float], None]] = {
        "genes": ranges.check_genes,
        "age": lambda years: ranges.check_age(Age.years(years)),
        "gender_shift": lambda value: ranges.check_shift("gender", value),
    }
    for column, value in row.overrides.items():
        try:
            checks[column](value)
        except EditRangeError as exc:
            raise BabyganError(f"{csv_path.name} line {row.line}, column {column}: {exc.reason}") from exc


def _row_options(base: ChildOptions, overrides: Mapping[str, float]) -> ChildOptions:
    changes: dict[str, Any] = {}
    if "genes" in overrides:
        changes["genes"] = overrides["genes"]
    if "age" in overrides:
        changes["age"] = Age.years(overrides["age"])
    if "gender_shift" in overrides:
        changes["shifts"] = tuple({**dict(base.shifts), "gender": overrides["gender_shift"]}.items())
    return base.with_overrides(**changes) if changes else base


def run_batch(
    csv_path: str | Path,
    output_dir: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
    *,
    on_row: Callable[[BatchRow], None] | None = None,
) -> list[BatchRow]:
    """Predict every pair of the CSV into ``output_dir/<name>/``; a failing row does not stop the rest.

    Returns the rows with ``ok``, ``error``, ``outputs`` and ``resemblance`` filled in, and
    writes them to ``output_dir/batch.json``; ``on_row`` is called after each row (for progress).
    """
    options = options or ChildOptions()
    session = session or Session()
    rows = read_pairs(csv_path)
    ranges = session.edit_ranges
    ranges.check(options)  # what every row starts from: refused before any row (the CLI names the option)
    out = Path(output_dir)
    for row in rows:
        if row.ok is None:
            try:
                _check_row(Path(csv_path), row, ranges)
                result = predict(row.father, row.mother, _row_options(options, row.overrides), session)
                row.outputs = write_prediction(result, out / row.name)
                row.resemblance = result.children[0].resemblance
                row.ok = True
            except BabyganError as exc:
                row.fail(str(exc))
            except Exception as exc:  # an unexpected failure of one row is reported; the others still run
                log.exception("row %s failed", row.name)
                row.fail(f"{type(exc).__name__}: {exc}")
        if on_row is not None:
            on_row(row)
    write_text_atomic(out / "batch.json", json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    return rows


def summary_table(rows: Sequence[BatchRow]) -> str:
    """A plain-text table: one line per row with its status, distances or error."""

    def dist(r: BatchRow, who: str) -> str:
        d = (r.resemblance or {}).get(who)
        return f"{d:.3f}" if d is not None else "-"

    def detail(r: BatchRow) -> str:
        return (r.outputs or {}).get("children", [{}])[0].get("image", "") if r.ok else (r.error or "")

    header = ("line", "name", "status", "father", "mother", "detail")
    body = [
        (str(r.line), r.name, "ok" if r.ok else "FAILED", dist(r, "father"), dist(r, "mother"), detail(r))
        for r in rows
    ]
    return text_table(header, body)
