"""Synthetic scans (digitscan.synthetic.scans): what fine-tuning shows the model of scanners and form software, and
the rescanning of real scans; small generated glyphs only."""

from __future__ import annotations

import numpy as np
import pytest

from digitscan.image.prepare import to_model_input
from digitscan.synthetic.scans import BOX_SIDES, ink_glyph, scan
from digitscan.synthetic.strokes import stroke_digit


def glyph(digit: int = 3) -> np.ndarray:
    return stroke_digit(digit, seed=digit, size=48, thickness=0.12).astype(np.float32) / 255


def test_scans_vary_and_repeat_with_the_seed():
    scans = [scan(glyph(), np.random.default_rng(seed)) for seed in range(60)]
    assert all(s.dtype == np.uint8 and s.ndim == 2 for s in scans)
    again = scan(glyph(), np.random.default_rng(7))
    assert np.array_equal(again, scans[7])
    heights = [s.shape[0] for s in scans]
    assert min(heights) <= 16 and max(heights) >= 60  # tiny and large
    binary = [s for s in scans if len(np.unique(s)) == 2]
    assert 10 <= len(binary) <= 45  # about 45 % binarized (some grey ones can have two levels too)
    dark_on_light = [s for s in scans if np.median(np.concatenate([s[0], s[-1]])) > 128]
    assert 15 <= len(dark_on_light) <= 45
    assert any(s.shape[0] in BOX_SIDES and s.shape[1] <= s.shape[0] for s in scans)  # size-normalised boxes


def test_a_box_normalised_one_is_stretched_into_a_slab():
    """USPS and NIST normalised narrow digits towards the box's width: a 1 becomes a bar, not a hairline."""
    one = glyph(1)
    widths = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        out = scan(one, rng)
        if out.shape[0] in BOX_SIDES and out.shape[1] > 2 and len(np.unique(out)) > 0:
            widths.append(out.shape[1] / out.shape[0])
    assert widths and max(widths) > 0.5  # some at half the box's width or more


def test_every_scan_reaches_the_model_with_its_ink():
    """The one preprocessing path finds the ink of nearly every scan: tight crops, tiny, binarized, both polarities.
    (95 % of these; the misses are digits scanned at 7-10 px and enlarged, a blur of a few grey blocks.)"""
    found = [to_model_input(scan(glyph(d), np.random.default_rng([d, k]))).max() > 0
             for d in range(10) for k in range(10)]
    assert np.mean(found) >= 0.93


@pytest.mark.parametrize("light_on_dark", [True, False])
def test_ink_glyph_recovers_the_ink_of_a_real_scan(light_on_dark):
    ink = glyph(5)
    gray = 0.05 + 0.85 * ink if light_on_dark else 0.95 - 0.8 * ink  # decoded grey, 1.0 = white
    recovered = ink_glyph(gray)
    assert recovered.min() >= 0 and recovered.max() == pytest.approx(1.0)
    assert np.corrcoef(recovered.ravel(), ink.ravel())[0, 1] > 0.99


def test_blank_input_is_refused():
    with pytest.raises(ValueError, match="without ink"):
        scan(np.zeros((10, 10), np.float32), np.random.default_rng(0))
    with pytest.raises(ValueError, match="without ink"):
        ink_glyph(np.full((10, 10), 0.9, np.float32))
