"""Checkpoints: round trip, self-description, and one clear error for every kind of bad model file."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from digitscan.checkpoint import (
    CheckpointError, load_checkpoint, recorded_sha256, save_checkpoint, sha256_file, shipped_ensemble_paths, shipped_path,
)
from digitscan.constants import DIGIT_CLASSES
from digitscan.models import build_model

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
    for path in shipped_ensemble_paths():
        assert sha256_file(path) == recorded_sha256(path), path
    tampered = tmp_path / "shipped.safetensors"
    data = bytearray(shipped_path().read_bytes())
    data[-1] ^= 0xFF
    tampered.write_bytes(bytes(data))
    tampered.with_suffix(".sha256").write_text(recorded_sha256(shipped_path()))
    with pytest.raises(CheckpointError, match="do not match their recorded sha256"):
        load_checkpoint(tampered, verify_sha256=True)
