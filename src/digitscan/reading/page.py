"""Reading a form page: every handwritten number on it, wherever it stands, as a list of fields.

`read_page(gray, read_region)` -> [PageField(text, raw, box, confidence, needs_review, kind, reason)], top to
bottom and left to right; `find_fields(gray)` -> the FieldCandidates before reading, printed text included (marked).

Stages, each a function below:
1. Form lines (digitscan.reading.form_lines): the page levelled, its rules painted out, its comb rows and boxes.
2. Glyphs: the cleaned ink's connected components, pieces stacked in the same columns joined (a 5's bar, an i's
   dot).
3. Lines of writing: neighbouring glyphs of about the same height that share a band and stand closer than their
   height are one group; small marks (a dot, a comma, a dash) join the group they sit against.
4. Fields: the ink inside a comb row or a box is one field whatever its gaps; groups sitting on an underline are
   one field; every other group is a free field.
5. Printed or handwritten (`is_printed`, measured by `_evidence` on each line of text): type is drawn with
   straight edges, the page's labels are small, and a long printed line sits on one baseline; a person's digits
   curve and are written larger than the labels beside them. No model: a rule with thresholds chosen on generated
   dev pages (benchmarks/fields_pages.py --dev).
6. Reading: each handwritten field's ink alone (everything else painted out) on a crop with a margin goes to the
   caller's read_region, Recognizer.read in practice; a comb row's digits are brought together first.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from digitscan.constants import MAX_PAGE_COMPONENTS, MAX_PAGE_FIELDS, PAGE_TIME_LIMIT_S, REVIEW_CONFIDENCE
from digitscan.reading.form_lines import FormLines, Frame, Rule, find_form_lines
from digitscan.reading.layout import check_time
from digitscan.reading.text import review_reason

# Geometry is measured in glyph heights, never in pixels, except the floor on what counts as ink at all.
_SPECK_AREA = 3  # components with fewer pixels are noise
_BODY = 0.4  # glyphs under this (x the tallest in their line) are marks, not characters
_MAX_GLYPH_HEIGHT = 0.15  # of the page's longer side: taller ink is no character of a one-line number
_STACK_GAP = 0.35  # pieces in the same columns join into one glyph across a gap up to this (x the smaller, at least
# 2 px) + 1 px: a broken stroke, a 5's bar, an i's dot; not a label above a field, which is as far as it is tall
_STACK_WIDTH = 1.2  # ... the shorter piece at most this wide (x the taller's width): not a word of small print
_WORD_HEIGHTS = 0.6  # pieces side by side of heights within this ratio (a capital beside small letters), sharing
# this much of their rows and
_WORD_GAP = 0.6  # at most this far apart (x the taller's height) are letters of a word: never stacked on a digit
_LINK_OVERLAP = 0.5  # glyphs of one line share at least this much (x the shorter's height) of their rows,
_LINK_HEIGHTS = 0.6  # the shorter is at least this tall (x the taller), or _LINK_SMALL and then within _LINK_GAP of
_LINK_SMALL = 0.45  # its own height (a wide 5 beside a 0, not a label's letter beside a field)
_LINK_GAP = 0.8  # and the space between them is at most this (x the taller's height: a word space after a small letter)
_MARK = 0.55  # a glyph under this height (x its neighbour's) is a mark of that neighbour: a dot, comma or dash
_MARK_REACH = 0.8  # ... when it stands at most this far from it (x the neighbour's height)
_MARK_WIDTH = 0.6  # ... and is at most this wide (x the neighbour's height)
_SMALL = 0.4  # in a frame or on an underline, lines of ink under this (x the tallest character) are specks
_IN_FRAME = 0.4  # a glyph with this share of its rows inside a frame (and its middle between the walls) is in it
_FRAME_REACH = 6  # px: so is one ending this close outside the frame's top or bottom rule (the erased band's half)
_MERGED_CELLS = 1.2  # a comb row's glyph wider than this many cells is digits touching across a wall: cut at it
_COMB_SPACING = 0.3  # a comb row's digits are read this far apart (x their height), as people write on a line
_MARGIN = 0.3  # crops get this margin around the field's ink (x its height)
_SURELY_PRINTED = 0.45  # words this straight (see _evidence) set the page's text height,
_TEXT_ROWS = 3  # when they stand on at least this many rows of the page
# is_printed: printed when under _LABEL_SIZE x the page's text height, or at least _PRINTED_STRAIGHT straight
# (_FEW_STRAIGHT for _FEW_CHARACTERS or fewer), or _LINE_CHARACTERS or more characters with _LINE_BASELINE of their
# feet level and _LINE_STRAIGHT straight.
_LABEL_SIZE = 1.8
_PRINTED_STRAIGHT = 0.47
_FEW_CHARACTERS = 3
_FEW_STRAIGHT = 0.6
_CAPTION_SIZE = 1.3  # in a comb row or a box, only ink under this (x the page's text height) is small print
_LINE_CHARACTERS = 6
_LINE_BASELINE = 0.85
_LINE_STRAIGHT = 0.40
_LINE_HEIGHTS = 0.6  # groups judged as one line of text: heights within this ratio, feet level,
_LINE_GAP = 3.0  # and apart by at most this (x their height); characters of one size too, unless both are at least
_WORD_STRAIGHT = 0.35  # this straight (a printed word beside a printed number: "form A-2024")
_MAX_SPREAD = 2.5  # a line of writing is at most this tall (x its characters' median height); taller is clutter
_MIN_FIELD_HEIGHT = 12  # px of the working copy: shorter ink is no number anyone could read (nor the reader)


@dataclass
class FieldCandidate:
    """A piece of writing on the page that may be a field: one line of glyphs, a comb row's or a box's ink, or
    the writing on an underline."""

    box: list[int]  # [x, y, w, h] of its ink in input page pixels
    kind: str  # "comb", "underline", "box" or "free"
    printed: bool  # printed text (a label, a title, small print): never read
    evidence: dict = field(default_factory=dict)  # the measurements is_printed decided from


@dataclass
class PageField:
    """One handwritten number read on a page."""

    text: str  # digits 0-9 only
    raw: str  # as written, separators and group spaces included (reading.text.assemble)
    box: list[int]  # [x, y, w, h] in input page pixels
    confidence: float
    needs_review: bool  # a person should check it: see reason
    kind: str  # comb, underline, box or free
    reason: str | None = None  # why it needs review (reading.text.review_reason), None when it does not

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Glyph:
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    area: int
    labels: list[int]  # its components' labels in PageLayout.labels
    columns: tuple[int, int] | None = None  # only these columns [start, end) of them: a piece cut at a comb's wall

    @property
    def height(self) -> int:
        return self.y1 - self.y0


@dataclass
class _Group:
    glyphs: list[_Glyph]
    kind: str = "free"
    walls: list[int] | None = None  # a comb row's cell walls (working-copy columns), left to right

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (min(g.x0 for g in self.glyphs), min(g.y0 for g in self.glyphs), max(g.x1 for g in self.glyphs),
                max(g.y1 for g in self.glyphs))

    @property
    def height(self) -> int:
        x0, y0, x1, y1 = self.box
        return y1 - y0


@dataclass
class _Ink:
    """The cleaned page's ink, as the measurements of _evidence need it."""

    labels: np.ndarray  # (h, w) int32: component label of every pixel, 0 = none
    cut: np.ndarray  # (h, w) bool: next to a painted-out rule, where the outline is the rule's edge, not the pen's


@dataclass
class PageLayout:
    """A page's fields found (working-copy pixels inside, input pixels in the candidates)."""

    lines: FormLines
    labels: np.ndarray  # (h, w) int32: component label of every pixel of the cleaned ink, 0 = none
    candidates: list[FieldCandidate]
    groups: list[_Group]  # the ink of each candidate, in the same order


class _Sets:
    """Disjoint sets of 0..n-1 (union-find): which glyphs or groups belong together."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, i: int, j: int) -> None:
        self.parent[self.root(j)] = self.root(i)

    def members(self) -> list[list[int]]:
        """Each set's members, in increasing order."""
        sets: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            sets.setdefault(self.root(i), []).append(i)
        return list(sets.values())


def find_fields(gray: np.ndarray, *, time_limit_s: float = PAGE_TIME_LIMIT_S) -> list[FieldCandidate]:
    """Every candidate field on a page, top to bottom and left to right, printed ones marked (see the module's
    docstring). gray: a page as any array decode_image accepts."""
    return layout_page(gray, deadline=time.monotonic() + time_limit_s, time_limit_s=time_limit_s).candidates


def read_page(gray: np.ndarray, read_region: Callable[[np.ndarray], object], *,
              read_comb: Callable[[np.ndarray, int], object] | None = None,
              shape_problem: Callable[[str], str | None] | None = None,
              review_confidence: float = REVIEW_CONFIDENCE,
              time_limit_s: float = PAGE_TIME_LIMIT_S) -> list[PageField]:
    """The handwritten numbers on a page: each handwritten candidate's ink, alone on a crop with a margin (form
    lines removed, uint8 grey), read by read_region (a crop -> an object with .text, .confidence and, where the
    reader writes separators, .raw: Recognizer.read); comb rows, whose cells part the digits, by read_comb when
    given (crop, the number of cells holding a character -> a reading; Recognizer.read_page: both readers
    averaged, the cutting reader believed when it finds that many digits and the line reader fewer). A comb row
    read with fewer digits than it has cells holding a character needs review (more is no sign: a digit over a
    wall can hide it, and two digits then share a cell). shape_problem, when given, says why a reading's `raw`
    needs review for its separators (Recognizer.read_page: fields.formats.shape_problem, no amount, date, time or
    dashed number); review_confidence is the review rule's threshold for the readers used (reading.text.
    review_confidence). Fields read as no digits are left out. Past time_limit_s the reading stops with
    ImageTooComplexError."""
    deadline = time.monotonic() + time_limit_s
    layout = layout_page(gray, deadline=deadline, time_limit_s=time_limit_s)
    handwritten = [(c, g) for c, g in zip(layout.candidates, layout.groups) if not c.printed]
    fields = []
    for candidate, group in handwritten[:MAX_PAGE_FIELDS]:
        check_time(deadline, time_limit_s)
        crop = field_crop(layout, group)
        cells = len(_digit_cells(group)) if group.walls else None
        result = read_comb(crop, cells) if cells and read_comb else read_region(crop)
        if not result.text:
            continue
        confidence = float(result.confidence)
        closest = max((a.confidence for a in getattr(result, "alternatives", [])), default=None)
        reason = review_reason(confidence, closest, min_confidence=review_confidence)
        raw = getattr(result, "raw", result.text)
        if reason is None and cells and len(result.text) < cells:
            reason = f"{len(result.text)} digits read in {cells} comb cells with writing"
        if reason is None and shape_problem is not None:
            reason = shape_problem(raw)
        fields.append(PageField(result.text, raw, candidate.box, confidence,
                                reason is not None, candidate.kind, reason))
    return fields


def layout_page(gray: np.ndarray, *, deadline: float, time_limit_s: float) -> PageLayout:
    """Stages 1-5 of the module's docstring."""
    lines = find_form_lines(gray)
    check_time(deadline, time_limit_s)
    ink = lines.ink()
    _, labels, stats, _ = cv2.connectedComponentsWithStats(ink.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    measure = _Ink(labels, cv2.dilate(lines.erased.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
    glyphs = _glyphs(stats[1:], max(ink.shape))
    check_time(deadline, time_limit_s)
    framed, loose = _in_frames(glyphs, lines.frames)
    in_frames = [(frame, _attach_marks(_link(inside))) for frame, inside in framed if inside]
    line_groups = _attach_marks(_link(loose))
    text_height = _text_height(line_groups + [g for _, lines_in in in_frames for g in lines_in], measure)
    groups = [group for frame, lines_in in in_frames
              if (group := _frame_field(lines_in, frame, measure, text_height)) is not None]
    groups += _on_underlines(line_groups, lines.underlines)
    check_time(deadline, time_limit_s)
    groups = [g for g in groups if _MIN_FIELD_HEIGHT <= g.height <= _MAX_SPREAD * _character_height(g)]
    row = max(1, int(np.median([g.height for g in groups]))) if groups else 1
    groups.sort(key=lambda g: _reading_order(g, row))
    candidates = []
    for group, evidence in zip(groups, _line_evidence(groups, measure, text_height)):
        x0, y0, x1, y1 = group.box
        printed = _printed_in_frame(evidence) if group.kind in ("comb", "box") else is_printed(evidence)
        candidates.append(FieldCandidate(lines.to_input_box(x0, y0, x1, y1), group.kind, printed, evidence))
    return PageLayout(lines, labels, candidates, groups)


def _glyphs(stats: np.ndarray, side: int) -> list[_Glyph]:
    """Components (left, top, width, height, area per row; label = row + 1) -> glyphs: specks and ink taller
    than a character dropped, pieces in the same columns and close above one another joined (_STACK_GAP,
    _STACK_WIDTH)."""
    keep = np.flatnonzero((stats[:, cv2.CC_STAT_AREA] >= _SPECK_AREA)
                          & (stats[:, cv2.CC_STAT_HEIGHT] <= _MAX_GLYPH_HEIGHT * side))
    keep = keep[np.argsort(-stats[keep, cv2.CC_STAT_AREA], kind="stable")[:MAX_PAGE_COMPONENTS]]
    pieces = [_Glyph(int(s[0]), int(s[1]), int(s[0] + s[2]), int(s[1] + s[3]), int(s[4]), [int(i) + 1])
              for i, s in zip(keep, stats[keep])]
    pieces.sort(key=lambda g: g.x0)
    in_word = _in_words(pieces)
    stacks = _Sets(len(pieces))
    for i, a in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j]
            if b.x0 >= a.x1:
                break
            overlap = min(a.x1, b.x1) - b.x0
            gap = max(b.y0 - a.y1, a.y0 - b.y1)
            allowed = max(2, _STACK_GAP * min(a.height, b.height)) + 1
            (small, small_in_word), (big, _) = sorted(((a, in_word[i]), (b, in_word[j])), key=lambda p: p[0].height)
            if small_in_word and small.height < _LINK_HEIGHTS * big.height:
                continue  # a letter of a word of small print just above or below a digit, not a piece of it
            if overlap >= 0.5 * min(a.x1 - a.x0, b.x1 - b.x0) and gap <= allowed and \
                    small.x1 - small.x0 <= _STACK_WIDTH * (big.x1 - big.x0):
                stacks.join(i, j)
    glyphs = []
    for members in stacks.members():
        parts = [pieces[i] for i in members]
        glyphs.append(_Glyph(min(p.x0 for p in parts), min(p.y0 for p in parts), max(p.x1 for p in parts),
                             max(p.y1 for p in parts), sum(p.area for p in parts),
                             [label for p in parts for label in p.labels]))
    return glyphs


def _in_words(pieces: list[_Glyph]) -> list[bool]:
    """Whether each piece (sorted by x0) has a neighbour beside it of about its height in its rows, at most
    _WORD_GAP of their height away: a letter in a word (or a digit in a number), not a dot or a stroke's stub."""
    in_word = [False] * len(pieces)
    for i, a in enumerate(pieces):
        for j in range(i + 1, len(pieces)):
            b = pieces[j]
            if b.x0 > a.x1 + _WORD_GAP * a.height / _WORD_HEIGHTS:
                break
            short, tall = sorted((a.height, b.height))
            if short < _WORD_HEIGHTS * tall or min(a.y1, b.y1) - max(a.y0, b.y0) < _WORD_HEIGHTS * short:
                continue
            if 0 <= b.x0 - a.x1 <= _WORD_GAP * tall:
                in_word[i] = in_word[j] = True
    return in_word


def _in_frames(glyphs: list[_Glyph], frames: list[Frame]) -> tuple[list[tuple[Frame, list[_Glyph]]], list[_Glyph]]:
    """The glyphs inside each frame (their middle column within its walls, _IN_FRAME of their rows between its
    rules: a digit written across the frame's edge is in it; so is a piece of one ending at the top or bottom
    rule), and the others."""
    framed: list[tuple[Frame, list[_Glyph]]] = [(frame, []) for frame in frames]
    loose = []
    for glyph in glyphs:
        cx = (glyph.x0 + glyph.x1) / 2
        for frame, inside in framed:
            overlap = min(glyph.y1, frame.y1) - max(glyph.y0, frame.y0)
            # A piece of a digit written across the top or bottom rule, cut off by the rule's removal, ends at it.
            across = min(abs(glyph.y1 - frame.y0), abs(glyph.y0 - frame.y1)) <= _FRAME_REACH
            if frame.x0 <= cx <= frame.x1 and (overlap >= _IN_FRAME * glyph.height or across):
                inside.append(glyph)
                break
        else:
            loose.append(glyph)
    return framed, loose


def _frame_field(lines_in: list[_Group], frame: Frame, ink: _Ink, text_height: float | None) -> _Group | None:
    """A frame's ink as one field, without the printed text inside it (a box's caption): its lines of writing
    (lines_in) that are printed (_printed_in_frame) are left out, and so are specks (_without_small). None when
    nothing is left."""
    kept = []
    for group in lines_in:
        if not _printed_in_frame(_evidence(group, ink, text_height)):
            kept.append(group)
    kept = _without_small(kept)
    if not kept:
        return None
    glyphs = [glyph for g in kept for glyph in g.glyphs]
    if frame.kind != "comb":
        return _Group(sorted(glyphs, key=lambda g: g.x0), frame.kind)
    return _Group(sorted(_cut_at_walls(glyphs, frame.walls, ink.labels), key=lambda g: g.x0), frame.kind, frame.walls)


def _cut_at_walls(glyphs: list[_Glyph], walls: list[int], labels: np.ndarray) -> list[_Glyph]:
    """A comb row's glyphs, those wider than _MERGED_CELLS cells cut at the walls they span: digits in
    neighbouring cells that touch across the wall between them (a 5's bar on the 4 before it) are one piece of
    ink, which would otherwise go whole to the cell of its centre. Each piece keeps the columns of its cell. The
    row's outer sides are not cut at: what lies beyond them belongs to the cell inside."""
    if len(walls) < 3:
        return glyphs
    cell = float(np.median(np.diff(walls)))
    out = []
    for glyph in glyphs:
        inner = [w for w in walls[1:-1] if glyph.x0 < w < glyph.x1]
        if glyph.x1 - glyph.x0 <= _MERGED_CELLS * cell or not inner:
            out.append(glyph)
            continue
        bounds = [glyph.x0, *inner, glyph.x1]
        for start, end in zip(bounds[:-1], bounds[1:]):
            region = np.isin(labels[glyph.y0:glyph.y1, start:end], glyph.labels)
            rows, cols = np.nonzero(region)
            if rows.size < _SPECK_AREA:
                continue
            out.append(_Glyph(start + int(cols.min()), glyph.y0 + int(rows.min()), start + int(cols.max()) + 1,
                              glyph.y0 + int(rows.max()) + 1, int(rows.size), glyph.labels, (start, end)))
    return out


def _link(glyphs: list[_Glyph]) -> list[_Group]:
    """Glyphs -> lines of writing: neighbours of about the same height sharing a band, closer than their height.
    Marks between two glyphs (the dashes of 12-10-1978) do not count as space between them."""
    glyphs = sorted(glyphs, key=lambda g: g.x0)
    lines = _Sets(len(glyphs))
    marks = _marks(glyphs)
    mark_starts = [m.x0 for m in marks]
    widest_mark = max((m.x1 - m.x0 for m in marks), default=0)
    for i, a in enumerate(glyphs):
        # A partner is at most a.height / _LINK_SMALL tall and so at most _LINK_GAP of that away (twice that with
        # marks between them).
        reach = 2 * _LINK_GAP * a.height / _LINK_SMALL
        for j in range(i + 1, len(glyphs)):
            b = glyphs[j]
            if b.x0 > a.x1 + reach:
                break
            short, tall = sorted((a.height, b.height))
            if short < _LINK_SMALL * tall:
                continue
            if min(a.y1, b.y1) - max(a.y0, b.y0) < _LINK_OVERLAP * short:
                continue
            gap = max(b.x0 - a.x1, a.x0 - b.x1)
            allowed = _LINK_GAP * (tall if short >= _LINK_HEIGHTS * tall else short)
            if gap > allowed:
                top, bottom = min(a.y0, b.y0), max(a.y1, b.y1)
                left, right = min(a.x1, b.x1), max(a.x0, b.x0)
                first = bisect.bisect_left(mark_starts, left - widest_mark)
                gap -= sum(max(0, min(m.x1, right) - max(m.x0, left)) for m in marks[first:]
                           if m.x0 < right and top <= (m.y0 + m.y1) / 2 <= bottom + 0.3 * tall)
            if gap <= allowed:
                lines.join(i, j)
    return [_Group([glyphs[i] for i in members]) for members in lines.members()]  # left to right already


def _marks(glyphs: list[_Glyph]) -> list[_Glyph]:
    """The glyphs under _MARK of the height of a glyph within _MARK_REACH of that height beside them and sharing
    their rows: dots, commas, dashes. In the order given."""
    if not glyphs:
        return []
    x0, y0, x1, y1 = np.array([(g.x0, g.y0, g.x1, g.y1) for g in glyphs], np.float64).T
    tall = y1 - y0
    return [mark for i, mark in enumerate(glyphs) if _near_taller(i, x0, y0, x1, y1, tall).any()]


def _near_taller(i: int, x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray,
                 tall: np.ndarray) -> np.ndarray:
    """(n,) bool: the boxes that glyph (or group) i is a mark of: over _MARK of its height taller, their rows
    around its middle, at most _MARK_REACH of their height away (0 when they overlap)."""
    centre = (y0[i] + y1[i]) / 2
    gap = np.maximum(np.maximum(x0[i] - x1, x0 - x1[i]), 0)
    return (tall * _MARK > tall[i]) & (y0 - 0.2 * tall <= centre) & (centre <= y1 + 0.4 * tall) & \
        (gap <= _MARK_REACH * tall)


def _attach_marks(groups: list[_Group]) -> list[_Group]:
    """Small glyphs standing alone (a dot, a comma, a dash) join the nearest taller group they sit against: within
    its rows (a comma may hang below them) and at most _MARK_REACH of its height away; not a word of small print,
    wider than _MARK_WIDTH of the group's height."""
    if not groups:
        return []
    boxes = np.array([g.box for g in groups], np.float64)  # (n, 4) x0, y0, x1, y1, as before any mark joined
    x0, y0, x1, y1 = boxes.T
    tall = y1 - y0
    gone = np.zeros(len(groups), bool)
    for i, mark in enumerate(groups):
        if len(mark.glyphs) > 1:
            continue  # a word or a number, however small
        hosts = _near_taller(i, x0, y0, x1, y1, tall) & ~gone & (x1[i] - x0[i] <= _MARK_WIDTH * tall)
        hosts[i] = False
        if not hosts.any():
            continue
        gap = np.maximum(np.maximum(x0[i] - x1, x0 - x1[i]), 0) / np.maximum(tall, 1)
        best = int(np.flatnonzero(hosts)[np.argmin(gap[hosts])])
        groups[best].glyphs = sorted(groups[best].glyphs + mark.glyphs, key=lambda g: g.x0)
        gone[i] = True
    return [g for g, g_gone in zip(groups, gone) if not g_gone]


def _on_underlines(groups: list[_Group], underlines: list[Rule]) -> list[_Group]:
    """Groups written on the same underline merge into one field of kind "underline": mostly above the rule, their
    foot on it or close above it, within its length."""
    owner: dict[int, list[_Group]] = {}
    free = []
    for group in groups:
        x0, y0, x1, y1 = group.box
        height, cx = y1 - y0, (x0 + x1) / 2
        for index, rule in enumerate(underlines):
            line = rule.centre(cx)
            if rule.start - 0.2 * height <= cx <= rule.end and line - 0.5 * height <= y1 and y0 < line - 0.3 * height:
                owner.setdefault(index, []).append(group)
                break
        else:
            free.append(group)
    fields = [_Group(sorted([g for group in _without_small(owned) for g in group.glyphs], key=lambda g: g.x0),
                     "underline") for owned in owner.values()]
    return fields + free


def _without_small(groups: list[_Group]) -> list[_Group]:
    """The groups of one field without those under _SMALL of its tallest character's height: specks, pieces of
    small print (its marks are part of their groups already). Characters, not lines: a line of digits wandering up
    and down a comb row spans more than any of them, and a small digit in a cell of its own is still a digit."""
    tallest = max((glyph.height for g in groups for glyph in g.glyphs), default=0)
    return [g for g in groups if g.height >= _SMALL * tallest]


def _reading_order(group: _Group, row: int) -> tuple[int, int]:
    """Top to bottom by rows `row` px apart (a typical height), then left to right."""
    x0, y0, x1, y1 = group.box
    return (int(((y0 + y1) / 2) // row), x0)


def _text_height(groups: list[_Group], ink: _Ink) -> float | None:
    """The height of the page's printed text: the median character height of its words of three or more
    characters whose outline is mostly straight (_SURELY_PRINTED, see _evidence: labels, a title). None unless
    such words stand on _TEXT_ROWS rows of the page at least (a title alone is no measure of the labels; nor is
    the handwriting)."""
    words = [group for group in groups if len(_bodies(group.glyphs)) >= 3]  # not the pieces of broken letters
    printed = [group for group in words if _straightness(group, ink) >= _SURELY_PRINTED]
    rows = sorted((y0 + y1) / 2 for _, y0, _, y1 in (group.box for group in printed))
    heights = [g.height for group in printed for g in _bodies(group.glyphs)]
    if not heights or sum(np.diff(rows) > np.median(heights)) + 1 < _TEXT_ROWS:
        return None
    return float(np.median(heights))


def _line_evidence(groups: list[_Group], ink: _Ink, text_height: float | None) -> list[dict]:
    """Each group's evidence (_evidence), measured on its whole line of text: groups not in a frame that stand
    side by side, feet on one line and characters of about the same height (a title's words, apart by wide spaces),
    are judged together."""
    loose = [g for g in groups if g.kind in ("free", "underline")]
    feet = [float(np.median([g.y1 for g in _bodies(group.glyphs)])) for group in loose]
    tall = [float(max(g.height for g in group.glyphs)) for group in loose]  # a word's capitals and ascenders
    middle = [_character_height(group) for group in loose]
    straight = [_straightness(group, ink) >= _WORD_STRAIGHT for group in loose]
    boxes = [group.box for group in loose]
    lines = _Sets(len(loose))
    for a in range(len(loose)):
        for b in range(a + 1, len(loose)):
            ha, hb = tall[a], tall[b]
            if min(ha, hb) < _LINE_HEIGHTS * max(ha, hb) or abs(feet[a] - feet[b]) > max(1.5, 0.06 * max(ha, hb)):
                continue
            # Characters of about one size too, unless both words look printed already ("form" beside "A-2024"):
            # a label's small letters beside handwriting, on its baseline by chance, are not one line.
            sizes_differ = min(middle[a], middle[b]) < _LINE_HEIGHTS * max(middle[a], middle[b])
            if sizes_differ and not (straight[a] and straight[b]):
                continue
            if max(boxes[b][0] - boxes[a][2], boxes[a][0] - boxes[b][2]) <= _LINE_GAP * max(ha, hb):
                lines.join(a, b)
    evidence = {id(g): _evidence(g, ink, text_height) for g in groups}
    for members in lines.members():
        if len(members) > 1:
            line = [loose[i] for i in members]
            pooled = _evidence(_Group([glyph for g in line for glyph in g.glyphs]), ink, text_height)
            for g in line:
                evidence[id(g)] = pooled
    return [evidence[id(g)] for g in groups]


def _character_height(group: _Group) -> float:
    """The median height of the group's characters (its marks left out)."""
    return float(np.median([g.height for g in _bodies(group.glyphs)]))


def _bodies(glyphs: list[_Glyph]) -> list[_Glyph]:
    """The glyphs that are characters, not marks: at least _BODY of the tallest one's height (x-height letters beside
    ascenders are about half as tall; dots, commas and dashes far less)."""
    tallest = max(g.height for g in glyphs)
    return [g for g in glyphs if g.height >= _BODY * tallest]


def _evidence(group: _Group, ink: _Ink, text_height: float | None) -> dict:
    """What is_printed looks at, measured on the group's characters (marks left out).

    - straight: the share of the ink's outline on straight horizontal or vertical edges at least 15 % of the
      height long (type has stems, bars and serifs drawn with a ruler; a pen's strokes curve and slant);
    - size: the median character height over the page's printed text's (_text_height; None when unknown);
    - baseline: the share of characters whose foot lies within max(1 px, 4 % of the height) of the median foot;
    - tops: the same for the heads of the characters at least 90 % as tall as the tallest;
    - heights: the spread of the characters' heights, (max - min) / median.
    """
    bodies = _bodies(group.glyphs)
    heights = np.array([g.height for g in bodies], np.float64)
    height = float(np.median(heights))
    tolerance = max(1.0, 0.04 * height)
    feet = np.array([g.y1 for g in bodies], np.float64)
    heads = np.array([g.y0 for g in bodies if g.height >= 0.9 * heights.max()], np.float64)
    return {
        "characters": len(bodies),
        "height": height,
        "straight": _straightness(group, ink),
        "size": height / text_height if text_height else None,
        "baseline": float(np.mean(np.abs(feet - np.median(feet)) <= tolerance)),
        "tops": float(np.mean(np.abs(heads - np.median(heads)) <= tolerance)),
        "heights": float((heights.max() - heights.min()) / height),
    }


def _straightness(group: _Group, ink: _Ink) -> float:
    """straight_edges of the group's ink, counting runs at least 15 % of its characters' median height long and
    leaving out the edges a painted-out rule cut (a digit that sat on an underline has a flat foot)."""
    x0, y0, x1, y1 = group.box
    own = np.isin(ink.labels[y0:y1, x0:x1], [label for g in group.glyphs for label in g.labels])
    return straight_edges(own, max(3, round(0.15 * _character_height(group))), ignore=ink.cut[y0:y1, x0:x1])


def straight_edges(mask: np.ndarray, length: int, ignore: np.ndarray | None = None) -> float:
    """The share of a mask's outline (pixel edges between ink and paper) lying on straight horizontal or vertical
    runs of at least `length` edges; edges next to an `ignore` pixel (same shape) count for neither."""
    padded = np.pad(mask, 1).astype(np.int8)
    skip = np.pad(ignore, 1) if ignore is not None else np.zeros(padded.shape, bool)
    total, straight = 0, 0
    for edges in ((np.diff(padded, axis=0) != 0) & ~(skip[1:] | skip[:-1]),
                  ((np.diff(padded, axis=1) != 0) & ~(skip[:, 1:] | skip[:, :-1])).T):  # between rows, columns
        flat = np.pad(edges, ((0, 0), (1, 1))).astype(np.int8).ravel()  # a zero between lines ends every run
        steps = np.diff(flat)
        runs = np.flatnonzero(steps == -1) - np.flatnonzero(steps == 1)
        total += int(runs.sum())
        straight += int(runs[runs >= length].sum())
    return straight / max(1, total)


def is_printed(evidence: dict) -> bool:
    """Printed type, not handwriting, from the measurements of _evidence: about as small as the page's labels
    (handwriting on a form is larger than its print), or drawn with straight edges (all the straighter for a few
    characters alone: a 7, a 4 and a 1 have straight strokes), or a long line of characters sitting on one
    baseline, mostly straight.

    Developed on generated pages with DejaVu labels, the thresholds chosen on pages with FreeFont labels, both
    with MNIST validation digits (benchmarks/fields_pages.py --dev).
    """
    straight, size = evidence["straight"], evidence["size"]
    if size is not None and size < _LABEL_SIZE:
        return True  # size None: nothing printed to compare with, the shape alone decides
    if straight >= (_PRINTED_STRAIGHT if evidence["characters"] > _FEW_CHARACTERS else _FEW_STRAIGHT):
        return True
    return evidence["characters"] >= _LINE_CHARACTERS and evidence["baseline"] >= _LINE_BASELINE and \
        straight >= _LINE_STRAIGHT


def _printed_in_frame(evidence: dict) -> bool:
    """is_printed for what stands in a comb row or a box, which is handwriting unless plainly not: hardly taller
    than the labels (_CAPTION_SIZE: a caption in the box's corner), or three characters or more as straight as only
    type is (_FEW_STRAIGHT; a 1 or a 4 alone in its cell is as straight)."""
    small = evidence["size"] is not None and evidence["size"] < _CAPTION_SIZE
    return small or (evidence["characters"] >= 3 and evidence["straight"] >= _FEW_STRAIGHT)


def field_crop(layout: PageLayout, group: _Group) -> np.ndarray:
    """The field's ink alone on the cleaned page, with a margin: uint8 grey, every other pixel the paper's. A comb
    row's cells are brought together first (_comb_crop)."""
    x0, y0, x1, y1 = group.box
    margin = max(4, round(_MARGIN * (y1 - y0)))
    height, width = layout.labels.shape
    y0, y1 = max(0, y0 - margin), min(height, y1 + margin)
    if group.walls:
        crop = _comb_crop(layout, group, y0, y1, margin)
    else:
        crop = _ink_alone(layout, group.glyphs, (max(0, x0 - margin), y0, min(width, x1 + margin), y1))
    return np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8)


def _ink_alone(layout: PageLayout, glyphs: list[_Glyph], box: tuple[int, int, int, int]) -> np.ndarray:
    """(h, w) float32: the cleaned page in box (x0, y0, x1, y1) showing only these glyphs' ink (and its soft rim),
    the paper's level elsewhere."""
    x0, y0, x1, y1 = box
    labels = layout.labels[y0:y1, x0:x1]

    def rimmed(pieces: list[_Glyph]) -> np.ndarray:  # their ink and its soft rim
        ink = np.isin(labels, [label for g in pieces for label in g.labels]).astype(np.uint8)
        return cv2.dilate(ink, np.ones((5, 5), np.uint8)).astype(bool)

    own = rimmed([g for g in glyphs if g.columns is None])
    for piece in (g for g in glyphs if g.columns is not None):  # a piece cut at a wall: its own columns only
        start, end = (min(max(0, c - x0), x1 - x0) for c in piece.columns)
        own[:, start:end] |= rimmed([piece])[:, start:end]
    return np.where(own, layout.lines.cleaned[y0:y1, x0:x1], layout.lines.paper[y0:y1, x0:x1])


def _cells(group: _Group) -> dict[int, list[_Glyph]]:
    """A comb row's glyphs by the cell their centre lies in (cell k: between walls k-1 and k)."""
    cells: dict[int, list[_Glyph]] = {}
    for glyph in group.glyphs:
        cells.setdefault(bisect.bisect(group.walls, (glyph.x0 + glyph.x1) / 2), []).append(glyph)
    return cells


def _digit_cells(group: _Group) -> list[int]:
    """The comb row's cells that hold a character, not only a mark (_bodies): one digit each."""
    bodies = {id(g) for g in _bodies(group.glyphs)}
    return [cell for cell, glyphs in sorted(_cells(group).items()) if any(id(g) in bodies for g in glyphs)]


def _comb_crop(layout: PageLayout, group: _Group, top: int, bottom: int, margin: int) -> np.ndarray:
    """A comb row's digits side by side, _COMB_SPACING of their height apart, each cell's ink as it was written
    (a digit across the cell's edge keeps its parts outside): the line reader reads numbers written on a line,
    whose digits are closer than a comb's cells. Rows top to bottom of the page; (h, w) float32."""
    cells = _cells(group)
    gap = max(2, round(_COMB_SPACING * _character_height(group)))
    x0, _, x1, _ = group.box
    paper = float(np.median(layout.lines.paper[top:bottom, x0:x1]))
    parts = [np.full((bottom - top, margin), paper, np.float32)]
    for cell in sorted(cells):
        glyphs = cells[cell]
        parts.append(_ink_alone(layout, glyphs, (min(g.x0 for g in glyphs), top, max(g.x1 for g in glyphs), bottom)))
        parts.append(np.full((bottom - top, gap), paper, np.float32))
    parts[-1] = np.full((bottom - top, margin), paper, np.float32)
    return np.hstack(parts)
