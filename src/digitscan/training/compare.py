"""The paper's comparison (Fig. 15): SVM, ANN and CNN trained on the same split and tested on MNIST test.

`compare(data=None, seed=0)` returns [{"model", "accuracy", "train_seconds"}, ...]; the CLI prints it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sklearn.decomposition import PCA
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC

from digitscan.data.mnist import load_mnist, train_val_split
from digitscan.models.inference import infer
from digitscan.training.classifier import make_config, train

VAL_SPLIT = 0.3  # the paper's split: every model trains on the same 42,000 images
SVM_PCA_COMPONENTS = 50  # RBF SVM on raw pixels takes far longer for no accuracy gain
SVM_C = 10.0


def svm_accuracy(x_train, y_train, x_test, y_test, seed: int) -> tuple[float, float]:
    """Fit PCA + RBF SVM on flattened [0, 1] pixels; returns (test accuracy, training seconds)."""
    svm = make_pipeline(PCA(SVM_PCA_COMPONENTS, random_state=seed), SVC(C=SVM_C, kernel="rbf", gamma="scale"))
    start = time.perf_counter()
    svm.fit(x_train.reshape(len(x_train), -1) / 255.0, y_train)
    seconds = time.perf_counter() - start
    accuracy = float((svm.predict(x_test.reshape(len(x_test), -1) / 255.0) == y_test).mean())
    return accuracy, seconds


def network_accuracy(arch: str, x_test, y_test, data, seed: int, progress: bool,
                     limit: int | None) -> tuple[float, float]:
    """Train a registered architecture with its recipe on the shared split; returns (test accuracy, seconds)."""
    config = make_config(arch, val_split=VAL_SPLIT, seed=seed, data=data, limit=limit)
    start = time.perf_counter()
    result = train(config, out=None, progress=progress)
    seconds = time.perf_counter() - start
    accuracy = float((infer(result.model, x_test).argmax(1).numpy() == y_test).mean())
    return accuracy, seconds


def compare(data=None, seed: int = 0, log: Callable[[str], None] = lambda _: None,
            progress: bool = True, limit: int | None = None) -> list[dict]:
    """limit: train every model on only the first N images of the split (a quick trial, not the paper's numbers)."""
    images, labels = load_mnist("train", data)
    x_test, y_test = load_mnist("test", data)
    train_idx, _ = train_val_split(len(images), VAL_SPLIT, seed)
    train_idx = train_idx[:limit]
    results = []
    log(f"SVM: PCA({SVM_PCA_COMPONENTS}) + RBF SVC on {len(train_idx):,} images ...")
    accuracy, seconds = svm_accuracy(images[train_idx], labels[train_idx], x_test, y_test, seed)
    results.append({"model": "SVM", "accuracy": accuracy, "train_seconds": round(seconds, 2)})
    log(f"SVM: test accuracy {accuracy:.4f} ({seconds:.0f} s)")
    for name, arch in (("ANN", "mlp"), ("CNN", "paper")):
        log(f"{name}: training '{arch}' with its recipe ...")
        accuracy, seconds = network_accuracy(arch, x_test, y_test, data, seed, progress, limit)
        results.append({"model": name, "accuracy": accuracy, "train_seconds": round(seconds, 2)})
        log(f"{name}: test accuracy {accuracy:.4f} ({seconds:.0f} s)")
    return results
