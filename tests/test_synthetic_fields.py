"""Synthetic fields (digitscan.synthetic.fields) and printed cheque backgrounds: the truths they carry agree with
the parsers that read them (digitscan.fields.formats), and they draw what they say."""

from __future__ import annotations

import numpy as np
import pytest

from digitscan.constants import MARK, SEPARATORS
from digitscan.fields.formats import parse_amount, parse_date
from digitscan.synthetic.fields import FIELD_KINDS, Field, field_tokens, render_field
from digitscan.synthetic.photos import PATTERNS, Condition, render
from digitscan.synthetic.strokes import stroke_digit

PEN = np.stack([stroke_digit(d, seed=d) for d in range(10)])
LABELS = np.arange(10)


@pytest.mark.parametrize("kind", FIELD_KINDS)
def test_the_truth_of_every_generated_field_is_what_the_parsers_read(kind):
    rng = np.random.default_rng(3)
    for _ in range(300):
        field = field_tokens(kind, rng, marks=0.5)
        assert field.raw[:1].isdigit() and field.raw[-1:].isdigit()
        assert field.text == "".join(c for c in field.raw if c.isdigit())
        assert set(field.label) <= set("0123456789" + SEPARATORS + MARK) and " " not in field.label
        if kind == "amount":
            assert parse_amount(field.raw) == field.value, field.tokens
        elif kind == "date":
            assert parse_date(field.raw, "ymd" if field.raw[4] == "-" else "dmy") == field.value, field.tokens


def test_marks_are_one_class_and_an_inner_dash_is_a_separator():
    field = Field("id", ["=", "5", "5", "-", "1", "2", "--"], None)
    assert (field.raw, field.label, field.text) == ("55-12", f"{MARK}55-12{MARK}", "5512")
    assert Field("amount", ["$", "1", " ", "2", "5", "0"], "1250").raw == "1 250"


def test_a_rendered_field_has_its_digits_and_its_separators_as_ink():
    rng = np.random.default_rng(0)
    plain = render_field(Field("amount", list("1250"), "1250"), PEN, LABELS, rng, digit_height=40)
    dotted = render_field(Field("amount", list("1.250,00"), "1250.00"), PEN, LABELS, np.random.default_rng(0),
                          digit_height=40)
    assert plain.dtype == np.float32 and 0 <= plain.min() and plain.max() <= 1
    assert 40 <= plain.shape[0] <= 80  # one line: the digits' height plus a margin of 0.3 heights each side
    assert dotted.shape[1] > plain.shape[1] and dotted.sum() > plain.sum()


def test_a_rendered_field_says_which_digit_images_it_was_written_with():
    """sources gets one image index per digit, each an image of that digit; asking for it draws the same field."""
    pen = np.concatenate([PEN, PEN])  # two images of each digit, so the choice is the generator's
    labels = np.concatenate([LABELS, LABELS])
    field = Field("date", list("12.03.2024"), "2024-03-12")
    sources: list[int] = []
    drawn = render_field(field, pen, labels, np.random.default_rng(4), digit_height=40, sources=sources)
    assert [int(labels[i]) for i in sources] == [int(c) for c in field.text]
    assert np.array_equal(drawn, render_field(field, pen, labels, np.random.default_rng(4), digit_height=40))


@pytest.mark.parametrize("paper", list(PATTERNS))
def test_printed_backgrounds_print_a_light_pattern_under_the_ink(paper):
    glyph = np.zeros((40, 30), np.float32)
    glyph[5:35, 13:17] = 1
    condition = Condition("test", papers=(paper,), image_height=(120, 120), texture=0.0)
    pixels, alpha = render(glyph, condition, np.random.default_rng(1))
    paper_pixels = pixels[alpha == 0].astype(np.float32)
    assert paper_pixels.std() > 3  # a pattern, not a plain sheet
    assert paper_pixels.mean() > pixels[alpha > 0.9].mean() + 60  # lighter than the ink by far
