"""Tests for digitscan.image (decode, ink, prepare): decoding policy, error classes, and the robust / paper model
inputs.

Synthetic images are drawn in the tests; real MNIST test images come from DIGITSCAN_DATA (required, never skipped).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw

from digitscan.constants import (
    ALLOWED_FORMATS,
    DIGIT_BOX,
    IMAGE_SIZE,
    MAX_PIXELS,
    PREPROCESS_MODES,
)
from digitscan.errors import ImageError, ImageTooLargeError, NoImagesError, UnreadableImageError, UnsupportedImageError
from digitscan.image import prepare
from digitscan.image.decode import decode_image
from digitscan.image.ink import ink_map
from digitscan.image.prepare import decode_for_digit, fit_to_mnist_box, preprocess, to_model_input

WIDTH, HEIGHT = 300, 400  # a phone-ish portrait page


def draw_digit(digit: str = "7", *, ink: int = 0, paper: int = 255, size=(WIDTH, HEIGHT), pen: int = 28):
    """A black-on-white 'L' image of a thick handwritten-like digit: '1', '7', '0' (ellipse) or '-' (a bar)."""
    width, height = size
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    if digit == "7":
        draw.line([(width * 0.25, height * 0.2), (width * 0.75, height * 0.2), (width * 0.4, height * 0.85)],
                  fill=ink, width=pen, joint="curve")
    elif digit == "1":
        draw.line([(width * 0.5, height * 0.15), (width * 0.5, height * 0.85)], fill=ink, width=pen)
    elif digit == "0":
        draw.ellipse([width * 0.3, height * 0.2, width * 0.7, height * 0.8], outline=ink, width=pen)
    elif digit == "-":
        draw.line([(width * 0.2, height * 0.5), (width * 0.8, height * 0.5)], fill=ink, width=pen)
    else:
        raise ValueError(digit)
    return image


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def mass_centre(image: np.ndarray) -> tuple[float, float]:
    total = image.sum()
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def ink_extent(image: np.ndarray) -> tuple[int, int]:
    rows, cols = np.nonzero(image > 0)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def assert_model_input(x: np.ndarray) -> None:
    assert x.shape == (IMAGE_SIZE, IMAGE_SIZE)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    assert x.min() >= 0.0 and x.max() <= 1.0


@pytest.fixture(scope="module")
def reference_seven() -> np.ndarray:
    return preprocess(draw_digit("7"))


# ---------------------------------------------------------------------------------------------- robust geometry


@pytest.mark.parametrize("digit", ["1", "7", "0"])
def test_robust_output_is_an_mnist_style_digit(digit):
    x = preprocess(draw_digit(digit))
    assert_model_input(x)
    assert x.max() == pytest.approx(1.0)
    assert max(ink_extent(x)) == DIGIT_BOX  # longer side fitted to the 20 px box
    row, col = mass_centre(x)
    assert abs(row - 13.5) <= 1.0 and abs(col - 13.5) <= 1.0
    # background (far from the strokes) is exactly zero: the corners of the 28x28 frame
    assert x[:4, :4].max() == 0 and x[-4:, -4:].max() == 0


def test_aspect_ratio_is_kept():
    x = preprocess(draw_digit("1"))
    height, width = ink_extent(x)
    assert height == DIGIT_BOX and width < DIGIT_BOX / 2  # a tall thin "1" is not stretched sideways


def test_polarity_does_not_matter(reference_seven):
    light_on_dark = preprocess(draw_digit("7", ink=255, paper=0))
    assert correlation(reference_seven, light_on_dark) > 0.9
    grey_on_grey = preprocess(draw_digit("7", ink=60, paper=170))  # low-contrast pencil on grey paper
    assert correlation(reference_seven, grey_on_grey) > 0.9


ROWS, COLS = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)


@pytest.mark.parametrize(
    "lighting",
    [
        np.linspace(0.25, 1.0, WIDTH, dtype=np.float32)[None, :] * np.linspace(0.8, 1.0, HEIGHT)[:, None],
        0.25 + 0.75 * (ROWS + COLS) / (HEIGHT + WIDTH),  # diagonal
        1 - 0.35 * (((COLS - WIDTH / 2) / (WIDTH / 2)) ** 2 + ((ROWS - HEIGHT / 2) / (HEIGHT / 2)) ** 2),  # vignette
    ],
    ids=["gradient", "diagonal", "vignette"],
)
def test_uneven_lighting_is_flattened(lighting, reference_seven):
    page = np.asarray(draw_digit("7"), np.float32) / 255
    x = preprocess(page * lighting)
    assert_model_input(x)
    assert correlation(reference_seven, x) > 0.9
    strokes = reference_seven > 0.5
    background = cv2.dilate(reference_seven, np.ones((5, 5), np.float32)) == 0
    assert x[background].max() < 0.05  # the lighting left nothing behind
    assert x[strokes].mean() > 0.8  # and the strokes in the shadow are as strong as in the light


def test_sheet_photographed_on_a_dark_desk(reference_seven):
    rng = np.random.default_rng(5)
    photo = np.full((560, 700), 60, np.float32)  # the desk shows along every side of the picture
    sheet = np.asarray(draw_digit("7", size=(470, 500)), np.float32)
    photo[40:540, 110:580] = np.where(sheet < 128, 30, 225)
    photo += rng.normal(0, 4, photo.shape)
    x = preprocess(np.clip(photo, 0, 255).astype(np.uint8))
    assert correlation(preprocess(draw_digit("7", size=(470, 500))), x) > 0.9


def test_noisy_photo_is_cleaned(reference_seven):
    rng = np.random.default_rng(0)
    page = np.asarray(draw_digit("7", ink=50, paper=220), np.float32)
    page += rng.normal(0, 12, page.shape)
    page[rng.random(page.shape) < 0.0005] = 0  # pepper specks
    x = preprocess(np.clip(page, 0, 255).astype(np.uint8))
    assert correlation(reference_seven, x) > 0.9


def test_thin_strokes_survive_a_large_image():
    page = draw_digit("7", size=(3000, 4000), pen=6)  # a fine pen on a 12 MP scan: 1/600 of the digit's height
    x = preprocess(page)
    assert max(ink_extent(x)) == DIGIT_BOX
    assert (x > 0.5).sum() >= 30  # strokes were thickened towards MNIST's pen, not reduced to faint dots


@pytest.mark.parametrize(
    "make",
    [
        lambda: np.ones((HEIGHT, WIDTH), np.float32),  # blank white page
        lambda: np.full((HEIGHT, WIDTH), 0.5, np.float32),  # uniform grey
        lambda: np.zeros((HEIGHT, WIDTH), np.float32),  # uniform black
        lambda: np.full((HEIGHT, WIDTH, 3), (30, 144, 255), np.uint8),  # uniform colour
        lambda: np.random.default_rng(1).integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8),  # pure noise
        lambda: (np.random.default_rng(2).normal(200, 10, (HEIGHT, WIDTH))).clip(0, 255).astype(np.uint8),
    ],
    ids=["white", "grey", "black", "colour", "uniform-noise", "paper-noise"],
)
def test_no_ink_gives_all_zeros(make):
    x = preprocess(make())
    assert_model_input(x)
    assert not x.any()


def test_dust_on_a_blank_page_is_not_a_digit():
    page = np.full((HEIGHT, WIDTH), 240, np.uint8)
    page[100:102, 50:52] = 20
    page[300, 250] = 10
    assert not preprocess(page).any()


def test_ink_map_reports_the_working_scale():
    small, scale = ink_map(np.asarray(draw_digit("7"), np.float32) / 255)
    assert small.shape == (HEIGHT, WIDTH) and scale == 1.0
    large = np.asarray(draw_digit("7", size=(1500, 2000)), np.float32) / 255
    ink, scale = ink_map(large)
    assert max(ink.shape) <= 512 and ink.dtype == np.float32
    assert scale == pytest.approx(ink.shape[0] / large.shape[0])
    assert ink.min() == 0 and ink.max() == pytest.approx(1.0)


def test_a_small_digit_far_away_in_a_big_frame_is_looked_at_again_up_close(reference_seven, monkeypatch):
    # 60 px tall in a 1600x1200 page: ~8 px on the 160 px coarse copy, so digit_ink looks again around it.
    page = Image.new("L", (1600, 1200), 245)
    page.paste(draw_digit("7", size=(45, 60), pen=6), (900, 700))
    gray = np.asarray(page, np.float32) / 255
    looks = []
    real_ink_map = prepare.ink_map
    monkeypatch.setattr(prepare, "ink_map", lambda image, **kw: looks.append(image.shape) or real_ink_map(image, **kw))
    x = to_model_input(gray)
    assert looks[0] == gray.shape and len(looks) == 2 and max(looks[1]) < 300  # the second look: the region only
    assert correlation(reference_seven, x) > 0.85
    assert max(ink_extent(x)) == DIGIT_BOX


def test_a_digit_that_fills_the_coarse_copy_is_found_in_one_look(monkeypatch):
    looks = []
    real_ink_map = prepare.ink_map
    monkeypatch.setattr(prepare, "ink_map", lambda image, **kw: looks.append(image.shape) or real_ink_map(image, **kw))
    to_model_input(np.asarray(draw_digit("7", size=(1500, 2000), pen=90), np.float32) / 255)
    assert len(looks) == 1


def test_a_big_jpeg_is_decoded_at_a_reduced_scale_for_one_digit(reference_seven):
    data = encode(draw_digit("7", size=(3000, 4000), pen=240).convert("RGB"), "JPEG", quality=90)
    full, reduced = decode_image(data), decode_image(data, min_side=512)
    assert full.shape == (4000, 3000) and reduced.shape == (1000, 750)  # libjpeg's 1/4 scale: still >= 512 px
    assert decode_image(data, min_side=5000).shape == full.shape
    png = encode(draw_digit("7"), "PNG")
    assert decode_image(png, min_side=64).shape == (HEIGHT, WIDTH)  # only JPEG has cheap reduced decoding
    assert correlation(reference_seven, preprocess(data)) > 0.9  # preprocess decodes reduced


def test_one_digit_is_decoded_at_twice_the_first_look():
    """decode_for_digit (predict's decode) keeps PREDICT_DECODE_SIDE px: a 640x480 photo at half size, a 12 MP one
    at an eighth (a PNG at its own size), and the half-size photo makes the same model input as the full one."""
    photo = encode(draw_digit("7", size=(640, 480), pen=30).convert("RGB"), "JPEG", quality=90)
    assert decode_for_digit(photo).shape == (240, 320) and max(decode_image(photo).shape) == 640
    big = encode(draw_digit("7", size=(4000, 3000), pen=240).convert("RGB"), "JPEG", quality=90)
    assert decode_for_digit(big).shape == (375, 500)  # 1/8: the smallest scale keeping PREDICT_DECODE_SIDE
    assert decode_for_digit(encode(draw_digit("7"), "PNG")).shape == (HEIGHT, WIDTH)
    assert correlation(to_model_input(decode_image(photo)), to_model_input(decode_for_digit(photo))) > 0.95


def test_fit_to_mnist_box_on_a_plain_patch():
    patch = np.zeros((40, 10), np.float32)
    patch[:, 3:7] = 0.5
    x = fit_to_mnist_box(patch)
    assert_model_input(x)
    assert ink_extent(x)[0] == DIGIT_BOX and x.max() == pytest.approx(1.0)
    assert not fit_to_mnist_box(np.zeros((5, 5))).any()


def test_a_black_and_white_patch_gets_grey_edges_and_a_grey_one_is_left_as_it_is():
    ring = np.zeros((60, 45), np.uint8)
    cv2.ellipse(ring, (22, 30), (17, 25), 0, 0, 360, 255, 7)  # a thresholded scan's "0": only 0 and 255
    soft = np.zeros_like(ring)
    cv2.ellipse(soft, (22, 30), (17, 25), 0, 0, 360, 255, 7, cv2.LINE_AA)  # a pen's antialiased "0"
    np.testing.assert_array_equal(prepare._soften_binary(soft / 255.0), soft / 255.0)
    softened = prepare._soften_binary(ring / 255.0)
    grey = (softened > 0.1) & (softened < 0.9)
    assert grey.mean() > 0.1 and softened.max() > 0.9  # the edges are grey, the stroke's core still ink
    x = fit_to_mnist_box(ring / 255.0)
    assert_model_input(x)
    assert correlation(x, fit_to_mnist_box(soft / 255.0)) > 0.9  # still the same "0"


# ---------------------------------------------------------------------------------------------- real MNIST


def load_mnist_test_images(count: int) -> np.ndarray:
    folder = Path(os.environ.get("DIGITSCAN_DATA", "/work/shared/data/mnist"))
    path = folder / "t10k-images-idx3-ubyte.gz"
    assert path.exists(), f"MNIST test images not found at {path}; set DIGITSCAN_DATA"
    with gzip.open(path, "rb") as handle:
        raw = handle.read(16 + count * IMAGE_SIZE * IMAGE_SIZE)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, IMAGE_SIZE, IMAGE_SIZE)


def test_mnist_digits_pass_through_robust_mode_unchanged():
    images = load_mnist_test_images(200)
    correlations = [correlation(preprocess(image), image / 255) for image in images]
    assert np.mean(correlations) > 0.97
    assert np.min(correlations) > 0.8


def test_paper_mode_is_a_plain_bilinear_resize():
    page = np.asarray(draw_digit("7"), np.float32) / 255
    x = preprocess(page, "paper")
    assert_model_input(x)
    expected = cv2.resize(page, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(x, expected)
    assert x[0, 0] == pytest.approx(1.0)  # no inversion: white paper stays 1
    mnist = load_mnist_test_images(1)[0]
    np.testing.assert_allclose(preprocess(mnist, "paper"), mnist / 255, atol=1e-6)


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="robust, paper"):
        preprocess(np.zeros((5, 5)), mode="fancy")
    assert PREPROCESS_MODES == ("robust", "paper")


# ---------------------------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("fmt", ALLOWED_FORMATS)
def test_every_allowed_format_round_trips(fmt, reference_seven):
    data = encode(draw_digit("7").convert("RGB"), fmt)
    gray = decode_image(data)
    assert gray.shape == (HEIGHT, WIDTH) and gray.dtype == np.float32
    assert gray[0, 0] > 0.95  # white paper is 1.0
    assert correlation(reference_seven, preprocess(data)) > 0.95


def test_preprocess_is_decode_then_to_model_input(reference_seven):
    data = encode(draw_digit("7"), "PNG")
    for mode in PREPROCESS_MODES:
        np.testing.assert_array_equal(preprocess(data, mode), to_model_input(decode_image(data), mode))
    np.testing.assert_array_equal(to_model_input(np.asarray(draw_digit("7"))), reference_seven)  # raw uint8 too


def test_path_bytes_pil_and_array_sources_agree(tmp_path, reference_seven):
    image = draw_digit("7")
    path = tmp_path / "seven.png"
    image.save(path)
    for source in (path, str(path), path.read_bytes(), image, np.asarray(image)):
        np.testing.assert_array_equal(preprocess(source), reference_seven)


def test_a_callers_pil_image_is_left_intact():
    # decode_image releases the images it opened itself as soon as it can; one handed in by a caller stays usable.
    for mode in ("L", "RGB", "RGBA", "CMYK", "P", "I;16", "F"):
        image = draw_digit("7").convert(mode)
        before = np.asarray(image).copy()
        decode_image(image)
        np.testing.assert_array_equal(np.asarray(image), before)


def test_transparent_png_is_composited_onto_white(reference_seven):
    strokes = np.asarray(draw_digit("7"))
    rgba = np.zeros((HEIGHT, WIDTH, 4), np.uint8)  # black strokes on a fully transparent canvas
    rgba[:, :, 3] = 255 - strokes
    data = encode(Image.fromarray(rgba, "RGBA"), "PNG")
    assert decode_image(data)[0, 0] == 1.0
    np.testing.assert_allclose(preprocess(data), reference_seven, atol=1e-6)
    np.testing.assert_allclose(preprocess(rgba), reference_seven, atol=1e-6)  # the same rule for arrays
    la = Image.fromarray(rgba[:, :, [0, 3]], "LA")
    np.testing.assert_allclose(preprocess(encode(la, "PNG")), reference_seven, atol=1e-6)


def test_palette_png_with_transparency(reference_seven):
    palette_image = draw_digit("7").convert("P")
    data = encode(palette_image, "PNG")
    assert Image.open(io.BytesIO(data)).mode == "P"
    assert correlation(reference_seven, preprocess(data)) > 0.99
    # white made transparent through the palette: still white paper after compositing
    transparent = encode(palette_image, "PNG", transparency=palette_image.getpixel((0, 0)))
    assert decode_image(transparent)[0, 0] == 1.0
    assert correlation(reference_seven, preprocess(transparent)) > 0.99


def test_sixteen_bit_png_is_scaled_by_its_full_range(reference_seven):
    values = (np.asarray(draw_digit("7"), np.float64) / 255 * 0.8 + 0.1) * 65535  # paper 0.9, ink 0.1
    data = encode(Image.fromarray(values.round().astype(np.uint16)), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I;16")
    gray = decode_image(data)
    assert gray[0, 0] == pytest.approx(0.9, abs=1e-4)  # divided by 65535, not clipped at 255
    assert gray.min() == pytest.approx(0.1, abs=1e-4)
    assert correlation(reference_seven, preprocess(data)) > 0.99
    np.testing.assert_allclose(decode_image(values.round().astype(np.uint16)), gray, atol=1e-6)


def test_cmyk_jpeg():
    image = Image.new("CMYK", (WIDTH, HEIGHT), (0, 0, 0, 0))  # no ink = white
    ImageDraw.Draw(image).line([(150, 60), (150, 340)], fill=(0, 0, 0, 255), width=30)
    gray = decode_image(encode(image, "JPEG", quality=95))
    assert gray[0, 0] > 0.95 and gray[200, 150] < 0.1
    assert ink_extent(preprocess(gray))[0] == DIGIT_BOX


def test_one_bit_bmp(reference_seven):
    data = encode(draw_digit("7").convert("1"), "BMP")
    assert Image.open(io.BytesIO(data)).mode == "1"
    assert correlation(reference_seven, preprocess(data)) > 0.95


def test_multi_frame_gif_uses_the_first_frame():
    one, seven = draw_digit("1").convert("P"), draw_digit("7").convert("P")
    data = encode(one, "GIF", save_all=True, append_images=[seven])
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    np.testing.assert_allclose(preprocess(data), preprocess(draw_digit("1")), atol=1e-6)


def test_multi_page_tiff_uses_the_first_page():
    data = encode(draw_digit("1"), "TIFF", save_all=True, append_images=[draw_digit("7")])
    np.testing.assert_allclose(preprocess(data), preprocess(draw_digit("1")), atol=1e-6)


def test_exif_orientation_is_applied():
    bar = draw_digit("-")  # a horizontal bar, 300 wide x 400 tall
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    data = encode(bar.convert("RGB"), "JPEG", exif=exif, quality=95)
    gray = decode_image(data)
    assert gray.shape == (WIDTH, HEIGHT)  # width and height swapped
    height, width = ink_extent(preprocess(data))
    assert height == DIGIT_BOX and width < DIGIT_BOX / 2  # the bar is now vertical


def test_lab_and_float_tiff_modes():
    gray = decode_image(draw_digit("7").convert("RGB").convert("LAB"))
    assert gray[0, 0] == pytest.approx(1.0, abs=0.01) and gray.min() < 0.05
    as_float = Image.fromarray(np.asarray(draw_digit("7"), np.float32) / 255, "F")
    np.testing.assert_allclose(decode_image(encode(as_float, "TIFF")), np.asarray(draw_digit("7")) / 255, atol=1e-6)


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0, 255]], np.uint8), [0.0, 1.0]),
        (np.array([[0, 65535]], np.uint16), [0.0, 1.0]),
        (np.array([[False, True]]), [0.0, 1.0]),
        (np.array([[0.0, 0.5]], np.float32), [0.0, 0.5]),
        (np.array([[0.0, 127.5]], np.float64), [0.0, 0.5]),
        (np.array([[0, 255]], np.int64), [0.0, 1.0]),
        (np.array([[[0], [255]]], np.uint8), [0.0, 1.0]),
    ],
)
def test_numpy_value_conventions(array, expected):
    gray = decode_image(array)
    assert gray.dtype == np.float32 and gray.ndim == 2
    np.testing.assert_allclose(gray.ravel(), expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------- errors


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is patched to claim width x height (CRC recomputed)."""
    data = bytearray(encode(Image.new("L", (8, 8), 255), "PNG"))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_huge_header_is_rejected_before_decoding():
    start = time.perf_counter()
    with pytest.raises(ImageTooLargeError, match="too large"):
        decode_image(png_claiming_size(50_000, 50_000))  # beyond Pillow's own bomb guard
    with pytest.raises(ImageTooLargeError, match="48,000,000 pixels"):
        decode_image(png_claiming_size(8_000, 6_000))  # over MAX_PIXELS, under Pillow's guard
    assert time.perf_counter() - start < 1.0  # nothing was decoded
    with pytest.raises(ImageTooLargeError):
        preprocess(encode(draw_digit("7"), "PNG"), max_pixels=1000)
    with pytest.raises(ImageTooLargeError):
        decode_image(np.zeros((100, 100)), max_pixels=1000)
    assert MAX_PIXELS == 40_000_000


def test_too_many_bytes(tmp_path):
    data = encode(draw_digit("7"), "PNG")
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(data, max_bytes=100)
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(path, max_bytes=100)


def test_truncated_and_empty_files_are_unreadable(tmp_path):
    data = encode(draw_digit("7"), "PNG")
    for cut in (len(data) // 2, 30):  # inside the pixel data; inside the header
        with pytest.raises(UnreadableImageError, match="PNG"):
            decode_image(data[:cut])
    with pytest.raises(UnreadableImageError, match="JPEG"):
        decode_image(encode(draw_digit("7"), "JPEG")[:2000])
    with pytest.raises(UnreadableImageError, match="empty"):
        decode_image(b"")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableImageError, match="empty"):
        decode_image(empty)


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>', "SVG text"),
        (b"<!DOCTYPE html><html><body>a digit</body></html>", "HTML text"),
        (b"this is not an image, just a note\n", "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF document"),
        (bytes(range(256)) * 4, "unknown binary data"),
    ],
)
def test_non_images_are_unsupported(data, detected):
    with pytest.raises(UnsupportedImageError) as caught:
        decode_image(data)
    message = str(caught.value)
    assert f"detected: {detected})" in message
    assert "allowed: PNG, JPEG, BMP, GIF, TIFF, WebP" in message
    assert "\n" not in message


def test_formats_outside_the_allow_list_are_unsupported():
    with pytest.raises(UnsupportedImageError, match="ICO"):
        decode_image(encode(draw_digit("7", size=(32, 32), pen=3), "ICO"))


def test_text_file_named_png(tmp_path):
    path = tmp_path / "digit.png"
    path.write_text("hello")
    with pytest.raises(UnsupportedImageError):
        decode_image(path)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(UnreadableImageError, match="no such file"):
        decode_image(tmp_path / "missing.png")
    with pytest.raises(NoImagesError, match="no image file in folder"):
        decode_image(tmp_path)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((0, 5)),
        np.zeros((4, 4, 2)),
        np.zeros((2, 2, 2, 2)),
        np.array([[0.0, np.nan]]),
        np.array([[0.0, np.inf]]),
        np.array([[-1.0, 0.5]]),
        np.array([[0.0, 300.0]]),
        np.array([[0, 70_000]]),
        np.array([["a", "b"]]),
    ],
)
def test_bad_arrays_raise_image_errors(array):
    with pytest.raises(ImageError):
        preprocess(array)


def test_errors_are_value_errors_with_http_meaning():
    for error in (UnsupportedImageError, ImageTooLargeError, UnreadableImageError):
        assert issubclass(error, ImageError) and issubclass(error, ValueError)
    with pytest.raises(TypeError):
        decode_image(42)


# ---------------------------------------------------------------------------------------------- speed


def test_a_twelve_megapixel_photo_is_fast():
    rng = np.random.default_rng(3)
    page = np.asarray(draw_digit("0", size=(4000, 3000), pen=40), np.float32)
    lighting = np.linspace(0.6, 1.0, 4000, dtype=np.float32)[None, :]
    photo = page * lighting + rng.normal(0, 5, (1, 4000)).astype(np.float32)
    photo = np.clip(photo, 0, 255).astype(np.uint8)[:, :, None].repeat(3, axis=2)  # (3000, 4000, 3) RGB
    best = np.inf
    for _ in range(3):  # best of three: the CI machine may be busy
        start = time.perf_counter()
        x = preprocess(photo)
        best = min(best, time.perf_counter() - start)
    assert max(ink_extent(x)) == DIGIT_BOX
    assert best < 0.5, f"{best:.3f} s"
