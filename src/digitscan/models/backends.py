"""Inference backends: callables that turn prepared inputs (N, 28, 28) in [0, 1] into logits (N, classes) as numpy.

`TorchBackend(model)` runs a PyTorch module, `OnnxBackend(path_or_bytes)` an onnxruntime session; Recognizer takes
either. The line reader's strips go through `OnnxLineBackend` (the default) or `TorchLineBackend` the same way.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from digitscan.constants import IMAGE_SIZE, INFER_BATCH, TTA_SHIFTS
from digitscan.errors import CheckpointError, one_line
from digitscan.models.metadata import ensemble_meta, parse_meta, validate_meta
from digitscan.models.shipped import check_recorded, is_shipped

BACKENDS = ("torch", "onnx")
ONNX_META_KEY = "digitscan"  # metadata_props key of the JSON self-description in an exported .onnx file
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"


class TorchBackend:
    """A PyTorch module (BatchNorm folded for inference) on the CPU or wherever its weights are.

    threads: PyTorch's intra-op threads during this backend's calls only (PyTorch's setting is process-wide, so it
    is restored after each call); None leaves PyTorch's own choice.
    """

    name = "torch"

    def __init__(self, model, threads: int | None = None):
        # Imported here: this module is also the onnx path, which must not pay for (or need) torch.
        from digitscan.models.architectures import fuse_for_inference
        from digitscan.models.inference import infer

        self.model = fuse_for_inference(model)
        self.threads = threads
        self._infer = infer

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        if not self.threads:
            return self._infer(self.model, inputs, INFER_BATCH).numpy()
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._infer(self.model, inputs, INFER_BATCH).numpy()
        finally:
            torch.set_num_threads(previous)


class OnnxSession:
    """An onnxruntime CPU session over a self-contained ONNX file or its bytes, refused with one CheckpointError
    line when it keeps data in other files or does not load. A shipped file (in the package's weights folder) must
    match the sha256 recorded beside it instead."""

    name = "onnx"

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise CheckpointError(f"{model}: no such model file")
        # Read once: the bytes checked are the bytes run (a file swapped after the check cannot slip through).
        data = model if isinstance(model, bytes) else Path(model).read_bytes()
        where = "ONNX model" if isinstance(model, bytes) else str(model)
        if not isinstance(model, bytes) and is_shipped(Path(model)):
            # The bytes `digitscan export` wrote, which hold no external data (tests/test_onnx_external_data.py checks
            # every shipped file): the digest is the check, and a one-digit start skips loading protobuf to parse them.
            check_recorded(Path(model), data)
        else:
            refuse_external_data(data, where)
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001  (onnxruntime raises its own types: InvalidProtobuf, Fail, ...)
            raise CheckpointError(f"{where}: not a loadable ONNX model ({one_line(exc)[:300]})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.num_classes = self.session.get_outputs()[0].shape[-1]

    def metadata(self, where: str) -> dict:
        """The digitscan self-description stored in the model's metadata_props, checked; `where` names the file."""
        props = self.session.get_modelmeta().custom_metadata_map
        if ONNX_META_KEY not in props:
            raise CheckpointError(f"{where}: ONNX model without digitscan metadata (export it with `digitscan export`)")
        meta = parse_meta(props[ONNX_META_KEY], where)
        validate_meta(meta, where, num_outputs=self.num_classes if isinstance(self.num_classes, int) else None)
        return meta


class OnnxBackend(OnnxSession):
    """An exported digitscan digit model: input "input" (B, 1, 28, 28), output "logits" (B, classes)."""

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs)
        x = x.astype(np.float32) / np.float32(255) if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
        x = x.reshape(len(x), 1, IMAGE_SIZE, IMAGE_SIZE)  # (N, 1, 28, 28), as evaluate.to_input gives PyTorch
        if len(x) == 0:
            return np.empty((0, self.num_classes), np.float32)
        return np.concatenate([self.session.run(None, {self.input_name: x[i:i + INFER_BATCH]})[0]
                               for i in range(0, len(x), INFER_BATCH)])


class OnnxEnsembleBackend:
    """Several exported digit models averaged over one-pixel shifts of the input, as models.architectures.Ensemble
    does in PyTorch: the mean of every member's calibrated probabilities (softmax(logits / temperature)) over every
    shift, returned as log-probabilities. The shipped ensemble runs this way on its members' own ONNX files (one
    file per member: no graph holds three copies of the weights)."""

    name = "onnx"

    def __init__(self, members: list[OnnxBackend], temperatures: list[float], shifts):
        self.members, self.temperatures, self.shifts = members, temperatures, [tuple(s) for s in shifts]
        self.num_classes = members[0].num_classes

    def __call__(self, inputs: np.ndarray) -> np.ndarray:
        x = np.asarray(inputs).reshape(len(inputs), IMAGE_SIZE, IMAGE_SIZE)  # each member scales uint8 inputs itself
        if len(x) == 0:
            return np.empty((0, self.num_classes), np.float32)
        shifted = np.concatenate([np.roll(x, shift, axis=(1, 2)) for shift in self.shifts])  # (S * N, 28, 28)
        total = np.zeros((len(x), self.num_classes), np.float64)
        for member, temperature in zip(self.members, self.temperatures):
            logits = member(shifted).astype(np.float64).reshape(len(self.shifts), len(x), -1)
            total += softmax((logits / temperature).reshape(-1, logits.shape[-1])).reshape(logits.shape).sum(axis=0)
        mean = total / (len(self.members) * len(self.shifts))
        return np.log(np.maximum(mean, 1e-12)).astype(np.float32)


def load_onnx_ensemble(paths: list[Path], threads: int | None = None) -> tuple[OnnxEnsembleBackend, dict]:
    """The ensemble of these exported digit models over TTA_SHIFTS, and its self-description (ensemble_meta)."""
    members = [OnnxBackend(path, threads) for path in paths]
    metas = [member.metadata(str(path)) for member, path in zip(members, paths)]
    meta = ensemble_meta(metas, [Path(p).name for p in paths], TTA_SHIFTS)
    backend = OnnxEnsembleBackend(members, [float(m.get("temperature", 1.0)) for m in metas], TTA_SHIFTS)
    return backend, meta


class OnnxLineBackend(OnnxSession):
    """An exported line reader: a strip (32, W) in [0, 1] -> log-probabilities (W / 4, classes), blank last."""

    def __call__(self, strip: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(strip, np.float32)[None, None]  # (1, 1, 32, W)
        return self.session.run(None, {self.input_name: x})[0][0]  # (T, classes)


class TorchLineBackend:
    """The line reader's PyTorch module behind the same call as OnnxLineBackend (training and --backend torch)."""

    name = "torch"

    def __init__(self, model):
        self.model = model.eval()

    def __call__(self, strip: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(np.ascontiguousarray(strip, np.float32))[None, None]).numpy()[0]


def refuse_external_data(data: bytes, where: str) -> None:
    """Refuse, with one CheckpointError line, an ONNX model that keeps any tensor's bytes in another file.

    onnxruntime reads such "external data" at session creation, and releases allowed by our declared range read
    `../../../etc/passwd` or an absolute path and hand the bytes to the graph, which returns them through the
    scores. digitscan's own exports never use external data, so any is refused, wherever the tensor sits
    (initializer, sparse initializer, Constant attribute, subgraph, function, training graph), before onnxruntime
    opens anything: the bytes are parsed as they are, which reads no other file.
    """
    schema = _onnx_schema()
    try:
        proto = schema.ModelProto.FromString(data)
    except Exception as exc:  # noqa: BLE001  (protobuf's DecodeError, or anything a damaged file raises)
        raise CheckpointError(f"{where}: not a loadable ONNX model ({one_line(exc)[:300]})") from None
    for tensor in _all_tensors(proto):
        if tensor.data_location == schema.TensorProto.EXTERNAL or len(tensor.external_data):
            location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "?")
            raise CheckpointError(f"{where}: tensor {tensor.name[:80]!r} keeps its data in another file "
                                  f"({location[:120]!r}); digitscan runs only self-contained ONNX models, as "
                                  f"`digitscan export` writes them")


@functools.cache
def _onnx_schema():
    """ONNX's protobuf classes (ModelProto, TensorProto, ...). The onnx package generates them in onnx_ml_pb2.py,
    which needs only google.protobuf; it is loaded here without `import onnx`, which costs over a second (ml_dtypes
    and the rest) that a prediction would pay for one parse. Falls back to the package if that file ever moves."""
    spec = importlib.util.find_spec("onnx")  # locates the package without running its __init__
    generated = Path(spec.origin).parent / "onnx_ml_pb2.py" if spec and spec.origin else None
    if generated is None or not generated.is_file() or "onnx.onnx_ml_pb2" in sys.modules:
        from onnx import onnx_ml_pb2

        return onnx_ml_pb2
    loader_spec = importlib.util.spec_from_file_location("digitscan._onnx_ml_pb2", generated)
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def _all_tensors(proto) -> Iterator:
    """Every TensorProto anywhere in a parsed ONNX model: a walk over all its set message fields, so no place a
    tensor can hide (sparse values and indices, attributes, nested graphs) is missed. Iterative, so a graph nested
    thousands of levels deep cannot exhaust Python's recursion limit."""
    from google.protobuf.message import Message

    stack = [proto]
    while stack:
        message = stack.pop()
        if message.DESCRIPTOR.full_name == "onnx.TensorProto":
            yield message
        for field, value in message.ListFields():
            if field.message_type is None:  # a number, string or bytes: nothing nested
                continue
            if isinstance(value, Message):
                stack.append(value)
            else:  # a repeated field of messages
                stack.extend(value)


def is_onnx_path(path: str | os.PathLike | None) -> bool:
    return path is not None and Path(path).suffix.lower() == ".onnx"


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of (N, classes) logits, shifted by the row maximum so exp never overflows."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
