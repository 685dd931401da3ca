"""Shared fixtures: the real MNIST folder (from $DIGITSCAN_DATA), its test split, and the shipped recognizer.

Helpers that are not fixtures live in tests/helpers/."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from digitscan.constants import MNIST_FILES

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The real MNIST folder: $DIGITSCAN_DATA, else ../shared/data/mnist next to the repository. Fails if absent."""
    folder = Path(os.environ.get("DIGITSCAN_DATA") or REPO.parent / "shared" / "data" / "mnist")
    missing = [stem for stem in MNIST_FILES.values()
               if not (folder / stem).exists() and not (folder / f"{stem}.gz").exists()]
    if missing:
        pytest.fail(f"real MNIST needed at {folder} (set DIGITSCAN_DATA): missing {missing}")
    return folder


@pytest.fixture(scope="session")
def mnist_test(mnist_dir) -> tuple[np.ndarray, np.ndarray]:
    from digitscan.data.mnist import load_mnist

    return load_mnist("test", mnist_dir)


@pytest.fixture(scope="session")
def recognizer():
    """The shipped model (and line reader), loaded once for the whole run; tests must not change it (monkeypatch
    what they need, it is undone after each test)."""
    from digitscan.recognize import Recognizer

    return Recognizer.load()
