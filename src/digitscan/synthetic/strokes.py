"""Synthetic hand-drawn digits: pen strokes for 0-9 rendered as ink on paper, for examples, tests and benchmarks.

`render_digit(7, seed=1)` returns a PIL image; `DIGIT_STROKES` are the polylines (also used to draw on the web canvas).
No MNIST pixels are involved, so the images can be committed and shared. `render_number` composes digits into a number.
"""

from __future__ import annotations

import math

import cv2
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


def stroke_digit(digit: int, *, seed: int = 0, size: int = 64, thickness: float = 0.1) -> np.ndarray:
    """One synthetic pen digit as an MNIST-style (size, size) uint8 array, ink bright on black (for render_number)."""
    image = render_digit(digit, (size, size), seed=seed, box_fraction=0.8, thickness=thickness,
                         ink=(255, 255, 255), paper=(0, 0, 0))
    return np.asarray(image.convert("L"))


def render_number(digit_images: list[np.ndarray], *, seed: int = 0, digit_height: int = 48,
                  spacing: tuple[float, float] = (0.15, 0.45), baseline_drift: float = 0.0,
                  scale_jitter: float = 0.0, ink: tuple[int, int, int] = (20, 20, 30),
                  paper: tuple[int, int, int] = (245, 243, 235), noise: float = 0.0, underline: bool = False,
                  specks: int = 0, margin: float = 0.6) -> tuple[Image.Image, list[list[int]]]:
    """Compose digit images into one handwritten number, drawn as ink on paper: (RGB image, true boxes [x, y, w, h]).

    digit_images: MNIST-style arrays (ink bright, background 0), e.g. MNIST digits or `stroke_digit` output; each
    is scaled like MNIST's 20 px box (longer side of its ink = digit_height). spacing: range of the gap between
    neighbours' ink, in digit heights (negative: touching or overlapping, by at most a third of the narrower
    digit); baseline_drift: how far the line
    wanders up or down (a slope plus per-digit jitter), in digit heights; scale_jitter: each digit's size varies
    by up to this fraction; noise: std of Gaussian pixel noise (0-255); underline: a ruled line under the number,
    sometimes touching it; specks: that many dots of dirt anywhere on the page. Used at run time only
    (tests, benchmarks): composed MNIST images are never committed.
    """
    rng = np.random.default_rng(seed)
    glyphs = []
    for image in digit_images:
        ink_level = np.asarray(image, dtype=np.float32) / 255.0
        rows, cols = np.nonzero(ink_level > 0)
        if rows.size == 0:
            raise ValueError("a digit image without ink cannot be placed")
        crop = ink_level[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
        target = digit_height * rng.uniform(1 - scale_jitter, 1 + scale_jitter)
        factor = target / max(crop.shape)
        size = (max(1, round(crop.shape[1] * factor)), max(1, round(crop.shape[0] * factor)))  # (w, h)
        glyph = np.clip(cv2.resize(crop, size, interpolation=cv2.INTER_CUBIC), 0, 1)
        glyphs.append(glyph)

    count = len(glyphs)
    pad = round(margin * digit_height)
    gaps = rng.uniform(*spacing, size=max(count - 1, 0)) * digit_height
    # Nobody writes a digit on top of the previous one: overlap at most a third of the narrower neighbour.
    narrower = np.array([min(a.shape[1], b.shape[1]) for a, b in zip(glyphs, glyphs[1:])], np.float64)
    gaps = np.maximum(gaps, -narrower / 3) if count > 1 else gaps
    lefts = np.concatenate([[0.0], np.cumsum([g.shape[1] for g in glyphs[:-1]] + gaps)]) if count else np.zeros(0)
    # Baseline: a straight slope across the number plus a little jitter per digit.
    slope = rng.uniform(-1, 1) * baseline_drift * digit_height
    along = np.linspace(-0.5, 0.5, count) if count > 1 else np.zeros(count)
    drift = slope * along + rng.uniform(-0.3, 0.3, count) * baseline_drift * digit_height
    centres = drift - drift.min() if count else drift  # vertical centre of each digit, >= 0
    tallest = max((g.shape[0] for g in glyphs), default=digit_height)
    width = int(np.ceil(max((lefts[i] + glyphs[i].shape[1] for i in range(count)), default=digit_height))) + 2 * pad
    height = int(np.ceil(centres.max() if count else 0)) + tallest + 2 * pad
    alpha = np.zeros((height, width), np.float32)  # ink coverage, 0 = paper

    boxes = []
    for glyph, left, centre in zip(glyphs, lefts, centres):
        top = int(round(pad + tallest / 2 + centre - glyph.shape[0] / 2))
        x = int(round(pad + left))
        h, w = glyph.shape
        region = alpha[top: top + h, x: x + w]
        np.maximum(region, glyph[: region.shape[0], : region.shape[1]], out=region)
        rows, cols = np.nonzero(glyph > 0.1)
        boxes.append([x + int(cols.min()), top + int(rows.min()), int(cols.max() - cols.min() + 1),
                      int(rows.max() - rows.min() + 1)])

    if underline and boxes:
        thickness = max(1, round(rng.uniform(0.04, 0.09) * digit_height))
        x0 = boxes[0][0] - rng.uniform(0.1, 0.4) * digit_height
        x1 = boxes[-1][0] + boxes[-1][2] + rng.uniform(0.1, 0.4) * digit_height
        bottom = max(b[1] + b[3] for b in boxes)
        y0 = bottom + rng.uniform(-0.06, 0.15) * digit_height  # sometimes the digits sit on (touch) the rule
        y1 = y0 + rng.uniform(-0.05, 0.05) * digit_height
        rule = np.zeros((height, width), np.uint8)
        shift = 4  # cv2 draws with 4 fractional bits: antialiased, sub-pixel end points
        cv2.line(rule, (round(x0 * 16), round(y0 * 16)), (round(x1 * 16), round(y1 * 16)), 255, thickness,
                 cv2.LINE_AA, shift)
        np.maximum(alpha, rule.astype(np.float32) / 255, out=alpha)
    for _ in range(specks):
        radius = rng.uniform(0.01, 0.04) * digit_height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        dot = np.zeros((height, width), np.uint8)
        cv2.circle(dot, (round(cx * 16), round(cy * 16)), max(1, round(radius * 16)), 255, -1, cv2.LINE_AA, 4)
        np.maximum(alpha, dot.astype(np.float32) / 255, out=alpha)

    paper_rgb = np.array(paper, np.float32)
    ink_rgb = np.array(ink, np.float32)
    pixels = paper_rgb * (1 - alpha[..., None]) + ink_rgb * alpha[..., None]  # (H, W, 3)
    if noise:
        pixels = pixels + rng.normal(0, noise, size=(height, width, 1))
    return Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8)), boxes
