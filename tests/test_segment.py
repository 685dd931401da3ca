"""Reading whole numbers: segmentation code paths on synthetic pen digits, the CLI, and exact match on real MNIST."""

import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from digitscan.models.checkpoint import shipped_path
from digitscan.reading.layout import find_atoms
from digitscan.reading.segments import METHODS, Penalties, segment_number
from digitscan.recognize import ReadResult
from digitscan.synthetic.strokes import render_number, stroke_digit

from helpers import EXAMPLES, run
from helpers.forms import INK, blank, pen_digits


def number(text: str, seed: int = 0, **options) -> tuple[Image.Image, list[list[int]]]:
    """A number drawn with synthetic pen strokes (no MNIST pixels), and its true digit boxes."""
    digits = [stroke_digit(int(ch), seed=seed + i, thickness=0.11) for i, ch in enumerate(text)]
    return render_number(digits, seed=seed, **options)


@pytest.fixture(params=["sequence", "segments", "both"])
def method(request) -> str:
    """Every way of reading a number: the line reader (the default), cutting into digits, and the two averaged."""
    return request.param


def iou(a: list[int], b: list[int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def test_spaced_digits_with_boxes(recognizer, method):
    image, boxes = number("90210", seed=1, spacing=(0.2, 0.6))
    result = recognizer.read(image, method=method)
    assert result.text == "90210"
    assert [d.digit for d in result.digits] == [9, 0, 2, 1, 0]
    assert all(iou(found.box, true) > 0.7 for found, true in zip(result.digits, boxes))
    assert result.confidence == pytest.approx(np.prod([d.confidence for d in result.digits]))
    assert 0 < result.confidence <= 1


def test_uneven_spacing_and_baseline_drift(recognizer, method):
    image, _ = number("3804", seed=2, spacing=(0.0, 0.8), baseline_drift=0.4, scale_jitter=0.15)
    assert recognizer.read(image, method=method).text == "3804"


def test_touching_digits_are_split(recognizer, method):
    image, boxes = number("4736", seed=3, spacing=(-0.12, -0.06))
    result = recognizer.read(image, method=method)
    assert result.text == "4736"
    assert len(result.digits) == 4


def test_underline_and_specks_are_ignored(recognizer, method):
    image, _ = number("1250", seed=4, underline=True, specks=40)
    assert recognizer.read(image, method=method).text == "1250"


def test_a_decimal_point_in_a_long_line_is_not_dust(recognizer):
    """A pen dot spans a few pixels, far less than a 50th of a long line: the ink finder keeps it for the line
    reader (small_marks), which then reads it with confidence instead of guessing."""
    page = blank(980, 150)
    boxes = pen_digits(page, "3395318", 40, 110, 44, seed=3)
    dot_x = boxes[-1][2] + 11
    cv2.circle(page, (dot_x, 106), 3, INK, -1)
    pen_digits(page, "00", dot_x + 13, 110, 44, seed=12)
    layout = find_atoms(page, small_marks=True)
    assert any(a.x0 <= dot_x * layout.scale <= a.x1 and a.x1 - a.x0 <= 4 for a in layout.atoms)
    assert len(find_atoms(page).atoms) == len(layout.atoms) - 1  # without small_marks a speck is dropped
    result = recognizer.read(page)
    assert result.raw == "3395318.00" and result.confidence > 0.9


def test_a_single_digit_on_a_ruled_line(recognizer, method):
    image, _ = number("7", seed=5, underline=True)
    assert recognizer.read(image, method=method).text == "7"


@pytest.mark.parametrize("blank", [np.full((120, 400), 255, np.uint8), np.zeros((50, 50), np.uint8)])
def test_empty_page_reads_nothing(recognizer, method, blank):
    result = recognizer.read(blank, method=method)
    assert result.text == "" and result.digits == [] and result.confidence == 0.0


def test_twelve_digits(recognizer, method):
    image, _ = number("507316842905", seed=6, spacing=(0.1, 0.4))
    assert recognizer.read(image, method=method).text == "507316842905"


def test_boxes_are_in_input_pixels_of_a_large_image(recognizer, method):
    # 3x upscaled to well over 512 px: ink_map works on a smaller copy, the boxes must come back in input pixels.
    image, boxes = number("586", seed=7)
    large = image.resize((image.width * 3, image.height * 3), Image.BICUBIC)
    result = recognizer.read(large, method=method)
    assert result.text == "586"
    for found, true in zip(result.digits, boxes):
        assert iou(found.box, [3 * v for v in true]) > 0.7
        x, y, w, h = found.box
        assert 0 <= x and 0 <= y and x + w <= large.width and y + h <= large.height


def test_every_kind_of_source(recognizer, method, tmp_path):
    image, _ = number("42", seed=8)
    path = tmp_path / "n.png"
    image.save(path)
    sources = [path, str(path), path.read_bytes(), image, np.asarray(image)]
    assert {recognizer.read(source, method=method).text for source in sources} == {"42"}


def test_to_dict_has_exactly_the_interface_fields(recognizer, method):
    image, _ = number("61", seed=9)
    data = recognizer.read(image, method=method).to_dict()
    assert set(data) == {"text", "confidence", "digits", "raw", "symbols", "marks", "alternatives"}
    assert all(set(d) == {"digit", "confidence", "box"} for d in data["digits"])
    assert all(len(d["box"]) == 4 and all(isinstance(v, int) for v in d["box"]) for d in data["digits"])
    json.dumps(data)  # plain Python types only


def test_thousands_of_specks_finish_quickly(recognizer, method):
    rng = np.random.default_rng(0)
    page = np.full((600, 2000), 245, np.uint8)
    ys, xs = rng.integers(0, 598, 5000), rng.integers(0, 1998, 5000)
    for y, x in zip(ys, xs):
        page[y: y + 2, x: x + 2] = 20
    recognizer.read(page, method=method)  # warm-up: torch's first call is slow
    start = time.perf_counter()
    result = recognizer.read(page, method=method)
    assert time.perf_counter() - start < 2.0
    assert isinstance(result, ReadResult) and set(result.text) <= set("0123456789")


def test_segmentation_variants_and_unknown_method(recognizer):
    image, _ = number("305", seed=10, spacing=(0.3, 0.5))
    gray = np.asarray(image.convert("L"), np.float32) / 255
    for method in METHODS:
        segments = segment_number(gray, recognizer.digit_probabilities, method)
        assert "".join(str(s.digit) for s in segments) == "305", method
    with pytest.raises(ValueError, match="unknown segmentation method"):
        segment_number(gray, recognizer.digit_probabilities, "magic")


def test_a_piece_no_reading_explains_is_skipped():
    """A bar the model is sure of and a ring it is not: with a price for skipping, the ring is left out."""
    page = np.ones((120, 260), np.float32)
    page[20:100, 60:72] = 0.0  # a thick vertical bar: the "1"
    yy, xx = np.mgrid[:120, :260]
    page[np.abs(np.hypot((yy - 60) / 38, (xx - 180) / 20) - 1) < 0.05] = 0.0  # a thin ring, as tall as the bar

    def classify(inputs):  # a narrow upright stroke is a sure 1; a ring is anybody's guess
        probs = np.full((len(inputs), 10), 0.1)
        sure = (inputs.max(axis=1) > 0).sum(axis=1) < 10  # columns with ink
        probs[sure] = np.eye(10)[1] * 0.99 + 0.001
        return probs, sure

    never = segment_number(page, classify, penalties=Penalties(skip=float("inf")))
    assert len(never) == 2 and never[0].digit == 1
    skipped = segment_number(page, classify, penalties=Penalties(skip=2.0))
    assert [s.digit for s in skipped] == [1] and skipped[0].box[0] < 80


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------


def test_cli_read_json_and_errors(tmp_path):
    number("90210", seed=1, spacing=(0.2, 0.6))[0].save(tmp_path / "zip.png")
    (tmp_path / "notes.png").write_text("not an image")
    result = run("read", "--json", tmp_path)
    assert result.exit_code == 1
    rows = {Path(r["path"]).name: r for r in map(json.loads, result.stdout.splitlines())}
    assert set(rows["zip.png"]) == {"path", "text", "confidence", "digits", "raw", "symbols", "marks", "alternatives"}
    assert rows["zip.png"]["text"] == "90210"
    assert set(rows["notes.png"]) == {"path", "error"}
    assert result.stderr.count("\n") == 1 and "notes.png" in result.stderr and "Traceback" not in result.output


def test_cli_read_methods_and_a_bad_reader(tmp_path):
    number("305", seed=10, spacing=(0.3, 0.5))[0].save(tmp_path / "n.png")
    for method in ("sequence", "segments"):
        result = run("read", "--method", method, tmp_path / "n.png")
        assert result.exit_code == 0 and "n.png: 305 (confidence" in result.stdout, result.output
    # A digit model given without --method selects cutting (the line reader uses none); with --method sequence it
    # is a usage error, not silently ignored.
    picked = run("read", "--json", "--model", shipped_path(), tmp_path / "n.png")  # PyTorch, the default onnxruntime
    cut = json.loads(run("read", "--json", "--method", "segments", tmp_path / "n.png").stdout)["digits"]
    assert picked.exit_code == 0
    for mine, theirs in zip(json.loads(picked.stdout)["digits"], cut, strict=True):
        assert (mine["digit"], mine["box"]) == (theirs["digit"], theirs["box"])
        assert mine["confidence"] == pytest.approx(theirs["confidence"], abs=1e-5)
    clash = run("read", "--method", "sequence", "--ensemble", tmp_path / "n.png")
    assert clash.exit_code == 2 and "only --method segments uses" in clash.output
    (tmp_path / "bad.safetensors").write_bytes(b"not a model")
    result = run("read", "--reader", tmp_path / "bad.safetensors", tmp_path / "n.png")
    assert result.exit_code == 1 and "bad.safetensors" in result.output and "Traceback" not in result.output
    assert "n.png:" not in result.stdout


def test_cli_read_human_output_and_the_examples():
    result = run("read", EXAMPLES / "numbers")
    assert result.exit_code == 0, result.output
    assert "zip_90210.png: 90210 (confidence" in result.stdout
    assert "amount_1250_underlined.png: 1250 (confidence" in result.stdout
    assert "id_4711_blue_pen.jpg: 4711 (confidence" in result.stdout


def test_cli_debug_image_file_and_folder(tmp_path):
    image, _ = number("58", seed=11)
    image.save(tmp_path / "a.png")
    image.save(tmp_path / "b.png")
    out = tmp_path / "boxes.png"
    assert run("read", "--debug-image", out, tmp_path / "a.png").exit_code == 0
    drawn = Image.open(out)
    assert drawn.size == image.size and drawn.mode == "RGB"
    assert np.asarray(drawn)[..., 1].astype(int).max() - np.asarray(drawn)[..., 0].min() > 100  # coloured boxes
    folder = tmp_path / "drawn"
    assert run("read", "--debug-image", folder, tmp_path / "a.png", tmp_path / "b.png").exit_code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]


def test_cli_read_empty_page(tmp_path):
    Image.new("RGB", (300, 100), (250, 250, 245)).save(tmp_path / "blank.png")
    result = run("read", tmp_path / "blank.png")
    assert result.exit_code == 0 and "blank.png: no digits found" in result.stdout


# ---------------------------------------------------------------------------------------------------------------
# Real MNIST: numbers composed from test digits, as ink on paper
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_numbers_from_mnist_test_digits(recognizer, method, mnist_test):
    images, labels = mnist_test
    rng = np.random.default_rng(2024)
    correct = 0
    for k in range(100):
        chosen = rng.choice(len(images), int(rng.integers(3, 9)), replace=False)
        image, _ = render_number([images[i] for i in chosen], seed=k, digit_height=int(rng.integers(32, 64)),
                                 spacing=(0.0, 0.4), baseline_drift=0.2)
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        correct += recognizer.read(buffer.getvalue(), method=method).text == "".join(str(labels[i]) for i in chosen)
    assert correct / 100 >= 0.9
