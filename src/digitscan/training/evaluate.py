"""Evaluation returns data: `metrics` turns logits and labels into numbers, `misclassified` picks the errors,
`fit_temperature` calibrates; digitscan.models.inference.infer makes the logits. Nothing here prints."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def metrics(logits: torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int | None = None) -> dict:
    """Loss, accuracy, per-class precision/recall/F1 and the confusion matrix (rows = true class)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support  # lazy: ~1 s off `predict` start-up

    labels = torch.as_tensor(labels).long()
    num_classes = num_classes or logits.shape[1]
    pred = logits.argmax(1)
    y, p = labels.numpy(), pred.numpy()
    classes = list(range(num_classes))
    precision, recall, f1, support = precision_recall_fscore_support(y, p, labels=classes, zero_division=0)
    return {
        "n": int(len(y)),
        "loss": float(F.cross_entropy(logits, labels)),
        "accuracy": float((pred == labels).float().mean()),
        "per_class": [
            {"class": c, "precision": float(precision[c]), "recall": float(recall[c]),
             "f1": float(f1[c]), "support": int(support[c])}
            for c in classes
        ],
        "confusion_matrix": confusion_matrix(y, p, labels=classes).tolist(),
    }


def fit_temperature(logits: torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Temperature T minimizing the NLL of softmax(logits / T) on held-out data (Guo et al., 2017).

    A 1-D problem: a log-spaced grid then a finer grid around the best value is exact enough and cannot diverge.
    """
    labels = torch.as_tensor(labels).long()

    def nll(t: float) -> float:
        return float(F.cross_entropy(logits / t, labels))

    grid = np.logspace(-1.5, 1.5, 61)
    best = min(grid, key=nll)
    fine = np.linspace(best / 1.12, best * 1.12, 41)
    return float(min(fine, key=nll))


def misclassified(logits: torch.Tensor, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices, true and predicted labels and confidences of the wrong predictions, most confident first."""
    probs = logits.softmax(1)
    confidence, pred = probs.max(1)
    labels = torch.as_tensor(labels).long()
    wrong = (pred != labels).nonzero().flatten()
    order = wrong[confidence[wrong].argsort(descending=True)]
    return {"index": order.numpy(), "true": labels[order].numpy(), "pred": pred[order].numpy(),
            "confidence": confidence[order].numpy()}
