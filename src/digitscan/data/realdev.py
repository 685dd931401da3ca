"""Real handwriting by third parties (../shared/data/realdev): USPS, CVL and optdigits digits, with a writer-disjoint
train/validation/test split.

`load_realdev("cvl_train", "test")` -> RealdevSet(name, images=[(H, W) float32 grey], labels, groups).
Each folder holds one PNG per sample and a `manifest.csv` (columns file,label); every image goes through the one
decoder, digitscan.image.decode.decode_image, and is returned as decoded grey (1.0 = white, native size and
polarity), since sizes (16x16, 28x28, 32x32) and polarities differ between the sets.

The split, deterministic and writer-disjoint as far as the data allows, in three parts: every SPLIT_EVERY-th group
(the 5th, 10th, ...) is `test`, the one before each of those is `validation`, the rest is `train`.
- cvl_train: groups are writers, the second field of `cvl_train_<label>-<writer>-<a>-<b>.png`, sorted, so no writer
  is on two sides.
- usps_train and optdigits_train carry no writer IDs. Neighbouring samples often come from the same writer (an
  envelope's ZIP code, a form's boxes are stored one after another), so a random split would put one person's
  digits on both sides and flatter the scores. They are split in contiguous blocks of BLOCK samples by index (the
  number in the file name, i.e. the manifest's order). Only the writers at the block boundaries can straddle it.
`train` is what fine-tuning learns from, `validation` what it chooses with (the not-a-digit threshold), `test` what
the benchmarks report; nothing is tuned on `test`.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from digitscan.errors import DatasetError, ImageError
from digitscan.image.decode import decode_image

REALDEV_SETS = ("usps_train", "cvl_train", "optdigits_train")
REALDEV_SPLITS = ("train", "validation", "test", "all")
MANIFEST = "manifest.csv"
SPLIT_EVERY = 5  # one writer (CVL) or one block (USPS, optdigits) in five is test, one in five validation
BLOCK = 100  # samples per contiguous block of the sets without writer IDs
_CVL_WRITER = re.compile(r"^cvl_train_\d+-(\d+)-")
_INDEX = re.compile(r"_(\d+)\.png$")


@dataclass
class RealdevSet:
    """Decoded images of one realdev folder (one split of it), with their labels and writer/group ids."""

    name: str  # the folder's name, e.g. "cvl_train"
    split: str  # "train", "validation", "test" or "all"
    images: list[np.ndarray]  # (H, W) float32 grey in [0, 1], 1.0 = white, as decode_image returns them
    labels: np.ndarray  # int64 (N,), digits 0-9
    groups: np.ndarray  # str (N,): the writer ID (cvl) or "block-K" (usps, optdigits), what the split keeps apart
    files: list[str]  # file names, in manifest order


def realdev_dir(root: str | os.PathLike | None = None) -> Path:
    """The realdev folder: `root`, else $DIGITSCAN_REALDEV, else ../shared/data/realdev beside the repository."""
    if root is not None:
        return Path(root).expanduser()
    if env := os.environ.get("DIGITSCAN_REALDEV"):
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "realdev"


def load_realdev(name: str, split: str = "all", root: str | os.PathLike | None = None) -> RealdevSet:
    """One realdev folder's `split` (see the module docstring) decoded; DatasetError for a missing or corrupt one."""
    if name not in REALDEV_SETS:
        raise ValueError(f"unknown realdev set {name!r}; valid sets: {', '.join(REALDEV_SETS)}")
    if split not in REALDEV_SPLITS:
        raise ValueError(f"split must be one of {REALDEV_SPLITS}, got {split!r}")
    folder = realdev_dir(root) / name
    files, labels = read_manifest(folder)
    groups = np.array(split_groups(name, files))
    chosen = np.arange(len(files)) if split == "all" else np.flatnonzero(split_of(groups) == split)
    images = []
    for index in chosen:
        try:
            images.append(decode_image(folder / files[index]))
        except ImageError as error:
            raise DatasetError(f"{folder / files[index]}: {error}") from None
    return RealdevSet(name, split, images, labels[chosen], groups[chosen], [files[i] for i in chosen])


def read_manifest(folder: Path) -> tuple[list[str], np.ndarray]:
    """(file names, int64 labels) from folder/manifest.csv, checked: digits 0-9, plain file names, no repeats."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise DatasetError(f"{folder}: realdev folder does not exist (set $DIGITSCAN_REALDEV or pass its location)")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read the manifest: {error}") from None
    if not rows or rows[0] != ["file", "label"]:
        raise DatasetError(f"{path}: expected the header 'file,label'")
    files, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not row[1].isdigit() or int(row[1]) > 9 or Path(row[0]).name != row[0] or not row[0]:
            raise DatasetError(f"{path}, line {line}: expected 'file,label' with a plain file name and a digit 0-9")
        files.append(row[0])
        labels.append(int(row[1]))
    if not files:
        raise DatasetError(f"{path}: the manifest lists no files")
    if len(set(files)) != len(files):
        raise DatasetError(f"{path}: a file is listed twice")
    return files, np.array(labels, np.int64)


def split_groups(name: str, files: list[str]) -> list[str]:
    """What the split keeps on one side: the writer ID for cvl_train, the index block for the others."""
    pattern = _CVL_WRITER if name == "cvl_train" else _INDEX
    groups = []
    for file in files:
        match = pattern.search(file)
        if match is None:
            raise DatasetError(f"{name}/{file}: the file name does not carry the expected "
                               f"{'writer ID' if name == 'cvl_train' else 'sample index'}")
        groups.append(match.group(1) if name == "cvl_train" else f"block-{int(match.group(1)) // BLOCK}")
    return groups


def split_of(groups: np.ndarray) -> np.ndarray:
    """(N,) str: "train", "validation" or "test" per sample, by its group's position in sorted order (numeric for
    blocks): the last of every SPLIT_EVERY groups is test, the one before it validation."""
    def order(group: str):
        return int(group.rsplit("-", 1)[-1]) if group.startswith("block-") else group

    unique = sorted(set(groups.tolist()), key=order)
    names = {group: "test" if position % SPLIT_EVERY == SPLIT_EVERY - 1 else
             "validation" if position % SPLIT_EVERY == SPLIT_EVERY - 2 else "train"
             for position, group in enumerate(unique)}
    return np.array([names[group] for group in groups.tolist()])
