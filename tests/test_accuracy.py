"""The shipped model's accuracy on the real MNIST test set: the number the README promises."""

import pytest

from digitscan.models.architectures import SHIPPED_ARCH
from digitscan.models.checkpoint import load_checkpoint, load_ensemble, shipped_ensemble_paths
from digitscan.models.inference import infer
from digitscan.training.evaluate import metrics

# As counts of the 10,000 test images: a float32 mean of 9,960 hits is 0.99599999, not 0.996.
SHIPPED_MIN_CORRECT = 9_960  # 99.6 %
ENSEMBLE_MIN_CORRECT = 9_970  # 99.70 % (measured 99.70 %, the bar itself: docs/accuracy-and-speed.md)


def correct(result: dict) -> int:
    return round(result["accuracy"] * result["n"])


@pytest.mark.slow
def test_shipped_model_accuracy(mnist_test):
    images, labels = mnist_test
    checkpoint = load_checkpoint()
    assert checkpoint.meta["arch"] == SHIPPED_ARCH
    result = metrics(infer(checkpoint.model, images), labels)
    assert result["n"] == 10_000
    assert correct(result) >= SHIPPED_MIN_CORRECT, result["accuracy"]


@pytest.mark.slow
def test_shipped_ensemble_accuracy(mnist_test):
    images, labels = mnist_test
    assert len(shipped_ensemble_paths()) >= 3
    result = metrics(infer(load_ensemble().model, images), labels)
    assert correct(result) >= ENSEMBLE_MIN_CORRECT, result["accuracy"]


def test_shipped_checkpoint_describes_how_it_was_made():
    meta = load_checkpoint().meta
    assert meta["train_config"]["arch"] == SHIPPED_ARCH
    assert meta["data"]["sha256"]["train-images-idx3-ubyte"].startswith("ba891046")
    assert 0.3 < meta["temperature"] < 3
    assert meta["metrics"]["val_accuracy"] > 0.99
