"""Synthetic handwritten fields: amounts, dates and IDs written with separators and the marks people draw around them.

`field_tokens("amount", rng)` -> a Field (what is written, token by token, and its truth: the digits, the raw string as
written, the value); `render_field(field, digits, rng)` draws it with MNIST-style digit images and pen-stroke
separators (`.` `,` `-` `/` `:`) and marks (`=`, `*`, `$`, `#`, dashes and strokes through the end of an amount) as
ink coverage, ready for digitscan.synthetic.photos. Used at run time only, for training the line reader (MNIST
*training* digits) and for benchmarks/fields.py (MNIST *test* digits): composed images are never committed.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import cv2
import numpy as np

from digitscan.constants import MARK, SEPARATORS

FIELD_KINDS = ("amount", "date", "id")
MARKS = ("=", "*", "$", "#", "-", "--", "stroke", "wave")
# Gaps between neighbours, in digit heights: within a group of digits (negative: touching), next to a separator,
# between groups written apart (a space in `raw`), and next to a mark.
DIGIT_GAP = (-0.08, 0.45)
SEPARATOR_GAP = (0.0, 0.25)
GROUP_GAP = (0.9, 1.8)
MARK_GAP = (0.15, 0.7)


# How dates are written: day-month-year with / . - or spaces, two-digit years, ISO year-month-day.
DATE_STYLES = ("{d:02d}/{m:02d}/{y}", "{d:02d}.{m:02d}.{y}", "{d:02d}-{m:02d}-{y}", "{d:02d}.{m:02d}.{yy:02d}",
               "{d}/{m}/{yy:02d}", "{y}-{m:02d}-{d:02d}", "{d:02d} {m:02d} {y}")


@dataclass
class Field:
    """A handwritten field, token by token: digits "0"-"9", separators, " " (a group gap) or a mark name."""

    kind: str
    tokens: list[str]
    value: str | None  # the amount as a decimal string or the date in ISO 8601; None for an ID

    @property
    def text(self) -> str:
        return "".join(t for t in self.tokens if t.isdigit())

    @property
    def raw(self) -> str:
        """What `digitscan read` should give as `raw`: from the first digit to the last, marks left out."""
        digits = [i for i, t in enumerate(self.tokens) if t.isdigit()]
        return "".join(self.tokens[digits[0]: digits[-1] + 1]) if digits else ""

    @property
    def label(self) -> str:
        """The line reader's target: digits and separators as written, MARK for each mark, no spaces."""
        return "".join(MARK if t in MARKS and not self._inner(i) else t
                       for i, t in enumerate(self.tokens) if t != " ")

    def _inner(self, index: int) -> bool:
        """A "-" between digits is a separator (555-1234); before the first or after the last digit, a mark."""
        digits = [i for i, t in enumerate(self.tokens) if t.isdigit()]
        return self.tokens[index] == "-" and bool(digits) and digits[0] < index < digits[-1]


def _number(rng: np.random.Generator, low: int, high: int) -> str:
    """A number of low-high digits, no leading zero, the count drawn log-uniformly-ish (short amounts are common)."""
    count = int(rng.integers(low, high + 1))
    return str(int(rng.integers(1, 10))) + "".join(str(d) for d in rng.integers(0, 10, count - 1))


def _amount(rng: np.random.Generator) -> tuple[list[str], str]:
    whole = _number(rng, 1, 7) if rng.random() < 0.95 else "0"
    thousands = str(rng.choice(["", ".", ",", " "], p=[0.4, 0.25, 0.2, 0.15])) if len(whole) > 3 else ""
    decimal_mark = {"": str(rng.choice([",", "."])), ".": ",", ",": ".", " ": str(rng.choice([",", "."]))}[thousands]
    groups = [whole[max(0, end - 3): end] for end in range(len(whole), 0, -3)][::-1]
    tokens = list(thousands.join(groups)) if thousands else list(whole)
    ending = rng.random()
    if ending < 0.5:  # cents
        cents = "00" if rng.random() < 0.5 else "".join(str(d) for d in rng.integers(0, 10, 2))
        tokens += [decimal_mark, *cents]
        value = f"{int(whole)}.{cents}"
    else:
        value = str(int(whole))
        if ending < 0.65:  # "15.000.-", "1250,--": no cents, said with a dash
            tokens += [decimal_mark, str(rng.choice(["-", "--"]))]
    return tokens, value


def _date(rng: np.random.Generator) -> tuple[list[str], str]:
    day = datetime.date(1950, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 365 * 80)))
    style = int(rng.integers(len(DATE_STYLES)))
    text = DATE_STYLES[style].format(d=day.day, m=day.month, y=day.year, yy=day.year % 100)
    # A two-digit year means 19xx or 20xx by the parser's pivot (00-69: 20xx); keep the truth consistent with it.
    iso = day.isoformat()
    if "{yy" in DATE_STYLES[style]:
        yy = day.year % 100
        iso = f"{yy + (2000 if yy < 70 else 1900)}-{day.month:02d}-{day.day:02d}"
    return list(text), iso


def _identifier(rng: np.random.Generator) -> list[str]:
    style = int(rng.integers(5))
    if style == 0:  # a phone number
        return list(_number(rng, 3, 4) + "-" + "".join(str(d) for d in rng.integers(0, 10, 4)))
    if style == 1:  # a time
        return list(f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}")
    if style == 2:  # groups written apart
        return list(" ".join("".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 5))))
                             for _ in range(int(rng.integers(2, 5)))))
    if style == 3:  # a reference with a slash
        return list(_number(rng, 2, 5) + "/" + "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(2, 4)))))
    return list("-".join("".join(str(d) for d in rng.integers(0, 10, 2)) for _ in range(int(rng.integers(2, 4)))))


def field_tokens(kind: str, rng: np.random.Generator, *, marks: float = 0.4) -> Field:
    """A random field of this kind; with probability `marks` each, a mark before it and one after it."""
    if kind == "amount":
        tokens, value = _amount(rng)
        chance = marks
    elif kind == "date":
        tokens, value = _date(rng)
        chance = marks / 4  # dates are rarely fenced
    elif kind == "id":
        tokens, value = _identifier(rng), None
        chance = marks / 4
    else:
        raise ValueError(f"unknown field kind {kind!r}; choose from {', '.join(FIELD_KINDS)}")
    if rng.random() < chance:
        tokens = [str(rng.choice(["=", "*", "$", "#", "-", "--"]))] + tokens
    if rng.random() < chance:
        tokens = tokens + [str(rng.choice(["=", "*", "-", "--", "stroke", "wave"]))]
    # "--" is one mark of two dashes; a trailing "-" after "," stays one token
    return Field(kind, tokens, value)


# ----------------------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------------------

Polyline = list[tuple[float, float]]


def _symbol_strokes(token: str, rng: np.random.Generator) -> tuple[list[Polyline], float]:
    """Pen strokes of a separator or mark in digit heights (x right from 0, y down: 0 top, 1 the baseline), and
    the width it takes. Sizes and placement vary like a hand's."""
    j = lambda spread: float(rng.uniform(-spread, spread))  # noqa: E731 - a local jitter helper
    if token == ".":
        x, y = 0.05, 0.93 + j(0.04)
        length = float(rng.uniform(0.01, 0.07))  # a dot or a short tick
        return [[(x, y), (x + length, y + j(0.03))]], 0.1
    if token == ",":
        y = 0.9 + j(0.04)
        return [[(0.08, y), (0.07, y + 0.1), (0.0 + j(0.02), y + 0.25 + j(0.05))]], 0.1
    if token in ("-", "--"):
        length = float(rng.uniform(0.25, 0.5))
        y = 0.5 + j(0.1)
        strokes = [[(0, y), (length, y + j(0.05))]]
        if token == "--":
            strokes.append([(length + 0.15, y + j(0.03)), (2 * length + 0.15, y + j(0.05))])
            length = 2 * length + 0.15
        return strokes, length
    if token == "/":
        top, lean = j(0.08), float(rng.uniform(0.25, 0.45))
        return [[(lean, top), (0.0, 1.0 + j(0.05))]], lean
    if token == ":":
        return [[(0.05, 0.35 + j(0.05)), (0.07, 0.36 + j(0.05))], [(0.05, 0.88 + j(0.04)), (0.07, 0.89)]], 0.1
    if token == "=":
        length = float(rng.uniform(0.35, 0.8))
        y = 0.42 + j(0.08)
        gap = float(rng.uniform(0.18, 0.3))
        return [[(0, y), (length, y + j(0.04))], [(0, y + gap), (length, y + gap + j(0.04))]], length
    if token == "*":
        size, cy = float(rng.uniform(0.3, 0.5)), 0.4 + j(0.1)
        strokes = []
        for angle in np.linspace(0, math.pi, 4)[:3] + j(0.2):
            dx, dy = math.cos(angle) * size / 2, math.sin(angle) * size / 2
            strokes.append([(size / 2 - dx, cy - dy), (size / 2 + dx, cy + dy)])
        return strokes, size
    if token == "$":
        s = [(0.45 + 0.25 * math.cos(a), 0.3 + 0.2 * math.sin(a)) for a in np.linspace(-0.3, math.pi, 10)]
        s += [(0.45 - 0.25 * math.cos(a), 0.7 + 0.2 * math.sin(a)) for a in np.linspace(math.pi, 0.3 - math.pi, 10)][1:]
        return [s, [(0.47, -0.05 + j(0.05)), (0.43, 1.05 + j(0.05))]], 0.75
    if token == "#":
        w = float(rng.uniform(0.5, 0.75))
        return [[(0.3 * w, 0.1), (0.2 * w, 0.9)], [(0.75 * w, 0.1), (0.65 * w, 0.9)],
                [(0.0, 0.35), (w, 0.33)], [(0.0, 0.65), (w, 0.63)]], w
    if token in ("stroke", "wave"):  # the rest of the space struck out, straight or wavy
        length = float(rng.uniform(1.5, 4.0))
        y = 0.55 + j(0.15)
        xs = np.linspace(0, length, 40)
        amplitude = float(rng.uniform(0.05, 0.15)) if token == "wave" else 0.0
        ys = y + amplitude * np.sin(xs * 2 * math.pi / rng.uniform(0.4, 0.8)) + np.linspace(0, j(0.15), 40)
        return [list(zip(xs.tolist(), ys.tolist()))], length
    raise ValueError(f"no strokes for {token!r}")


def _draw_strokes(strokes: list[Polyline], height: float, thickness: float) -> tuple[np.ndarray, float, float]:
    """Antialiased strokes at `height` px per digit height -> (coverage patch, x of its left, y of its top) in
    digit-height units of the patch's origin."""
    pad = thickness
    points = [np.array(s, np.float64) * height for s in strokes]
    low = np.min([p.min(axis=0) for p in points], axis=0) - pad
    high = np.max([p.max(axis=0) for p in points], axis=0) + pad
    w, h = (np.ceil(high - low) + 1).astype(int)
    canvas = np.zeros((h, w), np.uint8)
    shift = 4
    for p in points:
        cv2.polylines(canvas, [np.round((p - low) * 16).astype(np.int32)], False, 255,
                      max(1, round(thickness)), cv2.LINE_AA, shift)
    return canvas.astype(np.float32) / 255, float(low[0]), float(low[1])


def render_field(field: Field, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
                 digit_height: int = 40, baseline_drift: float = 0.15, margin: float = 0.3,
                 sources: list[int] | None = None) -> np.ndarray:
    """The field written in ink: coverage (H, W) float32 in [0, 1], ink bright. Digits are MNIST-style images
    (`images`, with their `labels`) scaled to `digit_height` px (a little jitter), standing on a gently
    wandering baseline; separators and marks are pen strokes as thick as the digits'. sources, when given, gets
    the index of each digit image written, left to right (for benchmarks that read them alone)."""
    by_digit = {d: np.flatnonzero(labels == d) for d in range(10)}
    H = float(digit_height)
    thickness = float(rng.uniform(0.09, 0.16)) * H
    slope = float(rng.uniform(-1, 1)) * baseline_drift
    pieces = []  # (patch, left px, top px)
    x = 0.0
    previous = None
    for token in field.tokens:
        if token == " ":
            x += float(rng.uniform(*GROUP_GAP)) * H
            previous = None
            continue
        kind = "digit" if token.isdigit() else "mark" if token in MARKS and token not in SEPARATORS else "separator"
        if previous is not None:
            gaps = MARK_GAP if "mark" in (kind, previous) else SEPARATOR_GAP if "separator" in (kind, previous) \
                else DIGIT_GAP
            x += float(rng.uniform(*gaps)) * H
        baseline = H * (1 + slope * x / H * 0.2 + float(rng.uniform(-0.04, 0.04)))
        if kind == "digit":
            index = int(rng.choice(by_digit[int(token)]))
            if sources is not None:
                sources.append(index)
            image = images[index].astype(np.float32) / 255
            rows, cols = np.nonzero(image > 0)
            crop = image[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
            factor = H * float(rng.uniform(0.9, 1.1)) / crop.shape[0]
            size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))
            patch = np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), 0, 1)
            if previous == "digit" and x < 0:
                x = 0.0
            pieces.append((patch, x, baseline - patch.shape[0]))
            x += patch.shape[1]
        else:
            strokes, width = _symbol_strokes(token, rng)
            patch, left, top = _draw_strokes(strokes, H, thickness)
            pieces.append((patch, x + left, baseline - H + top))
            x += width * H
        previous = kind
    lefts = [p[1] for p in pieces]
    tops = [p[2] for p in pieces]
    x0, y0 = min(lefts), min(tops)
    x1 = max(p[1] + p[0].shape[1] for p in pieces)
    y1 = max(p[2] + p[0].shape[0] for p in pieces)
    pad = round(margin * H)
    canvas = np.zeros((int(math.ceil(y1 - y0)) + 2 * pad, int(math.ceil(x1 - x0)) + 2 * pad), np.float32)
    for patch, left, top in pieces:
        c, r = int(round(left - x0)) + pad, int(round(top - y0)) + pad
        region = canvas[r: r + patch.shape[0], c: c + patch.shape[1]]
        np.maximum(region, patch[: region.shape[0], : region.shape[1]], out=region)
    return canvas
