"""Forms: a template (FORM.json) names the boxes of a page where digits are written; each is read and checked.

`load_template("form.json")` -> Template (strictly validated: any problem is one TemplateError line naming the field);
`read_template(gray, template, read_region)` -> {name: FieldResult}, where read_region(crop) reads one box (the
Recognizer's read). The page is first aligned as the template asks ("none", "deskew", "page"); every box is mapped
onto it, cut out, read, parsed and checked by its FieldSpec (digitscan.fields.formats), and flagged for review when
it fails, is unsure, or has a close alternative. docs/templates.md describes the format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from digitscan.constants import MAX_DESKEW_DEG, MAX_TEMPLATE_BYTES, REVIEW_CONFIDENCE
from digitscan.errors import TemplateError
from digitscan.fields.formats import DIGIT_KINDS, FieldSpec, shape_problem
from digitscan.image.decode import decode_image
from digitscan.image.ink import components, ink_map
from digitscan.reading.form_lines import INK_LEVEL, darkness, paper_level
from digitscan.reading.text import review_reason

TEMPLATE_KEYS = ("name", "size", "align", "fields")
FIELD_KEYS = ("box", "units", "kind", "pattern", "checksum", "date_order")
ALIGN_MODES = ("none", "deskew", "page")
UNITS = ("px", "relative")
# A field name becomes a JSON key and CSV columns (NAME, NAME_value, ...): an identifier, nothing to quote or escape.
_FIELD_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
FIELD_COLUMN_SUFFIXES = ("", "_value", "_confidence", "_valid", "_needs_review")  # a batch job's columns per field
RESERVED_COLUMNS = ("path", "error")

# Alignment works on the ink map (digitscan.image.ink) of a copy this large: 0.1 degree is ~1.8 px across it.
ALIGN_WORK_SIDE = 1024
_INK_LEVEL = 0.35  # the soft ink map is binarized here (as the line layout does)
_COARSE_STEP_DEG, _FINE_STEP_DEG = 0.5, 0.05  # skew search: the whole range coarsely, then around the best angle
_MIN_SKEW_DEG = 0.05  # below this a page is left as it is: no resampling for nothing
_MIN_ALIGN_PIXELS = 50  # fewer ink pixels than this say nothing about a page's skew or extent
_MAX_SKEW_POINTS = 200_000  # ink pixels the skew search projects at most (~60 trial angles each)
_FRAME_MIN_AREA = 0.2  # a printed frame's box covers at least this share of the page ...
_FRAME_MAX_FILL = 0.3  # ... and it is an outline: ink on at most this share of its box
_DUST_EXTENT = 0.01  # pieces of ink spanning less than this share of the page's longer side are dust
_SMALL_PRINT = 0.6  # in a field's box, a band of ink rows under this (x the tallest band's height) is small print
_BAND_GAP = 2  # px: rows without ink up to this many do not part a band (a broken stroke, a dot over a line)


@dataclass(frozen=True)
class TemplateField:
    name: str
    box: tuple[float, float, float, float]  # x, y, w, h in `units` on the template's page
    units: str  # "px": pixels of the template's `size`; "relative": fractions of the page
    spec: FieldSpec


@dataclass(frozen=True)
class Template:
    name: str
    fields: dict[str, TemplateField]  # in the file's order
    size: tuple[int, int] | None = None  # (W, H) of the reference page that px boxes are measured on
    align: str = "none"


@dataclass
class FieldResult:
    """One field of a form as read. alternatives: the reader's other readings as {raw, text, confidence, valid},
    those that pass the field's checks first; reason: why it is invalid or needs review (None when neither)."""

    text: str
    raw: str
    value: str | None  # the parsed value (amount, ISO date, digits) when valid, else None
    confidence: float
    box: list[int]  # [x, y, w, h] in the input page's pixels
    valid: bool
    needs_review: bool
    alternatives: list[dict]
    reason: str | None

    def to_dict(self) -> dict:
        return asdict(self)


def result_columns(template: Template) -> list[str]:
    """A batch job's columns for the template's fields, in order: NAME, NAME_value, NAME_confidence, NAME_valid,
    NAME_needs_review for each."""
    return [name + suffix for name in template.fields for suffix in FIELD_COLUMN_SUFFIXES]


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_template(path) -> Template:
    """Read and validate a FORM.json; TemplateError (one line: the file, the field, the problem) for anything
    wrong: a missing or oversized file, invalid JSON, a duplicate key, an unknown key, a wrong type, a box that is
    empty, negative or outside the page, an unknown kind, pattern, checksum or date order, a bad regex."""
    path = Path(path)
    if not path.is_file():
        raise TemplateError(f"{path}: no such template file" if not path.exists() else f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read the template: {exc.strerror or exc}") from None
    return parse_template(data, source=str(path))


def parse_template(data: bytes, source: str = "template") -> Template:
    """A Template from a FORM.json's bytes (an upload, say), checked as load_template checks a file; `source`
    names it in the messages."""
    if len(data) > MAX_TEMPLATE_BYTES:
        raise TemplateError(f"{source}: larger than {MAX_TEMPLATE_BYTES // 2**10} KiB: not a form template")
    try:
        document = json.loads(data.decode("utf-8-sig"), object_pairs_hook=_unique_keys,
                              parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise TemplateError(f"{source}: not UTF-8 text: a template is a JSON file") from None
    except json.JSONDecodeError as exc:
        raise TemplateError(f"{source}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise TemplateError(f"{source}: not a form template: JSON nested too deeply") from None
    except TemplateError as exc:
        raise TemplateError(f"{source}: {exc}") from None
    return template_from_dict(document, source=source)


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    seen = {}
    for key, value in pairs:
        if key in seen:  # json keeps the last one silently: a field pasted twice would vanish
            raise TemplateError(f"the key {key!r} appears twice in one object (names must be unique)")
        seen[key] = value
    return seen


def _refuse_constant(name: str):
    raise TemplateError(f"{name} is not a number JSON allows")


def template_from_dict(document, source: str = "template") -> Template:
    """A Template from the parsed JSON (see load_template); source names it in the messages."""

    def fail(message: str, field: str | None = None):
        where = f"field {field!r}: " if field is not None else ""
        raise TemplateError(f"{source}: {where}{message}")

    if not isinstance(document, dict):
        fail('a template is a JSON object {"name": ..., "fields": {...}}')
    for key in document:
        if key not in TEMPLATE_KEYS:
            fail(f"unknown key {key!r}; a template has: {', '.join(TEMPLATE_KEYS)}")
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        fail('"name" must be a non-empty string')
    size = document.get("size")
    if size is not None:
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) and v > 0 for v in size)):
            fail(f'"size" must be [W, H], two positive whole numbers of pixels, not {_short(size)}')
        size = (size[0], size[1])
    align = document.get("align", "none")
    if align not in ALIGN_MODES:
        fail(f'"align" must be one of: {", ".join(ALIGN_MODES)}, not {_short(align)}')
    fields = document.get("fields")
    if not isinstance(fields, dict) or not fields:
        fail('"fields" must be a non-empty object {NAME: {"box": [x, y, w, h], ...}}')
    parsed = {field_name: _field(field_name, spec, size, fail) for field_name, spec in fields.items()}
    template = Template(name=name, fields=parsed, size=size, align=align)
    columns = list(RESERVED_COLUMNS)
    for field_name in parsed:
        for column in (field_name + suffix for suffix in FIELD_COLUMN_SUFFIXES):
            if column in columns:
                fail(f"its results column {column!r} would collide with another column (path, error, or another "
                     f"field's NAME_value, NAME_confidence, NAME_valid, NAME_needs_review)", field_name)
            columns.append(column)
    return template


def _field(name: str, spec, size: tuple[int, int] | None, fail) -> TemplateField:
    if not _FIELD_NAME.fullmatch(name):
        fail("a field name is a letter followed by up to 63 letters, digits or _ (it names CSV columns)", name)
    if not isinstance(spec, dict):
        fail('must be an object {"box": [x, y, w, h], ...}', name)
    for key in spec:
        if key not in FIELD_KEYS:
            fail(f"unknown key {key!r}; a field has: {', '.join(FIELD_KEYS)}", name)
    for key in ("units", "kind", "pattern", "checksum", "date_order"):
        if key in spec and not (isinstance(spec[key], str) or (spec[key] is None and key in ("pattern", "checksum"))):
            fail(f"{key!r} must be a string{' or null' if key in ('pattern', 'checksum') else ''}, "
                 f"not {_short(spec[key])}", name)
    units = spec.get("units", "relative")
    if units not in UNITS:
        fail(f'"units" must be one of: {", ".join(UNITS)}, not {_short(units)}', name)
    box = spec.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
        fail(f'"box" must be [x, y, w, h], four numbers, not {_short(box)}', name)
    x, y, w, h = (float(v) for v in box)
    if x < 0 or y < 0 or w <= 0 or h <= 0:
        fail(f"box {_short(box)}: x and y must be at least 0, the width and the height more than 0", name)
    if units == "relative":
        if x + w > 1 or y + h > 1:
            fail(f"box {_short(box)} reaches outside the page: relative boxes are fractions of it, from 0 to 1 "
                 f'(pixels need "units": "px" and the template\'s "size")', name)
    elif size is None:
        fail('"units": "px" needs the template\'s "size": [W, H], the reference page the pixels are measured on',
             name)
    elif x + w > size[0] or y + h > size[1]:
        fail(f"box {_short(box)} reaches outside the {size[0]}x{size[1]} page of the template's size", name)
    kind = spec.get("kind", "digits")
    if "date_order" in spec and kind != "date":
        fail(f'"date_order" only applies to kind "date", not {kind!r}', name)
    try:
        field_spec = FieldSpec(kind=kind, pattern=spec.get("pattern"), checksum=spec.get("checksum"),
                               date_order=spec.get("date_order", "dmy"))
    except ValueError as exc:
        fail(str(exc), name)
    return TemplateField(name=name, box=(x, y, w, h), units=units, spec=field_spec)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _short(value) -> str:
    """The value as JSON, cut short: it goes into a one-line message."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------------------------------
# Alignment
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PageAlignment:
    """Where the template's page lies on an input page.

    angle: the page content's rotation in degrees, counter-clockwise on screen (0: not deskewed). The input is
    turned back by it about its centre, giving the upright page; frame: the template's page on the upright page,
    (x, y, w, h) in pixels (the whole page, or the content's box for align "page").
    """

    angle: float
    frame: tuple[float, float, float, float]
    to_input: np.ndarray  # (2, 3) affine map from upright-page pixels to input pixels

    def field_box(self, field: TemplateField, size: tuple[int, int] | None) -> tuple[float, float, float, float]:
        """The field's box on the upright page, in pixels."""
        ref_w, ref_h = size if field.units == "px" else (1, 1)
        fx, fy, fw, fh = self.frame
        x, y, w, h = field.box
        return fx + x * fw / ref_w, fy + y * fh / ref_h, w * fw / ref_w, h * fh / ref_h


def align_page(page: np.ndarray, mode: str) -> PageAlignment:
    """How a (H, W) page lies under a template aligned with `mode`: "none" (the template's page is the image),
    "deskew" (the image turned upright) or "page" (turned upright, then the template's page is the printed frame
    or, without one, the box of the outermost ink)."""
    if mode not in ALIGN_MODES:
        raise ValueError(f"unknown align mode {mode!r}; choose one of: {', '.join(ALIGN_MODES)}")
    height, width = page.shape
    whole = (0.0, 0.0, float(width), float(height))
    if mode == "none":
        return PageAlignment(0.0, whole, np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    ink, scale = ink_map(page, speck_fraction=0, work_side=ALIGN_WORK_SIDE)
    mask = (ink > _INK_LEVEL).astype(np.uint8)
    angle = estimate_skew(mask)
    centre = (width / 2, height / 2)
    upright = cv2.getRotationMatrix2D(centre, -angle, 1.0)  # input -> upright page
    to_input = cv2.invertAffineTransform(upright)
    if mode == "deskew":
        return PageAlignment(angle, whole, to_input)
    if abs(angle) >= _MIN_SKEW_DEG:  # the mask turned upright too (about the same centre, in working pixels)
        turn = cv2.getRotationMatrix2D((mask.shape[1] / 2, mask.shape[0] / 2), -angle, 1.0)
        mask = cv2.warpAffine(mask, turn, (mask.shape[1], mask.shape[0]), flags=cv2.INTER_NEAREST)
    found = content_box(mask)
    frame = whole if found is None else tuple(v / scale for v in found)
    return PageAlignment(angle, frame, to_input)


def estimate_skew(mask: np.ndarray) -> float:
    """The rotation of a page's rows of ink, in degrees counter-clockwise on screen, within +-MAX_DESKEW_DEG.

    Projection profiles: the ink is projected onto the vertical axis at each trial angle, and the angle at which
    rows, rules and frame lines are straight makes the sharpest profile (the largest sum of squared row counts).
    The whole range in coarse steps first, then finely around the best. 0.0 for a page with almost no ink.
    """
    ys, xs = np.nonzero(mask)
    if len(xs) < _MIN_ALIGN_PIXELS:
        return 0.0
    step = -(-len(xs) // _MAX_SKEW_POINTS)  # an even sample of a page dark with ink: the profiles' shape is the same
    ys, xs = ys[::step], xs[::step]
    xs = xs.astype(np.float64) - mask.shape[1] / 2
    ys = ys.astype(np.float64) - mask.shape[0] / 2

    def sharpness(angle_deg: float) -> float:
        theta = math.radians(angle_deg)
        # A row turned counter-clockwise by theta on screen (y down) rises to the right: y + x tan(theta) is
        # constant along it, so projecting onto x sin + y cos straightens it.
        rows = xs * math.sin(theta) + ys * math.cos(theta)
        counts = np.bincount(np.round(rows - rows.min()).astype(np.int64))
        return float(np.dot(counts, counts))

    coarse = np.arange(-MAX_DESKEW_DEG, MAX_DESKEW_DEG + 1e-9, _COARSE_STEP_DEG)
    best = max(coarse, key=sharpness)
    fine = np.arange(best - _COARSE_STEP_DEG, best + _COARSE_STEP_DEG + 1e-9, _FINE_STEP_DEG)
    best = float(max(fine, key=lambda a: (sharpness(a), -abs(a))))  # ties: the smaller turn
    # The peak between the fine steps: the vertex of the parabola through the best step and its two neighbours.
    below, at, above = (sharpness(best + d) for d in (-_FINE_STEP_DEG, 0.0, _FINE_STEP_DEG))
    curvature = below - 2 * at + above
    if curvature < 0:
        best += float(np.clip(0.5 * (below - above) / curvature, -0.5, 0.5)) * _FINE_STEP_DEG
    return float(np.clip(best, -MAX_DESKEW_DEG, MAX_DESKEW_DEG))


def content_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The page's content on an upright ink mask, (x, y, w, h) in its pixels: the printed frame (the largest piece
    of ink whose box covers at least _FRAME_MIN_AREA of the page and that is an outline, not a filled area), else
    the box around every piece of ink that is not dust. Pieces touching the image's border (a scan's dark edge, a
    shadow) are left out. None when there is no such ink."""
    height, width = mask.shape
    count, _, stats = components(mask)
    left, top, w, h, area = (stats[1:, i].astype(np.int64) for i in range(5))
    inside = (left > 0) & (top > 0) & (left + w < width) & (top + h < height)
    frames = inside & (w * h >= _FRAME_MIN_AREA * width * height) & (area <= _FRAME_MAX_FILL * w * h)
    if frames.any():
        i = int(np.argmax(np.where(frames, w * h, -1)))
        return int(left[i]), int(top[i]), int(w[i]), int(h[i])
    kept = inside & (np.maximum(w, h) >= _DUST_EXTENT * max(width, height))
    if np.count_nonzero(kept) == 0 or area[kept].sum() < _MIN_ALIGN_PIXELS:
        return None
    x0, y0 = int(left[kept].min()), int(top[kept].min())
    x1, y1 = int((left + w)[kept].max()), int((top + h)[kept].max())
    return x0, y0, x1 - x0, y1 - y0


def cut_field(page: np.ndarray, alignment: PageAlignment, box: tuple[float, float, float, float],
              paper: float) -> tuple[np.ndarray | None, list[int]]:
    """(the box's pixels as uint8 grey, or None when it lies outside the page; its box in input pixels).

    An upright page is cut by slicing; a deskewed one is resampled through the rotation, box by box (only the
    box's pixels are computed), with the paper's level outside the image.
    """
    height, width = page.shape
    x, y, w, h = box
    corners = np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]]) @ alignment.to_input.T
    x0, y0 = np.clip(np.floor(corners.min(axis=0)), 0, [width, height]).astype(int)
    x1, y1 = np.clip(np.ceil(corners.max(axis=0)), 0, [width, height]).astype(int)
    input_box = [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None, input_box
    if abs(alignment.angle) < _MIN_SKEW_DEG:
        crop = page[y0:y1, x0:x1]
    else:
        size = (max(1, round(w)), max(1, round(h)))
        shift = np.array([[1.0, 0, x], [0, 1.0, y], [0, 0, 1]])  # crop pixel -> upright page pixel
        crop_to_input = alignment.to_input @ shift
        crop = cv2.warpAffine(page, crop_to_input, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
    return np.round(np.clip(crop, 0, 1) * 255).astype(np.uint8), input_box


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def read_template(gray, template: Template, read_region: Callable[[np.ndarray], object],
                  read_comb: Callable[[np.ndarray], object] | None = None, *,
                  review_confidence: float = REVIEW_CONFIDENCE) -> dict[str, FieldResult]:
    """Every field of the template read on a page: {name: FieldResult}, in the template's order.

    gray: the page as decode_image accepts it (a (H, W) array: uint8, or float in [0, 1] as decode_image returns);
    read_region(crop) reads one field's pixels, a (h, w) uint8 grey array (ink dark on light paper, as scanned),
    and returns a reading (.text, .raw, .confidence, .alternatives), e.g. `lambda crop: recognizer.read(crop)`;
    read_comb, when given, reads the fields of kind "comb" instead (Recognizer.read_template reads them with both
    readers, as pages read comb rows). review_confidence: the review rule's threshold for those readers
    (reading.text.review_confidence).
    """
    page = decode_image(gray)
    alignment = align_page(page, template.align)
    paper = float(np.median(page))
    results = {}
    for name, field in template.fields.items():
        crop, box = cut_field(page, alignment, alignment.field_box(field, template.size), paper)
        if crop is None:
            results[name] = FieldResult(text="", raw="", value=None, confidence=0.0, box=box, valid=False,
                                        needs_review=True, alternatives=[],
                                        reason="the field's box lies outside the page")
            continue
        reader = read_comb if read_comb is not None and field.spec.kind == "comb" else read_region
        results[name] = judge_reading(reader(crop), field.spec, box, review_confidence)
    return results


def without_small_print(crop: np.ndarray) -> np.ndarray:
    """A field's crop (uint8 grey, ink dark, printed lines already painted out) with the small print beside its
    writing painted the paper's colour: a caption in a box above the writing ("Box 12"), a label above the frame
    that the template's box reaches, a hint under it. The ink's rows part into bands at blank rows; a band under
    _SMALL_PRINT of the tallest one's height goes. Handwriting is written larger than a form's print; one line of
    writing is one band (its dots, commas and dashes share its rows), so a crop of one band is returned as it is."""
    page = crop.astype(np.float32) / 255
    paper = paper_level(page)
    ink = darkness(page, paper) >= INK_LEVEL
    rows = np.flatnonzero(ink.any(axis=1))
    if rows.size == 0:
        return crop
    breaks = np.flatnonzero(np.diff(rows) > _BAND_GAP + 1)
    bands = [(int(band[0]), int(band[-1]) + 1) for band in np.split(rows, breaks + 1)]
    if len(bands) < 2:
        return crop
    tallest = max(bottom - top for top, bottom in bands)
    out = crop.copy()
    for top, bottom in bands:
        if bottom - top < _SMALL_PRINT * tallest:
            out[top:bottom] = np.round(paper[top:bottom] * 255).astype(np.uint8)
    return out


def judge_reading(reading, spec: FieldSpec, box: list[int],
                  review_confidence: float = REVIEW_CONFIDENCE) -> FieldResult:
    """A reading of one field checked against its spec, with its alternatives, and whether it needs review:
    it does when it is not valid, when its confidence is under review_confidence, when its best alternative's
    confidence reaches REVIEW_MARGIN times its own, when an amount's or a date's value had to be read from an
    alternative (FieldSpec.parse), or when a digits or comb field without a regex pattern has separators that make
    no amount, date, time or dashed number (formats.shape_problem). The best reading stays the text even when it
    fails and an alternative passes; the passing alternatives are listed first."""
    valid, value, reason = spec.parse(reading)
    others = list(reading.alternatives)
    checked = [(alternative, spec.check(alternative)[0]) for alternative in others]
    ordered = [(a, ok) for a, ok in checked if ok] + [(a, ok) for a, ok in checked if not ok]
    alternatives = [{"raw": spec.raw(a), "text": a.text, "confidence": float(a.confidence), "valid": ok}
                    for a, ok in ordered]
    confidence = float(reading.confidence)
    closest = max((a.confidence for a in others), default=None)
    if not valid:
        passing = [a["raw"] for a in alternatives if a["valid"]]
        if passing:
            reason += f"; the alternative reading {passing[0]!r} passes"
    elif reason is None:  # else the value was read from an alternative: to review, for the reason given
        reason = review_reason(confidence, closest, min_confidence=review_confidence)
        if reason is None and spec.kind in DIGIT_KINDS and not spec.pattern.startswith("regex:"):
            reason = shape_problem(spec.raw(reading))  # a separator misread: "26104/1967" in a digits field
    return FieldResult(text=reading.text, raw=spec.raw(reading), value=value, confidence=confidence, box=box,
                       valid=valid, needs_review=reason is not None, alternatives=alternatives, reason=reason)
