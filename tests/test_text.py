"""From symbols to text, raw, marks and alternatives (digitscan.reading.text): tiny hand-made symbol lists."""

from __future__ import annotations

import pytest

from digitscan.constants import MARK
from digitscan.reading.layout import Symbol
from digitscan.reading.text import GROUP_GAP, assemble, merge_readers


def line(spec: str, *, height: int = 40, gaps: dict[int, float] | None = None, confidence: float = 0.99):
    """Symbols left to right, digits 20 px wide and others 6, 6 px apart (gaps[i]: the gap before symbol i, in
    heights)."""
    symbols, x = [], 0
    for i, char in enumerate(spec):
        x += round((gaps or {}).get(i, 0.15) * height)
        tall = height if char.isdigit() else height // 5
        wide = 20 if char.isdigit() else 6
        symbols.append(Symbol(char, confidence, [x, 0, wide, tall]))
        x += wide
    return symbols


def test_raw_keeps_separators_and_text_only_digits():
    reading = assemble(line("1.250,00"))
    assert (reading.text, reading.raw) == ("125000", "1.250,00")
    assert reading.confidence == pytest.approx(0.99 ** 8)
    assert [s.symbol for s in reading.symbols] == list("1.250,00") and reading.marks == []


def test_marks_and_dangling_separators_are_left_out_of_raw():
    reading = assemble(line(f"{MARK}15.000.{MARK}"))
    assert (reading.text, reading.raw) == ("15000", "15.000")
    assert [m.symbol for m in reading.marks] == [MARK, ".", MARK]
    assert assemble(line(f"-{MARK}7{MARK}")).raw == "7"


def test_a_group_gap_between_digits_is_one_space():
    wide = GROUP_GAP + 0.3
    assert assemble(line("123456", gaps={2: wide, 4: wide})).raw == "12 34 56"
    assert assemble(line("123456", gaps={2: GROUP_GAP - 0.3})).raw == "123456"
    assert assemble(line("12-34", gaps={2: wide, 3: wide})).raw == "12-34"  # no space beside a separator


def test_no_digit_reads_as_empty():
    reading = assemble(line(f"{MARK}.-"))
    assert (reading.text, reading.raw, reading.confidence) == ("", "", 0.0) and len(reading.marks) == 3
    assert assemble([]).text == ""


def test_alternatives_swap_one_symbol_for_its_runner_up_best_first():
    symbols = line("1.250")
    symbols[0].runner_up, symbols[0].runner_up_confidence, symbols[0].confidence = "7", 0.3, 0.6
    symbols[1].runner_up, symbols[1].runner_up_confidence = "", 0.02  # perhaps no dot at all
    symbols[3].runner_up, symbols[3].runner_up_confidence = "3", 1e-6  # too unlikely to list
    reading = assemble(symbols)
    assert [a.raw for a in reading.alternatives] == ["7.250", "1250"]
    assert reading.alternatives[0].confidence == pytest.approx(reading.confidence / 0.6 * 0.3)
    assert reading.alternatives[1].text == "1250"
    assert reading.alternatives[0].confidence > reading.alternatives[1].confidence


def test_merged_readers_average_each_digits_probabilities():
    """Where the two readers disagree on a digit, the one surer of its class wins, and the field's confidence
    shows the disagreement; separators stay the line reader's."""
    sequence = line("12.5")
    sequence[1] = Symbol("7", 0.6, sequence[1].box, "2", 0.3)
    segments = [Symbol("1", 0.98, [0, 0, 1, 1]), Symbol("2", 0.9, [0, 0, 1, 1]), Symbol("5", 0.99, [0, 0, 1, 1])]
    merged = merge_readers(sequence, segments)
    assert [s.symbol for s in merged] == ["1", "2", ".", "5"]
    assert merged[1].confidence == pytest.approx((0.3 + 0.9) / 2)
    assert (merged[1].runner_up, merged[1].runner_up_confidence) == ("7", pytest.approx(0.3))
    assert merged[0].confidence == pytest.approx((0.99 + 0.98) / 2)
    reading = assemble(merged)
    assert reading.text == "125" and reading.raw == "12.5"
    assert reading.alternatives[0].text == "175"


def test_readers_that_find_different_digits_are_not_merged():
    sequence = line("123")
    assert merge_readers(sequence, [Symbol("1", 0.9, [0, 0, 1, 1]), Symbol("2", 0.9, [0, 0, 1, 1])]) == sequence


def test_a_field_known_to_hold_more_digits_takes_the_reader_that_found_them():
    """A comb row with three cells written in: when the line reader finds two digits and the cutting reader
    three, the cutting reader's digits are the reading; otherwise the line reader's stays."""
    sequence = line("12")
    segments = [Symbol("1", 0.9, [0, 0, 1, 1]), Symbol("7", 0.8, [2, 0, 1, 1]), Symbol("2", 0.9, [4, 0, 1, 1])]
    assert merge_readers(sequence, segments, at_least=3) == segments
    assert merge_readers(sequence, segments, at_least=4) == sequence  # neither found them all
    assert merge_readers(sequence, segments) == sequence
    assert merge_readers(line("1772"), segments, at_least=3) == line("1772")  # more than the cells: a hidden wall
