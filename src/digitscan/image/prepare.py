"""The one preprocessing path: a decoded grey image -> the model's (28, 28) input, the way MNIST was made.

`preprocess(source)` = `decode_for_digit` then `to_model_input`; `fit_to_mnist_box` turns a cropped ink patch into
the model's input and serves the line readers too.
"""

from __future__ import annotations

import cv2
import numpy as np

from digitscan.constants import (
    DIGIT_BOX,
    DIGIT_WORK_SIDE,
    IMAGE_SIZE,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    PREDICT_DECODE_SIDE,
    PREDICT_WORK_SIDE,
    PREPROCESS_MODES,
)
from digitscan.image.decode import NO_PIXEL_LIMIT, decode_image, gray_from_array
from digitscan.image.ink import ink_map, stroke_width

_MNIST_STROKE_FRACTION = 0.1  # MNIST pens are 2-3 px in the 20 px box; thinner strokes are thickened to this
_BINARY_GREY_SHARE = 0.01  # a patch with fewer grey pixels than this (of all) is a thresholded, black-and-white scan
_BINARY_SOFTEN = 0.4  # ...and is blurred by this many pixels of the 20 px box (sigma), as MNIST's edges are grey


def preprocess(
    source, mode: str = "robust", *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES
) -> np.ndarray:
    """decode_for_digit then to_model_input: the model's (28, 28) float32 input from any supported source."""
    _check_mode(mode)
    return to_model_input(decode_for_digit(source, max_pixels=max_pixels, max_bytes=max_bytes), mode)


def decode_for_digit(source, *, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_FILE_BYTES) -> np.ndarray:
    """decode_image as one digit needs it: a JPEG at the smallest DCT scale that keeps PREDICT_DECODE_SIDE px on
    its longer side (twice the ink finder's first look, so a digit far away in the frame still has pixels for its
    second one), any other file at its own size."""
    return decode_image(source, max_pixels=max_pixels, max_bytes=max_bytes, min_side=PREDICT_DECODE_SIDE)


def to_model_input(gray: np.ndarray, mode: str = "robust") -> np.ndarray:
    """A grayscale image (as decode_image returns; other numpy images are normalised the same way) -> (28, 28).

    "robust": find the ink whatever its polarity and the lighting, crop it, fit it into DIGIT_BOX and centre it by
    mass like MNIST; no ink -> all zeros. "paper": the reproduced paper's pipeline, a plain bilinear resize without
    inversion (a black-on-white photo stays background ~1).
    """
    _check_mode(mode)
    gray = gray_from_array(gray, max_pixels=NO_PIXEL_LIMIT)  # already in memory: no size limit here
    if mode == "paper":
        # Keras load_img(target_size=...) resizes without antialiasing; cv2's INTER_LINEAR matches that.
        resized = cv2.resize(gray, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
        return np.clip(resized, 0, 1).astype(np.float32)
    ink = digit_ink(gray)
    if ink is None:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return fit_to_mnist_box(ink)


def digit_ink(gray: np.ndarray) -> np.ndarray | None:
    """The ink of the one digit in a grey image, cropped to it (None: no ink), coarse to fine.

    The ink is found on a copy at most PREDICT_WORK_SIDE px on its longer side; a digit that comes out smaller than
    DIGIT_WORK_SIDE there (far away in a big frame) is looked for again in the region around it, cut from the full
    image (its own size on every side of it), so it reaches the 20 px box from as many pixels as a near one.
    """
    gray = gray_from_array(gray, max_pixels=NO_PIXEL_LIMIT)  # the region is cut from it: a validated (H, W) array
    ink, scale = ink_map(gray, work_side=PREDICT_WORK_SIDE)
    box = _ink_box(ink)
    if box is None or scale >= 1 or max(box[1] - box[0], box[3] - box[2]) >= DIGIT_WORK_SIDE:
        return None if box is None else ink[box[0]:box[1], box[2]:box[3]]
    top, bottom, left, right = (round(edge / scale) for edge in box)  # in the full image's pixels
    reach = max(bottom - top, right - left)
    region = gray[max(0, top - reach): bottom + reach, max(0, left - reach): right + reach]
    fine, _ = ink_map(region, work_side=PREDICT_WORK_SIDE)
    fine_box = _ink_box(fine)
    if fine_box is None:  # the coarse look saw more than the close one: keep it
        return ink[box[0]:box[1], box[2]:box[3]]
    return fine[fine_box[0]:fine_box[1], fine_box[2]:fine_box[3]]


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom and right exclusive, of the nonzero pixels; None when there are none."""
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ink.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _check_mode(mode: str) -> None:
    if mode not in PREPROCESS_MODES:
        raise ValueError(f"unknown preprocessing mode {mode!r}; valid modes: {', '.join(PREPROCESS_MODES)}")


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
    patch = _thicken_thin_strokes(_soften_binary(patch / patch.max()))

    height, width = patch.shape
    factor = DIGIT_BOX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))  # (w, h)
    if size != (width, height):
        interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        patch = np.clip(cv2.resize(patch, size, interpolation=interpolation), 0, None)
    if patch.max() <= 0:
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    return _paste_centred_by_mass(patch / patch.max())


def _soften_binary(patch: np.ndarray) -> np.ndarray:
    """A black-and-white patch (a thresholded scan, a binarized form box) with its edges blurred grey, so it reaches
    the model with edges like MNIST's antialiased ones; a patch with grey edges already is returned as it is.

    Measured with benchmarks/real_handwriting.py --split validation (against --raw-binary): docs/real-world.md."""
    grey = (patch > 0.02) & (patch < 0.98)
    if grey.mean() >= _BINARY_GREY_SHARE:
        return patch
    return cv2.GaussianBlur(patch, (0, 0), _BINARY_SOFTEN * max(patch.shape) / DIGIT_BOX)


def _thicken_thin_strokes(patch: np.ndarray) -> np.ndarray:
    """Dilate strokes thinner than MNIST's pen (relative to the patch) so they survive the shrink to DIGIT_BOX."""
    target = _MNIST_STROKE_FRACTION * max(patch.shape)
    if target < 3:  # at about box scale a 1 px dilation would change the digit more than it helps
        return patch
    width = stroke_width(patch > 0.5)
    if width >= 0.75 * target:
        return patch
    kernel_side = int(round(target - width)) | 1  # dilation by a k-wide disc widens a stroke by k - 1
    radius = kernel_side // 2
    padded = cv2.copyMakeBorder(patch, radius, radius, radius, radius, cv2.BORDER_CONSTANT, value=0)
    return cv2.dilate(padded, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (kernel_side, kernel_side)))


def _paste_centred_by_mass(patch: np.ndarray) -> np.ndarray:
    """Place a (h, w) patch, h, w <= DIGIT_BOX, in the IMAGE_SIZE frame with its centre of mass at the centre."""
    height, width = patch.shape
    total = float(patch.sum())
    mass_row = float((patch.sum(axis=1) * np.arange(height)).sum()) / total
    mass_col = float((patch.sum(axis=0) * np.arange(width)).sum()) / total
    centre = IMAGE_SIZE // 2  # MNIST's centres of mass sit on pixel 14 (measured: mean 13.99, 14.01)
    # Integer shift keeps the pixels sharp; clamping keeps a lopsided digit (a "7") entirely in the frame. A
    # symmetric digit's centre sits on a half pixel: rounded to 1e-3 first, float noise in faint pixels (1e-7)
    # cannot decide which way it goes, so a crop and the same crop with a margin land on the same pixel.
    top = int(np.clip(round(round(centre - mass_row, 3)), 0, IMAGE_SIZE - height))
    left = int(np.clip(round(round(centre - mass_col, 3)), 0, IMAGE_SIZE - width))
    out = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    out[top : top + height, left : left + width] = patch
    return out
