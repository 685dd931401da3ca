"""The ONNX files inference runs by default (src/digitscan/weights/*.onnx) are exports of the committed safetensors:
same source digests, same answers, and no PyTorch needed to run them."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from digitscan.models.backends import OnnxBackend, OnnxLineBackend, TorchBackend, TorchLineBackend, softmax
from digitscan.models.checkpoint import load_checkpoint, load_ensemble, sha256_file, shipped_ensemble_paths
from digitscan.models.export import line_parity_strips, parity_inputs
from digitscan.models.shipped import (
    ENSEMBLE_ONNX,
    READER_NAME,
    READER_ONNX,
    SHIPPED_ONNX,
    recorded_sha256,
    shipped_path,
    weights_dir,
)

STALE = "stale ONNX export: run scripts/export_shipped.py after changing the shipped safetensors"


def onnx_meta(name: str) -> dict:
    proto = onnx.load(weights_dir() / name)
    return json.loads({p.key: p.value for p in proto.metadata_props}["digitscan"])


@pytest.mark.parametrize("name, source", [(SHIPPED_ONNX, shipped_path()), (READER_ONNX, weights_dir() / READER_NAME)])
def test_each_onnx_file_was_exported_from_the_committed_checkpoint(name, source):
    meta = onnx_meta(name)
    assert meta["onnx"]["source_sha256"] == sha256_file(source), STALE
    assert sha256_file(weights_dir() / name) == recorded_sha256(weights_dir() / name)
    checkpoint_meta = load_checkpoint(source).meta
    for key in ("arch", "classes", "reject_logit_threshold", "train_config", "metrics"):
        assert meta.get(key) == checkpoint_meta.get(key), key
    for key, default in (("temperature", 1.0), ("reject_threshold", 0.0)):  # spelled out in the export
        assert meta[key] == checkpoint_meta.get(key, default), key


def test_the_ensemble_onnx_holds_every_shipped_seed():
    meta = onnx_meta(ENSEMBLE_ONNX)
    assert meta["onnx"]["ensemble_sha256"] == [sha256_file(p) for p in shipped_ensemble_paths()], STALE
    assert meta["ensemble"] == [p.name for p in shipped_ensemble_paths()]
    assert "reject_logit_threshold" not in meta  # the ensemble's outputs are log-probabilities: probability rule


def test_onnx_answers_like_pytorch():
    inputs = parity_inputs()
    for name, checkpoint in ((SHIPPED_ONNX, load_checkpoint()), (ENSEMBLE_ONNX, load_ensemble())):
        expected = softmax(TorchBackend(checkpoint.model)(inputs).astype(np.float64))
        got = softmax(OnnxBackend(weights_dir() / name)(inputs).astype(np.float64))
        assert np.abs(got - expected).max() < 1e-4, name
    torch_reader = TorchLineBackend(load_checkpoint(weights_dir() / READER_NAME).model)
    onnx_reader = OnnxLineBackend(weights_dir() / READER_ONNX)
    for strip in line_parity_strips():
        assert np.abs(np.exp(onnx_reader(strip)) - np.exp(torch_reader(strip))).max() < 1e-4


def test_predict_and_read_run_without_pytorch(tmp_path):
    # `import torch` fails in this process: predict, read and a batch job must not need it.
    script = ("import sys; sys.modules['torch'] = None\n"
              "from digitscan.cli import main\n"
              "main(sys.argv[1:])\n")
    examples = sorted(str(p) for p in (weights_dir().parents[2] / "examples").glob("*_*.png"))
    numbers = str(weights_dir().parents[2] / "examples" / "numbers")
    predict = subprocess.run([sys.executable, "-c", script, "predict", "--json", *examples],
                             capture_output=True, text=True, timeout=120)
    assert predict.returncode == 0, predict.stderr
    assert len(predict.stdout.splitlines()) == len(examples)
    read = subprocess.run([sys.executable, "-c", script, "read", numbers, "--out", str(tmp_path / "n.csv")],
                          capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    rows = (tmp_path / "n.csv").read_text().splitlines()
    assert rows[0].startswith("path,text") and len(rows) == 4
    # What needs PyTorch says so in one line.
    train = subprocess.run([sys.executable, "-c", script, "export", "--out", str(tmp_path / "m.onnx")],
                           capture_output=True, text=True, timeout=120)
    assert train.returncode == 1 and "pip install 'digitscan[train]'" in train.stderr, train.stderr
    assert not (tmp_path / "m.onnx").exists()
