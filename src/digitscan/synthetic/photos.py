"""Synthetic photos of handwriting: a glyph (an ink-coverage map) written on paper and photographed under a condition.

`photograph(glyph, CONDITIONS["uneven-light"], rng)` returns the encoded file bytes a user would upload: ink colour,
paper, lighting, position and size in the frame, rotation, pen width, camera noise and blur, and the file format
(JPEG, transparent PNG, EXIF-rotated JPEG, palette, 16-bit, CMYK) all vary with the condition.
`CONDITIONS["mixed"]` draws each of them at random: the shipped model is fine-tuned on MNIST *training* digits
photographed that way (digitscan.training.finetune), and benchmarks/realworld.py evaluates on MNIST *test* digits and on
handwriting fonts. Used at run time only: generated images are never committed.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, ImageFont

# (name, RGB) choices. Ink is what the pen leaves at full coverage; paper is the sheet in full light.
INKS = {"black": (25, 25, 35), "blue": (30, 55, 165), "pencil": (105, 105, 110), "red": (170, 30, 35),
        "white": (245, 245, 245)}
PAPERS = {"white": (246, 244, 238), "tinted": (232, 226, 196), "grey": (200, 202, 205), "blue-lined": (236, 242, 248),
          "dark": (22, 24, 30), "guilloche": (242, 244, 236), "cheque-lines": (240, 238, 228),
          "tint-wave": (236, 240, 246)}
# Papers with a printed background (security cheques and forms): a pattern in a light colour over the paper.
PATTERNS = {"guilloche": (120, 170, 140), "cheque-lines": (110, 130, 170), "tint-wave": (170, 130, 150)}
ENCODINGS = ("png", "jpeg", "transparent-png", "exif-jpeg", "palette-png", "png16", "cmyk-jpeg")
EXIF_ORIENTATION = 0x0112
MIN_DIGIT_HEIGHT = 16  # pixels; MNIST's own digits are 20

# Handwriting fonts from Debian packages (apt-get install ...), split by family into three disjoint groups:
# fine-tuning writes digits and letters in the training families; `benchmarks/realworld.py --dev` (every choice)
# writes with the development families and the report with the evaluation families, neither ever trained on.
FONT_PACKAGES = ("fonts-bwht", "fonts-comic-neue", "fonts-humor-sans", "fonts-breip", "fonts-lobster",
                 "fonts-lobstertwo", "fonts-leckerli-one", "fonts-isabella", "fonts-rufscript", "fonts-staypuft",
                 "fonts-tomsontalks", "fonts-klee", "fonts-yusei-magic", "fonts-havana", "fonts-ecolier-court",
                 "fonts-sjfonts", "fonts-dancingscript", "fonts-kaushanscript", "fonts-dkg-handwriting", "fonts-kristi")
FONT_DIR = Path("/usr/share/fonts")
TRAIN_FONT_FAMILIES = ("bwht", "comic-neue", "humor-sans", "breip", "lobster", "lobstertwo", "leckerli-one", "isabella",
                       "rufscript", "staypuft", "tomsontalks", "klee", "yusei-magic")
DEV_FONT_FAMILIES = ("havana", "ecolier-court", "sjfonts")
EVAL_FONT_FAMILIES = ("dancingscript", "kaushanscript", "fifthhorseman", "kristi")


@dataclass(frozen=True)
class Condition:
    """How one photo is made. Ranges are (low, high), drawn uniformly; tuples of names are drawn from."""

    description: str
    inks: tuple[str, ...] = ("black",)
    papers: tuple[str, ...] = ("white",)
    height_fraction: tuple[float, float] = (0.35, 0.7)  # digit height / image height
    image_height: tuple[int, int] = (160, 480)  # pixels
    aspect: tuple[float, float] = (0.75, 1.35)  # image width / height
    rotation_deg: float = 0.0  # up to this much either way
    pen: tuple[float, float] = (1.0, 1.0)  # stroke width relative to the glyph's own
    lighting: float = 0.0  # how much darker the dimmest corner is (0 = even light); a shadow edge when >= 0.3
    noise: tuple[float, float] = (0.0, 2.0)  # Gaussian sensor noise, std in grey levels
    blur: tuple[float, float] = (0.0, 0.0)  # Gaussian blur sigma, relative to the stroke width
    jpeg_quality: tuple[int, int] | None = None
    encodings: tuple[str, ...] = ("png",)
    texture: float = 0.02  # paper grain, relative brightness variation
    each: float = 1.0  # below 1: every nuisance applies to a photo with this probability only (see draw)

    def draw(self, rng: np.random.Generator) -> Condition:
        """The condition of one photo. With each < 1, every nuisance (ink, paper, pen, rotation, light, noise,
        blur, file format, grain) is this condition's with probability `each`, else the plain default: real
        photos have a few problems at once, rarely all of them."""
        if self.each >= 1:
            return self
        plain = Condition(self.description)
        chosen = {name: getattr(self if rng.random() < self.each else plain, name) for name in NUISANCES}
        return replace(self, each=1.0, **chosen)


NUISANCES = ("inks", "papers", "pen", "rotation_deg", "lighting", "noise", "blur", "encodings", "texture")


CONDITIONS: dict[str, Condition] = {
    "clean": Condition("black ink on white paper, even light, PNG"),
    "blue-ink": Condition("blue ballpoint on white paper", inks=("blue",)),
    "pencil": Condition("grey pencil, low contrast, grainy paper", inks=("pencil",), texture=0.04),
    "tinted-paper": Condition("black or blue ink on yellowish or grey paper", inks=("black", "blue"),
                              papers=("tinted", "grey", "blue-lined")),
    "uneven-light": Condition("a strong light gradient and a shadow edge across the sheet", lighting=0.5),
    "noise-blur-jpeg": Condition("sensor noise, out-of-focus blur, JPEG quality 40-80", noise=(6.0, 14.0),
                                 blur=(0.3, 0.8), jpeg_quality=(40, 80), encodings=("jpeg",)),
    "small-in-frame": Condition("the digit fills 10-25 % of the frame's height, anywhere in it",
                                height_fraction=(0.1, 0.25), image_height=(300, 700)),
    "fills-frame": Condition("the digit fills 75-90 % of the frame's height", height_fraction=(0.75, 0.9)),
    "rotated": Condition("rotated by up to 15 degrees either way", rotation_deg=15.0),
    "thin-pen": Condition("a fine pen: strokes half as wide", pen=(0.4, 0.6), image_height=(300, 600)),
    "thick-marker": Condition("a marker: strokes twice as wide", pen=(1.8, 2.4)),
    "tiny-image": Condition("28-40 px images", image_height=(28, 40), height_fraction=(0.6, 0.85)),
    "huge-image": Condition("3000-4000 px phone photos", image_height=(3000, 4000), noise=(2.0, 5.0),
                            encodings=("jpeg",), jpeg_quality=(85, 95)),
    "canvas": Condition("light ink on a dark background (drawing canvases, chalkboards)", inks=("white",),
                        papers=("dark",), texture=0.0),
    "transparent-png": Condition("dark strokes on a transparent background (drawing apps)",
                                 encodings=("transparent-png",)),
    "exif-rotated": Condition("a JPEG stored sideways with an EXIF orientation tag", encodings=("exif-jpeg",),
                              jpeg_quality=(85, 95)),
    "palette-16bit-cmyk": Condition("palette PNG, 16-bit greyscale PNG or CMYK JPEG",
                                    encodings=("palette-png", "png16", "cmyk-jpeg"), jpeg_quality=(85, 95)),
}
# Everything at once, at random: what fine-tuning trains on (with MNIST training digits only).
CONDITIONS["mixed"] = Condition(
    "the conditions above at random, each applying to a photo with probability 0.4",
    inks=("black", "black", "blue", "pencil", "red", "white"),
    papers=("white", "tinted", "grey", "blue-lined"), height_fraction=(0.1, 0.9), image_height=(28, 900),
    rotation_deg=15.0, pen=(0.4, 2.4), lighting=0.5, noise=(0.0, 14.0), blur=(0.0, 0.8), jpeg_quality=(40, 95),
    encodings=ENCODINGS, texture=0.04, each=0.4)


def glyph_from_mnist(image: np.ndarray) -> np.ndarray:
    """An MNIST-style uint8 image (ink bright on 0) -> its ink coverage in [0, 1], cropped to the ink."""
    alpha = np.asarray(image, dtype=np.float32) / 255.0
    rows, cols = np.nonzero(alpha > 0.05)
    if rows.size == 0:
        raise ValueError("a glyph without ink cannot be photographed")
    return alpha[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


def glyph_from_font(text: str, font_path: str, size: int = 96) -> np.ndarray:
    """Characters drawn in a font -> ink coverage in [0, 1], cropped to the ink (rendered large, antialiased)."""
    font = ImageFont.truetype(font_path, size)
    left, top, right, bottom = font.getbbox(text)
    canvas = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    from PIL import ImageDraw  # only the font path needs it

    ImageDraw.Draw(canvas).text((4 - left, 4 - top), text, fill=255, font=font)
    return glyph_from_mnist(np.asarray(canvas))


def photograph(glyph: np.ndarray, condition: Condition, rng: np.random.Generator, *,
               encoding: str | None = None) -> bytes:
    """The encoded file of one photo of `glyph` (coverage in [0, 1]) taken under `condition`."""
    condition = condition.draw(rng)
    pixels, alpha = render(glyph, condition, rng)
    encoding = encoding or str(rng.choice(condition.encodings))
    return encode(pixels, alpha, encoding, condition, rng)


def render(glyph: np.ndarray, condition: Condition, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 photo (H, W, 3), ink coverage (H, W) float32) of the glyph under the condition."""
    image_h = int(rng.integers(condition.image_height[0], condition.image_height[1] + 1))
    fraction = rng.uniform(*condition.height_fraction)
    digit_h = fraction * image_h
    if digit_h < MIN_DIGIT_HEIGHT:  # nobody can read a digit that small: the photo is taken from closer
        digit_h = MIN_DIGIT_HEIGHT
        image_h = math.ceil(digit_h / fraction)
    image_w = max(8, round(image_h * rng.uniform(*condition.aspect)))
    coverage = _shape_glyph(glyph, digit_h, rng.uniform(*condition.pen), condition.rotation_deg, rng)
    if coverage.shape[1] > image_w:  # a wide glyph (a whole number) gets a wider frame
        image_w = math.ceil(coverage.shape[1] / rng.uniform(0.6, 0.95))
    coverage = coverage[: image_h, : image_w]  # a rotated glyph filling the frame may overflow by a pixel or two
    alpha = np.zeros((image_h, image_w), np.float32)
    top = int(rng.integers(0, image_h - coverage.shape[0] + 1))
    left = int(rng.integers(0, image_w - coverage.shape[1] + 1))
    alpha[top: top + coverage.shape[0], left: left + coverage.shape[1]] = coverage

    ink_name, paper_name = str(rng.choice(condition.inks)), str(rng.choice(condition.papers))
    if ink_name == "white":
        paper_name = "dark"  # light ink needs a dark ground
    elif paper_name == "dark":
        ink_name = "white"
    ink = np.array(INKS[ink_name], np.float32)
    paper = np.array(PAPERS[paper_name], np.float32)
    opacity = rng.uniform(0.55, 0.85) if ink_name == "pencil" else rng.uniform(0.85, 1.0)
    reflectance = _paper_texture(image_h, image_w, condition.texture, rng)[..., None] * paper
    if paper_name in PATTERNS:
        printed = _printed_pattern(image_h, image_w, paper_name, digit_h, rng)[..., None]
        reflectance = reflectance * (1 - printed) + printed * np.array(PATTERNS[paper_name], np.float32)
    if ink_name == "pencil":  # graphite leaves grain: coverage varies along the stroke
        alpha = alpha * np.clip(1 - 0.35 * rng.random(alpha.shape, dtype=np.float32), 0, 1)
    cover = (alpha * opacity)[..., None]
    pixels = reflectance * (1 - cover) + ink * cover
    if condition.lighting and paper_name != "dark":
        pixels = pixels * _illumination(image_h, image_w, condition.lighting, rng)[..., None]

    stroke = max(1.0, 0.12 * digit_h)
    sigma = rng.uniform(*condition.blur) * stroke
    if sigma >= 0.3:
        pixels = cv2.GaussianBlur(pixels, (0, 0), sigma)
    noise = rng.uniform(*condition.noise)
    if noise > 0:
        pixels = pixels + rng.normal(0, noise, size=(image_h, image_w, 1)).astype(np.float32)
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8), alpha


def _shape_glyph(glyph: np.ndarray, digit_h: float, pen: float, rotation_deg: float,
                 rng: np.random.Generator) -> np.ndarray:
    """Scale the glyph to digit_h pixels tall, widen or narrow its strokes by `pen`, rotate it; coverage in [0, 1]."""
    factor = digit_h / glyph.shape[0]
    size = (max(1, round(glyph.shape[1] * factor)), max(1, round(glyph.shape[0] * factor)))
    coverage = np.clip(cv2.resize(glyph, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    # An upscaled 28 px glyph has soft, wide edges; a real pen's are crisp. Sharpen around the stroke's mid level.
    if factor > 2:
        coverage = np.clip((coverage - 0.3) / 0.4, 0, 1)
    if pen != 1.0:
        radius = abs(pen - 1) * 0.06 * digit_h  # the pen's half-width changes by this many pixels
        if radius >= 0.5:
            k = 2 * round(radius) + 1
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
            coverage = (cv2.dilate if pen > 1 else cv2.erode)(coverage, kernel)
        elif pen < 1:
            coverage = coverage * pen  # too small to erode: a fainter, finer line
    if rotation_deg:
        angle = rng.uniform(-rotation_deg, rotation_deg)
        h, w = coverage.shape
        side = math.ceil(math.hypot(h, w)) + 2
        padded = np.zeros((side, side), np.float32)
        padded[(side - h) // 2: (side - h) // 2 + h, (side - w) // 2: (side - w) // 2 + w] = coverage
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
        coverage = cv2.warpAffine(padded, matrix, (side, side), flags=cv2.INTER_LINEAR)
        rows, cols = np.nonzero(coverage > 0.02)
        if rows.size:
            coverage = coverage[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]
    return coverage.astype(np.float32)


def _paper_texture(h: int, w: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """Relative reflectance around 1: smooth blotches plus fine grain."""
    if amount <= 0:
        return np.ones((h, w), np.float32)
    coarse = cv2.resize(rng.normal(0, 1, (max(2, h // 40), max(2, w // 40))).astype(np.float32), (w, h),
                        interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 0.5, (h, w)).astype(np.float32)
    return 1 + amount * (0.7 * coarse + 0.3 * fine)


def _printed_pattern(h: int, w: int, kind: str, digit_h: float, rng: np.random.Generator) -> np.ndarray:
    """Coverage (h, w) in [0, 1] of a cheque's printed background: crossing families of fine wavy lines
    (guilloche), ruled lines and a box edge (cheque-lines), or broad soft waves of tint (tint-wave)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    strength = rng.uniform(0.25, 0.6)
    if kind == "tint-wave":
        period = rng.uniform(0.8, 3.0) * digit_h
        phase = np.sin(xs / period * 2 * math.pi + rng.uniform(0, 6.3)) \
            + np.sin(ys / period * 1.3 + rng.uniform(0, 6.3))
        return (strength * 0.6 * (0.5 + 0.25 * phase)).astype(np.float32)
    coverage = np.zeros((h, w), np.float32)
    if kind == "guilloche":
        for _ in range(int(rng.integers(2, 4))):
            spacing = rng.uniform(0.08, 0.3) * digit_h
            wavelength, amplitude = rng.uniform(0.5, 3.0) * digit_h, rng.uniform(0.1, 0.8) * digit_h
            tilt = rng.uniform(-0.6, 0.6)
            offset = ys + tilt * xs - amplitude * np.sin(2 * math.pi * xs / wavelength + rng.uniform(0, 6.3))
            distance = np.abs((offset / spacing + 0.5) % 1 - 0.5) * spacing  # px to the nearest line
            width = rng.uniform(0.4, 1.2)
            coverage = np.maximum(coverage, np.clip(1 - distance / width, 0, 1))
    else:  # cheque-lines: a few ruled lines across the field and a box edge, printed
        for _ in range(int(rng.integers(1, 4))):
            y = rng.uniform(0, h)
            thickness = rng.uniform(0.6, 2.0)
            coverage = np.maximum(coverage, np.clip(1 - np.abs(ys - y - rng.uniform(-0.01, 0.01) * xs) / thickness,
                                                    0, 1))
        if rng.random() < 0.5:
            x = rng.uniform(0, w)
            coverage = np.maximum(coverage, np.clip(1 - np.abs(xs - x) / rng.uniform(0.6, 2.0), 0, 1))
    return (strength * coverage).astype(np.float32)


def _illumination(h: int, w: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Light falling across the sheet: a linear gradient down to 1 - strength, and a soft shadow edge."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    along = (xs / w - 0.5) * math.cos(angle) + (ys / h - 0.5) * math.sin(angle)  # about -0.7..0.7
    light = 1 - strength * rng.uniform(0.5, 1.0) * (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    if strength >= 0.3 and rng.random() < 0.7:
        angle = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(-0.3, 0.3)
        edge = (xs / w - 0.5) * math.cos(angle) + (ys / h - 0.5) * math.sin(angle) - offset
        softness = rng.uniform(0.01, 0.08)
        light = light * (1 - rng.uniform(0.25, 0.45) * 0.5 * (1 + np.tanh(edge / (2 * softness))))  # a sigmoid
    return light.astype(np.float32)


def encode(pixels: np.ndarray, alpha: np.ndarray, encoding: str, condition: Condition,
           rng: np.random.Generator) -> bytes:
    """The photo as the bytes of a file in one of ENCODINGS."""
    image = Image.fromarray(pixels)
    quality = int(rng.integers(condition.jpeg_quality[0], condition.jpeg_quality[1] + 1)) \
        if condition.jpeg_quality else 92
    buffer = io.BytesIO()
    if encoding == "png":
        image.save(buffer, "PNG")
    elif encoding == "jpeg":
        image.save(buffer, "JPEG", quality=quality)
    elif encoding == "transparent-png":
        # What drawing apps export: the stroke colour everywhere, coverage in the alpha channel.
        rgba = np.dstack([np.broadcast_to(pixels.reshape(-1, 3)[np.argmax(alpha)], pixels.shape),
                          np.round(alpha * 255).astype(np.uint8)])
        Image.fromarray(np.ascontiguousarray(rgba), "RGBA").save(buffer, "PNG")
    elif encoding == "exif-jpeg":
        # The camera stores the sensor's pixels sideways and says how to turn them: Orientation 3, 6 or 8.
        orientation = int(rng.choice([3, 6, 8]))
        stored = image.transpose({3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90,
                                  8: Image.Transpose.ROTATE_270}[orientation])
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        stored.save(buffer, "JPEG", quality=quality, exif=exif.tobytes())
    elif encoding == "palette-png":
        image.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(buffer, "PNG")
    elif encoding == "png16":
        gray = np.asarray(image.convert("L"), np.uint16) * 257
        Image.fromarray(gray).save(buffer, "PNG")  # mode I;16
    elif encoding == "cmyk-jpeg":
        image.convert("CMYK").save(buffer, "JPEG", quality=quality)
    else:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    return buffer.getvalue()


class FontSplit(NamedTuple):
    train: list[str]
    dev: list[str]
    evaluation: list[str]


def font_split(font_dir: Path = FONT_DIR) -> FontSplit:
    """The installed font files of each family group, sorted."""
    def family(names: tuple[str, ...]) -> list[str]:
        return sorted(str(p) for p in font_dir.glob("*/*/*") if p.parent.name in names
                      and p.suffix.lower() in (".ttf", ".otf"))

    split = FontSplit(family(TRAIN_FONT_FAMILIES), family(DEV_FONT_FAMILIES), family(EVAL_FONT_FAMILIES))
    installed = {Path(f).parent.name for files in split for f in files}
    missing = [name for name in TRAIN_FONT_FAMILIES + DEV_FONT_FAMILIES + EVAL_FONT_FAMILIES if name not in installed]
    if missing:
        raise FileNotFoundError(f"handwriting fonts not found under {font_dir}: {', '.join(missing)}; "
                                f"install the Debian packages: apt-get install {' '.join(FONT_PACKAGES)}")
    return split
