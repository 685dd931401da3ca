"""Batch jobs (`predict/read --out`): one CSV row per file in order, per-file errors, and a job killed halfway that
--resume completes without duplicates or lost rows."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitscan.batch import PREDICT_COLUMNS, fill_results, predict_job, prepared_inputs, read_job, run_job
from digitscan.files import expand_paths
from digitscan.recognize import Recognizer
from digitscan.results_csv import read_finished_rows

from helpers import EXAMPLES, read_rows, run


def write_mnist_pngs(folder: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, int]:
    """MNIST test digits as PNG files (into tmp_path only: MNIST pixels are never committed); path -> label."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, (image, label) in enumerate(zip(images, labels)):
        path = folder / f"{i:05d}.png"
        Image.fromarray(image).save(path)
        truth[str(path)] = int(label)
    return truth


@pytest.fixture(scope="module")
def mnist_pngs(tmp_path_factory, mnist_test) -> tuple[Path, dict[str, int]]:
    images, labels = mnist_test
    folder = tmp_path_factory.mktemp("mnist_png")
    return folder, write_mnist_pngs(folder, images[:600], labels[:600])


def test_one_row_per_file_in_order_with_the_right_digits(tmp_path, mnist_pngs, recognizer):
    folder, truth = mnist_pngs
    files = sorted(truth)[:300]
    out = tmp_path / "results.csv"
    result = run("predict", *files, "--out", out, "--workers", 2, "--batch-size", 64, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "300 files, 300 rows written" in result.stdout
    rows = read_rows(out)
    assert list(rows[0]) == PREDICT_COLUMNS
    assert [r["path"] for r in rows] == files
    digits = [int(r["digit"]) if r["digit"] else None for r in rows]
    assert np.mean([d == truth[f] for d, f in zip(digits, files)]) >= 0.97
    one_at_a_time = recognizer.predict_inputs(np.stack([recognizer.prepare(f) for f in files]))  # = predict(f)
    assert digits == [p.digit for p in one_at_a_time]
    assert all(r["error"] == "" and r["is_digit"] in ("true", "false") for r in rows)


def test_unreadable_missing_and_vanished_files_are_error_rows(tmp_path, recognizer):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_good.png").write_bytes((EXAMPLES / "five_canvas.png").read_bytes())
    (folder / "b_notes.png").write_text("this is text, not a PNG")
    (folder / "c_vanishes.png").write_bytes((EXAMPLES / "four_28px.png").read_bytes())
    files = expand_paths((str(folder), str(tmp_path / "missing.png")))
    (folder / "c_vanishes.png").unlink()  # listed, then deleted before it was read
    errors = []
    summary = run_job(predict_job(recognizer), files, tmp_path / "out.csv", workers=0, progress=False,
                      on_error=lambda path, message: errors.append(path))
    rows = {Path(r["path"]).name: r for r in read_rows(tmp_path / "out.csv")}
    assert rows["a_good.png"]["digit"] == "5" and rows["a_good.png"]["error"] == ""
    assert "not a supported image" in rows["b_notes.png"]["error"]
    assert "no such file" in rows["c_vanishes.png"]["error"] and "no such file" in rows["missing.png"]["error"]
    assert rows["missing.png"]["digit"] == rows["missing.png"]["confidence"] == ""
    assert summary.failed == 3 and len(errors) == 3

    result = run("predict", folder, "--out", tmp_path / "cli.csv", "--workers", 0, "--no-progress")
    assert result.exit_code == 1  # some files failed, the others were processed
    assert "b_notes.png: not a supported image" in result.stderr


def test_read_writes_one_number_per_row(tmp_path):
    out = tmp_path / "numbers.csv"
    result = run("read", EXAMPLES / "numbers", "--out", out, "--workers", 1, "--no-progress")
    assert result.exit_code == 0, result.output
    texts = {Path(r["path"]).name: r["text"] for r in read_rows(out)}
    assert texts == {"amount_1250_underlined.png": "1250", "id_4711_blue_pen.jpg": "4711", "zip_90210.png": "90210"}


def test_a_page_the_reader_trips_over_is_an_error_row(tmp_path, monkeypatch):
    recognizer = Recognizer.load()
    calls = []

    def read_or_fail(gray):
        calls.append(gray.shape)
        if len(calls) == 2:
            raise RuntimeError("an unforeseen page")
        return Recognizer.read(recognizer, gray)

    monkeypatch.setattr(recognizer, "read", read_or_fail)
    summary = run_job(read_job(recognizer), expand_paths((str(EXAMPLES / "numbers"),)), tmp_path / "n.csv",
                      workers=0, progress=False)
    rows = read_rows(tmp_path / "n.csv")
    assert [r["error"] for r in rows] == ["", "RuntimeError: an unforeseen page", ""]
    assert [r["text"] for r in rows] == ["1250", "", "90210"] and summary.failed == 1


def test_refusals_are_usage_errors(tmp_path):
    out = tmp_path / "results.csv"
    image = EXAMPLES / "four_28px.png"
    assert run("predict", image, "--out", out, "--no-progress").exit_code == 0
    assert run("predict", image, "--out", out).exit_code == 2  # exists: needs --resume or --force
    assert run("predict", image, "--out", out, "--force", "--no-progress").exit_code == 0
    assert run("predict", image, "--resume").exit_code == 2  # --resume without --out
    assert run("predict", image, "--out", out, "--json").exit_code == 2
    assert run("predict", image, "--out", out, "--resume", "--force").exit_code == 2
    wrong = run("read", image, "--out", out, "--resume")  # a predict CSV is not a read CSV
    assert wrong.exit_code == 1 and "columns" in wrong.stderr


def test_resume_cuts_off_a_torn_last_line(tmp_path, mnist_pngs, recognizer):
    folder, truth = mnist_pngs
    files = [Path(f) for f in sorted(truth)[:40]]
    odd = tmp_path / 'a "quoted",\nname.png'  # a newline inside a path: the CSV quotes it over two lines
    odd.write_bytes(files[0].read_bytes())
    files.insert(20, odd)
    clean = tmp_path / "clean.csv"
    run_job(predict_job(recognizer), files, clean, workers=0, progress=False)
    data = clean.read_bytes()
    for cut in [data.index(b"\n", len(data) // 3) + 9,  # in the middle of a row
                data.index(b"\nname.png") + 1]:  # inside the quoted path, right after its newline
        torn = tmp_path / f"torn{cut}.csv"
        torn.write_bytes(data[:cut])
        done, repaired = read_finished_rows(torn, predict_job(recognizer).columns)
        assert repaired and torn.read_bytes() == data[:len(torn.read_bytes())]  # cut back to a row boundary
        summary = run_job(predict_job(recognizer), files, torn, resume=True, workers=0, progress=False)
        assert summary.skipped == len(done) and summary.written == len(files) - len(done)
        assert read_rows(torn) == read_rows(clean)


@pytest.mark.slow
def test_killed_job_resumes_without_duplicates_or_lost_rows(tmp_path, mnist_pngs, recognizer):
    """SIGINT, then SIGKILL, each once the CSV has some rows; --resume then finishes: the clean run's rows, once."""
    folder, truth = mnist_pngs
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "digitscan", "predict", str(folder), "--out", str(out), "--workers", "1",
               "--batch-size", "16", "--no-progress"]

    def interrupt(extra: list[str], sig: int) -> int:
        rows_before = len(read_rows(out)) if out.exists() else 0
        process = subprocess.Popen(command + extra, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and len(out.read_bytes().splitlines()) > rows_before + 20:
                break
            time.sleep(0.01)
        assert process.poll() is None, "the job finished before it could be interrupted"
        os.kill(process.pid, sig)
        process.communicate(timeout=60)
        rows = read_rows(out)
        assert rows_before < len(rows) < len(truth)  # it was halfway, and kept what it had written
        return process.returncode

    assert interrupt([], signal.SIGINT) == 130
    assert interrupt(["--resume"], signal.SIGKILL) == -signal.SIGKILL
    finished = subprocess.run(command + ["--resume"], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    rows = read_rows(out)
    assert [r["path"] for r in rows] == sorted(truth)  # every file once, in order: no duplicates, none lost
    clean = tmp_path / "clean.csv"
    run_job(predict_job(recognizer), expand_paths((str(folder),)), clean, workers=0, progress=False)
    expected = read_rows(clean)
    assert [(r["digit"], r["is_digit"]) for r in rows] == [(r["digit"], r["is_digit"]) for r in expected]
    np.testing.assert_allclose([float(r["confidence"]) for r in rows],
                               [float(r["confidence"]) for r in expected], atol=1e-5)  # batch boundaries differ


def test_the_model_runs_on_one_thread_while_workers_decode_and_leaves_torch_as_it_was(tmp_path):
    import torch

    from digitscan.models.backends import TorchBackend
    from digitscan.models.checkpoint import load_checkpoint

    threads = torch.get_num_threads()
    inputs = np.random.default_rng(0).random((8, 28, 28), dtype=np.float32)
    single = TorchBackend(load_checkpoint().model, threads=1)
    np.testing.assert_allclose(single(inputs), TorchBackend(load_checkpoint().model)(inputs), atol=1e-5)
    assert run("predict", EXAMPLES / "four_28px.png", "--out", tmp_path / "r.csv", "--no-progress").exit_code == 0
    assert torch.get_num_threads() == threads


def worker_has_torch(path: str) -> np.ndarray:
    return np.array("torch" in sys.modules)


def test_workers_never_import_torch(recognizer):
    assert "torch" in sys.modules  # this process has it (the recognizer), the spawned workers must not
    assert predict_job(recognizer).prepare.func.__module__ == "digitscan.image.prepare"
    results = list(prepared_inputs(worker_has_torch, [f"x{i}" for i in range(8)], workers=1, chunk=4))
    assert [bool(array) for _, array, _ in results] == [False] * 8
    assert read_job(recognizer).prepare.__module__ == "digitscan.image.decode"


def test_rows_out_of_order_or_missing_are_refused(tmp_path):
    """fill_results, which every engine writes through, checks what an engine hands it: one row per file, in order."""
    files = [Path("a.png"), Path("b.png"), Path("c.png")]

    def swapped(todo):
        yield [{"path": todo[1]}, {"path": todo[0]}]

    def short(todo):
        yield [{"path": todo[0]}]

    with pytest.raises(RuntimeError, match="out of order"):
        fill_results(PREDICT_COLUMNS, files, tmp_path / "swapped.csv", swapped, progress=False)
    with pytest.raises(RuntimeError, match="1 rows for 3 files"):
        fill_results(PREDICT_COLUMNS, files, tmp_path / "short.csv", short, progress=False)
