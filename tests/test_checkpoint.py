"""Checkpoints: round trip, self-description, and one clear error for every kind of bad model file."""

import json
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from digitscan.constants import DIGIT_CLASSES, MAX_CLASSES
from digitscan.errors import CheckpointError
from digitscan.models.architectures import SHIPPED_ARCH, build_model
from digitscan.models.checkpoint import (
    load_checkpoint,
    recorded_sha256,
    save_checkpoint,
    sha256_file,
    shipped_ensemble_paths,
    shipped_path,
)
from digitscan.models.shipped import weights_dir
from digitscan.reading.line_reader import shipped_reader_path
from digitscan.recognize import Recognizer

META = {"arch": "paper", "arch_kwargs": {}, "classes": DIGIT_CLASSES, "preprocess": "robust"}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model("paper").eval()
    return model, save_checkpoint(tmp_path / "m.safetensors", model, META)


def test_round_trip_rebuilds_the_same_model(saved):
    model, path = saved
    loaded = load_checkpoint(path)
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(loaded.model(x), model(x))
    assert loaded.meta["arch"] == "paper" and loaded.classes == DIGIT_CLASSES
    assert [p.name for p in path.parent.iterdir()] == ["m.safetensors"]  # no temporary files left


def write_raw(path, tensors, meta):
    save_file(tensors, str(path), metadata=None if meta is None else {"digitscan": json.dumps(meta)})
    return path


def paper_tensors():
    return {k: v.contiguous() for k, v in build_model("paper").state_dict().items()}


@pytest.mark.parametrize("case, message", [
    ("garbage", "not a safetensors file"),
    ("empty", "not a safetensors file"),
    ("no_meta", "without digitscan metadata"),
    ("unknown_arch", "unknown architecture"),
    ("bad_classes", "'classes' must be"),
    ("wrong_shape", "has shape"),
    ("missing_tensor", "tensors do not match"),
    ("nan", "NaN or infinite"),
    ("bad_version", "format version"),
    ("bad_kwargs", "architecture arguments do not fit"),
])
def test_bad_model_files_give_one_clear_error(tmp_path, case, message):
    path = tmp_path / f"{case}.safetensors"
    meta = {"format": "digitscan-checkpoint", "version": 1, **META}
    tensors = paper_tensors()
    if case == "garbage":
        path.write_bytes(os.urandom(300))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "no_meta":
        write_raw(path, tensors, None)
    elif case == "unknown_arch":
        write_raw(path, tensors, {**meta, "arch": "evil"})
    elif case == "bad_classes":
        write_raw(path, tensors, {**meta, "classes": ["1", "1"]})
    elif case == "wrong_shape":
        tensors["0.weight"] = torch.zeros(32, 1, 3, 3)
        write_raw(path, tensors, meta)
    elif case == "missing_tensor":
        del tensors["0.bias"]
        write_raw(path, tensors, meta)
    elif case == "nan":
        tensors["0.bias"][0] = float("nan")
        write_raw(path, tensors, meta)
    elif case == "bad_version":
        write_raw(path, tensors, {**meta, "version": 99})
    elif case == "bad_kwargs":
        write_raw(path, tensors, {**meta, "arch_kwargs": {"layers": 3}})
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)


def test_missing_model_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_shipped_weights_are_verified(tmp_path):
    for path in [*shipped_ensemble_paths(), shipped_reader_path()]:
        assert sha256_file(path) == recorded_sha256(path), path
    tampered = tmp_path / "shipped.safetensors"
    data = bytearray(shipped_path().read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    tampered.with_suffix(".sha256").write_text(recorded_sha256(shipped_path()))
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        load_checkpoint(tampered, verify_sha256=True)


# ---- hostile model files -------------------------------------------------------------------------------------------


class TouchOnUnpickle:
    """A pickle payload that creates a file when unpickled: what a malicious 'model' would run instead."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mknod if hasattr(os, "mknod") else open, (str(self.marker),))


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_a_pickle_named_safetensors_is_refused_and_never_unpickled(tmp_path, writer):
    marker = tmp_path / "code-ran"
    path = tmp_path / "model.safetensors"
    payload = {"state_dict": paper_tensors(), "evil": TouchOnUnpickle(marker)}
    if writer == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)  # PyTorch's zip-of-pickles format, as a .pt checkpoint would be
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_checkpoint(path)
    assert not marker.exists()


def test_the_package_never_unpickles_a_file():
    # Safetensors only: no torch.load / pickle.load anywhere in the package (weights_only or not).
    source = Path(__file__).resolve().parents[1] / "src" / "digitscan"
    for module in source.rglob("*.py"):
        text = module.read_text()
        for call in ("torch.load(", "pickle.load", "pickle.Unpickler", "joblib.load", "np.load("):
            assert call not in text, f"{module.name} calls {call}"


@pytest.mark.parametrize("classes, valid", [
    (DIGIT_CLASSES, True),
    ([str(i) for i in range(MAX_CLASSES + 1)], False),  # too many
    (["0"], False),  # too few
    (["0", ""], False),  # empty name
    (["0", "x" * 65], False),  # a name longer than a label
    (["0", "1\nThe Number is 7"], False),  # a name that would forge a line of CLI output
    (["0", 1], False),  # not text
])
def test_class_names_must_be_a_sane_list(tmp_path, classes, valid):
    path = tmp_path / "classes.safetensors"
    tensors = {k: v.contiguous() for k, v in build_model("paper", num_classes=len(classes)).state_dict().items()}
    write_raw(path, tensors, {"format": "digitscan-checkpoint", "version": 1, **META, "classes": classes})
    if valid:
        assert load_checkpoint(path).classes == classes
    else:
        with pytest.raises(CheckpointError, match="'classes' must be"):
            load_checkpoint(path)


@pytest.mark.parametrize("arch_kwargs", [
    {"hidden": [1_000_000, 1_000_000]},  # 10^12 parameters: building it for real would exhaust memory
    {"hidden": [20_000, 20_000]},  # 400 million: 1.6 GB and ~6 s of initialisation before the old shape check
    {"hidden": [-1, 5]},  # a negative size
    {"hidden": "wide"},  # a wrong type
])
def test_architecture_arguments_cannot_allocate_a_giant_model(tmp_path, arch_kwargs):
    path = tmp_path / "mlp.safetensors"
    tensors = {k: v.contiguous() for k, v in build_model("mlp").state_dict().items()}
    write_raw(path, tensors, {"format": "digitscan-checkpoint", "version": 1, **META, "arch": "mlp",
                              "arch_kwargs": arch_kwargs})
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)
    assert time.perf_counter() - start < 2.0  # milliseconds: the model is only sized up on the meta device


def test_deeply_nested_metadata_is_one_clear_error(tmp_path):
    path = tmp_path / "nested.safetensors"
    save_file(paper_tensors(), str(path), metadata={"digitscan": "[" * 100_000 + "]" * 100_000})
    with pytest.raises(CheckpointError, match="metadata is not valid JSON"):
        load_checkpoint(path)


def test_shipped_weights_are_verified_by_default(tmp_path, monkeypatch):
    # The default load (no path) checks the shipped file's sha256: a tampered copy in the weights folder is refused.
    data = bytearray(shipped_path().read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight: still a perfectly loadable safetensors file
    (tmp_path / "shipped.safetensors").write_bytes(bytes(data))
    (tmp_path / "shipped.sha256").write_text(recorded_sha256(shipped_path()))
    monkeypatch.setattr("digitscan.models.shipped.weights_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        load_checkpoint()
    (tmp_path / "shipped.sha256").unlink()
    with pytest.raises(CheckpointError, match="no readable sha256"):
        load_checkpoint()
    assert load_checkpoint(tmp_path / "shipped.safetensors", verify_sha256=False).meta["arch"] == SHIPPED_ARCH


def test_shipped_onnx_files_are_verified_by_default(tmp_path, monkeypatch):
    # The default inference path runs the shipped ONNX export: a tampered copy in the weights folder is refused too,
    # before onnxruntime sees it.
    shipped_onnx = weights_dir() / "shipped.onnx"
    data = bytearray(shipped_onnx.read_bytes())
    data[len(data) // 2] ^= 0x01
    (tmp_path / "shipped.onnx").write_bytes(bytes(data))
    (tmp_path / "shipped.onnx.sha256").write_text(recorded_sha256(shipped_onnx))
    monkeypatch.setattr("digitscan.models.shipped.weights_dir", lambda: tmp_path)
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        Recognizer.load()
    (tmp_path / "shipped.onnx.sha256").unlink()
    with pytest.raises(CheckpointError, match="no readable sha256"):
        Recognizer.load()
