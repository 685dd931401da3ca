"""Regenerate the bundled example images (hand-drawn strokes from digitscan.synthetic.strokes, no MNIST pixels).

Run: `.venv/bin/python examples/generate.py` — writes the PNG/JPEG files next to this script, and whole numbers
(for `digitscan read`) into numbers/, an amount and a date with separators into fields/, and a form page with nine
fields (comb row, underlines, boxes, free numbers, printed labels in the Liberation fonts) into forms/.
"""

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from digitscan.synthetic.fields import Field, render_field
from digitscan.synthetic.forms import make_page, printed_fonts
from digitscan.synthetic.photos import Condition, photograph
from digitscan.synthetic.strokes import render_digit, render_number, stroke_digit

HERE = Path(__file__).resolve().parent


def shadow(image: Image.Image, strength: float = 0.45) -> Image.Image:
    """Darken one corner like a phone's shadow falling across the paper."""
    w, h = image.size
    ramp = np.linspace(1.0 - strength, 1.0, w)[None, :, None] * np.linspace(0.85, 1.0, h)[:, None, None]
    return Image.fromarray((np.asarray(image, dtype=np.float32) * ramp).astype(np.uint8))


def main() -> None:
    render_digit(7, seed=7, noise=6).save(HERE / "seven_ink_on_paper.png")
    render_digit(3, seed=3, ink=(30, 50, 160), paper=(235, 240, 250), rotation_deg=-8).save(HERE / "three_blue_pen.png")
    render_digit(0, seed=10, ink=(110, 110, 110), thickness=0.05, box_fraction=0.4, offset=(0.15, -0.1)) \
        .save(HERE / "zero_pencil_off_centre.png")
    render_digit(5, seed=5, ink=(255, 255, 255), paper=(0, 0, 0), thickness=0.12).save(HERE / "five_canvas.png")
    strokes = render_digit(2, seed=2, ink=(0, 0, 0), paper=(255, 255, 255)).convert("L")
    rgba = Image.new("RGBA", strokes.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(strokes, lambda v: 255 - v))  # drawing-app export: black strokes, transparent paper
    rgba.save(HERE / "two_transparent.png")
    shadow(render_digit(8, (900, 1200), seed=8, noise=5, blur=1.5)).save(HERE / "eight_photo.jpg", quality=80)
    render_digit(4, (28, 28), seed=4, box_fraction=0.75, thickness=0.12).save(HERE / "four_28px.png")
    blank = np.full((240, 200, 3), 240, np.float32) + np.random.default_rng(0).normal(0, 4, (240, 200, 1))
    Image.fromarray(np.clip(blank, 0, 255).astype(np.uint8)).save(HERE / "blank_paper.png")


def numbers() -> None:
    """Whole handwritten numbers for `digitscan read`: a ZIP code, an amount on a ruled line, an ID in blue pen."""
    folder = HERE / "numbers"
    folder.mkdir(exist_ok=True)

    def digits(text: str, seed: int) -> list[np.ndarray]:
        return [stroke_digit(int(ch), seed=seed + i, thickness=0.11) for i, ch in enumerate(text)]

    image, _ = render_number(digits("90210", 90), seed=1, digit_height=56, spacing=(0.1, 0.45), baseline_drift=0.15)
    image.save(folder / "zip_90210.png")
    image, _ = render_number(digits("1250", 12), seed=2, digit_height=48, spacing=(-0.02, 0.2), underline=True,
                             specks=12, noise=4)
    image.save(folder / "amount_1250_underlined.png")
    image, _ = render_number(digits("4711", 47), seed=3, digit_height=40, spacing=(0.05, 0.3), scale_jitter=0.1,
                             ink=(30, 50, 160), paper=(235, 240, 250), noise=5)
    image.save(folder / "id_4711_blue_pen.jpg", quality=85)

    # Fields with separators and marks (docs/reading-fields.md), in fields/: pen-stroke digits, strokes for . , / =.
    (HERE / "fields").mkdir(exist_ok=True)
    pen = np.stack([stroke_digit(d, seed=100 + k, thickness=0.11) for k in range(3) for d in range(10)])
    labels = np.tile(np.arange(10), 3)
    for name, tokens, paper in (("amount_1.250,00_cheque.png", ["=", *"1.250,00", "stroke"], "guilloche"),
                                ("date_12-03-2024.png", list("12/03/2024"), "white")):
        rng = np.random.default_rng(7)
        coverage = render_field(Field("example", tokens, None), pen, labels, rng, digit_height=44,
                                baseline_drift=0.05)
        condition = Condition("an example", inks=("blue",), papers=(paper,), height_fraction=(0.45, 0.45),
                              image_height=(150, 150), texture=0.02)
        (HERE / "fields" / name).write_bytes(photograph(coverage, condition, rng, encoding="png"))


def forms() -> None:
    """A form page for `digitscan read --layout page` and the drawing page's form-page mode: pen-stroke digits (made
    MNIST-sized, as the page generator takes them) on a generated form, clean as from a flatbed scanner."""
    folder = HERE / "forms"
    folder.mkdir(exist_ok=True)
    kinds = [(d, seed) for d in range(10) for seed in range(3)]
    images = np.stack([cv2.resize(stroke_digit(d, seed=seed, size=64, thickness=0.12), (28, 28),
                                  interpolation=cv2.INTER_AREA) for d, seed in kinds])
    page, _ = make_page((images, np.array([d for d, _ in kinds])), np.random.default_rng(11), printed_fonts("test"),
                        fields=(6, 9), nuisances=False)
    Image.fromarray(page).save(folder / "form_9_fields.png", optimize=True)


if __name__ == "__main__":
    main()
    numbers()
    forms()
