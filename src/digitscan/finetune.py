"""Fine-tuning for real-world input: photo-like digits and things that are not digits.

Filled in below: where Fashion-MNIST lives (negatives for training come from its *training* split only).
"""

from __future__ import annotations

import os
from pathlib import Path

FASHION_TRAIN_USED = 50_000  # fine-tuning draws negatives from the first 50,000 training images; --dev uses the rest
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)  # the Debian package dataset-fashion-mnist


def fashion_dir(split: str = "train") -> Path:
    """The folder holding Fashion-MNIST's `split`: $DIGITSCAN_FASHION_DATA, ../shared/data/fashion-mnist (test
    split only), or the Debian package's folder."""
    stem = "train-images-idx3-ubyte" if split == "train" else "t10k-images-idx3-ubyte"
    candidates = [Path(p) for p in [os.environ.get("DIGITSCAN_FASHION_DATA")] if p]
    candidates += [Path.cwd().parent / "shared" / "data" / "fashion-mnist", *FASHION_DIRS]
    for folder in candidates:
        if any((folder / (stem + suffix)).is_file() for suffix in ("", ".gz")):
            return folder
    raise FileNotFoundError(f"Fashion-MNIST {split} split not found in {', '.join(map(str, candidates))}; "
                            "set DIGITSCAN_FASHION_DATA or apt-get install dataset-fashion-mnist")
