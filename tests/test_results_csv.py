"""The results CSV of a batch job (digitscan.results_csv): line breaks in paths, files --resume must refuse and
leave alone, damage in the middle, two jobs on one file, and formula injection. A stand-in job (no model) keeps
these fast; tests/test_batch.py runs the real ones."""

import csv
import fcntl
from pathlib import Path

import pytest

from digitscan.batch import PREDICT_COLUMNS, Job, run_job
from digitscan.errors import ResultsFileError
from digitscan.results_csv import neutralize_field, read_finished_rows, restore_field

from helpers import run


def stand_in_job() -> Job:
    """Every readable file is the digit 1; a missing one is an error row, as in a real job."""
    def finish(inputs):
        return [{"digit": "1", "confidence": "0.500000", "is_digit": "true"} for _ in inputs]

    return Job(list(PREDICT_COLUMNS), lambda path: Path(path).read_bytes(), finish)


def make_files(folder: Path, names: list[str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"stand-in image")
    return [folder / name for name in names]


def standard_reader_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return list(csv.DictReader(f))


def test_line_breaks_in_paths_are_quoted_and_resume_round_trips_them(tmp_path):
    files = make_files(tmp_path / "in", ["plain.png", "carriage\rreturn.png", "new\nline.png", "both\r\n.png"])
    out = tmp_path / "results.csv"
    run_job(stand_in_job(), files, out, workers=0, progress=False)
    rows = standard_reader_rows(out)  # any CSV reader sees one row per file, not a row split at the "\r"
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert all(r["digit"] == "1" and r["error"] == "" for r in rows)
    resumed = run_job(stand_in_job(), files, out, resume=True, workers=0, progress=False)
    assert (resumed.skipped, resumed.written) == (len(files), 0)
    assert [r["path"] for r in standard_reader_rows(out)] == [str(f) for f in files]


def a_results_csv(tmp_path: Path) -> bytes:
    files = make_files(tmp_path / "in", [f"{i}.png" for i in range(6)])
    out = tmp_path / "clean.csv"
    run_job(stand_in_job(), files, out, workers=0, progress=False)
    return out.read_bytes()


@pytest.mark.parametrize("kind", ["text without a newline", "text with newlines", "other columns",
                                  "CR line endings", "CR-only header"])
def test_resume_refuses_a_file_that_is_not_a_results_csv_and_leaves_it_alone(tmp_path, kind):
    clean = a_results_csv(tmp_path)
    content = {"text without a newline": b"my notes, do not delete",
               "text with newlines": b"line one\nline two\n",
               "other columns": b"name,age\nada,36\n",
               "CR line endings": clean.replace(b"\n", b"\r"),
               "CR-only header": b"path,digit\r"}[kind]
    out = tmp_path / "results.csv"
    out.write_bytes(content)
    with pytest.raises(ResultsFileError, match="not a results CSV"):
        run_job(stand_in_job(), make_files(tmp_path / "in", ["0.png"]), out, resume=True, workers=0,
                progress=False)
    assert out.read_bytes() == content


def test_resume_refuses_an_unclosed_quote_in_the_middle_instead_of_dropping_the_rows_after_it(tmp_path):
    clean = a_results_csv(tmp_path)
    lines = clean.split(b"\n")
    lines[3] = b'"' + lines[3]  # row 3 opens a quote that never closes; rows 4-6 are complete
    damaged = b"\n".join(lines)
    out = tmp_path / "results.csv"
    out.write_bytes(damaged)
    with pytest.raises(ResultsFileError, match="line 4 opens a quote that never closes"):
        read_finished_rows(out, PREDICT_COLUMNS)
    assert out.read_bytes() == damaged


def test_a_torn_header_is_started_again(tmp_path):
    out = tmp_path / "results.csv"
    out.write_bytes(b"path,dig")  # killed while writing the header
    done, repaired = read_finished_rows(out, PREDICT_COLUMNS)
    assert (done, repaired) == ({}, True) and out.read_bytes() == b""


def test_a_second_job_on_the_same_file_fails_at_once_and_changes_nothing(tmp_path):
    clean = a_results_csv(tmp_path)
    out = tmp_path / "results.csv"
    out.write_bytes(clean)
    files = make_files(tmp_path / "in", ["0.png", "new.png"])
    with open(out, "a") as first_job:
        fcntl.flock(first_job.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running job holds it
        for options in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(ResultsFileError, match="another batch job is writing this file"):
                run_job(stand_in_job(), files, out, workers=0, progress=False, **options)
            assert out.read_bytes() == clean
        result = run("predict", *files, "--out", out, "--resume", "--no-progress")
        assert result.exit_code == 1 and result.stderr.count("\n") == 1
        assert "another batch job is writing this file" in result.stderr
    assert run_job(stand_in_job(), files, out, resume=True, workers=0, progress=False).written == 1


FORMULAS = ["=HYPERLINK(\"x\").png", "+1.png", "-2.png", "@SUM(A1).png", "\tx.png", "\rcr.png",
            "'=quoted already.png", "''+two quotes.png"]


def test_formula_paths_are_neutralized_and_resume_maps_them_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths, so a path's first character is the file name's
    names = [*FORMULAS, "'plain quote.png", "plain.png"]
    make_files(Path("."), names)
    files = [Path(name) for name in names]
    out = Path("results.csv")
    run_job(stand_in_job(), files, out, workers=0, progress=False)
    cells = [r["path"] for r in standard_reader_rows(out)]
    assert cells == ["'" + name for name in FORMULAS] + ["'plain quote.png", "plain.png"]
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for cell in cells)
    resumed = run_job(stand_in_job(), files, out, resume=True, workers=0, progress=False)
    assert (resumed.skipped, resumed.written) == (len(files), 0)


@pytest.mark.parametrize("value", ["", "'", "''", "=1", "'=1", "''=1", "-", "'-", "a=1", "'a", "@", "\t", "x\r"])
def test_neutralize_and_restore_are_inverse(value):
    assert restore_field(neutralize_field(value)) == value
    assert not neutralize_field(value).startswith(("=", "+", "-", "@", "\t", "\r"))
