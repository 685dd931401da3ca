"""Batch jobs on Ray: the job of digitscan.batch as a Ray Data pipeline, on a local Ray instance or a cluster.

`run_ray_job(RayJob(load_options, predict_job), files, "results.csv")` -> JobSummary; the CLI's
`predict/read --out FILE --engine ray [--address ADDR]`. Needs the `ray` extra: `pip install 'digitscan[ray]'`.

The pipeline, one stage per line:
  the file list                  ray.data.from_items, `chunk` files per block
  -> prepare_files               Ray tasks (map_batches with a function): the job's own `prepare`, the one
                                 preprocessing path of the local engine, on each file; a file's error is a value
  -> ModelActor                  an actor pool: each actor loads the model once, from RayJob's load options (the
                                 driver's model is never pickled), and makes the rows with batch.finish_batch
  -> the driver                  batches in input order (preserve_order), written by batch.fill_results: the same
                                 CSV, --resume, lock, error rows and progress bar as the local engine

Paths, prepared inputs and fields cross Ray as bytes: Arrow strings must be valid UTF-8 and a file name need not be
(os.fsencode keeps it byte for byte), and prepared inputs differ in shape and dtype between jobs (28x28 inputs,
whole decoded pages, nothing for a failed file), which Arrow's tensor columns would have to agree on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import ray
import ray.data

from digitscan.batch import DEFAULT_BATCH, Job, JobSummary, default_workers, fill_results, finish_batch, prepare_chunk
from digitscan.recognize import Recognizer

# Ray's logical CPUs: a decoding task takes one, like a local worker process; so does a model actor, like the local
# engine's main process. A local instance gets one per decoding worker plus one for the first actor.
DECODE_CPUS = 1
MODEL_CPUS = 1
# Memory Ray sets aside per model actor. Its peak resident memory, with the shipped model and line reader after one
# read, was 0.10 GB on onnxruntime (the default), 0.27 GB on PyTorch, 0.47 GB for a checkpoint exported to ONNX at
# load, on the 2-core machine of docs/deploy.md.
# Asking for it also keeps Ray Data from fusing the decoding stage into the actors' (the stages' resources differ),
# which would make the decoding only as parallel as the actor pool instead of the free CPUs.
MODEL_MEMORY = 512 * 2**20
# Ray Data's lines that fill_results's progress bar and summary already say.
QUIET_LOGGERS = {"ray.data._internal.progress": logging.ERROR,  # "progress bars disabled"
                 "ray.data._internal.execution.streaming_executor": logging.WARNING}  # "execution finished in"
FIELD_ENCODING = {"encoding": "utf-8", "errors": "surrogateescape"}  # results_csv.FILE_TEXT's, as bytes


@dataclass(frozen=True)
class RayJob:
    """A batch job as every Ray actor rebuilds it: Recognizer.load's keyword arguments (model and line reader
    paths, preprocess, ensemble, backend, threads: small and picklable) and the function that makes the Job from
    the loaded model, e.g. functools.partial(predict_job, probabilities=True) (it must pickle)."""

    load_options: dict
    make_job: Callable[[Recognizer], Job]

    def build(self, recognizer: Recognizer | None = None) -> Job:
        return self.make_job(recognizer or Recognizer.load(**self.load_options))

    def portable(self) -> RayJob:
        """The same job with absolute file paths: an actor's working folder is not the driver's."""
        options = {name: absolute(value) if name in ("path", "reader") else value
                   for name, value in self.load_options.items()}
        return RayJob(options, self.make_job)


def run_ray_job(ray_job: RayJob, files: list[Path], out: str | os.PathLike, *, address: str | None = None,
                workers: int | None = None, recognizer: Recognizer | None = None, resume: bool = False,
                overwrite: bool = False, batch_size: int = DEFAULT_BATCH, progress: bool = True,
                on_error: Callable[[str, str], None] | None = None) -> JobSummary:
    """digitscan.batch.run_job on Ray: the same rows, in the same order, in the same file.

    address: a cluster to connect to (ray.init(address=...): "HEAD:6379", "ray://HEAD:10001", "auto"); None starts
    a local instance with one CPU per decoding worker (`workers`, default one per core) plus one for the model, and
    shuts it down after. A Ray already initialized in this process (a notebook's, a test's) is used as it is and
    left running. recognizer: the model already loaded here (the CLI's, checked), which gives the columns and the
    preprocessing; None loads one from the load options. Files are read by the cluster's workers: on a cluster,
    every path must be reachable at the same absolute path on every node (shared storage).
    """
    job = ray_job.build(recognizer)

    def rows(todo: list[str]) -> Iterator[list[dict]]:
        if not todo:
            return
        with ray_instance(address, workers):
            yield from pipeline_rows(job, ray_job.portable(), todo, batch_size)

    return fill_results(job.columns, files, out, rows, resume=resume, overwrite=overwrite, progress=progress,
                        on_error=on_error)


@contextmanager
def ray_instance(address: str | None, workers: int | None) -> Iterator[None]:
    """Ray for the length of one job: connected to `address`, or a new local instance; either way let go after."""
    with quiet_loggers():
        if ray.is_initialized():
            yield
            return
        with own_ray(address, workers):
            yield


@contextmanager
def own_ray(address: str | None, workers: int | None) -> Iterator[None]:
    if address is None:
        ray.init(address="local", num_cpus=(workers or default_workers()) * DECODE_CPUS + MODEL_CPUS,
                 include_dashboard=False, log_to_driver=False, logging_level="warning")
    else:
        ray.init(address=address, log_to_driver=False, logging_level="warning")
    try:
        yield
    finally:
        ray.shutdown()  # stops a local instance; from a cluster, only disconnects


@contextmanager
def quiet_loggers() -> Iterator[None]:
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    try:
        yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def pipeline_rows(job: Job, ray_job: RayJob, todo: list[str], batch_size: int) -> Iterator[list[dict]]:
    """The rows of `todo`, in its order, one batch per block the actors return."""
    files = [os.fsencode(os.path.abspath(path)) for path in todo]
    cpus = int(ray.cluster_resources().get("CPU", 0))
    if cpus < DECODE_CPUS + MODEL_CPUS:  # the actor would hold every CPU, and no file would ever be decoded
        raise ValueError(f"the Ray cluster has {cpus} CPU(s); a batch job needs {DECODE_CPUS + MODEL_CPUS}: one "
                         f"for the model actor, one for decoding")
    actors = (cpus - DECODE_CPUS) // MODEL_CPUS  # the most; the pool grows while its actors are busy (read jobs)
    dataset = (
        ray.data.from_items([{"file": file} for file in files], override_num_blocks=-(-len(files) // job.chunk))
        .map_batches(prepare_files, fn_kwargs={"prepare": job.prepare}, batch_size=job.chunk, num_cpus=DECODE_CPUS)
        .map_batches(ModelActor, fn_constructor_kwargs={"ray_job": ray_job}, batch_size=batch_size,
                     compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors), num_cpus=MODEL_CPUS,
                     memory=MODEL_MEMORY)
    )
    context = dataset.context  # this dataset's own copy of the settings
    context.execution_options.preserve_order = True  # blocks reach the driver in input order
    context.enable_progress_bars = False  # fill_results draws one bar, in files
    context.print_on_execution_start = False
    fields = job.columns[1:]
    remaining = iter(zip(todo, files))
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
            rows = []
            for i, file in enumerate(batch["file"]):
                path, expected = next(remaining)
                if file != expected:
                    raise RuntimeError(f"Ray returned {os.fsdecode(file)!r} where {path!r} was expected")
                rows.append({"path": path, **{name: batch[name][i].decode(**FIELD_ENCODING) for name in fields}})
            yield rows
    except ray.exceptions.RayError as exc:  # its text is the remote traceback; the last line says what went wrong
        lines = str(exc).strip().splitlines() or [type(exc).__name__]
        raise RuntimeError(f"the Ray job stopped: {lines[-1].strip()}; the rows written so far are kept "
                           f"(--resume)") from exc


def prepare_files(batch: dict[str, np.ndarray], prepare: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """A Ray task: each file's prepared input (float32 bytes and its shape; empty where there is none) and why it
    has none. Raw bytes, not pickles: nothing of a file's is ever unpickled (tests/test_checkpoint.py)."""
    prepared = prepare_chunk(prepare, [os.fsdecode(file) for file in batch["file"]])
    arrays = [None if array is None else np.ascontiguousarray(array, np.float32) for _, array, _ in prepared]
    return {"file": batch["file"],
            "input": bytes_column(b"" if array is None else array.tobytes() for array in arrays),
            "shape": np.array([(0, 0) if array is None else array.shape for array in arrays], np.int64),
            "ok": np.array([error is None for _, _, error in prepared]),
            "error": bytes_column((error or "").encode(**FIELD_ENCODING) for _, _, error in prepared)}


class ModelActor:
    """One model for the life of the actor, rebuilt from the job's description; batches of prepared inputs in,
    their rows out (every field as text, as the CSV will hold it)."""

    def __init__(self, ray_job: RayJob):
        self.job = ray_job.build()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        prepared = [(file, np.frombuffer(data, np.float32).reshape(shape).copy() if ok else None,
                     None if ok else error.decode(**FIELD_ENCODING))
                    for file, data, shape, ok, error in zip(batch["file"], batch["input"], batch["shape"], batch["ok"],
                                                            batch["error"])]
        rows = finish_batch(self.job, prepared)
        return {"file": batch["file"],
                **{name: bytes_column(str(row.get(name, "")).encode(**FIELD_ENCODING) for row in rows)
                   for name in self.job.columns[1:]}}


def bytes_column(values) -> np.ndarray:
    """A column of bytes values as Ray Data takes it (an object array: numpy's own bytes type would cut off
    trailing NUL bytes)."""
    values = list(values)
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def absolute(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.path.abspath(path)
