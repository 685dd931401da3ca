"""Form pages drawn for the tests: OpenCV rules, boxes and Hershey-font labels, pen-stroke digits
(digitscan.synthetic.strokes); no MNIST pixels, a few milliseconds each."""

from __future__ import annotations

import cv2
import numpy as np

from digitscan.synthetic.strokes import stroke_digit

PAPER, INK, RULE = 245, 20, 30


def blank(width: int = 900, height: int = 500) -> np.ndarray:
    return np.full((height, width), PAPER, np.uint8)


def pen_digits(page: np.ndarray, text: str, x: int, bottom: int, height: int = 40, *, seed: int = 0,
               gap: float = 0.3, drops: dict[int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """Write pen-stroke digits into the page (dark ink), feet on row `bottom`, the i-th lowered by drops[i] px;
    returns each digit's ink box (x0, y0, x1, y1), exclusive ends."""
    boxes = []
    for i, char in enumerate(text):
        glyph = stroke_digit(int(char), seed=seed + i, size=64, thickness=0.12).astype(np.float32) / 255
        rows, cols = np.nonzero(glyph > 0.1)
        glyph = glyph[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
        scale = height / glyph.shape[0]
        glyph = cv2.resize(glyph, (max(1, round(glyph.shape[1] * scale)), height), interpolation=cv2.INTER_AREA)
        top = bottom - height + (drops or {}).get(i, 0)
        region = page[top: top + height, x: x + glyph.shape[1]]
        np.minimum(region, np.round(PAPER - (PAPER - INK) * glyph).astype(np.uint8), out=region)
        boxes.append((x, top, x + glyph.shape[1], top + height))
        x += glyph.shape[1] + int(gap * height)
    return boxes


def comb(page: np.ndarray, x: int, y: int, cells: int, width: int = 48, height: int = 56, thickness: int = 2) -> None:
    for i in range(cells + 1):
        cv2.line(page, (x + i * width, y), (x + i * width, y + height), RULE, thickness)
    cv2.line(page, (x, y), (x + cells * width, y), RULE, thickness)
    cv2.line(page, (x, y + height), (x + cells * width, y + height), RULE, thickness)


def comb_digits(page: np.ndarray, text: str, x: int, y: int, width: int = 48, height: int = 56,
                drops: dict[int, int] | None = None) -> list[tuple[int, int, int, int]]:
    """One pen digit per comb cell, centred; the i-th lowered by drops[i] px (across the bottom rule)."""
    boxes = []
    for i, char in enumerate(text):
        drop = (drops or {}).get(i, 0)
        boxes += pen_digits(page, char, x + i * width + 14, y + height - 8 + drop, seed=10 + i)
    return boxes


def label(page: np.ndarray, text: str, x: int, baseline: int, scale: float = 0.6,
          thickness: int = 1) -> tuple[int, int, int, int]:
    """Printed text (a Hershey font); returns its box (x0, y0, x1, y1)."""
    (width, height), below = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.putText(page, text, (x, baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, INK, thickness, cv2.LINE_AA)
    return x, baseline - height, x + width, baseline + below


def union(boxes) -> tuple[int, int, int, int]:
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def iou(box: list[int], corners: tuple[int, int, int, int]) -> float:
    """IoU of an [x, y, w, h] box and an (x0, y0, x1, y1) one."""
    x, y, w, h = box
    x0, y0, x1, y1 = corners
    inter = max(0, min(x + w, x1) - max(x, x0)) * max(0, min(y + h, y1) - max(y, y0))
    return inter / (w * h + (x1 - x0) * (y1 - y0) - inter)


def overlaps(box: list[int], corners: tuple[int, int, int, int]) -> bool:
    x, y, w, h = box
    x0, y0, x1, y1 = corners
    return min(x + w, x1) > max(x, x0) and min(y + h, y1) > max(y, y0)


def small_form() -> tuple[np.ndarray, dict[str, tuple[int, int, int, int]], list[tuple[int, int, int, int]]]:
    """A form of three fields (a comb row, an underline, a box) with printed labels holding digits:
    (page, {text: box} of the fields, label boxes)."""
    page = blank()
    labels = [label(page, "Form 1040", 40, 60, scale=1.4, thickness=2), label(page, "Box 12", 40, 150),
              label(page, "Date 2024", 40, 270), label(page, "Amount (EUR)", 40, 390)]
    comb(page, 160, 110, 6)
    fields = {"407815": union(comb_digits(page, "407815", 160, 110))}
    fields["9316"] = union(pen_digits(page, "9316", 200, 272, 42, seed=30))
    cv2.line(page, (190, 274), (420, 274), RULE, 2)
    cv2.rectangle(page, (200, 340), (420, 410), RULE, 2)
    fields["8532"] = union(pen_digits(page, "8532", 215, 398, 42, seed=50))
    return page, fields, labels
