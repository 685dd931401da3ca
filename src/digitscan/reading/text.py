"""From the symbols read in a line to what a caller gets: the digits, the string as written, the marks, and the
readings that came close.

`assemble(symbols)` -> Reading. `text` is the digits only. `raw` runs from the first digit to the last: digits,
the separators between them (`. , - / :`) and a single space wherever two digits stand a group gap apart (the
`AB 12 34` spacing of IDs, `1 250` thousands). Marks (constants.MARK: `=`, `*`, `$`, `#`, dashes, strokes through
the end of an amount) and separators outside that span (`15.000.-`, `1250,--`) are left out of `raw` and listed as
`marks`. The confidence is the product of every symbol's, marks included: a digit misread as a mark lowers it.
`alternatives` are the readings one symbol away, each symbol replaced by its runner-up class (or dropped, when the
runner-up is "nothing there"), scored by the product with that one probability swapped in, best first.
`merge_readers(sequence, segments)` joins two readers' symbols for one line: each digit's class from the average
of both readers' probabilities (an ensemble of the line reader and the cut-and-classify reader, which err apart).
`review_reason(confidence, closest)` says why a reading needs a person's check (pages and templates flag it), at
the threshold `review_confidence(method)` gives a reading method.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from digitscan.constants import MARK, REVIEW_CONFIDENCE, REVIEW_CONFIDENCE_BOTH, REVIEW_MARGIN, SEPARATORS
from digitscan.reading.layout import Symbol

GROUP_GAP = 0.8  # a gap this wide (x the digits' median height) between two digits is a space in `raw`
MAX_ALTERNATIVES = 3
MIN_ALTERNATIVE = 1e-3  # alternatives less likely than this are not worth listing


@dataclass
class Alternative:
    raw: str
    text: str
    confidence: float


@dataclass
class Reading:
    text: str  # digits only
    raw: str  # from the first digit to the last, as written
    confidence: float  # product of all symbols' confidences; 0.0 when no digit was read
    symbols: list[Symbol]  # those of raw, left to right
    marks: list[Symbol]  # what was read around the number and left out of raw
    alternatives: list[Alternative] = field(default_factory=list)


def assemble(symbols: list[Symbol]) -> Reading:
    """The reading of a line's symbols (left to right), with its alternatives."""
    reading = _spell(symbols)
    candidates: dict[str, Alternative] = {}
    for i, symbol in enumerate(symbols):
        if not symbol.runner_up_confidence or symbol.confidence <= 0:
            continue
        changed = symbols[:i] + symbols[i + 1:] if symbol.runner_up == "" else \
            symbols[:i] + [Symbol(symbol.runner_up, symbol.runner_up_confidence, symbol.box)] + symbols[i + 1:]
        other = _spell(changed)
        score = reading.confidence / symbol.confidence * symbol.runner_up_confidence
        if other.raw == reading.raw or score < MIN_ALTERNATIVE or not other.text:
            continue
        if other.raw not in candidates or candidates[other.raw].confidence < score:
            candidates[other.raw] = Alternative(other.raw, other.text, float(score))
    reading.alternatives = sorted(candidates.values(), key=lambda a: -a.confidence)[:MAX_ALTERNATIVES]
    return reading


def merge_readers(sequence: list[Symbol], segments: list[Symbol], at_least: int | None = None) -> list[Symbol]:
    """The line reader's symbols (`sequence`, separators and marks included) with each digit's class and
    confidence taken from the average of its probabilities and those of the digit in the same place read by the
    cut-and-classify reader (`segments`, digits only); the runner-up is the average's second class. When the two
    find a different number of digits, they do not read the same digits: `sequence` is returned as it is, unless
    the field is known to hold `at_least` digits (a comb row's cells holding ink), `sequence` found fewer and
    `segments` exactly that many."""
    digits = [i for i, s in enumerate(sequence) if s.symbol.isdigit()]
    if len(digits) != len(segments):
        short = at_least is not None and len(digits) < at_least == len(segments)
        return segments if short else sequence
    merged = list(sequence)
    for i, other in zip(digits, segments):
        own = sequence[i]
        votes: dict[str, float] = {}
        for symbol, probability in ((own.symbol, own.confidence), (own.runner_up, own.runner_up_confidence),
                                    (other.symbol, other.confidence), (other.runner_up, other.runner_up_confidence)):
            if probability:
                votes[symbol] = votes.get(symbol, 0.0) + probability / 2
        (best, score), *rest = sorted(votes.items(), key=lambda kv: -kv[1])
        runner_up, runner_score = rest[0] if rest else ("", 0.0)
        merged[i] = Symbol(best, score, own.box, runner_up, runner_score)
    return merged


def _spell(symbols: list[Symbol]) -> Reading:
    """text, raw and marks of these symbols (no alternatives)."""
    digits = [i for i, s in enumerate(symbols) if s.symbol.isdigit()]
    if not digits:
        return Reading("", "", 0.0, [], list(symbols))
    first, last = digits[0], digits[-1]
    inner = [s for s in symbols[first: last + 1] if s.symbol != MARK]  # a mark amid digits is no part of it
    height = float(np.median([symbols[i].box[3] for i in digits]))
    raw = []
    for previous, symbol in zip([None] + inner[:-1], inner):
        if previous is not None and previous.symbol.isdigit() and symbol.symbol.isdigit():
            gap = symbol.box[0] - (previous.box[0] + previous.box[2])
            if gap >= GROUP_GAP * height:
                raw.append(" ")
        raw.append(symbol.symbol)
    marks = symbols[:first] + [s for s in symbols[first: last + 1] if s.symbol == MARK] + symbols[last + 1:]
    return Reading(text="".join(s.symbol for s in inner if s.symbol.isdigit()), raw="".join(raw),
                   confidence=float(np.prod([s.confidence for s in symbols])), symbols=inner, marks=marks)


def is_symbol(name: str) -> bool:
    """A class a line reader may have besides its blank: a digit, a separator or the mark."""
    return (len(name) == 1 and name.isdigit()) or name in SEPARATORS or name == MARK


def review_confidence(method: str) -> float:
    """The confidence under which a reading by `method` needs review: both readers' averaged probabilities are
    less sure than one reader's (constants.REVIEW_CONFIDENCE_BOTH)."""
    return REVIEW_CONFIDENCE_BOTH if method == "both" else REVIEW_CONFIDENCE


def review_reason(confidence: float, closest: float | None, *, min_confidence: float = REVIEW_CONFIDENCE,
                  margin: float = REVIEW_MARGIN) -> str | None:
    """Why a valid reading needs a person's check (None when it does not): its confidence is under
    min_confidence, or its closest alternative's confidence reaches `margin` times its own."""
    if confidence < min_confidence:
        return f"confidence {confidence:.3f} is under {min_confidence}"
    if closest is not None and closest >= margin * confidence:
        return f"an alternative reading is close: {closest:.3f} against {confidence:.3f}"
    return None
