"""Form templates: strict loading, box scaling, page alignment (deskew, page frame), reading every field and flagging
the ones to review, in Python, on the command line and in batch jobs. Pages are drawn here with OpenCV and pen-stroke
digits (digitscan.synthetic.strokes), no MNIST pixels."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from digitscan.constants import MAX_TEMPLATE_BYTES, REVIEW_CONFIDENCE, REVIEW_MARGIN
from digitscan.errors import ImageTooComplexError, TemplateError
from digitscan.fields.template import (
    align_page,
    load_template,
    read_template,
    template_from_dict,
    without_small_print,
)
from digitscan.recognize import Alternative, ReadResult
from digitscan.synthetic.strokes import render_number, stroke_digit

from helpers import json_lines, read_rows, run
from helpers.forms import blank, comb, comb_digits, label, pen_digits, small_form

PAPER, INK = 245, 30
GOOD = {"name": "card form", "size": [800, 600], "align": "none", "fields": {
    "zip": {"box": [40, 40, 200, 60], "units": "px", "kind": "digits", "pattern": "digits{5}"},
    "card": {"box": [0.1, 0.5, 0.6, 0.1], "units": "relative", "checksum": "luhn"},
    "paid": {"box": [0.1, 0.7, 0.3, 0.1], "kind": "amount"},
    "day": {"box": [0.5, 0.7, 0.3, 0.1], "kind": "date", "date_order": "mdy", "pattern": r"regex:\d\d/\d\d/\d{4}"},
    "iban": {"box": [0.1, 0.85, 0.8, 0.1], "kind": "comb", "pattern": "digits{28}", "checksum": "mod97-10"},
}}


def write(tmp_path: Path, document, name: str = "form.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def with_field(**field) -> dict:
    return {"name": "t", "size": [800, 600], "fields": {"zip": {"box": [10, 10, 100, 50], "units": "px", **field}}}


def fixed_reader(text: str = "12345", confidence: float = 0.99, crops: list | None = None):
    """A read_region that returns one reading and keeps the crops it was given."""
    def read_region(crop: np.ndarray) -> ReadResult:
        if crops is not None:
            crops.append(crop)
        return ReadResult(text=text, confidence=confidence, digits=[], raw=text)
    return read_region


def number(text: str, seed: int = 0) -> np.ndarray:
    """A handwritten number, dark ink on light paper (uint8)."""
    digits = [stroke_digit(int(c), seed=seed + i, thickness=0.11) for i, c in enumerate(text)]
    image, _ = render_number(digits, seed=seed, digit_height=28, spacing=(0.2, 0.4), margin=0.4)
    return np.asarray(image.convert("L"))


def paste(page: np.ndarray, ink: np.ndarray, x: int, y: int) -> list[int]:
    """Write `ink` onto the page at (x, y) (the darker wins); returns its box."""
    h, w = ink.shape
    np.minimum(page[y:y + h, x:x + w], ink, out=page[y:y + h, x:x + w])
    return [x, y, w, h]


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def test_a_good_template_loads_with_its_defaults(tmp_path):
    template = load_template(write(tmp_path, GOOD))
    assert template.name == "card form" and template.size == (800, 600) and template.align == "none"
    assert list(template.fields) == ["zip", "card", "paid", "day", "iban"]  # the file's order
    zip_field, paid, day = template.fields["zip"], template.fields["paid"], template.fields["day"]
    assert (zip_field.box, zip_field.units, zip_field.spec.pattern) == ((40, 40, 200, 60), "px", "digits{5}")
    assert (paid.units, paid.spec.pattern, paid.spec.checksum) == ("relative", "amount", None)
    assert day.spec.date_order == "mdy" and template.fields["card"].spec.kind == "digits"
    minimal = load_template(write(tmp_path, {"name": "m", "fields": {"a": {"box": [0, 0, 1, 1]}}}, "m.json"))
    assert (minimal.size, minimal.align, minimal.fields["a"].spec.kind) == (None, "none", "digits")


def test_the_documented_example_is_a_valid_template():
    page = (Path(__file__).resolve().parents[1] / "docs" / "templates.md").read_text()
    example = page.split("```json\n", 1)[1].split("```", 1)[0]
    template = template_from_dict(json.loads(example))
    assert template.align == "page" and template.fields["card"].spec.checksum == "luhn"


BAD_TEMPLATES = [
    ('{"name": "t", "fields": {', "not valid JSON"),
    ("[1, 2]", "a template is a JSON object"),
    ({"name": "t", "fields": {"a": {"box": [0, 0, 1, 1]}}, "colour": "red"}, "unknown key 'colour'"),
    ({"fields": {"a": {"box": [0, 0, 1, 1]}}}, '"name" must be a non-empty string'),
    ({"name": 3, "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"name" must be a non-empty string'),
    ({"name": "t", "fields": {}}, '"fields" must be a non-empty object'),
    ({"name": "t", "fields": [{"box": [0, 0, 1, 1]}]}, '"fields" must be a non-empty object'),
    ({"name": "t", "size": [800], "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"size" must be [W, H]'),
    ({"name": "t", "size": [800, -600], "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"size" must be [W, H]'),
    ({"name": "t", "size": [800.5, 600], "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"size" must be [W, H]'),
    ({"name": "t", "size": [True, 600], "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"size" must be [W, H]'),
    ({"name": "t", "align": "rotate", "fields": {"a": {"box": [0, 0, 1, 1]}}}, '"align" must be one of'),
    ('{"name": "t", "fields": {"zip": {"box": [0, 0, 1, 1]}, "zip": {"box": [0, 0, 1, 1]}}}', "'zip' appears twice"),
    ('{"name": "t", "fields": {"zip": {"box": [NaN, 0, 1, 1]}}}', "NaN is not a number JSON allows"),
    ({"name": "t", "fields": {"zip code": {"box": [0, 0, 1, 1]}}}, "field 'zip code': a field name is a letter"),
    ({"name": "t", "fields": {"zip": [0, 0, 1, 1]}}, "field 'zip': must be an object"),
    (with_field(colour="red"), "field 'zip': unknown key 'colour'"),
    (with_field(box="10,10,100,50"), "field 'zip': \"box\" must be [x, y, w, h]"),
    (with_field(box=[10, 10, 100]), "field 'zip': \"box\" must be [x, y, w, h]"),
    (with_field(box=[10, 10, 100, True]), "field 'zip': \"box\" must be [x, y, w, h]"),
    (with_field(box=[-1, 10, 100, 50]), "field 'zip': box [-1, 10, 100, 50]: x and y must be at least 0"),
    (with_field(box=[10, 10, 0, 50]), "the width and the height more than 0"),
    (with_field(box=[750, 10, 100, 50]), "reaches outside the 800x600 page"),
    (with_field(units="relative", box=[0.5, 0.5, 0.6, 0.1]), "reaches outside the page: relative boxes"),
    (with_field(units="relative", box=[10, 10, 100, 50]), 'pixels need "units": "px"'),
    ({"name": "t", "fields": {"zip": {"box": [10, 10, 100, 50], "units": "px"}}}, '"units": "px" needs'),
    (with_field(units="cm"), "field 'zip': \"units\" must be one of: px, relative"),
    (with_field(kind="letters"), "field 'zip': unknown kind 'letters'"),
    (with_field(kind=5), "field 'zip': 'kind' must be a string"),
    (with_field(checksum="crc32"), "field 'zip': unknown checksum 'crc32'"),
    (with_field(kind="amount", checksum="luhn"), "field 'zip': a checksum applies to the digits"),
    (with_field(pattern="regex:(12"), "field 'zip': pattern 'regex:(12' is not a valid regular expression"),
    (with_field(pattern="digit{5}"), "field 'zip': unknown pattern 'digit{5}'"),
    (with_field(pattern="date"), "field 'zip': pattern 'date' needs kind 'date'"),
    (with_field(date_order="mdy"), "field 'zip': \"date_order\" only applies to kind \"date\""),
    (with_field(kind="date", date_order="ydm"), "field 'zip': unknown date order 'ydm'"),
    ({"name": "t", "fields": {"path": {"box": [0, 0, 1, 1]}}}, "field 'path': its results column 'path'"),
    ({"name": "t", "fields": {"zip": {"box": [0, 0, 1, 1]}, "zip_valid": {"box": [0, 0, 1, 1]}}},
     "field 'zip_valid': its results column 'zip_valid' would collide"),
]


@pytest.mark.parametrize("document, problem", BAD_TEMPLATES)
def test_each_bad_template_is_one_line_naming_the_problem(tmp_path, document, problem):
    path = write(tmp_path, document)
    with pytest.raises(TemplateError) as caught:
        load_template(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message


def test_bad_files_are_template_errors(tmp_path):
    cases = {tmp_path / "missing.json": "no such template file", tmp_path: "not a file"}
    (tmp_path / "latin1.json").write_bytes(b'{"name": "caf\xe9"}')
    cases[tmp_path / "latin1.json"] = "not UTF-8"
    big = write(tmp_path, {"name": "t", "fields": {"a": {"box": [0, 0, 1, 1]}}}, "big.json")
    big.write_text(big.read_text() + " " * MAX_TEMPLATE_BYTES)  # valid JSON, just too large
    cases[big] = "larger than 1024 KiB"
    cases[write(tmp_path, "[" * 100_000, "deep.json")] = "nested too deeply"
    for path, problem in cases.items():
        with pytest.raises(TemplateError, match=problem):
            load_template(path)


def test_a_template_can_be_built_in_code():
    template = template_from_dict({"name": "t", "fields": {"a": {"box": [0, 0, 0.5, 0.5]}}})
    page = np.full((100, 200), PAPER, np.uint8)
    assert read_template(page, template, fixed_reader())["a"].box == [0, 0, 100, 50]
    with pytest.raises(TemplateError, match="^code: field 'a': unknown kind"):
        template_from_dict({"name": "t", "fields": {"a": {"box": [0, 0, 1, 1], "kind": "x"}}}, source="code")


# ---------------------------------------------------------------------------------------------------------------
# Boxes and alignment
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, size", [
    ({"box": [0.25, 0.5, 0.25, 0.25], "units": "relative"}, None),
    ({"box": [50, 50, 50, 25], "units": "px"}, [200, 100]),  # a reference page half the size: scaled x2
])
def test_relative_and_pixel_boxes_land_on_the_same_pixels(field, size):
    page = np.full((200, 400), PAPER, np.uint8)
    page[100:150, 100:200] = INK  # exactly the box [100, 100, 100, 50]
    document = {"name": "t", "fields": {"a": field}, **({"size": size} if size else {})}
    crops = []
    result = read_template(page, template_from_dict(document), fixed_reader(crops=crops))["a"]
    assert result.box == [100, 100, 100, 50]
    assert crops[0].dtype == np.uint8 and crops[0].shape == (50, 100) and crops[0].max() == INK


def test_pixel_boxes_on_a_page_of_the_reference_size_are_not_scaled():
    template = template_from_dict({"name": "t", "size": [200, 100], "fields": {"a": {"box": [50, 50, 50, 25],
                                                                                      "units": "px"}}})
    assert read_template(np.full((100, 200), PAPER, np.uint8), template, fixed_reader())["a"].box == [50, 50, 50, 25]


FRAME = (40, 40, 760, 560)  # the printed frame's corners on the upright 800 x 600 form, 3 px thick
FRAME_BOX = (39, 39, 723, 523)  # the frame's outer edge as [x, y, w, h]: what align "page" finds
MARKER = (480, 330, 200, 100)  # a field's outline, [x, y, w, h] on the upright form, away from its centre


def form(width: int = 800, height: int = 600) -> np.ndarray:
    """An upright form: a frame, two rules, a field outlined by MARKER, a handwritten number."""
    page = np.full((height, width), PAPER, np.uint8)
    cv2.rectangle(page, FRAME[:2], FRAME[2:], INK, 3)
    for y in (120, 480):
        cv2.line(page, (80, y), (720, y), INK, 2)
    x, y, w, h = MARKER
    cv2.rectangle(page, (x, y), (x + w - 1, y + h - 1), INK, 2)
    paste(page, number("4539578763621486", seed=2), 100, 170)
    return page


def moved(page: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The page through a (2, 3) affine map onto a canvas of `size` (W, H): a scan that shifts, scales, turns."""
    return cv2.warpAffine(page, matrix, size, flags=cv2.INTER_LINEAR, borderValue=PAPER)


def corners(box) -> np.ndarray:
    x, y, w, h = box
    return np.array([[x, y, 1], [x + w, y, 1], [x, y + h, 1], [x + w, y + h, 1]], np.float64)


def mapped_corners(page: np.ndarray, template) -> np.ndarray:
    """Where the template's field 'm' lands on the input page, as its four corners in input pixels."""
    alignment = align_page(page.astype(np.float32) / 255, template.align)
    return corners(alignment.field_box(template.fields["m"], template.size)) @ alignment.to_input.T


def marker_template(align: str, size, box) -> object:
    return template_from_dict({"name": "t", "size": list(size), "align": align,
                               "fields": {"m": {"box": list(box), "units": "px"}}})


@pytest.mark.parametrize("angle", [4.0, -6.5, 1.5])
def test_deskew_finds_the_rotation_and_maps_the_box_onto_the_turned_page(angle):
    turn = cv2.getRotationMatrix2D((400, 300), angle, 1.0)  # counter-clockwise on screen
    page = moved(form(), turn, (800, 600))
    truth = corners(MARKER) @ turn.T
    template = marker_template("deskew", (800, 600), MARKER)
    assert abs(align_page(page.astype(np.float32) / 255, "deskew").angle - angle) < 0.2
    assert np.abs(mapped_corners(page, template) - truth).max() < 3
    unaligned = marker_template("none", (800, 600), MARKER)
    assert np.abs(mapped_corners(page, unaligned) - truth).max() > 6  # what deskewing saved
    crops = []
    result = read_template(page, template, fixed_reader(crops=crops))["m"]
    ink_rows, ink_cols = np.nonzero(crops[0] < 128)  # the marker's outline runs along the crop's edges
    assert crops[0].shape == (100, 200)
    assert ink_cols.min() <= 3 and ink_cols.max() >= 196 and ink_rows.min() <= 3 and ink_rows.max() >= 96
    x0, y0 = truth[:, :2].min(axis=0)
    x1, y1 = truth[:, :2].max(axis=0)
    assert np.abs(np.array(result.box) - [x0, y0, x1 - x0, y1 - y0]).max() <= 3  # the box in input pixels


def test_an_upright_page_is_not_turned():
    assert align_page(form().astype(np.float32) / 255, "deskew").angle == pytest.approx(0, abs=0.05)


@pytest.mark.parametrize("angle", [0.0, 2.5])
def test_page_alignment_maps_the_template_onto_the_printed_frame(angle):
    # The scan: the form at 80 % of its size, 50 px right and 30 px down on a larger canvas, maybe turned a little.
    scan = np.array([[0.8, 0, 50], [0, 0.8, 30]])
    turn = np.vstack([cv2.getRotationMatrix2D((450, 350), angle, 1.0), [0, 0, 1]])
    matrix = (turn @ np.vstack([scan, [0, 0, 1]]))[:2]
    page = moved(form(), matrix, (900, 700))
    # The template's page is the frame: its size and its boxes are measured from the frame's outer corner.
    fx, fy, fw, fh = FRAME_BOX
    template = marker_template("page", (fw, fh), (MARKER[0] - fx, MARKER[1] - fy, MARKER[2], MARKER[3]))
    truth = corners(MARKER) @ matrix.T
    assert np.abs(mapped_corners(page, template) - truth).max() < 3
    whole_page = marker_template("none", (800, 600), MARKER)
    assert np.abs(mapped_corners(page, whole_page) - truth).max() > 20


def test_without_a_frame_the_page_is_the_outermost_ink():
    page = np.full((400, 500), PAPER, np.uint8)
    cv2.line(page, (100, 80), (160, 80), INK, 3)  # content from about (100, 80) ...
    cv2.line(page, (340, 320), (400, 320), INK, 3)  # ... to about (400, 320)
    paste(page, number("42", seed=1), 200, 150)
    rows, cols = np.nonzero(page < 128)
    content = [cols.min(), rows.min(), cols.max() + 1 - cols.min(), rows.max() + 1 - rows.min()]
    page[:, 0:3] = INK  # a scan's dark edge along the border is not content
    alignment = align_page(page.astype(np.float32) / 255, "page")
    assert np.abs(np.array(alignment.frame) - content).max() <= 2
    template = marker_template("page", (300, 240), (100, 70, 100, 50))
    expected = [content[0] + 100 * content[2] / 300, content[1] + 70 * content[3] / 240]
    assert np.abs(mapped_corners(page, template)[0] - expected).max() < 3


def test_a_page_without_ink_keeps_the_whole_page():
    page = np.full((300, 400), PAPER, np.uint8)
    alignment = align_page(page.astype(np.float32) / 255, "page")
    assert (alignment.angle, alignment.frame) == (0.0, (0.0, 0.0, 400.0, 300.0))


# ---------------------------------------------------------------------------------------------------------------
# Judging each field
# ---------------------------------------------------------------------------------------------------------------


def one_field(**field) -> object:
    return template_from_dict({"name": "t", "fields": {"f": {"box": [0, 0, 1, 1], **field}}})


def judged(template, reading: ReadResult):
    return read_template(np.full((40, 120), PAPER, np.uint8), template, lambda crop: reading)["f"]


def test_a_failing_reading_stays_the_text_and_the_passing_alternatives_come_first():
    reading = ReadResult(text="79927398710", confidence=0.6, digits=[], raw="79927398710", alternatives=[
        Alternative(raw="79927398711", text="79927398711", confidence=0.3),
        Alternative(raw="79927398713", text="79927398713", confidence=0.2),
    ])
    result = judged(one_field(checksum="luhn"), reading)
    assert (result.text, result.valid, result.needs_review, result.value) == ("79927398710", False, True, None)
    assert [(a["text"], a["valid"]) for a in result.alternatives] == [("79927398713", True), ("79927398711", False)]
    assert "luhn checksum" in result.reason and "'79927398713' passes" in result.reason


def test_an_amount_read_from_its_alternative_is_valid_and_to_review():
    reading = ReadResult(text="83562000", confidence=0.8, digits=[], raw="8.35,620.00", alternatives=[
        Alternative(raw="835,620.00", text="83562000", confidence=0.1)])
    result = judged(one_field(kind="amount"), reading)
    assert (result.raw, result.value, result.valid, result.needs_review) == ("8.35,620.00", "835620.00", True, True)
    assert "the alternative '835,620.00'" in result.reason


def test_review_follows_the_confidence_and_the_closest_alternative():
    sure = REVIEW_CONFIDENCE + (1 - REVIEW_CONFIDENCE) / 2

    def result(confidence: float, alternative: float | None = None):
        alternatives = [] if alternative is None else [Alternative(raw="90211", text="90211", confidence=alternative)]
        return judged(one_field(pattern="digits{5}"), ReadResult(text="90210", confidence=confidence, digits=[],
                                                                  raw="90210", alternatives=alternatives))

    clear = result(sure)
    assert (clear.valid, clear.needs_review, clear.reason, clear.value) == (True, False, None, "90210")
    unsure = result(REVIEW_CONFIDENCE * 0.95)
    assert unsure.valid and unsure.needs_review and "under" in unsure.reason
    close = result(sure, REVIEW_MARGIN * sure * 1.01)
    assert close.valid and close.needs_review and "close" in close.reason
    assert not result(sure, REVIEW_MARGIN * sure * 0.99).needs_review


def test_a_digits_field_whose_separators_make_no_shape_needs_review():
    """A "/" of a date read as a 1 leaves "26104/1967": sure of itself and valid as digits, but to be checked."""
    def result(raw: str, **field):
        return judged(one_field(**field), ReadResult(text=raw.replace("/", ""), confidence=0.99, digits=[], raw=raw))

    misread = result("26104/1967")
    assert misread.valid and misread.needs_review and "separator may be misread" in misread.reason
    assert not result("26/04/1967").needs_review
    assert not result("26104/1967", pattern=r"regex:\d+/\d+").needs_review  # the user's pattern decides


def test_a_box_turned_off_the_page_is_not_read_and_needs_review():
    page = moved(form(), cv2.getRotationMatrix2D((400, 300), 8.0, 1.0), (800, 600))
    corner = marker_template("deskew", (800, 600), (0, 0, 10, 10))  # the upright corner lies off the turned scan
    crops = []
    result = read_template(page, corner, fixed_reader(crops=crops))["m"]
    assert crops == [] and (result.text, result.valid, result.needs_review) == ("", False, True)
    assert result.reason == "the field's box lies outside the page"


# ---------------------------------------------------------------------------------------------------------------
# End to end: the Recognizer, the command line, batch jobs
# ---------------------------------------------------------------------------------------------------------------

NUMBERS = {"zip": "90210", "card": "79927398713", "bad_card": "79927398710"}  # the last fails its Luhn check


@pytest.fixture(scope="module")
def card_form(tmp_path_factory) -> tuple[Path, Path]:
    """A page with three handwritten fields and its template (a ZIP of 5 digits, two card numbers with Luhn)."""
    folder = tmp_path_factory.mktemp("form")
    page = np.full((360, 720), PAPER, np.uint8)
    cv2.rectangle(page, (10, 10), (709, 349), INK, 2)
    fields = {}
    for (name, text), y in zip(NUMBERS.items(), (40, 140, 240)):
        x, y, w, h = paste(page, number(text, seed=len(name)), 60, y)
        fields[name] = {"box": [x - 10, y - 5, w + 20, h + 10], "units": "px",
                        **({"pattern": "digits{5}"} if name == "zip" else {"checksum": "luhn"})}
    Image.fromarray(page).save(folder / "form.png")
    template = write(folder, {"name": "cards", "size": [720, 360], "fields": fields})
    return folder / "form.png", template


def test_comb_fields_go_to_the_comb_reader():
    """read_comb, when given, reads the comb fields (their cells part the digits: Recognizer.read_template reads them
    with both readers); every other kind stays with read_region."""
    template = template_from_dict({"name": "t", "fields": {
        "account": {"box": [0, 0, 0.5, 0.5], "kind": "comb"}, "zip": {"box": [0.5, 0.5, 0.5, 0.5]}}})
    page = np.full((100, 200), PAPER, np.uint8)
    results = read_template(page, template, fixed_reader("11111"), read_comb=fixed_reader("22222"))
    assert {name: r.text for name, r in results.items()} == {"account": "22222", "zip": "11111"}
    assert read_template(page, template, fixed_reader("11111"))["account"].text == "11111"


def test_the_recognizer_reads_a_form(recognizer, card_form):
    page, template = card_form
    results = recognizer.read_template(page, load_template(template))
    assert {name: r.text for name, r in results.items()} == NUMBERS
    assert results["zip"].valid and results["zip"].value == "90210"
    assert results["card"].valid and not results["card"].needs_review
    bad = results["bad_card"]
    assert not bad.valid and bad.needs_review and bad.value is None and "luhn checksum" in bad.reason


def test_a_page_time_limit_bounds_the_whole_template(recognizer, card_form):
    page, template = card_form
    with pytest.raises(ImageTooComplexError, match="time limit"):
        recognizer.read_template(page, load_template(template), page_time_limit_s=1e-9)
    assert len(recognizer.read_template(page, load_template(template), page_time_limit_s=30)) == 3


def test_printed_boxes_inside_a_fields_box_are_not_read(recognizer):
    """A template's box drawn a little wider than the printed frame or comb row around the writing: the frame fills
    most of the crop, and its walls must not be read as 1s."""
    page, _, _ = small_form()
    template = template_from_dict({"name": "small form", "size": [900, 500], "fields": {
        "account": {"box": [150, 100, 310, 76], "units": "px", "kind": "comb", "pattern": "digits{6}"},
        "code": {"box": [195, 335, 230, 80], "units": "px", "pattern": "digits{4}", "checksum": "luhn"}}})
    results = recognizer.read_template(page, template)
    assert {name: r.text for name, r in results.items()} == {"account": "407815", "code": "8532"}
    assert results["code"].valid
    assert results["account"].raw == "407815"  # a comb's cells are not group gaps


def test_a_thick_comb_is_measured_against_the_page_it_was_cut_from(recognizer):
    """Walls 6 px thick are rules on a page 1400 px tall (the page reader finds them), though they would be bars
    in a crop 340 px wide: the template's crop is judged by its page's size, so the walls are painted out, not
    read as 1s."""
    page = blank(1000, 1400)
    comb(page, 200, 300, 5, width=64, height=72, thickness=6)
    comb_digits(page, "30625", 200, 300, width=64, height=72)
    template = template_from_dict({"name": "thick comb", "size": [1000, 1400], "fields": {
        "code": {"box": [190, 290, 340, 92], "units": "px", "kind": "comb", "pattern": "digits{5}"}}})
    assert recognizer.read_template(page, template)["code"].text == "30625"


def test_small_print_in_a_fields_box_is_not_read(recognizer):
    """A box with a printed caption above the writing and a hint under it, the template's box drawn around the
    frame: only the handwriting is read."""
    page = blank(1000, 1400)
    cv2.rectangle(page, (200, 300), (560, 400), 40, 2)
    label(page, "Box 12", 210, 322, scale=0.6)
    pen_digits(page, "48213", 230, 388, height=48)
    label(page, "see line 7", 205, 428, scale=0.6)  # read with the rest, the three lines came out as "0"
    template = template_from_dict({"name": "captioned box", "size": [1000, 1400], "fields": {
        "code": {"box": [190, 290, 380, 150], "units": "px", "pattern": "digits{5}"}}})
    assert recognizer.read_template(page, template)["code"].text == "48213"


def test_one_line_of_writing_is_left_as_it_is():
    page = blank(400, 120)
    pen_digits(page, "905", 20, 90, height=50)
    page[60:62, 300:306] = 40  # a dot level with the digits: the same band
    np.testing.assert_array_equal(without_small_print(page), page)
    label(page, "Ref 3", 20, 112, scale=0.4)  # small print under the writing: painted out
    cleaned = without_small_print(page)
    assert (cleaned[95:] > 200).all() and np.array_equal(cleaned[:90], page[:90])


FIELD_KEYS = {"text", "raw", "value", "confidence", "box", "valid", "needs_review", "alternatives", "reason"}


def test_cli_reads_a_form_as_json_and_as_lines(card_form):
    page, template = card_form
    result = run("read", "--json", "--template", template, page)
    assert result.exit_code == 0, result.output
    (row,) = json_lines(result.stdout)
    assert set(row) == {"path", "fields"} and list(row["fields"]) == list(NUMBERS)
    assert all(set(field) == FIELD_KEYS for field in row["fields"].values())
    assert row["fields"]["card"]["value"] == "79927398713" and row["fields"]["bad_card"]["valid"] is False
    lines = run("read", "--template", template, page).stdout.splitlines()
    assert len(lines) == 3 and lines[0] == f"{page}: zip: 90210 (confidence {row['fields']['zip']['confidence']:.3f})"
    assert lines[2].startswith(f"{page}: bad_card: 79927398710 ? (confidence ") and "luhn" in lines[2]


def test_batch_job_with_a_template_writes_a_column_group_per_field(card_form, tmp_path):
    page, template = card_form
    (tmp_path / "torn.png").write_bytes(page.read_bytes()[:200])
    out = tmp_path / "fields.csv"
    result = run("read", page, tmp_path / "torn.png", "--template", template, "--out", out, "--workers", 0,
                 "--no-progress")
    assert result.exit_code == 1  # the torn file; the form was read
    rows = read_rows(out)
    assert list(rows[0]) == ["path"] + [f"{name}{suffix}" for name in NUMBERS for suffix in
                                        ("", "_value", "_confidence", "_valid", "_needs_review")] + ["error"]
    form_row, torn_row = rows
    assert [form_row[name] for name in NUMBERS] == list(NUMBERS.values())
    assert (form_row["zip_value"], form_row["zip_valid"], form_row["zip_needs_review"]) == ("90210", "true", "false")
    assert (form_row["bad_card_value"], form_row["bad_card_valid"], form_row["bad_card_needs_review"]) == (
        "", "false", "true")
    assert 0 < float(form_row["card_confidence"]) <= 1 and form_row["error"] == ""
    assert torn_row["zip"] == "" and torn_row["error"]


@pytest.mark.parametrize("document, problem", [BAD_TEMPLATES[0], BAD_TEMPLATES[12], BAD_TEMPLATES[27]])
def test_cli_refuses_a_bad_template_before_reading_anything(tmp_path, document, problem):
    template = write(tmp_path, document)
    missing = tmp_path / "missing.png"  # had any file been read, its error would be reported too
    result = run("read", "--template", template, missing)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"digitscan: error: {template}: ")
    assert result.stderr.count("\n") == 1 and problem in result.stderr and "missing.png" not in result.stderr
    out = tmp_path / "out.csv"
    assert run("read", missing, "--template", template, "--out", out).exit_code == 2 and not out.exists()
    gone = run("read", "--template", tmp_path / "nowhere.json", missing)
    assert gone.exit_code == 2 and "no such template file" in gone.stderr


def test_cli_template_and_format_options_that_clash(card_form):
    page, template = card_form
    assert run("read", "--template", template, "--format", "amount", page).exit_code == 2
    assert run("read", "--template", template, "--debug-image", "x.png", page).exit_code == 2
    assert run("read", "--date-order", "mdy", page).exit_code == 2  # without --format date
    assert run("read", "--format", "amount", "--date-order", "mdy", page).exit_code == 2


# ---------------------------------------------------------------------------------------------------------------
# read --format
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def numbers(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("numbers")
    for text in ("120324", "125000", "90210"):
        Image.fromarray(number(text, seed=4)).save(folder / f"{text}.png")
    return folder


def test_format_date_gives_a_value_or_an_error_and_reads_the_other_files(numbers):
    result = run("read", "--json", "--format", "date", numbers / "120324.png", numbers / "90210.png")
    assert result.exit_code == 1  # 90210 is no date
    good, bad = json_lines(result.stdout)
    assert (good["text"], good["value"]) == ("120324", "2024-03-12") and "error" not in good
    assert bad["text"] == "90210" and bad["value"] is None and "6 or 8 digits" in bad["error"]
    assert result.stderr.count("\n") == 1 and "90210.png" in result.stderr
    us = run("read", "--json", "--format", "date", "--date-order", "ymd", numbers / "120324.png")
    assert json_lines(us.stdout)[0]["value"] == "2012-03-24"


def test_format_amount_parses_the_separators_as_written(numbers, monkeypatch):
    from digitscan.recognize import Recognizer

    plain = run("read", "--json", "--format", "amount", numbers / "125000.png")
    assert plain.exit_code == 0 and json_lines(plain.stdout)[0]["value"] == "125000"
    read = Recognizer.read

    def with_separators(self, image, **options):  # what the retrained line reader gives: the marks as written
        result = read(self, image, **options)
        result.raw = {"125000": "1.250,00", "90210": "9.02.10"}.get(result.text, result.raw)
        result.alternatives = []  # none to take a value from (FieldSpec.parse): 9.02.10 stays an error
        return result

    monkeypatch.setattr(Recognizer, "read", with_separators)
    result = run("read", "--format", "amount", numbers / "125000.png", numbers / "90210.png")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].startswith(f"{numbers / '125000.png'}: 1.250,00 = 1250.00 (confidence")
    assert "inconsistent digit grouping" in result.stderr and "90210.png" in result.stderr


def test_batch_format_adds_a_value_column(numbers, tmp_path):
    out = tmp_path / "values.csv"
    result = run("read", numbers / "120324.png", numbers / "90210.png", "--format", "date", "--out", out,
                 "--workers", 0, "--no-progress")
    assert result.exit_code == 1
    rows = read_rows(out)
    assert list(rows[0]) == ["path", "text", "confidence", "value", "error"]
    assert [(r["text"], r["value"]) for r in rows] == [("120324", "2024-03-12"), ("90210", "")]
    assert rows[0]["error"] == "" and "6 or 8 digits" in rows[1]["error"]
