"""Fuzzing: any IDX bytes, any numpy array, any damaged PNG or JPEG gives a result or one clear error, quickly.

Property-based tests (Hypothesis, modest example counts, deadlines set) and a bounded mutation fuzz of image
decoding from a fixed seed with a per-input time limit. The whole file takes ~15 s on 2 cores.
"""

from __future__ import annotations

import gzip
import io
import struct
import tempfile
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from digitscan.constants import IMAGE_SIZE, PREPROCESS_MODES
from digitscan.data.mnist import IDX_DTYPES, read_idx
from digitscan.errors import DatasetError, ImageError
from digitscan.image.decode import decode_image
from digitscan.image.prepare import preprocess, to_model_input
from digitscan.synthetic.strokes import render_digit

FUZZ = settings(max_examples=150, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow])


def assert_model_input(x: np.ndarray) -> None:
    assert x.shape == (IMAGE_SIZE, IMAGE_SIZE) and x.dtype == np.float32
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


def assert_clear(error: Exception) -> None:
    message = str(error)
    assert message and "\n" not in message, repr(message)


# ---- IDX files ------------------------------------------------------------------------------------------------------


def idx_headers() -> st.SearchStrategy[bytes]:
    """Headers that get past the magic check most of the time: valid and near-valid type codes, 0..5 dimensions,
    sizes from 0 to 2**32 - 1 (whose product may be astronomically large)."""
    code = st.sampled_from(sorted(IDX_DTYPES) + [0x00, 0x0A, 0xFF])
    dims = st.lists(st.one_of(st.integers(0, 6), st.sampled_from([2**16, 2**31, 2**32 - 1])), max_size=5)
    return st.builds(lambda c, d: bytes([0, 0, c, len(d)]) + b"".join(struct.pack(">I", n) for n in d), code, dims)


idx_contents = st.one_of(
    st.binary(max_size=300),  # anything at all
    st.tuples(idx_headers(), st.binary(max_size=600)).map(b"".join),  # a plausible header, any body
)


@pytest.fixture(scope="module")
def scratch() -> Path:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder)


@FUZZ
@given(content=idx_contents, compress=st.booleans())
@example(content=bytes([0, 0, 8, 4]) + struct.pack(">4I", *[2**16] * 4), compress=False)  # product wrapped to 0
@example(content=bytes([0, 0, 8, 4]) + struct.pack(">4I", 0, 2, 2**31, 2**31), compress=False)  # numpy refuses
def test_read_idx_gives_an_array_or_a_dataset_error(scratch, content, compress):
    path = scratch / ("fuzz.idx.gz" if compress else "fuzz.idx")
    path.write_bytes(gzip.compress(content, compresslevel=1) if compress else content)
    try:
        array = read_idx(path, max_bytes=4096)
    except DatasetError as error:
        assert str(error).startswith(str(path)), error  # names the file
        assert_clear(error)
        return
    ndim = content[3]
    assert array.shape == struct.unpack(f">{ndim}I", content[4 : 4 + 4 * ndim])
    assert array.dtype == IDX_DTYPES[content[2]].newbyteorder("=")


@FUZZ
@given(content=st.binary(min_size=1, max_size=300))
def test_damaged_gzip_gives_a_dataset_error(scratch, content):
    compressed = bytearray(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", len(content)) + content))
    position = len(compressed) * content[0] // 256
    compressed[position] ^= 0xFF  # one damaged byte: header, deflate stream or CRC/length trailer
    path = scratch / "damaged.gz"
    path.write_bytes(bytes(compressed))
    try:
        read_idx(path)
    except DatasetError as error:
        assert_clear(error)


# ---- arrays -> the model's input ------------------------------------------------------------------------------------

DTYPES = [np.bool_, np.uint8, np.uint16, np.uint32, np.uint64, np.int8, np.int16, np.int32, np.int64,
          np.float16, np.float32, np.float64, np.complex64]
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=12),  # anything, empty included
    st.tuples(st.integers(1, 64), st.integers(1, 64)),  # grayscale
    st.tuples(st.integers(1, 40), st.integers(1, 40), st.sampled_from([1, 2, 3, 4, 5])),  # channels
)


@FUZZ
@given(array=hnp.arrays(st.sampled_from(DTYPES), SHAPES), mode=st.sampled_from(PREPROCESS_MODES))
def test_any_array_gives_a_model_input_or_an_image_error(array, mode):
    for prepare in (lambda: preprocess(array, mode), lambda: to_model_input(array, mode)):
        try:
            x = prepare()
        except ImageError as error:
            assert_clear(error)
        else:
            assert_model_input(x)


# ---- mutated PNG and JPEG bytes -> decode_image + preprocess --------------------------------------------------------

PER_INPUT_LIMIT_S = 2.0  # a valid 48x40 image decodes in ~1 ms; a mutation that hangs must fail, not stall CI


def seed_images() -> dict[str, bytes]:
    """Small valid files that exercise different decoder paths (bit depths, palettes, interlacing, progressive)."""
    seven = render_digit(7, (40, 48), seed=1)
    gray = seven.convert("L")
    sixteen = Image.fromarray(np.asarray(gray, np.uint16) * 257)

    def save(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    return {
        "png-gray": save(gray, "PNG"),
        "png-rgba": save(seven.convert("RGBA"), "PNG"),
        "png-16bit": save(sixteen, "PNG"),
        "png-palette": save(seven.convert("P"), "PNG", transparency=0),
        "png-interlaced": save(seven, "PNG", interlace=1),
        "jpeg": save(seven, "JPEG", quality=90),
        "jpeg-progressive": save(seven, "JPEG", quality=90, progressive=True),
        "jpeg-cmyk": save(seven.convert("CMYK"), "JPEG"),
    }


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        chunks.append((kind, data[at + 8 : at + 8 + length]))
        at += 12 + length
    return chunks


def png_from(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"]
    for kind, payload in chunks:
        out.append(struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload)))
    return b"".join(out)


def damage(data: bytes, rng: np.random.Generator) -> bytes:
    """A few random byte-level changes: flips, interesting values, a cut, a repeated or dropped slice."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        kind = rng.integers(5)
        at = int(rng.integers(len(out)))
        if kind == 0:
            out[at] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            out[at : at + 4] = bytes(rng.choice([0x00, 0xFF, 0x7F, 0x80], 4).tolist())
        elif kind == 2:
            del out[max(1, at):]
        elif kind == 3:
            out[at:at] = out[at : at + int(rng.integers(1, 64))]
        else:
            del out[at : at + int(rng.integers(1, 16))]
        if not out:
            out = bytearray(data[:1])
    return bytes(out)


def damage_png(data: bytes, rng: np.random.Generator) -> bytes:
    """Structure-aware: damage one chunk's content (the header fields, or the pixel rows inside the compressed
    stream) and give it a correct CRC, so the decoder gets past the checksum to the code that uses the values."""
    chunks = png_chunks(data)
    if rng.random() < 0.5:
        index = 0  # IHDR: width, height, bit depth, colour type, compression, filter, interlace
        chunks[index] = (b"IHDR", damage(chunks[index][1], rng)[:13].ljust(13, b"\x00"))
    else:
        index = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
        rows = damage(zlib.decompress(chunks[index][1]), rng)  # filter bytes and pixels
        chunks[index] = (b"IDAT", zlib.compress(rows))
    return png_from(chunks)


def mutations(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    seeds = seed_images()
    names = sorted(seeds)
    for n in range(count):
        name = names[n % len(names)]
        data = seeds[name]
        if name.startswith("png") and n % 2:
            yield name, damage_png(data, rng)
        else:
            yield name, damage(data, rng)


def decode_within_limit(data: bytes) -> tuple[object, float]:
    """decode_image + preprocess on a worker thread: (outcome, seconds); fails if it runs past the limit."""
    outcome: dict[str, object] = {}

    def work() -> None:
        try:
            outcome["input"] = preprocess(decode_image(data))
        except BaseException as error:  # noqa: BLE001 - reported below, whatever it is
            outcome["error"] = error

    worker = threading.Thread(target=work, daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join(PER_INPUT_LIMIT_S)
    elapsed = time.perf_counter() - start
    assert not worker.is_alive(), f"still decoding after {PER_INPUT_LIMIT_S} s"
    return outcome.get("error", outcome.get("input")), elapsed


def test_mutated_images_give_a_result_or_an_image_error_quickly():
    outcomes, slowest = {"ok": 0, "error": 0}, 0.0
    for n, (name, data) in enumerate(mutations(400)):
        result, elapsed = decode_within_limit(data)
        slowest = max(slowest, elapsed)
        if isinstance(result, BaseException):
            assert isinstance(result, ImageError), (n, name, type(result).__name__, result)
            assert_clear(result)
            outcomes["error"] += 1
        else:
            assert_model_input(result)
            outcomes["ok"] += 1
    # Both outcomes must be common, or the mutations are too mild (all ok) or too crude (all refused at once).
    assert outcomes["ok"] >= 40 and outcomes["error"] >= 40, outcomes
    assert slowest < PER_INPUT_LIMIT_S
