"""Split a handwritten number written on one line into digits, left to right, and read them with a digit classifier.

`segment_number(gray, classify)` -> [DigitSegment]; Recognizer.read wraps it. `draw_segments` makes the debug image.

How (docs/reading-numbers.md has the measurements behind each choice):
1. preprocess.ink_map finds the ink (any polarity, uneven light). Underline rules are found by a horizontal
   opening and erased (only the line's own band, so a digit sitting on it keeps its stroke); strokes crossing
   the rule are mended.
2. Connected components; specks (small next to the typical digit height H) are dropped unless they nearly touch
   a digit (a piece of a broken stroke). At most MAX_COMPONENTS are considered.
3. Components wide enough to hold two digits get candidate cuts: "seams" that run top to bottom through the least
   ink, starting at the columns of least ink. Components and the slices between cuts are the *atoms*.
4. Segmentation by recognition: every run of up to MAX_GROUP consecutive atoms (and every whole component) is a
   candidate digit; all candidates go through the model in one batch, and dynamic programming picks the partition
   of the atoms into digits with the highest total log-probability plus geometric penalties (strokes cut, empty
   space inside a digit, a digit too wide or too short). This one rule splits touching digits and re-joins broken
   ones (a "5" with a detached bar, a "3" written in two strokes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitscan.constants import NUM_CLASSES
from digitscan.preprocess import ImageTooComplexError, fit_to_mnist_box, ink_map

METHODS = ("recognition", "projection", "components")  # "recognition" is the default; the others are baselines

MAX_COMPONENTS = 200  # more candidate components than this is noise: only the largest are considered
MAX_GROUP = 4  # a digit is made of at most this many atoms (pieces of a broken digit, slices of touching digits)
READ_TIME_LIMIT_S = 5.0  # per image; the worst pages measured take ~1 s (docs/security.md), real numbers far less

# Every geometric threshold is a fraction of the median digit height H, so none depends on the image's resolution.
_INK_LEVEL = 0.35  # the soft ink map is binarized here for components; the soft values still feed the model
_SPECK_EXTENT = 0.3  # components spanning less than this (x H) are specks ...
_PIECE_REACH = 0.06  # ... unless they come this close (x H) to a bigger component: a piece of a broken stroke
_RULE_MIN_LENGTH = 0.8  # a horizontal run this long (x H) and at most _RULE_THICKNESS thick may be a ruled line:
_RULE_LENGTH = 2.0  # it is one when this long, or when it reaches past the digits it touches on both sides
_RULE_THICKNESS = 0.3
_SPLIT_MIN_WIDTH = 0.75  # components narrower than this (x H) are never cut
_CUT_EDGE = 0.1  # no cut closer than this (x H) to a component's side
_CUT_SPACING = 0.12  # candidate cuts at least this far apart (x H)
_SEAM_REACH = 0.3  # a seam may wander this far (x H) left or right of its starting column
_STROKE = 0.12  # MNIST's pen width relative to the digit height: turns seam ink into a number of strokes cut
_MAX_DIGIT_WIDTH = 1.6  # a candidate digit wider than this (x H) is not considered at all


@dataclass(frozen=True)
class Penalties:
    """Log-probability terms of the reading step (natural log), chosen on numbers composed from MNIST *validation*
    digits and photographed (`benchmarks/realworld.py --tune-reading`); the model's own log-probabilities do most
    of the work."""

    digit_bonus: float = 0.0  # per digit read (> 0 favours more, smaller digits)
    cut: float = 0.1  # per pen stroke a cut goes through
    gap: float = 4.0  # per digit height of empty space inside one candidate digit (pieces that do not overlap)
    wide: float = 2.0  # per digit height of width beyond wide_from
    wide_from: float = 1.1
    short: float = 2.0  # per digit height of height missing below short_from (a loop cut off its stem is short)
    short_from: float = 0.8
    skip: float = 2.0  # for leaving out an atom that is not a speck (a shadow's edge, a rule's stub)


Classify = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(N, 28, 28) prepared inputs -> (probabilities (N, 10) over the digits 0-9, accepted (N,) bool)."""


@dataclass
class DigitSegment:
    """One digit found in the image: where (input pixels), what the model saw, and what it said."""

    box: list[int]  # [x, y, w, h] in input image pixels
    image: np.ndarray  # (28, 28) model input
    probabilities: np.ndarray  # (10,) the model's, over the digits 0-9
    digit: int  # the model's top digit
    accepted: bool  # the model's rejection rule accepted it as a digit
    noise_like: bool  # small next to the other digits: dropped when the model rejects it

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.digit])


@dataclass
class _Atom:
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
    atoms: list[_Atom]
    cut_ink: list[float]  # cut_ink[b]: strokes cut between atoms b-1 and b (0 when not slices of one component)
    digit_height: float  # H, in working-image pixels
    scale: float  # working image / input image


def segment_number(gray: np.ndarray, classify: Classify, method: str = "recognition",
                   penalties: Penalties = Penalties(), *,
                   time_limit_s: float = READ_TIME_LIMIT_S) -> list[DigitSegment]:
    """The digits of a one-line number, left to right ([] when there is no ink).

    gray: a decode_image output (H, W) float32, 1.0 = white (any numpy image works the same way).
    method: "recognition" (candidate cuts, best partition by the model), "projection" (cut wide components at the
    columns of least ink into as many digits as their width suggests), "components" (no cutting at all).
    time_limit_s: checked after each stage (atoms, then candidates through the model); past it the reading stops
    with ImageTooComplexError. A stage is bounded by MAX_COMPONENTS, so the overrun is at most one stage.
    """
    if method not in METHODS:
        raise ValueError(f"unknown segmentation method {method!r}; valid: {', '.join(METHODS)}")
    deadline = time.monotonic() + time_limit_s
    layout = find_atoms(gray, cut=method != "components")
    check_time(deadline, time_limit_s)
    if not layout.atoms:
        return []
    if method == "recognition":
        candidates = read_candidates(layout, classify)
        check_time(deadline, time_limit_s)
        chosen = best_partition(layout, candidates, penalties)
        groups = [candidates.groups[k] for k, _ in chosen]
        digits = [digit for _, digit in chosen]
        probs, accepted = candidates.probs[[k for k, _ in chosen]], candidates.accepted[[k for k, _ in chosen]]
    else:
        if method == "projection":
            layout = _keep_expected_cuts(layout)
        groups = _merge_overlapping(layout)
        probs, accepted = _classify_groups(layout, groups, classify)
        check_time(deadline, time_limit_s)
        digits = [int(p.argmax()) for p in probs]
    return [_segment(layout, *args) for args in zip(groups, probs, digits, accepted)]


def check_time(deadline: float, time_limit_s: float) -> None:
    if time.monotonic() > deadline:
        raise ImageTooComplexError(
            f"reading took longer than the {time_limit_s:g} s time limit: too many strokes and specks for a number"
        )


# ----------------------------------------------------------------------------------------------------------------
# Ink -> atoms
# ----------------------------------------------------------------------------------------------------------------


def find_atoms(gray: np.ndarray, cut: bool = True) -> Layout:
    """Ink map with rules erased, components without specks and (with `cut`) the slices of wide components."""
    ink, scale = ink_map(gray, speck_fraction=0.0)  # specks are judged below, against the digits' height
    mask = ink >= _INK_LEVEL
    empty = Layout(ink, np.zeros(ink.shape, np.int32), [], [], 0.0, scale)
    if not mask.any():
        return empty
    cleaned = _remove_rules(mask, _rough_digit_height(mask))
    # The erased rule's soft rim must not come back as part of a digit's halo below.
    erased = cv2.dilate((mask & ~cleaned).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~cleaned
    ink = np.where(erased, 0.0, ink).astype(np.float32)
    mask = cleaned
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    stats = stats[1:]  # (n, 5): left, top, width, height, area; label 0 is the background
    if count <= 1:
        return empty
    order = np.argsort(-stats[:, cv2.CC_STAT_AREA], kind="stable")[:MAX_COMPONENTS]  # a page of dirt: largest only
    height = _digit_height(stats[order])
    kept = _drop_specks(labels, stats, order, height)
    if not kept:
        return empty

    atom_map = np.zeros(ink.shape, np.int32)
    atoms: list[_Atom] = []
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


def _add_atoms(part: np.ndarray, ink: np.ndarray, atom_map: np.ndarray, atoms: list[_Atom],
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
        atoms.append(_Atom(label, left + int(cols.min()), top + int(rows.min()), left + int(cols.max()) + 1,
                           top + int(rows.max()) + 1, int(piece.sum()), component, cut_left))


def _rough_digit_height(mask: np.ndarray) -> float:
    """Height of the text line before anything is cleaned (a rule touching the digits adds its offset)."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
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
    count, run_labels, stats, _ = cv2.connectedComponentsWithStats(runs, connectivity=8)
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
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
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
    stacks: list[list[float]] = []  # [x0, x1, y0, y1, area]
    for left, top, width, tall, area in sorted(stats.tolist()):
        if stacks:
            x0, x1, y0, y1 = stacks[-1][:4]
            overlap = min(x1, left + width) - max(x0, left)
            gap = max(top - y1, y0 - (top + tall))  # vertical space between them (< 0: they overlap)
            if overlap >= 0.5 * min(x1 - x0, width) and gap <= max(y1 - y0, tall):
                last = stacks[-1]
                stacks[-1] = [min(x0, left), max(x1, left + width), min(last[2], top), max(last[3], top + tall),
                              last[4] + area]
                continue
        stacks.append([left, left + width, top, top + tall, area])
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
    big = [int(i) for i in order if extent[i] >= _SPECK_EXTENT * height]
    small = [int(i) for i in order if extent[i] < _SPECK_EXTENT * height]
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


# ----------------------------------------------------------------------------------------------------------------
# Atoms -> digits
# ----------------------------------------------------------------------------------------------------------------


def _group_box(layout: Layout, group: tuple[int, ...]) -> tuple[int, int, int, int]:
    atoms = [layout.atoms[i] for i in group]
    return min(a.x0 for a in atoms), min(a.y0 for a in atoms), max(a.x1 for a in atoms), max(a.y1 for a in atoms)


def _group_input(layout: Layout, group: tuple[int, ...]) -> np.ndarray:
    """The model's (28, 28) input for the ink of these atoms (nothing of their neighbours)."""
    x0, y0, x1, y1 = _group_box(layout, group)
    pad = 2  # the halo may reach two pixels beyond the atoms' core boxes
    x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
    x1, y1 = min(layout.ink.shape[1], x1 + pad), min(layout.ink.shape[0], y1 + pad)
    labels = [layout.atoms[i].label for i in group]
    own = np.isin(layout.atom_map[y0:y1, x0:x1], labels)
    return fit_to_mnist_box(layout.ink[y0:y1, x0:x1] * own)


def _noise_like(layout: Layout, group: tuple[int, ...]) -> bool:
    x0, y0, x1, y1 = _group_box(layout, group)
    return max(x1 - x0, y1 - y0) < _SPECK_EXTENT * layout.digit_height


def _gap(layout: Layout, group: tuple[int, ...]) -> float:
    """Empty horizontal space between the pieces of a candidate digit, in working pixels."""
    spans = sorted((layout.atoms[i].x0, layout.atoms[i].x1) for i in group)
    gap, reach = 0, spans[0][1]
    for x0, x1 in spans[1:]:
        gap += max(0, x0 - reach)
        reach = max(reach, x1)
    return float(gap)


def _candidate_groups(layout: Layout) -> list[tuple[int, ...]]:
    """Runs of up to MAX_GROUP consecutive atoms no wider than a digit can be, plus every component kept whole."""
    groups = set()
    for start in range(len(layout.atoms)):
        for size in range(1, MAX_GROUP + 1):
            group = tuple(range(start, start + size))
            if group[-1] >= len(layout.atoms):
                break
            x0, _, x1, _ = _group_box(layout, group)
            if size > 1 and x1 - x0 > _MAX_DIGIT_WIDTH * layout.digit_height:
                break
            groups.add(group)
    members: dict[int, list[int]] = {}
    for i, atom in enumerate(layout.atoms):
        members.setdefault(atom.component, []).append(i)
    for indices in members.values():
        groups.add(tuple(range(min(indices), max(indices) + 1)))
    # A speck is never a digit by itself (the reading may still skip it, or absorb it into a neighbour).
    return sorted((g for g in groups if not _noise_like(layout, g)), key=lambda g: (g[-1], g[0]))


def candidate_pieces(gray: np.ndarray) -> list[tuple[list[int], np.ndarray]]:
    """Every candidate digit the reading step would show the model: [(box [x, y, w, h] in input pixels, (28, 28)
    input)]. Fine-tuning uses them to teach the model what a wrong cut looks like (digitscan.finetune)."""
    layout = find_atoms(gray)
    return [(_to_input_box(_group_box(layout, g), layout.scale, layout.ink.shape), _group_input(layout, g))
            for g in _candidate_groups(layout)]


def _classify_groups(layout: Layout, groups: list[tuple[int, ...]], classify: Classify):
    if not groups:
        return np.zeros((0, NUM_CLASSES), np.float64), np.zeros(0, bool)
    inputs = np.stack([_group_input(layout, g) for g in groups])  # (N, 28, 28)
    return classify(inputs)


@dataclass
class Candidates:
    """Every run of up to MAX_GROUP consecutive atoms that could be one digit, with the model's verdict on it."""

    groups: list[tuple[int, ...]]
    probs: np.ndarray  # (N, 10)
    accepted: np.ndarray  # (N,) bool
    gap: np.ndarray  # (N,) empty space between the group's pieces, in digit heights
    width: np.ndarray  # (N,) in digit heights
    height: np.ndarray  # (N,) in digit heights


def read_candidates(layout: Layout, classify: Classify) -> Candidates:
    """All candidate digits of a layout through the model in one batch."""
    groups = _candidate_groups(layout)
    probs, accepted = _classify_groups(layout, groups, classify)
    height = layout.digit_height
    boxes = np.array([_group_box(layout, g) for g in groups], np.float64).reshape(-1, 4)  # (N, 4) x0 y0 x1 y1
    gap = np.array([_gap(layout, g) / height for g in groups])
    width = (boxes[:, 2] - boxes[:, 0]) / height
    tall = (boxes[:, 3] - boxes[:, 1]) / height
    return Candidates(groups, np.asarray(probs, np.float64), np.asarray(accepted, bool), gap, width, tall)


def best_partition(layout: Layout, candidates: Candidates,
                   penalties: Penalties = Penalties()) -> list[tuple[int, int]]:
    """Dynamic programming over the atoms: the best reading as [(candidate index, digit)], left to right.

    best[j] = the best score of atoms 0..j-1, each either part of a digit (a run of <= MAX_GROUP consecutive
    atoms) or skipped: for free when it is noise-like, for `skip` otherwise. A digit scores the log-probability
    of its top class + digit_bonus - gap, width and height penalties; separating two slices of one component costs
    the strokes cut there.
    """
    p = penalties
    digits = candidates.probs.argmax(axis=1)  # (N,)
    scores = (np.log(np.maximum(candidates.probs.max(axis=1), 1e-12)) + p.digit_bonus - p.gap * candidates.gap
              - p.wide * np.maximum(0.0, candidates.width - p.wide_from)
              - p.short * np.maximum(0.0, p.short_from - candidates.height))
    ending_at: dict[int, list[int]] = {}
    for k, group in enumerate(candidates.groups):
        ending_at.setdefault(group[-1] + 1, []).append(k)

    n = len(layout.atoms)
    boundary = [p.cut * c for c in layout.cut_ink]  # boundary[b]: cost of separating atoms b-1 and b
    # Leaving an atom out costs `skip`, or nothing when it is noise-like. Per atom, not per component: dropping one
    # slice of two touching digits must not come cheap.
    skip = [0.0 if _noise_like(layout, (i,)) else p.skip for i in range(n)]
    best = np.full(n + 1, -np.inf)
    best[0] = 0.0
    back: list[tuple[int, int | None]] = [(0, None)] * (n + 1)  # (previous end, candidate or None = skipped)
    for end in range(1, n + 1):
        score = best[end - 1] - boundary[end - 1] - skip[end - 1]
        if score > best[end]:
            best[end], back[end] = score, (end - 1, None)
        for k in ending_at.get(end, []):
            start = candidates.groups[k][0]
            score = best[start] + scores[k] - boundary[start]
            if score > best[end]:
                best[end], back[end] = score, (start, k)
    chosen = []
    end = n
    while end > 0:
        end, k = back[end]
        if k is not None:
            chosen.append((k, int(digits[k])))
    return chosen[::-1]


def _keep_expected_cuts(layout: Layout) -> Layout:
    """Baseline "projection": keep, per component, only the cuts its width calls for (width / typical width)."""
    height = layout.digit_height
    by_component: dict[int, list[int]] = {}
    for i, atom in enumerate(layout.atoms):
        by_component.setdefault(atom.component, []).append(i)
    typical = 0.9 * height  # rounding width / typical: a wide single digit (a "0", ~H wide) stays whole
    atom_map = layout.atom_map.copy()
    merged: list[_Atom] = []
    for component, members in by_component.items():
        atoms = [layout.atoms[i] for i in members]  # left to right
        width = max(a.x1 for a in atoms) - min(a.x0 for a in atoms)
        pieces = int(np.clip(round(width / typical), 1, len(atoms)))
        cheapest = sorted(range(1, len(atoms)), key=lambda b: atoms[b].cut_left)[: pieces - 1]
        for part in np.split(np.arange(len(atoms)), sorted(cheapest)):
            group = [atoms[i] for i in part]
            for atom in group[1:]:
                atom_map[atom_map == atom.label] = group[0].label
            merged.append(_Atom(group[0].label, min(a.x0 for a in group), min(a.y0 for a in group),
                                max(a.x1 for a in group), max(a.y1 for a in group), sum(a.area for a in group),
                                component))
    merged.sort(key=lambda a: a.centre_x)
    return Layout(layout.ink, atom_map, merged, [0.0] * len(merged), height, layout.scale)


def _merge_overlapping(layout: Layout) -> list[tuple[int, ...]]:
    """Baseline grouping: atoms whose x-ranges overlap by half the narrower one are one digit; lone specks go."""
    groups: list[list[int]] = []
    for i, atom in enumerate(layout.atoms):
        if groups:
            x0, _, x1, _ = _group_box(layout, tuple(groups[-1]))
            overlap = min(x1, atom.x1) - max(x0, atom.x0)
            if overlap >= 0.5 * min(x1 - x0, atom.x1 - atom.x0):
                groups[-1].append(i)
                continue
        groups.append([i])
    return [tuple(g) for g in groups if not _noise_like(layout, tuple(g))]


def _segment(layout: Layout, group: tuple[int, ...], probs: np.ndarray, digit: int, accepted: bool) -> DigitSegment:
    x0, y0, x1, y1 = _group_box(layout, group)
    return DigitSegment(box=_to_input_box((x0, y0, x1, y1), layout.scale, layout.ink.shape),
                        image=_group_input(layout, group), probabilities=np.asarray(probs, np.float64),
                        digit=int(digit), accepted=bool(accepted), noise_like=_noise_like(layout, group))


def _to_input_box(box: tuple[int, int, int, int], scale: float, shape: tuple[int, int]) -> list[int]:
    """Working-image corners -> [x, y, w, h] in input pixels (ink_map may have shrunk the image by `scale`)."""
    x0, y0, x1, y1 = box
    if scale == 1.0:
        return [x0, y0, x1 - x0, y1 - y0]
    width, height = round(shape[1] / scale), round(shape[0] / scale)
    left, top = int(np.floor(x0 / scale)), int(np.floor(y0 / scale))
    right, bottom = min(width, int(np.ceil(x1 / scale))), min(height, int(np.ceil(y1 / scale)))
    return [left, top, right - left, bottom - top]


# ----------------------------------------------------------------------------------------------------------------
# Debug image
# ----------------------------------------------------------------------------------------------------------------


def draw_segments(gray: np.ndarray, digits) -> Image.Image:
    """The input (as the reader saw it, in grey) with each digit's box, its digit above and confidence below.

    digits: objects with .digit, .confidence and .box ([x, y, w, h] in input pixels): a ReadResult's digits.
    Green: confidence >= 0.9, orange: >= 0.5, red: below.
    """
    base = Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(base)
    line = max(1, round(max(base.size) / 400))
    for item in digits:
        x, y, w, h = item.box
        colour = (0, 160, 0) if item.confidence >= 0.9 else (230, 140, 0) if item.confidence >= 0.5 else (220, 0, 0)
        draw.rectangle([x, y, x + w - 1, y + h - 1], outline=colour, width=line)
        draw.text((x + w / 2, y - line), str(item.digit), fill=colour, font=_font(max(10, h // 3)), anchor="mb")
        draw.text((x + w / 2, y + h + line), f"{item.confidence:.2f}", fill=colour, font=_font(max(8, h // 6)),
                  anchor="mt")
    return base


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()
