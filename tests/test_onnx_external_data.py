"""ONNX models whose tensors point at other files (external data) are refused before onnxruntime opens anything:
older onnxruntime releases in our declared range read `../../../etc/passwd` and hand its bytes to the graph."""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from digitscan.errors import CheckpointError
from digitscan.models.backends import ONNX_META_KEY, OnnxBackend
from digitscan.recognize import Recognizer

from helpers import run

SECRET = b"digitscan test secret: must never reach the model"


def external_tensor(name: str, location: str) -> TensorProto:
    """A uint8 tensor of len(SECRET) bytes whose data lives in `location`."""
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[len(SECRET)])
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, "offset": "0", "length": str(len(SECRET))}.items():
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def model_reading(location: str, *, sparse: bool = False) -> bytes:
    """A graph that returns the bytes of `location` as its output, as an initializer or a sparse initializer."""
    output = helper.make_tensor_value_info("leak", TensorProto.UINT8, [len(SECRET)])
    unused = [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 28, 28])]
    if sparse:
        indices = helper.make_tensor("indices", TensorProto.INT64, [len(SECRET)], list(range(len(SECRET))))
        graph = helper.make_graph([helper.make_node("Identity", ["secret"], ["leak"])], "leak", unused, [output],
                                  sparse_initializer=[helper.make_sparse_tensor(
                                      external_tensor("secret", location), indices, [len(SECRET)])])
    else:
        graph = helper.make_graph([helper.make_node("Identity", ["secret"], ["leak"])], "leak", unused, [output],
                                  [external_tensor("secret", location)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)  # any runtime
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps({"classes": ["0", "1"]})
    return model.SerializeToString()


@pytest.fixture
def secret_outside(tmp_path) -> Path:
    """A file outside the model's folder, reachable as ../../outside/secret.bin from tmp_path/models/deep/."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "models" / "deep").mkdir(parents=True)
    secret = tmp_path / "outside" / "secret.bin"
    secret.write_bytes(SECRET)
    return secret


@pytest.fixture
def no_session(monkeypatch):
    """Fail the test if onnxruntime is ever asked to open the model: the refusal must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("onnxruntime was handed a model with external data")

    monkeypatch.setattr(onnxruntime, "InferenceSession", refuse)


@pytest.mark.parametrize("kind", ["relative ../", "absolute", "sparse ../", "/etc/passwd"])
def test_external_data_is_refused_with_one_line_naming_the_file(tmp_path, secret_outside, no_session, kind):
    location = {"relative ../": "../../outside/secret.bin", "absolute": str(secret_outside),
                "sparse ../": "../../outside/secret.bin", "/etc/passwd": "../../../../../../../../etc/passwd"}[kind]
    path = tmp_path / "models" / "deep" / "leak.onnx"
    path.write_bytes(model_reading(location, sparse=kind.startswith("sparse")))
    with pytest.raises(CheckpointError) as refused:
        Recognizer.load(path)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{path}: tensor 'secret' keeps its data in another file")
    with pytest.raises(CheckpointError, match="^ONNX model: tensor 'secret' keeps its data"):
        OnnxBackend(path.read_bytes())  # the same check for a model handed over as bytes


def test_the_cli_refuses_it_with_one_line(tmp_path, secret_outside):
    path = tmp_path / "models" / "deep" / "leak.onnx"
    path.write_bytes(model_reading("../../outside/secret.bin"))
    image = Path(__file__).resolve().parents[1] / "examples" / "four_28px.png"
    result = run("predict", image, "--model", path)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"{path}: tensor 'secret' keeps its data in another file" in result.stderr


def test_a_model_with_inline_data_still_loads(tmp_path):
    """The check refuses only external data: the same graph with its bytes inside the file runs."""
    model = onnx.load_model_from_string(model_reading("unused"))
    tensor = model.graph.initializer[0]
    tensor.ClearField("external_data")
    tensor.data_location = TensorProto.DEFAULT
    tensor.raw_data = SECRET
    path = tmp_path / "inline.onnx"
    path.write_bytes(model.SerializeToString())
    session = OnnxBackend(path).session
    assert bytes(session.run(None, {"input": np.zeros((1, 1, 28, 28), np.float32)})[0]) == SECRET


def test_every_shipped_export_is_self_contained():
    """A shipped file is checked by its recorded digest instead of being parsed (a faster start), so every one of
    them must pass the parse too."""
    from digitscan.models.backends import refuse_external_data
    from digitscan.models.shipped import weights_dir

    shipped = sorted(weights_dir().glob("*.onnx"))
    assert len(shipped) >= 2  # the digit models and the line reader
    for path in shipped:
        refuse_external_data(path.read_bytes(), str(path))
