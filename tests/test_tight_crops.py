"""Ink that fills the frame is a digit: tight crops (any scale, either polarity, grey or binarized) and size-normalised
scans are read like the same digit with a margin, while a photographed sheet's desk is still dropped."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from digitscan.image import ink
from digitscan.image.prepare import preprocess
from digitscan.synthetic.strokes import render_digit, stroke_digit


def tight(digit: int, scale: int, *, light_on_dark: bool, binarized: bool, seed: int = 0) -> np.ndarray:
    """A synthetic pen digit (28 px frame, ink bright) cropped to its ink, scaled, maybe binarized and inverted."""
    image = stroke_digit(digit, seed=seed, size=28, thickness=0.12)
    rows, cols = np.nonzero(image)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    if scale > 1:
        crop = cv2.resize(crop, (crop.shape[1] * scale, crop.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    if binarized:
        crop = np.where(crop >= 128, 255, 0).astype(np.uint8)
    return crop if light_on_dark else 255 - crop


def with_margin(crop: np.ndarray, light_on_dark: bool) -> np.ndarray:
    side = max(crop.shape) // 2
    return cv2.copyMakeBorder(crop, side, side, side, side, cv2.BORDER_CONSTANT, value=0 if light_on_dark else 255)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("scale", [1, 3, 6])
@pytest.mark.parametrize("light_on_dark", [True, False], ids=["light-on-dark", "dark-on-light"])
@pytest.mark.parametrize("binarized", [False, True], ids=["grey", "binarized"])
def test_a_tight_crop_reads_like_the_digit_with_a_margin(scale, light_on_dark, binarized):
    for digit in range(10):
        crop = tight(digit, scale, light_on_dark=light_on_dark, binarized=binarized, seed=digit)
        framed = preprocess(with_margin(crop, light_on_dark))
        x = preprocess(crop)
        assert x.any(), f"digit {digit}: the ink was not found"
        assert correlation(framed, x) > 0.9, f"digit {digit}: {correlation(framed, x):.2f}"


def test_tight_crops_are_read_by_the_model(recognizer):
    variants = [(digit, scale, light) for digit in range(10) for scale in (1, 4) for light in (True, False)]
    crops = [(tight(digit, scale, light_on_dark=light, binarized=False, seed=digit), light)
             for digit, scale, light in variants]
    hits = [recognizer.predict(crop) for crop, _ in crops]
    framed = [recognizer.predict(with_margin(crop, light)) for crop, light in crops]
    # Whatever the model makes of a synthetic pen digit with a margin, it makes of the tight crop too.
    assert [(p.digit, p.is_digit) for p in hits] == [(p.digit, p.is_digit) for p in framed]


def test_a_size_normalised_scan_touching_top_and_bottom():
    """USPS and optdigits digits fill their box's height: ink touching two sides of a 16 px frame."""
    image = stroke_digit(3, seed=1, size=64, thickness=0.12)
    rows, cols = np.nonzero(image)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    box = np.zeros((max(crop.shape),) * 2, np.uint8)
    left = (box.shape[1] - crop.shape[1]) // 2
    box[:, left : left + crop.shape[1]] = crop
    small = cv2.resize(box, (16, 16), interpolation=cv2.INTER_AREA)
    assert correlation(preprocess(with_margin(small, True)), preprocess(small)) > 0.9


def test_a_digit_touching_one_side_of_a_photo():
    page = np.asarray(render_digit(7, (200, 240), seed=2, box_fraction=0.7, offset=(-0.33, 0.0), noise=3).convert("L"))
    assert (page[:, 0] < 128).any()  # the digit runs off the left edge of the frame
    centred = np.asarray(render_digit(7, (200, 240), seed=2, box_fraction=0.7, noise=3).convert("L"))
    assert correlation(preprocess(centred), preprocess(page)) > 0.8


@pytest.mark.parametrize("side", ["bottom", "left"])
def test_a_desk_band_along_one_side_is_still_dropped(side):
    rng = np.random.default_rng(4)
    sheet = np.asarray(render_digit(4, (300, 360), seed=3, box_fraction=0.5).convert("L"), np.float32)
    photo = sheet.copy()
    if side == "bottom":
        photo[-40:, :] = 70  # the desk between the sheet's edge and the frame
    else:
        photo[:, :35] = 70
    photo = np.clip(photo + rng.normal(0, 4, photo.shape), 0, 255).astype(np.uint8)
    assert correlation(preprocess(sheet.astype(np.uint8)), preprocess(photo)) > 0.9


def test_a_desk_wedge_beside_a_slightly_rotated_sheet_is_still_dropped():
    # Failed while one digit was looked for on a 512 px copy (a wedge 2-32 px wide was no band to the desk rule);
    # found on the 160 px coarse copy first, the wedge is a band along the side and is dropped.
    rng = np.random.default_rng(6)
    sheet = np.asarray(render_digit(2, (300, 360), seed=5, box_fraction=0.5).convert("L"), np.float32)
    rows, cols = np.mgrid[0:360, 0:300]
    photo = np.where(cols < 40 * rows / 360 * 0.75 + 2, 70, sheet)  # desk widening from 2 to 32 px down the left
    photo = np.clip(photo + rng.normal(0, 4, photo.shape), 0, 255).astype(np.uint8)
    assert correlation(preprocess(sheet.astype(np.uint8)), preprocess(photo)) > 0.9


@pytest.mark.parametrize("side, margin", [(12, 0), (16, 0), (6, 1), (8, 1)])
@pytest.mark.parametrize("binarized", [False, True], ids=["grey", "binarized"])
def test_a_tiny_scan_reads_like_the_digit_with_a_margin(side, margin, binarized):
    """6-16 px, as scanners and datasets normalise digits (load_digits is 8x8, USPS 16x16): from 12 px on, filling
    the frame; below that with one pixel of ground around it (cropped to the ink at under 12 px, a digit touching
    every side leaves no way to tell its ground from its ink)."""
    for digit in (0, 2, 3, 5, 7):
        image = stroke_digit(digit, seed=digit, size=64, thickness=0.14)
        rows, cols = np.nonzero(image)
        crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        small = cv2.resize(crop, (max(3, round(side * crop.shape[1] / crop.shape[0])), side),
                           interpolation=cv2.INTER_AREA)
        if binarized:
            small = np.where(small >= 100, 255, 0).astype(np.uint8)
        small = cv2.copyMakeBorder(small, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=0)
        x = preprocess(small)
        assert x.any(), f"digit {digit}: the ink was not found"
        assert correlation(preprocess(with_margin(small, True)), x) > 0.85, digit


@pytest.mark.parametrize("margin", [1, 2, 3])
def test_a_crop_with_a_thin_margin_is_a_tight_crop(margin):
    """A character box cut a few pixels wide of the ink reads like the tight crop (the ink nearly touches the frame)."""
    for digit in range(10):
        crop = tight(digit, 3, light_on_dark=False, binarized=False, seed=digit)
        boxed = cv2.copyMakeBorder(crop, margin, margin, margin, margin, cv2.BORDER_CONSTANT, value=255)
        assert correlation(preprocess(crop), preprocess(boxed)) > 0.9, digit


def test_a_box_normalised_one_is_read_as_a_one(recognizer):
    """NIST's and USPS's size normalisation stretch a narrow 1 into a slab of a third of the box or more (optdigits
    1s are 8-10 px wide in 32): the shipped model, fine-tuned on such scans, reads it as a 1."""
    for seed in range(4):
        image = stroke_digit(1, seed=seed, size=64, thickness=0.12)
        rows, cols = np.nonzero(image)
        crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        for width in (8, 11):
            slab = np.where(cv2.resize(crop, (width, 32), interpolation=cv2.INTER_LINEAR) >= 128, 255, 0)
            box = np.zeros((32, 32), np.uint8)
            box[:, 16 - width // 2 : 16 - width // 2 + width] = slab
            result = recognizer.predict(box)
            assert result.digit == 1 and result.is_digit, (seed, width, result)


def narrow_one(lean: int, thickness: int, scale: int, *, light_on_dark: bool, binarized: bool) -> np.ndarray:
    """A "1" cropped to its ink the way MNIST's are: a 20 px stroke leaning `lean` px, antialiased edges (a blur)
    included, so that stroke and edges fill most of a frame under half as wide as tall; scaled, maybe binarized."""
    canvas = np.zeros((28, 28), np.float32)
    cv2.line(canvas, (14 + lean // 2, 4), (14 - lean // 2, 23), 1.0, thickness, cv2.LINE_AA)
    canvas = cv2.GaussianBlur(canvas, (0, 0), 0.7)
    image = np.round(255 * canvas / canvas.max()).astype(np.uint8)
    rows, cols = np.nonzero(image)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    crop = cv2.resize(crop, (crop.shape[1] * scale, crop.shape[0] * scale), interpolation=cv2.INTER_NEAREST)
    if binarized:
        crop = np.where(crop >= 128, 255, 0).astype(np.uint8)
    return crop if light_on_dark else 255 - crop


@pytest.mark.parametrize("lean, thickness", [(0, 3), (2, 3), (4, 2)], ids=["upright", "leaning", "slanted"])
@pytest.mark.parametrize("light_on_dark", [True, False], ids=["light-on-dark", "dark-on-light"])
@pytest.mark.parametrize("binarized", [False, True], ids=["grey", "binarized"])
def test_a_tight_crop_of_a_one_reads_like_the_one_with_a_margin(lean, thickness, light_on_dark, binarized):
    """A 1 cropped tight is mostly stroke and soft edge, its ring mostly ink, and an upright one runs down a whole
    side: its ground is found from its corners, and no flat ground or free side is asked of it."""
    for scale in (3, 5):
        crop = narrow_one(lean, thickness, scale, light_on_dark=light_on_dark, binarized=binarized)
        assert 2 * crop.shape[1] < crop.shape[0]
        x = preprocess(crop)
        assert x.any(), f"scale {scale}: the ink was not found"
        framed = preprocess(with_margin(crop, light_on_dark))
        assert correlation(framed, x) > 0.9, f"scale {scale}: {correlation(framed, x):.2f}"


@pytest.mark.parametrize("light_on_dark", [True, False], ids=["light-on-dark", "dark-on-light"])
def test_a_crop_whose_outer_ink_was_thresholded_away_is_a_tight_crop(light_on_dark):
    """Binarizing a crop cut at its faintest ink leaves ground where that ink was: at 5x, a source pixel and a half
    (7 px) between the ink and the frame. It is still taken for a tight crop (padded with its ground, not left to
    the photo path, which drops a stroke along a side as desk) and reads like the crop cut at the ink."""
    for digit in range(10):
        crop = tight(digit, 5, light_on_dark=light_on_dark, binarized=True, seed=digit)
        cut = cv2.copyMakeBorder(crop, 7, 7, 7, 7, cv2.BORDER_CONSTANT, value=0 if light_on_dark else 255)
        assert ink._tight_crop_ground(cut.astype(np.float32) / 255) is not None, f"digit {digit}: not a crop"
        assert correlation(preprocess(crop), preprocess(cut)) > 0.95, digit
