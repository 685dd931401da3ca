"""Synthetic form pages: handwritten numbers in comb boxes, on underlines, in boxes and standing free, among printed
labels, section rules and frames, for benchmarks/fields_pages.py and the page reader's tests.

`make_page((images, labels), rng, fonts)` -> (image, PageTruth): a form of 5-15 fields on a 1000 x 1400 sheet (an A4
page at ~120 dpi), each with a printed label beside or above it, filled with a plain digit string (3-12 digits), a
date (12/03/2024, 12.03.2024, 12-03-2024, 2024-03-12) or an amount (1.250,00, 1,250.00, 250,00); separators are small
pen strokes (dot, comma, slash, dash). Printed text includes digits on purpose ("Box 12", "Form 1040", "Rev.
03/2023", "(DD/MM/YYYY)"): it is never a field. Some fields are left blank. Then a slight rotation (up to 2 degrees),
blur, noise and JPEG, each at random. Deterministic for a given rng state.

Digits come from the caller as MNIST-style arrays (ink bright on 0): MNIST digits in the benchmark (generated pages
are never committed) or `strokes.stroke_digit` pen digits. Printed fonts are split by family (`printed_fonts`):
DejaVu for developing the page reader's rules, FreeFont for choosing its thresholds, Liberation for the report.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitscan.synthetic.photos import glyph_from_mnist

PAGE_SIZE = (1000, 1400)  # (width, height) in pixels
KINDS = ("comb", "underline", "box", "free")
CONTENTS = ("plain", "date", "amount")
# Printed fonts by family, one Debian package each: (package, folder under /usr/share/fonts/truetype).
PRINTED_FONT_FAMILIES = {"train": ("fonts-dejavu-core", "dejavu"), "dev": ("fonts-freefont-ttf", "freefont"),
                         "test": ("fonts-liberation", "liberation")}
FONT_ROOT = Path("/usr/share/fonts/truetype")

# Labels by what the field holds; several hold printed digits, which must never come back as fields.
LABELS = {
    "plain": ("Account number", "Customer ID", "Postal code", "Phone", "Box 12", "Line 3a", "Policy number",
              "Tax ID", "Reference", "Membership no.", "Item 7", "Claim number", "Vehicle reg. no.", "Room",
              "Order no. (2024)", "Zip", "Box 1: Wages", "Serial no."),
    "date": ("Date of birth", "Date", "Date of issue", "Valid until", "Signed on", "Start date (Line 4)",
             "Date of entry"),
    "amount": ("Amount (EUR)", "Total", "Net amount", "VAT 19%", "Price", "Balance due", "Line 12 total",
               "Amount paid"),
}
HINTS = {"plain": ("(max. 10 digits)", "8 digits", "see line 12", "as on page 2"),
         "date": ("(DD/MM/YYYY)", "(DD.MM.YYYY)", "dd-mm-yyyy", "e.g. 01/04/2024"),
         "amount": ("e.g. 1.250,00", "in EUR", "incl. 19% VAT", "rounded to 0.01")}
TITLES = ("Form 1040", "Application form A-2024", "Tax return 2023", "Claim form 7B", "Registration 2025",
          "Order form", "Customer survey 3")
SECTIONS = ("1. Personal details", "2. Payment", "Part 3", "Section 2 - Income", "4 Bank details", "Part II")
FOOTERS = ("Page 1 of 2", "Rev. 03/2023", "Form 1040 (2024)", "ID 55-0021", "Printed 12.01.2024")
PENS = {"black": (25, 25, 35), "blue": (30, 55, 165), "dark blue": (20, 30, 90)}


@dataclass
class FieldTruth:
    kind: str  # comb, underline, box or free
    content: str  # plain, date or amount
    text: str  # the digits only
    raw: str  # as written: digits and separators
    box: list[int]  # [x, y, w, h]: the handwriting's ink, page pixels
    across_edge: bool = False  # a comb digit written across the cells' top or bottom edge
    frame: list[int] | None = None  # [x, y, w, h]: the printed comb row or box around it (what a template boxes)
    sources: list[int] = field(default_factory=list)  # the digit images it was written with (indices into the
    # images make_page was given), left to right: what a benchmark reads one by one to see what the model alone gets


@dataclass
class LabelTruth:
    text: str
    box: list[int]  # [x, y, w, h]: the printed ink, page pixels


@dataclass
class PageTruth:
    fields: list[FieldTruth] = field(default_factory=list)
    labels: list[LabelTruth] = field(default_factory=list)  # every piece of printed text
    rotation_deg: float = 0.0


def printed_fonts(split: str, root: Path = FONT_ROOT) -> list[str]:
    """The font files of one printed-font split ("train", "dev" or "test"), sorted."""
    package, folder = PRINTED_FONT_FAMILIES[split]
    files = sorted(str(p) for p in (root / folder).glob("*.ttf") if "Math" not in p.name)
    if not files:
        raise FileNotFoundError(f"no printed fonts under {root / folder}: apt-get install {package}")
    return files


class _Sheet:
    """The page being drawn: coverage of printed ink and of handwriting (float32 (H, W) in [0, 1])."""

    def __init__(self, width: int, height: int):
        self.printed = np.zeros((height, width), np.float32)
        self.hand = np.zeros((height, width), np.float32)
        self.truth = PageTruth()

    def snapshot(self) -> tuple:
        return self.printed.copy(), self.hand.copy(), len(self.truth.fields), len(self.truth.labels)

    def restore(self, snapshot: tuple) -> None:
        """Take back everything drawn since the snapshot, truth included."""
        printed, hand, fields, labels = snapshot
        self.printed[...], self.hand[...] = printed, hand
        del self.truth.fields[fields:], self.truth.labels[labels:]

    def paste(self, layer: np.ndarray, patch: np.ndarray, x: int, y: int) -> list[int] | None:
        """Add patch's coverage at (x, y) (clipped to the page); the box of its ink there, None when none lands."""
        height, width = layer.shape
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(width, x + patch.shape[1]), min(height, y + patch.shape[0])
        if x1 <= x0 or y1 <= y0:
            return None
        part = patch[y0 - y: y1 - y, x0 - x: x1 - x]
        np.maximum(layer[y0:y1, x0:x1], part, out=layer[y0:y1, x0:x1])
        rows, cols = np.nonzero(part > 0.25)
        if rows.size == 0:
            return None
        return [x0 + int(cols.min()), y0 + int(rows.min()), int(cols.max() - cols.min() + 1),
                int(rows.max() - rows.min() + 1)]

    def text(self, text: str, font_path: str, size: int, x: int, baseline: int) -> list[int]:
        """Print text with its baseline at `baseline`, starting at x; returns the ink box."""
        patch, ascent = _render_text(text, font_path, size)
        box = self.paste(self.printed, patch, x, baseline - ascent)
        if box is not None:
            self.truth.labels.append(LabelTruth(text, box))
        return box or [x, baseline, 0, 0]

    def line(self, x0: float, y0: float, x1: float, y1: float, thickness: int) -> None:
        canvas = np.zeros(self.printed.shape, np.uint8)
        cv2.line(canvas, (round(x0 * 16), round(y0 * 16)), (round(x1 * 16), round(y1 * 16)), 255, thickness,
                 cv2.LINE_AA, 4)
        np.maximum(self.printed, canvas.astype(np.float32) / 255, out=self.printed)

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, thickness: int) -> None:
        for a, b, c, d in ((x0, y0, x1, y0), (x0, y1, x1, y1), (x0, y0, x0, y1), (x1, y0, x1, y1)):
            self.line(a, b, c, d, thickness)


def _render_text(text: str, font_path: str, size: int) -> tuple[np.ndarray, int]:
    """(coverage of the text, the baseline's row in it)."""
    font = ImageFont.truetype(font_path, size)
    left, top, right, bottom = font.getbbox(text, anchor="ls")
    canvas = Image.new("L", (right - left + 4, bottom - top + 4), 0)
    ImageDraw.Draw(canvas).text((2 - left, 2 - top), text, fill=255, font=font, anchor="ls")
    return np.asarray(canvas, np.float32) / 255, 2 - top


class _Writer:
    """One person's handwriting on the page: MNIST-style digit images, a digit height, a pen."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, digit_height: float):
        self.images = images
        self.by_digit = [np.flatnonzero(labels == d) for d in range(10)]
        if any(len(indices) == 0 for indices in self.by_digit):
            raise ValueError("the digit source must hold every digit 0-9")
        self.rng = rng
        self.height = digit_height
        self.pen = max(2.0, rng.uniform(0.09, 0.13) * digit_height)  # separators' stroke width, like MNIST's pen
        self.used: list[int] = []  # the indices of the digit images written so far, in order

    def glyph(self, digit: int, height: float) -> np.ndarray:
        """One digit's coverage, its ink's longer side `height` px (MNIST's own box convention)."""
        index = int(self.by_digit[digit][self.rng.integers(len(self.by_digit[digit]))])
        self.used.append(index)
        crop = glyph_from_mnist(self.images[index])
        factor = height / max(crop.shape)
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))  # (w, h)
        coverage = np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), 0, 1)
        if factor > 2:  # an upscaled 28 px digit has soft, wide edges; a pen's are crisp
            coverage = np.clip((coverage - 0.3) / 0.4, 0, 1)
        return coverage

    def number(self, raw: str, *, spacing: tuple[float, float] = (0.12, 0.4), drift: float = 0.1,
               jitter: float = 0.1) -> np.ndarray:
        """The raw text written on one line: its coverage, cropped to the ink. Digits sit on a baseline that
        slopes and jitters by `drift` digit heights; sizes vary by `jitter`; gaps are `spacing` digit heights
        (separators sit closer)."""
        rng, height = self.rng, self.height
        pieces = []  # (coverage, bottom offset from the baseline, gap before it)
        slope = rng.uniform(-1, 1) * drift * height / max(1, len(raw) - 1)
        for i, char in enumerate(raw):
            gap = rng.uniform(*spacing) * height if i else 0.0
            if char.isdigit():
                glyph = self.glyph(int(char), height * rng.uniform(1 - jitter, 1 + jitter))
                offset = slope * i + rng.uniform(-0.3, 0.3) * drift * height
                pieces.append((glyph, offset, gap))
            else:
                mark, below = self.separator(char)
                pieces.append((mark, below + slope * i, rng.uniform(0.0, 0.12) * height if i else 0.0))
        pad = int(2 * height)
        width = int(sum(p[0].shape[1] + p[2] for p in pieces)) + 2 * pad
        canvas = np.zeros((int(4 * height) + 2 * pad, width), np.float32)
        baseline, x = canvas.shape[0] // 2, float(pad)
        for coverage, offset, gap in pieces:
            x += gap
            top = int(round(baseline + offset - coverage.shape[0]))
            left = int(round(x))
            region = canvas[top: top + coverage.shape[0], left: left + coverage.shape[1]]
            np.maximum(region, coverage, out=region)
            x += coverage.shape[1]
        rows, cols = np.nonzero(canvas > 0.02)
        return canvas[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]

    def separator(self, char: str) -> tuple[np.ndarray, float]:
        """A separator as a pen stroke: (coverage, how far its bottom lies below the baseline)."""
        h, pen, rng = self.height, self.pen, self.rng
        if char == ".":
            points, below = [(0.0, 0.0)], 0.0
        elif char == ",":
            points, below = [(0.12 * h, 0.0), (0.0, 0.25 * h)], 0.2 * h
        elif char == "/":
            points, below = [(0.0, 0.95 * h), (rng.uniform(0.25, 0.45) * h, 0.0)], 0.0
        elif char == "-":
            points, below = [(0.0, 0.0), (rng.uniform(0.25, 0.4) * h, rng.uniform(-0.03, 0.03) * h)], -0.4 * h
        else:
            raise ValueError(f"no pen stroke for separator {char!r}")
        points = np.array(points)
        points -= points.min(axis=0)
        size = np.ceil(points.max(axis=0) + 2 * pen + 2).astype(int)  # (w, h)
        canvas = np.zeros((size[1], size[0]), np.uint8)
        ends = [(round((px + pen + 1) * 16), round((py + pen + 1) * 16)) for px, py in points]
        if len(ends) == 1:
            cv2.circle(canvas, ends[0], round(0.6 * pen * 16), 255, -1, cv2.LINE_AA, 4)
        else:
            cv2.line(canvas, ends[0], ends[1], 255, max(1, round(pen)), cv2.LINE_AA, 4)
        coverage = canvas.astype(np.float32) / 255
        rows, cols = np.nonzero(coverage > 0.02)
        return coverage[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1], below


def random_content(content: str, rng: np.random.Generator) -> str:
    """The raw text of a field: a digit string, a date or an amount."""
    if content == "plain":
        return "".join(str(d) for d in rng.integers(0, 10, int(rng.integers(3, 13))))
    if content == "date":
        day, month, year = int(rng.integers(1, 29)), int(rng.integers(1, 13)), int(rng.integers(1950, 2030))
        style = int(rng.integers(4))
        if style == 3:
            return f"{year}-{month:02d}-{day:02d}"
        return f"{day:02d}{'/.-'[style]}{month:02d}{'/.-'[style]}{year}"
    euros, cents = int(10 ** rng.uniform(0, 5)), int(rng.integers(0, 100))
    grouped = f"{euros:,}"
    if rng.random() < 0.5:  # German style: 1.250,00
        return grouped.replace(",", ".") + f",{cents:02d}"
    return grouped + f".{cents:02d}"


def make_page(digits: tuple[np.ndarray, np.ndarray], rng: np.random.Generator, fonts: list[str], *,
              size: tuple[int, int] = PAGE_SIZE, fields: tuple[int, int] = (5, 15), nuisances: bool = True,
              blank_share: float = 0.1, across_edge: float = 0.05) -> tuple[np.ndarray, PageTruth]:
    """A form page: (image uint8, (H, W) grey or (H, W, 3) RGB, truth). See the module's docstring.

    digits: (images (N, 28, 28) uint8 ink bright, labels (N,)) holding every digit; fonts: printed font files
    (`printed_fonts(split)`); fields: how many to fill, at most (fewer when the sheet is full); blank_share: the
    share of drawn fields left empty (not in the truth); across_edge: the share of comb digits written across the
    cells' top or bottom edge (FieldTruth.across_edge marks their fields); nuisances: rotation, blur, noise and JPEG
    at random.
    """
    width, height = size
    sheet = _Sheet(width, height)
    writer = _Writer(*digits, rng, rng.uniform(28, 50))
    margin = int(rng.uniform(0.05, 0.08) * width)
    label_size = int(rng.integers(14, 23))
    font = str(rng.choice(fonts))
    bold = [f for f in fonts if "Bold" in Path(f).name and "Oblique" not in f and "Italic" not in f] or fonts
    y = margin
    if rng.random() < 0.8:
        y += _title(sheet, rng, str(rng.choice(bold)), margin, y)
    frame_top = y - 15 if rng.random() < 0.3 else None  # a frame around the fields, drawn once they are placed
    wanted = int(rng.integers(fields[0], fields[1] + 1))
    footer_room = 3 * label_size
    while len(sheet.truth.fields) < wanted:
        before = sheet.snapshot()  # to take the row back if it runs off the sheet
        if rng.random() < 0.15:
            y += _section(sheet, rng, str(rng.choice(bold)), label_size, margin, y, width)
        columns = 2 if rng.random() < 0.4 else 1
        span = (width - 2 * margin) / columns
        bottoms = []
        for column in range(columns):
            x0 = margin + column * span
            bottom = _field(sheet, writer, rng, font, label_size, (x0, x0 + span - 20), y,
                            filled=rng.random() >= blank_share, across_edge=across_edge)
            bottoms.append(bottom)
        bottom = max(bottoms)
        if bottom > height - margin - footer_room:  # the row does not fit: take it back and stop
            sheet.restore(before)
            break
        y = int(bottom + rng.uniform(25, 60))
    if frame_top is not None:
        sheet.rectangle(margin / 2, frame_top, width - margin / 2, height - margin - footer_room / 2,
                        int(rng.integers(1, 4)))
    if rng.random() < 0.6:
        sheet.text(str(rng.choice(FOOTERS)), font, max(11, label_size - 4), margin, height - margin)
    return _photograph(sheet, rng, nuisances)


def _title(sheet: _Sheet, rng: np.random.Generator, font: str, x: int, y: int) -> int:
    size = int(rng.integers(26, 42))
    box = sheet.text(str(rng.choice(TITLES)), font, size, x, y + size)
    if rng.random() < 0.5:
        sheet.line(x, box[1] + box[3] + 10, sheet.printed.shape[1] - x, box[1] + box[3] + 10, int(rng.integers(1, 4)))
    return size + 40


def _section(sheet: _Sheet, rng: np.random.Generator, font: str, size: int, x: int, y: int, width: int) -> int:
    sheet.text(str(rng.choice(SECTIONS)), font, size + 2, x, y + size + 2)
    sheet.line(x, y + size + 12, width - x, y + size + 12, int(rng.integers(1, 3)))
    return size + 35


def _field(sheet: _Sheet, writer: _Writer, rng: np.random.Generator, font: str, label_size: int,
           span: tuple[float, float], y: int, filled: bool, across_edge: float) -> int:
    """One labelled field in the horizontal span starting at row y; returns its bottom. The label stands to the
    left of the field, on its writing line or level with its middle, or above it."""
    kind = str(rng.choice(KINDS))
    content = "plain" if kind == "comb" else str(rng.choice(CONTENTS, p=[0.5, 0.25, 0.25]))
    raw = random_content(content, rng)
    if kind == "comb":
        raw = raw[:10] if len(raw) >= 4 else raw + "".join(str(d) for d in rng.integers(0, 10, 4 - len(raw)))
    label = str(rng.choice(LABELS[content]))
    h = writer.height
    label_patch, _ = _render_text(label, font, label_size)
    beside = rng.random() < 0.7
    x, top = int(span[0]), y
    if beside:
        x += label_patch.shape[1] + int(rng.uniform(0.5, 1.8) * h)
    else:
        label_box = sheet.text(label, font, label_size, x, y + label_size)
        top = label_box[1] + label_box[3] + int(rng.uniform(8, 18))
    room = int(span[1]) - x
    writing, written = None, len(writer.used)  # writer.used[written:]: the digit images of the field's writing
    if kind != "comb":
        writing = writer.number(raw, drift=rng.uniform(0.0, 0.25), jitter=rng.uniform(0.03, 0.15))
        if writing.shape[1] > room - 40:  # too long for the space: a short plain number, or nothing
            raw, content = random_content("plain", rng)[:3], "plain"
            written = len(writer.used)
            writing = writer.number(raw)
            if writing.shape[1] > room - 40:
                return top
    thickness = int(rng.integers(1, 4))
    ink, crossing, frame = None, False, None
    if kind == "comb":
        bottom, ink, crossing, frame = _comb(sheet, writer, rng, raw, x, top, room, thickness, filled, across_edge)
        if bottom is None:  # no room for the cells: a free number of 3 digits
            kind, content, raw = "free", "plain", raw[:3]
            written = len(writer.used)
            writing = writer.number(raw)
        else:
            middle = (top + bottom) / 2
    if kind == "underline":
        left = x + int(rng.uniform(5, 30))
        baseline = top + max(int(1.3 * h), writing.shape[0])  # written below the row's top: not into a label above
        if filled:
            ink = sheet.paste(sheet.hand, writing, left, baseline - writing.shape[0])
        rule_y = baseline + rng.uniform(-0.05, 0.12) * h
        end = min(x + room, left + writing.shape[1] + int(rng.uniform(20, 140)))
        sheet.line(x, rule_y, end, rule_y, thickness)
        bottom, middle = int(rule_y + 10), rule_y - 0.5 * h
    elif kind == "box":
        pad_y, pad_x = rng.uniform(0.2, 0.45) * h, rng.uniform(8, 30)
        box_w = min(room, writing.shape[1] + 2 * pad_x + rng.uniform(0, 150))
        box_h = writing.shape[0] + 2 * pad_y
        caption = rng.random() < 0.15 and box_w > 150  # small print inside the box, above the writing
        caption_size = max(11, label_size - 5)
        caption_h = caption_size + 6 if caption else 0
        sheet.rectangle(x, top, x + box_w, top + box_h + caption_h, thickness)
        frame = [int(x), int(top), int(np.ceil(box_w)) + 1, int(np.ceil(box_h + caption_h)) + 1]
        if caption:
            sheet.text(str(rng.choice(LABELS[content])), font, caption_size, x + 6, top + caption_size + 3)
        if filled:
            ink = sheet.paste(sheet.hand, writing, int(x + pad_x), int(top + caption_h + pad_y))
        bottom = int(top + box_h + caption_h)
        middle = (top + bottom) / 2
    elif kind == "free":
        baseline = top + max(int(1.2 * h), writing.shape[0])
        if filled:
            ink = sheet.paste(sheet.hand, writing, x + int(rng.uniform(0, 20)), baseline - writing.shape[0])
        bottom, middle = max(int(top + 1.4 * h), baseline + 4), baseline - 0.5 * h
    if beside:  # the label's middle level with the field's, give or take
        cap = 0.7 * label_size
        label_box = sheet.text(label, font, label_size, int(span[0]),
                               int(middle + cap / 2 + rng.uniform(-0.15, 0.15) * h))
    if filled and ink is not None:
        sheet.truth.fields.append(FieldTruth(kind, content, "".join(c for c in raw if c.isdigit()), raw, ink,
                                             crossing, frame, writer.used[written:]))
    if rng.random() < 0.15 and kind in ("underline", "box", "comb"):  # small print under the field
        hint_size = max(11, label_size - 5)
        hint = sheet.text(str(rng.choice(HINTS[content])), font, hint_size, x, bottom + hint_size + 6)
        bottom = hint[1] + hint[3]
    return max(bottom, label_box[1] + label_box[3])


def _comb(sheet: _Sheet, writer: _Writer, rng: np.random.Generator, raw: str, x: int, top: int, room: int,
          thickness: int, filled: bool,
          across_edge: float) -> tuple[int | None, list[int] | None, bool, list[int] | None]:
    """A row of comb cells, one digit in each (a few trailing cells may stay empty), each digit written across the
    cells' top or bottom edge with probability across_edge: (bottom, the digits' ink box, whether one is, the
    row's box); (None, None, False, None) when the cells do not fit."""
    cell_h = writer.height / rng.uniform(0.6, 0.8)
    cell_w = cell_h * rng.uniform(0.75, 1.1)
    cells = len(raw) + int(rng.integers(0, 3) if rng.random() < 0.3 else 0)
    if cells * cell_w > room:
        cells = len(raw)
        if cells * cell_w > room:
            return None, None, False, None
    for i in range(cells + 1):
        sheet.line(x + i * cell_w, top, x + i * cell_w, top + cell_h, thickness)
    sheet.line(x, top, x + cells * cell_w, top, thickness)
    sheet.line(x, top + cell_h, x + cells * cell_w, top + cell_h, thickness)
    frame = [int(x), int(top), int(np.ceil(cells * cell_w)) + 1, int(np.ceil(cell_h)) + 1]
    if not filled:
        return int(top + cell_h), None, False, frame
    boxes, crossing = [], False
    for i, char in enumerate(raw):
        glyph = writer.glyph(int(char), writer.height * rng.uniform(0.9, 1.1))
        cx = x + (i + 0.5) * cell_w + rng.uniform(-0.1, 0.1) * cell_w
        cy = top + cell_h / 2 + rng.uniform(-0.08, 0.08) * cell_h
        if rng.random() < across_edge:  # written across the cell's top or bottom edge, by 10-30 % of the digit
            cy += rng.choice([-1, 1]) * ((cell_h - glyph.shape[0]) / 2 + rng.uniform(0.1, 0.3) * glyph.shape[0])
            crossing = True
        box = sheet.paste(sheet.hand, glyph, int(round(cx - glyph.shape[1] / 2)), int(round(cy - glyph.shape[0] / 2)))
        if box is not None:
            boxes.append(box)
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[0] + b[2] for b in boxes), max(b[1] + b[3] for b in boxes)
    return int(top + cell_h), [x0, y0, x1 - x0, y1 - y0], crossing, frame


def _photograph(sheet: _Sheet, rng: np.random.Generator, nuisances: bool) -> tuple[np.ndarray, PageTruth]:
    """Ink the sheet (printed black or dark grey, handwriting in a pen's colour) and apply the nuisances."""
    height, width = sheet.printed.shape
    paper = np.array([rng.uniform(235, 252), rng.uniform(232, 250), rng.uniform(222, 245)], np.float32)
    printed_ink = np.full(3, rng.uniform(10, 80), np.float32)
    pen_name = str(rng.choice(list(PENS)))
    pen = np.array(PENS[pen_name], np.float32)
    printed = sheet.printed[..., None]
    hand = sheet.hand[..., None] * rng.uniform(0.85, 1.0)
    pixels = paper * (1 - printed) + printed_ink * printed
    pixels = pixels * (1 - hand) + pen * hand  # (H, W, 3)
    truth = sheet.truth
    if nuisances and rng.random() < 0.7:
        angle = float(rng.uniform(-2, 2))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        pixels = cv2.warpAffine(pixels, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in paper))
        for item in truth.fields + truth.labels:
            item.box = _rotate_box(item.box, matrix, (width, height))
        for item in truth.fields:
            item.frame = item.frame and _rotate_box(item.frame, matrix, (width, height))
        truth.rotation_deg = angle
    if nuisances and rng.random() < 0.4:
        pixels = cv2.GaussianBlur(pixels, (0, 0), rng.uniform(0.3, 0.9))
    if nuisances:
        pixels = pixels + rng.normal(0, rng.uniform(0.5, 5), (height, width, 1)).astype(np.float32)
    image = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
    if pen_name == "black" or rng.random() < 0.5:
        image = np.asarray(Image.fromarray(image).convert("L"))
    if nuisances and rng.random() < 0.5:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=int(rng.integers(55, 96)))
        image = np.asarray(Image.open(buffer))
    return image, truth


def _rotate_box(box: list[int], matrix: np.ndarray, size: tuple[int, int]) -> list[int]:
    """The box holding a rotated box's corners, clipped to the page."""
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)
    moved = corners @ matrix.T  # (4, 2)
    x0, y0 = np.floor(moved.min(axis=0)).astype(int)
    x1, y1 = np.ceil(moved.max(axis=0)).astype(int)
    x0, y0 = max(0, x0), max(0, y0)
    x1, y1 = min(size[0], x1), min(size[1], y1)
    return [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def draw_boxes(image: np.ndarray, boxes: list[tuple[list[int], tuple[int, int, int], str]]) -> Image.Image:
    """The page in RGB with each (box, colour, caption) drawn: for the benchmark's example images."""
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    for (x, y, w, h), colour, caption in boxes:
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=2)
        if caption:
            draw.text((x, max(0, y - 12)), caption, fill=colour)
    return canvas

