"""The one preprocessing path: any user image (file, bytes, PIL image, numpy array) -> the model's 28x28 input.

Use `preprocess(source)`; or `decode_image` then `to_model_input`; `ink_map` and `fit_to_mnist_box` serve the segmenter.
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

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from digitscan.constants import DIGIT_BOX, IMAGE_SIZE

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")
MAX_PIXELS = 40_000_000  # default limit on width * height, checked from the header before decoding
MAX_FILE_BYTES = 20 * 2**20
PREPROCESS_MODES = ("robust", "paper")

# Robust-mode tuning. Each value is a ratio or a level on the [0, 1] scale, so it does not depend on image size.
WORK_SIDE = 512  # longer side of the working copy: ~10x a digit's 20 px box is plenty and keeps 12 MP photos fast
_BACKGROUND_SIDE = 64  # the smooth background estimate is fitted on a copy this small
_BACKGROUND_ROUNDS = 4  # robust refits of the background surface; the inlier set settles after two or three
_MIN_INK_CONTRAST = 0.1  # ink must differ from the paper by this much (uniform greys and JPEG noise do not)
_NOISE_FACTOR = 4.0  # ...and by this many robust noise sigmas (pure noise has no ink)
_SPECK_FRACTION = 0.05  # components with less area than this fraction of the largest are specks
_MIN_INK_EXTENT = 0.02  # a component spanning less than this fraction of the image's longer side is dust
_MNIST_STROKE_FRACTION = 0.1  # MNIST pens are 2-3 px in the 20 px box; thinner strokes are thickened to this
_NO_PIXEL_LIMIT = 2**62  # arrays handed to to_model_input / ink_map are already in memory
_STRIP_PIXELS = 2**20  # decoded images become float a strip of about this many pixels at a time
_MAD_TO_SIGMA = 1.4826  # median absolute deviation -> standard deviation for Gaussian noise
_MIN_PAPER_LEVEL = 0.1  # paper darker than this is not divided out (it would only amplify noise)
_LIGHT_GROUND = 0.35  # light ink is only looked for on a ground darker than this (median of the image)

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


class ImageError(ValueError):
    """The input cannot be turned into a digit image; the message is one line meant for the user."""


class UnsupportedImageError(ImageError):
    """Not an image at all, or a format outside ALLOWED_FORMATS (HTTP 415)."""


class ImageTooLargeError(ImageError):
    """More pixels or bytes than the limits allow (HTTP 413)."""


class UnreadableImageError(ImageError):
    """Empty, truncated, corrupt or otherwise undecodable input (HTTP 422)."""


class ImageTooComplexError(ImageError):
    """Reading the image took longer than its time limit: thousands of strokes, not a number (HTTP 422)."""


# ----------------------------------------------------------------------------------------------------------------
# Decoding: source -> 2-D float32 grayscale in [0, 1], 1.0 = white, native resolution.
# ----------------------------------------------------------------------------------------------------------------


def decode_image(source, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """Decode a path, encoded bytes, a PIL image or a numpy array into a (H, W) float32 array in [0, 1].

    Image files follow the paper convention 1.0 = white. Numpy arrays are taken as grayscale intensity as given:
    uint8 / 255, uint16 / 65535, bool, other integers by their 8- or 16-bit range, floats as [0, 1] when their
    max is <= 1 else as [0, 255]; (H, W, 3) is converted to luma and (H, W, 4) is composited onto white. A float32
    (H, W) array already in [0, 1] is returned as it is, not copied.
    `bytes` are always file contents, never a path. Any bad input raises an ImageError subclass (a source of
    another Python type is a programming error: TypeError).
    """
    if isinstance(source, np.ndarray):
        return _gray_from_array(source, max_pixels)
    if isinstance(source, Image.Image):
        return _decode_pil(source, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _decode_bytes(bytes(source), max_pixels, max_bytes)
    if isinstance(source, (str, os.PathLike)):
        return _decode_bytes(_read_file(Path(source), max_bytes), max_pixels, max_bytes)
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
                raise UnreadableImageError(f"is a directory, not an image file: '{path}'")
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


def _bomb_error(err: Exception, max_pixels: int) -> ImageTooLargeError:
    """Pillow's decompression-bomb guard refused a header: say how large, like _check_pixels does."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    if found is None:
        return ImageTooLargeError(f"image is too large: {_one_line(err)}")
    limit = min(max_pixels, MAX_PIXELS)
    return ImageTooLargeError(f"image is too large: {int(found[1]):,} pixels; limit is {limit:,}")


def _decode_bytes(data: bytes, max_pixels: int, max_bytes: int) -> np.ndarray:
    if not data:
        raise UnreadableImageError("empty file (0 bytes)")
    if len(data) > max_bytes:
        raise ImageTooLargeError(f"file is too large: {len(data):,} bytes; limit is {max_bytes:,}")
    try:
        image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb_error(err, max_pixels) from None  # Pillow's guard: the header claims more than MAX_PIXELS
    except UnidentifiedImageError:
        raise _unidentified_error(data) from None
    except _DECODER_ERRORS as err:
        raise UnreadableImageError(f"cannot read image header: {_one_line(err)}") from None
    with image:
        return _decode_pil(image, max_pixels, owned=True)


def _decode_pil(image: Image.Image, max_pixels: int, owned: bool = False) -> np.ndarray:
    """Check the size (known from the header before any pixel is decoded), then decode the first frame.

    owned: the image was opened here, so its decoded pixels may be released as soon as the grey copy exists.
    """
    _check_pixels(image.width, image.height, max_pixels)
    try:
        image.load()  # only the first frame of GIF / TIFF / WebP; we never seek
        return _unit_float(*_gray_band(image, owned))
    except ImageError:
        raise  # already says what is wrong (NaN pixels); not a decoder failure to rephrase
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _bomb_error(err, max_pixels) from None
    except _DECODER_ERRORS as err:
        name = _FORMAT_NAMES.get(image.format or "", "image")
        raise UnreadableImageError(f"cannot decode {name} data (truncated or corrupt): {_one_line(err)}") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


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


def _gray_from_array(array: np.ndarray, max_pixels: int = MAX_PIXELS) -> np.ndarray:
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


# ----------------------------------------------------------------------------------------------------------------
# Model input: grayscale -> (IMAGE_SIZE, IMAGE_SIZE) float32, ink = 1.0, background = 0.0.
# ----------------------------------------------------------------------------------------------------------------


def preprocess(
    source, mode: str = "robust", *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> np.ndarray:
    """decode_image then to_model_input: the model's (28, 28) float32 input from any supported source."""
    _check_mode(mode)
    return to_model_input(decode_image(source, max_pixels=max_pixels, max_bytes=max_bytes), mode)


def to_model_input(gray: np.ndarray, mode: str = "robust") -> np.ndarray:
    """A grayscale image (as decode_image returns; other numpy images are normalised the same way) -> (28, 28).

    "robust": find the ink whatever its polarity and the lighting, crop it, fit it into DIGIT_BOX and centre it by
    mass like MNIST; no ink -> all zeros. "paper": the reproduced paper's pipeline, a plain bilinear resize without
    inversion (a black-on-white photo stays background ~1).
    """
    _check_mode(mode)
    gray = _gray_from_array(gray, max_pixels=_NO_PIXEL_LIMIT)  # already in memory: no size limit here
    if mode == "paper":
        # Keras load_img(target_size=...) resizes without antialiasing; cv2's INTER_LINEAR matches that.
        resized = cv2.resize(gray, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
        return np.clip(resized, 0, 1).astype(np.float32)
    ink, _ = _ink_map(gray)
    rows, cols = np.nonzero(ink)
    if rows.size == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return fit_to_mnist_box(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])


def _check_mode(mode: str) -> None:
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; valid modes: {', '.join(PREPROCESS_MODES)}")


def ink_map(gray: np.ndarray, *, speck_fraction: float = _SPECK_FRACTION) -> tuple[np.ndarray, float]:
    """Where the ink is: (ink, scale), ink float32 in [0, 1] with ink bright and background exactly 0.

    Images whose longer side exceeds WORK_SIDE are first downscaled (area interpolation) for speed, so `ink` has
    the working size and `scale` = ink side / gray side (1.0 when not downscaled); a box found in `ink` maps
    back to input pixels by dividing by `scale`. No ink (blank, uniform, pure noise, only dust) -> all zeros.
    speck_fraction: strokes with less area than this fraction of the largest are dropped as specks; a reader of
    whole numbers passes 0 (a thin "1" is small next to an underline touching ten digits) and judges specks itself.
    """
    return _ink_map(_gray_from_array(gray, max_pixels=_NO_PIXEL_LIMIT), speck_fraction)


def _ink_map(gray: np.ndarray, speck_fraction: float = _SPECK_FRACTION) -> tuple[np.ndarray, float]:
    """ink_map for an already validated (H, W) float32 array in [0, 1]."""
    work, scale = _downscale(gray, WORK_SIDE)

    # Background without knowing the polarity yet: a robust fit ignores the ink, which is a minority of the pixels.
    background = _background(work)
    residual = work - background  # (h, w), ink is far from 0 on one side
    margin = 3 * _robust_sigma(residual) + 0.02  # deviations smaller than this are paper texture, not ink
    dark_mass = float(np.clip(-residual - margin, 0, None).sum())
    light_mass = float(np.clip(residual - margin, 0, None).sum())
    if dark_mass == light_mass:
        # Neither stands out from the smooth fit, whose residuals a sharp shadow edge can inflate: compare what
        # a closing (dark strokes) and an opening (light strokes) a little wider than a typical pen take away.
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (int(max(work.shape) / 15) | 1,) * 2)
        dark_mass = float(np.quantile(cv2.morphologyEx(work, cv2.MORPH_CLOSE, kernel) - work, 0.995))
        light_mass = float(np.quantile(work - cv2.morphologyEx(work, cv2.MORPH_OPEN, kernel), 0.995))
    if dark_mass <= light_mass and (dark_mass == 0 or float(np.median(work)) < _LIGHT_GROUND):
        # Light ink on a dark ground (MNIST itself, chalkboards, canvases): the ground is ~0, no division. On a
        # light ground, "light ink" is a bright patch of a photographed sheet (a lamp's spot beside a shadow).
        return _strokes_from(residual, speck_fraction, work.shape), scale
    # Dark ink on paper: what we see is reflectance x illumination, so dividing by the paper level makes a stroke
    # in a shadow as strong as one in full light. A first look with the smooth paper level measures the pen;
    # the second measures the paper level locally, wider than the pen, which follows a sharp shadow edge too.
    first = _strokes_from(-residual / np.maximum(background, _MIN_PAPER_LEVEL), speck_fraction, work.shape)
    pen = _stroke_width(first > 0) if first.any() else max(work.shape) / 50  # > 0: blurred edges count too
    paper = _local_paper_level(work, pen)
    ink = _strokes_from((paper - work) / np.maximum(paper, _MIN_PAPER_LEVEL), speck_fraction, work.shape)
    return (ink if ink.any() else first), scale


def _local_paper_level(work: np.ndarray, pen: float) -> np.ndarray:
    """The paper's brightness around each pixel: a grey closing wider than the pen, which fills in dark strokes but
    keeps broad shadows and the sharp edge of a sheet (the input is smoothed first so noise does not lift it)."""
    side = int(min(max(3 * pen + 3, 9), max(work.shape) / 2)) | 1
    smooth = cv2.GaussianBlur(work, (0, 0), 1.0) if min(work.shape) >= 3 else work
    return cv2.morphologyEx(smooth, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (side, side)))


def _strokes_from(signed: np.ndarray, speck_fraction: float, shape: tuple[int, int]) -> np.ndarray:
    """Ink contrast (ink positive, background ~0) -> the soft ink map of the strokes, or all zeros for no ink."""
    empty = np.zeros(shape, np.float32)
    signed = signed - np.median(signed)  # the background (most pixels) at 0, whichever way its level was found
    noise = _robust_sigma(signed)
    raw = np.clip(signed, 0, None)

    # Detect on a lightly smoothed copy: iid noise shrinks ~4x under a sigma=1 blur while strokes keep their level.
    smooth = cv2.GaussianBlur(raw, (0, 0), 1.0) if min(raw.shape) >= 3 else raw
    peak = float(smooth.max())
    if peak < max(_MIN_INK_CONTRAST, _NOISE_FACTOR * noise):
        return empty
    threshold = max(_otsu(smooth / peak) * peak, 2 * noise)
    strokes = _select_strokes(smooth > threshold, min_extent=_MIN_INK_EXTENT * max(shape),
                              speck_fraction=speck_fraction)
    if strokes is None:
        return empty

    # Soft output: keep antialiased edges next to the strokes, saturate the stroke cores to 1 like MNIST's pen.
    keep = cv2.dilate(strokes.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    floor = 2 * noise
    level = float(np.quantile(raw[strokes], 0.9))
    if level <= floor:
        return empty
    return np.where(keep, np.clip((raw - floor) / (level - floor), 0, 1), 0).astype(np.float32)


def _robust_sigma(values: np.ndarray) -> float:
    """Noise standard deviation that ignores the ink (a minority): 1.4826 x median absolute deviation."""
    return _MAD_TO_SIGMA * float(np.median(np.abs(values - np.median(values))))


def _downscale(gray: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    height, width = gray.shape
    if max(height, width) <= max_side:
        return gray, 1.0
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # cv2 wants (w, h)
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA), size[1] / height


def _background(work: np.ndarray) -> np.ndarray:
    """Smooth paper level: a quadratic surface fitted to the pixels that are not ink, on a small copy.

    Light across a sheet (a gradient, vignetting) is smooth, so six coefficients describe it. Ink, and a desk
    around the sheet, are a minority of pixels with large residuals: each round refits to the inliers only.
    """
    small, _ = _downscale(work, _BACKGROUND_SIDE)
    level = float(np.median(small))
    if min(small.shape) < 3:
        return np.full(work.shape, level, np.float32)
    columns, rows = _unit_coordinates(*small.shape)
    terms = np.stack(np.broadcast_arrays(1.0, columns, rows, columns**2, columns * rows, rows**2), -1).reshape(-1, 6)
    values = small.reshape(-1).astype(np.float64)
    coefficients = np.array([level, 0, 0, 0, 0, 0])
    for _ in range(_BACKGROUND_ROUNDS):
        residual = values - terms @ coefficients
        inliers = np.abs(residual) <= 2.5 * _robust_sigma(residual) + 1 / 255  # 1/255: one grey level of slack
        chosen = terms[inliers]
        # Normal equations with a whisker of ridge: a 6x6 solve, fast and defined even for degenerate inlier sets.
        coefficients = np.linalg.solve(chosen.T @ chosen + 1e-6 * np.eye(6), chosen.T @ values[inliers])
    columns, rows = _unit_coordinates(*work.shape)
    c = coefficients
    surface = c[0] + c[1] * columns + c[2] * rows + c[3] * columns**2 + c[4] * columns * rows + c[5] * rows**2
    return surface.astype(np.float32)  # (h, w)


def _unit_coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] as a (1, w) row and an (h, 1) column, the same at any resolution."""
    columns = (np.arange(width) + 0.5) / width * 2 - 1
    rows = (np.arange(height) + 0.5) / height * 2 - 1
    return columns[None, :], rows[:, None]


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold of values in [0, 1], returned on the same scale."""
    threshold, _ = cv2.threshold(np.round(values * 255).astype(np.uint8), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return threshold / 255


def _select_strokes(mask: np.ndarray, min_extent: float, speck_fraction: float = _SPECK_FRACTION) -> np.ndarray | None:
    """Keep the connected components that look like pen strokes; None when nothing is left.

    Dropped: dust (spanning less than min_extent px), specks much smaller than the largest component, and the desk
    around a photographed sheet (touching a side of the image and running along most of it, or a thin band along
    much of it) unless nothing else is left, which is the case of a digit cropped tightly by the user.
    """
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    left, top, width, height, area = stats[1:].T  # (n,) each; label 0 is the background
    extents = np.maximum(width, height)
    rows, cols = mask.shape
    # Desk: along most of a side, or a band along much of it (the strip of desk between a sheet and the frame).
    along_side = (((top == 0) | (top + height == rows)) & ((width >= 0.9 * cols) | (
        (width >= 0.6 * cols) & (height <= 0.15 * rows)))) | (((left == 0) | (left + width == cols)) & (
            (height >= 0.9 * rows) | ((height >= 0.6 * rows) & (width <= 0.15 * cols))))
    candidates = extents >= min_extent
    if (candidates & ~along_side).any():
        candidates &= ~along_side
    areas = np.where(candidates, area, 0)
    if not areas.any():
        return None
    kept = np.flatnonzero(areas >= max(1, speck_fraction * areas.max())) + 1
    return np.isin(labels, kept)


def fit_to_mnist_box(ink_crop: np.ndarray) -> np.ndarray:
    """A cropped ink patch (ink bright, background 0) -> (28, 28) float32 the way MNIST was made.

    Thin strokes are thickened towards MNIST's pen width, the patch is resized so its longer side is DIGIT_BOX
    (aspect kept, area interpolation when shrinking), pasted so its centre of mass lands on pixel
    IMAGE_SIZE // 2 (integer shift, as the MNIST digits themselves are), and scaled so the maximum is 1.0.
    """
    patch = np.asarray(ink_crop, dtype=np.float32)
    if patch.ndim != 2 or patch.size == 0:
        raise ValueError(f"expected a non-empty 2-D ink patch, got shape {patch.shape}")
    patch = np.clip(np.nan_to_num(patch, nan=0.0, posinf=0.0, neginf=0.0), 0, None)
    rows, cols = np.nonzero(patch)
    if rows.size == 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    patch = patch[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    patch = _thicken_thin_strokes(patch / patch.max())

    height, width = patch.shape
    factor = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))  # (w, h)
    if size != (width, height):
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        patch = np.clip(cv2.resize(patch, size, interpolation=interpolation), 0, None)
    if patch.max() <= 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return _paste_centred_by_mass(patch / patch.max())


def _thicken_thin_strokes(patch: np.ndarray) -> np.ndarray:
    """Dilate strokes thinner than MNIST's pen (relative to the patch) so they survive the shrink to DIGIT_BOX."""
    target = _MNIST_STROKE_FRACTION * max(patch.shape)
    if target < 3:  # at about box scale a 1 px dilation would change the digit more than it helps
        return patch
    width = _stroke_width(patch > 0.5)
    if width >= 0.75 * target:
        return patch
    kernel_side = int(round(target - width)) | 1  # dilation by a k-wide disc widens a stroke by k - 1
    radius = kernel_side // 2
    padded = cv2.copyMakeBorder(patch, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(padded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_side, kernel_side)))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width ~ area / half the outline length (a stroke of length L and width w has outline ~2L)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    outline = sum(cv2.arcLength(contour, True) for contour in contours)
    return 2 * float(mask.sum()) / max(outline, 1.0)


def _paste_centred_by_mass(patch: np.ndarray) -> np.ndarray:
    """Place a (h, w) patch, h, w <= DIGIT_BOX, in the IMAGE_SIZE frame with its centre of mass at the centre."""
    height, width = patch.shape
    total = float(patch.sum())
    mass_row = float((patch.sum(axis=1) * np.arange(height)).sum()) / total
    mass_col = float((patch.sum(axis=0) * np.arange(width)).sum()) / total
    centre = IMAGE_SIZE // 2  # MNIST's centres of mass sit on pixel 14 (measured: mean 13.99, 14.01)
    # Integer shift keeps the pixels sharp; clamping keeps a lopsided digit (a "7") entirely in the frame.
    top = int(np.clip(round(centre - mass_row), 0, IMAGE_SIZE - height))
    left = int(np.clip(round(centre - mass_col), 0, IMAGE_SIZE - width))
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    out[top : top + height, left : left + width] = patch
    return out
