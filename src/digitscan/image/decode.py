"""The security boundary: any user image (path, bytes, PIL image, numpy array) -> (H, W) float32 grey in [0, 1].

`decode_image(source)` is the only place a user's bytes meet Pillow: a format allow-list, a pixel limit checked
from the header before decoding, a byte limit on files, a bound on a JPEG's scans and markers (its decoding cost)
checked before Pillow reads it, and one ImageError subclass (digitscan.errors) for every way an input can be bad.
1.0 = white, native resolution.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digitscan.constants import (
    ALLOWED_FORMATS,
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    MAX_JPEG_MARKERS,
    MAX_JPEG_SCAN_PIXELS,
    MAX_JPEG_SCANS,
    MAX_JPEG_STRAY_BYTES,
    MAX_PIXELS,
)
from digitscan.errors import (
    ImageError,
    ImageTooCostlyError,
    ImageTooLargeError,
    NoImagesError,
    UnreadableImageError,
    UnsupportedImageError,
    one_line,
)
from digitscan.image.jpeg import SIGNATURE as JPEG_SIGNATURE
from digitscan.image.jpeg import jpeg_structure

NO_PIXEL_LIMIT = 2**62  # arrays handed to to_model_input / ink_map are already in memory
_STRIP_PIXELS = 2**20  # decoded images become float a strip of about this many pixels at a time
_FORMAT_NAMES = {"JPEG": "JPEG", "PNG": "PNG", "BMP": "BMP", "GIF": "GIF", "TIFF": "TIFF", "WEBP": "WebP"}
_ALLOWED_TEXT = ", ".join(_FORMAT_NAMES[f] for f in ALLOWED_FORMATS)


# Pillow's own decompression-bomb guard at our ceiling: Image.open raises for headers over 2 * MAX_PIXELS and
# warns above MAX_PIXELS. The warning is silenced because decode_image refuses every such image itself, with its
# size, right after reading the header (its own max_pixels, at most MAX_PIXELS); as a printed warning it would only
# add a second, cryptic line to the CLI's one line per bad file.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# Pillow plugins raise many exception types on malformed data (struct.error and IndexError from TIFF tags,
# zlib.error from PNG, EOFError from GIF); every one of them means "this upload is broken", never a server bug.
_DECODER_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError, KeyError, TypeError,
)


def decode_image(source, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES,
                 min_side: int | None = None) -> np.ndarray:
    """Decode a path, encoded bytes, a PIL image or a numpy array into a (H, W) float32 array in [0, 1].

    min_side: the resolution the caller needs; a JPEG file is then decoded at the smallest of libjpeg's DCT scales
    (1/2, 1/4, 1/8) that keeps its longer side at least this long, which costs a fraction of a full decode (a 12 MP
    photo for one digit). None: native resolution, as `read` needs it (boxes are in the file's pixels).

    Image files follow the paper convention 1.0 = white. Numpy arrays are taken as grayscale intensity as given:
    uint8 / 255, uint16 / 65535, bool, other integers by their 8- or 16-bit range, floats as [0, 1] when their
    max is <= 1 else as [0, 255]; (H, W, 3) is converted to luma and (H, W, 4) is composited onto white. A float32
    (H, W) array already in [0, 1] is returned as it is, not copied.
    `bytes` are always file contents, never a path. Any bad input raises an ImageError subclass (a source of
    another Python type is a programming error: TypeError).
    """
    if isinstance(source, np.ndarray):
        return gray_from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        return _decode_pil(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(source), max_pixels, max_bytes, min_side)
    if isinstance(source, (str, os.PathLike)):
        return _decode_bytes(_read_file(Path(source), max_bytes), max_pixels, max_bytes, min_side)
    raise TypeError(f"expected a path, bytes, PIL.Image.Image or numpy array, got {type(source).__name__}")


def _read_file(path: Path, max_bytes: int) -> bytes:
    """A regular file's bytes, never more than max_bytes + 1 read: a folder, a device or a named pipe is refused
    (reading /dev/zero never ends, opening a pipe waits for a writer), as is a file over max_bytes."""
    try:
        # O_NONBLOCK: opening a named pipe returns at once instead of waiting; regular files read as usual.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            info = os.fstat(descriptor)  # of what was opened, so a file swapped after a check cannot slip through
            if stat.S_ISDIR(info.st_mode):
                looked_for = ", ".join(sorted(IMAGE_SUFFIXES))
                raise NoImagesError(f"no image file in folder '{path}' (looked for {looked_for})")
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableImageError(f"not a regular file (a device, pipe or socket): '{path}'")
            if info.st_size > max_bytes:
                raise ImageTooLargeError(f"file is too large: {info.st_size:,} bytes; limit is {max_bytes:,}")
            with open(descriptor, "rb", closefd=False) as file:
                data = file.read(max_bytes + 1)
        finally:
            os.close(descriptor)
    except FileNotFoundError:
        raise UnreadableImageError(f"no such file: '{path}'") from None
    except PermissionError:
        kind = "folder" if path.is_dir() else "file"
        raise UnreadableImageError(f"permission denied: cannot read {kind} '{path}'") from None
    except OSError as err:  # e.g. name too long, I/O error
        raise UnreadableImageError(f"cannot read '{path}': {err.strerror or err}") from None
    if len(data) > max_bytes:  # it grew after the size check
        raise ImageTooLargeError(f"file is too large: more than {max_bytes:,} bytes")
    return data


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"image is too large: {width}x{height} = {width * height:,} pixels; limit is {max_pixels:,}"
        )


def _check_jpeg_cost(data: bytes, max_pixels: int) -> None:
    """Refuse a JPEG whose decoding would cost far more than its size suggests, from its marker list alone.

    libjpeg decodes every scan of a progressive JPEG over the whole image before it can go on, and a scan of a blank
    image is a few dozen bytes: 5 MB of one repeated scan is most of an hour of CPU. Allowed: MAX_JPEG_SCANS scans,
    fewer for a large image (scans x pixels <= MAX_JPEG_SCAN_PIXELS), MAX_JPEG_MARKERS segments in all, and
    MAX_JPEG_STRAY_BYTES outside any segment before the first scan (Pillow's header parser steps through those one
    at a time in Python).
    """
    counted = jpeg_structure(data, stop_after=(MAX_JPEG_SCANS, MAX_JPEG_MARKERS))
    _check_pixels(counted.width, counted.height, max_pixels)  # a header over the limit is "too large", not costly
    if counted.stray_bytes > MAX_JPEG_STRAY_BYTES:
        raise ImageTooCostlyError(f"JPEG has {counted.stray_bytes:,} stray bytes before its first scan; the limit is "
                                  f"{MAX_JPEG_STRAY_BYTES:,}")
    if counted.markers > MAX_JPEG_MARKERS:
        raise ImageTooCostlyError(f"JPEG has more than {MAX_JPEG_MARKERS:,} markers; the limit is {MAX_JPEG_MARKERS:,}")
    pixels = counted.width * counted.height
    allowed = min(MAX_JPEG_SCANS, max(1, MAX_JPEG_SCAN_PIXELS // pixels)) if pixels else MAX_JPEG_SCANS
    if counted.scans > allowed:
        # The walk stops counting past MAX_JPEG_SCANS, so beyond it the message cannot name the full count.
        found = f"{counted.scans:,}" if counted.scans <= MAX_JPEG_SCANS else f"more than {MAX_JPEG_SCANS:,}"
        size = f" at {counted.width}x{counted.height} pixels" if allowed < MAX_JPEG_SCANS else ""
        raise ImageTooCostlyError(f"JPEG has {found} scans; the limit is {allowed:,}{size}")


def _bomb_error(err: Exception, max_pixels: int) -> ImageTooLargeError:
    """Pillow's decompression-bomb guard refused a header: say how large, like _check_pixels does."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    if found is None:
        return ImageTooLargeError(f"image is too large: {one_line(err)}")
    limit = min(max_pixels, MAX_PIXELS)
    return ImageTooLargeError(f"image is too large: {int(found[1]):,} pixels; limit is {limit:,}")


def _decode_bytes(data: bytes, max_pixels: int, max_bytes: int, min_side: int | None = None) -> np.ndarray:
    if not data:
        raise UnreadableImageError("empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"file is too large: {len(data):,} bytes; limit is {max_bytes:,}")
    if data.startswith(JPEG_SIGNATURE):  # before Image.open: Pillow walks the markers up to the first scan in Python
        _check_jpeg_cost(data, max_pixels)
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb_error(err, max_pixels) from None  # Pillow's guard: the header claims more than MAX_PIXELS
    except UnidentifiedImageError:
        raise _unidentified_error(data) from None
    except _DECODER_ERRORS as err:
        raise UnreadableImageError(f"cannot read image header: {one_line(err)}") from None
    with image:
        return _decode_pil(image, max_pixels, owned=True, min_side=min_side)


def _decode_pil(image: Image.Image, max_pixels: int, owned: bool = False, min_side: int | None = None) -> np.ndarray:
    """Check the size (known from the header before any pixel is decoded), then decode the first frame.

    owned: the image was opened here, so its decoded pixels may be released as soon as the grey copy exists, and
    a JPEG may be decoded straight to grey (libjpeg's Y, the same ITU-R 601 luma) and, given min_side, at a
    reduced scale.
    """
    _check_pixels(image.width, image.height, max_pixels)
    try:
        if owned and image.format == "JPEG" and image.mode in ("RGB", "YCbCr", "L"):
            scale = max(1, max(image.size) // min_side) if min_side else 1
            image.draft("L", (image.width // scale, image.height // scale))  # before load: decoding is configured
        image.load()  # only the first frame of GIF / TIFF / WebP; we never seek
        return _unit_float(*_gray_band(image, owned))
    except ImageError:
        raise  # already says what is wrong (NaN pixels); not a decoder failure to rephrase
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb_error(err, max_pixels) from None
    except _DECODER_ERRORS as err:
        name = _FORMAT_NAMES.get(image.format or "", "image")
        raise UnreadableImageError(f"cannot decode {name} data (truncated or corrupt): {one_line(err)}") from None


def _unidentified_error(data: bytes) -> ImageError:
    """Pillow could not identify the bytes: a damaged allowed format (422) or something else entirely (415)."""
    head = data[:1024]
    signatures = {
        "PNG": (b"\x89PNG\r\n\x1a\n",),
        "JPEG": (b"\xff\xd8\xff",),
        "GIF": (b"GIF87a", b"GIF89a"),
        "BMP": (b"BM",),
        "TIFF": (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),
    }
    for name, magics in signatures.items():
        if head.startswith(magics):
            return UnreadableImageError(f"corrupt or truncated {_FORMAT_NAMES[name]} file")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return UnreadableImageError("corrupt or truncated WebP file")
    detected = _describe_content(head)
    return UnsupportedImageError(f"not a supported image (detected: {detected}); allowed: {_ALLOWED_TEXT}")


def _describe_content(head: bytes) -> str:
    """A short human name for what the bytes look like, for the 415 message."""
    lower = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if lower.startswith(b"%pdf"):
        return "PDF document"
    if b"<svg" in lower[:1024]:
        return "SVG text"
    if lower.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "HTML text"
    if lower.startswith(b"<?xml"):
        return "XML text"
    if head.startswith(b"PK\x03\x04"):
        return "ZIP archive"
    if head.startswith(b"\x1f\x8b"):
        return "gzip data"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF image"
        if brand in (b"heic", b"heix", b"hevc", b"mif1", b"msf1"):
            return "HEIF/HEIC image"
        return "MP4/QuickTime media"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ICO image"
    if head.startswith(b"8BPS"):
        return "Photoshop PSD"
    if head.startswith(b"\x00\x00\x00\x0cjP  "):
        return "JPEG 2000 image"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown binary data"
    if text.lstrip().startswith(("{", "[")):
        return "JSON text"
    return "text" if all(ch.isprintable() or ch in "\t\r\n" for ch in text) else "unknown binary data"


def _gray_band(image: Image.Image, owned: bool) -> tuple[Image.Image, bool]:
    """Any Pillow mode -> (one band: L, I;16*, I, F or LAB; whether it is ours), upright, alpha composited on white.

    Memory: an image that is ours (owned: opened by decode_image, or made here) is closed as soon as its converted
    copy exists, and colour becomes one-byte bands a strip at a time, so next to the decoded original (at most
    4 bytes per pixel) there are only one-byte bands; a palette or colour-keyed image first becomes RGBA.
    """
    image, owned = _superseded(image, _upright(image), owned)
    if image.mode.startswith("I;16") or image.mode in ("I", "F", "LAB"):
        return image, owned  # 16-bit, 32-bit integer and float pixels, and CIE L*, are scaled in _unit_float
    if image.has_transparency_data:
        if image.mode in ("La", "RGBa"):  # premultiplied: Pillow only unpremultiplies into LA / RGBA
            image, owned = _superseded(image, image.convert(image.mode.upper()), owned)
        elif image.mode not in ("RGBA", "LA", "PA"):  # a transparency key (P, RGB, L) becomes an alpha band
            image, owned = _superseded(image, image.convert("RGBA"), owned)
        # ITU-R 601 luma first (as Pillow's "L"), then alpha onto white: the same as compositing the colours,
        # because luma is linear and white has luma 255. One byte per pixel each (Pillow stores LA in four).
        alpha = image.getchannel("A")
        luma, owned = _superseded(image, _luma(image), owned)
        return Image.composite(luma, Image.new("L", luma.size, 255), alpha), True
    if image.mode != "L":
        image, owned = _superseded(image, _luma(image), owned)
    return image, owned


def _luma(image: Image.Image) -> Image.Image:
    """ITU-R 601 luma ("L") of any colour mode, converted a strip at a time: CMYK, for one, goes through RGB, and a
    whole-image conversion would hold that 4-byte-per-pixel intermediate too. RGB(A), CMYK, YCbCr, HSV, P, 1-bit."""
    width, height = image.size
    luma = Image.new("L", image.size)
    rows = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        luma.paste(image.crop((0, top, width, min(height, top + rows))).convert("L"), (0, top))
    return luma


def _superseded(old: Image.Image, new: Image.Image, owned: bool) -> tuple[Image.Image, bool]:
    """`new` replaces `old`: close `old` when it is ours, so its pixel memory goes back at once."""
    if new is old:
        return old, owned
    if owned:
        old.close()
    return new, True


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF (or XMP) orientation; no copy when there is none."""
    try:
        if image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
            return ImageOps.exif_transpose(image)
    except _DECODER_ERRORS:
        pass  # a broken EXIF block must not cost the user the picture; the pixels are fine, only unrotated
    return image


def _unit_float(band: Image.Image, owned: bool) -> np.ndarray:
    """A band from _gray_band -> (H, W) float32 in [0, 1], 1.0 = white.

    Filled a strip at a time and scaled in place: the band and the float result are the only full-size copies
    (np.asarray of a whole image would add one or two transient byte copies of it).
    """
    if band.mode == "LAB":
        return _lightness_to_luma(np.asarray(band.getchannel("L"), dtype=np.float32) / np.float32(255))
    width, height = band.size
    gray = np.empty((height, width), np.float32)
    rows = max(1, _STRIP_PIXELS // max(1, width))
    for top in range(0, height, rows):
        # (rows, W) uint8, uint16 (either byte order), int32 or float32 -> float32
        gray[top : top + rows] = np.asarray(band.crop((0, top, width, min(height, top + rows))))
    if owned:
        band.close()
    if band.mode in ("I", "F"):
        return _scale_wide_values(gray, nominal_max=65535.0 if band.mode == "I" else 1.0)
    gray /= np.float32(65535 if band.mode.startswith("I;16") else 255)  # 16-bit: the full range, never clipped
    return gray


def _scale_wide_values(gray: np.ndarray, nominal_max: float) -> np.ndarray:
    """32-bit integer or float pixels (as float32, scaled in place): divide by the nominal range, else stretch."""
    low, high = float(gray.min()), float(gray.max())  # NaN anywhere makes both NaN: no full-size mask needed
    if not (np.isfinite(low) and np.isfinite(high)):
        raise UnreadableImageError("image contains NaN or infinite pixel values")
    if low >= 0 and high <= nominal_max:
        gray /= np.float32(nominal_max)
    elif high == low:
        gray[...] = 0
    else:
        gray -= np.float32(low)
        gray /= np.float32(high - low)
    return gray


def _lightness_to_luma(lightness: np.ndarray) -> np.ndarray:
    """CIE L* (as 0..1) -> sRGB-encoded grey, so a LAB image matches the same picture saved as RGB."""
    l_star = lightness * 100
    linear = np.where(l_star > 8, ((l_star + 16) / 116) ** 3, l_star / 903.3)
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.clip(encoded, 0, 1).astype(np.float32)


def gray_from_array(array: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A numpy image as given (grayscale intensity) -> (H, W) float32 in [0, 1]; see decode_image."""
    array = np.asarray(array)
    if array.size == 0:
        raise UnreadableImageError(f"empty image array (shape {array.shape})")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise UnsupportedImageError(
            f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got shape {array.shape}"
        )
    _check_pixels(array.shape[1], array.shape[0], max_pixels)
    values = _unit_range(array)
    if values.ndim == 2:
        return values
    luma = values[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601, as Pillow's "L"
    if values.shape[2] == 4:
        alpha = values[:, :, 3]
        luma = luma * alpha + (1 - alpha)  # transparent = white paper, as for image files
    return np.clip(luma, 0, 1).astype(np.float32)


def _unit_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint8:
        return _scaled_copy(array, 255)
    if array.dtype == np.uint16:
        return _scaled_copy(array, 65535)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low >= 0 and high <= 255:
            return _scaled_copy(array, 255)
        if low >= 0 and high <= 65535:
            return _scaled_copy(array, 65535)
        raise UnreadableImageError(f"integer pixel values must lie in 0..255 or 0..65535, got {low}..{high}")
    if np.issubdtype(array.dtype, np.floating):
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused just below
            values = array.astype(np.float32, copy=False)  # float32 input is used as it is: no copy of a large image
        low, high = float(values.min()), float(values.max())  # NaN anywhere makes both NaN
        if not (np.isfinite(low) and np.isfinite(high)):
            raise UnreadableImageError("image array contains NaN or infinite values")
        if low < 0 or high > 255:
            raise UnreadableImageError(f"float pixel values must lie in [0, 1] or [0, 255], got {low:g}..{high:g}")
        return values if high <= 1 else values / np.float32(255)
    raise UnsupportedImageError(f"unsupported image array dtype: {array.dtype}")


def _scaled_copy(array: np.ndarray, full_scale: int) -> np.ndarray:
    values = array.astype(np.float32)
    values /= np.float32(full_scale)  # in place: one float copy of the image, not two
    return values
