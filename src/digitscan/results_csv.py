"""The results CSV of a batch job: how its rows are written, how --resume reads them back, and the lock that keeps
two jobs off one file.

`ResultsWriter(f, columns).write(row)` writes one row; `read_finished_rows(path, columns)` returns the rows already
done (cutting off a last line torn by a crash, refusing anything else that is not a complete results CSV);
`exclusive_lock(f, path)` makes a second job on the same file fail at once.
"""

from __future__ import annotations

import csv
import fcntl
import io
from collections.abc import Iterator
from pathlib import Path

from digitscan.errors import ResultsFileError

CSV_FORMAT = {"lineterminator": "\n"}  # one physical line per row unless a field itself holds a line break (quoted)
# Paths are str; on POSIX a file name that is not UTF-8 holds surrogate escapes, which this keeps byte for byte.
FILE_TEXT = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
# A spreadsheet runs a cell starting with one of these as a formula (OWASP "CSV injection"): such a field is written
# with a leading single quote, which spreadsheets show as text and `restore_field` takes off again.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralize_field(value: str) -> str:
    """The field as written: a quote before any field that starts with a formula character after zero or more
    quotes. Quoting those already quoted too keeps the mapping one to one: `restore_field` undoes exactly this."""
    return "'" + value if value.lstrip("'").startswith(FORMULA_START) else value


def restore_field(value: str) -> str:
    """The field as it was before `neutralize_field`."""
    return value[1:] if value.startswith("'") and value.lstrip("'").startswith(FORMULA_START) else value


class ResultsWriter:
    """Writes rows (dicts by column name) to an open results CSV.

    csv's QUOTE_MINIMAL quotes a field holding "\\n" (our line terminator) but not one holding a lone "\\r", which
    every CSV reader, --resume's included, takes for the end of the row; rows with a "\\r" anywhere are therefore
    written with every field quoted.
    """

    def __init__(self, f, columns: list[str]):
        self.columns = columns
        self._minimal = csv.writer(f, **CSV_FORMAT)
        self._all_quoted = csv.writer(f, quoting=csv.QUOTE_ALL, **CSV_FORMAT)

    def write_header(self) -> None:
        self._minimal.writerow(self.columns)

    def write(self, row: dict) -> None:
        fields = [neutralize_field(str(row.get(column, ""))) for column in self.columns]
        (self._all_quoted if any("\r" in field for field in fields) else self._minimal).writerow(fields)


def header_line(columns: list[str]) -> bytes:
    """The header exactly as ResultsWriter.write_header writes it (a column named after a class may need quotes)."""
    text = io.StringIO()
    csv.writer(text, **CSV_FORMAT).writerow(columns)
    return text.getvalue().encode("utf-8", "surrogateescape")


def read_finished_rows(out: Path, columns: list[str]) -> tuple[dict[str, str], bool]:
    """({path: error or ""} for every complete row of a results CSV, whether a torn last line was cut off).

    A crash can tear only the last row: the bytes after the last newline, or a quoted path with a newline inside
    whose closing quote never came. That part alone is truncated away (its file is done again). Anything else (no
    header of these columns, a damaged row with complete rows after it, other line endings) means the file is not
    one this job can continue: it is refused with a ResultsFileError and left exactly as it was.
    """
    data = out.read_bytes()
    header = header_line(columns)
    if not data.startswith(header):
        if header.startswith(data) and b"\r" not in data:  # only the header, torn while it was written
            _truncate(out, 0)
            return {}, True
        first = data.split(b"\n", 1)[0][:80].decode("utf-8", "replace")
        raise ResultsFileError(f"{out}: not a results CSV with the columns {','.join(columns)} (it starts with "
                               f"{first!r}); was it written by another command or with other options? Use --force "
                               f"to overwrite it")
    end = data.rfind(b"\n") + 1  # bytes after the last newline are a torn row
    consumed = 0
    line_starts: list[int] = []

    def lines() -> Iterator[str]:
        nonlocal consumed
        for line in data[:end].splitlines(keepends=True):
            line_starts.append(consumed)
            consumed += len(line)
            yield line.decode("utf-8", "surrogateescape")

    done: dict[str, str] = {}
    intact = 0
    reader = csv.reader(lines(), strict=True, **CSV_FORMAT)
    try:
        for number, record in enumerate(reader):
            if number > 0:
                if len(record) != len(columns):
                    raise ResultsFileError(f"{out}: line {reader.line_num} has {len(record)} fields, expected "
                                           f"{len(columns)}; the file is damaged, so --resume leaves it alone")
                done[restore_field(record[0])] = restore_field(record[-1])
            intact = consumed
    except csv.Error as exc:
        if consumed < end:  # the reader stopped before the end: damage in the middle
            raise ResultsFileError(f"{out}: not a valid CSV at line {reader.line_num} ({exc}); the file is "
                                   f"damaged, so --resume leaves it alone") from None
    _refuse_complete_rows_in_torn_tail(out, data, intact, len(columns))
    if intact < len(data):
        _truncate(out, intact)
    return done, intact < len(data)


def _refuse_complete_rows_in_torn_tail(out: Path, data: bytes, intact: int, width: int) -> None:
    """An unclosed quote makes the reader take everything after it for one field: a damaged row in the middle
    would pass for a torn last row, and every complete row after it would be cut off. A crash tears only the last
    row, so a tail holding a physical line that is itself a complete row is damage, refused with its line number."""
    tail = data[intact:]
    first_line = data[:intact].count(b"\n") + 1
    for offset, line in enumerate(tail.split(b"\n")[1:-1], start=1):
        try:
            records = list(csv.reader([line.decode("utf-8", "surrogateescape")], strict=True))
        except csv.Error:
            continue
        if len(records) == 1 and len(records[0]) == width:
            raise ResultsFileError(f"{out}: line {first_line} opens a quote that never closes, and complete rows "
                                   f"follow it (line {first_line + offset}); the file is damaged, so --resume "
                                   f"leaves it alone")


def _truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)


def exclusive_lock(f, out: Path) -> None:
    """Hold an exclusive lock on the open results file until it is closed; a second job on the same file (this
    machine, or any file system with flock) fails at once instead of interleaving its rows with this one's."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ResultsFileError(f"{out}: another batch job is writing this file; wait for it to finish or choose "
                               f"another --out") from None
