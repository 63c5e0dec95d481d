"""``babygan batch``: read a CSV of parent pairs, predict each in one session, summarise.

A failing row is reported on the row and the others still run; the models load once and
each distinct photo is aligned and encoded once (one babygan/session.py Session).

One row's work is :func:`run_row` (predict, then the files' bytes), run here or by a worker
elsewhere (babygan/distributed/); the driver writes every file (:func:`run_batch`), each
atomically, the row's done.json last, so that ``resume`` can tell a finished row from the rest.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babygan.atomic import write_text_atomic
from babygan.edit_ranges import EditRangeError, EditRanges
from babygan.errors import BabyganError
from babygan.latent import Age
from babygan.models import sha256_file
from babygan.outputs import prediction_files, read_done, write_done
from babygan.pipeline import ChildOptions, predict
from babygan.session import Session
from babygan.texttable import text_table

log = logging.getLogger("babygan")

BATCH_COLUMNS = ("father", "mother", "name", "genes", "age", "gender_shift", "anime")
_NUMBER_COLUMNS = ("genes", "age", "gender_shift")
#: the anime column's words (case ignored); empty: the command's --anime
_YES_NO = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


@dataclass
class BatchRow:
    line: int  # line number in the CSV (the header is line 1)
    name: str
    father: Path
    mother: Path
    overrides: dict[str, float | bool] = field(default_factory=dict)  # anime: a bool
    ok: bool | None = None
    error: str | None = None
    outputs: dict[str, Any] | None = None
    resemblance: dict[str, Any] | None = None
    retries: int = 0  # times the row was started again because its worker died
    worker: str | None = None  # "host pid" of the process that ran it (not in batch.json)
    csv: str = "pairs.csv"  # the CSV's file name, for messages naming the row (not in batch.json)

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
            "retries": self.retries,
        }


def read_pairs(csv_path: str | Path) -> list[BatchRow]:
    """Parse a pairs CSV (columns father, mother; optional name, genes, age, gender_shift, anime).

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
    row = BatchRow(line, name, father, mother, csv=csv_path.name)
    if bad_name:
        row.fail(f"{where}: name {name!r} cannot be a folder name (empty, or starts with '.')")
    for col in _NUMBER_COLUMNS:
        if rec.get(col):
            try:
                row.overrides[col] = float(rec[col])
            except ValueError:
                row.fail(f"{where}: {col}={rec[col]!r} is not a number")
    if rec.get("anime"):
        anime = _YES_NO.get(rec["anime"].lower())
        if anime is None:
            row.fail(f"{where}: anime={rec['anime']!r} is not one of true, false, yes, no, 1, 0 (or empty)")
        else:
            row.overrides["anime"] = anime
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


def _check_row(row: BatchRow, ranges: EditRanges) -> None:
    """The row's own numbers within the model's ranges, or an error naming the line and column."""
    checks: dict[str, Callable[[float], None]] = {
        "genes": ranges.check_genes,
        "age": lambda years: ranges.check_age(Age.years(years)),
        "gender_shift": lambda value: ranges.check_shift("gender", value),
    }
    for column, value in row.overrides.items():
        if column not in checks:  # anime: a bool, checked when read
            continue
        try:
            checks[column](value)
        except EditRangeError as exc:
            raise BabyganError(f"{row.csv} line {row.line}, column {column}: {exc.reason}") from exc


def _row_options(base: ChildOptions, overrides: Mapping[str, float | bool]) -> ChildOptions:
    changes: dict[str, Any] = {}
    if "anime" in overrides:
        changes["anime"] = bool(overrides["anime"])
    if "genes" in overrides:
        changes["genes"] = overrides["genes"]
    if "age" in overrides:
        changes["age"] = Age.years(overrides["age"])
    if "gender_shift" in overrides:
        changes["shifts"] = tuple({**dict(base.shifts), "gender": overrides["gender_shift"]}.items())
    return base.with_overrides(**changes) if changes else base


@dataclass
class RowOutcome:
    """What one row made, for the driver to write: its files' bytes in writing order, or its error."""

    files: dict[str, bytes] = field(default_factory=dict)
    outputs: dict[str, Any] | None = None
    resemblance: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None  # the photos and options it was made from (done.json)
    error: str | None = None
    retries: int = 0
    worker: str | None = None


def run_row(
    row: BatchRow,
    options: ChildOptions,
    session: Session,
    output_dir: Path,
    photos: tuple[Path, Path] | None = None,
) -> RowOutcome:
    """One row's child and its files' bytes, nothing written; a failure is the outcome's error.

    output_dir: the batch's folder as the driver sees it, absolute (the records name it).
    photos: the files to read instead of ``row.father`` / ``row.mother``, a worker's copies of
    the driver's photos; the records and errors still name the row's paths.
    """
    read = photos or (row.father, row.mother)
    try:
        _check_row(row, session.edit_ranges)
        opts = _row_options(options, row.overrides)
        result = predict(read[0], read[1], opts, session)
        if photos is not None:
            result = dataclasses.replace(
                result,
                father=dataclasses.replace(result.father, path=Path(row.father)),
                mother=dataclasses.replace(result.mother, path=Path(row.mother)),
            )
        files, outputs = prediction_files(result, output_dir / row.name)
    except BabyganError as exc:
        return RowOutcome(error=_named_as(str(exc), read, (row.father, row.mother)))
    except Exception as exc:  # an unexpected failure of one row is reported; the others still run
        log.exception("row %s failed", row.name)
        return RowOutcome(error=_named_as(f"{type(exc).__name__}: {exc}", read, (row.father, row.mother)))
    named = dataclasses.replace(row, father=result.father.path, mother=result.mother.path)  # resolved
    inputs = row_inputs(named, opts, (result.father.sha256, result.mother.sha256), output_dir)
    return RowOutcome(files, outputs, result.children[0].resemblance, inputs)


def _named_as(message: str, read: Sequence[Path], shown: Sequence[Path]) -> str:
    for copy, original in zip(read, shown, strict=True):
        if copy != original:
            message = message.replace(str(copy), str(original))
    return message


def row_inputs(
    row: BatchRow, options: ChildOptions, photo_sha256: tuple[str, str], output_dir: Path
) -> dict[str, Any]:
    """What a row's files were made from, as its done.json records it (JSON's own types)."""
    inputs = {
        "folder": str(output_dir / row.name),
        "father": {"path": str(row.father), "sha256": photo_sha256[0]},
        "mother": {"path": str(row.mother), "sha256": photo_sha256[1]},
        "options": options.to_json(),
    }
    return json.loads(json.dumps(inputs))


#: runs rows somewhere: ``(rows, options, output_dir) -> (row, outcome)`` for each, as each ends
RowRunner = Callable[[Sequence[BatchRow], ChildOptions, Path], Iterator[tuple[BatchRow, RowOutcome]]]


def local_rows(
    session: Session, rows: Sequence[BatchRow], options: ChildOptions, output_dir: Path
) -> Iterator[tuple[BatchRow, RowOutcome]]:
    """The rows one after the other in this process's ``session``."""
    for row in rows:
        yield row, run_row(row, options, session, output_dir)


def run_batch(
    csv_path: str | Path,
    output_dir: str | Path,
    options: ChildOptions | None = None,
    session: Session | None = None,
    *,
    resume: bool = False,
    settings: Mapping[str, Any] | None = None,
    runner: RowRunner | None = None,
    on_start: Callable[[Sequence[BatchRow]], None] | None = None,
    on_row: Callable[[BatchRow], None] | None = None,
) -> list[BatchRow]:
    """Predict every pair of the CSV into ``output_dir/<name>/``; a failing row does not stop the rest.

    Returns the rows with ``ok``, ``error``, ``outputs`` and ``resemblance`` filled in, and
    writes them to ``output_dir/batch.json`` (also when interrupted: rows not done have ``ok``
    null). Each row's files are written here, its ``done.json`` last. ``resume``: a row whose
    done.json checks out (its files, photos, options and ``settings``) is kept, not run again.
    settings: what else decides the results (model, encoder...), recorded and compared by resume.
    runner: where rows run (default: one after the other in ``session``; babygan.distributed
    runs them on Ray). ``on_start`` gets every row first, ``on_row`` each row as it ends.
    """
    options = options or ChildOptions()
    rows = read_pairs(csv_path)
    out = Path(output_dir).resolve()
    if runner is None:
        session = session or Session()
        # what every row starts from, refused before any row (the CLI names the option); on Ray
        # the workers' sessions check it, row by row, as they check each row's own columns
        session.edit_ranges.check(options)
        if options.anime or any(r.overrides.get("anime") for r in rows):
            _ = session.anime  # no anime model: one line before any row runs
        runner = functools.partial(local_rows, session)
    if on_start is not None:
        on_start(rows)
    try:
        todo = []
        for row in rows:
            if row.ok is None and resume and _resumed(row, options, out, settings):
                log.info("row %s: done already, kept", row.name)
            elif row.ok is None:
                todo.append(row)
                continue
            if on_row is not None:
                on_row(row)
        if todo:
            for row, outcome in runner(todo, options, out):
                _finish(row, outcome, out, settings)
                if on_row is not None:
                    on_row(row)
    except BaseException:  # Ctrl-C, or the runner itself failed: the summary says what is done
        for row in rows:
            if row.ok is None:
                row.error = "not done: the batch stopped before this row finished (resume finishes it)"
        raise
    finally:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "batch.json", json.dumps([r.to_json() for r in rows], indent=2) + "\n")
    return rows


def _finish(row: BatchRow, outcome: RowOutcome, out: Path, settings: Mapping[str, Any] | None) -> None:
    """Write what a row made (files, done.json last) and fill in the row."""
    row.retries, row.worker = outcome.retries, outcome.worker
    if outcome.error is not None:
        row.fail(outcome.error)
        return
    record = {
        "inputs": {**(outcome.inputs or {}), "settings": _plain(settings)},
        "outputs": outcome.outputs,
        "resemblance": outcome.resemblance,
    }
    try:
        write_done(out / row.name, outcome.files, record)
    except OSError as exc:
        row.fail(f"{type(exc).__name__}: {exc}")
        return
    row.ok, row.outputs, row.resemblance = True, outcome.outputs, outcome.resemblance


def _resumed(row: BatchRow, options: ChildOptions, out: Path, settings: Mapping[str, Any] | None) -> bool:
    """Whether the row's folder holds its finished files, made from these photos and options;
    if so the row is filled in from its done.json."""
    done = read_done(out / row.name)
    if done is None:
        return False
    try:
        father, mother = _resolved(row.father), _resolved(row.mother)
        photos = (sha256_file(father), sha256_file(mother))
        opts = _row_options(options, row.overrides)
    except (OSError, BabyganError):
        return False
    resolved = dataclasses.replace(row, father=father, mother=mother)
    expected = {**row_inputs(resolved, opts, photos, out), "settings": _plain(settings)}
    if done.get("inputs") != expected:
        return False
    row.ok, row.outputs, row.resemblance = True, done.get("outputs"), done.get("resemblance")
    return True


def _resolved(path: Path) -> Path:
    """A photo's path as the Session names it (babygan/session.py)."""
    return Path(path).expanduser().resolve()


def _plain(settings: Mapping[str, Any] | None) -> Any:
    return json.loads(json.dumps(dict(settings or {}), sort_keys=True, default=str))


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
