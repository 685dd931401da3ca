"""Shared fixtures: the real MNIST folder (from $DIGITSCAN_DATA) and small synthetic images."""

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
    from digitscan.data import load_mnist

    return load_mnist("test", mnist_dir)


# The slow tests of modules that do not import pytest (the others carry @pytest.mark.slow themselves), marked here
# so that `make test-fast` leaves them out; tests/test_setup.py checks that every name still names a test.
SLOW_TESTS = {
    "test_accuracy.py": {"test_shipped_model_accuracy", "test_shipped_ensemble_accuracy"},  # all of MNIST test
    "test_cli.py": {"test_evaluate_json_and_plots", "test_compare_quick_trial_json_shape"},  # evaluate, trains 3 models
    "test_distributed.py": {"test_torchrun_two_processes_train_one_model",  # DDP: two torchrun processes
                            "test_distributed_flag_launches_torchrun_itself"},
    "test_train.py": {"test_short_run_learns_and_is_reproducible",  # two training runs
                      "test_realworld_fine_tuning_keeps_the_last_epoch"},  # fine-tuning, 3 epochs
}


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        if item.originalname in SLOW_TESTS.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
