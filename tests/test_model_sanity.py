"""Model files whose metadata is fine but whose numbers are not: relabelled dtypes, negative BatchNorm variances,
weights that overflow, in both formats; and JSON output that never carries a bare NaN (issue 18, defect 4)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper
from safetensors.torch import save_file

from digitscan.constants import DIGIT_CLASSES
from digitscan.errors import CheckpointError, ModelOutputError
from digitscan.json_output import strict_json
from digitscan.models.architectures import build_model
from digitscan.models.backends import ONNX_META_KEY
from digitscan.models.checkpoint import load_checkpoint
from digitscan.recognize import Prediction, Recognizer
from digitscan.serve.app import create_app
from digitscan.serve.settings import Settings

from helpers import EXAMPLES, json_lines, run

META = {"format": "digitscan-checkpoint", "version": 1, "arch": "paper", "arch_kwargs": {},
        "classes": DIGIT_CLASSES, "preprocess": "robust"}


def write_checkpoint(path: Path, tensors: dict, meta: dict) -> Path:
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"digitscan": json.dumps(meta)})
    return path


def tensors_of(arch: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return dict(build_model(arch).eval().state_dict())


def test_a_float_tensor_relabelled_int32_is_refused_from_the_header(tmp_path):
    tensors = tensors_of("paper")
    tensors["0.weight"] = tensors["0.weight"].view(torch.int32)  # same bytes and shape, another dtype
    path = write_checkpoint(tmp_path / "relabelled.safetensors", tensors, META)
    with pytest.raises(CheckpointError, match=r"tensor 0.weight is stored as I32, 'paper' needs F32") as refused:
        load_checkpoint(path)
    assert str(refused.value).startswith(str(path)) and "\n" not in str(refused.value)


def test_a_negative_batchnorm_variance_is_refused(tmp_path):
    tensors = tensors_of("dsnet")
    name = next(k for k in tensors if k.endswith("running_var"))
    tensors[name][0] = -1.0
    path = write_checkpoint(tmp_path / "negative.safetensors", tensors, {**META, "arch": "dsnet"})
    with pytest.raises(CheckpointError, match=f"tensor {name} holds negative variances"):
        load_checkpoint(path)


def test_weights_that_overflow_are_refused_at_load(tmp_path):
    tensors = tensors_of("paper")
    tensors["0.weight"].fill_(3e38)  # finite, so the NaN/infinity check of the stored tensors passes
    path = write_checkpoint(tmp_path / "overflow.safetensors", tensors, META)
    load_checkpoint(path)  # the file itself is well formed ...
    with pytest.raises(CheckpointError, match="scores are NaN or infinite on fixed test inputs") as refused:
        Recognizer.load(path)  # ... but no model that answers NaN is ever served
    assert str(refused.value).startswith(str(path))


def test_a_temperature_that_turns_finite_logits_into_infinities_is_refused(tmp_path):
    path = write_checkpoint(tmp_path / "cold.safetensors", tensors_of("paper"), {**META, "temperature": 5e-324})
    with pytest.raises(CheckpointError, match="scores are NaN or infinite"):
        Recognizer.load(path)


def write_onnx(path: Path, weight: float) -> Path:
    """A tiny ONNX classifier (784 -> 10 logits) whose every weight is `weight`."""
    weights = helper.make_tensor("w", TensorProto.FLOAT, [784, 10], np.full(7840, weight, np.float32))
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps({"classes": DIGIT_CLASSES})
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_model_whose_scores_overflow_is_refused_and_a_sane_one_loads(tmp_path):
    Recognizer.load(write_onnx(tmp_path / "sane.onnx", 0.01))
    path = write_onnx(tmp_path / "overflow.onnx", 3e38)
    with pytest.raises(CheckpointError, match="scores are NaN or infinite") as refused:
        Recognizer.load(path)
    assert str(refused.value).startswith(str(path))


def test_strict_json_refuses_nan_and_infinity():
    assert json.loads(strict_json({"confidence": 0.5})) == {"confidence": 0.5}
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ModelOutputError, match="NaN or infinite numbers"):
            strict_json({"probabilities": [0.1, value]})


def test_predict_json_turns_a_nan_result_into_an_error_row_and_goes_on(monkeypatch):
    real_predict = Recognizer.predict

    def nan_for_the_seven(self, image):
        prediction = real_predict(self, image)
        if "seven" in str(image):
            prediction = Prediction(None, math.nan, False, [math.nan] * len(self.classes))
        return prediction

    monkeypatch.setattr(Recognizer, "predict", nan_for_the_seven)
    seven, four = EXAMPLES / "seven_ink_on_paper.png", EXAMPLES / "four_28px.png"
    result = run("predict", seven, four, "--json")
    assert result.exit_code == 1
    assert "NaN" not in result.stdout.replace("NaN or infinite", "")  # no bare NaN anywhere on stdout
    rows = json_lines(result.stdout)
    assert rows[0] == {"path": str(seven), "error": rows[0]["error"]} and "NaN or infinite" in rows[0]["error"]
    assert rows[1]["path"] == str(four) and rows[1]["digit"] == 4
    assert result.stderr.count("\n") == 1 and str(seven) in result.stderr


def test_the_server_never_answers_a_bare_nan():
    app = create_app(Settings())

    @app.get("/nan")
    async def nan():
        return {"confidence": math.nan}

    response = TestClient(app, raise_server_exceptions=False).get("/nan")  # no lifespan: no model is loaded
    assert response.status_code == 500 and "NaN" not in response.text.replace("NaN or infinite", "")
    assert "NaN or infinite numbers" in response.json()["detail"]
