"""Batch jobs on Ray (`predict/read --out FILE --engine ray`): the same rows as the local engine, in the same order,
resumable the same way, on a local 2-CPU Ray instance started once for the module; and one clear line when Ray is
not installed."""

import functools
import os
import pickle
import sys
from pathlib import Path

import pytest
import ray
from PIL import Image

import digitscan
from digitscan.batch import predict_job, read_job, run_job
from digitscan.files import expand_paths
from digitscan.ray_batch import RayJob, run_ray_job

from helpers import EXAMPLES, read_rows, run

BATCH = 16  # rows per inference call in both engines, so that the model sees the same batches


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One small local Ray for the module: run_ray_job uses a Ray already initialized and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, log_to_driver=False,
             logging_level="warning")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory, mnist_test) -> list[Path]:
    """40 MNIST test digits as PNG files (in tmp only: MNIST pixels are never committed), one of them under a name
    that is not UTF-8, then a file that is not an image and one that does not exist."""
    folder = tmp_path_factory.mktemp("digits")
    files = []
    for i, image in enumerate(mnist_test[0][:40]):
        name = os.fsdecode(b"caf\xe9.png") if i == 7 else f"{i:03d}.png"
        Image.fromarray(image).save(folder / name, format="PNG")
        files.append(folder / name)
    (folder / "notes.png").write_text("this is text, not a PNG")
    return files + [folder / "notes.png", folder / "missing.png"]


def test_rows_are_the_local_engines_in_the_same_order(tmp_path, images, recognizer):
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    run_job(predict_job(recognizer), images, local, workers=0, batch_size=BATCH, progress=False)
    ray_job = RayJob({}, predict_job)  # the actors load the shipped model themselves
    assert len(pickle.dumps(ray_job.portable())) < 1000  # what crosses to the actors: a description, not a model
    errors = []
    summary = run_ray_job(ray_job, images, on_ray, recognizer=recognizer, batch_size=BATCH, progress=False,
                          on_error=lambda path, message: errors.append(Path(path).name))
    assert on_ray.read_bytes() == local.read_bytes()  # every field, byte for byte
    rows = read_rows(on_ray)
    assert [r["path"] for r in rows] == [str(f) for f in images]
    assert sum(r["digit"] != "" for r in rows) >= 38 and rows[7]["error"] == ""  # the non-UTF-8 name was read
    assert "not a supported image" in rows[-2]["error"] and "no such file" in rows[-1]["error"]
    assert (summary.total, summary.written, summary.failed) == (42, 42, 2) and errors == ["notes.png", "missing.png"]


def test_resume_writes_only_the_missing_rows(tmp_path, images, recognizer):
    """A job killed after 17 rows, mid-row: the CLI's --resume on Ray cuts the torn line off and appends the rest,
    so the file ends as a clean run's, every file once."""
    clean = tmp_path / "clean.csv"
    run_job(predict_job(recognizer), images, clean, workers=0, batch_size=BATCH, progress=False)
    data = clean.read_bytes()
    killed = data[:[i for i, byte in enumerate(data) if byte == ord("\n")][17] + 12]  # header, 17 rows, a torn one
    out = tmp_path / "results.csv"
    out.write_bytes(killed)
    result = run("predict", *images, "--out", out, "--resume", "--engine", "ray", "--batch-size", BATCH,
                 "--no-progress")
    assert result.exit_code == 1, result.output  # two files cannot be read
    assert "42 files, 25 rows written" in result.stdout and "17 already done" in result.stdout
    assert "torn last line" in result.stdout
    assert out.read_bytes() == data


def test_read_jobs_give_the_local_engines_rows(tmp_path, recognizer):
    files = expand_paths((str(EXAMPLES / "numbers"),))
    make_job = functools.partial(read_job, method="sequence")  # the line reader, loaded by each actor too
    local, on_ray = tmp_path / "local.csv", tmp_path / "ray.csv"
    run_job(make_job(recognizer), files, local, workers=0, progress=False)
    run_ray_job(RayJob({}, make_job), files, on_ray, recognizer=recognizer, progress=False)
    assert on_ray.read_bytes() == local.read_bytes()
    assert [r["text"] for r in read_rows(on_ray)] == ["1250", "4711", "90210"]


def test_a_missing_ray_is_one_usage_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets where it is not installed
    monkeypatch.delitem(sys.modules, "digitscan.ray_batch")
    monkeypatch.delattr(digitscan, "ray_batch")
    out = tmp_path / "results.csv"
    result = run("predict", EXAMPLES / "four_28px.png", "--out", out, "--engine", "ray")
    assert result.exit_code == 2
    assert "pip install 'digitscan[ray]'" in result.stderr and "Traceback" not in result.output
    assert not out.exists()  # refused before anything was opened or loaded


def test_usage_errors(tmp_path):
    image, out = EXAMPLES / "four_28px.png", tmp_path / "r.csv"
    assert run("predict", image, "--engine", "ray").exit_code == 2  # no --out
    assert run("read", image, "--out", out, "--address", "HEAD:6379").exit_code == 2  # --address without ray
    assert run("predict", image, "--out", out, "--engine", "ray", "--workers", 0).exit_code == 2
    both = run("predict", image, "--out", out, "--engine", "ray", "--workers", 2, "--address", "HEAD:6379")
    assert both.exit_code == 2 and "own CPUs" in both.stderr
    assert not out.exists()
