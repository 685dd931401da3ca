"""Tests for digitscan.data: IDX parsing and its failure modes, data-folder lookup, downloads, real MNIST.

Code paths use tiny IDX files in tmp_path and a local HTTP server; real-number checks use $DIGITSCAN_DATA.
"""

import gzip
import hashlib
import http.server
import re
import shutil
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digitscan.constants import MNIST_FILES, MNIST_SHA256
from digitscan.data.mnist import (
    dataset_info,
    fetch_mnist,
    find_file,
    load_idx_dataset,
    load_mnist,
    mnist_digests,
    read_idx,
    resolve_data_dir,
    train_val_split,
)
from digitscan.errors import DatasetError

from helpers.idx import TYPE_CODES, idx_bytes, write_idx, write_split

STEMS = list(MNIST_FILES.values())








def tiny_split(n: int = 5) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """No test reads the user's settings, writes to ~/.cache or reaches the internet."""
    monkeypatch.delenv("DIGITSCAN_DATA", raising=False)
    monkeypatch.setenv("DIGITSCAN_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setenv("DIGITSCAN_MIRRORS", "http://127.0.0.1:9/")  # discard port: refused at once


# ---------------------------------------------------------------------------------------------- read_idx


@settings(max_examples=25, deadline=None)
@given(
    dtype=st.sampled_from(list(TYPE_CODES)),
    shape=st.lists(st.integers(0, 5), min_size=1, max_size=4),
    gz=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_read_idx_round_trips_every_type(tmp_path_factory, dtype, shape, gz, seed):
    array = (np.random.default_rng(seed).standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path_factory.mktemp("idx") / ("a.gz" if gz else "a"), array)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    assert loaded.shape == tuple(shape)
    np.testing.assert_array_equal(loaded, array)


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "labels-without-extension"
    path.write_bytes(gzip.compress(idx_bytes(array)))
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_accepts_matching_digest_of_decompressed_bytes(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "a.gz", array)
    digest = hashlib.sha256(idx_bytes(array)).hexdigest()
    np.testing.assert_array_equal(read_idx(path, expected_sha256=digest.upper()), array)


def test_read_idx_rejects_wrong_digest(tmp_path):
    path = write_idx(tmp_path / "a.gz", np.arange(10, dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"a\.gz: wrong digest: expected sha256 0{64}, got [0-9a-f]{64}"):
        read_idx(path, expected_sha256="0" * 64)


@pytest.mark.parametrize(
    ("header", "why"),
    [
        (b"\x01\x00\x08\x01", "first byte not zero"),
        (b"\x00\x00\x07\x01", "unknown type code"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x05", "five dimensions"),
        (b"PK\x03\x04", "a zip file"),
    ],
)
def test_read_idx_rejects_bad_magic(tmp_path, header, why):
    path = tmp_path / "bad"
    path.write_bytes(header + b"\x00\x00\x00\x01" * 5 + b"\x00" * 16)
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))}: wrong magic number {header.hex(' ')}"):
        read_idx(path)


def test_read_idx_rejects_file_shorter_than_its_header(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(DatasetError, match="too short for an IDX header"):
        read_idx(tmp_path / "empty")
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    with pytest.raises(DatasetError, match="truncated header: 3 dimensions need 16 bytes, file has 8"):
        read_idx(tmp_path / "short")


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_rejects_truncated_data(tmp_path, suffix):
    images = np.zeros((60000, 28, 28), np.uint8)
    data = idx_bytes(images)[: 16 + 1000]  # full header, 1000 data bytes
    path = tmp_path / ("train-images-idx3-ubyte" + suffix)
    path.write_bytes(gzip.compress(data) if suffix else data)
    expected = r"truncated: header declares 60000x28x28 = 47040000 data bytes, .*has 1000$"
    with pytest.raises(DatasetError, match=expected):
        read_idx(path)


def test_read_idx_rejects_trailing_bytes_and_names_multibyte_type(tmp_path):
    path = tmp_path / "a"
    path.write_bytes(idx_bytes(np.zeros((2, 3), np.int16)) + b"junk")
    with pytest.raises(DatasetError, match=r"4 trailing bytes: header declares 2x3 int16 = 12 data bytes, file has 16"):
        read_idx(path)


def test_read_idx_rejects_gz_name_without_gzip_content(tmp_path):
    path = write_idx(tmp_path / "raw", np.arange(4, dtype=np.uint8)).rename(tmp_path / "raw.gz")
    with pytest.raises(DatasetError, match=r"raw\.gz: named \.gz but is not gzip-compressed"):
        read_idx(path)


def test_read_idx_rejects_corrupt_gzip_streams(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(DatasetError, match=r"cut\.gz: corrupt gzip stream"):
        read_idx(cut)
    flipped = bytearray(compressed)
    flipped[len(flipped) // 2] ^= 0xFF
    bad = tmp_path / "flipped.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(DatasetError, match=r"flipped\.gz: corrupt gzip stream"):
        read_idx(bad)


def test_read_idx_stops_a_gzip_bomb_at_the_limit(tmp_path):
    # A valid IDX header declaring 200 MB of zeros: ~200 KB compressed, must be refused without inflating it.
    path = tmp_path / "bomb.gz"
    zeros = bytes(2**20)
    with gzip.open(path, "wb", compresslevel=1) as bomb:
        bomb.write(bytes([0, 0, 8, 3]) + np.array([200 * 2**10, 32, 32], ">u4").tobytes())
        for _ in range(200):
            bomb.write(zeros)
    assert path.stat().st_size < 2**20
    limit = 64 * 2**20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=rf"bomb\.gz: decompresses to more than {limit} bytes"):
            read_idx(path, max_bytes=limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * limit


def test_read_idx_refuses_raw_file_over_the_limit(tmp_path):
    path = write_idx(tmp_path / "big", np.zeros(1000, np.uint8))
    with pytest.raises(DatasetError, match=r"big: file is 1008 bytes, over the limit of 100"):
        read_idx(path, max_bytes=100)


def test_read_idx_reports_missing_file_and_folder(tmp_path):
    with pytest.raises(DatasetError, match=rf"{re.escape(str(tmp_path / 'nope'))}: file not found"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DatasetError, match="is a folder"):
        read_idx(tmp_path)


# ------------------------------------------------------------------------------------ load_idx_dataset


def test_load_idx_dataset_reads_raw_and_gz_files(tmp_path):
    images, labels = tiny_split()
    write_split(tmp_path / "raw", "test", images, labels, gz=False)
    write_split(tmp_path / "gz", "test", images, labels, gz=True)
    for folder in ("raw", "gz"):
        got_images, got_labels = load_idx_dataset(tmp_path / folder, "test")
        np.testing.assert_array_equal(got_images, images)
        np.testing.assert_array_equal(got_labels, labels)
        assert got_images.dtype == np.uint8 and got_labels.dtype == np.int64


def test_load_idx_dataset_checks_digests_when_given(tmp_path):
    write_split(tmp_path, "test", *tiny_split())
    stem = MNIST_FILES[("test", "labels")]
    with pytest.raises(DatasetError, match=rf"{stem}\.gz: wrong digest"):
        load_idx_dataset(tmp_path, "test", digests={stem: "f" * 64})


def test_load_idx_dataset_rejects_count_mismatch(tmp_path):
    images, labels = tiny_split(5)
    write_split(tmp_path, "train", images, labels[:4])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte\.gz: 4 labels for 5 images"):
        load_idx_dataset(tmp_path, "train")


def test_load_idx_dataset_rejects_labels_out_of_range(tmp_path):
    images, labels = tiny_split(5)
    labels[3] = 10
    write_split(tmp_path, "train", images, labels)
    with pytest.raises(DatasetError, match=r"label 10 out of range 0\.\.9"):
        load_idx_dataset(tmp_path, "train")


def test_load_idx_dataset_rejects_images_that_are_not_28x28(tmp_path):
    write_split(tmp_path, "test", np.zeros((5, 32, 32), np.uint8), np.zeros(5, np.uint8))
    with pytest.raises(DatasetError, match=r"expected uint8 images of shape \(N, 28, 28\), got uint8 \(5, 32, 32\)"):
        load_idx_dataset(tmp_path, "test")


def test_load_idx_dataset_reports_missing_file_and_folder(tmp_path):
    write_split(tmp_path, "test", *tiny_split())
    expected = rf"{re.escape(str(tmp_path))}: missing file train-images-idx3-ubyte \(or .*\.gz\)"
    with pytest.raises(DatasetError, match=expected):
        load_idx_dataset(tmp_path, "train")
    with pytest.raises(DatasetError, match=rf"{re.escape(str(tmp_path / 'absent'))}: folder does not exist"):
        load_idx_dataset(tmp_path / "absent", "test")
    with pytest.raises(ValueError, match="split must be one of"):
        load_idx_dataset(tmp_path, "validation")


def test_find_file_prefers_raw_then_gz(tmp_path):
    (tmp_path / "stem.gz").write_bytes(b"")
    assert find_file(tmp_path, "stem") == tmp_path / "stem.gz"
    (tmp_path / "stem").write_bytes(b"")
    assert find_file(tmp_path, "stem") == tmp_path / "stem"


# ------------------------------------------------------------------------------------ resolve_data_dir


def test_resolve_data_dir_order_argument_then_env_then_cache(tmp_path, monkeypatch):
    images, labels = tiny_split()
    for name in ("arg", "env", "user-cache"):
        for split in ("train", "test"):
            write_split(tmp_path / name, split, images, labels)
    assert resolve_data_dir(None, download=False) == tmp_path / "user-cache"
    monkeypatch.setenv("DIGITSCAN_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None, download=False) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg", download=False) == tmp_path / "arg"
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"


def test_load_mnist_uses_digitscan_data(tmp_path, monkeypatch):
    images, labels = tiny_split()
    write_split(tmp_path / "env", "test", images, labels)
    monkeypatch.setenv("DIGITSCAN_DATA", str(tmp_path / "env"))
    got_images, got_labels = load_mnist("test", verify=False)
    np.testing.assert_array_equal(got_images, images)
    with pytest.raises(DatasetError, match="wrong digest"):  # tiny files are not MNIST
        load_mnist("test")


def test_named_folder_lacking_a_file_raises_instead_of_downloading(tmp_path, monkeypatch):
    write_split(tmp_path / "partial", "test", *tiny_split())
    expected = rf"{re.escape(str(tmp_path / 'partial'))}: missing file train-images-idx3-ubyte"
    with pytest.raises(DatasetError, match=expected):
        resolve_data_dir(tmp_path / "partial")
    with pytest.raises(DatasetError, match=r"absent: folder does not exist \(given by the data argument\)"):
        load_mnist("test", tmp_path / "absent")
    monkeypatch.setenv("DIGITSCAN_DATA", str(tmp_path / "partial"))
    with pytest.raises(DatasetError, match="missing file train-images-idx3-ubyte"):
        resolve_data_dir()
    assert load_mnist("test", verify=False)[0].shape == (5, 28, 28)  # only the requested split is required
    assert not (tmp_path / "user-cache").exists()


def test_resolve_data_dir_without_download_says_where_to_put_data(tmp_path):
    with pytest.raises(DatasetError, match=r"user-cache: folder does not exist.*set \$DIGITSCAN_DATA"):
        resolve_data_dir(download=False)


def test_cache_dir_defaults_to_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("DIGITSCAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = rf"{re.escape(str(tmp_path / 'xdg' / 'digitscan' / 'mnist'))}: folder does not exist"
    with pytest.raises(DatasetError, match=expected):
        resolve_data_dir(download=False)


# ----------------------------------------------------------------------------------------- downloads


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves <root>/<mirror>/<file>; a mirror whose name starts with "hangup" sends half and closes."""

    def do_GET(self):
        self.server.requests.append(self.path)
        mirror, _, name = self.path.strip("/").partition("/")
        file = self.server.root / mirror / name
        if not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mirror.startswith("hangup"):
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
        else:
            self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror_server(tmp_path):
    """A local HTTP server over tmp_path/"served"; yields (base URL, served root, list of request paths)."""
    root = tmp_path / "served"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
    server.root, server.requests = root, []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root, server.requests
    server.shutdown()
    server.server_close()
    thread.join()


def assert_no_stray_files(folder: Path, allowed: set[str] = frozenset()):
    assert {p.name for p in folder.iterdir()} <= set(allowed)


def test_fetch_falls_back_past_a_404_mirror_and_replaces_an_invalid_cached_file(mnist_dir, mirror_server, tmp_path):
    base, root, requests = mirror_server
    good = root / "good"
    good.mkdir()
    for stem in STEMS:
        shutil.copy(find_file(mnist_dir, stem), good / f"{stem}.gz")
    cache = tmp_path / "cache"
    cache.mkdir()
    bad_stem = MNIST_FILES[("test", "labels")]
    write_idx(cache / bad_stem, np.zeros(10000, np.uint8))  # right shape, wrong digest: must be replaced

    assert fetch_mnist(cache, [f"{base}/empty/", f"{base}/good"], progress=False) == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{stem}.gz" for stem in STEMS)
    assert requests == [f"/{mirror}/{stem}.gz" for stem in STEMS for mirror in ("empty", "good")]
    images, labels = load_mnist("test", cache)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)

    requests.clear()
    fetch_mnist(cache, [f"{base}/good/"], progress=False)
    assert requests == []  # everything valid: nothing downloaded again


def test_resolve_data_dir_downloads_into_the_user_cache(mnist_dir, mirror_server, tmp_path, monkeypatch):
    base, root, requests = mirror_server
    shutil.copytree(mnist_dir, root / "good")
    monkeypatch.setenv("DIGITSCAN_MIRRORS", f"{base}/missing/,{base}/good/")
    assert resolve_data_dir() == tmp_path / "user-cache"
    count = len(requests)
    assert resolve_data_dir() == tmp_path / "user-cache" and len(requests) == count


def test_fetch_rejects_a_mirror_serving_the_wrong_file(mirror_server, tmp_path):
    base, root, _ = mirror_server
    stem = STEMS[0]
    (root / "evil").mkdir()
    write_idx(root / "evil" / f"{stem}.gz", np.zeros((1, 28, 28), np.uint8))  # valid IDX, not MNIST
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as raised:
        fetch_mnist(cache, [f"{base}/evil/"], progress=False)
    message = str(raised.value)
    assert message.startswith(f"{cache / stem}.gz: could not download from any mirror: ")
    assert f"{base}/evil/{stem}.gz: wrong digest: expected sha256 {MNIST_SHA256[stem]}" in message
    assert_no_stray_files(cache)


def test_fetch_leaves_no_partial_file_when_the_server_hangs_up(mnist_dir, mirror_server, tmp_path):
    base, root, _ = mirror_server
    (root / "hangup").mkdir()
    stem = STEMS[0]
    shutil.copy(find_file(mnist_dir, stem), root / "hangup" / f"{stem}.gz")
    cache = tmp_path / "cache"
    with pytest.raises(DatasetError) as raised:
        fetch_mnist(cache, [f"{base}/hangup/", f"{base}/gone/", "http://127.0.0.1:9/"], progress=False)
    message = str(raised.value)
    assert f"{base}/hangup/{stem}.gz: truncated download: got " in message
    assert f"{base}/gone/{stem}.gz: HTTP 404" in message
    assert f"http://127.0.0.1:9/{stem}.gz: " in message
    assert_no_stray_files(cache)


def test_fetch_refuses_a_gzip_bomb_without_inflating_it(mnist_dir, mirror_server, tmp_path):
    # A mirror serving 100 MB of zeros (100 kB compressed) as the 10 kB test labels: refused at that file's exact
    # decompressed size, and nothing is left behind in the cache.
    base, root, _ = mirror_server
    stem = MNIST_FILES[("test", "labels")]
    (root / "bomb").mkdir()
    (root / "bomb" / f"{stem}.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + bytes(100 * 2**20), 9))
    cache = tmp_path / "cache"
    for other in STEMS:  # the other three are already valid, so only the labels are fetched
        if other != stem:
            cache.mkdir(exist_ok=True)
            (cache / f"{other}.gz").symlink_to(find_file(mnist_dir, other).resolve())
    with pytest.raises(DatasetError, match=rf"{base}/bomb/{stem}\.gz: decompresses to more than 10008 bytes"):
        fetch_mnist(cache, [f"{base}/bomb/"], progress=False)
    assert_no_stray_files(cache, {f"{other}.gz" for other in STEMS if other != stem})


# ------------------------------------------------------------------------------------- the real MNIST


@pytest.fixture(scope="module")
def mnist_test_split(mnist_dir):
    return load_mnist("test", mnist_dir)


def test_real_mnist_shapes_and_class_counts(mnist_dir, mnist_test_split):
    images, labels = load_mnist("train", mnist_dir)
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (60000,)
    test_images, test_labels = mnist_test_split
    assert test_images.shape == (10000, 28, 28)
    counts = np.bincount(test_labels, minlength=10).tolist()
    assert counts[0] == 980 and counts[1] == 1135 and sum(counts) == 10000
    assert mnist_digests() == MNIST_SHA256 and mnist_digests() is not MNIST_SHA256


def test_real_fashion_mnist_loads_without_digests(mnist_dir):
    fashion = mnist_dir.parent / "fashion-mnist"
    images, labels = load_idx_dataset(fashion, "test")
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [1000] * 10
    with pytest.raises(DatasetError, match="missing file train-images-idx3-ubyte"):
        load_idx_dataset(fashion, "train")


def test_dataset_info_reports_known_mnist_statistics(mnist_dir):
    info = dataset_info(mnist_dir)
    train, test = info["train"], info["test"]
    assert train["n"] == 60000 and train["shape"] == [60000, 28, 28] and train["dtype"] == "uint8"
    assert train["pixels"]["min"] == 0 and train["pixels"]["max"] == 255
    # The normalization constants everyone quotes for MNIST: mean 0.1307, std 0.3081 of the [0, 1] train pixels.
    assert train["pixels"]["scaled_mean"] == pytest.approx(0.1307, abs=1e-4)
    assert train["pixels"]["scaled_std"] == pytest.approx(0.3081, abs=1e-4)
    assert train["class_counts"][:2] == [5923, 6742] and sum(train["class_counts"]) == 60000
    assert test["class_counts"][:2] == [980, 1135]


def test_train_val_split_is_disjoint_complete_and_reproducible():
    train_idx, val_idx = train_val_split(60000, 0.3, seed=0)
    assert len(train_idx) == 42000 and len(val_idx) == 18000
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(60000))
    again = train_val_split(60000, 0.3, seed=0)
    assert np.array_equal(again[0], train_idx) and np.array_equal(again[1], val_idx)
    assert not np.array_equal(train_val_split(60000, 0.3, seed=1)[1], val_idx)
    train_all, val_none = train_val_split(100, 0.0, seed=0)
    assert len(train_all) == 100 and len(val_none) == 0
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(100, 1.0, seed=0)
