"""The Python API: a Recognizer holds one model and turns images into predictions.

`Recognizer.load().predict("photo.jpg")` -> Prediction(digit=7, confidence=0.99, is_digit=True, ...).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from digitscan.checkpoint import Checkpoint, load_checkpoint
from digitscan.evaluate import infer
from digitscan.models import fuse_for_inference
from digitscan.preprocess import preprocess


@dataclass
class Prediction:
    digit: int | None  # None exactly when is_digit is False
    confidence: float  # calibrated probability of the top class, also when rejected
    is_digit: bool
    probabilities: list[float]
    label: str | None = None  # class name (for non-digit datasets the digit field stays None)

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["label"] is None or data["label"] == str(data["digit"]):
            data.pop("label")
        return data


class Recognizer:
    """One loaded model plus the preprocessing and rejection rule recorded in its checkpoint."""

    def __init__(self, checkpoint: Checkpoint, preprocess_mode: str | None = None):
        self.checkpoint = checkpoint
        self.model = fuse_for_inference(checkpoint.model)
        meta = checkpoint.meta
        self.classes: list[str] = meta["classes"]
        self.preprocess_mode = preprocess_mode or meta.get("preprocess", "robust")
        self.temperature = float(meta.get("temperature", 1.0))
        self.reject_threshold = float(meta.get("reject_threshold", 0.0))

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, preprocess: str | None = None) -> Recognizer:
        """Load a checkpoint file, or the shipped model when path is None."""
        return cls(load_checkpoint(path), preprocess)

    def prepare(self, image) -> np.ndarray:
        """Any supported image (path, bytes, PIL image, array) -> the (28, 28) input the model sees."""
        return preprocess(image, self.preprocess_mode)

    def predict(self, image) -> Prediction:
        return self.predict_inputs(self.prepare(image)[None])[0]

    def predict_inputs(self, inputs: np.ndarray) -> list[Prediction]:
        """Predictions for a stack of already prepared (N, 28, 28) inputs in [0, 1]."""
        logits = infer(self.model, inputs)
        probs = torch.softmax(logits / self.temperature, dim=1).numpy()
        has_ink = np.asarray(inputs).reshape(len(inputs), -1).max(axis=1) > 0
        return [self.decide(p, bool(ink)) for p, ink in zip(probs, has_ink)]

    def decide(self, probs: np.ndarray, has_ink: bool) -> Prediction:
        top = int(probs.argmax())
        confidence = float(probs[top])
        # An image without ink is never a digit, whatever the network says about an all-black input.
        accepted = has_ink and confidence >= self.reject_threshold
        label = self.classes[top]
        digit = int(label) if accepted and label.isdigit() else None
        return Prediction(digit=digit, confidence=confidence, is_digit=accepted,
                          probabilities=[float(p) for p in probs], label=label if accepted else None)

    @property
    def name(self) -> str:
        return Path(self.checkpoint.path).name
