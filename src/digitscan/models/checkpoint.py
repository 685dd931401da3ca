"""Self-describing checkpoints: safetensors weights with the model's recipe stored as JSON in the file header.

`save_checkpoint(path, model, meta)` writes atomically; `load_checkpoint(path)` rebuilds and validates the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from digitscan.constants import TTA_SHIFTS
from digitscan.errors import CheckpointError
from digitscan.files import atomic_write
from digitscan.models.architectures import LINE_READERS, REGISTRY, Ensemble, build_model
from digitscan.models.metadata import ensemble_meta, parse_meta, validate_meta
from digitscan.models.shipped import (  # noqa: F401  (re-exported: training and tests find the shipped files here)
    SHIPPED_NAME,
    check_recorded,
    is_shipped,
    recorded_sha256,
    sha256_file,
    shipped_ensemble_paths,
    shipped_path,
    weights_dir,
)

FORMAT = "digitscan-checkpoint"
FORMAT_VERSION = 1
META_KEY = "digitscan"  # key of the JSON document in the safetensors header's __metadata__


@dataclass
class Checkpoint:
    model: nn.Module
    meta: dict
    path: Path

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: dict) -> Path:
    """Write weights + metadata to `path` via a temporary file, so a failure leaves no half checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **meta}
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_write(path) as temporary:
        save_file(tensors, str(temporary), metadata={META_KEY: json.dumps(meta)})
    return path


def read_meta(path: Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a safetensors file ({exc})") from None
    if META_KEY not in header:
        raise CheckpointError(f"{path}: safetensors file without digitscan metadata")
    meta = parse_meta(header[META_KEY], path)
    _check_format(path, meta)
    validate_meta(meta, path)
    return meta


def _check_format(path: Path, meta: dict) -> None:
    """What only a digitscan checkpoint file carries: its format, version and a known architecture."""
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: metadata does not describe a {FORMAT}")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {meta.get('version')!r} is not {FORMAT_VERSION}")
    if meta.get("arch") not in REGISTRY and meta.get("arch") not in LINE_READERS:
        known = ", ".join([*REGISTRY, *LINE_READERS])
        raise CheckpointError(f"{path}: unknown architecture {meta.get('arch')!r}; known: {known}")


def load_checkpoint(path: str | os.PathLike | None = None, *, verify_sha256: bool | None = None) -> Checkpoint:
    """Load a checkpoint (the shipped one by default), verifying metadata, tensor names and shapes.

    Only safetensors is ever read: no pickle, so a hostile model file cannot run code. Shipped weights (and any
    file loaded with verify_sha256=True) must also match the sha256 recorded beside them.
    """
    path = shipped_path() if path is None else Path(path)
    if verify_sha256 is None:
        verify_sha256 = is_shipped(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file")
    if verify_sha256:
        check_recorded(path)
    meta = read_meta(path)
    expected = _expected_tensors(path, meta)
    stored = _stored_tensors(path)
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: tensors do not match {meta['arch']!r}: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    outputs = _output_count(expected, stored)
    if outputs is not None:
        validate_meta(meta, path, num_outputs=outputs)
    for name, (shape, dtype) in expected.items():
        if stored[name][0] != shape:
            raise CheckpointError(f"{path}: tensor {name} has shape {stored[name][0]}, {meta['arch']!r} needs {shape}")
        # A float tensor relabelled I32 in the header has the same size and shape; loading would convert its bits.
        if stored[name][1] != dtype:
            raise CheckpointError(f"{path}: tensor {name} is stored as {stored[name][1]}, {meta['arch']!r} needs "
                                  f"{dtype}")
    # Only now, with every shape and dtype known to match the file's own tensors, is any memory given to the model.
    model = _build(path, meta)
    tensors = load_file(str(path))
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise CheckpointError(f"{path}: tensor {name} holds NaN or infinite values")
    _refuse_negative_variances(path, model, tensors)
    model.load_state_dict(tensors)
    model.eval()
    return Checkpoint(model=model, meta=meta, path=path)


def _output_count(expected: dict, stored: dict[str, tuple[tuple[int, ...], str]]) -> int | None:
    """How many scores the stored weights produce: the length of the architecture's last tensor (the output
    layer's bias), when it is one-dimensional."""
    shape = stored[list(expected)[-1]][0]
    return shape[0] if len(shape) == 1 else None


def _refuse_negative_variances(path: Path, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """A BatchNorm divides by sqrt(running_var + eps): a negative variance makes that NaN for every input."""
    for prefix, module in model.named_modules():
        name = f"{prefix}.running_var" if prefix else "running_var"
        if isinstance(module, nn.modules.batchnorm._NormBase) and name in tensors and (tensors[name] < 0).any():
            raise CheckpointError(f"{path}: tensor {name} holds negative variances (a BatchNorm's running "
                                  f"variance is never below 0)")


def _build(path: Path, meta: dict) -> nn.Module:
    try:
        if meta["arch"] in LINE_READERS:
            return LINE_READERS[meta["arch"]](num_classes=len(meta["classes"]), **meta.get("arch_kwargs", {}))
        return build_model(meta["arch"], num_classes=len(meta["classes"]), **meta.get("arch_kwargs", {}))
    except (TypeError, ValueError, RuntimeError) as exc:  # unknown keyword, wrong type, negative size...
        raise CheckpointError(f"{path}: architecture arguments do not fit {meta['arch']!r} ({exc})") from None


# safetensors' names of the dtypes a model's state_dict holds (its header says "F32", PyTorch says torch.float32).
SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
                      torch.uint8: "U8", torch.bool: "BOOL"}


def _expected_tensors(path: Path, meta: dict) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, safetensors dtype) of the tensors the metadata's architecture needs, without allocating them:
    the model is built on PyTorch's meta device, so arguments asking for a billion-parameter layer cost nothing
    before they are refused."""
    with torch.device("meta"):
        model = _build(path, meta)
    return {name: (tuple(tensor.shape), SAFETENSORS_DTYPES.get(tensor.dtype, str(tensor.dtype)))
            for name, tensor in model.state_dict().items()}


def _stored_tensors(path: Path) -> dict[str, tuple[tuple[int, ...], str]]:
    """Name -> (shape, dtype) of the tensors in the file, read from its header only."""
    with safe_open(str(path), framework="pt") as f:
        return {name: (tuple(f.get_slice(name).get_shape()), f.get_slice(name).get_dtype()) for name in f.keys()}


def load_ensemble(paths: list[str | os.PathLike] | None = None, *, tta: bool = True) -> Checkpoint:
    """Several checkpoints averaged as one model (the shipped ensemble by default), each also over one-pixel shifts
    of the input when tta is set; meta is the first member's."""
    paths = [Path(p) for p in paths] if paths else shipped_ensemble_paths()
    members = [load_checkpoint(p) for p in paths]
    shifts = TTA_SHIFTS if tta else ((0, 0),)
    meta = ensemble_meta([m.meta for m in members], [str(m.path) for m in members], shifts)
    model = Ensemble([m.model for m in members], shifts,
                     [float(m.meta.get("temperature", 1.0)) for m in members]).eval()
    return Checkpoint(model=model, meta=meta, path=members[0].path)
