"""Writing IDX files (LeCun's format, as MNIST ships) for tests that need a dataset folder of their own."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from digitscan.constants import MNIST_FILES

TYPE_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an array as IDX: 00 00 <type> <ndim>, big-endian uint32 dims, big-endian data."""
    header = bytes([0, 0, TYPE_CODES[array.dtype.type], array.ndim]) + np.array(array.shape, ">u4").tobytes()
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)
    return path


def write_split(folder: Path, split: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(folder / (MNIST_FILES[(split, "images")] + suffix), images)
    write_idx(folder / (MNIST_FILES[(split, "labels")] + suffix), labels)
