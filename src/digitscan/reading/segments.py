"""Reading by cutting: group a line's atoms into digits and read each with a digit classifier.

`segment_number(gray, classify)` -> [DigitBox], left to right; Recognizer.read(method="segments") wraps it.

How (docs/reading-numbers.md has the measurements behind each choice): the layout (digitscan.reading.layout)
gives the atoms, the pieces of ink and the slices between candidate seams. Segmentation by recognition: every
run of up to MAX_GROUP consecutive atoms (and every whole component) is a candidate digit; all candidates go
through the model in one batch, and dynamic programming picks the partition of the atoms into digits with the
highest total log-probability plus geometric penalties (strokes cut, empty space inside a digit, a digit too
wide or too short). This one rule splits touching digits and re-joins broken ones (a "5" with a detached bar,
a "3" written in two strokes).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from digitscan.constants import MAX_GROUP, NUM_CLASSES, READ_TIME_LIMIT_S
from digitscan.image.prepare import fit_to_mnist_box
from digitscan.reading.layout import (
    SPECK_EXTENT,
    Atom,
    DigitBox,
    Layout,
    check_time,
    find_atoms,
    merge_overlapping,
    to_input_box,
    union_box,
)

METHODS = ("recognition", "projection", "components")  # "recognition" is the default; the others are baselines
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


def segment_number(gray: np.ndarray, classify: Classify, method: str = "recognition",
                   penalties: Penalties = Penalties(), *,
                   time_limit_s: float = READ_TIME_LIMIT_S, keep_rejected_specks: bool = False) -> list[DigitBox]:
    """The digits of a one-line number, left to right ([] when there is no ink).

    A piece the model rejects is dropped when it is also small next to the other digits (a speck, a dash); a
    rejected digit-sized piece is kept as its most likely digit with its low confidence, so the text keeps its
    length. keep_rejected_specks keeps every piece (the baselines of benchmarks/read_numbers.py count them).

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
    return [_digit(layout, group, p, digit) for group, p, digit, ok in zip(groups, probs, digits, accepted)
            if ok or keep_rejected_specks or not _noise_like(layout, group)]


def _group_box(layout: Layout, group: tuple[int, ...]) -> tuple[int, int, int, int]:
    return union_box([(a.x0, a.y0, a.x1, a.y1) for a in (layout.atoms[i] for i in group)])


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
    return max(x1 - x0, y1 - y0) < SPECK_EXTENT * layout.digit_height


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
    input)]. Fine-tuning uses them to teach the model what a wrong cut looks like (digitscan.training.finetune)."""
    layout = find_atoms(gray)
    return [(to_input_box(_group_box(layout, g), layout.scale, layout.ink.shape), _group_input(layout, g))
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
    merged: list[Atom] = []
    for component, members in by_component.items():
        atoms = [layout.atoms[i] for i in members]  # left to right
        width = max(a.x1 for a in atoms) - min(a.x0 for a in atoms)
        pieces = int(np.clip(round(width / typical), 1, len(atoms)))
        cheapest = sorted(range(1, len(atoms)), key=lambda b: atoms[b].cut_left)[: pieces - 1]
        for part in np.split(np.arange(len(atoms)), sorted(cheapest)):
            group = [atoms[i] for i in part]
            for atom in group[1:]:
                atom_map[atom_map == atom.label] = group[0].label
            merged.append(Atom(group[0].label, min(a.x0 for a in group), min(a.y0 for a in group),
                                max(a.x1 for a in group), max(a.y1 for a in group), sum(a.area for a in group),
                                component))
    merged.sort(key=lambda a: a.centre_x)
    return Layout(layout.ink, atom_map, merged, [0.0] * len(merged), height, layout.scale)


def _merge_overlapping(layout: Layout) -> list[tuple[int, ...]]:
    """Baseline grouping: atoms whose x-ranges overlap by half the narrower one are one digit; lone specks go."""
    groups = merge_overlapping([(a.x0, a.y0, a.x1, a.y1) for a in layout.atoms])
    return [tuple(g) for g in groups if not _noise_like(layout, tuple(g))]


def _digit(layout: Layout, group: tuple[int, ...], probs: np.ndarray, digit: int) -> DigitBox:
    return DigitBox(digit=int(digit), confidence=float(probs[digit]),
                    box=to_input_box(_group_box(layout, group), layout.scale, layout.ink.shape))
