"""One validator of a model's self-description for both model formats: a checkpoint (.safetensors) and an exported
ONNX file with the same bad metadata are refused with the same one clear line, by the library and by the CLI."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from digitscan.constants import DIGIT_CLASSES
from digitscan.errors import CheckpointError
from digitscan.models.architectures import build_model
from digitscan.models.backends import ONNX_META_KEY
from digitscan.models.checkpoint import save_checkpoint
from digitscan.recognize import Recognizer

from helpers import EXAMPLES, run

GOOD = {"arch": "paper", "arch_kwargs": {}, "classes": DIGIT_CLASSES, "preprocess": "robust",
        "temperature": 1.2, "reject_threshold": 0.5}
BAD = [
    ({"temperature": 0}, "'temperature' must be a positive number"),
    ({"temperature": -1.0}, "'temperature' must be a positive number"),
    ({"temperature": float("nan")}, "'temperature' must be a positive number"),
    ({"temperature": True}, "'temperature' must be a positive number"),  # a boolean is not a number
    ({"temperature": "1.0"}, "'temperature' must be a positive number"),
    ({"reject_threshold": 1.5}, "'reject_threshold' must lie in [0, 1]"),
    ({"reject_threshold": float("nan")}, "'reject_threshold' must lie in [0, 1]"),
    ({"reject_logit_threshold": float("nan")}, "'reject_logit_threshold' must be a finite number"),
    ({"reject_logit_threshold": "2"}, "'reject_logit_threshold' must be a finite number"),
    ({"reject_logit_threshold": True}, "'reject_logit_threshold' must be a finite number"),
    ({"preprocess": "evil"}, "'preprocess' must be one of robust, paper"),
    ({"classes": [*DIGIT_CLASSES, "ten"]}, "outputs 10 scores but the metadata names 11 classes"),
    ({"classes": ["0", "0", *DIGIT_CLASSES[2:]]}, "'classes' must be a list of"),
    ({"classes": ["a\nb", *DIGIT_CLASSES[1:]]}, "'classes' must be a list of"),
]


def write_checkpoint(path, meta: dict):
    torch.manual_seed(0)
    return save_checkpoint(path, build_model("paper").eval(), meta)


def write_onnx(path, meta: dict):
    """A tiny real ONNX classifier (flatten, one dense layer: 784 -> 10 logits) carrying `meta` as digitscan's."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.random.default_rng(0).normal(size=7840))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.save(model, path)
    return path


WRITERS = {"safetensors": write_checkpoint, "onnx": write_onnx}


@pytest.mark.parametrize("fmt", WRITERS)
def test_good_metadata_loads_in_both_formats(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path / f"model.{fmt}", GOOD)
    recognizer = Recognizer.load(path)
    assert (recognizer.temperature, recognizer.reject_threshold) == (1.2, 0.5)
    assert recognizer.predict(np.zeros((28, 28), np.float32)).is_digit is False


@pytest.mark.parametrize("fmt", WRITERS)
@pytest.mark.parametrize("change, message", BAD, ids=[json.dumps(change)[:40] for change, _ in BAD])
def test_bad_metadata_is_refused_with_one_line_in_both_formats(tmp_path, fmt, change, message):
    path = WRITERS[fmt](tmp_path / f"model.{fmt}", {**GOOD, **change})
    with pytest.raises(CheckpointError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        Recognizer.load(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("fmt", WRITERS)
def test_the_cli_says_what_is_wrong_in_one_line(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path / f"model.{fmt}", {**GOOD, "temperature": 0})
    result = run("predict", "--model", path, EXAMPLES / "seven_ink_on_paper.png")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"digitscan: error: {path}: metadata 'temperature' must be a positive number, got 0"]


def test_onnx_metadata_nested_deeply_is_one_clear_error(tmp_path):
    path = write_onnx(tmp_path / "deep.onnx", GOOD)
    model = onnx.load(path)
    model.metadata_props[0].value = "[" * 100_000 + "]" * 100_000
    onnx.save(model, path)
    with pytest.raises(CheckpointError, match="metadata is not valid JSON"):
        Recognizer.load(path)
