"""The ONNX files inference runs by default (src/digitscan/weights/*.onnx) are exports of the committed safetensors:
same source digests, same answers, and no PyTorch needed to run them."""

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from digitscan.models.backends import (
    OnnxBackend,
    OnnxLineBackend,
    TorchBackend,
    TorchLineBackend,
    load_onnx_ensemble,
    softmax,
)
from digitscan.models.checkpoint import load_checkpoint, load_ensemble, sha256_file, shipped_ensemble_paths
from digitscan.models.export import line_parity_strips, parity_inputs
from digitscan.models.shipped import (
    READER_NAME,
    READER_ONNX,
    SHIPPED_ONNX,
    onnx_export_of,
    recorded_sha256,
    weights_dir,
)

STALE = "stale ONNX export: run scripts/export_shipped.py after changing the shipped safetensors"


def onnx_meta(name: str) -> dict:
    proto = onnx.load(weights_dir() / name)
    return json.loads({p.key: p.value for p in proto.metadata_props}["digitscan"])


SOURCES = [*shipped_ensemble_paths(), weights_dir() / READER_NAME]


@pytest.mark.parametrize("source", SOURCES, ids=[p.name for p in SOURCES])
def test_each_onnx_file_was_exported_from_the_committed_checkpoint(source):
    name = onnx_export_of(source).name
    meta = onnx_meta(name)
    assert meta["onnx"]["source_sha256"] == sha256_file(source), STALE
    assert sha256_file(weights_dir() / name) == recorded_sha256(weights_dir() / name)
    checkpoint_meta = load_checkpoint(source).meta
    for key in ("arch", "classes", "reject_logit_threshold", "train_config", "metrics"):
        assert meta.get(key) == checkpoint_meta.get(key), key
    for key, default in (("temperature", 1.0), ("reject_threshold", 0.0)):  # spelled out in the export
        assert meta[key] == checkpoint_meta.get(key, default), key


def test_the_shipped_onnx_ensemble_is_every_seed_and_describes_itself_as_pytorch_does():
    members = [onnx_export_of(p) for p in shipped_ensemble_paths()]
    assert len(members) == 3 and members[0].name == SHIPPED_ONNX
    _, meta = load_onnx_ensemble(members)
    expected = load_ensemble().meta
    assert meta["ensemble"] == [p.name for p in members]
    assert "reject_logit_threshold" not in meta  # the ensemble's outputs are log-probabilities: probability rule
    for key in ("classes", "temperature", "reject_threshold", "tta_shifts", "preprocess", "arch"):
        assert meta[key] == expected[key], key
    # No weights twice: each file holds one member, under the size a repository should carry.
    assert all((weights_dir() / p).stat().st_size < 3_000_000 for p in members)
    assert not list(weights_dir().glob("ensemble*.onnx"))


def test_onnx_answers_like_pytorch():
    inputs = parity_inputs()
    onnx_ensemble, _ = load_onnx_ensemble([onnx_export_of(p) for p in shipped_ensemble_paths()])
    for name, checkpoint, backend in ((SHIPPED_ONNX, load_checkpoint(), OnnxBackend(weights_dir() / SHIPPED_ONNX)),
                                      ("ensemble", load_ensemble(), onnx_ensemble)):
        expected = softmax(TorchBackend(checkpoint.model)(inputs).astype(np.float64))
        got = softmax(backend(inputs).astype(np.float64))
        assert np.abs(got - expected).max() < 1e-4, name
        assert np.array_equal(got.argmax(1), expected.argmax(1)), name
    assert onnx_ensemble(inputs[:0]).shape == (0, 10)
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
