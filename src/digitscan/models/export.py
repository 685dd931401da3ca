"""ONNX export: a checkpoint -> a self-describing .onnx model with a dynamic batch axis, checked and parity-verified.

`export_onnx(load_checkpoint(), "digitscan.onnx")` -> ExportResult; on the command line `digitscan export --out FILE`.
A line reader (digitscan.reading.line_reader) exports the same way, with the strip's width dynamic too;
`export_shipped()` writes the ONNX files the package runs by default (scripts/export_shipped.py).
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

from digitscan.constants import IMAGE_SIZE, LINE_HEIGHT, LINE_STRIDE
from digitscan.errors import ExportError
from digitscan.files import write_bytes_atomically
from digitscan.image.prepare import to_model_input
from digitscan.models.architectures import LINE_READERS, fuse_for_inference
from digitscan.models.backends import (
    ONNX_INPUT,
    ONNX_META_KEY,
    ONNX_OUTPUT,
    OnnxBackend,
    OnnxLineBackend,
    TorchLineBackend,
    softmax,
)
from digitscan.models.checkpoint import Checkpoint, load_checkpoint, sha256_file
from digitscan.models.shipped import (
    READER_NAME,
    READER_ONNX,
    onnx_export_of,
    shipped_ensemble_paths,
    weights_dir,
    write_record,
)
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
    line_reader = checkpoint.meta.get("arch") in LINE_READERS
    proto = trace_to_onnx(model, opset, line_reader)
    meta = onnx_meta(checkpoint, opset)
    proto.doc_string = (f"digitscan {meta['arch']} model: {ONNX_INPUT} (batch, 1, 32, width) -> {ONNX_OUTPUT} "
                        f"(batch, width / 4, classes) log-probabilities" if line_reader else
                        f"digitscan {meta['arch']} model: {ONNX_INPUT} (batch, 1, 28, 28) -> "
                        f"{ONNX_OUTPUT} (batch, classes)")
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_META_KEY, json.dumps(meta)
    onnx.checker.check_model(proto, full_check=True)  # full_check: also strict shape inference
    data = proto.SerializeToString()
    if line_reader:
        diff = check_line_parity(model, data)
    else:
        diff = check_parity(model, data, float(meta.get("temperature", 1.0)))
    result = ExportResult(model=data, meta=meta, max_prob_diff=diff)
    if out is not None:
        result.path = write_bytes_atomically(Path(out), data)
    return result


def trace_to_onnx(model: torch.nn.Module, opset: int, line_reader: bool = False):
    """The torch.export-based exporter (dynamo=True), with the batch dimension left dynamic (and a line reader's
    width, a whole number of 4-column frames)."""
    if line_reader:
        example = torch.rand(2, 1, LINE_HEIGHT, 24 * LINE_STRIDE)  # batch 2: a batch of 1 could be specialized away
        dynamic = ({0: torch.export.Dim("batch"), 3: LINE_STRIDE * torch.export.Dim("frames", min=2, max=4096)},)
    else:
        example = torch.rand(2, 1, IMAGE_SIZE, IMAGE_SIZE)  # batch 2: a batch of 1 could be specialized away
        dynamic = ({0: torch.export.Dim("batch")},)
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms" and the like
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # deprecations inside torch.export, not ours to fix
            warnings.simplefilter("ignore", DeprecationWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                        dynamic_shapes=dynamic, verbose=False)
    finally:
        exporter_log.setLevel(level)
    return program.model_proto


def onnx_meta(checkpoint: Checkpoint, opset: int) -> dict:
    """The checkpoint's own metadata (classes, temperature, preprocess, reject_threshold, arch, ...) plus provenance."""
    # The decision fields are spelled out even where the checkpoint relies on defaults: other runtimes read them.
    meta = {"temperature": 1.0, "reject_threshold": 0.0, "preprocess": "robust", **checkpoint.meta}
    provenance = {"source": checkpoint.path.name, "source_sha256": sha256_file(checkpoint.path), "opset": opset,
                  "torch": torch.__version__, "digitscan": version("digitscan"),
                  "output": "log-probabilities per 4-column frame, blank last" if checkpoint.meta.get("arch") in
                  LINE_READERS else "logits; probabilities = softmax(logits / temperature)"}
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




def line_parity_strips() -> list[np.ndarray]:
    """Fixed strips for the line reader's parity check: numbers of 1 to 8 synthetic pen digits side by side, a blank
    strip and one of uniform noise; widths are whole frames."""
    strips = []
    for n in (1, 3, 5, 8):
        digits = np.hstack([stroke_digit((n + k) % 10, seed=k, size=LINE_HEIGHT) for k in range(n)])
        width = -(-(digits.shape[1] + 12) // LINE_STRIDE) * LINE_STRIDE
        strip = np.zeros((LINE_HEIGHT, width), np.float32)
        strip[:, 6:6 + digits.shape[1]] = digits / 255.0
        strips.append(strip)
    noise = np.random.default_rng(0).random((LINE_HEIGHT, 96), dtype=np.float32)
    return [*strips, np.zeros((LINE_HEIGHT, 64), np.float32), noise]


def check_line_parity(model: torch.nn.Module, onnx_model: bytes) -> float:
    """Max |p_onnx - p_torch| over every frame's class probabilities of line_parity_strips(); ExportError beyond
    PARITY_TOLERANCE or when the greedy reading differs."""
    torch_reader, onnx_reader = TorchLineBackend(model), OnnxLineBackend(onnx_model)
    diff = 0.0
    for strip in line_parity_strips():
        expected, got = np.exp(torch_reader(strip)), np.exp(onnx_reader(strip))  # (T, classes)
        if got.shape != expected.shape or not np.array_equal(got.argmax(1), expected.argmax(1)):
            raise ExportError(f"onnxruntime reads a strip of width {strip.shape[1]} differently from PyTorch; "
                              f"nothing written")
        diff = max(diff, float(np.abs(got - expected).max()))
    if diff > PARITY_TOLERANCE:
        raise ExportError(f"onnxruntime disagrees with PyTorch on the parity strips: max probability difference "
                          f"{diff:.2e} (tolerance {PARITY_TOLERANCE:.0e}); nothing written")
    return diff


def export_shipped(folder: str | os.PathLike | None = None) -> dict[str, ExportResult]:
    """The ONNX files the package runs by default, exported from the shipped safetensors into `folder` (the
    package's weights folder by default), each with its sha256 recorded beside it: every member of the shipped
    ensemble (the shipped model first; NAME.onnx for NAME.safetensors) and the line reader. File name -> result."""
    folder = Path(folder) if folder is not None else weights_dir()
    sources = {onnx_export_of(path).name: load_checkpoint(path) for path in shipped_ensemble_paths()}
    sources[READER_ONNX] = load_checkpoint(weights_dir() / READER_NAME)
    results = {}
    for name, checkpoint in sources.items():
        results[name] = export_onnx(checkpoint, folder / name)
        write_record(results[name].path)
    return results
