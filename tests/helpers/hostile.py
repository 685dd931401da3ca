"""The hostile-input corpus: every kind of file a stranger can hand the digit reader, with its documented outcome.

`build_corpus(folder)` writes the cases into a folder and returns them; tests/test_hostile.py runs them through
`digitscan predict`, `digitscan read` and the HTTP API. Generated at test time: no binary is committed.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from digitscan.errors import ImageTooCostlyError, ImageTooLargeError, UnreadableImageError, UnsupportedImageError
from digitscan.image.jpeg import jpeg_structure
from digitscan.synthetic.strokes import render_digit

# The documented outcome of an input is an HTTP status; the CLI and the library raise the matching error.
ERRORS = {413: ImageTooLargeError, 415: UnsupportedImageError, 422: UnreadableImageError}


@dataclass(frozen=True)
class Case:
    """One input and what digitscan must do with it."""

    name: str  # test id
    path: Path  # what the CLI is given
    status: int  # 200: a result; else the HTTP status of its error (413, 415, 422)
    says: str = ""  # errors: what the one-line message must mention
    digit: int | None = None  # 200 only: the digit it shows (read finds exactly it); None: not a digit, no digits
    reported: Path | None = None  # the path the CLI names in its output, when it is not `path` (a folder's file)
    raises: type[Exception] | None = None  # the error class, when it is not the status's usual one (ERRORS)

    @property
    def error(self) -> type[Exception] | None:
        return self.raises or ERRORS.get(self.status)

    @property
    def shown_as(self) -> Path:
        return self.reported or self.path


# ---- helpers -------------------------------------------------------------------------------------------------------


def digit(value: int, size: tuple[int, int] = (240, 280), **options) -> Image.Image:
    """A clean hand-drawn digit, dark ink on light paper (RGB); the same every run."""
    return render_digit(value, size, seed=value, **options)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def with_chunk(png: bytes, chunk: bytes) -> bytes:
    """Insert a chunk right after IHDR (signature 8 bytes + IHDR 25 bytes)."""
    return png[:33] + chunk + png[33:]


def jpeg_scan_bomb(side: int, repeats: int, height: int | None = None) -> bytes:
    """A valid progressive JPEG of side x side (or side x height) white pixels whose last scan is repeated `repeats`
    more times.

    A scan of a blank image is a few dozen bytes (its AC coefficients are one run of zeros), but libjpeg decodes
    each one over the whole image: 5000 x 5000 with 120,000 repeats is 5.2 MB and minutes of CPU.
    """
    jpeg = encode(Image.new("L", (side, height or side), 255), "JPEG", progressive=True)
    eoi = len(jpeg) - 2
    assert jpeg[eoi:] == b"\xff\xd9"
    last_scan = jpeg.rindex(b"\xff\xda")  # its Huffman table, defined before it, stays in force for the copies
    assert jpeg_structure(jpeg[:last_scan] + jpeg[eoi:]).scans == jpeg_structure(jpeg).scans - 1
    return jpeg[:eoi] + jpeg[last_scan:eoi] * repeats + jpeg[eoi:]


def jpeg_with_comments(image: Image.Image, count: int) -> bytes:
    """A baseline JPEG with `count` small COM segments right after SOI: cheap bytes, one marker each."""
    jpeg = encode(image, "JPEG", quality=90)
    return jpeg[:2] + b"\xff\xfe\x00\x04hi" * count + jpeg[2:]


# ---- the cases -----------------------------------------------------------------------------------------------------

_WRITERS: list[tuple[Case, Callable[[Path], None]]] = []  # cases with a relative path, and their writers


def case(name: str, file: str, status: int, says: str = "", shows: int | None = None,
         raises: type[Exception] | None = None):
    """Register a writer of one corpus file: test id, file name, outcome, and what its error says or its digit."""

    def register(write: Callable[[Path], None]) -> Callable[[Path], None]:
        _WRITERS.append((Case(name, Path(file), status, says, shows, raises=raises), write))
        return write

    return register


@case("zero-bytes", "empty.png", 422, says="empty file")
def write_zero_bytes(path: Path) -> None:
    path.write_bytes(b"")


@case("truncated-png", "truncated.png", 422, says="truncated")
def write_truncated_png(path: Path) -> None:
    data = encode(digit(3), "PNG")
    path.write_bytes(data[: len(data) // 2])  # inside the pixel data


@case("truncated-jpeg", "truncated.jpg", 422, says="truncated")
def write_truncated_jpeg(path: Path) -> None:
    data = encode(digit(3), "JPEG", quality=90)
    path.write_bytes(data[: len(data) // 2])  # inside the entropy-coded scan


@case("bomb-50000x50000", "bomb.png", 413, says="2,500,000,000 pixels")
def write_bomb_50000x50000(path: Path) -> None:
    # A 2.5-gigapixel grayscale header over a few bytes of zeros: 2.5 GB if anyone decoded it.
    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(4096)))
                     + png_chunk(b"IEND", b""))


@case("huge-valid-24mp", "photo-24mp.jpg", 200, shows=8)
def write_huge_valid_24mp(path: Path) -> None:
    path.write_bytes(encode(digit(8, (6000, 4000)), "JPEG", quality=85))  # a 24-megapixel camera photo


@case("over-pixel-limit-48mp", "scan-48mp.png", 413, says="48,000,000 pixels")
def write_over_pixel_limit_48mp(path: Path) -> None:
    path.write_bytes(encode(Image.new("L", (8000, 6000), 255), "PNG", compress_level=1))  # valid, just too big


@case("text-named-png", "notes.png", 415, says="detected: text")
def write_text_named_png(path: Path) -> None:
    path.write_text("Shopping list: eggs, milk, 7 apples\n")


@case("svg", "seven.svg", 415, says="detected: SVG")
def write_svg(path: Path) -> None:
    path.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="28" height="28">'
                    '<text x="4" y="24" font-size="24">7</text></svg>\n')


@case("html", "seven.html", 415, says="detected: HTML")
def write_html(path: Path) -> None:
    path.write_text("<!DOCTYPE html><html><body><img src=x onerror=alert(1)>7</body></html>\n")


@case("outside-allow-list-ico", "favicon.ico", 415, says="detected: ICO")
def write_outside_allow_list_ico(path: Path) -> None:
    path.write_bytes(encode(digit(1, (64, 64)), "ICO"))  # Pillow reads ICO, but it is not an allowed format


@case("animated-gif", "animated.gif", 200, shows=4)
def write_animated_gif(path: Path) -> None:
    frames = [digit(4).convert("P"), digit(7).convert("P")]
    path.write_bytes(encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=200, loop=0))


@case("multi-page-tiff", "pages.tiff", 200, shows=2)
def write_multi_page_tiff(path: Path) -> None:
    path.write_bytes(encode(digit(2), "TIFF", save_all=True, append_images=[digit(8)]))


@case("16-bit-grayscale-png", "gray16.png", 200, shows=5)
def write_16_bit_grayscale_png(path: Path) -> None:
    # Paper 0.9, ink ~0.15 of the 16-bit range: clipping to 8 bits instead of scaling would make it all white.
    level = np.asarray(digit(5).convert("L"), np.float64) / 255 * 0.75 + 0.15
    image = Image.fromarray(np.round(level * 65535).astype(np.uint16))
    assert image.mode.startswith("I;16")
    path.write_bytes(encode(image, "PNG"))


@case("cmyk-jpeg", "cmyk.jpg", 200, shows=3)
def write_cmyk_jpeg(path: Path) -> None:
    path.write_bytes(encode(digit(3).convert("CMYK"), "JPEG", quality=90))


@case("palette-png-transparent", "palette.png", 200, shows=6)
def write_palette_png_transparent(path: Path) -> None:
    # Two palette entries of the same dark blue, the background one fully transparent: ignoring the transparency
    # gives a uniform blue page; only compositing onto white paper shows the 6.
    ink = np.asarray(digit(6).convert("L")) < 128
    image = Image.fromarray(np.where(ink, 1, 0).astype(np.uint8), "P")
    image.putpalette([20, 30, 120] * 2 + [0, 0, 0] * 254)
    path.write_bytes(encode(image, "PNG", transparency=0))


@case("one-pixel", "pixel.png", 200, shows=None)
def write_one_pixel(path: Path) -> None:
    path.write_bytes(encode(Image.new("L", (1, 1), 0), "PNG"))


@case("solid-colour", "blue.png", 200, shows=None)
def write_solid_colour(path: Path) -> None:
    path.write_bytes(encode(Image.new("RGB", (640, 480), (30, 144, 255)), "PNG"))


@case("exif-rotated-jpeg", "rotated.jpg", 200, shows=7)
def write_exif_rotated_jpeg(path: Path) -> None:
    # Stored turned a quarter to the left; EXIF orientation 6 says "turn 90 degrees clockwise to display".
    exif = Image.Exif()
    exif[0x0112] = 6
    path.write_bytes(encode(digit(7).transpose(Image.Transpose.ROTATE_90), "JPEG", quality=90, exif=exif))


@case("enormous-text-chunk", "comment-15mb.png", 200, shows=9)
def write_enormous_text_chunk(path: Path) -> None:
    comment = png_chunk(b"tEXt", b"Comment\x00" + b"A" * 15_000_000)  # metadata is skipped, the pixels are fine
    path.write_bytes(with_chunk(encode(digit(9), "PNG"), comment))


@case("compressed-text-bomb", "ztxt-bomb.png", 422, says="Decompressed data too large")
def write_compressed_text_bomb(path: Path) -> None:
    # 100 kB of zTXt that inflates to 100 MB: Pillow refuses text chunks over 1 MB decompressed.
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(100_000_000), 9))
    path.write_bytes(with_chunk(encode(digit(9), "PNG"), bomb))


@case("jpeg-scan-bomb", "scans.jpg", 422, says="JPEG has more than 100 scans", raises=ImageTooCostlyError)
def write_jpeg_scan_bomb(path: Path) -> None:
    # 2000 x 2000 white pixels with 20,000 copies of one scan: 0.3 MB that would take ~2 minutes to decode.
    path.write_bytes(jpeg_scan_bomb(2000, 20_000))


@case("jpeg-marker-flood", "comments.jpg", 422, says="more than 1,000 markers", raises=ImageTooCostlyError)
def write_jpeg_marker_flood(path: Path) -> None:
    # 100,000 empty comments before the image: Pillow would walk each one in Python before decoding.
    path.write_bytes(jpeg_with_comments(digit(3), 100_000))


@case("jpeg-fill-bytes", "fill.jpg", 422, says="stray bytes before its first scan", raises=ImageTooCostlyError)
def write_jpeg_fill_bytes(path: Path) -> None:
    # 2 MB of 0xFF fill before the first marker: allowed by the standard, but Pillow's header parser would step
    # through them one at a time in Python (~2 s) before libjpeg decoded the image.
    jpeg = encode(digit(5), "JPEG", quality=90)
    path.write_bytes(jpeg[:2] + b"\xff" * 2_000_000 + jpeg[2:])


def build_corpus(folder: Path) -> list[Case]:
    """Write every case into `folder` (created) and return them, file cases first, then the file-system ones."""
    folder.mkdir(parents=True, exist_ok=True)
    cases = []
    for item, write in _WRITERS:
        write(folder / item.path)
        cases.append(dataclasses.replace(item, path=folder / item.path))
    cases.append(Case("missing-path", folder / "no-such-file.png", 422, "no such file"))
    os.mkfifo(folder / "pipe.png")  # opening it for reading would wait for a writer forever
    cases.append(Case("named-pipe", folder / "pipe.png", 422, "not a regular file"))
    cases.append(Case("device", Path("/dev/zero"), 422, "not a regular file"))  # reading never ends
    cases.append(locked_folder(folder / "locked"))
    return cases


UPLOADS = [item.name for item, _ in _WRITERS]  # the cases that are file contents, so they can be uploaded too


def locked_folder(folder: Path) -> Case:
    """A folder with a digit inside and all permissions removed.

    Where permissions are enforced it is one unreadable input. Root (or CAP_DAC_OVERRIDE) reads it anyway, so
    there the digit inside is processed as usual; which of the two holds is checked, not assumed from the user id.
    """
    folder.mkdir()
    inside = folder / "three.png"
    digit(3).save(inside)
    folder.chmod(0)
    try:
        os.listdir(folder)
    except PermissionError:
        return Case("folder-without-permission", folder, 422, "permission denied")
    return Case("folder-without-permission", folder, 200, digit=3, reported=inside)


def unlock(cases: list[Case]) -> None:
    """Give locked folders their permissions back, so the temporary folder can be removed."""
    for item in cases:
        if item.name == "folder-without-permission":
            item.path.chmod(0o755)
