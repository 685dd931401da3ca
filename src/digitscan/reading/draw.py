"""The debug image of a reading: the input in grey with each digit's box, digit and confidence."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont


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
