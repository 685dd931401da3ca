"""The datasets a model can be trained and evaluated on: MNIST, Fashion-MNIST, any IDX folder, or a folder of images.

`load_dataset("fashion-mnist", ["train"])` -> Dataset(name, classes, preprocess, train=Split(images, labels), ...).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitscan.constants import DIGIT_CLASSES, IMAGE_SIZE, MAX_CLASSES, MNIST_FILES, PREPROCESS_MODES
from digitscan.data.mnist import (
    SPLITS,
    find_file,
    idx_sha256,
    load_idx_dataset,
    load_mnist,
    mnist_digests,
    read_idx,
)
from digitscan.errors import DatasetError, ImageError
from digitscan.image.prepare import preprocess

SPEC_HELP = "mnist, fashion-mnist, idx:DIR (the four MNIST-named IDX files) or folder:DIR (one subfolder per class)"

# Fashion-MNIST (Zalando Research): the classes in label order, and the sha256 of each *decompressed* file. The
# publisher lists MD5s of its .gz files only; these digests were computed from the Debian package
# dataset-fashion-mnist and the test split in ../shared/data/fashion-mnist (identical), and match the ones other
# projects derived from archives with the publisher's MD5s.
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # where Debian's dataset-fashion-mnist installs

IDX_CLASSES_FILE = "classes.txt"  # optional in an idx: folder, one class name per line in label order
FOLDER_TEST_FRACTION = 0.2  # folder: without a test/ subfolder, this share of each class is held out as its test split


@dataclass
class Split:
    images: np.ndarray  # uint8 (N, 28, 28), bright on dark as the model sees it
    labels: np.ndarray  # int64 (N,), indices into the dataset's classes


@dataclass
class Dataset:
    """A dataset's identity (recorded in checkpoints) and the splits that were loaded."""

    name: str  # "mnist", "fashion-mnist", "idx:/abs/dir" or "folder:/abs/dir"
    classes: list[str]
    preprocess: str  # the digitscan.image.prepare mode that turns a user's image into this dataset's kind of input
    sha256: dict[str, str] = field(default_factory=dict)  # file (folder: split) -> sha256, see load_folder
    train: Split | None = None
    test: Split | None = None

    def record(self) -> dict:
        """The checkpoint's `data` entry."""
        sizes = {name: len(split.labels) for name, split in (("train", self.train), ("test", self.test)) if split}
        return {"dataset": self.name, "sha256": self.sha256, "split_sizes": sizes}


def load_dataset(spec: str, splits=("train",), *, data: str | os.PathLike | None = None,
                 preprocess_mode: str | None = None) -> Dataset:
    """Load the named splits ("train", "test") of the dataset `spec` (see SPEC_HELP).

    `data` is the folder of mnist or fashion-mnist (their usual places otherwise). `preprocess_mode` decodes a
    folder's images (default robust) and is what the checkpoint tells `predict` to use.
    """
    for split in splits:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if preprocess_mode is not None and preprocess_mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocessing mode {preprocess_mode!r}; valid modes: {', '.join(PREPROCESS_MODES)}")
    kind, _, path = spec.partition(":")
    if kind in ("idx", "folder"):
        if not path:
            raise ValueError(f"dataset {spec!r} needs a folder: {kind}:DIR")
        if data is not None:
            raise ValueError(f"--data names the folder of mnist or fashion-mnist; {kind}:DIR already names one")
        folder = Path(path).expanduser().resolve()
        if kind == "idx":
            return load_idx_folder(folder, splits, preprocess_mode or "robust")
        return load_folder(folder, splits, preprocess_mode or "robust")
    # MNIST's digits sit in a 20x20 box centred by mass, as robust preprocessing frames the ink of any photo.
    if spec == "mnist":
        dataset = Dataset("mnist", DIGIT_CLASSES, preprocess_mode or "robust", mnist_digests())
        for split in splits:
            setattr(dataset, split, Split(*load_mnist(split, data)))
        return dataset
    if spec == "fashion-mnist":
        # Fashion-MNIST's garments fill the 28x28 frame: robust's 20x20 digit box and stroke thickening distort
        # them, while paper mode (grayscale + resize) passes images in the dataset's own form through unchanged.
        return load_fashion_mnist(splits, data, preprocess_mode or "paper")
    raise ValueError(f"unknown dataset {spec!r}; use {SPEC_HELP}")


def fashion_data_dir(data: str | os.PathLike | None = None) -> Path:
    """--data DIR, else $DIGITSCAN_FASHION_DATA, else the Debian package's folder."""
    if data is not None:
        return Path(data).expanduser()
    if env := os.environ.get("DIGITSCAN_FASHION_DATA"):
        return Path(env).expanduser()
    return FASHION_SYSTEM_DIR


def load_fashion_mnist(splits, data=None, preprocess_mode: str = "paper") -> Dataset:
    folder = fashion_data_dir(data)
    dataset = Dataset("fashion-mnist", FASHION_CLASSES, preprocess_mode, dict(FASHION_SHA256))
    for split in splits:
        try:
            images, labels = load_idx_dataset(folder, split, digests=FASHION_SHA256)
        except DatasetError as error:
            raise DatasetError(f"{error} (Fashion-MNIST: pass --data DIR or set $DIGITSCAN_FASHION_DATA; the full "
                               f"dataset is the Debian package dataset-fashion-mnist)") from None
        setattr(dataset, split, Split(images, labels))
    return dataset


def load_idx_folder(folder: Path, splits, preprocess_mode: str = "robust") -> Dataset:
    """Any dataset of 28x28 uint8 images in IDX files named like MNIST's; classes from classes.txt, else 0..max."""
    classes = idx_classes(folder)
    dataset = Dataset(f"idx:{folder}", classes, preprocess_mode)
    for split in splits:
        images, labels = load_idx_dataset(folder, split, num_classes=len(classes))
        setattr(dataset, split, Split(images, labels))
        for kind in ("images", "labels"):
            stem = MNIST_FILES[(split, kind)]
            dataset.sha256[stem] = idx_sha256(find_file(folder, stem))
    return dataset


def idx_classes(folder: Path) -> list[str]:
    names_file = folder / IDX_CLASSES_FILE
    if names_file.is_file():
        classes = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        labels = read_idx(find_file(folder, MNIST_FILES[("train", "labels")]))
        classes = [str(c) for c in range(int(labels.max()) + 1)] if labels.size else []
    if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        raise DatasetError(f"{folder}: needs 2..{MAX_CLASSES} distinct classes, found {len(classes)} "
                           f"(from {IDX_CLASSES_FILE if names_file.is_file() else 'the training labels'})")
    return classes


# ---- folder:DIR --------------------------------------------------------------------------------------------------


def load_folder(root: Path, splits, preprocess_mode: str = "robust") -> Dataset:
    """An image-folder dataset: DIR/CLASS/*.png..., or DIR/train/CLASS/... with an optional DIR/test/CLASS/...

    Class names are the subfolder names, sorted; any number from 2 up. Files in a class folder (searched
    recursively; hidden files skipped) must all be images digitscan can decode: any other file is an error naming
    it, so a stray or broken file is never silently dropped from the training set. Without a test/ folder, a
    fixed FOLDER_TEST_FRACTION of each class is held out as the test split (loaded along with the training split).
    Every image goes through
    digitscan.image.prepare.preprocess in `preprocess_mode`, as `predict` will later do to the user's images.
    Digests: for each split, the sha256 of its `sha256sum`-style listing ("<sha256>  <path relative to DIR>"
    lines, sorted by path), so the record changes when any file is added, removed, renamed or edited.
    """
    files = folder_files(root)
    classes = sorted(files["train"])
    dataset = Dataset(f"folder:{root}", classes, preprocess_mode)
    # Training reads the test files too: a broken file fails the run whichever split it is in, and the checkpoint
    # records which files were held out.
    for split in ["train", "test"] if "train" in splits else splits:
        paths, labels = [], []
        for label, name in enumerate(classes):
            paths += files[split][name]
            labels += [label] * len(files[split][name])
        images, listing = decode_folder_images(root, paths, preprocess_mode)
        dataset.sha256[split] = hashlib.sha256(listing.encode()).hexdigest()
        setattr(dataset, split, Split(images, np.array(labels, np.int64)))
    return dataset


def folder_files(root: Path) -> dict[str, dict[str, list[Path]]]:
    """{"train": {class: [files]}, "test": {class: [files]}}, checked for a usable layout."""
    if not root.is_dir():
        raise DatasetError(f"{root}: folder does not exist")
    subfolders = {p.name: p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")}
    if "train" in subfolders:
        if extra := sorted(set(subfolders) - {"train", "test"}):
            raise DatasetError(f"{root}: has a train/ folder, so only train/ and test/ may be beside it; "
                               f"found also {', '.join(extra)}")
        train = class_files(subfolders["train"])
        if "test" not in subfolders:
            return held_out(train, subfolders["train"])
        test = class_files(subfolders["test"])
        if sorted(test) != sorted(train):
            raise DatasetError(f"{root}: train/ and test/ must hold the same class folders; "
                               f"train/ has {sorted(train)}, test/ has {sorted(test)}")
        return {"train": train, "test": test}
    return held_out(class_files(root), root)


def class_files(folder: Path) -> dict[str, list[Path]]:
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = f"only {classes[0].name!r}" if classes else "none"
        raise DatasetError(f"{folder}: needs one subfolder per class and at least 2 classes, found {found}")
    if len(classes) > MAX_CLASSES:
        raise DatasetError(f"{folder}: {len(classes)} class folders, more than the {MAX_CLASSES} a model may have")
    files = {}
    for class_dir in classes:
        files[class_dir.name] = sorted(p for p in class_dir.rglob("*") if p.is_file() and not
                                       any(part.startswith(".") for part in p.relative_to(class_dir).parts))
        if not files[class_dir.name]:
            raise DatasetError(f"{class_dir}: class folder holds no image files")
    return files


def held_out(files: dict[str, list[Path]], folder: Path) -> dict[str, dict[str, list[Path]]]:
    """Hold out FOLDER_TEST_FRACTION of each class's files as the test split; each class keeps one for training.

    The test files are those whose paths (relative to `folder`) hash lowest: a pseudo-random choice that depends on
    nothing else, so it survives moving the folder, and adding or removing a file moves at most one other.
    """
    train, test = {}, {}
    for name, paths in files.items():
        ranked = sorted(paths, key=lambda p: hashlib.sha256(p.relative_to(folder).as_posix().encode()).digest())
        n_test = min(round(len(paths) * FOLDER_TEST_FRACTION), len(paths) - 1)
        test[name], train[name] = sorted(ranked[:n_test]), sorted(ranked[n_test:])
    return {"train": train, "test": test}


def decode_folder_images(root: Path, paths: list[Path], mode: str) -> tuple[np.ndarray, str]:
    """(uint8 (N, 28, 28) model inputs, the sha256sum-style listing of the files) for image files under root."""
    images = np.zeros((len(paths), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    lines = []
    for i, path in enumerate(paths):
        try:
            content = path.read_bytes()
            # The one preprocessing path; [0, 1] floats are stored as uint8 like MNIST (at most 1/510 off).
            images[i] = np.rint(preprocess(content, mode) * 255)
        except ImageError as error:
            raise DatasetError(f"{path}: {error} (every file in a class folder must be an image)") from None
        except OSError as error:
            raise DatasetError(f"{path}: cannot read: {error.strerror or error}") from None
        lines.append((path.relative_to(root).as_posix(), hashlib.sha256(content).hexdigest()))
    listing = "".join(f"{digest}  {name}\n" for name, digest in sorted(lines))
    return images, listing
