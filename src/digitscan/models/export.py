"""ONNX export: a checkpoint -> a self-describing .onnx model with a dynamic batch axis, checked and parity-verified.

`export_onnx(load_checkpoint(), "digitscan.onnx")` -> ExportResult; on the command line `digitscan export --out FILE`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from digitscan.constants import IMAGE_SIZE
from digitscan.errors import ExportError
from digitscan.files import write_bytes_atomically
from digitscan.image.prepare import to_model_input
from digitscan.models.architectures import fuse_for_inference
from digitscan.models.backends import ONNX_INPUT, ONNX_META_KEY, ONNX_OUTPUT, OnnxBackend, softmax
from digitscan.models.checkpoint import Checkpoint, sha256_file
from digitscan.synthetic.strokes import stroke_digit

# Opset 20: what torch 2.13's exporter emits by default, and what onnxruntime has run since 1.17 (also onnxruntime-web
# and mobile builds of that age). The graph only needs Conv, Relu, MaxPool, ReduceMax, Reshape and Gemm.
DEFAULT_OPSET = 20
MIN_OPSET = 18  # the torch.export-based exporter (onnxscript's torch library) starts at opset 18
PARITY_TOLERANCE = 1e-4  # max |p_onnxruntime - p_torch| over calibrated probabilities, as the parity test demands


@dataclass
class ExportResult:
    model: bytes  # the serialized ONNX ModelProto
    meta: dict  # the self-description stored in metadata_props["digitscan"]
    max_prob_diff: float  # on the fixed parity batch: max |onnxruntime - PyTorch| over calibrated probabilities
    path: Path | None = None  # where it was written, if anywhere


def export_onnx(checkpoint: Checkpoint, out: str | os.PathLike | None = None,
                opset: int = DEFAULT_OPSET) -> ExportResult:
    """Export a checkpoint (BatchNorm folded first) to ONNX; write it to `out` atomically when given.

    The graph maps "input" float32 (batch, 1, 28, 28) in [0, 1] to "logits" float32 (batch, classes): the same
    function as the PyTorch model, so the one decision path (softmax(logits / temperature), rejection) stays in
    Recognizer and the temperature stays data in the metadata. The model is checked with onnx.checker and run on
    onnxruntime against PyTorch on a fixed batch before anything is written; an ExportError means no file.
    """
    import onnx

    if opset < MIN_OPSET:
        raise ValueError(f"opset {opset} is too old for the exporter; use {MIN_OPSET} or later")
    model = fuse_for_inference(copy.deepcopy(checkpoint.model)).cpu().eval()  # the caller's model stays untouched
    proto = trace_to_onnx(model, opset)
    meta = onnx_meta(checkpoint, opset)
    proto.doc_string = (f"digitscan {meta['arch']} model: {ONNX_INPUT} (batch, 1, 28, 28) -> "
                        f"{ONNX_OUTPUT} (batch, classes)")
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.checker.check_model(proto, full_check=True)  # full_check: also strict shape inference
    data = proto.SerializeToString()
    diff = check_parity(model, data, float(meta.get("temperature", 1.0)))
    result = ExportResult(model=data, meta=meta, max_prob_diff=diff)
    if out is not None:
        result.path = write_bytes_atomically(Path(out), data)
    return result


def trace_to_onnx(model: torch.nn.Module, opset: int):
    """The torch.export-based exporter (dynamo=True), with the batch dimension left dynamic."""
    example = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)  # batch 2: a batch of 1 could be specialized away
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" and the like
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch.export, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    finally:
        exporter_log.setLevel(level)
    return program.model_proto


def onnx_meta(checkpoint: Checkpoint, opset: int) -> dict:
    """The checkpoint's own metadata (classes, temperature, preprocess, reject_threshold, arch, ...) plus provenance."""
    # The decision fields are spelled out even where the checkpoint relies on defaults: other runtimes read them.
    meta = {"temperature": 1.0, "reject_threshold": 0.0, "preprocess": "robust", **checkpoint.meta}
    provenance = {"source": checkpoint.path.name, "source_sha256": sha256_file(checkpoint.path), "opset": opset,
                  "torch": torch.__version__, "digitscan": version("digitscan"),
                  "output": "logits; probabilities = softmax(logits / temperature)"}
    if "ensemble" in meta:  # absolute paths of this machine mean nothing elsewhere: keep names and digests
        members = [Path(p) for p in meta["ensemble"]]
        meta["ensemble"] = [p.name for p in members]
        provenance["ensemble_sha256"] = [sha256_file(p) for p in members]
    meta["onnx"] = provenance
    return meta


def parity_inputs() -> np.ndarray:
    """A small fixed batch (16, 28, 28): a synthetic pen digit of each class through the real preprocessing, a blank
    input and five of uniform noise (to exercise every logit, not only confident ones)."""
    digits = [to_model_input(stroke_digit(d, seed=d)) for d in range(10)]
    noise = np.random.default_rng(0).random((5, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return np.stack([*digits, np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32), *noise])


def check_parity(model: torch.nn.Module, onnx_model: bytes, temperature: float) -> float:
    """Max |p_onnx - p_torch| on parity_inputs(); raises ExportError beyond PARITY_TOLERANCE or on another argmax."""
    from digitscan.models.inference import infer

    inputs = parity_inputs()
    expected = softmax(infer(model, inputs).double().numpy() / temperature)
    got = softmax(OnnxBackend(onnx_model)(inputs).astype(np.float64) / temperature)
    diff = float(np.abs(got - expected).max())
    if diff > PARITY_TOLERANCE or not np.array_equal(got.argmax(1), expected.argmax(1)):
        raise ExportError(f"onnxruntime disagrees with PyTorch on the parity batch: max probability difference "
                          f"{diff:.2e} (tolerance {PARITY_TOLERANCE:.0e}); nothing written")
    return diff


