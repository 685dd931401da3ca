"""Printed form lines on a page: found and painted the paper's colour, except where pen strokes cross them.

`find_form_lines(gray)` -> FormLines: the page levelled (turned by the angle of its lines) on a working copy, its
ink, the rules found (underlines, box and comb edges, table borders, frames) and the frames they make: a comb row
(a row of adjacent cells, one digit each) or a box, whose ink the page reader (digitscan.reading.page) takes as one
field. `remove_form_lines(gray)` is the cleaned page alone, as uint8 grey.

The page is levelled first (`level_angle`: the turn that makes the ink's row profile sharpest, to about 0.03
degrees), so that rules are rows and columns of the working copy. How a rule is told from a pen stroke: it is long
and thin and straight. A horizontal run longer than MIN_RULE_LENGTH is a rule when it is also much longer than the
ink it touches is tall (the bar of a 7 is about as long as the 7 is tall; an underline runs under several digits),
or very long. Short vertical rules (a comb's cell walls, a box's sides) are only looked for between two horizontal
rules of the same extent, where they cross the whole gap; of those, a comb keeps the evenly spaced ones (a "1"
drawn straight down from rule to rule is off the grid). Long vertical ones (table borders) anywhere.

Painting out: each rule's band (as thick as the line) takes the paper's level, except where a pen stroke crosses
it (ink beyond the band on both sides), which keeps the stroke whole; a stroke that only sits on a line loses
what the line covered.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from digitscan.constants import PAGE_WORK_SIDE
from digitscan.image.decode import NO_PIXEL_LIMIT, gray_from_array
from digitscan.image.ink import components

INK_LEVEL = 0.33  # darkness (1 - grey / paper) from which a pixel is ink: pens and print are far darker, paper grain
# and JPEG ringing far lighter
LINE_LEVEL = 0.2  # rules are looked for from this darkness: a thin line blurred by a scan is fainter than a stroke
MAX_SKEW_DEG = 5.0  # pages are levelled within this angle
MIN_RULE_LENGTH = 40  # px of the working copy (and at least _RULE_PAGE_FRACTION of its longer side)
_RULE_PAGE_FRACTION = 0.03
_RULE_OVER_INK = 1.6  # a run shorter than _LONG_RULE x MIN_RULE_LENGTH is a rule when this many times as long as
_LONG_RULE = 3.0  # the ink touching it is tall
_MAX_RULE_THICKNESS = 0.006  # of the longer side (at least 6 px): thicker runs are filled bars or pen strokes
_WALL_COVER = 0.85  # a cell wall inks this share of the rows between the two rules it joins
_MIN_FRAME_GAP = 10  # px between a frame's top and bottom rules: less is a double line
_MAX_FRAME_GAP = 0.22  # of the longer side: taller frames are sections, not fields
_LONG_VERTICAL = 0.06  # of the longer side (at least 2 x MIN_RULE_LENGTH): a vertical rule anywhere
_PROFILE_KERNEL = np.exp(-0.5 * np.arange(-4, 5) ** 2) / np.sqrt(2 * np.pi)  # a Gaussian of one half-pixel bin
_END_CAP = 2  # px: a rule's band reaches this far past its ends
_FRAME_OVERLAP = 0.9  # a frame's top and bottom rules share this much of the longer one's extent
_COMB_CELL_ASPECT = 1.6  # comb cells are at most this much wider than tall and of nearly equal width
_COMB_CELL_SPREAD = 1.5  # widest over narrowest cell


@dataclass
class Rule:
    """A printed line in the levelled working copy: its band is centre +- thickness / 2 across [start, end)."""

    horizontal: bool
    start: int  # first column (horizontal) or row (vertical) along the line
    end: int  # exclusive
    slope: float  # the centre line: centre = slope * position + intercept (row of a horizontal rule, column of a
    intercept: float  # vertical one)
    thickness: float

    def centre(self, position: float) -> float:
        return self.slope * position + self.intercept

    @property
    def length(self) -> int:
        return self.end - self.start


@dataclass
class Frame:
    """A comb row or a box: the space between two horizontal rules and its walls (working-copy pixels)."""

    kind: str  # "comb" or "box"
    x0: int
    y0: int  # the top rule's centre
    x1: int
    y1: int  # the bottom rule's centre
    walls: list[int]  # the columns of its walls, left to right: comb cells lie between neighbours


@dataclass
class FormLines:
    """A page with its printed lines found, on the levelled working copy."""

    gray: np.ndarray  # (h, w) float32 in [0, 1], 1 = white: the levelled page before cleaning
    cleaned: np.ndarray  # (h, w) float32: the same with every rule painted the paper's colour, crossings mended
    paper: np.ndarray  # (h, w) float32: the paper's brightness
    erased: np.ndarray  # (h, w) bool: the pixels painted out (rules' bands, where no stroke crosses them)
    rules: list[Rule]
    frames: list[Frame]
    underlines: list[Rule]  # the horizontal rules that are no frame's top or bottom
    matrix: np.ndarray  # (2, 3): input page pixels -> working copy pixels (scale, then the levelling turn)
    angle: float  # degrees the page was turned (counter-clockwise, as cv2.getRotationMatrix2D)
    input_shape: tuple[int, int]

    def ink(self, cleaned: bool = True) -> np.ndarray:
        """(h, w) bool: the ink of the cleaned (or the levelled) page."""
        return darkness(self.cleaned if cleaned else self.gray, self.paper) >= INK_LEVEL

    def to_input_box(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        """A working-copy box (corners) -> [x, y, w, h] in input pixels: the box around its corners turned back."""
        inverse = cv2.invertAffineTransform(self.matrix)
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]], np.float64) @ inverse.T
        height, width = self.input_shape
        left, top = np.clip(np.floor(corners.min(axis=0)), 0, [width, height]).astype(int)
        right, bottom = np.clip(np.ceil(corners.max(axis=0)), 0, [width, height]).astype(int)
        return [int(left), int(top), int(right - left), int(bottom - top)]


def remove_form_lines(gray: np.ndarray, *, field: bool = False, page_side: int | None = None) -> np.ndarray:
    """The page with its printed rules (comb boxes, underlines, boxes, table borders) painted the paper's colour
    and the pen strokes that crossed them mended: uint8 grey, the input's size, levelled by the angle of its
    lines (see find_form_lines; a page that is already level is not turned). field: the image is one field cut
    from a form (a template's box), which its frame may fill; page_side: see find_form_lines."""
    lines = find_form_lines(gray, field=field, page_side=page_side)
    cleaned = lines.cleaned
    height, width = lines.input_shape
    if cleaned.shape != (height, width):  # worked on a smaller copy
        cleaned = cv2.resize(cleaned, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.round(np.clip(cleaned, 0, 1) * 255).astype(np.uint8)


def find_form_lines(gray: np.ndarray, *, field: bool = False, page_side: int | None = None) -> FormLines:
    """Level the page (within MAX_SKEW_DEG), find its rules and frames and paint them out. gray: any grey or
    colour array decode_image accepts (dark ink on light paper; a dark page with light ink is inverted). field:
    the image is one field's crop, so a frame may be as tall as the image (on a page, taller frames than
    _MAX_FRAME_GAP of its side are sections, not fields). page_side: the longer side (px) of the page the image
    was cut from, when it is a crop: its rules are as long and as thick as the page's, so they are measured
    against the page's side, not the crop's (a comb's walls 8 px thick on an A4 scan would be bars in a crop
    300 px wide)."""
    page = gray_from_array(gray, max_pixels=NO_PIXEL_LIMIT)
    input_shape = page.shape
    if float(np.median(page[:: max(1, page.shape[0] // 64), :: max(1, page.shape[1] // 64)])) < 0.4:
        page = 1 - page  # light ink on a dark ground
    scale = min(1.0, PAGE_WORK_SIDE / max(page.shape))
    if scale < 1:
        size = (max(1, round(page.shape[1] * scale)), max(1, round(page.shape[0] * scale)))
        page = cv2.resize(page, size, interpolation=cv2.INTER_AREA)
    matrix = np.array([[scale, 0, 0], [0, scale, 0]], np.float64)
    paper = paper_level(page)
    angle = level_angle(darkness(page, paper) >= INK_LEVEL)
    if angle:
        turn = cv2.getRotationMatrix2D((page.shape[1] / 2, page.shape[0] / 2), angle, 1.0)
        page = cv2.warpAffine(page, turn, (page.shape[1], page.shape[0]), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        paper = paper_level(page)
        matrix = np.vstack([turn, [0, 0, 1]])[:2] @ np.vstack([matrix, [0, 0, 1]])
    ink = darkness(page, paper) >= LINE_LEVEL
    side = max(page.shape)
    reference = side if page_side is None else max(side, page_side * scale)  # rules are sized by the page
    min_length = max(MIN_RULE_LENGTH, round(_RULE_PAGE_FRACTION * reference))
    max_thickness = max(6.0, _MAX_RULE_THICKNESS * reference)
    horizontal = _horizontal_rules(ink, min_length, max_thickness)
    frames, walls = _frames(ink, horizontal, max_thickness, side if field else _MAX_FRAME_GAP * side)
    horizontal = _inside_frames(horizontal, frames)
    vertical = walls + _long_vertical_rules(ink, max(2 * min_length, round(_LONG_VERTICAL * side)), max_thickness)
    rules = horizontal + vertical
    cleaned, erased = _paint_out(page, paper, rules)
    edges = {id(rule) for frame_rules in (_frame_edges(frame, horizontal) for frame in frames) for rule in frame_rules}
    underlines = [rule for rule in horizontal if id(rule) not in edges]
    return FormLines(page, cleaned, paper, erased, rules, frames, underlines, matrix, angle, input_shape)


def paper_level(page: np.ndarray) -> np.ndarray:
    """The paper's brightness around each pixel: a grey closing far wider than any pen stroke, on a quarter-size
    copy (the paper's light changes slowly), never darker than the pixel itself."""
    small = cv2.resize(page, (max(1, page.shape[1] // 4), max(1, page.shape[0] // 4)), interpolation=cv2.INTER_AREA)
    closed = cv2.morphologyEx(small, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 9)))
    closed = cv2.GaussianBlur(closed, (0, 0), 2.0)
    level = cv2.resize(closed, (page.shape[1], page.shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.maximum(level, page)


def darkness(page: np.ndarray, paper: np.ndarray) -> np.ndarray:
    """How much darker than the paper each pixel is, as a share of the paper's brightness: 0 paper, 1 black."""
    return np.clip((paper - page) / np.maximum(paper, 0.1), 0, 1)


def level_angle(ink: np.ndarray) -> float:
    """Degrees to turn the page (cv2's sense) so its rules and lines of text are level: the angle at which the
    ink's row profile is sharpest (the sum of squared ink counts per half-pixel row, smoothed), searched in steps
    of 0.25, then 0.05 and 0.01 degrees; 0 when no angle beats level by 1 %.
    """
    small = ink
    factor = min(1.0, 1000 / max(ink.shape))
    if factor < 1:
        small = cv2.resize(ink.astype(np.uint8), (max(1, round(ink.shape[1] * factor)),
                                                  max(1, round(ink.shape[0] * factor))),
                           interpolation=cv2.INTER_AREA) > 0
    rows, cols = np.nonzero(small)
    if rows.size < 50:
        return 0.0
    step = max(1, rows.size // 60_000)
    rows, cols = rows[::step].astype(np.float64), cols[::step].astype(np.float64)
    centre = (small.shape[1] / 2, small.shape[0] / 2)

    def sharpness(angle: float) -> float:
        turn = cv2.getRotationMatrix2D(centre, angle, 1.0)
        turned = turn[1, 0] * cols + turn[1, 1] * rows + turn[1, 2]  # each point's row after the turn
        # Half-pixel rows, smoothed over about a pixel: unsmoothed, an image's own rows land whole in single bins
        # at 0 degrees only, which biases the search towards level.
        counts = np.bincount(np.round(2 * (turned - turned.min())).astype(np.int64)).astype(np.float64)
        counts = np.convolve(counts, _PROFILE_KERNEL, mode="same")
        return float(np.dot(counts, counts))

    best, step = 0.0, 0.25
    candidates = np.arange(-MAX_SKEW_DEG, MAX_SKEW_DEG + 1e-9, step)
    for _ in range(3):  # steps of 0.25, 0.05 and 0.01 degrees around the best so far
        scores = [sharpness(a) for a in candidates]
        best = float(candidates[int(np.argmax(scores))])
        step /= 5
        candidates = np.arange(best - 5 * step, best + 5 * step + 1e-9, step)
    if max(scores) < 1.01 * sharpness(0.0) or abs(best) < 0.05:
        return 0.0
    return round(best, 2)


def _horizontal_rules(ink: np.ndarray, min_length: int, max_thickness: float) -> list[Rule]:
    """The horizontal rules of a level page (see the module's docstring)."""
    runs = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, np.ones((1, min_length), np.uint8))
    count, labels, stats = components(runs)
    candidates = []
    for label in range(1, count):
        left, top, width, tall, _ = (int(v) for v in stats[label])
        if width < min_length:
            continue
        window = labels[top: top + tall, left: left + width] == label
        rule = _fit_rule(window, left, top, horizontal=True, max_thickness=max_thickness)
        if rule is not None:
            candidates.append(rule)
    rules = _join_collinear(candidates)
    long = [rule for rule in rules if rule.length >= _LONG_RULE * min_length]
    bands = _band_mask(ink.shape, long)  # the ink touching a shorter run is measured without these
    return long + [rule for rule in rules if rule.length < _LONG_RULE * min_length
                   and rule.length >= _RULE_OVER_INK * _touching_height(ink, bands, rule)]


def _fit_rule(run: np.ndarray, left: int, top: int, *, horizontal: bool, max_thickness: float) -> Rule | None:
    """The straight band of an opened run (its mask in its box at (left, top)), or None when it is too thick.

    Where a pen stroke crosses or sits on the line, its columns are thicker; the band follows the columns that
    hold only the line, so the stroke keeps the part of it off the line.
    """
    if not horizontal:
        run = run.T
        left, top = top, left
    columns = np.flatnonzero(run.any(axis=0))
    counts = run[:, columns].sum(axis=0)  # (c,) ink per column
    thickness = float(np.median(counts))
    if thickness > max_thickness:
        return None
    centres = (run[:, columns] * np.arange(run.shape[0])[:, None]).sum(axis=0) / counts
    plain = counts <= thickness + 1
    if plain.mean() < 0.5:
        return None  # mostly thicker than itself: a pen stroke that a wall or a rule runs into
    slope, intercept = np.polyfit(columns[plain].astype(np.float64), centres[plain], 1) if plain.sum() >= 2 else \
        (0.0, float(centres.mean()))
    if np.abs(centres[plain] - (slope * columns[plain] + intercept)).mean() > 1.0:
        return None  # not straight: a stroke
    intercept = intercept + top - slope * left  # in page coordinates
    return Rule(horizontal, left + int(columns.min()), left + int(columns.max()) + 1, float(slope),
                float(intercept), thickness)


def _join_collinear(rules: list[Rule]) -> list[Rule]:
    """Pieces of one line (broken by noise or a faint spot) joined: the same centre within 2 px, gaps under 8 px.
    A shorter run lying along a line within its thickness (the line's rim thickened by strokes touching it) is
    part of it."""
    joined: list[Rule] = []
    for rule in sorted(rules, key=lambda r: -r.length):
        for other in joined:
            middle = (max(rule.start, other.start) + min(rule.end, other.end)) / 2
            apart = abs(other.centre(middle) - rule.centre(middle))
            if other.start <= rule.start and rule.end <= other.end and apart <= (other.thickness + rule.thickness) / 2:
                break  # along the longer line
            if rule.start - other.end <= 8 and other.start - rule.end <= 8 and apart <= 2:
                total = other.length + rule.length
                other.thickness = (other.thickness * other.length + rule.thickness * rule.length) / total
                other.start, other.end = min(other.start, rule.start), max(other.end, rule.end)
                break
        else:
            joined.append(rule)
    return joined


def _band_offsets(rule: Rule) -> np.ndarray:
    """Offsets across the line that its erased band covers: the line as thick as it is at LINE_LEVEL (its faint
    rim beyond is no ink), not a pixel more: a digit sitting on the line loses only what the line covers."""
    half = int(rule.thickness / 2 + 0.5)
    return np.arange(-half, half + 1)


def _along(rule: Rule) -> np.ndarray:
    """The positions along a rule that its band covers: its length and _END_CAP more at both ends (a pen's round
    cap, an antialiased end)."""
    return np.arange(rule.start - _END_CAP, rule.end + _END_CAP)


def _band_pixels(rule: Rule, shape: tuple[int, int], extra: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the pixels of a rule's band, clipped to the page; `extra` widens it."""
    along = _along(rule)
    centre = np.round(rule.centre(along)).astype(np.int64)
    offsets = _band_offsets(rule)
    if extra:
        offsets = np.arange(offsets[0] - extra, offsets[-1] + extra + 1)
    across = centre[None, :] + offsets[:, None]  # (k, n)
    along = np.broadcast_to(along, across.shape)
    rows, cols = (across, along) if rule.horizontal else (along, across)
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    return rows[inside], cols[inside]


def _band_mask(shape: tuple[int, int], rules: list[Rule]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for rule in rules:
        rows, cols = _band_pixels(rule, shape)
        mask[rows, cols] = True
    return mask


def _touching_height(ink: np.ndarray, bands: np.ndarray, rule: Rule) -> float:
    """How tall the ink touching a horizontal rule is (its own band and the long rules' left out): its tallest
    piece."""
    reach = rule.length
    top = max(0, int(rule.centre(rule.start)) - reach)
    bottom = min(ink.shape[0], int(rule.centre(rule.end)) + reach + 1)
    left, right = max(0, rule.start - 2), min(ink.shape[1], rule.end + 2)
    window = ink[top:bottom, left:right] & ~bands[top:bottom, left:right]
    own = np.zeros(window.shape, bool)
    rows, cols = _band_pixels(rule, ink.shape)
    window[rows - top, cols - left] = False
    rows, cols = _band_pixels(rule, ink.shape, extra=2)
    own[rows - top, cols - left] = True  # the band and two pixels around it: what touches the line
    count, labels, stats = components(window)
    touching = np.unique(labels[own & window])
    touching = touching[touching > 0]
    return float(stats[touching, cv2.CC_STAT_HEIGHT].max()) if touching.size else 0.0


def _frames(ink: np.ndarray, horizontal: list[Rule], max_thickness: float,
            max_gap: float) -> tuple[list[Frame], list[Rule]]:
    """Comb rows and boxes: two horizontal rules of about the same extent, at most max_gap px one above the
    other, with walls that cross the whole gap between them at both ends (see the module's docstring). Returns
    the frames and their walls as vertical rules."""
    frames, walls = [], []
    by_row = sorted(horizontal, key=lambda r: r.centre((r.start + r.end) / 2))
    for i, upper in enumerate(by_row):
        for lower in by_row[i + 1:]:
            left, right = max(upper.start, lower.start), min(upper.end, lower.end)
            if right - left < _FRAME_OVERLAP * max(upper.length, lower.length):
                continue
            middle = (left + right) / 2
            gap = lower.centre(middle) - upper.centre(middle)
            if gap > max_gap:
                break
            if gap < _MIN_FRAME_GAP:
                continue
            found = _cells(_walls(ink, upper, lower, left, right, max_thickness), gap)
            reach = max(upper.thickness, lower.thickness) + 4
            if len(found) >= 2 and found[0].intercept - left <= reach and right - found[-1].intercept <= reach:
                frames.extend(_frames_from_walls(upper, lower, found))
                walls.extend(found)
                break
    return frames, walls


def _inside_frames(rules: list[Rule], frames: list[Frame]) -> list[Rule]:
    """The rules that are not pen strokes inside a frame (between its top and bottom, within its walls)."""
    def inside(rule: Rule, frame: Frame) -> bool:
        centre = rule.centre((rule.start + rule.end) / 2)
        return frame.x0 - 2 <= rule.start and rule.end <= frame.x1 + 2 and \
            frame.y0 + rule.thickness < centre < frame.y1 - rule.thickness

    return [rule for rule in rules if not any(inside(rule, frame) for frame in frames)]


def _walls(ink: np.ndarray, upper: Rule, lower: Rule, left: int, right: int, max_thickness: float) -> list[Rule]:
    """Wall candidates between two rules over columns [left, right): runs of columns inked across the whole gap
    (a pen stroke drawn straight down and touching both rules is one too; _cells sorts them out)."""
    columns = np.arange(max(0, left - 3), min(ink.shape[1], right + 3))
    top = np.ceil(upper.centre(columns) + upper.thickness / 2 + 1).astype(np.int64)
    bottom = np.floor(lower.centre(columns) - lower.thickness / 2 - 1).astype(np.int64)
    top, bottom = np.clip(top, 0, ink.shape[0] - 1), np.clip(bottom, 0, ink.shape[0] - 1)
    if (bottom - top).min() < 3:
        return []
    inked = np.array([ink[a: b + 1, c].sum() for a, b, c in zip(top, bottom, columns)])  # (c,) ink per column
    full = inked / (bottom - top + 1) >= _WALL_COVER
    walls = []
    edges = np.flatnonzero(np.diff(np.r_[0, full.astype(np.int8), 0]))
    for start, end in zip(edges[::2], edges[1::2]):
        if end - start > max_thickness + 2:
            continue  # a wide dark band, not a wall
        x0, x1 = int(columns[start]), int(columns[end - 1]) + 1
        y0 = int(np.floor(upper.centre((x0 + x1) / 2)))
        y1 = int(np.ceil(lower.centre((x0 + x1) / 2))) + 1
        walls.append(Rule(False, y0, y1, 0.0, (x0 + x1 - 1) / 2, float(x1 - x0)))
    return walls


def _cells(walls: list[Rule], height: float) -> list[Rule]:
    """The walls of a frame: its two ends, the walls of evenly spaced comb cells between them (the most cells
    that every one of their walls is found for), and walls splitting it into cells over twice as wide as tall (a
    table row). Any other candidate is a pen stroke inside a cell (a 1 drawn straight down, touching both rules)."""
    if len(walls) < 2:
        return []
    xs = np.array([w.intercept for w in walls])
    first, last = xs[0], xs[-1]
    width = last - first
    kept = {0, len(walls) - 1}
    for cells in range(len(walls) - 1, 1, -1):
        pitch = width / cells
        grid = first + pitch * np.arange(1, cells)
        nearest = np.abs(xs[None, :] - grid[:, None])  # (cells - 1, walls)
        if (nearest.min(axis=1) <= 0.15 * pitch).all():
            kept |= set(int(i) for i in nearest.argmin(axis=1))
            break
    for i in range(1, len(walls) - 1):
        if i not in kept:
            before = max(x for j, x in enumerate(xs) if j in kept and x < xs[i])
            after = min(x for j, x in enumerate(xs) if j in kept and x > xs[i])
            if min(xs[i] - before, after - xs[i]) > 2 * height:
                kept.add(i)
    return [walls[i] for i in sorted(kept)]


def _frames_from_walls(upper: Rule, lower: Rule, walls: list[Rule]) -> list[Frame]:
    """One comb row when the cells are many, narrow and even; else one box per cell (a table row's cells are
    separate fields)."""
    xs = [round(w.intercept) for w in walls]
    widths = np.diff(xs)
    middle = (xs[0] + xs[-1]) / 2
    y0, y1 = round(upper.centre(middle)), round(lower.centre(middle))
    height = y1 - y0
    if len(widths) >= 3 and widths.max() <= _COMB_CELL_ASPECT * height and \
            widths.max() <= _COMB_CELL_SPREAD * widths.min():
        return [Frame("comb", xs[0], y0, xs[-1], y1, xs)]
    return [Frame("box", a, y0, b, y1, [a, b]) for a, b in zip(xs, xs[1:]) if b - a > 2 * (upper.thickness + 2)]


def _frame_edges(frame: Frame, horizontal: list[Rule]) -> list[Rule]:
    """The horizontal rules that are a frame's top or bottom."""
    middle = (frame.x0 + frame.x1) / 2
    return [r for r in horizontal if r.start <= middle < r.end and
            min(abs(r.centre(middle) - frame.y0), abs(r.centre(middle) - frame.y1)) <= 2]


def _long_vertical_rules(ink: np.ndarray, min_length: int, max_thickness: float) -> list[Rule]:
    runs = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_OPEN, np.ones((min_length, 1), np.uint8))
    count, labels, stats = components(runs)
    rules = []
    for label in range(1, count):
        left, top, width, tall, _ = (int(v) for v in stats[label])
        if tall < min_length:
            continue
        rule = _fit_rule(labels[top: top + tall, left: left + width] == label, left, top, horizontal=False,
                         max_thickness=max_thickness)
        if rule is not None:
            rules.append(rule)
    return rules


def _paint_out(page: np.ndarray, paper: np.ndarray, rules: list[Rule]) -> tuple[np.ndarray, np.ndarray]:
    """Every rule's band painted the paper's level, except where a pen stroke crosses it: where ink of no other rule
    reaches two pixels deep beyond the band on one side and, within the band's width along the line, on the other,
    the band is left as it is, so the stroke keeps the part the line runs through. A stroke that only touches the
    line, or runs along it, loses what lies in the band. Returns (the cleaned page, the pixels painted out)."""
    erased = _band_mask(page.shape, rules)
    strokes = (darkness(page, paper) >= INK_LEVEL) & ~erased
    height, width = page.shape
    keep = np.zeros(page.shape, bool)
    for rule in rules:
        offsets = _band_offsets(rule)
        along = _along(rule)
        centre = np.round(rule.centre(along)).astype(np.int64)
        lo, hi = centre + offsets[0], centre + offsets[-1]  # the band's first and last row (column) across
        ok = (lo - 2 >= 0) & (hi + 2 < (height if rule.horizontal else width)) & (along >= 0) & \
            (along < (width if rule.horizontal else height))
        along, lo, hi = along[ok], lo[ok], hi[ok]
        if along.size == 0:  # a rule along the page's edge: nothing beyond it
            continue
        before = strokes[_at(rule, lo - 1, along)] & strokes[_at(rule, lo - 2, along)]  # (n,) along the line
        after = strokes[_at(rule, hi + 1, along)] & strokes[_at(rule, hi + 2, along)]
        # A slanted stroke leaves a horizontal band a little further along than it enters: look that far for the
        # other side. Not across a comb's walls, which digits touch from both cells.
        reach = np.ones(2 * len(offsets) + 1 if rule.horizontal else 1, np.uint8)
        near_before = cv2.dilate(before.astype(np.uint8)[None, :], reach[None, :])[0].astype(bool)
        near_after = cv2.dilate(after.astype(np.uint8)[None, :], reach[None, :])[0].astype(bool)
        crossed = (before & near_after) | (after & near_before)
        for k in range(len(offsets)):
            keep[_at(rule, lo[crossed] + k, along[crossed])] = True
    erased &= ~keep
    cleaned = page.copy()
    cleaned[erased] = paper[erased]
    return cleaned, erased


def _at(rule: Rule, across: np.ndarray, along: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) indexing the pixels at `across` the line and `along` it."""
    return (across, along) if rule.horizontal else (along, across)
