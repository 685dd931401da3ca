"""Things that are not digits, for teaching the model to say so and for measuring how well it does.

Glyphs (ink coverage in [0, 1], photographed with digitscan.synthetic.photos like digits): letters in a font,
scribbles and
shapes. Pages without any glyph: blank paper, textured paper under uneven light, sensor noise.
Fashion-MNIST pictures come from the dataset itself (digitscan.data).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from digitscan.synthetic.photos import Condition, glyph_from_font

# Letters that do not look like a digit in most hands (no O/o/D/Q ~ 0, I/l/i/j/J ~ 1, Z/z ~ 2, S/s ~ 5, b/G ~ 6,
# T/t ~ 7, B ~ 8, g/q/a ~ 9, A/y ~ 4).
LETTERS = "CEFHKMNPRUVWXYcdefhkmnpruvwx"

BLANK_PAGES = {
    "blank": Condition("an empty sheet of paper", papers=("white", "tinted", "grey"), noise=(0.0, 3.0)),
    "texture": Condition("textured paper in uneven light", papers=("white", "tinted", "grey", "blue-lined"),
                         lighting=0.5, texture=0.08, noise=(1.0, 6.0)),
    "noise": Condition("strong sensor noise on a plain sheet", noise=(20.0, 50.0), papers=("white", "grey")),
}


def letter_glyph(rng: np.random.Generator, fonts: list[str]) -> np.ndarray:
    """One letter from LETTERS in one of `fonts`."""
    return glyph_from_font(str(rng.choice(list(LETTERS))), str(rng.choice(fonts)))


def scribble_glyph(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    """Pen marks that are not a digit: a tangle of strokes, hatching, a star, a box or a cross-out."""
    canvas = np.zeros((size, size), np.uint8)
    pen = max(2, round(size * rng.uniform(0.04, 0.1)))
    kind = rng.integers(5)
    if kind == 0:  # a tangle: one smooth stroke through many random points
        points = rng.uniform(0.1, 0.9, (int(rng.integers(6, 12)), 2)) * size
        t = np.linspace(0, 1, len(points))
        fine = np.linspace(0, 1, 200)
        curve = np.stack([np.interp(fine, t, points[:, 0]), np.interp(fine, t, points[:, 1])], 1)
        curve = cv2.GaussianBlur(curve.reshape(-1, 1, 2).astype(np.float32), (1, 0), 4).reshape(-1, 2) \
            if len(curve) > 10 else curve
        cv2.polylines(canvas, [np.round(curve).astype(np.int32)], False, 255, pen, cv2.LINE_AA)
    elif kind == 1:  # hatching: parallel strokes
        angle = rng.uniform(0, math.pi)
        count = int(rng.integers(4, 8))
        for offset in np.linspace(-0.35, 0.35, count) * size:
            dx, dy = math.cos(angle), math.sin(angle)
            cx, cy = size / 2 - dy * offset, size / 2 + dx * offset
            p0 = (round(cx - dx * 0.4 * size), round(cy - dy * 0.4 * size))
            p1 = (round(cx + dx * 0.4 * size), round(cy + dy * 0.4 * size))
            cv2.line(canvas, p0, p1, 255, pen, cv2.LINE_AA)
    elif kind == 2:  # a star
        spikes = int(rng.integers(5, 9))
        angles = np.linspace(0, 2 * math.pi, 2 * spikes, endpoint=False) + rng.uniform(0, math.pi)
        radii = np.where(np.arange(2 * spikes) % 2 == 0, 0.45, rng.uniform(0.15, 0.25)) * size
        points = np.stack([size / 2 + radii * np.cos(angles), size / 2 + radii * np.sin(angles)], 1)
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], True, 255, pen, cv2.LINE_AA)
    elif kind == 3:  # a box with a diagonal, or a triangle
        corners = 3 if rng.random() < 0.5 else 4
        angles = np.linspace(0, 2 * math.pi, corners, endpoint=False) + rng.uniform(0, math.pi)
        points = np.stack([size / 2 + 0.4 * size * np.cos(angles), size / 2 + 0.4 * size * np.sin(angles)], 1)
        cv2.polylines(canvas, [np.round(points).astype(np.int32)], True, 255, pen, cv2.LINE_AA)
        if corners == 4:
            cv2.line(canvas, tuple(np.round(points[0]).astype(int)), tuple(np.round(points[2]).astype(int)), 255,
                     pen, cv2.LINE_AA)
    else:  # a cross-out: a zigzag
        count = int(rng.integers(4, 9))
        xs = np.linspace(0.1, 0.9, count) * size
        ys = np.where(np.arange(count) % 2 == 0, 0.15, 0.85) * size + rng.uniform(-0.08, 0.08, count) * size
        cv2.polylines(canvas, [np.round(np.stack([xs, ys], 1)).astype(np.int32)], False, 255, pen, cv2.LINE_AA)
    coverage = canvas.astype(np.float32) / 255
    rows, cols = np.nonzero(coverage > 0.05)
    return coverage[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


def blank_glyph() -> np.ndarray:
    """No ink at all: photographed, it gives an empty page."""
    return np.zeros((4, 4), np.float32)
