"""Synthetic hand-drawn digits: pen strokes for 0-9 rendered as ink on paper, for examples, tests and benchmarks.

`render_digit(7, seed=1)` returns a PIL image; `DIGIT_STROKES` are the polylines (also used to draw on the web canvas).
No MNIST pixels are involved, so the images can be committed and shared.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def arc(cx: float, cy: float, rx: float, ry: float, start_deg: float, end_deg: float, n: int = 24) -> list:
    """Points along an ellipse arc; angles in degrees, 0 = right, 90 = down (image coordinates)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(start_deg, end_deg, n)]


# Each digit: a list of strokes, each a polyline in a unit box (x right, y down), drawn like a person would.
DIGIT_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [arc(0.5, 0.5, 0.3, 0.45, -90, 270, 40)],
    1: [[(0.35, 0.25), (0.55, 0.05), (0.55, 0.95)]],
    2: [arc(0.5, 0.3, 0.3, 0.25, 190, 360, 16) + arc(0.5, 0.3, 0.3, 0.25, 0, 60, 6)
        + [(0.2, 0.95), (0.85, 0.95)]],
    3: [arc(0.48, 0.28, 0.28, 0.23, 200, 450, 20) + arc(0.48, 0.72, 0.32, 0.23, -90, 160, 20)],
    4: [[(0.6, 0.05), (0.15, 0.65), (0.85, 0.65)], [(0.65, 0.35), (0.65, 0.95)]],
    5: [[(0.8, 0.05), (0.3, 0.05), (0.25, 0.45)] + arc(0.5, 0.67, 0.32, 0.28, -120, 150, 20)],
    6: [arc(0.8, 0.55, 0.55, 0.5, 235, 180, 14) + arc(0.5, 0.7, 0.3, 0.25, 180, 540, 28)],
    7: [[(0.15, 0.05), (0.85, 0.05), (0.4, 0.95)]],
    8: [arc(0.5, 0.27, 0.25, 0.22, 90, 450, 28) + arc(0.5, 0.72, 0.3, 0.23, -90, 270, 28)],
    9: [arc(0.5, 0.3, 0.28, 0.25, 0, 360, 28) + [(0.78, 0.3), (0.72, 0.95)]],
}


def resample(stroke: list[tuple[float, float]], step: float = 0.02) -> np.ndarray:
    """Points every `step` along a polyline, so corners and long segments wobble alike."""
    pts = np.array(stroke, dtype=np.float64)
    arc_length = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(pts, axis=0).T))])
    at = np.linspace(0, arc_length[-1], max(8, int(arc_length[-1] / step)))
    return np.stack([np.interp(at, arc_length, pts[:, i]) for i in range(2)], axis=1)


def stroke_points(digit: int, rng: np.random.Generator, jitter: float = 0.03) -> list[np.ndarray]:
    """The digit's strokes with a little smooth random wobble, like a different hand each time."""
    strokes = []
    for stroke in DIGIT_STROKES[digit]:
        pts = resample(stroke)
        # Low-frequency wobble: one or two slow waves along the stroke, a different hand each time.
        t = np.linspace(0, 1, len(pts))[:, None]
        freq = rng.uniform(0.5, 2.0, size=(1, 2))
        phase = rng.uniform(0, 2 * math.pi, size=(1, 2))
        wobble = rng.uniform(0, jitter, size=(1, 2)) * np.sin(2 * math.pi * freq * t + phase)
        strokes.append(pts + wobble)
    return strokes


def render_digit(digit: int, size: tuple[int, int] = (200, 240), *, seed: int = 0, box_fraction: float = 0.6,
                 thickness: float = 0.08, rotation_deg: float = 0.0, ink: tuple[int, int, int] = (20, 20, 30),
                 paper: tuple[int, int, int] = (245, 243, 235), offset: tuple[float, float] = (0.0, 0.0),
                 noise: float = 0.0, blur: float = 0.0) -> Image.Image:
    """An RGB image of one hand-drawn digit.

    box_fraction: the digit's height relative to the image height; thickness: pen width relative to digit height;
    offset: centre shift as a fraction of the image size; noise: std of Gaussian pixel noise (0-255 scale).
    """
    rng = np.random.default_rng(seed)
    width, height = size
    digit_h = box_fraction * height
    digit_w = 0.75 * digit_h
    cx, cy = width * (0.5 + offset[0]), height * (0.5 + offset[1])
    angle = math.radians(rotation_deg)
    image = Image.new("RGB", size, paper)
    draw = ImageDraw.Draw(image)
    pen = max(1, round(thickness * digit_h))
    for pts in stroke_points(digit, rng):
        x = (pts[:, 0] - 0.5) * digit_w
        y = (pts[:, 1] - 0.5) * digit_h
        xr = cx + x * math.cos(angle) - y * math.sin(angle)
        yr = cy + x * math.sin(angle) + y * math.cos(angle)
        line = list(zip(xr.tolist(), yr.tolist()))
        draw.line(line, fill=ink, width=pen, joint="curve")
        for px, py in (line[0], line[-1]):  # round pen tips
            draw.ellipse([px - pen / 2, py - pen / 2, px + pen / 2, py + pen / 2], fill=ink)
    if blur:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    if noise:
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, noise, size=(height, width, 1))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image
