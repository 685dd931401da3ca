"""Reading form pages (`read --layout page`): form lines removed, fields found and grouped, printed text left out.

Pages are drawn here with OpenCV (rules, boxes, Hershey-font labels) and pen-stroke digits
(digitscan.synthetic.strokes): no MNIST pixels, a few milliseconds each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from digitscan.constants import MAX_PAGE_FIELDS
from digitscan.errors import ImageTooComplexError
from digitscan.reading.form_lines import find_form_lines, remove_form_lines
from digitscan.reading.page import PageField, find_fields, read_page
from digitscan.recognize import PageResult, Recognizer
from digitscan.synthetic.forms import PRINTED_FONT_FAMILIES, make_page, printed_fonts
from digitscan.synthetic.strokes import stroke_digit

from helpers import EXAMPLES, json_lines, run
from helpers.forms import PAPER, RULE, blank, comb, comb_digits, iou, label, overlaps, pen_digits, small_form, union


def never_called(crop):
    raise AssertionError("nothing should have been read")


def test_comb_lines_are_removed_and_the_digits_kept():
    page = blank(600, 200)
    comb(page, 100, 60, 6)
    digits = comb_digits(page, "401825", 100, 60, drops={1: 14})  # the 0 written across the bottom rule
    cleaned = remove_form_lines(page)
    assert cleaned.shape == page.shape and cleaned.dtype == np.uint8
    ink = cleaned < 128
    written = page < 128
    for x0, y0, x1, y1 in digits:  # every digit keeps nearly all of its ink
        assert ink[y0:y1, x0:x1].sum() >= 0.9 * written[y0:y1, x0:x1].sum()
    near_digits = np.zeros(page.shape, bool)
    for x0, y0, x1, y1 in digits:
        near_digits[y0 - 3: y1 + 3, x0 - 3: x1 + 3] = True
    assert not (ink & ~near_digits).any()  # rules and walls are gone everywhere else
    x0, _, x1, _ = digits[1]
    assert ink[115:118, x0:x1].any()  # the stroke that crossed the bottom rule (rows 115-117) still crosses it


def test_a_comb_row_is_one_field_read_as_one_number(recognizer):
    page = blank(600, 200)
    comb(page, 100, 60, 8)  # two cells left empty
    digits = comb_digits(page, "407815", 100, 60, drops={3: 12})
    candidates = find_fields(page)
    assert [(c.kind, c.printed) for c in candidates] == [("comb", False)]
    assert iou(candidates[0].box, union(digits)) >= 0.8
    fields = read_page(page, recognizer.read)
    assert [(f.text, f.kind) for f in fields] == [("407815", "comb")]


def test_a_small_digit_alone_in_its_cell_belongs_to_the_comb_row():
    """A digit half as tall as the others still counts, even beside digits written up and down the row (a line of
    digits wandering over the cells spans more than any one of them): a speck is what is small next to the
    row's characters, not next to its spread."""
    page = blank(600, 200)
    comb(page, 100, 60, 6)
    digits = pen_digits(page, "4", 114, 108, seed=10)
    digits += pen_digits(page, "8", 168, 90, seed=11)  # high in its cell, close to the 4: one line of 58 px
    digits += pen_digits(page, "1", 202, 112, seed=12)
    digits += pen_digits(page, "5", 258, 92, height=20, seed=13)  # small, under 0.4 of that line's spread
    candidates = find_fields(page)
    assert [(c.kind, c.printed) for c in candidates] == [("comb", False)]
    assert iou(candidates[0].box, union(digits)) >= 0.8


def test_a_comb_row_read_short_of_its_cells_needs_review():
    """read_comb learns how many cells hold writing; a reading with fewer digits is flagged even when sure."""
    page = blank(600, 200)
    comb(page, 100, 60, 6)
    comb_digits(page, "4815", 100, 60)
    asked = []

    def read_comb(crop, cells):
        asked.append(cells)
        return SimpleNamespace(text="481" if len(asked) == 1 else "4815", raw="", confidence=0.999, alternatives=[])

    short, = read_page(page, never_called, read_comb=read_comb)
    assert asked == [4]
    assert short.needs_review and short.reason == "3 digits read in 4 comb cells with writing"
    whole, = read_page(page, never_called, read_comb=read_comb)
    assert not whole.needs_review and whole.reason is None


def test_digits_touching_across_a_comb_wall_stay_in_their_cells():
    """A stroke from one cell over the wall into the next (a bar reaching the digit beside it) makes the two
    digits one piece of ink; cut at the wall, each part stays in its own cell: four cells hold writing, and the
    crop the reader gets shows four digits apart, not three."""
    page = blank(600, 200)
    comb(page, 100, 60, 6)
    boxes = comb_digits(page, "4815", 100, 60)
    cv2.line(page, (boxes[1][2] - 8, boxes[2][1] + 6), (boxes[2][0] + 6, boxes[2][1] + 6), 20, 3)  # 8 to the 1
    asked = []

    def read_comb(crop, cells):
        asked.append((cells, crop))
        return SimpleNamespace(text="4815", raw="", confidence=0.999, alternatives=[])

    read_page(page, never_called, read_comb=read_comb)
    (cells, crop), = asked
    assert cells == 4
    inked = (crop < 128).any(axis=0).astype(np.int8)
    assert int((np.diff(inked) == 1).sum()) == 4  # four runs of inked columns: the digits set apart


def test_a_field_whose_separators_make_no_shape_needs_review():
    """Recognizer.read_page hands read_page fields.formats.shape_problem: a date with a "/" read as a 1 is flagged
    even when the reader is sure of it."""
    from digitscan.fields.formats import shape_problem

    page, _, _ = small_form()

    def read(raw: str):
        return lambda crop, *cells: SimpleNamespace(text=raw.replace("/", ""), raw=raw, confidence=0.999,
                                                     alternatives=[])

    for raw, flagged in (("26104/1967", True), ("26/04/1967", False)):
        fields = read_page(page, read(raw), read_comb=read(raw), shape_problem=shape_problem)
        assert len(fields) == 3 and all(f.needs_review == flagged for f in fields)
        assert all(("separator may be misread" in f.reason) if flagged else f.reason is None for f in fields)
    assert not any(f.needs_review for f in read_page(page, read("26104/1967"), read_comb=read("26104/1967")))


def test_the_recognizer_reads_every_field_with_both_readers_and_their_review_threshold(recognizer, monkeypatch):
    """Both readers' averaged probabilities are less sure than one reader's: a reading at 0.85 needs no review
    when both read it (REVIEW_CONFIDENCE_BOTH), and does when the caller asks for the line reader alone."""
    from digitscan.constants import REVIEW_CONFIDENCE, REVIEW_CONFIDENCE_BOTH

    assert REVIEW_CONFIDENCE_BOTH < 0.85 < REVIEW_CONFIDENCE
    page, _, _ = small_form()
    asked = []

    def read(crop, *, method=None, at_least=None, **options):
        asked.append((method, at_least))
        text = "4815" if at_least is None else "7" * at_least  # as many digits as the comb row's inked cells
        return SimpleNamespace(text=text, raw=text, confidence=0.85, alternatives=[])

    monkeypatch.setattr(recognizer, "read", read)
    both = recognizer.read_page(page).fields
    assert {method for method, _ in asked} == {"both"} and any(cells for _, cells in asked)  # the comb row's
    assert len(both) == 3 and not any(f.needs_review for f in both)
    asked.clear()
    alone = recognizer.read_page(page, method="sequence").fields
    assert {method for method, _ in asked} == {"sequence"}
    assert all(f.needs_review and "under 0.9" in f.reason for f in alone)


def test_an_underline_is_removed_and_its_number_found():
    page = blank(500, 160)
    digits = pen_digits(page, "2738", 100, 100, 44, seed=3)
    cv2.line(page, (80, 101), (380, 101), RULE, 2)  # the digits sit on it
    cleaned = remove_form_lines(page)
    assert (cleaned[99:104, 330:380] > 200).all()  # the rule beyond the digits is gone
    for x0, y0, x1, y1 in digits:
        assert (cleaned[y0:y1 - 3, x0:x1] < 128).sum() >= 0.95 * (page[y0:y1 - 3, x0:x1] < 128).sum()
    candidates = find_fields(page)
    assert [(c.kind, c.printed) for c in candidates] == [("underline", False)]
    assert iou(candidates[0].box, union(digits)) >= 0.8


def test_a_form_gives_its_three_fields_and_none_of_its_labels(recognizer):
    page, truth, labels = small_form()
    fields = read_page(page, recognizer.read)
    assert sorted(f.text for f in fields) == sorted(truth)
    assert [f.kind for f in fields] == ["comb", "underline", "box"]  # top to bottom
    for field in fields:
        assert iou(field.box, truth[field.text]) >= 0.8
        assert not any(overlaps(field.box, box) for box in labels)
        assert field.raw == field.text and 0 <= field.confidence <= 1
        assert field.needs_review == (field.confidence < 0.9)
    printed = [c for c in find_fields(page) if c.printed]
    assert all(any(overlaps(c.box, box) for box in labels) for c in printed)
    assert any(iou(c.box, labels[0]) >= 0.7 for c in printed)  # "Form 1040", as tall as the handwriting


def test_boxes_are_in_the_pages_own_pixels_when_it_is_turned(recognizer):
    page, truth, _ = small_form()
    matrix = cv2.getRotationMatrix2D((page.shape[1] / 2, page.shape[0] / 2), 1.5, 1.0)
    turned = cv2.warpAffine(page, matrix, (page.shape[1], page.shape[0]), borderValue=PAPER)
    assert abs(find_form_lines(turned).angle + 1.5) <= 0.05 + 1e-9  # the search steps 0.01 degrees
    fields = read_page(turned, recognizer.read)
    assert sorted(f.text for f in fields) == sorted(truth)
    for field in fields:
        x0, y0, x1, y1 = truth[field.text]
        corners = np.array([[x0, y0, 1], [x1, y0, 1], [x0, y1, 1], [x1, y1, 1]]) @ matrix.T
        assert iou(field.box, (*corners.min(axis=0), *corners.max(axis=0))) >= 0.7


def test_read_layout_page_json_and_lines(tmp_path):
    page, truth, _ = small_form()
    path = tmp_path / "form.png"
    cv2.imwrite(str(path), page)
    result = run("read", "--layout", "page", "--json", path)
    assert result.exit_code == 0, result.output
    [record] = json_lines(result.stdout)
    assert set(record) == {"path", "fields"} and record["path"] == str(path)
    assert sorted(f["text"] for f in record["fields"]) == sorted(truth)
    for field in record["fields"]:
        assert {"text", "raw", "box", "confidence", "needs_review"} <= set(field)
        assert len(field["box"]) == 4
    result = run("read", "--layout", "page", "--debug-image", tmp_path / "boxes.png", path)
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{path}: 3 fields" and len(lines) == 4
    assert all(line.split()[0] in truth for line in lines[1:])
    drawn = cv2.imread(str(tmp_path / "boxes.png"))
    assert drawn.shape[:2] == page.shape and (drawn[:, :, 1] > drawn[:, :, 2] + 60).any()  # green boxes


EXAMPLE_FORM_FIELDS = ["13726459885", "3,171.82", "2368", "4118", "180", "7641609", "05/10/2005", "691.94",
                       "77798863"]  # examples/forms/form_9_fields.png (examples/generate.py), top to bottom


def test_the_example_form_reads_every_field_and_no_label():
    result = run("read", "--layout", "page", "--json", EXAMPLES / "forms" / "form_9_fields.png")
    assert result.exit_code == 0, result.output
    [record] = json_lines(result.stdout)
    assert [field["raw"] for field in record["fields"]] == EXAMPLE_FORM_FIELDS
    assert {field["kind"] for field in record["fields"]} == {"box", "underline", "comb", "free"}


def test_a_field_to_review_says_why_on_the_command_line(tmp_path, monkeypatch):
    page, _, _ = small_form()
    cv2.imwrite(str(tmp_path / "form.png"), page)
    unsure = PageField("9316", "9316", [200, 230, 125, 42], 0.5, True, "underline", "confidence 0.500 is under 0.9")
    monkeypatch.setattr(Recognizer, "read_page", lambda self, image, **options: PageResult([unsure]))
    result = run("read", "--layout", "page", tmp_path / "form.png")
    assert result.stdout.splitlines()[1] == ("  9316 (confidence 0.500) underline at [200, 230, 125, 42]; "
                                             "needs review: confidence 0.500 is under 0.9")


@pytest.mark.parametrize("how", ["page", "template"])
def test_the_command_line_reads_comb_rows_with_both_readers(tmp_path, monkeypatch, how):
    """Without --method, `read --layout page` and `read --template` read comb rows with both readers, as
    Recognizer.read_page and read_template do (and as the benchmarks measure); --method still chooses."""
    page, _, _ = small_form()
    cv2.imwrite(str(tmp_path / "form.png"), page)
    (tmp_path / "form.json").write_text(json.dumps({"name": "small form", "size": [900, 500], "fields": {
        "account": {"box": [150, 100, 310, 76], "units": "px", "kind": "comb"},
        "code": {"box": [195, 335, 230, 80], "units": "px"}}}))
    methods = []
    read = Recognizer.read
    monkeypatch.setattr(Recognizer, "read", lambda self, image, *, method=None, **options: (
        methods.append(method), read(self, image, method=method, **options))[1])
    options = ["--layout", "page"] if how == "page" else ["--template", tmp_path / "form.json"]
    assert run("read", *options, tmp_path / "form.png").exit_code == 0
    assert "both" in methods and set(methods) <= {"both", None}
    methods.clear()
    assert run("read", *options, "--method", "sequence", tmp_path / "form.png").exit_code == 0
    assert set(methods) == {"sequence"}


def test_layout_page_is_not_a_batch_job(tmp_path):
    page, _, _ = small_form()
    cv2.imwrite(str(tmp_path / "form.png"), page)
    result = run("read", "--layout", "page", "--out", tmp_path / "out.csv", tmp_path / "form.png")
    assert result.exit_code == 2 and "--layout page" in result.output


@pytest.mark.parametrize("page", [
    blank(),
    np.full((400, 300), 128, np.uint8),  # uniform grey
    np.clip(np.random.default_rng(0).normal(PAPER, 4, (600, 800)), 0, 255).astype(np.uint8),  # paper grain
    np.zeros((300, 300), np.uint8),  # all black
], ids=["white", "grey", "grain", "black"])
def test_a_page_without_writing_has_no_fields(page):
    assert find_fields(page) == []
    assert read_page(page, never_called) == []


def test_a_form_without_writing_has_no_fields():
    page = blank()
    label(page, "Box 12", 40, 150)
    comb(page, 160, 110, 6)
    label(page, "Date 2024", 40, 270)
    cv2.line(page, (190, 274), (420, 274), RULE, 2)
    cv2.rectangle(page, (200, 340), (420, 410), RULE, 2)
    assert read_page(page, never_called) == []
    assert (remove_form_lines(page)[100:420, 150:430] > 200).all()


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (6000, 4000)], ids=["1px", "3x5", "24MP"])
def test_tiny_and_huge_blank_pages(shape):
    start = time.perf_counter()
    assert read_page(np.full(shape, PAPER, np.uint8), never_called) == []
    assert time.perf_counter() - start < 10


def test_noise_and_graph_paper_stay_bounded():
    noise = np.random.default_rng(1).integers(0, 256, (1200, 1200), dtype=np.uint8)
    graph = blank(1200, 1200)
    for k in range(0, 1200, 20):
        cv2.line(graph, (k, 0), (k, 1199), RULE, 1)
        cv2.line(graph, (0, k), (1199, k), RULE, 1)
    reads = []

    def count(crop):
        reads.append(crop.shape)
        return type("Read", (), {"text": "", "confidence": 0.0})()

    for page in (noise, graph):
        start = time.perf_counter()
        assert read_page(page, count) == []  # the reader found no digits in whatever it was given
        assert time.perf_counter() - start < 20
    assert len(reads) <= 2 * MAX_PAGE_FIELDS  # at most MAX_PAGE_FIELDS crops a page


def test_past_the_time_limit_reading_stops():
    page, _, _ = small_form()
    with pytest.raises(ImageTooComplexError):
        read_page(page, never_called, time_limit_s=1e-6)


def test_the_label_fonts_are_installed_by_the_setup_script():
    script = (Path(__file__).resolve().parents[1] / "scripts" / "system-deps.sh").read_text()
    for split, (package, _) in PRINTED_FONT_FAMILIES.items():
        assert package in script.split(), split
        assert printed_fonts(split)


def stroke_source() -> tuple[np.ndarray, np.ndarray]:
    """MNIST-style (images, labels) of pen-stroke digits, a few of each."""
    digits = [(d, seed) for d in range(10) for seed in range(3)]
    images = np.stack([cv2.resize(stroke_digit(d, seed=seed, size=64, thickness=0.12), (28, 28),
                                  interpolation=cv2.INTER_AREA) for d, seed in digits])
    return images, np.array([d for d, _ in digits])


def test_make_page_is_deterministic_and_its_truth_adds_up():
    source, fonts = stroke_source(), printed_fonts("train")
    first, truth = make_page(source, np.random.default_rng(5), fonts)
    again, same = make_page(source, np.random.default_rng(5), fonts)
    assert np.array_equal(first, again) and truth == same
    assert first.dtype == np.uint8 and first.shape[:2] == (1400, 1000)
    assert 1 <= len(truth.fields) <= 15 and truth.labels
    for field in truth.fields:
        assert field.text == "".join(c for c in field.raw if c.isdigit()) and field.text
        # the digit images it was written with, one per digit, each of the digit it stands for
        assert [int(source[1][i]) for i in field.sources] == [int(c) for c in field.text]
        x, y, w, h = field.box
        assert 0 <= x and 0 <= y and x + w <= 1000 and y + h <= 1400 and w > 0 and h > 0
        assert (field.frame is not None) == (field.kind in ("comb", "box"))  # the printed row or box around it
        if field.frame and not field.across_edge:  # the writing lies in its frame (give or take a pen's width)
            fx, fy, fw, fh = field.frame
            assert fx - 3 <= x and fy - 3 <= y and x + w <= fx + fw + 3 and y + h <= fy + fh + 3
    assert any(c.isdigit() for t in truth.labels for c in t.text)  # printed digits, never a field


def test_a_generated_form_of_pen_digits_gives_no_label(recognizer):
    source, fonts = stroke_source(), printed_fonts("train")
    image, truth = make_page(source, np.random.default_rng(3), fonts, nuisances=False)
    fields = read_page(image, recognizer.read)
    found = [max(iou(f.box, (t.box[0], t.box[1], t.box[0] + t.box[2], t.box[1] + t.box[3])) for f in fields)
             for t in truth.fields]
    assert sum(o >= 0.5 for o in found) >= 0.8 * len(truth.fields)
    for f in fields:
        x, y, w, h = f.box
        assert not any(min(x + w, t.box[0] + t.box[2]) - max(x, t.box[0]) >= 0.5 * t.box[2] and
                       min(y + h, t.box[1] + t.box[3]) - max(y, t.box[1]) >= 0.5 * t.box[3] for t in truth.labels)
