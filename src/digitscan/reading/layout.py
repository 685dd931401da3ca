"""The line layout shared by both readers: the cleaned ink of one line of writing, cut into atoms.

`find_atoms(gray)` -> Layout: ink_map's ink with underline rules erased (strokes crossing them mended), specks
dropped unless they nearly touch a digit, the typical digit height H, and (with `cut`) candidate seams through
components wide enough to hold two digits. The line reader (digitscan.reading.line_reader) reads the layout's
ink; cutting (digitscan.reading.segments) groups its atoms into digits. `DigitBox` is what both return per digit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from digitscan.constants import MAX_COMPONENTS
from digitscan.errors import ImageTooComplexError
from digitscan.image.ink import components, ink_map

# Every geometric threshold is a fraction of the median digit height H, so none depends on the image's resolution.
_INK_LEVEL = 0.35  # the soft ink map is binarized here for components; the soft values still feed the model
SPECK_EXTENT = 0.3  # components spanning less than this (x H) are specks ...
_PIECE_REACH = 0.06  # ... unless they come this close (x H) to a bigger component: a piece of a broken stroke
_RULE_MIN_LENGTH = 0.8  # a horizontal run this long (x H) and at most _RULE_THICKNESS thick may be a ruled line:
_RULE_LENGTH = 2.0  # it is one when this long, or when it reaches past the digits it touches on both sides
_RULE_THICKNESS = 0.3
_SPLIT_MIN_WIDTH = 0.75  # components narrower than this (x H) are never cut
_CUT_EDGE = 0.1  # no cut closer than this (x H) to a component's side
_CUT_SPACING = 0.12  # candidate cuts at least this far apart (x H)
_SEAM_REACH = 0.3  # a seam may wander this far (x H) left or right of its starting column
_STROKE = 0.12  # MNIST's pen width relative to the digit height: turns seam ink into a number of strokes cut


@dataclass
class DigitBox:
    """One digit read in a line, whichever reader found it."""

    digit: int
    confidence: float  # the model's probability of this digit
    box: list[int]  # [x, y, w, h] in input image pixels


@dataclass
class Symbol:
    """One symbol the line reader read: a digit, a separator (constants.SEPARATORS) or a mark (constants.MARK)."""

    symbol: str
    confidence: float  # the model's probability of this symbol
    box: list[int]  # [x, y, w, h] in input image pixels
    runner_up: str = ""  # the second most likely class where it was read ("": nothing at all)
    runner_up_confidence: float = 0.0


@dataclass
class Atom:
    """A piece of ink: a whole component or the slice of a wide one between two cuts (working-image pixels)."""

    label: int  # its label in the atom map
    x0: int
    y0: int
    x1: int  # exclusive
    y1: int
    area: int
    component: int
    cut_left: float = 0.0  # pen strokes cut by the seam on its left (0 for a whole component or the first slice)

    @property
    def centre_x(self) -> float:
        return (self.x0 + self.x1) / 2


@dataclass
class Layout:
    """The cleaned ink of one image cut into atoms, left to right; input to the reading step."""

    ink: np.ndarray  # (h, w) soft ink of the working image, rules erased (specks are left out of atom_map)
    atom_map: np.ndarray  # (h, w) int32: atom label per ink pixel (halo included), 0 = none
    atoms: list[Atom]
    cut_ink: list[float]  # cut_ink[b]: strokes cut between atoms b-1 and b (0 when not slices of one component)
    digit_height: float  # H, in working-image pixels
    scale: float  # working image / input image


def check_time(deadline: float, time_limit_s: float) -> None:
    if time.monotonic() > deadline:
        raise ImageTooComplexError(
            f"reading took longer than the {time_limit_s:g} s time limit: too many strokes and specks for a number"
        )


def find_atoms(gray: np.ndarray, cut: bool = True, *, small_marks: bool = False) -> Layout:
    """Ink map with rules erased, components without specks and (with `cut`) the slices of wide components.

    small_marks: keep the small pieces written in the line's own band instead of dropping them as specks (the
    dots, commas and dashes of an amount or a date are speck-sized); dirt above or below the line, or far to
    its side, is still dropped."""
    # Specks are judged below, against the digits' height; with small_marks, a dot far smaller than a 50th of a long
    # line is not dust to the ink finder either.
    ink, scale = ink_map(gray, speck_fraction=0.0, line=small_marks)
    mask = ink >= _INK_LEVEL
    empty = Layout(ink, np.zeros(ink.shape, np.int32), [], [], 0.0, scale)
    if not mask.any():
        return empty
    cleaned = _remove_rules(mask, _rough_digit_height(mask))
    # The erased rule's soft rim must not come back as part of a digit's halo below.
    erased = cv2.dilate((mask & ~cleaned).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~cleaned
    ink = np.where(erased, 0.0, ink).astype(np.float32)
    mask = cleaned
    count, labels, stats = components(mask)
    stats = stats[1:]  # (n, 5): left, top, width, height, area; label 0 is the background
    if count <= 1:
        return empty
    order = np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")[:MAX_COMPONENTS]  # a page of dirt: largest only
    height = _digit_height(stats[order])
    kept = _drop_specks(labels, stats, order, height)
    if small_marks and kept:
        kept = kept + _marks_in_band(stats, order, kept, height)
    if not kept:
        return empty

    atom_map = np.zeros(ink.shape, np.int32)
    atoms: list[Atom] = []
    for component in kept:
        left, top, width, tall, _ = (int(v) for v in stats[component])
        region = labels[top: top + tall, left: left + width] == component + 1
        _add_atoms(region, ink, atom_map, atoms, (top, left), component, height, cut)

    atoms.sort(key=lambda a: a.centre_x)
    cut_ink = [0.0] + [b.cut_left if a.component == b.component else 0.0 for a, b in zip(atoms, atoms[1:])]
    # The soft ink's antialiased rim (below _INK_LEVEL) belongs to the nearest atom: grow labels by two pixels.
    halo = cv2.dilate(atom_map.astype(np.float32), np.ones((5, 5), np.uint8)).astype(np.int32)
    atom_map = np.where(atom_map > 0, atom_map, np.where(ink > 0, halo, 0))
    return Layout(ink, atom_map, atoms, cut_ink, height, scale)


def _add_atoms(part: np.ndarray, ink: np.ndarray, atom_map: np.ndarray, atoms: list[Atom],
               origin: tuple[int, int], component: int, height: float, cut: bool) -> None:
    """Cut one component (part: its mask in its own box at origin (top, left)) into atoms; append them."""
    top, left = origin
    tall, width = part.shape
    window = (slice(top, top + tall), slice(left, left + width))
    seams = _seams(ink[window] * part, height) if cut and width >= _SPLIT_MIN_WIDTH * height else []
    slice_of = np.zeros(part.shape, np.int32)  # (h, w): index of the slice each pixel falls in
    columns = np.arange(width)[None, :]
    for path, _ in seams:
        slice_of += columns >= path[:, None]
    for index in range(len(seams) + 1):
        piece = part & (slice_of == index)
        if not piece.any():
            continue
        rows, cols = np.nonzero(piece)
        label = len(atoms) + 1
        atom_map[window][piece] = label
        cut_left = seams[index - 1][1] / (_STROKE * height) if index > 0 else 0.0
        atoms.append(Atom(label, left + int(cols.min()), top + int(rows.min()), left + int(cols.max()) + 1,
                           top + int(rows.max()) + 1, int(piece.sum()), component, cut_left))


def _rough_digit_height(mask: np.ndarray) -> float:
    """Height of the text line before anything is cleaned (a rule touching the digits adds its offset)."""
    _, _, stats = components(mask)
    return _digit_height(stats[1:])


def _remove_rules(mask: np.ndarray, line_height: float) -> np.ndarray:
    """Erase long thin horizontal lines (underlines, ruled paper), then mend the strokes that crossed them.

    A horizontal opening keeps only runs longer than _RULE_MIN_LENGTH line heights (a slightly tilted rule breaks
    into short runs, so the mask is first thickened vertically). A thin run is a rule when it is very long, or
    when it reaches past the rest of its ink on both sides: a digit's own bar (the top of a 7, the foot of a 2)
    ends where another of its strokes begins.
    """
    length = int(round(_RULE_MIN_LENGTH * line_height))
    if length < 8 or mask.shape[1] < length:
        return mask
    thick = max(3, int(round(0.08 * line_height)) | 1)
    fat = cv2.dilate(mask.astype(np.uint8), np.ones((thick, 1), np.uint8))
    runs = cv2.morphologyEx(fat, cv2.MORPH_OPEN, np.ones((1, length), np.uint8))
    if not runs.any():
        return mask
    count, run_labels, stats = components(runs)
    _, ink_labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    beyond = 0.05 * line_height
    rule = np.zeros(mask.shape, bool)
    for label in range(1, count):
        _, _, width, tall, _ = stats[label]
        if tall > _RULE_THICKNESS * line_height + thick:
            continue
        run = (run_labels == label) & mask
        if not run.any():  # the run lies in the vertical thickening only: no ink of its own
            continue
        band = _rule_band(run)
        if not band.any():
            continue
        if width < _RULE_LENGTH * line_height:
            # The ink it touches, apart from the line itself: no stroke may hang below the line (a 4's stem below
            # its bar), and the line must reach past all of it on both sides (a 2's foot starts at its diagonal).
            touching = np.unique(ink_labels[band])
            rest = _without_bits(np.isin(ink_labels, touching[touching > 0]) & ~band, 0.15 * line_height)
            rows, columns = np.nonzero(band)
            below = np.flatnonzero(rest[rows.max() + 1:].any(axis=1))
            if below.size and below[-1] >= 0.15 * line_height:
                continue
            reach = np.flatnonzero(rest.any(axis=0))
            if reach.size and not (columns.min() + beyond <= reach[0] and reach[-1] <= columns.max() - beyond):
                continue
        rule |= band
    if not rule.any():
        return mask
    cleaned = mask & ~rule
    # A pen stroke crossing the rule now has a gap as tall as the rule: close vertical gaps that short, inside the
    # rule only (a longer kernel would also bridge specks just below the rule to the digits above it).
    rule_thickness = rule.sum() / max(1, int(rule.any(axis=0).sum()))
    gap = int(np.ceil(rule_thickness)) + 3
    closed = cv2.morphologyEx(cleaned.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((gap, 1), np.uint8))
    return cleaned | (closed.astype(bool) & rule)


def _without_bits(mask: np.ndarray, min_extent: float) -> np.ndarray:
    """The mask without its components spanning less than min_extent pixels (specks, a rule's ragged ends)."""
    count, labels, stats = components(mask)
    extent = np.maximum(stats[1:, cv2.CC_STAT_WIDTH], stats[1:, cv2.CC_STAT_HEIGHT])
    return np.isin(labels, np.flatnonzero(extent >= min_extent) + 1)


def _rule_band(run: np.ndarray) -> np.ndarray:
    """The pixels of the line itself in a rule's run: a straight band as thick as the rule is in most columns.

    A digit sitting on the rule (the foot of a 2) makes some columns thicker; only the band is erased, so the
    digit keeps the part of its stroke above it.
    """
    columns = np.flatnonzero(run.any(axis=0))
    rows = np.arange(run.shape[0])[:, None]
    counts = run[:, columns].sum(axis=0)  # (c,) ink per column
    centres = (run[:, columns] * rows).sum(axis=0) / counts
    thickness = float(np.median(counts))
    plain = counts <= thickness + 1  # columns holding only the rule
    slope, intercept = np.polyfit(columns[plain], centres[plain], 1) if plain.sum() >= 2 else (0.0, centres.mean())
    centre_line = slope * np.arange(run.shape[1]) + intercept  # (w,)
    return run & (np.abs(rows - centre_line[None, :]) <= thickness / 2 + 1)


def _digit_height(stats: np.ndarray) -> float:
    """Typical digit height from component stats (left, top, width, height, area per row).

    Pieces that share most of their columns and nearly touch are stacked first (a "3" written in two strokes),
    ignoring dots too small to matter; then the area-weighted median height of the columns of ink at
    least half as tall as the tallest: specks and rules are too short to count.
    """
    stats = stats[stats[:, cv2.CC_STAT_AREA] >= 0.05 * stats[:, cv2.CC_STAT_AREA].max()]
    stats = np.array(sorted(stats.tolist()), np.int64).reshape(-1, 5)  # left to right
    boxes = [(left, top, left + width, top + tall) for left, top, width, tall, _ in stats.tolist()]
    stacks = []  # [x0, x1, y0, y1, area]
    for group in merge_overlapping(boxes, nearly_touching=True):
        x0, y0, x1, y1 = union_box([boxes[i] for i in group])
        stacks.append([x0, x1, y0, y1, int(stats[group, cv2.CC_STAT_AREA].sum())])
    heights = np.array([s[3] - s[2] for s in stacks], np.float64)
    areas = np.array([s[4] for s in stacks], np.float64)
    tall = heights >= 0.5 * heights.max()
    order = np.argsort(heights[tall])
    weights = np.cumsum(areas[tall][order])
    return float(heights[tall][order][np.searchsorted(weights, weights[-1] / 2)])


def _drop_specks(labels: np.ndarray, stats: np.ndarray, order: np.ndarray, height: float) -> list[int]:
    """Indices of the components worth reading: not specks, or small pieces almost touching a bigger one.

    A piece of a broken stroke lies within a pen width or so of the rest of its digit; dirt is anywhere.
    """
    extent = np.maximum(stats[:, cv2.CC_STAT_WIDTH], stats[:, cv2.CC_STAT_HEIGHT])
    big = [int(i) for i in order if extent[i] >= SPECK_EXTENT * height]
    small = [int(i) for i in order if extent[i] < SPECK_EXTENT * height]
    if not big or not small:
        return big
    reach = max(1, int(round(_PIECE_REACH * height)))
    near_big = cv2.dilate(np.isin(labels, np.array(big) + 1).astype(np.uint8),
                          cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1, 2 * reach + 1))).astype(bool)
    kept = []
    for i in small:
        left, top, width, tall = stats[i, :4]
        window = (slice(top, top + tall), slice(left, left + width))
        if (near_big[window] & (labels[window] == i + 1)).any():
            kept.append(i)
    return big + kept


def _marks_in_band(stats: np.ndarray, order: np.ndarray, kept: list[int], height: float) -> list[int]:
    """Indices of the small components (not in `kept`) whose centre lies in the band of the kept ink (from a
    tenth of H above its top to a third of H below its bottom: a comma hangs below the baseline) and within
    1.5 H of its left and right ends."""
    kept_stats = stats[kept]
    top = kept_stats[:, cv2.CC_STAT_TOP].min() - 0.1 * height
    bottom = (kept_stats[:, cv2.CC_STAT_TOP] + kept_stats[:, cv2.CC_STAT_HEIGHT]).max() + 0.35 * height
    left = kept_stats[:, cv2.CC_STAT_LEFT].min() - 1.5 * height
    right = (kept_stats[:, cv2.CC_STAT_LEFT] + kept_stats[:, cv2.CC_STAT_WIDTH]).max() + 1.5 * height
    chosen = set(kept)
    marks = []
    for i in order:
        i = int(i)
        if i in chosen:
            continue
        x, y, w, h = stats[i, :4]
        if top <= y + h / 2 <= bottom and left <= x + w / 2 <= right:
            marks.append(i)
    return marks


def _seams(patch: np.ndarray, height: float) -> list[tuple[np.ndarray, float]]:
    """Candidate cuts through one component: [(x per row, ink crossed)], left to right.

    Start columns are the minima of the column ink profile; each seam then runs top to bottom through the least
    ink within _SEAM_REACH of its start (one pixel sideways per row at most), so it can follow the gap between
    slanted digits and cross the ink only where they touch.
    """
    tall, width = patch.shape
    profile = np.convolve(patch.sum(axis=0), [0.25, 0.5, 0.25], mode="same")  # (w,)
    edge = max(2, int(round(_CUT_EDGE * height)))
    inner = np.arange(edge, width - edge)
    if inner.size == 0:
        return []
    minima = [x for x in inner if profile[x] <= profile[x - 1] and profile[x] <= profile[x + 1]]
    minima.sort(key=lambda x: profile[x])
    spacing = _CUT_SPACING * height
    starts: list[int] = []
    for x in minima:
        if all(abs(x - s) >= spacing for s in starts):
            starts.append(x)
    starts.sort()

    reach = max(1, int(round(_SEAM_REACH * height)))
    seams = []
    for start in starts:
        lo, hi = max(edge, start - reach), min(width - edge, start + reach + 1)  # no slivers at the sides
        cost = patch[:, lo:hi].astype(np.float64)  # (h, window)
        # Tiny cost for leaving the start column and for each sideways step: straight seams win ties.
        cost = cost + 1e-3 * np.abs(np.arange(lo, hi) - start)[None, :]
        total = cost[0].copy()
        step = np.zeros(cost.shape, np.int8)  # -1, 0, +1: where each pixel's best path came from
        for row in range(1, tall):
            candidates = np.stack([np.r_[np.inf, total[:-1]], total, np.r_[total[1:], np.inf]]) + \
                np.array([[1e-3], [0.0], [1e-3]])
            choice = candidates.argmin(axis=0)  # 0: from the left, 1: straight, 2: from the right
            total = cost[row] + candidates[choice, np.arange(total.size)]
            step[row] = choice - 1
        x = int(total.argmin())
        path = np.empty(tall, np.int64)
        for row in range(tall - 1, -1, -1):
            path[row] = x + lo
            x += int(step[row, x])
        seams.append((path, float(patch[np.arange(tall), path].sum())))
    seams.sort(key=lambda s: float(s[0].mean()))
    return seams


def merge_overlapping(boxes: list[tuple[int, int, int, int]], *, nearly_touching: bool = False) -> list[list[int]]:
    """The boxes (x0, y0, x1, y1), taken in the order given (left to right), grouped into digits: a box joins the
    group before it when their columns overlap by at least half the narrower one's width (a 5 with a detached bar,
    a 3 written in two strokes). nearly_touching: only when, besides, the vertical space between them is at most
    the taller one's height. Returns each group's indices."""
    groups: list[list[int]] = []
    merged: list[tuple[int, int, int, int]] = []  # each group's box so far
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if merged:
            gx0, gy0, gx1, gy1 = merged[-1]
            overlap = min(gx1, x1) - max(gx0, x0)
            gap = max(y0 - gy1, gy0 - y1)  # vertical space between them (< 0: they overlap)
            if overlap >= 0.5 * min(gx1 - gx0, x1 - x0) and (not nearly_touching or gap <= max(gy1 - gy0, y1 - y0)):
                groups[-1].append(i)
                merged[-1] = union_box([merged[-1], (x0, y0, x1, y1)])
                continue
        groups.append([i])
        merged.append((x0, y0, x1, y1))
    return groups


def union_box(boxes) -> tuple[int, int, int, int]:
    """The smallest (x0, y0, x1, y1) holding every box."""
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def to_input_box(box: tuple[int, int, int, int], scale: float, shape: tuple[int, int]) -> list[int]:
    """Working-image corners -> [x, y, w, h] in input pixels (ink_map may have shrunk the image by `scale`)."""
    x0, y0, x1, y1 = box
    if scale == 1.0:
        return [x0, y0, x1 - x0, y1 - y0]
    width, height = round(shape[1] / scale), round(shape[0] / scale)
    left, top = int(np.floor(x0 / scale)), int(np.floor(y0 / scale))
    right, bottom = min(width, int(np.ceil(x1 / scale))), min(height, int(np.ceil(y1 / scale)))
    return [left, top, right - left, bottom - top]
