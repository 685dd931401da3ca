"""Find, verify, download and read the MNIST IDX files as numpy arrays.

Use `load_mnist("train")` for (images, labels); `resolve_data_dir()` says where the files come from.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import numpy as np
from tqdm import tqdm

from digitscan.constants import (
    IMAGE_SIZE,
    MAX_IDX_BYTES,
    MNIST_FILES,
    MNIST_MIRRORS,
    MNIST_SHA256,
    MNIST_SIZES,
    NUM_CLASSES,
)
from digitscan.errors import DatasetError
from digitscan.files import atomic_write

SPLITS = ("train", "test")

# IDX type codes (third magic byte) -> big-endian numpy dtype, as in LeCun's IDX format description.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
READ_CHUNK = 1 << 20  # decompress 1 MiB at a time so a gzip bomb stops at max_bytes, not at exhaustion
DOWNLOAD_TIMEOUT_S = 30.0


def read_idx(
    path: str | os.PathLike,
    *,
    expected_sha256: str | None = None,
    max_bytes: int = MAX_IDX_BYTES,
) -> np.ndarray:
    """Read a raw or gzipped IDX file into an array of its declared shape and (native-endian) dtype.

    Gzip is detected by its magic bytes, not the extension. At most `max_bytes` decompressed bytes are ever
    held; `expected_sha256` is checked against the decompressed bytes. Every problem raises DatasetError.
    """
    return _read_idx(Path(path), expected_sha256=expected_sha256, max_bytes=max_bytes, name=str(path))


def _read_idx(path: Path, *, expected_sha256: str | None, max_bytes: int, name: str) -> np.ndarray:
    # `name` is what error messages call the file: a download is verified in a temp file but reported by URL.
    content, compressed = _read_content(path, max_bytes=max_bytes, name=name)
    array = _parse_idx(content, name=name, compressed=compressed)
    if expected_sha256 is not None:
        digest = hashlib.sha256(content).hexdigest()
        if digest != expected_sha256.lower():
            raise DatasetError(f"{name}: wrong digest: expected sha256 {expected_sha256}, got {digest}")
    return array


def _read_content(path: Path, *, max_bytes: int, name: str) -> tuple[bytearray, bool]:
    """Return (decompressed bytes, whether the file was gzipped), refusing more than max_bytes."""
    try:
        with open(path, "rb") as file:
            compressed = file.read(2) == GZIP_MAGIC
            file.seek(0)
            if compressed:
                return _gunzip_limited(file, max_bytes=max_bytes, name=name), True
            if path.suffix == ".gz":
                raise DatasetError(f"{name}: named .gz but is not gzip-compressed (no 1f 8b magic bytes)")
            size = os.fstat(file.fileno()).st_size
            if size > max_bytes:
                raise DatasetError(f"{name}: file is {size} bytes, over the limit of {max_bytes}")
            content = bytearray(size)  # bytearray so the returned array is writable (torch.from_numpy wants that)
            if file.readinto(content) != size:
                raise DatasetError(f"{name}: file changed size while being read")
            return content, False
    except FileNotFoundError:
        raise DatasetError(f"{name}: file not found") from None
    except IsADirectoryError:
        raise DatasetError(f"{name}: is a folder, not an IDX file") from None
    except OSError as error:
        raise DatasetError(f"{name}: cannot read: {error.strerror or error}") from None


def _gunzip_limited(file, *, max_bytes: int, name: str) -> bytearray:
    content = bytearray()
    try:
        with gzip.GzipFile(fileobj=file, mode="rb") as stream:
            # Ask for one byte past the limit: getting it proves the stream is too big without inflating the rest.
            while chunk := stream.read(min(READ_CHUNK, max_bytes + 1 - len(content))):
                content += chunk
                if len(content) > max_bytes:
                    raise DatasetError(
                        f"{name}: decompresses to more than {max_bytes} bytes (the limit); not an MNIST-sized file"
                    )
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise DatasetError(f"{name}: corrupt gzip stream: {error or type(error).__name__}") from None
    return content


def _parse_idx(content: bytearray, *, name: str, compressed: bool) -> np.ndarray:
    if len(content) < 4:
        raise DatasetError(f"{name}: too short for an IDX header ({len(content)} bytes)")
    zero1, zero2, type_code, ndim = content[:4]
    if zero1 != 0 or zero2 != 0 or type_code not in IDX_DTYPES or not 1 <= ndim <= 4:
        raise DatasetError(
            f"{name}: wrong magic number {bytes(content[:4]).hex(' ')}: expected 00 00, a type code "
            f"({', '.join(f'{code:02x}' for code in IDX_DTYPES)}) and 1..4 dimensions"
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DatasetError(
            f"{name}: truncated header: {ndim} dimensions need {header_size} bytes, file has {len(content)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    declared = math.prod(shape) * dtype.itemsize  # Python ints: four dims of 65536 must not wrap around to 0
    present = len(content) - header_size
    if present != declared:
        problem = "truncated" if present < declared else f"{present - declared} trailing bytes"
        described = "x".join(map(str, shape)) + ("" if dtype.itemsize == 1 else f" {dtype.name}")
        holder = "decompressed file" if compressed else "file"
        raise DatasetError(
            f"{name}: {problem}: header declares {described} = {declared} data bytes, {holder} has {present}"
        )
    try:
        array = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    except ValueError:  # an empty array whose other sizes multiply past what numpy can index (0 x 2**31 x 2**31)
        raise DatasetError(f"{name}: header declares an impossible shape {'x'.join(map(str, shape))}") from None
    return array.astype(dtype.newbyteorder("="), copy=False)


def find_file(data_dir: Path, stem: str) -> Path:
    """Return `data_dir/stem` or `data_dir/stem.gz`, whichever exists (the raw file first)."""
    data_dir = Path(data_dir)
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: folder does not exist")
    raise DatasetError(f"{data_dir}: missing file {stem} (or {stem}.gz)")


def default_cache_dir() -> Path:
    """The per-user download folder: $DIGITSCAN_CACHE, else $XDG_CACHE_HOME/digitscan/mnist, else ~/.cache/..."""
    if cache := os.environ.get("DIGITSCAN_CACHE"):
        return Path(cache).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home).expanduser() / "digitscan" / "mnist"


def _stems(split: str | None) -> list[str]:
    splits = SPLITS if split is None else (_check_split(split),)
    return [MNIST_FILES[(s, kind)] for s in splits for kind in ("images", "labels")]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _require_files(data_dir: Path, stems: list[str], source: str) -> Path:
    if not data_dir.is_dir():
        raise DatasetError(f"{data_dir}: folder does not exist (given by {source})")
    for stem in stems:
        find_file(data_dir, stem)
    return data_dir


def resolve_data_dir(
    data: str | os.PathLike | None = None,
    *,
    download: bool = True,
    split: str | None = None,
) -> Path:
    """Return the folder holding the MNIST files, downloading them to the user cache only if none is named.

    Order: `data` -> $DIGITSCAN_DATA -> the cache folder if complete -> fetch_mnist into it (when `download`).
    A folder named by `data` or $DIGITSCAN_DATA must hold the files: it is never replaced by a download.
    `split` limits the files required to that split's two (all four by default).
    """
    stems = _stems(split)
    if data is not None:
        return _require_files(Path(data).expanduser(), stems, "the data argument")
    if env_dir := os.environ.get("DIGITSCAN_DATA"):
        return _require_files(Path(env_dir).expanduser(), stems, "$DIGITSCAN_DATA")
    cache_dir = default_cache_dir()
    try:
        return _require_files(cache_dir, stems, "the cache")
    except DatasetError as error:
        if not download:
            raise DatasetError(
                f"{error}; set $DIGITSCAN_DATA or pass a data folder, or allow downloading"
            ) from None
    return fetch_mnist(cache_dir)


def _mirror_list(mirrors: list[str] | None) -> list[str]:
    if mirrors:
        return list(mirrors)
    if env := os.environ.get("DIGITSCAN_MIRRORS"):
        return [url.strip() for url in env.split(",") if url.strip()]
    return list(MNIST_MIRRORS)


def fetch_mnist(
    cache_dir: Path | None = None,
    mirrors: list[str] | None = None,
    *,
    progress: bool = True,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download whichever of the four MNIST `.gz` files are missing or fail their digest; return the folder.

    Mirrors (base URLs) are tried in order: `mirrors`, else $DIGITSCAN_MIRRORS (comma-separated), else the
    public ones. A file only takes its final name after its sha256 checks out, so no half file is ever left.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    mirrors = _mirror_list(mirrors)
    for stem in MNIST_FILES.values():
        if _cached_file_is_valid(cache_dir, stem):
            continue
        target = cache_dir / f"{stem}.gz"
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + target.name
            try:
                _download_verified(url, target, stem=stem, progress=progress, timeout=timeout)
                break
            except urllib.error.HTTPError as error:
                errors.append(f"{url}: HTTP {error.code} {error.reason}")
            except urllib.error.URLError as error:
                errors.append(f"{url}: {error.reason}")
            except DatasetError as error:
                errors.append(str(error))  # already starts with the URL
            except (OSError, http.client.HTTPException, ValueError) as error:
                errors.append(f"{url}: {type(error).__name__}: {error}")
        else:
            raise DatasetError(f"{target}: could not download from any mirror: " + "; ".join(errors))
        # An invalid raw copy would shadow the good .gz in find_file; it failed its digest, so it goes.
        (cache_dir / stem).unlink(missing_ok=True)
    return cache_dir


def _cached_file_is_valid(cache_dir: Path, stem: str) -> bool:
    try:
        read_idx(find_file(cache_dir, stem), expected_sha256=MNIST_SHA256[stem], max_bytes=MNIST_SIZES[stem])
    except DatasetError:
        return False
    return True


def _download_verified(url: str, target: Path, *, stem: str, progress: bool, timeout: float) -> None:
    with atomic_write(target) as temporary:  # a failed or interrupted download leaves no partial file
        with open(temporary, "xb") as file, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            received = 0
            with tqdm(
                total=expected, unit="B", unit_scale=True, desc=target.name, disable=not progress, leave=False
            ) as bar:
                while chunk := response.read(READ_CHUNK):
                    file.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        # http.client returns a short body without complaint when the server hangs up early.
        if expected is not None and received != expected:
            raise DatasetError(f"{url}: truncated download: got {received} of {expected} bytes")
        # The decompressed size is known exactly, so it is also the tightest gzip-bomb limit.
        _read_idx(temporary, expected_sha256=MNIST_SHA256[stem], max_bytes=MNIST_SIZES[stem], name=url)


def mnist_digests() -> dict[str, str]:
    """sha256 of each decompressed MNIST file by stem, for recording in checkpoint metadata."""
    return dict(MNIST_SHA256)


def idx_sha256(path: str | os.PathLike, *, max_bytes: int = MAX_IDX_BYTES) -> str:
    """sha256 of an IDX file's decompressed bytes (what the digests in constants.py and checkpoints describe)."""
    content, _ = _read_content(Path(path), max_bytes=max_bytes, name=str(path))
    return hashlib.sha256(content).hexdigest()


def load_idx_dataset(
    data_dir: Path,
    split: str,
    *,
    digests: dict[str, str] | None = None,
    num_classes: int = NUM_CLASSES,
) -> tuple[np.ndarray, np.ndarray]:
    """Load (images uint8 (N, 28, 28), labels int64 (N,)) from a folder using MNIST's file names.

    Works for Fashion-MNIST and any other IDX dataset of 28x28 images whose labels are 0..num_classes-1;
    `digests` (stem -> sha256 of the decompressed file) are checked when given.
    """
    _check_split(split)
    digests = digests or {}
    images_stem, labels_stem = MNIST_FILES[(split, "images")], MNIST_FILES[(split, "labels")]
    images_path, labels_path = find_file(Path(data_dir), images_stem), find_file(Path(data_dir), labels_stem)
    images = read_idx(images_path, expected_sha256=digests.get(images_stem))
    labels = read_idx(labels_path, expected_sha256=digests.get(labels_stem))

    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (N, {IMAGE_SIZE}, {IMAGE_SIZE}), "
            f"got {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected a 1-d uint8 label array, got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
    if len(labels) and labels.max() >= num_classes:
        raise DatasetError(f"{labels_path}: label {labels.max()} out of range 0..{num_classes - 1}")
    # int64 is what torch's cross-entropy takes as targets.
    return images, labels.astype(np.int64)


def load_mnist(
    split: str,
    data: str | os.PathLike | None = None,
    *,
    verify: bool = True,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Load an MNIST split ("train" or "test") as (images uint8 (N, 28, 28), labels int64 (N,)).

    The folder comes from resolve_data_dir; with `verify` each file must match its published sha256.
    """
    data_dir = resolve_data_dir(data, download=download, split=split)
    return load_idx_dataset(data_dir, split, digests=mnist_digests() if verify else None)


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split range(n) at random (seeded) into sorted (train_idx, val_idx), with round(n * val_fraction) for val."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * val_fraction)
    # Sorted indices gather rows in memory order; the training loop shuffles on its own.
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _pixel_stats(images: np.ndarray) -> dict:
    # Exact statistics from a 256-bin histogram, built in slices: a float copy of 47M pixels would take 376 MB.
    histogram = np.zeros(256, dtype=np.int64)
    for start in range(0, len(images), 4096):
        histogram += np.bincount(images[start : start + 4096].ravel(), minlength=256)
    values = np.arange(256, dtype=np.float64)
    count = histogram.sum()
    mean = float((histogram * values).sum() / count) if count else float("nan")
    std = float(np.sqrt((histogram * (values - mean) ** 2).sum() / count)) if count else float("nan")
    present = np.flatnonzero(histogram)
    low, high = (int(present[0]), int(present[-1])) if count else (None, None)
    return {
        "min": low,
        "max": high,
        "mean": mean,
        "std": std,
        "scaled_min": None if low is None else low / 255,
        "scaled_max": None if high is None else high / 255,
        "scaled_mean": mean / 255,
        "scaled_std": std / 255,
    }


def dataset_info(data: str | os.PathLike | None = None) -> dict:
    """Describe both MNIST splits as plain data: size, shape, dtype, pixel statistics, images per class."""
    data_dir = resolve_data_dir(data)
    info: dict = {"data_dir": str(data_dir)}
    for split in SPLITS:
        images, labels = load_mnist(split, data_dir)
        info[split] = {
            "n": int(len(images)),
            "shape": list(images.shape),
            "dtype": str(images.dtype),
            "pixels": _pixel_stats(images),
            "class_counts": np.bincount(labels, minlength=NUM_CLASSES).tolist(),
        }
    return info
