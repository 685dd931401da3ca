"""The realdev loader: manifests through the one decoder, the writer-disjoint split, clear errors; one test counts
the real folders (../shared/data/realdev, which CI has)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from digitscan.data.realdev import BLOCK, SPLIT_EVERY, load_realdev, read_manifest, realdev_dir
from digitscan.errors import DatasetError

from helpers import REPO


def write_set(root: Path, name: str, files: list[str], labels: list[int], side: int = 16) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    rows = ["file,label"]
    for index, (file, label) in enumerate(zip(files, labels)):
        pixels = np.zeros((side, side), np.uint8)
        pixels[3 : side - 3, side // 2 - 1 : side // 2 + 1] = 255 - index % 7  # a bar, slightly different each
        Image.fromarray(pixels).save(folder / file)
        rows.append(f"{file},{label}")
    (folder / "manifest.csv").write_bytes(("\r\n".join(rows) + "\r\n").encode())
    return folder


def test_cvl_split_keeps_each_writer_on_one_side(tmp_path):
    writers = [f"{w:04d}" for w in range(10)]
    files = [f"cvl_train_{d}-{w}-0{d}-0{k}.png" for w in writers for d in range(3) for k in range(2)]
    write_set(tmp_path, "cvl_train", files, [int(f.split("_")[2][0]) for f in files], side=28)
    everything = load_realdev("cvl_train", root=tmp_path)
    train = load_realdev("cvl_train", "train", root=tmp_path)
    validation = load_realdev("cvl_train", "validation", root=tmp_path)
    test = load_realdev("cvl_train", "test", root=tmp_path)
    assert len(everything.images) == 60 and everything.images[0].shape == (28, 28)
    assert everything.images[0].dtype == np.float32 and everything.images[0].max() <= 1.0
    assert set(test.groups) == {"0004", "0009"}  # every 5th writer, sorted
    assert set(validation.groups) == {"0003", "0008"}  # the one before each
    assert not set(train.groups) & (set(validation.groups) | set(test.groups))
    assert len(train.labels) + len(validation.labels) + len(test.labels) == 60
    assert list(test.labels) == [0, 0, 1, 1, 2, 2] * 2


def test_blocks_split_contiguous_indices(tmp_path):
    count = 7 * BLOCK + 3
    files = [f"usps_train_{i:04d}.png" for i in range(count)]
    write_set(tmp_path, "usps_train", files, [i % 10 for i in range(count)])
    test = load_realdev("usps_train", "test", root=tmp_path)
    indices = [int(f[11:15]) for f in test.files]
    assert indices == list(range((SPLIT_EVERY - 1) * BLOCK, SPLIT_EVERY * BLOCK))
    assert list(test.labels) == [i % 10 for i in indices]
    validation = load_realdev("usps_train", "validation", root=tmp_path)
    start = (SPLIT_EVERY - 2) * BLOCK
    assert [int(f[11:15]) for f in validation.files] == list(range(start, start + BLOCK))
    train = load_realdev("usps_train", "train", root=tmp_path)
    assert len(train.files) == count - 2 * BLOCK
    assert not set(train.files) & (set(validation.files) | set(test.files))


def test_location_from_environment(tmp_path, monkeypatch):
    write_set(tmp_path, "optdigits_train", ["optdigits_tra_0000.png"], [7], side=32)
    monkeypatch.setenv("DIGITSCAN_REALDEV", str(tmp_path))
    assert realdev_dir() == tmp_path
    assert list(load_realdev("optdigits_train").labels) == [7]


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "manifest.csv").unlink(), "cannot read the manifest"),
    (lambda folder: (folder / "manifest.csv").write_text("name,digit\n"), "header"),
    (lambda folder: (folder / "manifest.csv").write_text("file,label\nusps_train_0000.png,12\n"), "line 2"),
    (lambda folder: (folder / "manifest.csv").write_text("file,label\n../x_0000.png,1\n"), "line 2"),
    (lambda folder: (folder / "usps_train_0001.png").write_bytes(b"not a png"), "usps_train_0001.png"),
    (lambda folder: (folder / "usps_train_0000.png").unlink(), "usps_train_0000.png"),
])
def test_damaged_folder_is_a_dataset_error(tmp_path, damage, message):
    folder = write_set(tmp_path, "usps_train", ["usps_train_0000.png", "usps_train_0001.png"], [1, 2])
    damage(folder)
    with pytest.raises(DatasetError, match=message):
        load_realdev("usps_train", root=tmp_path)


def test_missing_folder_and_bad_names(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_realdev("cvl_train", root=tmp_path)
    with pytest.raises(ValueError, match="unknown realdev set"):
        load_realdev("mnist", root=tmp_path)
    with pytest.raises(ValueError, match="split"):
        load_realdev("cvl_train", "held-out", root=tmp_path)


def test_shared_realdev_counts():
    """The real folders (CI has ../shared/data/realdev): sizes, labels, and validation and test splits of about 20 %."""
    root = REPO.parent / "shared" / "data" / "realdev"
    for name, count in {"usps_train": 7291, "cvl_train": 5000, "optdigits_train": 1934}.items():
        files, labels = read_manifest(root / name)
        assert len(files) == count and set(labels.tolist()) == set(range(10))
        for split in ("validation", "test"):
            part = load_realdev(name, split, root=root)
            assert 0.15 < len(part.labels) / count < 0.25
            assert set(np.unique(part.labels)) == set(range(10))
