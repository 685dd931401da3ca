"""The one validator of a model's self-description, shared by checkpoints (models.checkpoint) and exported ONNX
files (models.backends). Torch-free, so the ONNX path stays light."""

from __future__ import annotations

import json
import math

from digitscan.constants import MAX_CLASS_NAME, MAX_CLASSES, PREPROCESS_MODES
from digitscan.errors import CheckpointError


def parse_meta(text: str, where) -> dict:
    """The JSON self-description as stored in a model file; one CheckpointError line when it is not JSON."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:  # RecursionError: nested thousands of levels deep
        raise CheckpointError(f"{where}: metadata is not valid JSON ({type(exc).__name__})") from None


def validate_meta(meta, where, *, num_outputs: int | None = None) -> None:
    """The one check of a model's self-description, for checkpoints and exported ONNX files alike: every field the
    decision rule and preprocessing read must make sense, or loading stops with one CheckpointError line naming
    `where` (the file). num_outputs: the logits the weights or graph produce, when known.

    classes: 2..MAX_CLASSES distinct printable names of 1..MAX_CLASS_NAME characters (one per output);
    temperature: a finite number > 0; reject_threshold: a number in [0, 1]; reject_logit_threshold (optional): a
    finite number; preprocess: one of PREPROCESS_MODES;
    arch_kwargs: an object. Booleans are not numbers here.
    """
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: metadata must be a JSON object")
    classes = meta.get("classes")
    if (not isinstance(classes, list) or not 2 <= len(classes) <= MAX_CLASSES
            or not all(isinstance(c, str) and 0 < len(c) <= MAX_CLASS_NAME and c.isprintable() for c in classes)
            or len(set(classes)) != len(classes)):
        raise CheckpointError(f"{where}: 'classes' must be a list of 2..{MAX_CLASSES} distinct names of "
                              f"1..{MAX_CLASS_NAME} printable characters")
    if num_outputs is not None and num_outputs != len(classes):
        raise CheckpointError(f"{where}: the model outputs {num_outputs} scores but the metadata names "
                              f"{len(classes)} classes")
    temperature = meta.get("temperature", 1.0)
    if not _is_number(temperature) or not math.isfinite(temperature) or temperature <= 0:
        raise CheckpointError(f"{where}: metadata 'temperature' must be a positive number, got {temperature!r}")
    threshold = meta.get("reject_threshold", 0.0)
    if not _is_number(threshold) or not 0 <= threshold <= 1:  # NaN fails both comparisons
        raise CheckpointError(f"{where}: metadata 'reject_threshold' must lie in [0, 1], got {threshold!r}")
    logit_threshold = meta.get("reject_logit_threshold")
    if logit_threshold is not None and (not _is_number(logit_threshold) or not math.isfinite(logit_threshold)):
        raise CheckpointError(f"{where}: metadata 'reject_logit_threshold' must be a finite number, "
                              f"got {logit_threshold!r}")
    if meta.get("preprocess", PREPROCESS_MODES[0]) not in PREPROCESS_MODES:
        raise CheckpointError(f"{where}: metadata 'preprocess' must be one of {', '.join(PREPROCESS_MODES)}, "
                              f"got {str(meta.get('preprocess'))[:40]!r}")
    if not isinstance(meta.get("arch_kwargs", {}), dict):
        raise CheckpointError(f"{where}: 'arch_kwargs' must be an object")


def ensemble_meta(member_metas: list[dict], names: list[str], shifts) -> dict:
    """The self-description of several members averaged over input shifts (models.checkpoint.load_ensemble in
    PyTorch, models.backends.OnnxEnsembleBackend on onnxruntime): the first member's, less its logit threshold.

    The members' probabilities are calibrated one by one (each its own temperature), so their mean needs no further
    temperature; it is a probability, not a logit, so the not-a-digit rule is the first member's threshold on the
    probability. Members whose classes differ cannot be averaged: one CheckpointError line naming the member.
    """
    for meta, name in zip(member_metas[1:], names[1:]):
        if meta.get("classes") != member_metas[0].get("classes"):
            raise CheckpointError(f"{name}: classes differ from {names[0]}; cannot ensemble them")
    meta = {key: value for key, value in member_metas[0].items() if key != "reject_logit_threshold"}
    return {**meta, "ensemble": list(names), "tta_shifts": [list(s) for s in shifts], "temperature": 1.0}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
