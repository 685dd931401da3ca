"""ONNX export: onnx.checker, parity with PyTorch on 1,000 MNIST test images, dynamic batch, metadata, --backend
onnx."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from digitscan.errors import ExportError
from digitscan.models.backends import ONNX_META_KEY, OnnxBackend, TorchBackend
from digitscan.models.checkpoint import load_checkpoint, sha256_file, shipped_path
from digitscan.models.export import DEFAULT_OPSET, PARITY_TOLERANCE, export_onnx
from digitscan.recognize import Recognizer

from helpers import EXAMPLES, run

SOME_EXAMPLES = [EXAMPLES / "seven_ink_on_paper.png", EXAMPLES / "eight_photo.jpg", EXAMPLES / "blank_paper.png"]


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory) -> Path:
    """The shipped model exported once through the CLI, as a user would."""
    path = tmp_path_factory.mktemp("onnx") / "shipped.onnx"
    result = run("export", "--format", "onnx", "--out", path)
    assert result.exit_code == 0, result.output
    assert f"wrote {path}" in result.stdout and "max probability difference" in result.stdout
    return path


@pytest.fixture(scope="module")
def recognizers(onnx_path) -> tuple[Recognizer, Recognizer]:
    return Recognizer.load(backend="torch"), Recognizer.load(onnx_path)


def test_checker_passes_and_the_batch_axis_is_dynamic(onnx_path):
    model = onnx.load(onnx_path)
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == DEFAULT_OPSET
    (graph_input,), (graph_output,) = model.graph.input, model.graph.output
    in_dims = [d.dim_param or d.dim_value for d in graph_input.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim]
    assert isinstance(in_dims[0], str) and in_dims[1:] == [1, 28, 28]
    assert out_dims == [in_dims[0], 10]


def test_onnxruntime_matches_pytorch_on_1000_mnist_test_images(recognizers, mnist_test):
    images, labels = mnist_test
    inputs = images[:1000].astype(np.float32) / 255  # (1000, 28, 28) in [0, 1]
    torch_rec, onnx_rec = recognizers
    expected, got = torch_rec.predict_inputs(inputs), onnx_rec.predict_inputs(inputs)
    p_torch = np.array([p.probabilities for p in expected])
    p_onnx = np.array([p.probabilities for p in got])
    assert np.abs(p_onnx - p_torch).max() <= PARITY_TOLERANCE
    assert np.array_equal(p_onnx.argmax(1), p_torch.argmax(1))
    assert [(p.digit, p.is_digit) for p in got] == [(p.digit, p.is_digit) for p in expected]
    assert np.mean(p_onnx.argmax(1) == labels[:1000]) >= 0.99  # and it is the real model, not any agreeing pair


@pytest.mark.parametrize("batch", [1, 257])
def test_any_batch_size_runs(onnx_path, batch):
    inputs = np.random.default_rng(batch).random((batch, 28, 28), dtype=np.float32)
    logits = OnnxBackend(onnx_path)(inputs)
    assert logits.shape == (batch, 10)
    np.testing.assert_allclose(logits, TorchBackend(load_checkpoint().model)(inputs), atol=1e-4)


def test_metadata_round_trips(onnx_path, recognizers):
    props = {p.key: p.value for p in onnx.load(onnx_path).metadata_props}
    meta = json.loads(props[ONNX_META_KEY])
    shipped = load_checkpoint().meta
    assert {k: meta[k] for k in shipped} == shipped  # classes, temperature, preprocess, reject_threshold, arch, ...
    assert meta["onnx"]["source_sha256"] == sha256_file(shipped_path())
    assert meta["onnx"]["opset"] == DEFAULT_OPSET
    assert {"temperature", "reject_threshold", "preprocess"} <= set(meta)  # spelled out for other runtimes
    torch_rec, onnx_rec = recognizers
    for name in ["classes", "temperature", "reject_threshold", "preprocess_mode"]:
        assert getattr(onnx_rec, name) == getattr(torch_rec, name), name


def test_cli_backend_onnx_gives_the_same_answers_as_torch(onnx_path):
    def predict(*options) -> tuple[list, np.ndarray]:
        result = run("predict", "--json", *options, *SOME_EXAMPLES)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return [row["digit"] for row in rows], np.array([row["confidence"] for row in rows])

    digits, confidences = predict()
    assert digits == [7, 8, None]
    for options in [("--model", onnx_path), ("--backend", "onnx")]:  # the second exports the shipped model in memory
        onnx_digits, onnx_confidences = predict(*options)
        assert onnx_digits == digits
        np.testing.assert_allclose(onnx_confidences, confidences, atol=PARITY_TOLERANCE)
    number = EXAMPLES / "numbers" / "zip_90210.png"
    segments = ("read", "--method", "segments")  # the method that runs the classifier on every digit
    assert run(*segments, "--model", onnx_path, number).stdout == run(*segments, number).stdout


def test_an_onnx_model_needs_no_torch(onnx_path):
    code = ("import sys; from digitscan.recognize import Recognizer; "
            f"r = Recognizer.load({str(onnx_path)!r}); print(r.predict({str(SOME_EXAMPLES[0])!r}).digit); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["7", "False"]


def test_broken_onnx_files_are_one_clear_error(tmp_path, onnx_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all")
    bare = onnx.load(onnx_path)
    del bare.metadata_props[:]
    onnx.save(bare, tmp_path / "bare.onnx")
    for path, message in [(garbage, "not a loadable ONNX model"),
                          (tmp_path / "bare.onnx", "without digitscan metadata"),
                          (tmp_path / "missing.onnx", "no such model file")]:
        result = run("predict", "--model", path, SOME_EXAMPLES[0])
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert "Traceback" not in result.output


def test_a_failed_parity_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("digitscan.models.export.PARITY_TOLERANCE", -1.0)  # any difference, even 0, now fails
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="nothing written"):
        export_onnx(load_checkpoint(), out)
    assert list(tmp_path.iterdir()) == []
    assert run("export", "--out", out, "--opset", "17").exit_code == 2  # too old for the exporter: a usage error


def test_the_larger_architecture_exports_too(tmp_path):
    """dsnet-l (not shipped yet) goes through the same export and its parity check."""
    import torch

    from digitscan.models.architectures import build_model
    from digitscan.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model("dsnet-l").eval()
    meta = {**load_checkpoint(shipped_path()).meta, "arch": "dsnet-l"}
    path = save_checkpoint(tmp_path / "large.safetensors", model, meta)
    result = export_onnx(load_checkpoint(path), tmp_path / "large.onnx")
    assert result.max_prob_diff <= PARITY_TOLERANCE
    onnx.checker.check_model(onnx.load(tmp_path / "large.onnx"), full_check=True)
