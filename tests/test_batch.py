"""`babygan batch`: one bad row is reported and the others finish; each photo is encoded once."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pipeline_fixtures import FAST_ENCODER, make_photos, make_tiny_model

from babygan import batch
from babygan.cli import main
from babygan.edit_ranges import DEFAULT_RANGES
from babygan.errors import BabyganError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    model, directions = make_tiny_model(folder)
    photos = folder / "photos"
    photos.mkdir()
    dad, mum = make_photos(photos)
    Image.fromarray(np.full((120, 120, 3), 200, np.uint8)).save(photos / "wall.png")
    return {"model": model, "directions": directions, "dad": dad, "mum": mum, "folder": folder}


def _csv(path, text):
    path.write_text(text)
    return path


def test_read_pairs(tmp_path):
    csv = _csv(
        tmp_path / "pairs.csv",
        "father,mother,name,genes,age,gender_shift\n"
        "photos/dad.jpg,photos/mum.jpg,,,,\n"
        "dad.jpg,/abs/mum.jpg,twins,0.8,20,-1.5\n"
        "dad.jpg,/abs/mum.jpg,twins,,,\n"
        ",,,,,\n"
        "dad.jpg,mum.jpg,x,lots,,\n"
        "dad.jpg,,y,,,\n",
    )
    rows = batch.read_pairs(csv)
    assert [r.line for r in rows] == [2, 3, 4, 6, 7]  # the blank line 5 is skipped
    assert rows[0].father == tmp_path / "photos" / "dad.jpg" and rows[0].name == "dad+mum"
    assert rows[1].mother == tmp_path / "/abs/mum.jpg" and str(rows[1].mother) == "/abs/mum.jpg"
    assert rows[1].overrides == {"genes": 0.8, "age": 20.0, "gender_shift": -1.5}
    assert [r.name for r in rows[1:3]] == ["twins", "twins_2"]
    assert rows[0].ok is None and rows[1].ok is None
    assert rows[3].ok is False and rows[3].error == "pairs.csv line 6: genes='lots' is not a number"
    assert rows[4].ok is False and "line 7: father and mother are both required" in rows[4].error


def test_read_pairs_bad_files(tmp_path):
    with pytest.raises(BabyganError, match=r"pairs.csv: missing column\(s\) mother"):
        batch.read_pairs(_csv(tmp_path / "pairs.csv", "father,mum\na,b\n"))
    with pytest.raises(BabyganError, match=r"unknown column\(s\) smile"):
        batch.read_pairs(_csv(tmp_path / "pairs.csv", "father,mother,smile\na,b,1\n"))
    with pytest.raises(BabyganError, match="no pairs in the file"):
        batch.read_pairs(_csv(tmp_path / "pairs.csv", "father,mother\n"))
    with pytest.raises(BabyganError, match=r"nothere\.csv: cannot read"):
        batch.read_pairs(tmp_path / "nothere.csv")


def test_read_pairs_names_stay_inside_output_dir(tmp_path):
    csv = _csv(
        tmp_path / "pairs.csv",
        "father,mother,name\n"
        "dad.jpg,mum.jpg,..\n"
        "dad.jpg,mum.jpg,.\n"
        "dad.jpg,mum.jpg,.hidden\n"
        "dad.jpg,mum.jpg,../escape\n"
        "dad.jpg,mum.jpg,ok\n",
    )
    rows = batch.read_pairs(csv)
    for row, line in zip(rows[:3], (2, 3, 4), strict=True):
        assert row.ok is False and row.error.startswith(f"pairs.csv line {line}: name ")
        assert "cannot be a folder name" in row.error
    # "/" is replaced, so "../escape" is one folder name; it still starts with a dot.
    assert rows[3].ok is False and "line 5" in rows[3].error
    assert rows[4].ok is None and rows[4].name == "ok"


def test_read_pairs_names_are_unique(tmp_path):
    csv = _csv(
        tmp_path / "pairs.csv",
        "father,mother,name\na.jpg,b.jpg,x\na.jpg,b.jpg,x_2\na.jpg,b.jpg,x\na.jpg,b.jpg,x\n",
    )
    names = [r.name for r in batch.read_pairs(csv)]
    assert names == ["x", "x_2", "x_3", "x_4"]  # no two rows share a folder


def test_bad_name_row_writes_nothing(tmp_path):
    csv = _csv(tmp_path / "pairs.csv", "father,mother,name\ndad.jpg,mum.jpg,..\n")
    out = tmp_path / "work" / "out"
    session = SimpleNamespace(edit_ranges=DEFAULT_RANGES)  # the row fails before any model is used
    rows = batch.run_batch(csv, out, session=session)  # type: ignore[arg-type]
    assert rows[0].ok is False and "line 2" in rows[0].error
    assert sorted(p.name for p in out.iterdir()) == ["batch.json"]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["out"]


@pytest.mark.slow
def test_batch_reports_bad_rows_and_finishes_the_others(tiny, tmp_path, monkeypatch):
    import babygan.align
    from babygan.encoder import Encoder

    aligned, encoded = [], []
    real_align, real_encode = babygan.align.align_photo, Encoder.encode_cached

    def count_align(path, *a, **k):
        aligned.append(path.name)
        return real_align(path, *a, **k)

    def count_encode(self, images, *a, **k):
        encoded.append(len(images))
        return real_encode(self, images, *a, **k)

    monkeypatch.setattr(babygan.align, "align_photo", count_align)
    monkeypatch.setattr(Encoder, "encode_cached", count_encode)

    csv = _csv(
        tiny["folder"] / "pairs.csv",
        "father,mother,name,genes,age,gender_shift\n"
        "photos/astronaut.png,photos/astronaut_mirror.png,first,,,\n"
        "photos/astronaut_mirror.png,photos/astronaut.png,second,0.8,20,1\n"
        "photos/astronaut.png,photos/missing.jpg,third,,,\n"
        "photos/astronaut.png,photos/wall.png,fourth,,,\n"
        "photos/astronaut.png,photos/astronaut_mirror.png,fifth,0.1,,\n",
    )
    out = tmp_path / "out"
    args = [
        "batch",
        csv,
        "-o",
        out,
        "--model",
        tiny["model"],
        "--directions",
        tiny["directions"],
        *FAST_ENCODER,
    ]
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 1, res.output
    assert "Error: 2 of 5 pairs failed" in res.output
    assert "FAILED  third: " in res.output and "missing.jpg: no such file" in res.output
    assert "FAILED  fourth: " in res.output and "wall.png: no face found" in res.output
    table = res.output[res.output.index("line  name") :]
    assert [ln.split()[2] for ln in table.splitlines()[1:6]] == ["ok", "ok", "FAILED", "FAILED", "ok"]
    for name in ("first", "second", "fifth"):
        for f in ("child.png", "child.json", "child.npy", "sheet.png"):
            assert (out / name / f).is_file(), f"{name}/{f}"
    assert not (out / "third").exists() and not (out / "fourth").exists()
    second = json.loads((out / "second" / "child.json").read_text())["options"]
    assert second["genes"] == 0.8 and second["age"] == 20 and second["shifts"] == {"gender": 1.0}
    first = json.loads((out / "first" / "child.json").read_text())["options"]
    assert first["genes"] == 0.5 and first["age"] == 10 and first["shifts"] == {}
    summary = json.loads((out / "batch.json").read_text())
    assert [r["ok"] for r in summary] == [True, True, False, False, True]
    assert "no face found" in summary[3]["error"]
    # Each distinct photo aligned once and encoded once (the two good ones, one at a time: batch
    # encodes with batch size 1 all the way, so a photo's code does not depend on its neighbours).
    assert sorted(aligned) == ["astronaut.png", "astronaut_mirror.png", "wall.png"]
    assert encoded == [1, 1]
    assert json.loads((out / "fifth" / "child.json").read_text())["options"]["genes"] == 0.1


@pytest.mark.slow
def test_resume_redoes_only_what_is_not_done(tiny, tmp_path, monkeypatch):
    csv = _csv(
        tiny["folder"] / "resume.csv",
        "father,mother,name,genes\n"
        "photos/astronaut.png,photos/astronaut_mirror.png,first,\n"
        "photos/astronaut_mirror.png,photos/astronaut.png,second,0.8\n"
        "photos/astronaut.png,photos/missing.jpg,third,\n"
        "photos/astronaut.png,photos/astronaut_mirror.png,fourth,0.1\n",
    )
    out = tmp_path / "out"
    args = [
        "batch",
        csv,
        "-o",
        out,
        "--model",
        tiny["model"],
        "--directions",
        tiny["directions"],
        *FAST_ENCODER,
    ]
    run = [str(a) for a in args]
    ran: list[str] = []
    real = batch.predict

    def counting(father, mother, options, session):
        ran.append(options.genes)
        return real(father, mother, options, session)

    monkeypatch.setattr(batch, "predict", counting)
    assert CliRunner().invoke(main, run).exit_code == 1
    assert len(ran) == 4
    files = {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert (out / "first" / "done.json").is_file() and not (out / "third").exists()

    # "first" stopped before its done.json, "second" has a damaged file, "fourth" is whole
    (out / "first" / "done.json").unlink()
    (out / "second" / "child.png").write_bytes(b"not a png")
    kept = (out / "fourth" / "done.json").stat().st_mtime_ns
    ran.clear()
    res = CliRunner().invoke(main, [*run, "--resume"])
    assert res.exit_code == 1 and "1 of 4 pairs failed" in res.output
    assert sorted(ran) == [0.5, 0.5, 0.8]  # first, the failed third, second; not fourth
    assert (out / "fourth" / "done.json").stat().st_mtime_ns == kept
    assert {p: p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()} == files

    # other options: nothing done matches them, every row runs again
    ran.clear()
    assert CliRunner().invoke(main, [*run, "--resume", "--age", "20"]).exit_code == 1
    assert len(ran) == 4


def test_ray_options_need_ray(tmp_path):
    csv = _csv(tmp_path / "pairs.csv", "father,mother\na.jpg,b.jpg\n")
    res = CliRunner().invoke(main, ["batch", str(csv), "--workers", "2", "--gpus-per-worker", "1"])
    assert res.exit_code == 2 and "--workers, --gpus-per-worker only with --ray" in res.output


def test_ray_missing_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    csv = _csv(tmp_path / "pairs.csv", "father,mother\na.jpg,b.jpg\n")
    res = CliRunner().invoke(main, ["batch", str(csv), "-o", str(tmp_path / "out"), "--ray", "--quiet"])
    assert res.exit_code == 1
    (line,) = [ln for ln in res.output.splitlines() if ln.startswith("Error")]
    assert line == "Error: --ray needs Ray: pip install 'babygan[ray]' (or pip install 'ray>=2.9')"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_photos_code_does_not_depend_on_the_photos_encoded_beside_it():
    """batch encodes one photo at a time (batch size 1) all the way, E's first guess included:
    a row's child is then the same whichever rows its process (or Ray worker) ran before."""
    from conftest import shared_path

    from babygan.session import Session

    dad, mum = str(shared_path("faces", "obama.jpg")), str(shared_path("faces", "family_mother.jpg"))

    def session() -> Session:
        return Session("builtin", offline=True, progress=False, use_cache=False, encoder={"batch_size": 1})

    together = session().parents([(dad, None), (mum, None)])[0].dlatents
    alone = session().parents([(dad, None)])[0].dlatents
    assert np.array_equal(together, alone)
