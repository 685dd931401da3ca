"""The command line: predict/evaluate/compare/data on real files, JSON shapes from INTERFACE.md, one-line errors."""

import gzip
import json
import shutil
from pathlib import Path

import pytest

from helpers import EXAMPLES, json_lines, run

EXPECTED = {"seven_ink_on_paper.png": 7, "three_blue_pen.png": 3, "zero_pencil_off_centre.png": 0,
            "five_canvas.png": 5, "two_transparent.png": 2, "eight_photo.jpg": 8, "four_28px.png": 4,
            "blank_paper.png": None}
PREDICT_KEYS = {"path", "digit", "confidence", "is_digit", "probabilities"}


def test_predict_examples_folder_json():
    result = run("predict", "--json", EXAMPLES)
    assert result.exit_code == 0, result.output
    rows = {Path(r["path"]).name: r for r in json_lines(result.stdout) if Path(r["path"]).parent == EXAMPLES}
    assert set(rows) == set(EXPECTED)  # examples/numbers/ (whole numbers for `read`) is searched too, not checked
    for name, digit in EXPECTED.items():
        row = rows[name]
        assert set(row) == PREDICT_KEYS, name
        assert row["digit"] == digit, name
        assert row["is_digit"] == (digit is not None)
        assert len(row["probabilities"]) == 10 and abs(sum(row["probabilities"]) - 1) < 1e-4
        assert 0 <= row["confidence"] <= 1


def test_predict_human_output_like_the_paper():
    result = run("predict", EXAMPLES / "seven_ink_on_paper.png", EXAMPLES / "blank_paper.png")
    assert result.exit_code == 0
    assert "seven_ink_on_paper.png: The Number is 7 (confidence" in result.stdout
    assert "blank_paper.png: not a digit" in result.stdout


def test_bad_files_are_reported_and_the_rest_processed(tmp_path):
    (tmp_path / "notes.png").write_text("this is text, not a PNG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    truncated = (EXAMPLES / "seven_ink_on_paper.png").read_bytes()[:300]
    (tmp_path / "truncated.png").write_bytes(truncated)
    shutil.copy(EXAMPLES / "five_canvas.png", tmp_path / "good.png")
    result = run("predict", "--json", tmp_path, tmp_path / "missing.png")
    assert result.exit_code == 1
    rows = {Path(r["path"]).name: r for r in json_lines(result.stdout)}
    assert rows["good.png"]["digit"] == 5
    for name in ["notes.png", "empty.jpg", "truncated.png", "missing.png"]:
        assert set(rows[name]) == {"path", "error"}, name
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4 and "Traceback" not in result.output


def test_paper_preprocessing_mode_is_selectable():
    result = run("predict", "--json", "--preprocess", "paper", EXAMPLES / "five_canvas.png")
    assert result.exit_code == 0 and json_lines(result.stdout)[0]["digit"] == 5


def test_bad_model_file_is_one_line(tmp_path):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"not a model")
    result = run("predict", "--model", model, EXAMPLES / "five_canvas.png")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "not a safetensors file" in result.stderr


@pytest.mark.slow
def test_evaluate_json_and_plots(mnist_dir, tmp_path):
    result = run("evaluate", "--json", "--data", mnist_dir, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) == {"n", "loss", "accuracy", "per_class", "confusion_matrix"}
    assert report["n"] == 10_000
    assert report["accuracy"] >= 0.99  # the shipped model on the real MNIST test set
    assert [row["class"] for row in report["per_class"]] == list(range(10))
    assert sum(row["support"] for row in report["per_class"]) == 10_000
    matrix = report["confusion_matrix"]
    assert len(matrix) == 10 and all(len(r) == 10 for r in matrix) and sum(map(sum, matrix)) == 10_000
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
    assert (tmp_path / "misclassified.png").stat().st_size > 1000


def test_data_info_prints_statistics_and_plots(mnist_dir, tmp_path):
    result = run("data", "info", "--data", mnist_dir, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert "train: 60000 images" in result.stdout and "test: 10000 images" in result.stdout
    assert "0:980" in result.stdout  # the test split has 980 zeros
    assert (tmp_path / "samples.png").exists() and (tmp_path / "class_distribution.png").exists()


def test_corrupt_dataset_is_one_line(mnist_dir, tmp_path):
    for path in mnist_dir.iterdir():
        shutil.copy(path, tmp_path / path.name)
    name = "t10k-images-idx3-ubyte"
    raw = gzip.decompress((mnist_dir / f"{name}.gz").read_bytes())
    (tmp_path / f"{name}.gz").write_bytes(gzip.compress(raw[: len(raw) // 2], compresslevel=1))
    result = run("evaluate", "--data", tmp_path)
    assert result.exit_code == 1
    assert name in result.stderr and result.stderr.count("\n") == 1 and "Traceback" not in result.output


def test_missing_data_folder_is_one_line(tmp_path):
    result = run("evaluate", "--data", tmp_path / "nowhere")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1


@pytest.mark.slow
def test_compare_quick_trial_json_shape(mnist_dir, tmp_path):
    result = run("compare", "--json", "--data", mnist_dir, "--limit", "1500", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    assert [r["model"] for r in rows] == ["SVM", "ANN", "CNN"]
    for row in rows:
        assert 0.5 < row["accuracy"] <= 1 and row["train_seconds"] > 0
    assert (tmp_path / "comparison.png").exists()


def test_help_teaches():
    result = run("--help")
    assert "digitscan predict photo.jpg" in result.stdout
    for command in ["predict", "train", "evaluate", "summary", "compare", "data"]:
        assert command in result.stdout
