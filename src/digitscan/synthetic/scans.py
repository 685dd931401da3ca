"""Synthetic scans: a digit as scanners and form software deliver it, cropped to its ink, at any size and bit depth.

`scan(glyph, rng)` returns a uint8 image of `glyph` (ink coverage in [0, 1], ink bright) the way a form-processing
pipeline cuts a character box out of a page: no margin or a few pixels of it; at the scanner's own resolution
(aspect kept, 8 px to a few hundred) or size-normalised to fill a 16-64 px box the way USPS and NIST normalised
theirs (a narrow "1" stretched into a slab); sometimes scanned small and enlarged again by the client (blocky or
blurred); grey or binarized at a threshold that thins or fattens the strokes; either polarity. Fine-tuning shows
the model MNIST *training* digits and realdev *training* digits scanned this way (digitscan.training.finetune); the
benchmark's tight crops (benchmarks/real_handwriting.py) are made from the test split by their own, simpler rule.

`tight_crop(image, scale, polarity, ink, resize)` is the benchmark's simpler rule (benchmarks/real_handwriting.py and
the tests): an MNIST-style image cropped to its ink's bounding box, scaled by an integer factor, maybe inverted and
binarized.

`ink_glyph(gray)` turns a decoded scan (1.0 = white, either polarity) into such a glyph, so real scans can be
rescanned too.
"""

from __future__ import annotations

import cv2
import numpy as np

FRAMINGS = ("native", "box", "small")  # drawn with SCAN_FRAMING_P
SCAN_FRAMING_P = (0.45, 0.35, 0.2)
NATIVE_HEIGHT = (8, 160)  # the digit's height in pixels at the scanner's resolution (aspect kept)
BOX_SIDES = (16, 20, 28, 32, 48, 64)  # size-normalised boxes: USPS 16, NIST 32, others
SMALL_HEIGHT = (7, 14)  # scanned this small, then enlarged by the client
MARGIN_P = 0.5  # the share of scans cut with a margin of 1-3 px (in the output's pixels); the rest touch the frame
BINARIZE_P = 0.45
THRESHOLD = (0.25, 0.7)  # binarization threshold on the coverage: high thins strokes, low fattens them
DARK_ON_LIGHT_P = 0.5
PAPER_LEVEL = (200, 255)  # the page's grey level in a dark-on-light scan
INK_LEVEL = (0, 80)  # the darkest ink


def scan(glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One scanned rendition of `glyph` ((H, W) ink coverage in [0, 1], ink bright): uint8 (h, w)."""
    ink = _crop_to_ink(np.clip(np.asarray(glyph, np.float32), 0, 1))
    height, width = ink.shape
    framing = FRAMINGS[int(rng.choice(len(FRAMINGS), p=SCAN_FRAMING_P))]
    if framing == "box":
        # Size normalisation fills the box's height and stretches narrow digits towards its width.
        side = int(rng.choice(BOX_SIDES))
        stretched = max(width / height * side, side * rng.uniform(0.25, 1.0))
        size = (int(round(min(side, stretched))), side)
    else:
        low, high = NATIVE_HEIGHT if framing == "native" else SMALL_HEIGHT
        target = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        size = (max(1, int(round(width * target / height))), max(1, int(round(target))))
    out = _resize(ink, size, rng)
    if framing == "small":  # enlarged again, 2-8x, by nearest neighbour (blocky) or linear (soft)
        factor = int(rng.integers(2, 9))
        enlarge = cv2.INTER_NEAREST if rng.random() < 0.5 else cv2.INTER_LINEAR
        out = cv2.resize(out, (size[0] * factor, size[1] * factor), interpolation=enlarge)
    if rng.random() < BINARIZE_P:
        out = (out >= rng.uniform(*THRESHOLD) * out.max()).astype(np.float32)
    if rng.random() < MARGIN_P:
        out = np.pad(out, [(int(rng.integers(1, 4)), int(rng.integers(1, 4))) for _ in range(2)])
    if rng.random() < DARK_ON_LIGHT_P:
        paper, dark = rng.uniform(*PAPER_LEVEL), rng.uniform(*INK_LEVEL)
        return np.round(paper - out * (paper - dark)).astype(np.uint8)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def tight_crop(image: np.ndarray, scale: int, polarity: str, ink: str, resize: int = cv2.INTER_NEAREST) -> np.ndarray:
    """An MNIST-style uint8 image (ink bright on 0) cropped to its ink, scaled `scale` times with cv2 interpolation
    `resize`, binarized at 128 when ink is "binarized" (else "grey"), inverted when polarity is "dark on light"
    (else "light on dark"): uint8 (h, w)."""
    rows, cols = np.nonzero(image)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    if scale > 1:
        crop = cv2.resize(crop, (crop.shape[1] * scale, crop.shape[0] * scale), interpolation=resize)
    if ink == "binarized":
        crop = np.where(crop >= 128, 255, 0).astype(np.uint8)
    return 255 - crop if polarity == "dark on light" else crop


def ink_glyph(gray: np.ndarray) -> np.ndarray:
    """A decoded scan ((H, W) float, 1.0 = white; ink bright or dark) -> ink coverage in [0, 1], ink bright.

    The page is the median of the border pixels; ink is what differs from it, in the direction away from it."""
    gray = np.asarray(gray, np.float32)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    paper = float(np.median(border))
    ink = gray - paper if paper < 0.5 else paper - gray
    top = float(ink.max())
    if top <= 0:
        raise ValueError("a scan without ink cannot be rescanned")
    return np.clip(ink / top, 0, 1)


def _crop_to_ink(ink: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(ink > 0.05)
    if rows.size == 0:
        raise ValueError("a glyph without ink cannot be scanned")
    return ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def _resize(ink: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Resample to size (w, h): area when shrinking (a scanner integrates), else linear or nearest."""
    if size == (ink.shape[1], ink.shape[0]):
        return ink
    shrinking = size[0] * size[1] < ink.size
    method = cv2.INTER_AREA if shrinking else (cv2.INTER_NEAREST if rng.random() < 0.4 else cv2.INTER_LINEAR)
    return np.clip(cv2.resize(ink, size, interpolation=method), 0, 1)
