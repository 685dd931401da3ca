"""Batch jobs over many image files: decode in worker processes, infer in batches, stream one CSV row per file.

`run_job(predict_job(Recognizer.load()), files, "results.csv")` -> JobSummary; the CLI's `predict/read --out FILE`.

Crash safety: rows are appended and flushed after every batch, so a killed job keeps every finished batch.
`resume=True` reads the paths already in the file and skips them; a last line torn by the crash (no newline at its
end, or an unclosed quote) is cut off first, and its file is simply done again. The file's format (quoting,
formula neutralization, what --resume accepts) and the lock that keeps a second job off it: digitscan.results_csv.
`fill_results` is the part every engine shares (the file, resume, the lock, order, the progress bar); this module's
engine feeds it from worker processes, digitscan.ray_batch from a Ray Data pipeline.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from digitscan.errors import ImageError, one_line
from digitscan.fields.template import result_columns
from digitscan.image.decode import decode_image
from digitscan.image.prepare import preprocess
from digitscan.results_csv import FILE_TEXT, ResultsWriter, exclusive_lock, read_finished_rows

PREDICT_COLUMNS = ["path", "digit", "confidence", "is_digit", "error"]
READ_COLUMNS = ["path", "text", "confidence", "error"]
DEFAULT_BATCH = 256  # inputs per inference call, and rows per flush: at most this many are lost to a kill
# Files per task handed to a worker: small enough to balance the workers, large enough to amortize the IPC. `read`
# sends back whole decoded pages (a 12 MP photo is 48 MB as float32), so its tasks are a couple of files.
PREDICT_CHUNK, READ_CHUNK = 32, 2
AHEAD = 2  # tasks queued per worker: workers never wait for the main process, and memory stays bounded
Prepared = tuple[str, np.ndarray | None, str | None]  # (path, its prepared input or None, why it has none or None)


@dataclass
class Job:
    """What a batch job does with each file: `prepare` runs in the worker processes (no model, so no torch),
    `finish` in the main process on a batch of prepared inputs and returns one row (without path and error) each."""

    columns: list[str]
    prepare: Callable[[str], np.ndarray]  # must pickle: a module-level function or a functools.partial of one
    finish: Callable[[list[np.ndarray]], list[dict]]
    chunk: int = PREDICT_CHUNK  # files per worker task


@dataclass
class JobSummary:
    out: Path
    total: int  # distinct files asked for
    skipped: int  # already in the file (resume)
    written: int  # rows this run appended
    failed: int  # rows with an error among the `total` files, earlier runs' included
    repaired: bool  # a torn last line (from a crash) was cut off before resuming
    seconds: float

    @property
    def files_per_s(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0


def predict_job(recognizer, probabilities: bool = False) -> Job:
    """One digit per file: digit ("" when not a digit), calibrated confidence, is_digit; p_<class> columns on
    request."""
    extra = [f"p_{c}" for c in recognizer.classes] if probabilities else []

    def finish(inputs: list[np.ndarray]) -> list[dict]:
        rows = []
        for p in recognizer.predict_inputs(np.stack(inputs)):
            row = {"digit": "" if p.digit is None else p.digit, "confidence": f"{p.confidence:.6f}",
                   "is_digit": "true" if p.is_digit else "false"}
            row.update({name: f"{q:.6f}" for name, q in zip(extra, p.probabilities)})
            rows.append(row)
        return rows

    columns = PREDICT_COLUMNS[:-1] + extra + PREDICT_COLUMNS[-1:]
    return Job(columns, functools.partial(preprocess, mode=recognizer.preprocess_mode), finish)


def read_job(recognizer, *, template=None, field_spec=None, **read_options) -> Job:
    """A whole number per file; workers only decode, the reading (which calls the model) runs here per image.
    read_options go to Recognizer.read (method, time_limit_s).

    template (a digitscan.fields Template): every field of the form instead, five columns per field (NAME,
    NAME_value, NAME_confidence, NAME_valid, NAME_needs_review; fields.template.result_columns). field_spec (a
    FieldSpec, `read --format`): a `value` column too; a number that does not parse is an error row (its text
    and confidence still written).
    """
    default = "both" if template is not None else recognizer.read_method  # templates read with both readers
    recognizer.warm_up(read_options.get("method") or default)  # fail now, not on every file

    def read_row(gray: np.ndarray) -> dict:
        if template is not None:
            return template_row(recognizer.read_template(gray, template, **read_options))
        result = recognizer.read(gray, **read_options)
        row = {"text": result.text, "confidence": f"{result.confidence:.6f}"}
        if field_spec is not None:
            valid, value, reason = field_spec.parse(result)
            row.update({"value": value or ""} if valid else {"value": "", "error": reason})
        return row

    def finish(images: list[np.ndarray]) -> list[dict]:
        rows = []
        for gray in images:
            try:
                rows.append(read_row(gray))
            except Exception as exc:  # noqa: BLE001  (one page the reading cannot handle must not stop the job)
                rows.append({"error": describe_error(exc)})
        return rows

    if template is not None:
        columns = READ_COLUMNS[:1] + result_columns(template) + READ_COLUMNS[-1:]
    elif field_spec is not None:
        columns = READ_COLUMNS[:-1] + ["value"] + READ_COLUMNS[-1:]
    else:
        columns = READ_COLUMNS
    return Job(columns, decode_image, finish, READ_CHUNK)


def template_row(fields: dict) -> dict:
    """A form's fields as one CSV row (see read_job)."""
    row = {}
    for name, field in fields.items():
        row.update({name: field.text, f"{name}_value": "" if field.value is None else field.value,
                    f"{name}_confidence": f"{field.confidence:.6f}", f"{name}_valid": str(field.valid).lower(),
                    f"{name}_needs_review": str(field.needs_review).lower()})
    return row


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def run_job(job: Job, files: list[Path], out: str | os.PathLike, *, resume: bool = False, overwrite: bool = False,
            workers: int | None = None, batch_size: int = DEFAULT_BATCH, progress: bool = True,
            on_error: Callable[[str, str], None] | None = None) -> JobSummary:
    """Process `files` in order and append one row per file to the CSV `out`; see the module docstring.

    An existing `out` is continued with resume=True, replaced with overwrite=True, else FileExistsError. A file that
    cannot be read becomes a row with `error` set (and on_error(path, message) is called); the job goes on.
    ResultsFileError, with `out` left as it was: another job holds it, or resume=True meets a file it cannot continue.
    """
    workers = default_workers() if workers is None else workers

    def rows(todo: list[str]) -> Iterator[list[dict]]:
        pending: list[Prepared] = []
        for item in prepared_inputs(job.prepare, todo, workers, job.chunk):
            pending.append(item)
            if len(pending) == batch_size:
                yield finish_batch(job, pending)
                pending = []
        if pending:
            yield finish_batch(job, pending)

    return fill_results(job.columns, files, out, rows, resume=resume, overwrite=overwrite, progress=progress,
                        on_error=on_error)


def fill_results(columns: list[str], files: list[Path], out: str | os.PathLike,
                 rows: Callable[[list[str]], Iterable[list[dict]]], *, resume: bool = False, overwrite: bool = False,
                 progress: bool = True, on_error: Callable[[str, str], None] | None = None) -> JobSummary:
    """What every batch engine shares (this module's, digitscan.ray_batch): the results file and its rows.

    Refuses, continues (resume) or replaces (overwrite) an existing `out` under its lock, works out the files still
    to do, and writes what `rows(todo)` yields: batches of rows (dicts with "path" and the columns), one per file of
    `todo` in todo's order, each batch written and flushed as it comes, with a progress bar.
    """
    out = Path(out)
    start = time.perf_counter()
    paths = list(dict.fromkeys(str(f) for f in files))  # a file named twice gets one row
    if out.exists() and out.stat().st_size > 0 and not (resume or overwrite):  # refused before anything is opened
        raise FileExistsError(f"{out} exists: --resume to continue it, --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Append mode: opening changes nothing, so the lock is taken before the file is read, truncated or written.
    with open(out, "a", **FILE_TEXT) as f:
        exclusive_lock(f, out)
        done, repaired = {}, False
        existing = out.stat().st_size > 0
        if existing and resume:
            done, repaired = read_finished_rows(out, columns)  # a torn last row is cut off; others refused
        elif existing and overwrite:
            f.truncate(0)  # under the lock
        elif existing:  # another job finished it between the check above and the lock
            raise FileExistsError(f"{out} exists: --resume to continue it, --force to overwrite it")
        writer = ResultsWriter(f, columns)
        if out.stat().st_size == 0:
            writer.write_header()
            f.flush()
        todo = [p for p in paths if p not in done]
        failed = sum(1 for p in paths if done.get(p))
        written = 0
        expected = iter(todo)
        with tqdm(total=len(paths), initial=len(paths) - len(todo), unit="file", disable=not progress,
                  dynamic_ncols=True) as bar:
            for batch in rows(todo):
                for row in batch:
                    if row["path"] != next(expected, None):  # an engine's bug must not scramble or repeat rows
                        raise RuntimeError(f"batch engine returned {row['path']!r} out of order")
                failed += write_rows(batch, writer, f, on_error)
                written += len(batch)
                bar.update(len(batch))
        if written != len(todo):
            raise RuntimeError(f"batch engine returned {written} rows for {len(todo)} files")
        os.fsync(f.fileno())
    return JobSummary(out, len(paths), len(paths) - len(todo), written, failed, repaired,
                      time.perf_counter() - start)


def finish_batch(job: Job, batch: list[Prepared]) -> list[dict]:
    """Run the model on the batch's prepared inputs: one row per file, in order (an error row where there is no
    input)."""
    ok = [prepared for _, prepared, error in batch if error is None]
    results = iter(job.finish(ok) if ok else [])
    return [{"path": path, **({"error": error} if error is not None else next(results))}
            for path, _, error in batch]


def write_rows(rows: list[dict], writer: ResultsWriter, f, on_error: Callable[[str, str], None] | None) -> int:
    """Write the rows and flush; returns how many hold an error."""
    failed = 0
    for row in rows:
        if row.get("error"):
            failed += 1
            if on_error:
                on_error(row["path"], row["error"])
        writer.write(row)
    f.flush()  # the batch is in the OS's hands: a killed process no longer loses it
    return failed


def prepared_inputs(prepare: Callable[[str], np.ndarray], paths: list[str], workers: int,
                    chunk: int = PREDICT_CHUNK) -> Iterator[Prepared]:
    """(path, prepare(path) or None, error message or None) for each path, in order.

    workers > 0: chunks of `chunk` files go to that many 'spawn' worker processes, at most AHEAD chunks per worker
    in flight. Spawn, not fork: the main process has PyTorch/onnxruntime thread pools running, and forking a
    threaded process can deadlock the child; a spawned worker imports only digitscan.image (NumPy, Pillow,
    OpenCV), never torch.
    """
    chunks = [paths[i:i + chunk] for i in range(0, len(paths), chunk)]
    workers = min(workers, len(chunks)) if len(chunks) > 1 else 0  # one chunk: starting a worker costs more
    if workers <= 0:
        for files in chunks:
            yield from prepare_chunk(prepare, files)
        return
    with multiprocessing.get_context("spawn").Pool(workers, initializer=worker_init) as pool:
        todo = iter(chunks)
        in_flight = deque(pool.apply_async(prepare_chunk, (prepare, files))
                          for files in itertools.islice(todo, workers * AHEAD))
        while in_flight:
            results = in_flight.popleft().get()
            in_flight.extend(pool.apply_async(prepare_chunk, (prepare, files)) for files in itertools.islice(todo, 1))
            yield from results


def prepare_chunk(prepare: Callable[[str], np.ndarray], paths: list[str]) -> list[Prepared]:
    """Runs in a worker: every file's prepared input, or the one-line reason it has none."""
    results = []
    for path in paths:
        try:
            results.append((path, prepare(path), None))
        except Exception as exc:  # noqa: BLE001  (one file's problem, not the whole job's; --resume would stall)
            results.append((path, None, describe_error(exc)))
    return results


def describe_error(exc: Exception) -> str:
    """One line for the `error` column: an ImageError's message is meant for users (missing, unreadable, not an
    image, too large); anything else is named by its type, a bug to report."""
    message = one_line(exc)
    return message if isinstance(exc, ImageError) else f"{type(exc).__name__}: {message}"


def worker_init() -> None:
    # One worker per core is the parallelism: OpenCV's own thread pool would only contend with the other workers.
    cv2.setNumThreads(1)
    # Ctrl-C reaches the whole process group; the main process handles it and stops the pool.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A killed main process cannot stop its pool; each worker leaves as soon as its parent is gone.
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=exit_with_parent, args=(parent.sentinel,), daemon=True).start()


def exit_with_parent(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)
